//! Mandates: bounded by the agent's ceiling and by policy; signed by the human when the human
//! has a key; single-use signatures; delegation documents that only the delegate can redeem.

use ed25519_dalek::{Signer, SigningKey};
use mandate_core::encoding::b64url;
use serde_json::{Value, json};

use crate::harness::{self, ADMIN_KEY};
use crate::tokens::{CRM, Dpop, read_tickets, register_agent};

fn body(agent: &str, patch: Value) -> Value {
    let mut b = json!({"agent": agent, "authorization_details": read_tickets(), "expires_in": 3600, "purpose": "triage"});
    crate::tokens::merge(&mut b, patch);
    b
}

#[tokio::test]
async fn mandates_are_bounded_and_refusals_change_nothing() {
    let s = harness::start().await;
    let me = s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = register_agent(&s, &me, "bot", 21).await;
    let before = s.receipts(ADMIN_KEY).await.len();
    let beyond_ceiling = json!([{"type": "mandate", "actions": ["delete"], "locations": [CRM], "resources": ["tickets/*"]}]);
    let cases: Vec<(&str, Value, u16)> = vec![
        (
            "beyond the agent's ceiling",
            body(&agent.id, json!({"authorization_details": beyond_ceiling})),
            422,
        ),
        (
            "longer than 24 h",
            body(&agent.id, json!({"expires_in": 86_401})),
            422,
        ),
        (
            "already expired",
            body(&agent.id, json!({"expires_in": 0})),
            422,
        ),
        (
            "depth over the hard cap",
            body(&agent.id, json!({"max_depth": 11})),
            422,
        ),
        ("zero depth", body(&agent.id, json!({"max_depth": 0})), 422),
        (
            "unknown action",
            body(
                &agent.id,
                json!({"authorization_details": [{"type": "mandate", "actions": ["launch"], "resources": ["x"]}]}),
            ),
            422,
        ),
        (
            "no expiry",
            body(&agent.id, json!({"expires_in": null})),
            400,
        ),
        (
            "both expiries",
            body(&agent.id, json!({"expires_at": 1})), /*with expires_in*/
            400,
        ),
        (
            "unknown agent",
            body("agt_00000000000000000000000000", json!({})),
            404,
        ),
        (
            "unknown field",
            body(&agent.id, json!({"scope": "everything"})),
            400,
        ),
        (
            "signature without a key",
            body(
                &agent.id,
                json!({"expires_in": null, "expires_at": s.clock_secs() + 600, "human_signature": b64url(&[0u8; 64])}),
            ),
            422,
        ),
    ];
    for (what, b, status) in cases {
        let r = s.post("/v1/mandates", ADMIN_KEY, b).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {:?}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
    }
    s.post(
        &format!("/v1/agents/{}/suspend", agent.id),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    let r = s
        .post("/v1/mandates", ADMIN_KEY, body(&agent.id, json!({})))
        .await;
    assert_eq!(r.status, 409, "a suspended agent gets no mandate");
    assert_eq!(
        s.receipts(ADMIN_KEY).await.len(),
        before + 1,
        "only the suspension was recorded"
    );
    s.post(
        &format!("/v1/agents/{}/resume", agent.id),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    let r = s.post("/v1/mandates", ADMIN_KEY, body(&agent.id, json!({"max_depth": 2, "task_id": "T-1", "prohibitions": [{"actions": ["write"], "resources": ["**"]}]}))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap();
    let shown = s
        .get(&format!("/v1/delegations/{id}"), ADMIN_KEY)
        .await
        .body;
    assert_eq!(shown["max_depth"], 2);
    assert_eq!(shown["depth"], 1);
    assert_eq!(shown["task_id"], "T-1");
    assert_eq!(shown["delegate"], agent.id.as_str());
    assert_eq!(shown["delegator"]["id"], me.as_str());
    assert_eq!(shown["digest"].as_str().unwrap().len(), 64);
    // The document is a delegation+jwt signed by the server, carrying the digest.
    let doc = r.body["delegation"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &mandate_core::encoding::b64url_decode(doc.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "delegation+jwt");
    let claims: Value = serde_json::from_slice(
        &mandate_core::encoding::b64url_decode(doc.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["digest"], shown["digest"]);
    assert_eq!(claims["del"], id);
}

#[tokio::test]
async fn a_human_with_a_key_must_sign_and_each_signature_works_once() {
    let s = harness::start().await;
    let me = s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant = s.get("/v1/me", ADMIN_KEY).await.body["tenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = register_agent(&s, &me, "bot", 22).await;
    let human_key = SigningKey::from_bytes(&[23; 32]);
    let jwk = mandate_core::jwk::PublicJwk::from_seed(&human_key.to_bytes()).to_json();
    let r = s
        .post(
            &format!("/v1/humans/{me}/keys"),
            ADMIN_KEY,
            json!({"jwk": jwk}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Unsigned: refused.
    let r = s
        .post("/v1/mandates", ADMIN_KEY, body(&agent.id, json!({})))
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("human_signature")
    );
    // Signed over the canonical authorization object.
    let expires_at = s.clock_secs() + 600;
    let object = json!({
        "tenant": tenant, "delegator": me, "agent": agent.id,
        "authorization_details": read_tickets(), "prohibitions": [],
        "expires_at": expires_at, "max_depth": 3, "purpose": "triage", "task_id": null,
    });
    let canonical = mandate_core::jcs::canonicalize(&object).unwrap();
    let sig = b64url(&human_key.sign(canonical.as_bytes()).to_bytes());
    let signed = body(
        &agent.id,
        json!({"expires_in": null, "expires_at": expires_at, "human_signature": sig}),
    );
    let wrong = b64url(
        &SigningKey::from_bytes(&[24; 32])
            .sign(canonical.as_bytes())
            .to_bytes(),
    );
    let r = s
        .post(
            "/v1/mandates",
            ADMIN_KEY,
            body(
                &agent.id,
                json!({"expires_in": null, "expires_at": expires_at, "human_signature": wrong}),
            ),
        )
        .await;
    assert_eq!(r.status, 422, "signature by another key: {:?}", r.body);
    let r = s.post("/v1/mandates", ADMIN_KEY, body(&agent.id, json!({"expires_in": null, "expires_at": expires_at, "purpose": "other", "human_signature": sig}))).await;
    assert_eq!(
        r.status, 422,
        "signature over different content: {:?}",
        r.body
    );
    let r = s.post("/v1/mandates", ADMIN_KEY, signed.clone()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let digest = r.body["mandate"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(
        digest,
        mandate_core::encoding::hex(&mandate_core::jcs::sha256(&object).unwrap())
    );
    let r = s.post("/v1/mandates", ADMIN_KEY, signed).await;
    assert_eq!(
        r.status, 409,
        "a signed authorization is single-use: {:?}",
        r.body
    );
}

#[tokio::test]
async fn a_token_request_fails_closed_when_the_ledger_cannot_record() {
    let w = crate::tokens::world().await;
    w.s.db.break_ledger(true).await;
    let (status, headers, body) = w.redeem(&Dpop::new(60)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body:?}"
    );
    assert_eq!(headers["retry-after"], "1");
    assert!(body.get("access_token").is_none());
    w.s.db.break_ledger(false).await;
    let (status, _, body) = w.redeem(&Dpop::new(61)).await;
    assert_eq!(status, 200, "positive control: {body:?}");
    assert_eq!(
        w.s.count("token.issued").await,
        1,
        "the refused attempt left no token and no receipt"
    );
}
