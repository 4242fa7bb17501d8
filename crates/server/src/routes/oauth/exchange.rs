//! Sub-delegation by token exchange (RFC 8693; DESIGN §4 grant 2).
use super::*;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use sha2::{Digest, Sha256};

/// RFC 8693 §3: the actor token type of a sub-agent's signed consent.
pub(super) const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

pub(super) type Refusal = (TokenError, Option<Delegation>);

/// What a subject token's verification yields that an exchange uses.
struct SubjectClaims {
    client_id: String,
    jkt: String,
    jti: String,
}

/// Access tokens this server signed and issued, by the SHA-256 of their exact bytes.
///
/// An exchange presents one of our own access tokens as its subject token. Verifying its
/// Ed25519 signature again proves only that these bytes are what one of our keys signed, which
/// this table already records: an entry is added after the token's issuance is committed, and a
/// hit is accepted only if the signing key is still one this server verifies with at that moment
/// (`KeyRing::find`, the same test the signature path applies) and the claims' validity window
/// holds exactly as RFC 9068 §4 validation would check it. Everything else — revocation,
/// expiry of the chain, agent status — is still read from the store and re-checked at commit.
/// Bounded: two generations of at most `SIGNED_GENERATION` entries each; a miss falls back to
/// full signature verification.
struct SignedTokens {
    current: HashMap<[u8; 32], Arc<SignedToken>>,
    previous: HashMap<[u8; 32], Arc<SignedToken>>,
}

/// The verified content of a token this server signed.
struct SignedToken {
    /// The signing key: its id and public key bytes.
    kid: String,
    key: [u8; 32],
    iss: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    client_id: String,
    jkt: String,
    jti: String,
}

const SIGNED_GENERATION: usize = 8_192;

static SIGNED: LazyLock<Mutex<SignedTokens>> = LazyLock::new(|| {
    Mutex::new(SignedTokens {
        current: HashMap::new(),
        previous: HashMap::new(),
    })
});

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Records an access token this server has just signed and committed.
pub(super) fn remember_signed(token: &str, claims: &AccessTokenClaims, kid: String, key: [u8; 32]) {
    let entry = Arc::new(SignedToken {
        kid,
        key,
        iss: claims.iss.clone(),
        iat: claims.iat,
        nbf: claims.nbf,
        exp: claims.exp,
        client_id: claims.client_id.clone(),
        jkt: claims.cnf.jkt.clone(),
        jti: claims.jti.clone(),
    });
    let digest = token_digest(token);
    if let Ok(mut t) = SIGNED.lock() {
        if t.current.len() >= SIGNED_GENERATION {
            t.previous = std::mem::take(&mut t.current);
        }
        t.current.insert(digest, entry);
    }
}

/// The subject token's claims: from the table of tokens we signed when it is there and still
/// acceptable, else by full verification (signature with our keys, RFC 9068 §4 claims).
fn subject_claims(state: &AppState, token: &str) -> Option<SubjectClaims> {
    let digest = token_digest(token);
    let hit = SIGNED.lock().ok().and_then(|t| {
        t.current
            .get(&digest)
            .or_else(|| t.previous.get(&digest))
            .cloned()
    });
    if let Some(s) = hit {
        let now = state.now();
        let expect = AccessTokenExpectation::new(&state.issuer, None, now / 1000);
        let key_ok = state
            .keys
            .find(&s.kid, now)
            .is_some_and(|k| k.public().bytes() == s.key);
        // The checks of `AccessTokenClaims::from_verified` (RFC 7519 §4.1.4, §4.1.5).
        let window_ok = s.exp > expect.now.saturating_sub(expect.leeway)
            && s.nbf <= expect.now.saturating_add(expect.leeway)
            && s.iat <= expect.now.saturating_add(expect.leeway);
        if !(key_ok && window_ok && s.iss == expect.issuer) {
            return None;
        }
        return Some(SubjectClaims {
            client_id: s.client_id.clone(),
            jkt: s.jkt.clone(),
            jti: s.jti.clone(),
        });
    }
    let claims = verify_access_token(state, token)?;
    Some(SubjectClaims {
        client_id: claims.client_id,
        jkt: claims.cnf.jkt,
        jti: claims.jti,
    })
}

