//! `/v1/events`: revocations reach subscribers within a second, and reconnecting with
//! `Last-Event-ID` replays what was missed from the ledger.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::ADMIN_KEY;
use crate::tokens::{Dpop, world};

/// Reads SSE events from a streaming response until `n` arrive or `within` passes.
async fn read_events(
    resp: &mut reqwest::Response,
    n: usize,
    within: Duration,
) -> Vec<(u64, String, Value)> {
    let deadline = Instant::now() + within;
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, resp.chunk()).await else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                }
                if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_owned();
                }
                if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if let Some(id) = id {
                out.push((id, kind, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_stream_live_and_replay_after_reconnect() {
    let w = world().await;
    let (_, _, body) = w.redeem(&Dpop::new(130)).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    // A gate subscribes with its own client assertion.
    let assertion = w.gate.assertion(&w.s, json!({}));
    let mut resp =
        w.s.http
            .get(w.s.url("/v1/events"))
            .bearer_auth(&assertion)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The same assertion cannot open a second stream.
    let again =
        w.s.http
            .get(w.s.url("/v1/events"))
            .bearer_auth(&assertion)
            .send()
            .await
            .unwrap();
    assert_eq!(again.status(), 401);

    let t0 = Instant::now();
    let r =
        w.s.post(
            &format!("/v1/agents/{}/suspend", w.agent.id),
            ADMIN_KEY,
            json!({"reason": "incident"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let got = read_events(&mut resp, 1, Duration::from_secs(2)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "delivered in {:?}",
        t0.elapsed()
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, "agent.suspended");
    assert_eq!(got[0].2["resource"], format!("agents/{}", w.agent.id));
    let first_id = got[0].0;
    w.s.post(
        &format!("/v1/agents/{}/resume", w.agent.id),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    w.s.post(
        &format!("/v1/delegations/{}/revoke", w.mandate),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    let got = read_events(&mut resp, 2, Duration::from_secs(2)).await;
    let kinds: Vec<&str> = got.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds, ["agent.resumed", "delegation.revoked"]);
    drop(resp);

    // A token revocation while disconnected is replayed after reconnecting with Last-Event-ID.
    let _ = token;
    let resp =
        w.s.http
            .get(w.s.url("/v1/events"))
            .bearer_auth(ADMIN_KEY)
            .header("Last-Event-ID", first_id.to_string())
            .send()
            .await
            .unwrap();
    let mut resp = resp;
    let got = read_events(&mut resp, 2, Duration::from_secs(2)).await;
    let kinds: Vec<&str> = got.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        kinds,
        ["agent.resumed", "delegation.revoked"],
        "replayed after {first_id}"
    );
    assert!(got.iter().all(|e| e.0 > first_id));
    // Unauthenticated: refused.
    let r = w.s.http.get(w.s.url("/v1/events")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
