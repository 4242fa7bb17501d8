//! Token Status Lists: every token carries its index; the list flips within one request of a
//! revocation; SUSPENDED differs from INVALID; an independent Python reader agrees.

use serde_json::{Value, json};

use crate::harness::ADMIN_KEY;
use crate::tokens::{Dpop, world};

fn claims(token: &str) -> Value {
    serde_json::from_slice(
        &mandate_core::encoding::b64url_decode(token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap()
}

/// Statuses of `idxs` as read by the stdlib-only Python reader.
fn python_read(url: &str, idxs: &[u64]) -> Vec<u8> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../interop/python/status_list.py"
    );
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script).arg(url);
    for i in idxs {
        cmd.arg(i.to_string());
    }
    let out = cmd.output().expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_once('=').unwrap().1.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_bits_follow_revocation_and_suspension() {
    let w = world().await;
    let mut tokens = Vec::new();
    for seed in 120..123u8 {
        let (_, _, body) = w.redeem(&Dpop::new(seed)).await;
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let refs: Vec<Value> = tokens
        .iter()
        .map(|t| claims(t)["status"]["status_list"].clone())
        .collect();
    let idx: Vec<u64> = refs.iter().map(|r| r["idx"].as_u64().unwrap()).collect();
    assert!(
        idx.windows(2).all(|p| p[0] < p[1]),
        "indexes are increasing: {idx:?}"
    );
    let uri = refs[0]["uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with(&w.s.running.issuer));
    let url = w.s.url(&uri[w.s.running.issuer.len()..]);
    let read =
        |url: String, idx: Vec<u64>| tokio::task::spawn_blocking(move || python_read(&url, &idx));
    assert_eq!(
        read(url.clone(), idx.clone()).await.unwrap(),
        [0, 0, 0],
        "all valid"
    );

    // Revoke the second token: its bit flips to INVALID in the very next fetch.
    let a = w.agent.assertion(&w.s, json!({}));
    let (status, _, _) =
        w.s.form(
            "/oauth2/revoke",
            &[
                ("token", &tokens[1]),
                ("client_assertion_type", crate::tokens::BEARER),
                ("client_assertion", &a),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(read(url.clone(), idx.clone()).await.unwrap(), [0, 1, 0]);
    // Suspension is SUSPENDED (0x02), reversible; resumption restores VALID.
    w.s.post(
        &format!("/v1/agents/{}/suspend", w.agent.id),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    assert_eq!(read(url.clone(), idx.clone()).await.unwrap(), [2, 1, 2]);
    w.s.post(
        &format!("/v1/agents/{}/resume", w.agent.id),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    assert_eq!(read(url.clone(), idx.clone()).await.unwrap(), [0, 1, 0]);
    // Revoking the mandate invalidates all.
    w.s.post(
        &format!("/v1/delegations/{}/revoke", w.mandate),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    assert_eq!(read(url.clone(), idx.clone()).await.unwrap(), [1, 1, 1]);

    // The list is a statuslist+jwt signed by the server, with a ttl.
    let resp = w.s.http.get(&url).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/statuslist+jwt");
    let jwt = resp.text().await.unwrap();
    let header: Value = serde_json::from_slice(
        &mandate_core::encoding::b64url_decode(jwt.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "statuslist+jwt");
    let c = claims(&jwt);
    assert_eq!(c["ttl"], 30);
    assert_eq!(c["status_list"]["bits"], 2);
    let list =
        mandate_core::status_list::StatusList::decode(2, c["status_list"]["lst"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        list.get(idx[0] % 4096).unwrap(),
        mandate_core::status_list::INVALID
    );
    // Lists beyond what was ever allocated do not exist.
    let r =
        w.s.http
            .get(w.s.url("/statuslists/999999"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn indexes_are_never_reused_across_restarts() {
    let w = world().await;
    let (_, _, body) = w.redeem(&Dpop::new(124)).await;
    let first = claims(body["access_token"].as_str().unwrap())["status"]["status_list"]["idx"]
        .as_u64()
        .unwrap();
    // A fresh allocator over the same store (a restart, or another replica) continues above
    // every index handed out.
    let store = w.s.db.open_store().await;
    assert_eq!(store.max_status_idx().await.unwrap(), Some(first));
    let next = mandate_server::state::StatusIndexes::new(store, 16)
        .next()
        .await
        .unwrap();
    assert!(next > first);
}
