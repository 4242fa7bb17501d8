//! Tenants, humans and their API keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::encoding::b64url;
use mandate_core::id::{ApiKeyId, HumanId, TenantId};
use mandate_core::receipt::EventKind;
use mandate_store::{AppliedValue, Human, HumanStatus, Mutation, NewApiKey, Role, Tenant};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{PageQuery, ReasonBody, StrictQuery, human_event, list, not_found_id, text};
use crate::error::ApiError;
use crate::extract::{Caller, StrictJson};
use crate::state::{AppState, random};
use crate::views;

/// A fresh API key: `mnd_<id>_<secret>`, its record id and hash.
pub fn new_api_key(now: i64) -> Result<(String, ApiKeyId, [u8; 32]), ApiError> {
    let id = ApiKeyId::from_parts(now, random()?);
    let secret: [u8; 32] = random()?;
    let suffix = id.as_str().trim_start_matches("key_");
    let key = format!("mnd_{suffix}_{}", b64url(&secret));
    let hash = Sha256::digest(key.as_bytes()).into();
    Ok((key, id, hash))
}

/// The id-bearing part of a preset bootstrap key, for its record.
pub fn api_key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// `GET /v1/me`.
pub async fn me(caller: Caller) -> Json<Value> {
    Json(json!({"human": views::human(&caller.0.human), "tenant": views::tenant(&caller.0.tenant)}))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewTenantBody {
    name: String,
    owner: NewOwner,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewOwner {
    name: String,
    email: String,
}

/// `POST /v1/tenants`: operator owners only.
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<NewTenantBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !(caller.0.tenant.operator && caller.0.human.role == Role::Owner) {
        return Err(ApiError::forbidden(
            "only owners of the operator tenant may create tenants",
        ));
    }
    let now = state.now();
    let name = slug(&body.name, "name")?;
    let tenant = Tenant {
        id: TenantId::from_parts(now, random()?),
        name,
        operator: false,
        created_at: now,
    };
    let owner = Human {
        id: HumanId::from_parts(now, random()?),
        tenant: tenant.id.clone(),
        name: text(&body.owner.name, "owner.name", 128)?,
        email: email(&body.owner.email)?,
        role: Role::Owner,
        status: HumanStatus::Active,
        created_at: now,
    };
    let (api_key, key_id, hash) = new_api_key(now)?;
    let resource = format!("tenants/{}", tenant.id);
    let receipts = vec![
        (
            tenant.id.clone(),
            human_event(
                &caller,
                EventKind::TenantCreated,
                "create",
                resource.clone(),
                request_hash.clone(),
                vec![format!("owner {}", owner.id), format!("api key {key_id}")],
            ),
        ),
        (
            caller.0.tenant.id.clone(),
            human_event(
                &caller,
                EventKind::TenantCreated,
                "create",
                resource,
                request_hash,
                vec![],
            ),
        ),
    ];
    let mutation = Mutation::CreateTenant {
        tenant: tenant.clone(),
        owner: owner.clone(),
        api_key: NewApiKey {
            id: key_id,
            tenant: tenant.id.clone(),
            human: owner.id.clone(),
            hash,
            created_at: now,
        },
    };
    state.commit(mutation, receipts).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"tenant": views::tenant(&tenant), "owner": views::human(&owner), "api_key": api_key}),
        ),
    ))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewHumanBody {
    name: String,
    email: String,
    role: Option<Role>,
}

