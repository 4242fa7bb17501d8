//! Bad input: a clear 4xx problem document, no state change, no receipt.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{self, ADMIN_KEY, Server, public_jwk};

async fn snapshot(s: &Server) -> (usize, Value, Value) {
    let receipts = s.receipts(ADMIN_KEY).await.len();
    let agents = s.get("/v1/agents", ADMIN_KEY).await.body;
    let humans = s.get("/v1/humans", ADMIN_KEY).await.body;
    (receipts, agents, humans)
}

fn agent_body(owner: &str, patch: Value) -> Value {
    let mut b =
        json!({"name": "bot", "owner": owner, "purpose": "triage", "ceiling": harness::ceiling()});
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v.clone();
        }
    }
    b
}

#[tokio::test]
async fn bad_input_is_refused_with_a_problem_and_changes_nothing() {
    let s = harness::start().await;
    let (owner, _) = s.human(ADMIN_KEY, "olga", "admin").await;
    s.agent(ADMIN_KEY, &owner, "taken").await;
    let before = snapshot(&s).await;

    let mut small_order = [0u8; 32];
    small_order[0] = 1;
    let x = |b: &[u8]| mandate_core::encoding::b64url(b);
    let rfc_x = public_jwk(5)["x"].clone();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "unknown field",
            agent_body(&owner, json!({"colour": "blue"})),
            400,
            "unknown field `colour`",
        ),
        (
            "missing field",
            agent_body(&owner, json!({"purpose": null})),
            400,
            "missing field `purpose`",
        ),
        (
            "wrong type",
            agent_body(&owner, json!({"name": 7})),
            400,
            "invalid type",
        ),
        (
            "unknown action",
            agent_body(
                &owner,
                json!({"ceiling": [{"type": "mandate", "actions": ["frobnicate"], "resources": ["**"]}]}),
            ),
            422,
            "unknown action `frobnicate`",
        ),
        (
            "natural-language scope",
            agent_body(&owner, json!({"ceiling": "read the tickets"})),
            422,
            "ceiling",
        ),
        (
            "dot-dot resource",
            agent_body(
                &owner,
                json!({"ceiling": [{"type": "mandate", "actions": ["read"], "resources": ["tickets/../admin"]}]}),
            ),
            422,
            "ceiling",
        ),
        (
            "encoded separator",
            agent_body(
                &owner,
                json!({"ceiling": [{"type": "mandate", "actions": ["read"], "resources": ["tickets%2Fadmin"]}]}),
            ),
            422,
            "ceiling",
        ),
        (
            "RSA key",
            agent_body(
                &owner,
                json!({"jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}}),
            ),
            422,
            "jwk",
        ),
        (
            "X25519 key",
            agent_body(
                &owner,
                json!({"jwk": {"kty": "OKP", "crv": "X25519", "x": rfc_x}}),
            ),
            422,
            "Ed25519",
        ),
        (
            "short key",
            agent_body(
                &owner,
                json!({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}}),
            ),
            422,
            "32 bytes",
        ),
        (
            "small-order key",
            agent_body(
                &owner,
                json!({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": x(&small_order)}}),
            ),
            422,
            "small-order",
        ),
        (
            "private key",
            agent_body(
                &owner,
                json!({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": rfc_x, "d": x(&[1u8; 32])}}),
            ),
            422,
            "private member `d`",
        ),
        (
            "duplicate name",
            agent_body(&owner, json!({"name": "taken"})),
            409,
            "already exists",
        ),
        (
            "bad name",
            agent_body(&owner, json!({"name": "../etc"})),
            400,
            "name",
        ),
        (
            "unknown owner",
            agent_body(&owner, json!({"owner": "usr_00000000000000000000000000"})),
            404,
            "not found",
        ),
        (
            "control chars",
            agent_body(&owner, json!({"purpose": "a\u{0007}b"})),
            400,
            "control",
        ),
    ];
    for (what, body, status, needle) in cases {
        let r = s.post("/v1/agents", ADMIN_KEY, body).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {:?}", r.body);
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{what}"
        );
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(needle),
            "{what}: detail `{detail}` lacks `{needle}`"
        );
        assert!(
            !detail.contains("SQL") && !detail.contains("sqlite"),
            "{what}: leaks internals"
        );
    }

    let raw_cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "malformed JSON",
            "application/json",
            b"{\"name\": ".to_vec(),
            400,
        ),
        (
            "trailing garbage",
            "application/json",
            br#"{"name":"a"} x"#.to_vec(),
            400,
        ),
        (
            "duplicate members",
            "application/json",
            format!(
                r#"{{"name":"bot","name":"bot2","owner":"{owner}","purpose":"p","ceiling":[]}}"#
            )
            .into_bytes(),
            400,
        ),
        ("not JSON", "text/plain", b"name=bot".to_vec(), 415),
        (
            "over 1 MiB",
            "application/json",
            format!(r#"{{"name":"{}"}}"#, "a".repeat(1 << 20)).into_bytes(),
            413,
        ),
        (
            "too deep",
            "application/json",
            format!("{}{}", "[".repeat(100), "]".repeat(100)).into_bytes(),
            400,
        ),
    ];
    for (what, ct, body, status) in raw_cases {
        let r = s.raw(Method::POST, "/v1/agents", ADMIN_KEY, ct, body).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {:?}", r.body);
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{what}"
        );
    }

    // Humans and gates too.
    let r = s
        .post(
            "/v1/humans",
            ADMIN_KEY,
            json!({"name": "x", "email": "olga@example.com"}),
        )
        .await;
    assert_eq!(r.status, 409, "duplicate email: {:?}", r.body);
    let r = s
        .post(
            "/v1/humans",
            ADMIN_KEY,
            json!({"name": "x", "email": "nope"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .post(
            "/v1/humans",
            ADMIN_KEY,
            json!({"name": "x", "email": "x@y.z", "role": "root"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .post(
            "/v1/gates",
            ADMIN_KEY,
            json!({"name": "g", "audience": "not a uri", "jwk": public_jwk(4)}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = s.post("/v1/gates", ADMIN_KEY, json!({"name": "g", "audience": "https://g.example", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": rfc_x, "d": "AA"}})).await;
    assert_eq!(r.status, 422);
    let r = s.get("/v1/agents?limit=0", ADMIN_KEY).await;
    assert_eq!(r.status, 400);
    let r = s.get("/v1/agents?bogus=1", ADMIN_KEY).await;
    assert_eq!(r.status, 400);
    let r = s
        .post(
            "/v1/agents/agt_00000000000000000000000000/explode",
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);

    assert_eq!(snapshot(&s).await, before, "bad input changed state");

    // Positive control: the same body without the defect succeeds.
    let r = s
        .post(
            "/v1/agents",
            ADMIN_KEY,
            agent_body(&owner, json!({"name": "fine"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}
