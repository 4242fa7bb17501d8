//! Mandates (a human delegates to an agent), delegations as data, and human signing keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ed25519_dalek::Signature;
use mandate_core::encoding::{b64url_decode, hex};
use mandate_core::id::{AgentId, DelegationId, HumanId};
use mandate_core::jose::{self, JwtKind};
use mandate_core::jwk::PublicJwk;
use mandate_core::receipt::EventKind;
use mandate_core::scope::{DelegationTerms, Prohibitions, Scope};
use mandate_store::{
    AgentStatus, AppliedValue, Delegation, DelegationStatus, Delegator, JtiUse, KeyRecord,
    KeyStatus, Mutation,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ReasonBody, human_event, not_found_id, text};
use crate::error::{ApiError, ProblemKind};
use crate::extract::{Caller, StrictJson};
use crate::state::{AppState, random};
use crate::views;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewMandateBody {
    agent: String,
    authorization_details: Value,
    #[serde(default)]
    prohibitions: Option<Value>,
    expires_in: Option<i64>,
    expires_at: Option<i64>,
    max_depth: Option<u8>,
    purpose: String,
    task_id: Option<String>,
    human_signature: Option<String>,
}

/// The canonical authorization object a mandate's digest (and a human's detached signature)
/// covers: everything the human decides, nothing the server assigns.
pub struct AuthorizationObject<'a> {
    /// Tenant id.
    pub tenant: &'a str,
    /// The delegating human.
    pub human: &'a str,
    /// The delegate agent.
    pub agent: &'a str,
    /// `authorization_details` as sent.
    pub details: &'a Value,
    /// Prohibitions as sent (`[]` when absent).
    pub prohibitions: &'a Value,
    /// Absolute expiry, unix seconds.
    pub expires_at_secs: i64,
    /// Max depth.
    pub max_depth: u8,
    /// Purpose.
    pub purpose: &'a str,
    /// Task id.
    pub task_id: Option<&'a str>,
}

impl AuthorizationObject<'_> {
    /// The JSON object whose RFC 8785 form is hashed and signed.
    pub fn to_value(&self) -> Value {
        json!({
            "tenant": self.tenant,
            "delegator": self.human,
            "agent": self.agent,
            "authorization_details": self.details,
            "prohibitions": self.prohibitions,
            "expires_at": self.expires_at_secs,
            "max_depth": self.max_depth,
            "purpose": self.purpose,
            "task_id": self.task_id,
        })
    }
}

