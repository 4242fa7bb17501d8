//! Background work of an online verifier: following `/v1/events` and keeping the JWKS and the
//! status lists fresh. Tasks hold only a weak reference and end when the verifier is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;

use crate::keys::JWKS_REFRESH_MS;
use crate::net::{self, SseParser};
use crate::verify::{Inner, lock, read, write};

/// First and longest wait before reconnecting to the event stream.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// A stream silent for this long is reconnected (the authority sends a keep-alive every 15 s).
const STREAM_SILENCE: Duration = Duration::from_secs(40);
/// How often the maintenance task looks at the JWKS and the status lists.
const MAINTENANCE_TICK: Duration = Duration::from_secs(1);

pub(crate) fn spawn(inner: &Arc<Inner>) {
    let events = tokio::spawn(follow_events(Arc::downgrade(inner)));
    let upkeep = tokio::spawn(maintain(Arc::downgrade(inner)));
    lock(&inner.tasks).extend([events, upkeep]);
}

/// Follows `GET /v1/events` (SSE), authenticated as the gate with a fresh client assertion each
/// time (RFC 7523; the authority consumes its `jti`), resuming with `Last-Event-ID`.
async fn follow_events(weak: Weak<Inner>) {
    let mut backoff = BACKOFF.0;
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let request = connect_request(&inner);
        drop(inner);
        match request {
            Some(request) => match request.send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::OK => {
                    backoff = BACKOFF.0;
                    if !read_stream(&weak, resp).await {
                        return;
                    }
                }
                Ok(resp) => {
                    tracing::warn!(status = %resp.status(), "event stream refused");
                    if let Some(inner) = weak.upgrade() {
                        write(&inner.events).refused = Some(resp.status().as_u16());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event stream unreachable"),
            },
            None => tracing::warn!("cannot authenticate to the event stream"),
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        write(&inner.events).connected = false;
        drop(inner);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

fn connect_request(inner: &Inner) -> Option<reqwest::RequestBuilder> {
    let http = inner.http.as_ref()?;
    let now = inner.clock.now_ms().div_euclid(1000);
    let assertion = net::client_assertion(
        &inner.cfg.gate_id,
        &inner.cfg.gate_key,
        &inner.cfg.issuer,
        now,
    )
    .ok()?;
    let mut req = http
        .get(&inner.endpoints.events)
        .bearer_auth(assertion)
        .header("accept", "text/event-stream");
    if let Some(id) = read(&inner.events).last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    Some(req)
}

/// Reads one connection until it ends; `false` when the verifier is gone.
async fn read_stream(weak: &Weak<Inner>, mut resp: reqwest::Response) -> bool {
    {
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        let now = inner.clock.now_ms();
        let mut events = write(&inner.events);
        events.connected = true;
        events.refused = None;
        events.last_heard = Some(now);
        // Whatever happened while disconnected is replayed from `Last-Event-ID`, but a first
        // connection (or one without an id yet) starts at the head: cached status lists are
        // refetched so nothing in between is missed.
        events.generation = events.generation.wrapping_add(1);
        drop(events);
        inner.refresh.notify_one();
    }
    let mut parser = SseParser::default();
    loop {
        let chunk = match tokio::time::timeout(STREAM_SILENCE, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => return true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "event stream broken");
                return true;
            }
            Err(_) => {
                tracing::warn!("event stream silent; reconnecting");
                return true;
            }
        };
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        let parsed = match parser.feed(&chunk) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "event stream malformed");
                return true;
            }
        };
        let now = inner.clock.now_ms();
        let mut events = write(&inner.events);
        let before = events.generation;
        events.last_heard = Some(now);
        for ev in parsed {
            if let Some(id) = ev.id.as_deref().and_then(|i| i.trim().parse::<u64>().ok()) {
                events.last_event_id = Some(id);
            }
            let data: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
            events.apply(&ev.event, &data, now);
            tracing::debug!(kind = %ev.event, "revocation event");
        }
        let dirty = events.generation != before;
        drop(events);
        if dirty {
            inner.refresh.notify_one();
        }
    }
}

/// Refreshes the JWKS every [`JWKS_REFRESH_MS`], and each cached status list when it is dirty
/// or past half its `ttl`; forgets old revoked ids.
async fn maintain(weak: Weak<Inner>) {
    let mut last_jwks: Option<i64> = None;
    let mut last_purge: Option<i64> = None;
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let now = inner.clock.now_ms();
        if last_jwks.is_none_or(|t| now.saturating_sub(t) >= JWKS_REFRESH_MS || now < t) {
            // The first tick follows the fetch done at start.
            if last_jwks.is_some()
                && let Err(e) = inner.refresh_jwks().await
            {
                tracing::warn!(error = %e, "JWKS refresh failed");
            }
            last_jwks = Some(now);
        }
        let generation = read(&inner.events).generation;
        let due: Vec<String> = {
            let lists = lock(&inner.lists);
            lists
                .lists
                .iter()
                .filter(|(_, l)| l.refresh_due(now, generation))
                .map(|(uri, _)| uri.clone())
                .collect()
        };
        for uri in due {
            if let Err(e) = inner.fetch_status_list(&uri).await {
                tracing::warn!(error = %e, "status list refresh failed");
            }
        }
        if last_purge.is_none_or(|t| now.saturating_sub(t) >= 60_000 || now < t) {
            write(&inner.events).purge(now);
            last_purge = Some(now);
        }
        // Holding the verifier while waiting delays its drop by at most one tick.
        let _ = tokio::time::timeout(MAINTENANCE_TICK, inner.refresh.notified()).await;
    }
}
