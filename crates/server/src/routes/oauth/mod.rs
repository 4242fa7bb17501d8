//! OAuth endpoints: token (RFC 6749 + RFC 7523 + RFC 8693 + RFC 9449), introspection
//! (RFC 7662) and revocation (RFC 7009).
//!
//! Order of checks at the token endpoint: form shape → client authentication (private_key_jwt)
//! → DPoP proof → grant → narrowing → one commit that consumes the single-use ids and records
//! the token and its receipt. Every refusal after successful client authentication is itself
//! committed (ids consumed, `token.refused` receipt) before the error is returned.

mod exchange;
mod introspection;
mod status;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mandate_core::encoding::b64url;
use mandate_core::id::DelegationId;
use mandate_core::jose::{
    self, AccessTokenClaims, AccessTokenExpectation, AssertionExpectation, Confirmation,
    DpopExpectation, JoseLimits, JwtKind, Unverified, Verified,
};
use mandate_core::receipt::{Actor, Event, EventKind, Outcome};
use mandate_core::scope::{Location, Scope};
use mandate_store::{
    Agent, AgentStatus, Client, Delegation, DelegationStatus, Delegator, Gate, JtiUse, Mutation,
    StoreError, TokenRecord, TokenStatus, TokenView,
};
use serde_json::{Value, json};

use crate::error::{TokenError, TokenErrorCode as Code};
use crate::state::{AppState, random};

use exchange::{remember_signed, sub_delegate};
pub use introspection::{introspect, revoke};
use introspection::{is_active, verify_access_token};
use status::status_claim;
pub use status::{STATUS_LIST_SIZE, effective_status, status_list};

/// `client_assertion_type` of RFC 7523 §2.2.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// RFC 8693 §2.1.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Our subject token type for a signed delegation document (DESIGN §4, grant 1).
const DELEGATION_TOKEN_TYPE: &str = "urn:mandate:token-type:delegation";
/// RFC 8693 §3.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Largest accepted form body.
const MAX_FORM: usize = 64 * 1024;

/// Parsed form parameters: each at most once, except those RFC 8707 lets repeat.
struct Form(Vec<(String, String)>);