/// `POST /v1/mandates`: the calling human delegates to an agent of their tenant.
pub async fn create_mandate(
    State(state): State<AppState>,
    caller: Caller,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<NewMandateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_writer()?;
    let now = state.now();
    let now_secs = now / 1000;
    let policy = &state.policy;
    let not_found = || not_found_id("agent", &body.agent);
    let agent_id = AgentId::parse(&body.agent).map_err(|_| not_found())?;
    let agent = state
        .store
        .agent(&caller.0.tenant.id, &agent_id)
        .await?
        .ok_or_else(not_found)?;
    if agent.status != AgentStatus::Active {
        return Err(ApiError::new(
            ProblemKind::Conflict,
            format!("agent `{agent_id}` is {}", views::status_word(agent.status)),
        ));
    }
    let purpose = text(&body.purpose, "purpose", 512)?;
    let task_id = body
        .task_id
        .as_deref()
        .map(|t| text(t, "task_id", 128))
        .transpose()?;
    let expires_at = match (body.expires_in, body.expires_at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "send `expires_in` or `expires_at`, not both",
            ));
        }
        (Some(secs), None) => now_secs.saturating_add(secs),
        (None, Some(at)) => at,
        (None, None) => {
            return Err(ApiError::bad_request(
                "`expires_in` (seconds) or `expires_at` (unix seconds) is required",
            ));
        }
    };
    if body.human_signature.is_some() && body.expires_at.is_none() {
        return Err(ApiError::bad_request(
            "a signed mandate must carry an absolute `expires_at`",
        ));
    }
    if expires_at <= now_secs {
        return Err(ApiError::unprocessable(
            "the mandate would already be expired",
        ));
    }
    if expires_at - now_secs > policy.max_mandate_secs {
        return Err(ApiError::unprocessable(format!(
            "a mandate may last at most {} seconds",
            policy.max_mandate_secs
        )));
    }
    let max_depth = body.max_depth.unwrap_or(policy.default_max_depth);
    let scope = Scope::parse(&body.authorization_details, &state.limits)
        .map_err(|e| ApiError::unprocessable(format!("invalid `authorization_details`: {e}")))?;
    let prohibitions_in = body.prohibitions.clone().unwrap_or_else(|| json!([]));
    let prohibitions = Prohibitions::parse(&prohibitions_in, &state.limits)
        .map_err(|e| ApiError::unprocessable(format!("invalid `prohibitions`: {e}")))?;
    let ceiling: Scope = serde_json::from_value(agent.ceiling.clone())
        .map_err(|_| ApiError::new(ProblemKind::Internal, "stored ceiling is unreadable"))?;
    // DESIGN §3: authority only shrinks; a mandate is bounded by the agent's ceiling.
    ceiling.narrow(scope.clone()).map_err(|e| {
        ApiError::unprocessable(format!(
            "`authorization_details` exceed the agent's ceiling: {e}"
        ))
    })?;
    let terms = DelegationTerms::mandate(
        scope.clone(),
        prohibitions.clone(),
        expires_at * 1000,
        max_depth,
        &state.limits,
    )
    .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let details = serde_json::to_value(&scope)
        .map_err(|_| ApiError::new(ProblemKind::Internal, "serialisation"))?;
    let prohibitions_v = serde_json::to_value(&prohibitions)
        .map_err(|_| ApiError::new(ProblemKind::Internal, "serialisation"))?;
    let human = &caller.0.human;
    // The object the human signs is made of their own inputs, as sent.
    let object = AuthorizationObject {
        tenant: caller.0.tenant.id.as_str(),
        human: human.id.as_str(),
        agent: agent_id.as_str(),
        details: &body.authorization_details,
        prohibitions: &prohibitions_in,
        expires_at_secs: expires_at,
        max_depth,
        purpose: &purpose,
        task_id: task_id.as_deref(),
    }
    .to_value();
    let digest_bytes =
        mandate_core::jcs::sha256(&object).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let digest = hex(&digest_bytes);
    let keys = state
        .store
        .human_keys(&caller.0.tenant.id, &human.id)
        .await?;
    let active: Vec<&KeyRecord> = keys
        .iter()
        .filter(|k| k.status == KeyStatus::Active)
        .collect();
    let mut jtis = Vec::new();
    if !active.is_empty() || body.human_signature.is_some() {
        let sig = body.human_signature.as_deref().ok_or_else(|| {
            ApiError::unprocessable(
                "this human has a registered signing key: the mandate must carry `human_signature`",
            )
        })?;
        let canonical = mandate_core::jcs::canonicalize(&object)
            .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        let sig = b64url_decode(sig)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or_else(|| {
                ApiError::unprocessable("`human_signature` must be a base64url Ed25519 signature")
            })?;
        let ok = active.iter().any(|k| {
            k.jwk
                .verifying_key()
                .verify_strict(canonical.as_bytes(), &sig)
                .is_ok()
        });
        if !ok {
            return Err(ApiError::unprocessable(
                "`human_signature` does not verify with any active key of this human",
            ));
        }
        // A signed authorization is single-use: replaying it cannot mint a second mandate.
        jtis.push(JtiUse {
            kind: "human-signature",
            scope: human.id.to_string(),
            jti: digest.clone(),
            expires_at: expires_at * 1000,
        });
    }
    let id = DelegationId::from_parts(now, random()?);
    let delegation = Delegation {
        id: id.clone(),
        tenant: caller.0.tenant.id.clone(),
        parent: None,
        root: id.clone(),
        delegator: Delegator::Human(human.id.clone()),
        delegate: agent_id.clone(),
        scope: details.clone(),
        prohibitions: prohibitions_v.clone(),
        purpose: purpose.clone(),
        task: task_id.clone(),
        depth: terms.depth(),
        max_depth: terms.max_depth(),
        expires_at: expires_at * 1000,
        created_at: now,
        status: DelegationStatus::Active,
        revoked_at: None,
        digest: digest.clone(),
        human_signature: body.human_signature.clone(),
    };
    let mut ev = human_event(
        &caller,
        EventKind::DelegationCreated,
        "delegate",
        format!("delegations/{id}"),
        request_hash,
        vec![format!("digest {digest}")],
    );
    ev.delegation = Some(id.to_string());
    ev.actor.agent = None;
    if !jtis.is_empty() {
        state
            .commit(
                Mutation::TokenRequest {
                    jtis,
                    issue: None,
                    now,
                    seen: None,
                },
                vec![],
            )
            .await
            .map_err(|e| match e.kind() {
                ProblemKind::Conflict => ApiError::new(
                    ProblemKind::Conflict,
                    "this signed authorization was already used",
                ),
                _ => e,
            })?;
    }
    state
        .commit(
            Mutation::CreateDelegation(delegation.clone()),
            vec![(delegation.tenant.clone(), ev)],
        )
        .await?;
    let document = delegation_document(&state, &delegation, now_secs);
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "delegation": document, "mandate": views::delegation(&delegation)})),
    ))
}

