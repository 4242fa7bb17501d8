//! Agents, their keys, and gates.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::id::{AgentId, GateId, HumanId};
use mandate_core::identity::commitment;
use mandate_core::jwk::{PublicJwk, private_jwk_from_seed};
use mandate_core::receipt::EventKind;
use mandate_core::scope::{Location, Scope};
use mandate_store::{
    Agent, AgentFilter, AgentStatus, AgentTransition, AppliedValue, Gate, KeyRecord, Mutation,
};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::humans::slug;
use super::{PageQuery, ReasonBody, StrictQuery, human_event, list, not_found_id, text};
use crate::error::{ApiError, ProblemKind};
use crate::extract::{Caller, StrictJson};
use crate::state::{AppState, random};
use crate::views;

/// Initial trust score of a new agent.
const INITIAL_TRUST: u8 = 50;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewAgentBody {
    name: String,
    owner: String,
    purpose: String,
    ceiling: Value,
    jwk: Option<Value>,
}

/// A caller-supplied public key, or a fresh server-generated one with its private JWK (to be
/// returned exactly once).
fn key_or_generate(jwk: Option<&Value>, now: i64) -> Result<(KeyRecord, Option<Value>), ApiError> {
    match jwk {
        Some(v) => {
            let public = PublicJwk::from_json(v)
                .map_err(|e| ApiError::unprocessable(format!("invalid `jwk`: {e}")))?;
            Ok((KeyRecord::new(public, now), None))
        }
        None => {
            let seed = Zeroizing::new(random::<32>()?);
            let (public, private) = private_jwk_from_seed(&seed);
            Ok((KeyRecord::new(public, now), Some(private)))
        }
    }
}

/// `POST /v1/agents`.
pub async fn create_agent(
    State(state): State<AppState>,
    caller: Caller,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<NewAgentBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_writer()?;
    let now = state.now();
    let name = slug(&body.name, "name")?;
    let purpose = text(&body.purpose, "purpose", 512)?;
    let owner = HumanId::parse(&body.owner).map_err(|_| not_found_id("human", &body.owner))?;
    let ceiling = Scope::parse(&body.ceiling, &state.limits)
        .map_err(|e| ApiError::unprocessable(format!("invalid `ceiling`: {e}")))?;
    let ceiling = serde_json::to_value(&ceiling)
        .map_err(|_| ApiError::new(ProblemKind::Internal, "cannot serialise the ceiling"))?;
    let commitment = commitment(&name, &purpose, &ceiling)
        .map_err(|e| ApiError::unprocessable(format!("invalid `ceiling`: {e}")))?;
    let (key, private_jwk) = key_or_generate(body.jwk.as_ref(), now)?;
    let agent = Agent {
        id: AgentId::from_parts(now, random()?),
        tenant: caller.0.tenant.id.clone(),
        owner,
        name,
        purpose,
        ceiling,
        commitment,
        status: AgentStatus::Active,
        trust: INITIAL_TRUST,
        keys: vec![key],
        created_at: now,
        last_seen_at: None,
    };
    let ev = human_event(
        &caller,
        EventKind::AgentRegistered,
        "create",
        format!("agents/{}", agent.id),
        request_hash,
        vec![format!("commitment {}", agent.commitment)],
    );
    state
        .commit(
            Mutation::CreateAgent(agent.clone()),
            vec![(agent.tenant.clone(), ev)],
        )
        .await?;
    let trust = crate::trust::of(&state, &agent).await?;
    let mut out = json!({"agent": views::agent(&state, &agent, &trust)});
    if let (Some(p), Some(o)) = (private_jwk, out.as_object_mut()) {
        o.insert("private_jwk".into(), p);
    }
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AgentQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    status: Option<AgentStatus>,
    owner: Option<String>,
}

/// `GET /v1/agents`.
pub async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
    StrictQuery(q): StrictQuery<AgentQuery>,
) -> Result<Json<Value>, ApiError> {
    let (page, limit) = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let owner = match q.owner {
        Some(o) => match HumanId::parse(&o) {
            Ok(id) => Some(id),
            // A malformed owner matches no agent.
            Err(_) => return Ok(Json(json!({"items": [], "next": null}))),
        },
        None => None,
    };
    let filter = AgentFilter {
        status: q.status,
        owner,
    };
    let items = state
        .store
        .agents(&caller.0.tenant.id, &filter, &page)
        .await?;
    let trust = crate::trust::of_many(&state, &items).await?;
    let items: Vec<_> = items.into_iter().zip(trust).collect();
    Ok(Json(list(
        items,
        limit,
        |(a, _)| a.id.to_string(),
        |(a, t)| views::agent(&state, a, t),
    )))
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<Agent, ApiError> {
    let not_found = || not_found_id("agent", id);
    let id = AgentId::parse(id).map_err(|_| not_found())?;
    state
        .store
        .agent(&caller.0.tenant.id, &id)
        .await?
        .ok_or_else(not_found)
}

/// `GET /v1/agents/{id}`.
pub async fn show_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let agent = load(&state, &caller, &id).await?;
    let trust = crate::trust::of(&state, &agent).await?;
    Ok(Json(views::agent(&state, &agent, &trust)))
}

