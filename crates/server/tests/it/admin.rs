//! The registry end to end: humans, agents, keys, gates, receipts; and fail-closed writes.

use reqwest::Method;
use serde_json::json;

use crate::harness::{self, ADMIN_KEY, public_jwk};

#[tokio::test]
async fn agent_lifecycle_with_receipts() {
    let s = harness::start().await;
    let (owner, _) = s.human(ADMIN_KEY, "alice", "admin").await;
    let created = s.agent(ADMIN_KEY, &owner, "triage-bot").await;
    let agent = &created["agent"];
    let id = agent["id"].as_str().unwrap();
    assert!(id.starts_with("agt_"));
    assert_eq!(agent["owner"], owner.as_str());
    assert_eq!(agent["status"], "active");
    assert!(
        agent["spiffe_id"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/agent/{id}"))
    );
    assert!(agent["did"].as_str().unwrap().starts_with("did:key:z6Mk"));
    assert_eq!(agent["commitment"].as_str().unwrap().len(), 64);
    assert!(agent["last_seen_at"].is_null());
    assert!(agent["created_at"].as_str().unwrap().ends_with('Z'));
    // A server-generated key is returned once, and only then.
    let private = &created["private_jwk"];
    assert_eq!(private["kty"], "OKP");
    assert!(private["d"].is_string());
    assert_eq!(private["kid"], agent["keys"][0]["kid"]);
    let shown = s.get(&format!("/v1/agents/{id}"), ADMIN_KEY).await;
    assert_eq!(shown.status, 200);
    assert!(
        !shown
            .body
            .to_string()
            .contains(private["d"].as_str().unwrap())
    );
    assert_eq!(shown.body["commitment"], agent["commitment"]);

    // Commitment = sha256(JCS({name, purpose, ceiling})) over the stored ceiling.
    let want = mandate_core::identity::commitment(
        "triage-bot",
        "triage support tickets",
        &shown.body["ceiling"],
    )
    .unwrap();
    assert_eq!(shown.body["commitment"], want);

    for (action, status) in [
        ("suspend", "suspended"),
        ("resume", "active"),
        ("revoke", "revoked"),
    ] {
        let r = s
            .post(
                &format!("/v1/agents/{id}/{action}"),
                ADMIN_KEY,
                json!({"reason": "test"}),
            )
            .await;
        assert_eq!(r.status, 200, "{action}: {:?}", r.body);
        assert_eq!(r.body["status"], status);
    }
    let r = s
        .post(&format!("/v1/agents/{id}/resume"), ADMIN_KEY, json!({}))
        .await;
    assert_eq!(r.status, 409, "revocation is final");
    assert_eq!(r.body["type"], "urn:mandate:problem:conflict");

    let receipts = s.receipts(ADMIN_KEY).await;
    let kinds: Vec<&str> = receipts
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "tenant.created",
            "human.created",
            "apikey.created",
            "agent.registered",
            "agent.suspended",
            "agent.resumed",
            "agent.revoked"
        ]
    );
    let reg = &receipts[3];
    assert_eq!(reg["resource"], format!("agents/{id}"));
    assert_eq!(reg["request_hash"].as_str().unwrap().len(), 64);
    // Receipts carry ids and hashes, never key material.
    let all = serde_json::to_string(&receipts).unwrap();
    assert!(!all.contains(private["d"].as_str().unwrap()));
    assert!(!all.contains(ADMIN_KEY));
}