/// The signed delegation document (`typ: delegation+jwt`) the delegate agent redeems.
pub fn delegation_document(state: &AppState, d: &Delegation, now_secs: i64) -> String {
    let delegator = match &d.delegator {
        Delegator::Human(h) => h.to_string(),
        Delegator::Agent(a) => a.to_string(),
    };
    let claims = json!({
        "iss": state.issuer.as_ref(),
        "sub": delegator,
        "aud": state.issuer.as_ref(),
        "azp": d.delegate,
        "iat": now_secs,
        "exp": d.expires_at / 1000,
        "jti": d.id,
        "del": d.id,
        "tnt": d.tenant,
        "authorization_details": d.scope,
        "prohibitions": d.prohibitions,
        "max_depth": d.max_depth,
        "purpose": d.purpose,
        "task_id": d.task,
        "digest": d.digest,
    });
    let key = state.keys.current();
    jose::sign(
        JwtKind::Delegation,
        Some(&key.kid()),
        state.policy.alg,
        &claims,
        key.signing_key(),
    )
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<Delegation, ApiError> {
    let not_found = || not_found_id("delegation", id);
    let id = DelegationId::parse(id).map_err(|_| not_found())?;
    state
        .store
        .delegation(&caller.0.tenant.id, &id)
        .await?
        .ok_or_else(not_found)
}

/// `GET /v1/delegations/{id}`.
pub async fn show_delegation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(views::delegation(&load(&state, &caller, &id).await?)))
}

/// `POST /v1/delegations/{id}/revoke`: the delegation, its subtree and every token under it.
/// Allowed to owners and admins, and to the human who made the mandate.
pub async fn revoke_delegation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let d = load(&state, &caller, &id).await?;
    let own =
        matches!(&d.root_delegator(&state, &caller).await?, Some(h) if *h == caller.0.human.id);
    if !own {
        caller.require_writer()?;
    }
    let mut ev = human_event(
        &caller,
        EventKind::DelegationRevoked,
        "revoke",
        format!("delegations/{}", d.id),
        request_hash,
        body.reasons()?,
    );
    ev.delegation = Some(d.id.to_string());
    let applied = state
        .commit(
            Mutation::RevokeDelegation {
                tenant: d.tenant.clone(),
                id: d.id.clone(),
                at: state.now(),
            },
            vec![(d.tenant.clone(), ev)],
        )
        .await?;
    let revoked = match applied.value {
        AppliedValue::Count(n) => n,
        _ => 0,
    };
    let now = load(&state, &caller, &id).await?;
    let mut v = views::delegation(&now);
    if let Some(o) = v.as_object_mut() {
        o.insert("revoked_delegations".into(), json!(revoked));
    }
    Ok(Json(v))
}

trait RootDelegator {
    async fn root_delegator(
        &self,
        state: &AppState,
        caller: &Caller,
    ) -> Result<Option<HumanId>, ApiError>;
}

