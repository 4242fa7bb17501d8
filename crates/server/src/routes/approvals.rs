//! Human-in-the-loop approvals (DESIGN §7).
//!
//! A gate that meets an action listed in `approval_required_for` asks `POST /v1/approvals/check`
//! about the exact request (its hash over method, target and arguments). The first ask creates a
//! pending approval; a human — the agent's owner, the human at the root of the delegation chain,
//! or a tenant owner/admin — approves or denies it; the gate's next ask for the same request
//! consumes an approval that is approved, unexpired and unused. An approval is single use and
//! bound to its request hash: another request creates another approval. Every creation,
//! decision and use is a ledger receipt, committed with the change (fail closed).

use axum::Json;
use axum::extract::{Path, State};
use mandate_core::id::{AgentId, ApprovalId, DelegationId, HumanId};
use mandate_core::receipt::{Actor, Event, EventKind, Outcome};
use mandate_store::{
    AppliedValue, Approval, ApprovalFilter, ApprovalStatus, Delegation, DelegationStatus,
    Delegator, Gate, Mutation, Role, StoreError,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::gates::{GateCaller, request_hash_hex};
use super::{PageQuery, ReasonBody, StrictQuery, list, not_found_id, text};
use crate::error::{ApiError, ProblemKind};
use crate::extract::{Caller, StrictJson};
use crate::state::{AppState, random};
use crate::views::time;

/// `POST /v1/approvals/check` body.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    request_hash: String,
    delegation: String,
    agent: String,
    action: String,
    resource: String,
    summary: String,
}

/// An approval as the admin API shows it, with its status at `now`.
pub fn view(a: &Approval, now: i64) -> Value {
    let opt = |t: Option<i64>| t.map_or(Value::Null, |t| json!(time(t)));
    json!({
        "id": a.id,
        "tenant": a.tenant,
        "status": a.status_at(now),
        "gate": a.gate,
        "agent": a.agent,
        "delegation": a.delegation,
        "action": a.action,
        "resource": a.resource,
        "summary": a.summary,
        "request_hash": a.request_hash,
        "created_at": time(a.created_at),
        "expires_at": time(a.expires_at),
        "decided_at": opt(a.decided_at),
        "decided_by": a.decided_by,
        "consumed_at": opt(a.consumed_at),
    })
}

/// The human at the root of `d`'s chain (the mandate's delegator).
async fn root_human(state: &AppState, d: &Delegation) -> Result<Option<HumanId>, ApiError> {
    let root = if d.parent.is_none() {
        d.clone()
    } else {
        match state.store.delegation(&d.tenant, &d.root).await? {
            Some(r) => r,
            None => return Ok(None),
        }
    };
    Ok(match root.delegator {
        Delegator::Human(h) => Some(h),
        Delegator::Agent(_) => None,
    })
}

/// A receipt about approval `a`: its request (delegation, action, resource, hash) and id.
fn approval_event(
    kind: EventKind,
    a: &Approval,
    actor: Actor,
    on_behalf_of: Option<&HumanId>,
    decision: Outcome,
    mut reasons: Vec<String>,
) -> Event {
    reasons.insert(0, format!("approval {}", a.id));
    Event {
        kind,
        actor,
        on_behalf_of: on_behalf_of.map(ToString::to_string),
        delegation: Some(a.delegation.to_string()),
        token: None,
        action: Some(a.action.clone()),
        resource: Some(a.resource.clone()),
        decision,
        reasons,
        request_hash: request_hash_hex(&a.request_hash),
    }
}

/// The gate acting for the agent.
fn gate_actor(gate: &Gate, agent: &AgentId) -> Actor {
    Actor {
        agent: Some(agent.to_string()),
        chain: vec![gate.id.to_string()],
        human: None,
    }
}