/// DESIGN §4 grant 2: the caller delegates part of its authority to a sub-agent.
///
/// The subject token is the caller's own access token, and the caller's DPoP proof must be made
/// with the key that token is bound to (a token bound to K is never exchanged without proving K).
/// The actor token is the sub-agent's consent, signed by one of its registered keys, naming the
/// caller in `delegator` and optionally the key (`cnf.jkt`) the new token is bound to; without
/// it, the new token is bound to the sub-agent key that signed the consent. Attenuation follows
/// DESIGN §3 exactly (`DelegationTerms::attenuate`): anything wider is an error, never a clamp.
pub(super) async fn sub_delegate(
    state: &AppState,
    caller: &Agent,
    auth: &Authenticated,
    proof: &jose::DpopProof,
    form: &Form,
) -> Result<Response, Refusal> {
    let grant_err = |msg: &str| (TokenError::new(Code::InvalidGrant, msg), None);
    let subject = form
        .get("subject_token")
        .ok_or_else(|| (bad("`subject_token` is required"), None))?;
    let claims =
        subject_claims(state, subject).ok_or_else(|| grant_err("invalid subject token"))?;
    if claims.client_id != caller.id.as_str() {
        return Err(grant_err("the subject token was issued to another agent"));
    }
    if claims.jkt != proof.jkt() {
        return Err(grant_err(
            "the DPoP proof must be made with the key the subject token is bound to",
        ));
    }
    let view = state
        .store
        .token(&claims.jti)
        .await
        .map_err(|e| (e.into(), None))?
        .ok_or_else(|| grant_err("invalid subject token"))?;
    if view.token.tenant != caller.tenant
        || !is_active(state, &view).await.map_err(|e| (e, None))?
    {
        return Err(grant_err("the subject token is no longer active"));
    }
    let parent = view
        .chain
        .last()
        .cloned()
        .ok_or_else(|| grant_err("invalid subject token"))?;
    let with_parent = |e: TokenError| (e, Some(parent.clone()));

    // The sub-agent's consent.
    if form.get("actor_token_type") != Some(JWT_TOKEN_TYPE) {
        return Err(with_parent(bad(format!(
            "`actor_token_type` must be `{JWT_TOKEN_TYPE}`"
        ))));
    }
    let actor = form
        .get("actor_token")
        .ok_or_else(|| with_parent(bad("`actor_token` is required to delegate")))?;
    let bad_actor = |why: &str| {
        with_parent(TokenError::new(
            Code::InvalidGrant,
            format!("invalid actor token: {why}"),
        ))
    };
    let unverified =
        Unverified::parse(actor, &JoseLimits::default()).map_err(|e| bad_actor(&e.to_string()))?;
    let sub_id = unverified
        .unverified_client_id()
        .map_err(|e| bad_actor(&e.to_string()))?
        .to_owned();
    let Some(Client::Agent(sub)) = state
        .store
        .client(&sub_id)
        .await
        .map_err(|e| (e.into(), None))?
    else {
        return Err(bad_actor("unknown agent"));
    };
    if sub.tenant != caller.tenant || sub.status != AgentStatus::Active {
        return Err(bad_actor("unknown agent"));
    }
    if sub.id == caller.id {
        return Err(with_parent(bad("an agent cannot delegate to itself")));
    }
    let now = state.now();
    let (verified, signing_kid) =
        verify_with_keys(&unverified, JwtKind::ActorToken, &sub.keys, now, None)
            .ok_or_else(|| bad_actor("signature does not verify with the agent's keys"))?;
    let consent = jose::verify_client_assertion(
        &verified,
        &AssertionExpectation::new(&state.issuer, now / 1000),
    )
    .map_err(|e| bad_actor(&e.to_string()))?;
    if verified.claims().get("delegator").and_then(Value::as_str) != Some(caller.id.as_str()) {
        return Err(bad_actor("`delegator` must name the delegating agent"));
    }
    let jkt = match verified.claims().get("cnf") {
        None => signing_kid,
        Some(cnf) => cnf
            .get("jkt")
            .and_then(Value::as_str)
            .filter(|j| {
                j.len() == 43
                    && mandate_core::encoding::b64url_decode(j).is_some_and(|b| b.len() == 32)
            })
            .ok_or_else(|| bad_actor("`cnf.jkt` must be an RFC 7638 SHA-256 thumbprint"))?
            .to_owned(),
    };

    // Attenuation (DESIGN §3): exactly what is asked, within the parent, or an error.
    let parent_terms: mandate_core::scope::DelegationTerms = serde_json::from_value(json!({
        "scope": parent.scope, "prohibitions": parent.prohibitions,
        "expires_at": parent.expires_at, "depth": parent.depth, "max_depth": parent.max_depth,
    }))
    .map_err(|_| {
        with_parent(TokenError::new(
            Code::ServerError,
            "stored delegation is unreadable",
        ))
    })?;
    let requested_scope = match form.get("authorization_details") {
        None => parent_terms.scope().clone(),
        Some(text) => {
            let v = mandate_core::json::parse_strict(text.as_bytes(), 16)
                .map_err(|e| with_parent(bad(format!("`authorization_details`: {e}"))))?;
            Scope::parse(&v, &state.limits).map_err(|e| {
                with_parent(TokenError::new(
                    Code::InvalidScope,
                    format!("`authorization_details`: {e}"),
                ))
            })?
        }
    };
    let extra = match form.get("prohibitions") {
        None => mandate_core::scope::Prohibitions::none(),
        Some(text) => {
            let v = mandate_core::json::parse_strict(text.as_bytes(), 16)
                .map_err(|e| with_parent(bad(format!("`prohibitions`: {e}"))))?;
            mandate_core::scope::Prohibitions::parse(&v, &state.limits)
                .map_err(|e| with_parent(bad(format!("`prohibitions`: {e}"))))?
        }
    };
    let expires_at = match form.get("expires_in") {
        None => None,
        Some(t) => {
            let secs: i64 = t
                .parse()
                .map_err(|_| with_parent(bad("`expires_in` must be a number of seconds")))?;
            Some(now.saturating_add(secs.saturating_mul(1000)))
        }
    };
    let ceiling: Scope = serde_json::from_value(sub.ceiling.clone()).map_err(|_| {
        with_parent(TokenError::new(
            Code::ServerError,
            "stored ceiling is unreadable",
        ))
    })?;
    if !requested_scope.is_within(&ceiling) {
        return Err(with_parent(TokenError::new(
            Code::InvalidScope,
            "the request exceeds the sub-agent's ceiling",
        )));
    }
    let request = mandate_core::scope::AttenuationRequest {
        scope: requested_scope,
        extra_prohibitions: extra,
        expires_at,
    };
    let terms = parent_terms
        .attenuate(request, now, state.policy.strict_attenuation)
        .map_err(|e| with_parent(attenuation_error(&e)))?;
    let scope = terms.scope().clone();
    let locations = scope_locations(&scope);
    let aud = match (form.all("resource"), locations.clone()) {
        (r, _) if !r.is_empty() => {
            let mut out = Vec::new();
            for x in r {
                let loc = Location::parse(x).map_err(|e| {
                    with_parent(TokenError::new(
                        Code::InvalidTarget,
                        format!("`resource`: {e}"),
                    ))
                })?;
                out.push(loc.as_str().to_owned());
            }
            out
        }
        (_, Some(l)) if !l.is_empty() => l,
        _ => {
            return Err(with_parent(TokenError::new(
                Code::InvalidTarget,
                "the scope names no location: name the resource server with `resource`",
            )));
        }
    };
    if locations.is_some_and(|l| aud.iter().any(|a| !l.contains(a))) {
        return Err(with_parent(TokenError::new(
            Code::InvalidTarget,
            "`resource` is not granted by the delegation",
        )));
    }
    let rnd = |_| {
        with_parent(TokenError::new(
            Code::TemporarilyUnavailable,
            "no randomness",
        ))
    };
    let id = DelegationId::from_parts(now, random().map_err(rnd)?);
    let scope_v = serde_json::to_value(terms.scope())
        .map_err(|_| with_parent(TokenError::new(Code::ServerError, "serialisation")))?;
    let prohibitions_v = serde_json::to_value(terms.prohibitions())
        .map_err(|_| with_parent(TokenError::new(Code::ServerError, "serialisation")))?;
    let digest = mandate_core::jcs::sha256(&json!({
        "tenant": caller.tenant, "delegator": caller.id, "agent": sub.id, "parent": parent.id,
        "authorization_details": scope_v, "prohibitions": prohibitions_v,
        "expires_at": terms.expires_at() / 1000, "max_depth": terms.max_depth(),
    }))
    .map(|d| mandate_core::encoding::hex(&d))
    .map_err(|_| with_parent(TokenError::new(Code::ServerError, "serialisation")))?;
    let delegation = Delegation {
        id: id.clone(),
        tenant: caller.tenant.clone(),
        parent: Some(parent.id.clone()),
        root: parent.root.clone(),
        delegator: Delegator::Agent(caller.id.clone()),
        delegate: sub.id.clone(),
        scope: scope_v.clone(),
        prohibitions: prohibitions_v,
        purpose: form
            .get("purpose")
            .map(|p| p.chars().take(512).collect())
            .unwrap_or_else(|| parent.purpose.clone()),
        task: parent.task.clone(),
        depth: terms.depth(),
        max_depth: terms.max_depth(),
        expires_at: terms.expires_at(),
        created_at: now,
        status: DelegationStatus::Active,
        revoked_at: None,
        digest,
        human_signature: None,
    };
    let mut chain = view.chain;
    chain.push(delegation.clone());
    let now_secs = now / 1000;
    let Minted {
        token: access_token,
        claims: token_claims,
        record,
        human,
        kid,
        key,
    } = mint(state, &sub, &chain, &scope, aud.clone(), jkt, now)
        .await
        .map_err(&with_parent)?;
    let jti = token_claims.jti.clone();
    let mut jtis = auth.jtis.clone();
    // Consents carry `delegator` and client assertions must not, so the two sets are disjoint
    // and each has its own single-use namespace.
    jtis.push(JtiUse {
        kind: "actor",
        scope: consent.client_id().to_owned(),
        jti: consent.jti().to_owned(),
        expires_at: consent.exp().saturating_add(60) * 1000,
    });
    let mut created = agent_event(
        caller,
        EventKind::DelegationCreated,
        Some(&delegation),
        Some(&human),
        Outcome::Allow,
        vec![
            format!("delegate {}", sub.id),
            format!("depth {}", delegation.depth),
        ],
        None,
    );
    created.actor.chain = chain
        .iter()
        .rev()
        .skip(1)
        .map(|d| d.delegate.to_string())
        .collect();
    created.action = Some("delegate".into());
    let issued = agent_event(
        &sub,
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
            Mutation::Delegate {
                delegation: delegation.clone(),
                jtis,
                issue: record,
                now,
            },
            vec![
                (caller.tenant.clone(), created),
                (caller.tenant.clone(), issued),
            ],
        )
        .await;
    match committed {
        Ok(_) => remember_signed(&access_token, &token_claims, kid, key),
        Err(StoreError::Conflict(msg)) => return Err(with_parent(conflict_error(&msg))),
        Err(e) => return Err((e.into(), None)),
    }
    Ok(token_response(
        &access_token,
        &token_claims,
        now_secs,
        true,
        Some(&id),
    ))
}

/// DESIGN §3: wider scope is `invalid_scope`; more depth or time than the parent holds, or an
/// expired parent, is `invalid_grant`. Never a clamp.
pub(super) fn attenuation_error(e: &mandate_core::scope::ScopeError) -> TokenError {
    use mandate_core::scope::ScopeError as S;
    let code = match e {
        S::Widening { .. } | S::NotStrict => Code::InvalidScope,
        _ => Code::InvalidGrant,
    };
    TokenError::new(code, e.to_string())
}
