//! The decision spool reaches the authority's ledger: right away, after an outage of the
//! authority, and after a restart of the gate — each decision exactly once.

use std::time::Duration;

use axum::http::Method;
use serde_json::Value;

use crate::harness::{Dpop, World, mentions, spooled};

/// Makes one allowed and one denied call; returns their record ids.
async fn two_decisions(w: &World, token: &str, dpop: &Dpop) -> Vec<String> {
    let resp = w
        .request(Method::GET, "/tickets/1", token, dpop)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap_or_default());
    let allowed = w.upstream.last().headers["x-mandate-receipt"]
        .to_str()
        .unwrap()
        .to_owned();
    let resp = w
        .request(Method::GET, "/customers/1", token, dpop)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    let denied = body["receipt"].as_str().unwrap().to_owned();
    vec![allowed, denied]
}

fn count_each(decisions: &[Value], ids: &[String]) -> Vec<usize> {
    ids.iter()
        .map(|id| decisions.iter().filter(|d| mentions(d, id)).count())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_reach_the_ledger() {
    let w = World::new().await;
    let dpop = Dpop::new(80);
    let token = w.token(&dpop).await;
    let ids = two_decisions(&w, &token, &dpop).await;
    let decisions = w.wait_for_decisions(&ids, Duration::from_secs(10)).await;
    assert_eq!(count_each(&decisions, &ids), [1, 1], "{decisions:?}");
    let allowed = decisions.iter().find(|d| mentions(d, &ids[0])).unwrap();
    let denied = decisions.iter().find(|d| mentions(d, &ids[1])).unwrap();
    assert!(allowed.to_string().contains("tickets/1"), "{allowed}");
    assert!(denied.to_string().contains("customers/1"), "{denied}");
    assert!(mentions(allowed, &w.agent.id) && mentions(allowed, &w.mandate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_made_while_the_authority_is_away_are_shipped_later_exactly_once() {
    let mut w = World::new().await;
    let dpop = Dpop::new(81);
    let token = w.token(&dpop).await;
    // Warm up (the token is verified and cached, the status list fetched once the event stream
    // is connected — a connection marks lists for refetch), then cut the authority off.
    assert_eq!(
        w.request(Method::GET, "/tickets/0", &token, &dpop)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    w.wait_events_connected().await;
    // A request after the connection settled, so the cached list is not marked for refetch.
    assert_eq!(
        w.request(Method::GET, "/tickets/0", &token, &dpop)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    w.auth.link.take_down();
    let first = two_decisions(&w, &token, &dpop).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let decisions = w.wait_for_decisions(&[], Duration::ZERO).await;
    assert_eq!(
        count_each(&decisions, &first),
        [0, 0],
        "nothing can be shipped yet"
    );
    // The authority comes back: the backlog is shipped.
    w.auth.link.bring_up();
    let decisions = w.wait_for_decisions(&first, Duration::from_secs(15)).await;
    assert_eq!(count_each(&decisions, &first), [1, 1]);

    // Away again; the gate stops with a backlog and restarts once the authority is back.
    w.auth.link.take_down();
    let second = two_decisions(&w, &token, &dpop).await;
    w.stop_gate().await;
    w.auth.link.bring_up();
    // Forget what was acknowledged: a restart re-sends everything, and ids keep the ledger
    // free of duplicates.
    std::fs::remove_file(w.spool_dir().join("cursor.json")).ok();
    w.start_gate().await;
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    let decisions = w.wait_for_decisions(&all, Duration::from_secs(15)).await;
    assert_eq!(count_each(&decisions, &all), [1, 1, 1, 1], "{decisions:?}");
    // Every record in the spool was shipped exactly once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let decisions = w.wait_for_decisions(&[], Duration::ZERO).await;
    let spool: Vec<String> = spooled(&w.spool_dir())
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &spool {
        assert_eq!(
            count_each(&decisions, std::slice::from_ref(id)),
            [1],
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_freshness_of_revocation_data() {
    let w = World::new().await;
    let dpop = Dpop::new(82);
    let token = w.token(&dpop).await;
    let resp = w
        .request(Method::GET, "/tickets/1", &token, &dpop)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    w.wait_events_connected().await;
    let (status, body) = w.gate_health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revocation_fresh"], true, "{body}");
    assert!(body["jwks_age_ms"].is_u64(), "{body}");
}