/// `POST /v1/approvals/check` (gate client assertion): uses an approved approval of this exact
/// request, or reports the pending / denied one, or opens a new pending one.
///
/// Answers 200 with `{"status": "approved", "id"}` (consumed now: single use),
/// `{"status": "pending", "id", "expires_at"}` (unix ms) or `{"status": "denied", "id"}`.
pub async fn check(
    State(state): State<AppState>,
    GateCaller(gate): GateCaller,
    StrictJson { value: body, .. }: StrictJson<CheckBody>,
) -> Result<Json<Value>, ApiError> {
    if request_hash_hex(&body.request_hash).is_none() {
        return Err(ApiError::bad_request(
            "`request_hash` must be the base64url SHA-256 (43 characters) of the canonical request",
        ));
    }
    let not_found = || not_found_id("delegation", &body.delegation);
    let did = DelegationId::parse(&body.delegation).map_err(|_| not_found())?;
    let agent = AgentId::parse(&body.agent).map_err(|_| not_found_id("agent", &body.agent))?;
    let action = state
        .limits
        .vocabulary
        .action(&body.action)
        .map_err(|e| ApiError::unprocessable(format!("invalid `action`: {e}")))?
        .as_str()
        .to_owned();
    let n = body.resource.chars().count();
    if n == 0 || n > 1024 || body.resource.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "`resource` must be 1 to 1024 characters without control characters",
        ));
    }
    let summary = text(&body.summary, "summary", 500)?;
    let d = state
        .store
        .delegation(&gate.tenant, &did)
        .await?
        .ok_or_else(not_found)?;
    if d.delegate != agent {
        return Err(ApiError::unprocessable(format!(
            "delegation `{did}` is not held by agent `{agent}`"
        )));
    }
    let now = state.now();
    if d.status != DelegationStatus::Active || d.expires_at <= now {
        return Err(ApiError::new(
            ProblemKind::Conflict,
            format!("delegation `{did}` is no longer active"),
        ));
    }
    let human = root_human(&state, &d).await?;
    // At most one approval per request is open, and it is the newest: decide on it, and retry
    // if a concurrent call changed it between the read and the commit.
    for _ in 0..3 {
        let current = state
            .store
            .approval_for_request(&gate.tenant, &did, &body.request_hash)
            .await?;
        match current.as_ref().map(|a| (a, a.status_at(now))) {
            Some((a, ApprovalStatus::Approved)) => {
                let ev = approval_event(
                    EventKind::ApprovalConsumed,
                    a,
                    gate_actor(&gate, &agent),
                    human.as_ref(),
                    Outcome::Allow,
                    vec![],
                );
                let committed = state
                    .store
                    .commit(
                        Mutation::ConsumeApproval {
                            tenant: gate.tenant.clone(),
                            id: a.id.clone(),
                            at: now,
                        },
                        vec![(gate.tenant.clone(), ev)],
                    )
                    .await;
                match committed {
                    Ok(_) => return Ok(Json(json!({"status": "approved", "id": a.id}))),
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Some((a, ApprovalStatus::Pending)) => {
                return Ok(Json(
                    json!({"status": "pending", "id": a.id, "expires_at": a.expires_at}),
                ));
            }
            // A denial stands until the approval would have expired.
            Some((a, ApprovalStatus::Denied)) if a.expires_at > now => {
                return Ok(Json(json!({"status": "denied", "id": a.id})));
            }
            _ => {
                let a = Approval {
                    id: ApprovalId::from_parts(now, random()?),
                    tenant: gate.tenant.clone(),
                    gate: gate.id.clone(),
                    delegation: did.clone(),
                    agent: agent.clone(),
                    action: action.clone(),
                    resource: body.resource.clone(),
                    summary: summary.clone(),
                    request_hash: body.request_hash.clone(),
                    status: ApprovalStatus::Pending,
                    created_at: now,
                    expires_at: now + state.policy.approval_pending_secs * 1000,
                    decided_at: None,
                    decided_by: None,
                    consumed_at: None,
                };
                let ev = approval_event(
                    EventKind::ApprovalRequested,
                    &a,
                    gate_actor(&gate, &agent),
                    human.as_ref(),
                    Outcome::Allow,
                    vec![format!("gate {}", gate.id)],
                );
                let committed = state
                    .store
                    .commit(
                        Mutation::CreateApproval(a.clone()),
                        vec![(gate.tenant.clone(), ev)],
                    )
                    .await;
                match committed {
                    Ok(_) => {
                        return Ok(Json(
                            json!({"status": "pending", "id": a.id, "expires_at": a.expires_at}),
                        ));
                    }
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Err(ApiError::new(
        ProblemKind::Conflict,
        "this request's approval is changing concurrently; retry",
    ))
}

/// `?status=&limit=&cursor=`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    status: Option<ApprovalStatus>,
}

/// `GET /v1/approvals`: the tenant's approvals, oldest first, optionally by status.
pub async fn list_approvals(
    State(state): State<AppState>,
    caller: Caller,
    StrictQuery(q): StrictQuery<ApprovalQuery>,
) -> Result<Json<Value>, ApiError> {
    let (page, limit) = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let now = state.now();
    let items = state
        .store
        .approvals(
            &caller.0.tenant.id,
            &ApprovalFilter { status: q.status },
            &page,
            now,
        )
        .await?;
    Ok(Json(list(
        items,
        limit,
        |a| a.id.to_string(),
        |a| view(a, now),
    )))
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<Approval, ApiError> {
    let not_found = || not_found_id("approval", id);
    let id = ApprovalId::parse(id).map_err(|_| not_found())?;
    state
        .store
        .approval(&caller.0.tenant.id, &id)
        .await?
        .ok_or_else(not_found)
}

/// `GET /v1/approvals/{id}`.
pub async fn show_approval(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let a = load(&state, &caller, &id).await?;
    Ok(Json(view(&a, state.now())))
}

/// `POST /v1/approvals/{id}/approve`.
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    StrictJson { value: body, .. }: StrictJson<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    decide(&state, &caller, &id, true, &body).await
}

/// `POST /v1/approvals/{id}/deny`.
pub async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    StrictJson { value: body, .. }: StrictJson<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    decide(&state, &caller, &id, false, &body).await
}

/// Approve or deny: the agent's owner, the human at the root of the delegation chain, or a
/// tenant owner/admin; anyone else 403. A decided or expired approval is a 409.
async fn decide(
    state: &AppState,
    caller: &Caller,
    id: &str,
    approve: bool,
    body: &ReasonBody,
) -> Result<Json<Value>, ApiError> {
    let a = load(state, caller, id).await?;
    let me = &caller.0.human;
    let tenant = &caller.0.tenant.id;
    let owner = state
        .store
        .agent(tenant, &a.agent)
        .await?
        .map(|ag| ag.owner);
    let delegation = state.store.delegation(tenant, &a.delegation).await?;
    let root = match &delegation {
        Some(d) => root_human(state, d).await?,
        None => None,
    };
    let allowed = matches!(me.role, Role::Owner | Role::Admin)
        || owner.as_ref() == Some(&me.id)
        || root.as_ref() == Some(&me.id);
    if !allowed {
        return Err(ApiError::forbidden(
            "only the agent's owner, the human who made the mandate, or a tenant owner or admin may decide this approval",
        ));
    }
    let now = state.now();
    let (kind, action, decision) = if approve {
        (EventKind::ApprovalApproved, "approve", Outcome::Allow)
    } else {
        (EventKind::ApprovalDenied, "deny", Outcome::Deny)
    };
    let actor = Actor {
        agent: None,
        chain: vec![],
        human: Some(me.id.to_string()),
    };
    let ev = approval_event(kind, &a, actor, root.as_ref(), decision, {
        let mut r = vec![format!("{action} by {}", me.id)];
        r.extend(body.reasons()?);
        r
    });
    let applied = state
        .commit(
            Mutation::DecideApproval {
                tenant: a.tenant.clone(),
                id: a.id.clone(),
                approve,
                by: me.id.clone(),
                at: now,
                use_by: now + state.policy.approval_use_secs * 1000,
            },
            vec![(a.tenant.clone(), ev)],
        )
        .await?;
    match applied.value {
        AppliedValue::Approval(a) => Ok(Json(view(&a, now))),
        _ => Err(ApiError::new(
            ProblemKind::Internal,
            "unexpected store result",
        )),
    }
}
