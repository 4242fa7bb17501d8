//! `GET /v1/events`: a Server-Sent Events stream of revocations, suspensions, resumptions and
//! approvals for gates and operators, resumable with `Last-Event-ID`.
//!
//! The tenant's ledger *is* the event log: an event's id is its receipt's `seq`. A reconnecting
//! client sends `Last-Event-ID` and first receives every relevant receipt after it, read from the
//! durable ledger; then live receipts as the store commits them. A receiver that falls behind
//! the live channel re-reads the ledger, so no event is ever skipped.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use mandate_core::id::TenantId;
use mandate_core::receipt::EventKind;
use mandate_store::CommittedReceipt;
use tokio::sync::broadcast;

use crate::error::{ApiError, ProblemKind};
use crate::state::AppState;

/// The receipt kinds a gate must hear about.
pub fn is_relevant(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::DelegationRevoked
            | EventKind::TokenRevoked
            | EventKind::AgentSuspended
            | EventKind::AgentResumed
            | EventKind::AgentRevoked
            | EventKind::HumanRevoked
            | EventKind::AgentKeyRetired
            | EventKind::TenantRevoked
            | EventKind::ApprovalRequested
            | EventKind::ApprovalApproved
            | EventKind::ApprovalDenied
            | EventKind::ApprovalConsumed
    )
}

/// `GET /v1/events`.
pub async fn events(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let tenant = match authenticate(&state, &headers).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    // Subscribe before reading the ledger so nothing committed in between is lost.
    let live = state.store.subscribe();
    let start = if after == u64::MAX {
        // A fresh subscriber starts at the head: only what happens from now on.
        match state.store.receipt_head(&tenant).await {
            Ok(seq) => seq,
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        after
    };
    let stream = event_stream(state, tenant, start, live);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// An API key (any role) or a gate's client assertion (`Authorization: Bearer <JWT>`, RFC 7523
/// claims, single-use `jti`).
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<TenantId, ApiError> {
    let unauthorized = || {
        ApiError::new(
            ProblemKind::Unauthorized,
            "send an API key or a gate's client assertion as `Authorization: Bearer …`",
        )
    };
    let cred = super::gates::bearer(headers).ok_or_else(unauthorized)?;
    if cred.starts_with("mnd_") {
        return match crate::extract::principal_for_key(state, cred).await? {
            Some(p) => Ok(p.tenant.id),
            None => Err(unauthorized()),
        };
    }
    match super::gates::verify_gate_assertion(state, cred).await {
        Ok(gate) => Ok(gate.tenant),
        Err(e) if e.kind() == ProblemKind::Unauthorized => Err(unauthorized()),
        Err(e) => Err(e),
    }
}

enum Phase {
    /// Reading the ledger after `seq`.
    Replay,
    /// Following the live channel.
    Live,
}

struct Cursor {
    state: AppState,
    tenant: TenantId,
    seq: u64,
    live: broadcast::Receiver<CommittedReceipt>,
    phase: Phase,
    buffered: std::collections::VecDeque<(u64, String, String)>,
}

fn event_stream(
    state: AppState,
    tenant: TenantId,
    seq: u64,
    live: broadcast::Receiver<CommittedReceipt>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let cursor = Cursor {
        state,
        tenant,
        seq,
        live,
        phase: Phase::Replay,
        buffered: Default::default(),
    };
    stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some((seq, kind, body)) = c.buffered.pop_front() {
                let ev = SseEvent::default()
                    .id(seq.to_string())
                    .event(kind)
                    .data(body);
                return Some((Ok(ev), c));
            }
            match c.phase {
                Phase::Replay => {
                    let page = match c.state.store.receipts(&c.tenant, c.seq, 500).await {
                        Ok(p) => p,
                        // Storage trouble: end the stream; the client reconnects with its id.
                        Err(_) => return None,
                    };
                    if page.is_empty() {
                        c.phase = Phase::Live;
                        continue;
                    }
                    for r in page {
                        c.seq = r.seq;
                        if let Some(kind) = relevant_kind(&r.body) {
                            c.buffered.push_back((r.seq, kind, r.body));
                        }
                    }
                }
                Phase::Live => match c.live.recv().await {
                    Ok(r) if r.tenant == c.tenant && r.seq > c.seq => {
                        c.seq = r.seq;
                        if is_relevant(r.kind) {
                            c.buffered
                                .push_back((r.seq, kind_name(r.kind), r.body.to_string()));
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => c.phase = Phase::Replay,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    })
}

fn relevant_kind(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let kind: EventKind = serde_json::from_value(v.get("kind")?.clone()).ok()?;
    is_relevant(kind).then(|| kind_name(kind))
}

fn kind_name(kind: EventKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "event".into(),
    }
}