/// `POST /v1/humans`.
pub async fn create_human(
    State(state): State<AppState>,
    caller: Caller,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<NewHumanBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_writer()?;
    let role = body.role.unwrap_or(Role::Admin);
    if role == Role::Owner && caller.0.human.role != Role::Owner {
        return Err(ApiError::forbidden("only owners may create owners"));
    }
    let now = state.now();
    let human = Human {
        id: HumanId::from_parts(now, random()?),
        tenant: caller.0.tenant.id.clone(),
        name: text(&body.name, "name", 128)?,
        email: email(&body.email)?,
        role,
        status: HumanStatus::Active,
        created_at: now,
    };
    let ev = human_event(
        &caller,
        EventKind::HumanCreated,
        "create",
        format!("humans/{}", human.id),
        request_hash,
        vec![],
    );
    state
        .commit(
            Mutation::CreateHuman(human.clone()),
            vec![(human.tenant.clone(), ev)],
        )
        .await?;
    Ok((StatusCode::CREATED, Json(views::human(&human))))
}

/// `GET /v1/humans`.
pub async fn list_humans(
    State(state): State<AppState>,
    caller: Caller,
    StrictQuery(q): StrictQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (page, limit) = q.page()?;
    let items = state.store.humans(&caller.0.tenant.id, &page).await?;
    Ok(Json(list(items, limit, |h| h.id.to_string(), views::human)))
}

/// Loads a human of the caller's tenant; malformed and foreign ids are "not found".
async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<Human, ApiError> {
    let not_found = || not_found_id("human", id);
    let id = HumanId::parse(id).map_err(|_| not_found())?;
    state
        .store
        .human(&caller.0.tenant.id, &id)
        .await?
        .ok_or_else(not_found)
}

/// `GET /v1/humans/{id}`.
pub async fn show_human(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(views::human(&load(&state, &caller, &id).await?)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// `POST /v1/humans/{id}/api-keys`: for yourself, or (owners/admins) for others — never an
/// admin for an owner, which would hand out more power than the admin has.
pub async fn create_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    StrictJson {
        value: EmptyBody {},
        request_hash,
    }: StrictJson<EmptyBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let target = load(&state, &caller, &id).await?;
    if target.id != caller.0.human.id {
        caller.require_writer()?;
        if target.role == Role::Owner && caller.0.human.role != Role::Owner {
            return Err(ApiError::forbidden(
                "only owners may create API keys for owners",
            ));
        }
    }
    let now = state.now();
    let (api_key, key_id, hash) = new_api_key(now)?;
    let ev = human_event(
        &caller,
        EventKind::ApiKeyCreated,
        "create",
        format!("humans/{}/api-keys/{key_id}", target.id),
        request_hash,
        vec![],
    );
    state
        .commit(
            Mutation::CreateApiKey(NewApiKey {
                id: key_id.clone(),
                tenant: target.tenant.clone(),
                human: target.id.clone(),
                hash,
                created_at: now,
            }),
            vec![(target.tenant.clone(), ev)],
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": key_id, "human": target.id, "api_key": api_key, "created_at": views::time(now)}),
        ),
    ))
}

/// `POST /v1/humans/{id}/revoke`: offboarding.
pub async fn revoke_human(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_writer()?;
    let target = load(&state, &caller, &id).await?;
    if target.role == Role::Owner && caller.0.human.role != Role::Owner {
        return Err(ApiError::forbidden("only owners may revoke owners"));
    }
    if target.id == caller.0.human.id {
        return Err(ApiError::new(
            crate::error::ProblemKind::Conflict,
            "you cannot revoke yourself",
        ));
    }
    let ev = human_event(
        &caller,
        EventKind::HumanRevoked,
        "revoke",
        format!("humans/{}", target.id),
        request_hash,
        body.reasons()?,
    );
    let applied = state
        .commit(
            Mutation::RevokeHuman {
                tenant: target.tenant.clone(),
                id: target.id.clone(),
                at: state.now(),
            },
            vec![(target.tenant.clone(), ev)],
        )
        .await?;
    match applied.value {
        AppliedValue::Human(h) => Ok(Json(views::human(&h))),
        _ => Err(ApiError::new(
            crate::error::ProblemKind::Internal,
            "unexpected store result",
        )),
    }
}