/// `POST /v1/agents/{id}/{action}` for suspend, resume, revoke.
pub async fn transition_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let (to, kind) = match action.as_str() {
        "suspend" => (AgentTransition::Suspend, EventKind::AgentSuspended),
        "resume" => (AgentTransition::Resume, EventKind::AgentResumed),
        "revoke" => (AgentTransition::Revoke, EventKind::AgentRevoked),
        _ => return Err(ApiError::not_found("route")),
    };
    caller.require_writer()?;
    let agent = load(&state, &caller, &id).await?;
    let ev = human_event(
        &caller,
        kind,
        &action,
        format!("agents/{}", agent.id),
        request_hash,
        body.reasons()?,
    );
    let applied = state
        .commit(
            Mutation::TransitionAgent {
                tenant: agent.tenant.clone(),
                id: agent.id.clone(),
                to,
                at: state.now(),
            },
            vec![(agent.tenant.clone(), ev)],
        )
        .await?;
    match applied.value {
        AppliedValue::Agent(a) => {
            let trust = crate::trust::of(&state, &a).await?;
            Ok(Json(views::agent(&state, &a, &trust)))
        }
        _ => Err(ApiError::new(
            ProblemKind::Internal,
            "unexpected store result",
        )),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    jwk: Option<Value>,
    /// Rotate: the agent's other keys stop authenticating after the overlap.
    rotate: Option<bool>,
    /// Overlap of a rotation, seconds (default and maximum from policy).
    overlap_secs: Option<i64>,
}

/// `POST /v1/agents/{id}/keys`.
pub async fn add_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<NewKeyBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_writer()?;
    let agent = load(&state, &caller, &id).await?;
    let now = state.now();
    let retire_others_at = match (body.rotate.unwrap_or(false), body.overlap_secs) {
        (false, Some(_)) => {
            return Err(ApiError::bad_request(
                "`overlap_secs` only applies with `rotate: true`",
            ));
        }
        (false, None) => None,
        (true, overlap) => {
            let overlap = overlap.unwrap_or(state.policy.key_overlap_secs);
            if !(0..=state.policy.max_key_overlap_secs).contains(&overlap) {
                return Err(ApiError::unprocessable(format!(
                    "`overlap_secs` must be between 0 and {}",
                    state.policy.max_key_overlap_secs
                )));
            }
            Some(now + overlap * 1000)
        }
    };
    let (key, private_jwk) = key_or_generate(body.jwk.as_ref(), now)?;
    let ev = human_event(
        &caller,
        EventKind::AgentKeyAdded,
        "create",
        format!("agents/{}/keys/{}", agent.id, key.kid),
        request_hash,
        vec![],
    );
    state
        .commit(
            Mutation::AddAgentKey {
                tenant: agent.tenant.clone(),
                agent: agent.id.clone(),
                key: key.clone(),
                retire_others_at,
            },
            vec![(agent.tenant.clone(), ev)],
        )
        .await?;
    let mut out = json!({"key": views::key(&key)});
    if let (Some(p), Some(o)) = (private_jwk, out.as_object_mut()) {
        o.insert("private_jwk".into(), p);
    }
    Ok((StatusCode::CREATED, Json(out)))
}

/// `DELETE /v1/agents/{id}/keys/{kid}`.
pub async fn retire_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, kid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_writer()?;
    let agent = load(&state, &caller, &id).await?;
    let kid: String = kid.chars().take(64).collect();
    let ev = human_event(
        &caller,
        EventKind::AgentKeyRetired,
        "retire",
        format!("agents/{}/keys/{kid}", agent.id),
        None,
        vec![],
    );
    let applied = state
        .commit(
            Mutation::RetireAgentKey {
                tenant: agent.tenant.clone(),
                agent: agent.id.clone(),
                kid,
                at: state.now(),
            },
            vec![(agent.tenant.clone(), ev)],
        )
        .await?;
    match applied.value {
        AppliedValue::Key(k) => Ok(Json(views::key(&k))),
        _ => Err(ApiError::new(
            ProblemKind::Internal,
            "unexpected store result",
        )),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewGateBody {
    name: String,
    audience: String,
    jwk: Value,
}

/// `POST /v1/gates`.
pub async fn create_gate(
    State(state): State<AppState>,
    caller: Caller,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<NewGateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_writer()?;
    let now = state.now();
    let name = slug(&body.name, "name")?;
    let audience = Location::parse(&body.audience)
        .map_err(|e| ApiError::unprocessable(format!("invalid `audience`: {e}")))?;
    if body.jwk.is_null() {
        return Err(ApiError::bad_request(
            "`jwk` is required: gates authenticate with their own key",
        ));
    }
    let public = PublicJwk::from_json(&body.jwk)
        .map_err(|e| ApiError::unprocessable(format!("invalid `jwk`: {e}")))?;
    let gate = Gate {
        id: GateId::from_parts(now, random()?),
        tenant: caller.0.tenant.id.clone(),
        name,
        audience: audience.as_str().to_owned(),
        keys: vec![KeyRecord::new(public, now)],
        created_at: now,
    };
    let ev = human_event(
        &caller,
        EventKind::GateRegistered,
        "create",
        format!("gates/{}", gate.id),
        request_hash,
        vec![],
    );
    state
        .commit(
            Mutation::CreateGate(gate.clone()),
            vec![(gate.tenant.clone(), ev)],
        )
        .await?;
    Ok((StatusCode::CREATED, Json(views::gate(&gate))))
}

/// `GET /v1/gates`.
pub async fn list_gates(
    State(state): State<AppState>,
    caller: Caller,
    StrictQuery(q): StrictQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (page, limit) = q.page()?;
    let items = state.store.gates(&caller.0.tenant.id, &page).await?;
    Ok(Json(list(items, limit, |g| g.id.to_string(), views::gate)))
}

/// `GET /v1/gates/{id}`.
pub async fn show_gate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || not_found_id("gate", &id);
    let gid = GateId::parse(&id).map_err(|_| not_found())?;
    let gate = state
        .store
        .gate(&caller.0.tenant.id, &gid)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(views::gate(&gate)))
}
