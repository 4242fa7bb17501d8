//! Gate decision receipts (`POST /v1/gates/receipts`): recorded once each however often they
//! are shipped, only from an authenticated gate, strictly validated — and the trust score they
//! feed (DESIGN §8), shown with its inputs on agents and in introspection.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::approvals::request_hash;
use crate::harness::ADMIN_KEY;
use crate::tokens::{Dpop, World, nonce, world};

async fn ship_with(w: &World, bearer: &str, body: Value) -> (StatusCode, Value) {
    let r =
        w.s.call(Method::POST, "/v1/gates/receipts", Some(bearer), Some(body))
            .await;
    (r.status, r.body)
}

async fn ship(w: &World, receipts: Vec<Value>) -> Value {
    let (status, body) = ship_with(
        w,
        &w.gate.assertion(&w.s, json!({})),
        json!({ "receipts": receipts }),
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    body
}

fn decision(w: &World, id: &str, decision: &str, reason: &str) -> Value {
    use mandate_core::clock::Clock;
    json!({
        "id": id, "decision": decision, "reason": reason, "agent": w.agent.id,
        "sub": null, "delegation": w.mandate, "action": "read", "resource": "tickets/42",
        "method": "GET", "target": "/tickets/42?api_key=secret", "at": w.s.clock.now_ms() - 1000,
        "request_hash": request_hash("GET", "/tickets/42", json!({})),
    })
}

async fn gate_receipts(w: &World) -> Vec<Value> {
    w.s.receipts(ADMIN_KEY)
        .await
        .into_iter()
        .filter(|r| r["kind"] == "gate.decision")
        .collect()
}

#[tokio::test]
async fn shipped_decisions_are_recorded_exactly_once() {
    let w = world().await;
    let (a, b, c) = (nonce(), nonce(), nonce());
    let r = ship(
        &w,
        vec![
            decision(&w, &a, "allow", "ok"),
            decision(&w, &b, "deny", "insufficient_scope"),
            decision(&w, &c, "deny", "invalid_token"),
        ],
    )
    .await;
    assert_eq!(r, json!({"accepted": 3, "duplicates": 0}));
    let recorded = gate_receipts(&w).await;
    assert_eq!(recorded.len(), 3);
    let first = &recorded[0];
    assert_eq!(first["decision"], "allow");
    assert_eq!(first["actor"]["agent"], w.agent.id.as_str());
    assert_eq!(first["actor"]["chain"], json!([w.gate.id]));
    assert_eq!(first["delegation"], w.mandate.as_str());
    assert_eq!(first["action"], "read");
    assert_eq!(first["resource"], "tickets/42");
    assert_eq!(first["reasons"][0], "ok");
    let reasons = first["reasons"].to_string();
    assert!(reasons.contains(&format!("gate receipt {a}")), "{reasons}");
    assert!(reasons.contains("target /tickets/42\""), "{reasons}");
    // The query string is never recorded.
    assert!(
        !w.s.receipts(ADMIN_KEY)
            .await
            .iter()
            .any(|r| r.to_string().contains("secret"))
    );
    assert_eq!(first["request_hash"].as_str().unwrap().len(), 64);
    assert_eq!(recorded[1]["decision"], "deny");
    assert_eq!(recorded[1]["reasons"][0], "insufficient_scope");

    // Re-shipping (a gate restart) records only what is new; a repeat inside a call counts once.
    let d = nonce();
    let r = ship(
        &w,
        vec![
            decision(&w, &a, "allow", "ok"),
            decision(&w, &b, "deny", "insufficient_scope"),
            decision(&w, &d, "allow", "ok"),
            decision(&w, &d, "allow", "ok"),
            decision(&w, &c, "deny", "invalid_token"),
        ],
    )
    .await;
    assert_eq!(r, json!({"accepted": 1, "duplicates": 4}));
    assert_eq!(gate_receipts(&w).await.len(), 4);
    let r = ship(&w, vec![decision(&w, &d, "allow", "ok")]).await;
    assert_eq!(r, json!({"accepted": 0, "duplicates": 1}));
    assert_eq!(
        ship(&w, vec![]).await,
        json!({"accepted": 0, "duplicates": 0})
    );
    assert_eq!(gate_receipts(&w).await.len(), 4);

    // Concurrent shipments of the same ids still record each id once.
    let batch: Vec<Value> = (0..50)
        .map(|_| decision(&w, &nonce(), "allow", "ok"))
        .collect();
    let (x, y) = tokio::join!(ship(&w, batch.clone()), ship(&w, batch.clone()));
    assert_eq!(
        x["accepted"].as_u64().unwrap() + y["accepted"].as_u64().unwrap(),
        50,
        "{x} {y}"
    );
    assert_eq!(gate_receipts(&w).await.len(), 54);
}

#[tokio::test]
async fn only_an_authenticated_gate_may_ship() {
    let w = world().await;
    let body = json!({"receipts": [decision(&w, &nonce(), "deny", "insufficient_scope")]});
    let before = w.s.receipts(ADMIN_KEY).await.len();
    // An API key, an agent's assertion, no credential: 401.
    let (status, r) = ship_with(&w, ADMIN_KEY, body.clone()).await;
    assert_eq!(status, 401, "{r:?}");
    assert_eq!(r["type"], "urn:mandate:problem:unauthorized");
    let (status, _) = ship_with(&w, &w.agent.assertion(&w.s, json!({})), body.clone()).await;
    assert_eq!(status, 401);
    let r =
        w.s.call(Method::POST, "/v1/gates/receipts", None, Some(body.clone()))
            .await;
    assert_eq!(r.status, 401);
    // A wrong audience or an expired assertion: 401.
    for patch in [
        json!({"aud": "https://elsewhere.example"}),
        json!({"exp": 1}),
    ] {
        let (status, _) = ship_with(&w, &w.gate.assertion(&w.s, patch), body.clone()).await;
        assert_eq!(status, 401);
    }
    assert_eq!(w.s.receipts(ADMIN_KEY).await.len(), before);
    // A replayed assertion: 401, and nothing more recorded.
    let a = w.gate.assertion(&w.s, json!({}));
    assert_eq!(ship_with(&w, &a, body.clone()).await.0, 200);
    let (status, _) = ship_with(
        &w,
        &a,
        json!({"receipts": [decision(&w, &nonce(), "deny", "insufficient_scope")]}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(gate_receipts(&w).await.len(), 1);
}

#[tokio::test]
async fn malformed_shipments_are_refused_whole() {
    let w = world().await;
    let good = || decision(&w, &nonce(), "deny", "insufficient_scope");
    let with = |patch: Value| {
        let mut d = good();
        for (k, v) in patch.as_object().unwrap() {
            d[k] = v.clone();
        }
        json!({"receipts": [good(), d]})
    };
    use mandate_core::clock::Clock;
    let now = w.s.clock.now_ms();
    let too_many: Vec<Value> = (0..1001).map(|_| good()).collect();
    for (body, why) in [
        (json!({}), "no receipts"),
        (
            json!({"receipts": [good()], "extra": 1}),
            "unknown top-level field",
        ),
        (with(json!({"colour": "red"})), "unknown field"),
        (with(json!({"decision": "maybe"})), "decision"),
        (with(json!({"reason": "Not A Code"})), "reason"),
        (with(json!({"id": ""})), "empty id"),
        (with(json!({"id": "a b"})), "id with a space"),
        (with(json!({"agent": "bob"})), "agent"),
        (with(json!({"sub": "agt_x"})), "sub"),
        (with(json!({"delegation": 5})), "delegation type"),
        (with(json!({"action": "launch"})), "action"),
        (with(json!({"request_hash": "00"})), "request hash"),
        (with(json!({"target": "/a\nb"})), "control character"),
        (with(json!({"at": now - 31 * 86_400_000_i64})), "too old"),
        (with(json!({"at": now + 3_600_000})), "in the future"),
        (with(json!({"at": 1.5})), "at type"),
        (json!({ "receipts": too_many }), "over 1000"),
    ] {
        let (status, r) = ship_with(&w, &w.gate.assertion(&w.s, json!({})), body).await;
        assert_eq!(status, 400, "{why}: {r:?}");
        assert_eq!(r["type"], "urn:mandate:problem:bad-request", "{why}");
    }
    assert!(gate_receipts(&w).await.is_empty());
    // Positive control: the same shapes without the defect pass; nulls are allowed.
    let minimal = json!({"id": nonce(), "decision": "deny", "reason": "invalid_token", "at": now});
    assert_eq!(
        ship(&w, vec![good(), minimal]).await,
        json!({"accepted": 2, "duplicates": 0})
    );
}

#[tokio::test]
async fn trust_scores_show_their_inputs_and_drop_on_denials_and_suspension() {
    let w = world().await;
    let path = format!("/v1/agents/{}", w.agent.id);
    let a = w.s.get(&path, ADMIN_KEY).await;
    assert_eq!(a.status, 200);
    let trust = &a.body["trust"];
    assert_eq!(trust["score"], 50, "{trust}");
    for k in [
        "status",
        "age_days",
        "denials_24h",
        "denials_by_kind",
        "key_age_days",
        "idle_days",
    ] {
        assert!(trust["inputs"].get(k).is_some(), "{k} missing: {trust}");
    }
    assert_eq!(trust["inputs"]["denials_24h"], 0);
    // Lists carry the same object.
    let list = w.s.get("/v1/agents", ADMIN_KEY).await;
    assert_eq!(list.body["items"][0]["trust"]["score"], 50);

    // Introspection carries the acting agent's score for `min_trust`.
    let (status, _, body) = w.redeem(&Dpop::new(61)).await;
    assert_eq!(status, 200, "{body:?}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let intro = w.introspect(&token).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["trust"], 50);

    // Two gate denials cost 5 each; an approval wait and an allow cost nothing.
    ship(
        &w,
        vec![
            decision(&w, &nonce(), "deny", "insufficient_scope"),
            decision(&w, &nonce(), "deny", "constraint_failed"),
            decision(&w, &nonce(), "deny", "approval_required"),
            decision(&w, &nonce(), "allow", "ok"),
        ],
    )
    .await;
    let trust = w.s.get(&path, ADMIN_KEY).await.body["trust"].clone();
    assert_eq!(trust["score"], 40, "{trust}");
    assert_eq!(trust["inputs"]["denials_24h"], 2);
    assert_eq!(
        trust["inputs"]["denials_by_kind"],
        json!({"gate.decision": 2})
    );
    assert_eq!(w.introspect(&token).await["trust"], 40);
    // A refused token request counts too.
    let (status, _, _) = w
        .redeem_with(
            &w.agent.assertion(&w.s, json!({})),
            &w.document,
            Some(&Dpop::new(62).proof(&w.s, "POST", "/oauth2/token", json!({}))),
            &[("resource", "https://elsewhere.example")],
        )
        .await;
    assert_eq!(status, 400);
    let trust = w.s.get(&path, ADMIN_KEY).await.body["trust"].clone();
    assert_eq!(trust["score"], 35, "{trust}");
    assert_eq!(trust["inputs"]["denials_by_kind"]["token.refused"], 1);

    // Suspension: 0.
    let r =
        w.s.post(
            &format!("/v1/agents/{}/suspend", w.agent.id),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["trust"]["score"], 0);
    let trust = w.s.get(&path, ADMIN_KEY).await.body["trust"].clone();
    assert_eq!(trust["score"], 0);
    assert_eq!(trust["inputs"]["status"], "suspended");
    // Denials age out of the 24-hour window; age earns points back (after resuming).
    let r =
        w.s.post(
            &format!("/v1/agents/{}/resume", w.agent.id),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    w.s.clock.advance(2 * 86_400_000);
    let trust = w.s.get(&path, ADMIN_KEY).await.body["trust"].clone();
    assert_eq!(trust["inputs"]["denials_24h"], 0, "{trust}");
    assert_eq!(trust["score"], 52, "{trust}");
}