impl RootDelegator for Delegation {
    async fn root_delegator(
        &self,
        state: &AppState,
        caller: &Caller,
    ) -> Result<Option<HumanId>, ApiError> {
        let root = if self.parent.is_none() {
            self.clone()
        } else {
            match state
                .store
                .delegation(&caller.0.tenant.id, &self.root)
                .await?
            {
                Some(r) => r,
                None => return Ok(None),
            }
        };
        Ok(match root.delegator {
            Delegator::Human(h) => Some(h),
            Delegator::Agent(_) => None,
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewHumanKeyBody {
    jwk: Value,
}

/// `POST /v1/humans/{id}/keys`: a human's Ed25519 key for signing mandates (their own, or by
/// an owner/admin).
pub async fn add_human_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<NewHumanKeyBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let not_found = || not_found_id("human", &id);
    let hid = HumanId::parse(&id).map_err(|_| not_found())?;
    if hid != caller.0.human.id {
        caller.require_writer()?;
    }
    let human = state
        .store
        .human(&caller.0.tenant.id, &hid)
        .await?
        .ok_or_else(not_found)?;
    if body.jwk.is_null() {
        return Err(ApiError::bad_request("`jwk` is required"));
    }
    let public = PublicJwk::from_json(&body.jwk)
        .map_err(|e| ApiError::unprocessable(format!("invalid `jwk`: {e}")))?;
    let key = KeyRecord::new(public, state.now());
    let ev = human_event(
        &caller,
        EventKind::HumanKeyAdded,
        "create",
        format!("humans/{}/keys/{}", human.id, key.kid),
        request_hash,
        vec![],
    );
    state
        .commit(
            Mutation::AddHumanKey {
                tenant: human.tenant.clone(),
                human: human.id.clone(),
                key: key.clone(),
            },
            vec![(human.tenant.clone(), ev)],
        )
        .await?;
    Ok((StatusCode::CREATED, Json(views::key(&key))))
}

/// `GET /v1/delegations/{id}/tree`: the delegation and every descendant, nested.
pub async fn delegation_tree(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || not_found_id("delegation", &id);
    let did = DelegationId::parse(&id).map_err(|_| not_found())?;
    let tree = state
        .store
        .delegation_tree(&caller.0.tenant.id, &did)
        .await?
        .ok_or_else(not_found)?;
    fn view(t: &mandate_store::DelegationTree) -> Value {
        let mut v = views::delegation(&t.delegation);
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "children".into(),
                Value::Array(t.children.iter().map(view).collect()),
            );
        }
        v
    }
    Ok(Json(view(&tree)))
}

/// `GET /v1/agents/{id}/delegations`: delegations to the agent (`in`) and from it (`out`).
pub async fn agent_delegations(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || not_found_id("agent", &id);
    let aid = AgentId::parse(&id).map_err(|_| not_found())?;
    state
        .store
        .agent(&caller.0.tenant.id, &aid)
        .await?
        .ok_or_else(not_found)?;
    let (incoming, outgoing) = state
        .store
        .agent_delegations(&caller.0.tenant.id, &aid)
        .await?;
    Ok(Json(json!({
        "in": incoming.iter().map(views::delegation).collect::<Vec<_>>(),
        "out": outgoing.iter().map(views::delegation).collect::<Vec<_>>(),
    })))
}

/// `POST /v1/tokens/{jti}/revoke`: an owner or admin revokes one token of their tenant.
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(jti): Path<String>,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_writer()?;
    let not_found = || not_found_id("token", &jti);
    if jti.len() > 128 {
        return Err(not_found());
    }
    let view = state.store.token(&jti).await?.ok_or_else(not_found)?;
    if view.token.tenant != caller.0.tenant.id {
        return Err(not_found());
    }
    let mut ev = human_event(
        &caller,
        EventKind::TokenRevoked,
        "revoke",
        format!("tokens/{jti}"),
        request_hash,
        body.reasons()?,
    );
    ev.token = Some(jti.clone());
    ev.delegation = Some(view.token.delegation.to_string());
    state
        .commit(
            Mutation::RevokeToken {
                tenant: view.token.tenant.clone(),
                jti: jti.clone(),
                at: state.now(),
            },
            vec![(view.token.tenant.clone(), ev)],
        )
        .await?;
    Ok(Json(json!({"jti": jti, "status": "revoked"})))
}