/// A name usable as an identifier: 1..=64 of `[A-Za-z0-9._-]`, starting alphanumeric.
pub fn slug(value: &str, field: &str) -> Result<String, ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "`{field}` must be 1 to 64 characters of letters, digits, `.`, `_` and `-`, starting with a letter or digit"
        )))
    }
}

/// A plausible email address, lowercased (≤ 254 bytes, one `@`, no spaces or controls).
pub fn email(value: &str) -> Result<String, ApiError> {
    let v = value.trim().to_lowercase();
    let ok = v.len() <= 254
        && v.matches('@').count() == 1
        && !v.starts_with('@')
        && !v.ends_with('@')
        && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(v)
    } else {
        Err(ApiError::bad_request("`email` must be an email address"))
    }
}

/// `POST /v1/server/signing-keys/rotate`: operator owners only. The next key starts signing, a
/// fresh next key is published, and the old key keeps verifying until everything it signed
/// (delegation documents included) has expired.
pub async fn rotate_signing_keys(
    State(state): State<AppState>,
    caller: Caller,
    StrictJson {
        value: EmptyBody {},
        request_hash,
    }: StrictJson<EmptyBody>,
) -> Result<Json<Value>, ApiError> {
    if !(caller.0.tenant.operator && caller.0.human.role == Role::Owner) {
        return Err(ApiError::forbidden(
            "only owners of the operator tenant may rotate the server's keys",
        ));
    }
    let retire_after =
        (state.policy.max_mandate_secs + state.policy.token_lifetime_secs + 60) * 1000;
    let now = state.now();
    // Record first (fail closed), then rotate; a failed rotation leaves a receipt that says so.
    let ev = human_event(
        &caller,
        EventKind::SigningKeyRotated,
        "rotate",
        "server/signing-keys".into(),
        request_hash,
        vec![format!("retiring {}", state.keys.current().kid())],
    );
    state
        .commit(Mutation::Record, vec![(caller.0.tenant.id.clone(), ev)])
        .await?;
    let r = state
        .keys
        .rotate(now, retire_after)
        .map_err(|e| ApiError::new(crate::error::ProblemKind::Internal, e.to_string()))?;
    Ok(Json(json!({
        "current": r.current,
        "next": r.next,
        "retiring": {"kid": r.retiring.0, "until": views::time(r.retiring.1)},
    })))
}

/// `POST /v1/tenants/{id}/revoke`: operator owners only; revokes everything of the tenant
/// (humans and their API keys, agents, delegations, tokens), atomically. Never the operator
/// tenant itself.
pub async fn revoke_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    StrictJson {
        value: body,
        request_hash,
    }: StrictJson<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || not_found_id("tenant", &id);
    if !(caller.0.tenant.operator && caller.0.human.role == Role::Owner) {
        // Other tenants do not exist for anyone else.
        return Err(not_found());
    }
    let tid = TenantId::parse(&id).map_err(|_| not_found())?;
    let tenant = state.store.tenant(&tid).await?.ok_or_else(not_found)?;
    let reasons = body.reasons()?;
    let resource = format!("tenants/{}", tenant.id);
    let receipts = vec![
        (
            tenant.id.clone(),
            human_event(
                &caller,
                EventKind::TenantRevoked,
                "revoke",
                resource.clone(),
                request_hash.clone(),
                reasons.clone(),
            ),
        ),
        (
            caller.0.tenant.id.clone(),
            human_event(
                &caller,
                EventKind::TenantRevoked,
                "revoke",
                resource,
                request_hash,
                reasons,
            ),
        ),
    ];
    let applied = state
        .commit(
            Mutation::RevokeTenant {
                tenant: tenant.id.clone(),
                at: state.now(),
            },
            receipts,
        )
        .await?;
    let n = match applied.value {
        AppliedValue::Count(n) => n,
        _ => 0,
    };
    Ok(Json(
        json!({"tenant": views::tenant(&tenant), "status": "revoked", "revoked_delegations": n}),
    ))
}