#[tokio::test]
async fn keys_rotate_and_the_last_one_stays() {
    let s = harness::start().await;
    let (owner, _) = s.human(ADMIN_KEY, "bob", "admin").await;
    let r = s
        .post("/v1/agents", ADMIN_KEY, json!({"name": "bot", "owner": owner, "purpose": "p", "ceiling": harness::ceiling(), "jwk": public_jwk(1)}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(
        r.body.get("private_jwk").is_none(),
        "no private key when the caller brought one"
    );
    let id = r.body["agent"]["id"].as_str().unwrap().to_owned();
    let first = r.body["agent"]["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/agents/{id}/keys/{first}"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(
        r.status, 409,
        "the last active key cannot be retired: {:?}",
        r.body
    );
    let r = s
        .post(
            &format!("/v1/agents/{id}/keys"),
            ADMIN_KEY,
            json!({"jwk": public_jwk(2)}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = s
        .post(
            &format!("/v1/agents/{id}/keys"),
            ADMIN_KEY,
            json!({"jwk": public_jwk(2)}),
        )
        .await;
    assert_eq!(r.status, 409, "the same key twice");
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/agents/{id}/keys/{first}"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "retired");
    let shown = s.get(&format!("/v1/agents/{id}"), ADMIN_KEY).await.body;
    let expected_did = mandate_core::jwk::PublicJwk::from_json(&public_jwk(2))
        .unwrap()
        .did_key();
    assert_eq!(
        shown["did"], expected_did,
        "the did:key follows the newest active key"
    );
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/agents/{id}/keys/nope"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn gates_humans_lists_and_paging() {
    let s = harness::start().await;
    let r = s
        .post("/v1/gates", ADMIN_KEY, json!({"name": "crm-gate", "audience": "https://crm.example.com", "jwk": public_jwk(3)}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get(&format!("/v1/gates/{gid}"), ADMIN_KEY).await.body["audience"],
        "https://crm.example.com"
    );
    assert_eq!(
        s.get("/v1/gates", ADMIN_KEY).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (owner, _) = s.human(ADMIN_KEY, "carol", "admin").await;
    for i in 0..5 {
        // Ids order by creation millisecond.
        s.clock.advance(1);
        s.agent(ADMIN_KEY, &owner, &format!("bot-{i}")).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/agents?limit=2".to_owned();
    loop {
        let r = s.get(&path, ADMIN_KEY).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        for a in r.body["items"].as_array().unwrap() {
            seen.push(a["name"].as_str().unwrap().to_owned());
        }
        match r.body["next"].as_str() {
            Some(n) => path = format!("/v1/agents?limit=2&cursor={n}"),
            None => break,
        }
    }
    assert_eq!(seen, ["bot-0", "bot-1", "bot-2", "bot-3", "bot-4"]);
    let r = s
        .get(
            &format!("/v1/agents?owner={owner}&status=active"),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 5);
    let r = s.get("/v1/agents?status=revoked", ADMIN_KEY).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
    // Offboarding a human suspends their agents and disables their keys.
    let (dave, dave_key) = s.human(ADMIN_KEY, "dave", "admin").await;
    let a = s.agent(ADMIN_KEY, &dave, "daves-bot").await;
    let r = s
        .post(
            &format!("/v1/humans/{dave}/revoke"),
            ADMIN_KEY,
            json!({"reason": "left"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "revoked");
    assert_eq!(s.get("/v1/me", &dave_key).await.status, 401);
    let aid = a["agent"]["id"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/v1/agents/{aid}"), ADMIN_KEY).await.body["status"],
        "suspended"
    );
    s.receipts(ADMIN_KEY).await;
}

#[tokio::test]
async fn a_failing_ledger_refuses_with_503_and_changes_nothing() {
    let s = harness::start().await;
    let (owner, _) = s.human(ADMIN_KEY, "erin", "admin").await;
    let before = s.receipts(ADMIN_KEY).await.len();
    s.db.break_ledger(true).await;
    let r = s
        .post(
            "/v1/agents",
            ADMIN_KEY,
            json!({"name": "ghost", "owner": owner, "purpose": "p", "ceiling": harness::ceiling()}),
        )
        .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.body["type"], "urn:mandate:problem:unavailable");
    assert!(
        !r.body.to_string().contains("disk full"),
        "no internal detail leaks"
    );
    s.db.break_ledger(false).await;
    let agents = s.get("/v1/agents", ADMIN_KEY).await;
    assert_eq!(
        agents.body["items"].as_array().unwrap().len(),
        0,
        "the agent must not exist"
    );
    assert_eq!(s.receipts(ADMIN_KEY).await.len(), before);
    // Positive control: the same request now succeeds.
    s.agent(ADMIN_KEY, &owner, "ghost").await;
}
