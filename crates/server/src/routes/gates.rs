//! Calls made by gates (resource servers) rather than humans: authentication with a gate's
//! client assertion, and `POST /v1/gates/receipts` — the gate's access decisions, shipped in
//! batches and recorded in the ledger exactly once each.

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::{HeaderMap, header, request::Parts};
use mandate_core::encoding::{b64url_decode, hex};
use mandate_core::id::{AgentId, DelegationId, HumanId};
use mandate_core::jose::{AssertionExpectation, JoseLimits, JwtKind, Unverified};
use mandate_core::receipt::{Actor, Event, EventKind, Outcome};
use mandate_store::{Client, Gate, JtiUse, Mutation, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ProblemKind};
use crate::extract::StrictJson;
use crate::state::AppState;

/// Most receipts in one `POST /v1/gates/receipts`.
pub const MAX_RECEIPTS: usize = 1000;

/// How old (by its `at`) a shipped receipt may be: its id stays in the single-use store a day
/// longer, so a re-shipment is always recognised as a duplicate.
const MAX_RECEIPT_AGE_MS: i64 = 30 * 86_400_000;

/// How far ahead of our clock a shipped receipt's `at` may be.
const MAX_RECEIPT_SKEW_MS: i64 = 5 * 60_000;

/// The single-use namespace of shipped receipt ids (one scope per gate).
const RECEIPT_ID_KIND: &str = "gate_receipt";

fn gate_unauthorized() -> ApiError {
    ApiError::new(
        ProblemKind::Unauthorized,
        "send a gate's client assertion (RFC 7523) as `Authorization: Bearer <JWT>`",
    )
}

/// Verifies a gate's client assertion used as a bearer credential: RFC 7523 §3 claims (`iss` =
/// `sub` = the gate id, `aud` = our issuer, bounded `exp`), a signature by one of the gate's
/// usable keys, and a `jti` consumed atomically (single use, SECURITY line 4). Unknown gates,
/// wrong keys, replays and malformed assertions all answer the same 401.
pub async fn verify_gate_assertion(state: &AppState, jwt: &str) -> Result<Gate, ApiError> {
    let unverified =
        Unverified::parse(jwt, &JoseLimits::default()).map_err(|_| gate_unauthorized())?;
    let id = unverified
        .unverified_client_id()
        .map_err(|_| gate_unauthorized())?
        .to_owned();
    let Some(Client::Gate(gate)) = state.store.client(&id).await? else {
        return Err(gate_unauthorized());
    };
    let now = state.now();
    let (verified, _) = super::oauth::verify_with_keys(
        &unverified,
        JwtKind::ClientAssertion,
        &gate.keys,
        now,
        None,
    )
    .ok_or_else(gate_unauthorized)?;
    let assertion = mandate_core::jose::verify_client_assertion(
        &verified,
        &AssertionExpectation::new(&state.issuer, now / 1000),
    )
    .map_err(|_| gate_unauthorized())?;
    state
        .store
        .commit(
            Mutation::TokenRequest {
                jtis: vec![JtiUse {
                    kind: "assertion",
                    scope: assertion.client_id().to_owned(),
                    jti: assertion.jti().to_owned(),
                    expires_at: assertion.exp().saturating_add(60) * 1000,
                }],
                issue: None,
                now,
                seen: None,
            },
            vec![],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => gate_unauthorized(),
            other => other.into(),
        })?;
    Ok(gate)
}

/// The bearer credential of `headers`, if the header is well formed.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, cred) = value.split_once(' ')?;
    let cred = cred.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !cred.is_empty() && cred.len() <= 16 * 1024)
        .then_some(cred)
}

/// A gate authenticated by its client assertion (`Authorization: Bearer <JWT>`). API keys are
/// not accepted: these routes speak for a gate, not a human.
pub struct GateCaller(pub Gate);

impl<S> FromRequestParts<S> for GateCaller
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let cred = bearer(&parts.headers).ok_or_else(gate_unauthorized)?;
        verify_gate_assertion(&state, cred).await.map(Self)
    }
}

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Allow,
    Deny,
}

/// One decision as the gate reports it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShippedReceipt {
    id: String,
    decision: Decision,
    reason: String,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    delegation: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    request_hash: Option<String>,
    at: i64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ShipBody {
    receipts: Option<Vec<ShippedReceipt>>,
}

/// 1..=`max` characters from `allowed`.
fn token_text(v: &str, max: usize, allowed: impl Fn(char) -> bool) -> bool {
    !v.is_empty() && v.chars().count() <= max && v.chars().all(allowed)
}

/// A base64url SHA-256 (43 characters, no padding) as lowercase hex.
pub fn request_hash_hex(v: &str) -> Option<String> {
    if v.len() != 43 {
        return None;
    }
    b64url_decode(v).filter(|b| b.len() == 32).map(|b| hex(&b))
}