impl Form {
    /// RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once."
    fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, TokenError> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(bad(
                "send the request as `application/x-www-form-urlencoded`",
            ));
        }
        if body.len() > MAX_FORM {
            return Err(bad("request body too large"));
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(body) {
            if k != "resource" && out.iter().any(|(seen, _)| *seen == k) {
                let k: String = k.chars().take(40).collect();
                return Err(bad(format!("parameter `{k}` is repeated")));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn bad(msg: impl Into<String>) -> TokenError {
    TokenError::new(Code::InvalidRequest, msg)
}

/// Unknown client, wrong key, suspended or revoked client: one answer (SECURITY line 4).
fn client_failed(used_header: bool) -> TokenError {
    let mut e = TokenError::new(Code::InvalidClient, "client authentication failed");
    e.used_authorization_header = used_header;
    e
}

/// An authenticated client and the single-use ids its request consumes.
struct Authenticated {
    client: Client,
    jtis: Vec<JtiUse>,
}

/// RFC 7523 §2.2 / §3 client authentication with `private_key_jwt` — the only method.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Authenticated, TokenError> {
    if headers.contains_key(header::AUTHORIZATION) {
        // No shared secrets exist: HTTP Basic or bearer client authentication is a downgrade.
        return Err(client_failed(true));
    }
    if form.get("client_secret").is_some() {
        return Err(client_failed(false));
    }
    if form.get("client_assertion_type") != Some(JWT_BEARER) {
        return Err(TokenError::new(
            Code::InvalidClient,
            "authenticate with `private_key_jwt`: `client_assertion_type` must be `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`",
        ));
    }
    let assertion = form
        .get("client_assertion")
        .ok_or_else(|| client_failed(false))?;
    let limits = JoseLimits::default();
    let unverified = Unverified::parse(assertion, &limits).map_err(|_| client_failed(false))?;
    let claimed = unverified
        .unverified_client_id()
        .map_err(|_| client_failed(false))?
        .to_owned();
    if form.get("client_id").is_some_and(|id| id != claimed) {
        return Err(client_failed(false));
    }
    let client = state
        .store
        .client(&claimed)
        .await?
        .ok_or_else(|| client_failed(false))?;
    let (keys, active) = match &client {
        Client::Agent(a) => (&a.keys, a.status == AgentStatus::Active),
        Client::Gate(g) => (&g.keys, true),
    };
    if !active {
        return Err(client_failed(false));
    }
    let (verified, _) = verify_with_keys(
        &unverified,
        JwtKind::ClientAssertion,
        keys,
        state.now(),
        unverified.kid(),
    )
    .ok_or_else(|| client_failed(false))?;
    if verified.claims().contains_key("delegator") {
        // An actor token (a sub-agent's consent) is never a client credential.
        return Err(client_failed(false));
    }
    let now_secs = state.now() / 1000;
    let assertion = jose::verify_client_assertion(
        &verified,
        &AssertionExpectation::new(&state.issuer, now_secs),
    )
    .map_err(|e| {
        TokenError::new(
            Code::InvalidClient,
            format!("client authentication failed: {e}"),
        )
    })?;
    let jtis = vec![JtiUse {
        kind: "assertion",
        scope: assertion.client_id().to_owned(),
        jti: assertion.jti().to_owned(),
        expires_at: assertion.exp().saturating_add(60) * 1000,
    }];
    Ok(Authenticated { client, jtis })
}

/// RFC 9449 §4.3 at the token endpoint: exactly one `DPoP` header, proof for this request.
fn dpop(state: &AppState, headers: &HeaderMap, path: &str) -> Result<jose::DpopProof, TokenError> {
    let mut values = headers.get_all("dpop").iter();
    let proof = match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .map_err(|_| TokenError::new(Code::InvalidDpopProof, "malformed DPoP header"))?,
        (None, _) => {
            return Err(TokenError::new(
                Code::InvalidDpopProof,
                "a DPoP proof is required (RFC 9449)",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(TokenError::new(
                Code::InvalidDpopProof,
                "exactly one DPoP header is allowed",
            ));
        }
    };
    let htu = format!("{}{path}", state.issuer);
    let expect = DpopExpectation::new("POST", &htu, state.now() / 1000);
    jose::verify_dpop_proof(proof, &expect, &JoseLimits::default())
        .map_err(|e| TokenError::new(Code::InvalidDpopProof, format!("invalid DPoP proof: {e}")))
}

/// `POST /oauth2/token`.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match token_inner(&state, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn token_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, TokenError> {
    let form = Form::parse(headers, body)?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| bad("`grant_type` is required"))?
        .to_owned();
    if grant_type != TOKEN_EXCHANGE && grant_type != "client_credentials" {
        return Err(TokenError::new(
            Code::UnsupportedGrantType,
            format!(
                "grant type `{}` is not supported",
                grant_type.chars().take(80).collect::<String>()
            ),
        ));
    }
    let auth = authenticate(state, headers, &form).await?;
    let Client::Agent(agent) = auth.client.clone() else {
        // Gates authenticate for introspection only.
        return refuse(
            state,
            &auth,
            None,
            TokenError::new(
                Code::UnauthorizedClient,
                "gates cannot obtain access tokens",
            ),
        )
        .await;
    };
    let proof = match dpop(state, headers, "/oauth2/token") {
        Ok(p) => p,
        Err(e) => return refuse(state, &auth, None, e).await,
    };
    let mut jtis = auth.jtis.clone();
    jtis.push(JtiUse {
        kind: "dpop",
        scope: proof.jkt().to_owned(),
        jti: proof.jti().to_owned(),
        expires_at: (proof.iat() + 360) * 1000,
    });
    let auth = Authenticated {
        client: auth.client,
        jtis,
    };
    if grant_type == TOKEN_EXCHANGE && form.get("subject_token_type") == Some(ACCESS_TOKEN_TYPE) {
        return match sub_delegate(state, &agent, &auth, &proof, &form).await {
            Ok(r) => Ok(r),
            Err((e, parent)) => refuse(state, &auth, parent.as_ref(), e).await,
        };
    }
    let delegation = match grant(state, &agent, &grant_type, &form).await {
        Ok(d) => d,
        Err(e) => return refuse(state, &auth, None, e).await,
    };
    let (scope, aud) = match narrow(state, &delegation, &form) {
        Ok(x) => x,
        Err(e) => return refuse(state, &auth, Some(&delegation), e).await,
    };
    let now = state.now();
    let now_secs = now / 1000;
    let exp = token_exp(state, &delegation, now_secs);
    if exp <= now_secs {
        return refuse(
            state,
            &auth,
            Some(&delegation),
            TokenError::new(Code::InvalidGrant, "the delegation has expired"),
        )
        .await;
    }
    let chain = state
        .store
        .delegation_chain(&delegation.tenant, &delegation.id)
        .await?;
    let Minted {
        token: access_token,
        claims,
        record,
        human,
        kid,
        key,
    } = mint(
        state,
        &agent,
        &chain,
        &scope,
        aud.clone(),
        proof.jkt().to_owned(),
        now,
    )
    .await?;
    let jti = claims.jti.clone();
    let event = agent_event(
        &agent,
        EventKind::TokenIssued,
        Some(&delegation),
        Some(&human),
        Outcome::Allow,
        vec![format!("aud {}", aud.join(" "))],
        Some(jti.clone()),
    );
    let committed = state
        .store
        .commit(
            Mutation::TokenRequest {
                jtis: auth.jtis.clone(),
                issue: Some(record),
                now,
                seen: Some((agent.tenant.clone(), agent.id.clone())),
            },
            vec![(agent.tenant.clone(), event)],
        )
        .await;
    match committed {
        Ok(_) => remember_signed(&access_token, &claims, kid, key),
        Err(StoreError::Conflict(msg)) => {
            // Replay, or the delegation/agent was revoked between the checks and the commit.
            let e = conflict_error(&msg);
            if e.code == Code::InvalidGrant {
                return refuse(state, &auth, Some(&delegation), e).await;
            }
            return Err(e);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(token_response(
        &access_token,
        &claims,
        now_secs,
        grant_type == TOKEN_EXCHANGE,
        None,
    ))
}

/// Maps a commit-time conflict to the protocol error it means.
fn conflict_error(msg: &str) -> TokenError {
    if msg.starts_with("assertion") {
        TokenError::new(
            Code::InvalidClient,
            "client authentication failed: the assertion `jti` was already used",
        )
    } else if msg.starts_with("actor") {
        TokenError::new(
            Code::InvalidGrant,
            "invalid actor token: its `jti` was already used",
        )
    } else if msg.starts_with("dpop") {
        TokenError::new(Code::InvalidDpopProof, "the DPoP proof was already used")
    } else {
        TokenError::new(
            Code::InvalidGrant,
            "the delegation or agent is no longer active",
        )
    }
}

/// Records a refusal of a well-formed, authenticated request (ids consumed, `token.refused`
/// receipt) and returns the error — or 503 if the ledger cannot record it (fail closed).
async fn refuse(
    state: &AppState,
    auth: &Authenticated,
    delegation: Option<&Delegation>,
    err: TokenError,
) -> Result<Response, TokenError> {
    let (tenant, event) = match &auth.client {
        Client::Agent(a) => (
            a.tenant.clone(),
            agent_event(
                a,
                EventKind::TokenRefused,
                delegation,
                None,
                Outcome::Deny,
                vec![err.code.parts().0.to_owned()],
                None,
            ),
        ),
        Client::Gate(g) => (
            g.tenant.clone(),
            gate_event(
                g,
                EventKind::TokenRefused,
                vec![err.code.parts().0.to_owned()],
            ),
        ),
    };
    let committed = state
        .store
        .commit(
            Mutation::TokenRequest {
                jtis: auth.jtis.clone(),
                issue: None,
                now: state.now(),
                seen: None,
            },
            vec![(tenant, event)],
        )
        .await;
    match committed {
        Ok(_) => Err(err),
        Err(StoreError::Conflict(msg)) => Err(conflict_error(&msg)),
        Err(e) => Err(e.into()),
    }
}

/// The delegation a grant draws on.
async fn grant(
    state: &AppState,
    agent: &Agent,
    grant_type: &str,
    form: &Form,
) -> Result<Delegation, TokenError> {
    match grant_type {
        TOKEN_EXCHANGE => redeem(state, agent, form).await,
        "client_credentials" => covering_mandate(state, agent, form).await,
        other => Err(TokenError::new(
            Code::UnsupportedGrantType,
            format!(
                "grant type `{}` is not supported",
                other.chars().take(80).collect::<String>()
            ),
        )),
    }
}

/// DESIGN §4 grant 1: redeem a signed delegation document (RFC 8693 token exchange).
async fn redeem(state: &AppState, agent: &Agent, form: &Form) -> Result<Delegation, TokenError> {
    if form.get("actor_token").is_some() {
        return Err(bad(
            "`actor_token` is used only to delegate an access token (`subject_token_type` access_token)",
        ));
    }
    match form.get("subject_token_type") {
        Some(DELEGATION_TOKEN_TYPE) => {}
        Some(_) => {
            return Err(bad(format!(
                "`subject_token_type` must be `{DELEGATION_TOKEN_TYPE}`"
            )));
        }
        None => return Err(bad("`subject_token_type` is required")),
    }
    if form
        .get("requested_token_type")
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(bad(format!(
            "`requested_token_type` must be `{ACCESS_TOKEN_TYPE}`"
        )));
    }
    let doc = form
        .get("subject_token")
        .ok_or_else(|| bad("`subject_token` is required"))?;
    let invalid = |why: &str| {
        TokenError::new(
            Code::InvalidGrant,
            format!("invalid delegation document: {why}"),
        )
    };
    let unverified =
        Unverified::parse(doc, &JoseLimits::default()).map_err(|e| invalid(&e.to_string()))?;
    let key = unverified
        .kid()
        .and_then(|kid| state.keys.find(kid, state.now()))
        .ok_or_else(|| invalid("unknown signing key"))?;
    let verified = unverified
        .verify(JwtKind::Delegation, key.public())
        .map_err(|e| invalid(&e.to_string()))?;
    let claims = verified.claims();
    if claims.get("iss").and_then(Value::as_str) != Some(state.issuer.as_ref()) {
        return Err(invalid("wrong issuer"));
    }
    let id = claims
        .get("del")
        .and_then(Value::as_str)
        .and_then(|d| DelegationId::parse(d).ok())
        .ok_or_else(|| invalid("no delegation id"))?;
    let d = state
        .store
        .delegation(&agent.tenant, &id)
        .await?
        .ok_or_else(|| invalid("unknown delegation"))?;
    if d.delegate != agent.id {
        return Err(TokenError::new(
            Code::InvalidGrant,
            "this delegation was made to another agent",
        ));
    }
    if d.parent.is_some() {
        return Err(invalid("not a mandate"));
    }
    check_active(state, &d)?;
    Ok(d)
}

fn check_active(state: &AppState, d: &Delegation) -> Result<(), TokenError> {
    if d.status != DelegationStatus::Active {
        return Err(TokenError::new(
            Code::InvalidGrant,
            "the delegation has been revoked",
        ));
    }
    if d.expires_at <= state.now() {
        return Err(TokenError::new(
            Code::InvalidGrant,
            "the delegation has expired",
        ));
    }
    Ok(())
}

/// DESIGN §4 grant 3: the agent acts under exactly one of its active mandates; with
/// `authorization_details` or `resource`, under the one that covers them.
async fn covering_mandate(
    state: &AppState,
    agent: &Agent,
    form: &Form,
) -> Result<Delegation, TokenError> {
    let mandates = state
        .store
        .active_mandates(&agent.tenant, &agent.id, state.now())
        .await?;
    let filtered: Vec<Delegation> =
        if form.get("authorization_details").is_some() || !form.all("resource").is_empty() {
            mandates
                .into_iter()
                .filter(|m| narrow(state, m, form).is_ok())
                .collect()
        } else {
            mandates
        };
    match filtered.len() {
        0 => Err(TokenError::new(
            Code::InvalidGrant,
            "no active mandate of this agent covers the request",
        )),
        1 => Ok(filtered
            .into_iter()
            .next()
            .ok_or_else(|| TokenError::new(Code::ServerError, "unreachable"))?),
        n => Err(bad(format!(
            "{n} active mandates match; choose one with `authorization_details` or `resource`, or redeem a mandate by token exchange"
        ))),
    }
}

/// Applies the optional narrowing of the request: `authorization_details` must be ⊑ the
/// delegation (else `invalid_scope`, never a clamp); each `resource` must be a location the
/// scope grants (else `invalid_target`). Returns the token's scope and audience.
fn narrow(
    state: &AppState,
    d: &Delegation,
    form: &Form,
) -> Result<(Scope, Vec<String>), TokenError> {
    let granted: Scope = serde_json::from_value(d.scope.clone())
        .map_err(|_| TokenError::new(Code::ServerError, "stored scope is unreadable"))?;
    let scope = match form.get("authorization_details") {
        None => granted,
        Some(text) => {
            let v = mandate_core::json::parse_strict(text.as_bytes(), 16)
                .map_err(|e| bad(format!("`authorization_details`: {e}")))?;
            let requested = Scope::parse(&v, &state.limits).map_err(|e| {
                TokenError::new(Code::InvalidScope, format!("`authorization_details`: {e}"))
            })?;
            granted.narrow(requested).map_err(|e| {
                TokenError::new(
                    Code::InvalidScope,
                    format!("wider than the delegation: {e}"),
                )
            })?
        }
    };
    let locations = scope_locations(&scope);
    let resources = form.all("resource");
    let aud: Vec<String> = if resources.is_empty() {
        match locations {
            Some(l) if !l.is_empty() => l,
            _ => {
                return Err(TokenError::new(
                    Code::InvalidTarget,
                    "the scope names no location: name the resource server with `resource`",
                ));
            }
        }
    } else {
        let mut out = Vec::new();
        for r in resources {
            let loc = Location::parse(r)
                .map_err(|e| TokenError::new(Code::InvalidTarget, format!("`resource`: {e}")))?;
            let ok = match &locations {
                None => true,
                Some(l) => l.iter().any(|x| x == loc.as_str()),
            };
            if !ok {
                return Err(TokenError::new(
                    Code::InvalidTarget,
                    format!(
                        "`resource` `{}` is not granted by the delegation",
                        loc.as_str()
                    ),
                ));
            }
            if !out.iter().any(|x: &String| x == loc.as_str()) {
                out.push(loc.as_str().to_owned());
            }
        }
        out
    };
    Ok((scope, aud))
}

/// The locations of a scope; `None` if some detail allows any location.
fn scope_locations(scope: &Scope) -> Option<Vec<String>> {
    let v = serde_json::to_value(scope).ok()?;
    let mut out: Vec<String> = Vec::new();
    for d in v.as_array()? {
        let locs = d.get("locations")?.as_array()?;
        for s in locs.iter().filter_map(Value::as_str) {
            if !out.iter().any(|x| x == s) {
                out.push(s.to_owned());
            }
        }
    }
    Some(out)
}

/// The `scope` claim: the granted actions, space separated, sorted.
fn actions_of(scope: &Scope) -> String {
    let v = serde_json::to_value(scope).unwrap_or(Value::Null);
    let mut actions: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("actions")?.as_array().cloned())
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    actions.sort();
    actions.dedup();
    actions.join(" ")
}

/// RFC 8693 §4.1 `act`: the current agent outermost, earlier agents nested inside.
fn actor_claim(state: &AppState, chain: &[Delegation]) -> Value {
    let mut act = Value::Null;
    for d in chain {
        let sub = state.trust_domain.agent_spiffe_id(&d.delegate);
        act = if act.is_null() {
            json!({"sub": sub})
        } else {
            json!({"sub": sub, "act": act})
        };
    }
    act
}

fn agent_event(
    agent: &Agent,
    kind: EventKind,
    d: Option<&Delegation>,
    human: Option<&str>,
    decision: Outcome,
    reasons: Vec<String>,
    token: Option<String>,
) -> Event {
    Event {
        kind,
        actor: Actor {
            agent: Some(agent.id.to_string()),
            chain: vec![],
            human: None,
        },
        on_behalf_of: human.map(str::to_owned),
        delegation: d.map(|d| d.id.to_string()),
        token,
        action: Some("token".into()),
        resource: Some("oauth2/token".into()),
        decision,
        reasons,
        request_hash: None,
    }
}

fn gate_event(gate: &Gate, kind: EventKind, reasons: Vec<String>) -> Event {
    Event {
        kind,
        actor: Actor {
            agent: None,
            chain: vec![gate.id.to_string()],
            human: None,
        },
        on_behalf_of: None,
        delegation: None,
        token: None,
        action: Some("token".into()),
        resource: Some("oauth2/token".into()),
        decision: Outcome::Deny,
        reasons,
        request_hash: None,
    }
}

/// An access token signed for an agent, with what is recorded about it.
struct Minted {
    token: String,
    claims: AccessTokenClaims,
    record: TokenRecord,
    /// The human at the root of the chain (`sub`).
    human: String,
    /// The signing key: its id and public key bytes.
    kid: String,
    key: [u8; 32],
}

/// RFC 9068 §2.2 and DESIGN §4: signs an access token for `agent` under the last delegation of
/// `chain`, bound to `jkt`, living the token lifetime but never past the delegation.
async fn mint(
    state: &AppState,
    agent: &Agent,
    chain: &[Delegation],
    scope: &Scope,
    aud: Vec<String>,
    jkt: String,
    now: i64,
) -> Result<Minted, TokenError> {
    let fault = |m: &str| TokenError::new(Code::ServerError, m);
    let delegation = chain
        .last()
        .ok_or_else(|| fault("empty delegation chain"))?;
    let human = match chain.first().map(|d| &d.delegator) {
        Some(Delegator::Human(h)) => h.to_string(),
        _ => return Err(fault("delegation chain has no human root")),
    };
    let now_secs = now / 1000;
    let exp = token_exp(state, delegation, now_secs);
    let jti = b64url(
        &random::<16>()
            .map_err(|_| TokenError::new(Code::TemporarilyUnavailable, "no randomness"))?,
    );
    let status_idx = state.status_indexes.next().await?;
    let claims = AccessTokenClaims {
        iss: state.issuer.to_string(),
        sub: human.clone(),
        aud,
        client_id: agent.id.to_string(),
        iat: now_secs,
        nbf: now_secs,
        exp,
        jti: jti.clone(),
        authorization_details: serde_json::to_value(scope).map_err(|_| fault("serialisation"))?,
        scope: actions_of(scope),
        act: actor_claim(state, chain),
        cnf: Confirmation { jkt: jkt.clone() },
        del: delegation.id.to_string(),
        dpt: delegation.depth,
        cmt: agent.commitment.clone(),
        tnt: agent.tenant.to_string(),
        status: Some(status_claim(state, status_idx)),
        // The chain's prohibitions (inherited ones included), so offline gates enforce them.
        prohibitions: delegation
            .prohibitions
            .as_array()
            .is_some_and(|p| !p.is_empty())
            .then(|| delegation.prohibitions.clone()),
    };
    let key = state.keys.current();
    let kid = key.kid();
    let token = jose::sign(
        JwtKind::AccessToken,
        Some(&kid),
        state.policy.alg,
        &claims.to_value(),
        key.signing_key(),
    );
    let record = TokenRecord {
        jti,
        tenant: agent.tenant.clone(),
        delegation: delegation.id.clone(),
        agent: agent.id.clone(),
        jkt,
        issued_at: now,
        expires_at: exp * 1000,
        status: TokenStatus::Active,
        status_idx: Some(status_idx),
    };
    Ok(Minted {
        token,
        claims,
        record,
        human,
        kid,
        key: key.public().bytes(),
    })
}

/// The token lifetime, cut at the delegation's expiry (unix seconds).
fn token_exp(state: &AppState, delegation: &Delegation, now_secs: i64) -> i64 {
    (now_secs + state.policy.token_lifetime_secs).min(delegation.expires_at / 1000)
}

/// RFC 6749 §5.1 (with RFC 9449 `token_type: DPoP`; RFC 8693 §2.2.1 `issued_token_type` for
/// exchanges; RFC 9396 `authorization_details`), never cached.
fn token_response(
    token: &str,
    claims: &AccessTokenClaims,
    now_secs: i64,
    exchange: bool,
    delegation: Option<&DelegationId>,
) -> Response {
    let mut body = json!({
        "access_token": token,
        "token_type": "DPoP",
        "expires_in": claims.exp - now_secs,
        "authorization_details": claims.authorization_details,
        "scope": claims.scope,
    });
    if exchange {
        body["issued_token_type"] = json!(ACCESS_TOKEN_TYPE);
    }
    if let Some(d) = delegation {
        body["delegation"] = json!(d);
    }
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Verifies `unverified` as `kind` with the first of `keys` that is usable at `now` (and has
/// id `kid`, if given) and accepts it; returns the verified JWT and that key's id.
pub(crate) fn verify_with_keys(
    unverified: &Unverified,
    kind: JwtKind,
    keys: &[mandate_store::KeyRecord],
    now: i64,
    kid: Option<&str>,
) -> Option<(Verified, String)> {
    keys.iter()
        .filter(|k| k.usable(now) && kid.is_none_or(|kid| k.kid == kid))
        .find_map(|k| {
            unverified
                .clone()
                .verify(kind, &k.jwk)
                .ok()
                .map(|v| (v, k.kid.clone()))
        })
}
