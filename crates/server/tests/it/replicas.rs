//! Replicas: several servers on one PostgreSQL database (and one data directory for the signing
//! keys), as behind a load balancer. Runs when the suite runs on the PostgreSQL engine
//! (`MANDATE_TEST_DATABASE_URL`); the SQLite engine is single-process.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, Server};
use crate::tokens::{Dpop, Holder, World, world};

fn on_postgres(s: &Server) -> bool {
    if !s.db.is_postgres() {
        eprintln!(
            "SKIPPED: replicas need the PostgreSQL engine (set MANDATE_TEST_DATABASE_URL=postgres://…)"
        );
    }
    s.db.is_postgres()
}

fn twin(h: &Holder) -> Holder {
    Holder {
        id: h.id.clone(),
        key: h.key.clone(),
    }
}

/// The same world seen through replica `b`.
fn through(w: &World, b: Server) -> World {
    World {
        s: b,
        agent: twin(&w.agent),
        gate: twin(&w.gate),
        mandate: w.mandate.clone(),
        document: w.document.clone(),
    }
}

fn status_idx(token: &str) -> u64 {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&mandate_core::encoding::b64url_decode(payload).unwrap()).unwrap();
    claims["status"]["status_list"]["idx"].as_u64().unwrap()
}

/// Reads SSE events from a streaming response until `n` arrive or `within` passes.
async fn read_events(resp: &mut reqwest::Response, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut buf = String::new();
    let mut kinds = Vec::new();
    while kinds.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, resp.chunk()).await else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(kind) = block.lines().find_map(|l| l.strip_prefix("event:")) {
                kinds.push(kind.trim().to_owned());
            }
        }
    }
    kinds
}

/// Tokens issued by either replica are known to the other, their status-list indexes never
/// collide, a revocation on one is seen by the other at once (introspection and event stream),
/// and the tenant's ledger stays one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_issue_revoke_and_stream_as_one() {
    let wa = world().await;
    if !on_postgres(&wa.s) {
        return;
    }
    let wb = through(&wa, wa.s.replica().await);
    // Issued on one, introspected on the other.
    let (status, _, body) = wb.redeem(&Dpop::new(150)).await;
    assert_eq!(status, 200, "{body:?}");
    let from_b = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(wa.introspect(&from_b).await["active"], true);
    // Parallel issuance on both: distinct status indexes.
    let (wa, wb) = (Arc::new(wa), Arc::new(wb));
    let mut tasks = Vec::new();
    for i in 0..30u8 {
        let w = Arc::clone(if i % 2 == 0 { &wa } else { &wb });
        tasks.push(tokio::spawn(async move {
            let (status, _, body) = w.redeem(&Dpop::new(160 + i)).await;
            assert_eq!(status, 200, "{body:?}");
            status_idx(body["access_token"].as_str().unwrap())
        }));
    }
    let mut seen = HashSet::from([status_idx(&from_b)]);
    for t in tasks {
        assert!(
            seen.insert(t.await.unwrap()),
            "a status index was handed out twice"
        );
    }
    // A gate follows B's event stream; the mandate is revoked on A.
    let assertion = wb.gate.assertion(&wb.s, json!({}));
    let mut events =
        wb.s.http
            .get(wb.s.url("/v1/events"))
            .bearer_auth(&assertion)
            .send()
            .await
            .unwrap();
    assert_eq!(events.status(), 200);
    let t0 = Instant::now();
    let r =
        wa.s.post(
            &format!("/v1/delegations/{}/revoke", wa.mandate),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let kinds = read_events(&mut events, 1, Duration::from_secs(3)).await;
    assert_eq!(kinds, ["delegation.revoked"]);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(wb.introspect(&from_b).await["active"], false);
    // Issuance after the revocation is refused on both.
    for w in [wa.as_ref(), wb.as_ref()] {
        let (status, _, body) = w.redeem(&Dpop::new(199)).await;
        assert_eq!(status, 400, "{body:?}");
    }
    // One chain, verified end to end, read through either replica.
    let a = wa.s.receipts(ADMIN_KEY).await;
    let b = wb.s.receipts(ADMIN_KEY).await;
    assert_eq!(a, b);
    assert!(a.len() > 32);
}

/// Replicas started at the same moment on an empty database: one bootstraps, all serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_bootstrap_once() {
    let servers = crate::harness::start_replicas(4).await;
    if !on_postgres(&servers[0]) {
        return;
    }
    for r in &servers {
        let me = r.get("/v1/me", ADMIN_KEY).await;
        assert_eq!(me.status, 200, "{:?}", me.body);
    }
    let a = &servers[1];
    let tenants: Vec<Value> = a.receipts(ADMIN_KEY).await;
    let created = tenants
        .iter()
        .filter(|r| r["kind"] == "tenant.created")
        .count();
    assert_eq!(created, 1, "bootstrapped once");
}
