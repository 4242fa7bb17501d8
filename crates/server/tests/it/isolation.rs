//! Tenant isolation over every admin route: tenant A's keys get 404 for B's objects, lists never
//! show them, and mutations leave B unchanged.

use reqwest::Method;
use serde_json::json;

use crate::harness::{self, ADMIN_KEY, public_jwk};

#[tokio::test]
async fn another_tenants_objects_are_not_found_on_every_route() {
    let s = harness::start().await;
    // Tenant B, with its own owner key.
    let r = s
        .post(
            "/v1/tenants",
            ADMIN_KEY,
            json!({"name": "tenant-b", "owner": {"name": "Bea", "email": "bea@b.example"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let b_key = r.body["api_key"].as_str().unwrap().to_owned();
    let b_owner = r.body["owner"]["id"].as_str().unwrap().to_owned();
    let (b_human, _) = s.human(&b_key, "bert", "admin").await;
    let b_agent = s.agent(&b_key, &b_human, "b-bot").await["agent"].clone();
    let b_agent_id = b_agent["id"].as_str().unwrap().to_owned();
    let b_kid = b_agent["keys"][0]["kid"].as_str().unwrap().to_owned();
    s.post(
        &format!("/v1/agents/{b_agent_id}/keys"),
        &b_key,
        json!({"jwk": public_jwk(9)}),
    )
    .await;
    let r = s
        .post(
            "/v1/gates",
            &b_key,
            json!({"name": "b-gate", "audience": "https://b.example", "jwk": public_jwk(8)}),
        )
        .await;
    let b_gate = r.body["id"].as_str().unwrap().to_owned();
    let b_receipts = s.receipts(&b_key).await;

    // Tenant A: the operator tenant's owner, and an A admin.
    let (a_human, a_key) = s.human(ADMIN_KEY, "anna", "admin").await;
    s.agent(ADMIN_KEY, &a_human, "a-bot").await;

    let reason = json!({"reason": "x"});
    let routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, format!("/v1/humans/{b_human}"), None),
        (Method::GET, format!("/v1/humans/{b_owner}"), None),
        (
            Method::POST,
            format!("/v1/humans/{b_human}/api-keys"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/humans/{b_human}/revoke"),
            Some(reason.clone()),
        ),
        (Method::GET, format!("/v1/agents/{b_agent_id}"), None),
        (
            Method::POST,
            format!("/v1/agents/{b_agent_id}/suspend"),
            Some(reason.clone()),
        ),
        (
            Method::POST,
            format!("/v1/agents/{b_agent_id}/resume"),
            Some(reason.clone()),
        ),
        (
            Method::POST,
            format!("/v1/agents/{b_agent_id}/revoke"),
            Some(reason.clone()),
        ),
        (
            Method::POST,
            format!("/v1/agents/{b_agent_id}/keys"),
            Some(json!({"jwk": public_jwk(7)})),
        ),
        (
            Method::DELETE,
            format!("/v1/agents/{b_agent_id}/keys/{b_kid}"),
            None,
        ),
        (Method::GET, format!("/v1/gates/{b_gate}"), None),
    ];
    for key in [ADMIN_KEY, a_key.as_str()] {
        for (m, path, body) in &routes {
            let r = s.call(m.clone(), path, Some(key), body.clone()).await;
            assert_eq!(r.status, 404, "{m} {path}: {:?}", r.body);
            assert_eq!(r.body["type"], "urn:mandate:problem:not-found");
        }
        // Creating an agent owned by B's human is refused the same way.
        let r = s.post("/v1/agents", key, json!({"name": "hijack", "owner": b_human, "purpose": "p", "ceiling": harness::ceiling()})).await;
        assert_eq!(r.status, 404, "{:?}", r.body);
        // Lists never show B's objects.
        for path in [
            "/v1/humans",
            "/v1/agents",
            "/v1/gates",
            "/v1/receipts?limit=1000",
            &format!("/v1/agents?owner={b_human}"),
        ] {
            let r = s.get(path, key).await;
            assert_eq!(r.status, 200, "{path}");
            let text = r.body.to_string();
            for secret in [&b_human, &b_owner, &b_agent_id, &b_gate] {
                assert!(!text.contains(secret.as_str()), "{path} leaks {secret}");
            }
        }
    }
    // Only operator owners create tenants.
    let r = s
        .post(
            "/v1/tenants",
            &b_key,
            json!({"name": "c", "owner": {"name": "C", "email": "c@c.example"}}),
        )
        .await;
    assert_eq!(r.status, 403);
    // B is untouched: same receipts, agent still active with its keys.
    assert_eq!(s.receipts(&b_key).await, b_receipts);
    let agent = s
        .get(&format!("/v1/agents/{b_agent_id}"), &b_key)
        .await
        .body;
    assert_eq!(agent["status"], "active");
    assert_eq!(agent["keys"].as_array().unwrap().len(), 2);
    // And B cannot see A.
    let r = s.get(&format!("/v1/humans/{a_human}"), &b_key).await;
    assert_eq!(r.status, 404);
}