/// Checks one shipped receipt and builds its ledger event.
fn event_of(
    state: &AppState,
    gate: &Gate,
    i: usize,
    r: &ShippedReceipt,
    now: i64,
) -> Result<Event, ApiError> {
    let bad =
        |field: &str, what: &str| ApiError::bad_request(format!("`receipts[{i}].{field}` {what}"));
    if !token_text(&r.id, 128, |c| {
        c.is_ascii_alphanumeric() || "-_.:".contains(c)
    }) {
        return Err(bad(
            "id",
            "must be 1 to 128 characters of letters, digits, `-`, `_`, `.` and `:`",
        ));
    }
    if !token_text(&r.reason, 64, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:".contains(c)
    }) {
        return Err(bad(
            "reason",
            "must be a code of 1 to 64 lowercase letters, digits, `-`, `_`, `.` and `:`",
        ));
    }
    if r.at < now - MAX_RECEIPT_AGE_MS || r.at > now + MAX_RECEIPT_SKEW_MS {
        return Err(bad(
            "at",
            "must be unix milliseconds within the last 30 days (and not ahead of the server's clock)",
        ));
    }
    let agent = r
        .agent
        .as_deref()
        .map(|a| AgentId::parse(a).map_err(|_| bad("agent", "must be an agent id or null")))
        .transpose()?;
    let sub = r
        .sub
        .as_deref()
        .map(|h| HumanId::parse(h).map_err(|_| bad("sub", "must be a human id or null")))
        .transpose()?;
    let delegation = r
        .delegation
        .as_deref()
        .map(|d| {
            DelegationId::parse(d).map_err(|_| bad("delegation", "must be a delegation id or null"))
        })
        .transpose()?;
    let action = r
        .action
        .as_deref()
        .map(|a| {
            state
                .limits
                .vocabulary
                .action(a)
                .map(|a| a.as_str().to_owned())
                .map_err(|_| bad("action", "must be an action of the vocabulary or null"))
        })
        .transpose()?;
    let printable = |c: char| !c.is_control();
    let resource = match r.resource.as_deref() {
        Some(v) if !token_text(v, 1024, printable) => {
            return Err(bad("resource", "must be 1 to 1024 printable characters"));
        }
        v => v.map(str::to_owned),
    };
    let method = match r.method.as_deref() {
        Some(v) if !token_text(v, 32, |c| c.is_ascii_alphanumeric() || "/_-".contains(c)) => {
            return Err(bad(
                "method",
                "must be 1 to 32 letters, digits, `/`, `_` or `-`",
            ));
        }
        v => v,
    };
    // The query string and fragment are never recorded: they may carry secrets.
    let target = match r.target.as_deref() {
        Some(v) if !token_text(v, 2048, printable) => {
            return Err(bad("target", "must be 1 to 2048 printable characters"));
        }
        Some(v) => v.split(['?', '#']).next().filter(|t| !t.is_empty()),
        None => None,
    };
    let request_hash = r
        .request_hash
        .as_deref()
        .map(|h| {
            request_hash_hex(h).ok_or_else(|| {
                bad(
                    "request_hash",
                    "must be a base64url SHA-256 (43 characters) or null",
                )
            })
        })
        .transpose()?;
    let mut reasons = vec![
        r.reason.clone(),
        format!("gate {}", gate.id),
        format!("gate receipt {}", r.id),
        format!("decided at {}", r.at),
    ];
    if let Some(m) = method {
        reasons.push(format!("method {m}"));
    }
    if let Some(t) = target {
        reasons.push(format!("target {t}"));
    }
    Ok(Event {
        kind: EventKind::GateDecision,
        actor: Actor {
            agent: agent.map(|a| a.to_string()),
            chain: vec![gate.id.to_string()],
            human: None,
        },
        on_behalf_of: sub.map(|h| h.to_string()),
        delegation: delegation.map(|d| d.to_string()),
        token: None,
        action,
        resource,
        decision: match r.decision {
            Decision::Allow => Outcome::Allow,
            Decision::Deny => Outcome::Deny,
        },
        reasons,
        request_hash,
    })
}

/// `POST /v1/gates/receipts`: a gate ships up to 1000 access decisions; each becomes one
/// `gate.decision` receipt in the gate's tenant. Idempotent by receipt id: ids already recorded
/// (or repeated within the call) are counted as duplicates and recorded nothing.
pub async fn ship_receipts(
    State(state): State<AppState>,
    GateCaller(gate): GateCaller,
    StrictJson { value: body, .. }: StrictJson<ShipBody>,
) -> Result<Json<Value>, ApiError> {
    let receipts = body
        .receipts
        .ok_or_else(|| ApiError::bad_request("`receipts` is required"))?;
    if receipts.len() > MAX_RECEIPTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_RECEIPTS} receipts per call"
        )));
    }
    let now = state.now();
    let mut items = Vec::with_capacity(receipts.len());
    for (i, r) in receipts.iter().enumerate() {
        items.push((r, event_of(&state, &gate, i, r, now)?));
    }
    // A concurrent shipment of the same ids makes the commit conflict; the ids it recorded are
    // then duplicates on the next pass.
    for _ in 0..3 {
        let ids: Vec<String> = items.iter().map(|(r, _)| r.id.clone()).collect();
        let known: std::collections::HashSet<String> = state
            .store
            .used_jtis(RECEIPT_ID_KIND, gate.id.as_str(), &ids)
            .await?
            .into_iter()
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut jtis = Vec::new();
        let mut events = Vec::new();
        for (r, ev) in &items {
            if known.contains(&r.id) || !seen.insert(r.id.as_str()) {
                continue;
            }
            jtis.push(JtiUse {
                kind: RECEIPT_ID_KIND,
                scope: gate.id.to_string(),
                jti: r.id.clone(),
                expires_at: r.at.max(now) + MAX_RECEIPT_AGE_MS + 86_400_000,
            });
            events.push((gate.tenant.clone(), ev.clone()));
        }
        let accepted = events.len();
        let duplicates = items.len() - accepted;
        if accepted == 0 {
            return Ok(Json(json!({"accepted": 0, "duplicates": duplicates})));
        }
        let committed = state
            .store
            .commit(
                Mutation::TokenRequest {
                    jtis,
                    issue: None,
                    now,
                    seen: None,
                },
                events,
            )
            .await;
        match committed {
            Ok(_) => {
                return Ok(Json(
                    json!({"accepted": accepted, "duplicates": duplicates}),
                ));
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        ProblemKind::Conflict,
        "the same receipts are being shipped concurrently; retry",
    ))
}
