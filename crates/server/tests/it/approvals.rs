//! Human-in-the-loop approvals (DESIGN §7): a gate asks about one exact request, a human
//! decides, the gate's next ask uses the approval once. Bound to the request hash, expiring,
//! single use, tenant-scoped, decided only by the right humans, and receipted at every step.

use std::time::{Duration, Instant};

use mandate_core::encoding::{b64url, hex};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{ADMIN_KEY, Server};
use crate::tokens::{Holder, World, mandate, read_tickets, register_agent, world};

/// base64url SHA-256 of a canonical request.
pub fn request_hash(method: &str, target: &str, arguments: Value) -> String {
    let canonical = mandate_core::jcs::canonicalize(
        &json!({"method": method, "target": target, "arguments": arguments}),
    )
    .unwrap();
    b64url(&Sha256::digest(canonical.as_bytes()))
}

/// `POST /v1/approvals/check` with a fresh client assertion of `gate`.
pub async fn check(
    s: &Server,
    gate: &Holder,
    delegation: &str,
    agent: &str,
    hash: &str,
) -> (StatusCode, Value) {
    let body = json!({
        "request_hash": hash, "delegation": delegation, "agent": agent,
        "action": "read", "resource": "tickets/42", "summary": "read ticket 42",
    });
    check_with(s, &gate.assertion(s, json!({})), body).await
}

pub async fn check_with(s: &Server, bearer: &str, body: Value) -> (StatusCode, Value) {
    let r = s
        .call(
            reqwest::Method::POST,
            "/v1/approvals/check",
            Some(bearer),
            Some(body),
        )
        .await;
    (r.status, r.body)
}

impl World {
    async fn ask(&self, hash: &str) -> Value {
        let (status, body) = check(&self.s, &self.gate, &self.mandate, &self.agent.id, hash).await;
        assert_eq!(status, 200, "{body:?}");
        body
    }
}

fn kinds(receipts: &[Value], kind: &str) -> Vec<Value> {
    receipts
        .iter()
        .filter(|r| r["kind"] == kind)
        .cloned()
        .collect()
}

#[tokio::test]
async fn lifecycle_approve_then_use_once_with_receipts() {
    let w = world().await;
    let h1 = request_hash("GET", "/tickets/42", json!({}));
    let first = w.ask(&h1).await;
    assert_eq!(first["status"], "pending", "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("apr_"));
    use mandate_core::clock::Clock;
    assert_eq!(first["expires_at"], w.s.clock.now_ms() + 15 * 60 * 1000);
    // Asking again while pending returns the same approval and records nothing new.
    let before = w.s.receipts(ADMIN_KEY).await.len();
    let again = w.ask(&h1).await;
    assert_eq!(again, first);
    assert_eq!(w.s.receipts(ADMIN_KEY).await.len(), before);

    let list = w.s.get("/v1/approvals?status=pending", ADMIN_KEY).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    let shown = w.s.get(&format!("/v1/approvals/{id}"), ADMIN_KEY).await;
    assert_eq!(shown.status, 200);
    for (k, v) in [
        ("status", json!("pending")),
        ("agent", json!(w.agent.id)),
        ("gate", json!(w.gate.id)),
        ("delegation", json!(w.mandate)),
        ("action", json!("read")),
        ("resource", json!("tickets/42")),
        ("summary", json!("read ticket 42")),
        ("request_hash", json!(h1)),
        ("decided_at", Value::Null),
    ] {
        assert_eq!(shown.body[k], v, "{k}: {:?}", shown.body);
    }

    let ok =
        w.s.post(
            &format!("/v1/approvals/{id}/approve"),
            ADMIN_KEY,
            json!({"reason": "looks fine"}),
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["status"], "approved");
    assert!(ok.body["decided_by"].as_str().unwrap().starts_with("usr_"));
    // Deciding twice is a conflict, in either direction.
    for verb in ["approve", "deny"] {
        let r =
            w.s.post(&format!("/v1/approvals/{id}/{verb}"), ADMIN_KEY, json!({}))
                .await;
        assert_eq!(r.status, 409, "{:?}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.body["type"], "urn:mandate:problem:conflict");
    }
    assert_eq!(
        w.s.get("/v1/approvals?status=pending", ADMIN_KEY)
            .await
            .body["items"],
        json!([])
    );

    // The gate's next ask uses it; the one after finds nothing approved: single use.
    let used = w.ask(&h1).await;
    assert_eq!(used, json!({"status": "approved", "id": id}));
    let next = w.ask(&h1).await;
    assert_eq!(next["status"], "pending");
    assert_ne!(next["id"], id.as_str());
    let shown = w.s.get(&format!("/v1/approvals/{id}"), ADMIN_KEY).await;
    assert_eq!(shown.body["status"], "consumed");
    assert!(shown.body["consumed_at"].is_string());
    let consumed = w.s.get("/v1/approvals?status=consumed", ADMIN_KEY).await;
    assert_eq!(consumed.body["items"].as_array().unwrap().len(), 1);

    // Every step is in the (verified) ledger, bound to the request hash.
    let receipts = w.s.receipts(ADMIN_KEY).await;
    let hex_hash = hex(&mandate_core::encoding::b64url_decode(&h1).unwrap());
    let requested = kinds(&receipts, "approval.requested");
    assert_eq!(requested.len(), 2);
    let approved = kinds(&receipts, "approval.approved");
    assert_eq!(approved.len(), 1);
    let used = kinds(&receipts, "approval.consumed");
    assert_eq!(used.len(), 1);
    for r in [&requested[0], &approved[0], &used[0]] {
        assert_eq!(r["request_hash"], hex_hash.as_str());
        assert_eq!(r["delegation"], w.mandate.as_str());
        assert_eq!(r["action"], "read");
        assert_eq!(r["resource"], "tickets/42");
        assert_eq!(r["reasons"][0], format!("approval {id}"));
    }
    assert_eq!(requested[0]["actor"]["agent"], w.agent.id.as_str());
    assert_eq!(requested[0]["actor"]["chain"], json!([w.gate.id]));
    assert!(
        approved[0]["actor"]["human"]
            .as_str()
            .unwrap()
            .starts_with("usr_")
    );
    assert!(
        approved[0]["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("looks fine"))
    );
    assert_eq!(used[0]["actor"]["agent"], w.agent.id.as_str());
}

#[tokio::test]
async fn an_approval_is_bound_to_its_exact_request() {
    let w = world().await;
    let h1 = request_hash("POST", "/tickets/42/close", json!({"note": "done"}));
    let h2 = request_hash("POST", "/tickets/42/close", json!({"note": "done!"}));
    let id = w.ask(&h1).await["id"].as_str().unwrap().to_owned();
    let r =
        w.s.post(&format!("/v1/approvals/{id}/approve"), ADMIN_KEY, json!({}))
            .await;
    assert_eq!(r.status, 200);
    // Another request (other arguments) does not ride on it: a new pending approval.
    let other = w.ask(&h2).await;
    assert_eq!(other["status"], "pending");
    assert_ne!(other["id"], id.as_str());
    // Nor does the same request under another delegation.
    let (second, _) = mandate(&w.s, &w.agent.id, read_tickets(), 3600).await;
    let (status, body) = check(&w.s, &w.gate, &second, &w.agent.id, &h1).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "pending");
    assert_ne!(body["id"], id.as_str());
    // The approved request itself still passes, once.
    assert_eq!(w.ask(&h1).await["status"], "approved");
    assert_eq!(w.ask(&h1).await["status"], "pending");
}

#[tokio::test]
async fn pending_and_approved_approvals_expire() {
    let w = world().await;
    let h = request_hash("DELETE", "/tickets/7", json!(null));
    let id = w.ask(&h).await["id"].as_str().unwrap().to_owned();
    // Nobody decided within 15 minutes.
    w.s.clock.advance(15 * 60 * 1000 + 1);
    let shown = w.s.get(&format!("/v1/approvals/{id}"), ADMIN_KEY).await;
    assert_eq!(shown.body["status"], "expired");
    let late =
        w.s.post(&format!("/v1/approvals/{id}/approve"), ADMIN_KEY, json!({}))
            .await;
    assert_eq!(late.status, 409, "{:?}", late.body);
    assert!(late.body["detail"].as_str().unwrap().contains("expired"));
    let expired = w.s.get("/v1/approvals?status=expired", ADMIN_KEY).await;
    assert_eq!(expired.body["items"][0]["id"], id.as_str());
    // The gate's next ask opens a fresh approval.
    let fresh = w.ask(&h).await;
    assert_eq!(fresh["status"], "pending");
    let fresh_id = fresh["id"].as_str().unwrap().to_owned();
    assert_ne!(fresh_id, id);
    // Approved, but not used within 5 minutes: expired too, and never used.
    let r =
        w.s.post(
            &format!("/v1/approvals/{fresh_id}/approve"),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    w.s.clock.advance(5 * 60 * 1000 + 1);
    let after = w.ask(&h).await;
    assert_eq!(after["status"], "pending");
    assert_ne!(after["id"], fresh_id.as_str());
    let shown =
        w.s.get(&format!("/v1/approvals/{fresh_id}"), ADMIN_KEY)
            .await;
    assert_eq!(shown.body["status"], "expired");
    assert_eq!(shown.body["consumed_at"], Value::Null);
    assert_eq!(w.s.count("approval.consumed").await, 0);
}

#[tokio::test]
async fn a_denial_stands_until_the_approval_would_have_expired() {
    let w = world().await;
    let h = request_hash("DELETE", "/tickets/9", json!({}));
    let id = w.ask(&h).await["id"].as_str().unwrap().to_owned();
    let r =
        w.s.post(
            &format!("/v1/approvals/{id}/deny"),
            ADMIN_KEY,
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "denied");
    assert_eq!(w.ask(&h).await, json!({"status": "denied", "id": id}));
    let receipts = w.s.receipts(ADMIN_KEY).await;
    let denied = kinds(&receipts, "approval.denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["decision"], "deny");
    w.s.clock.advance(15 * 60 * 1000);
    let again = w.ask(&h).await;
    assert_eq!(again["status"], "pending");
    assert_ne!(again["id"], id.as_str());
}

#[tokio::test]
async fn only_the_owner_the_mandating_human_or_an_admin_may_decide() {
    let w = world().await;
    // Bob (auditor) owns a second agent; the admin gives it a mandate.
    let (bob, bob_key) = w.s.human(ADMIN_KEY, "bob", "auditor").await;
    let (_, carol_key) = w.s.human(ADMIN_KEY, "carol", "auditor").await;
    let (_, dave_key) = w.s.human(ADMIN_KEY, "dave", "admin").await;
    let bots = register_agent(&w.s, &bob, "bobs-bot", 21).await;
    let (del, _) = mandate(&w.s, &bots.id, read_tickets(), 3600).await;
    let ask = |hash: String| {
        let (s, gate, del, agent) = (&w.s, &w.gate, del.clone(), bots.id.clone());
        async move {
            let (status, body) = check(s, gate, &del, &agent, &hash).await;
            assert_eq!(status, 200, "{body:?}");
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let a1 = ask(request_hash("GET", "/a", json!({}))).await;
    let before = w.s.receipts(ADMIN_KEY).await.len();
    for verb in ["approve", "deny"] {
        let r =
            w.s.post(&format!("/v1/approvals/{a1}/{verb}"), &carol_key, json!({}))
                .await;
        assert_eq!(r.status, 403, "{:?}", r.body);
        assert_eq!(r.body["type"], "urn:mandate:problem:forbidden");
    }
    assert_eq!(w.s.receipts(ADMIN_KEY).await.len(), before);
    // An auditor may still read approvals.
    assert_eq!(
        w.s.get(&format!("/v1/approvals/{a1}"), &carol_key)
            .await
            .status,
        200
    );
    // The agent's owner may decide, whatever their role.
    let r =
        w.s.post(&format!("/v1/approvals/{a1}/approve"), &bob_key, json!({}))
            .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["decided_by"], bob.as_str());
    // A tenant admin may decide any approval of the tenant.
    let a2 = ask(request_hash("GET", "/b", json!({}))).await;
    let r =
        w.s.post(&format!("/v1/approvals/{a2}/deny"), &dave_key, json!({}))
            .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // And the human who made the mandate (here the bootstrap owner) may decide too.
    let a3 = ask(request_hash("GET", "/c", json!({}))).await;
    let r =
        w.s.post(&format!("/v1/approvals/{a3}/approve"), ADMIN_KEY, json!({}))
            .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn other_tenants_get_404() {
    let w = world().await;
    let id = w.ask(&request_hash("GET", "/x", json!({}))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r =
        w.s.post(
            "/v1/tenants",
            ADMIN_KEY,
            json!({"name": "tenant-b", "owner": {"name": "Bea", "email": "bea@b.example"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let b_key = r.body["api_key"].as_str().unwrap().to_owned();
    for (method, path) in [
        ("GET", format!("/v1/approvals/{id}")),
        ("POST", format!("/v1/approvals/{id}/approve")),
        ("POST", format!("/v1/approvals/{id}/deny")),
        ("GET", "/v1/approvals/apr_not-an-id".to_owned()),
    ] {
        let r =
            w.s.call(
                method.parse().unwrap(),
                &path,
                Some(&b_key),
                (method == "POST").then(|| json!({})),
            )
            .await;
        assert_eq!(r.status, 404, "{method} {path}: {:?}", r.body);
        assert_eq!(r.body["type"], "urn:mandate:problem:not-found");
    }
    let list = w.s.get("/v1/approvals", &b_key).await;
    assert_eq!(list.body["items"], json!([]));
    let shown = w.s.get(&format!("/v1/approvals/{id}"), ADMIN_KEY).await;
    assert_eq!(shown.body["status"], "pending");
}

#[tokio::test]
async fn check_needs_a_gate_assertion_and_a_well_formed_request() {
    let w = world().await;
    let h = request_hash("GET", "/y", json!({}));
    let body = json!({"request_hash": h, "delegation": w.mandate, "agent": w.agent.id,
                      "action": "read", "resource": "tickets/1", "summary": "s"});
    // An API key is not a gate.
    let (status, b) = check_with(&w.s, ADMIN_KEY, body.clone()).await;
    assert_eq!(status, 401, "{b:?}");
    // An agent's assertion is not a gate's.
    let (status, _) = check_with(&w.s, &w.agent.assertion(&w.s, json!({})), body.clone()).await;
    assert_eq!(status, 401);
    // A replayed assertion is refused.
    let a = w.gate.assertion(&w.s, json!({}));
    assert_eq!(check_with(&w.s, &a, body.clone()).await.0, 200);
    assert_eq!(check_with(&w.s, &a, body.clone()).await.0, 401);
    // Bad input: clear errors, nothing recorded.
    let (erin, _) = w.s.human(ADMIN_KEY, "erin", "admin").await;
    let other = register_agent(&w.s, &erin, "other-bot", 31).await;
    let (del_of_other, _) = mandate(&w.s, &other.id, read_tickets(), 3600).await;
    let before = w.s.receipts(ADMIN_KEY).await.len();
    for (patch, want) in [
        (json!({"request_hash": "abc"}), 400),
        (json!({"request_hash": format!("{h}=")}), 400),
        (json!({"delegation": "del_nope"}), 404),
        (json!({"delegation": del_of_other}), 422),
        (json!({"action": "launch"}), 422),
        (json!({"summary": "x".repeat(501)}), 400),
        (json!({"resource": ""}), 400),
        (json!({"extra": 1}), 400),
    ] {
        let mut b = body.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (status, resp) = check_with(&w.s, &w.gate.assertion(&w.s, json!({})), b).await;
        assert_eq!(status.as_u16(), want, "{patch}: {resp:?}");
        assert_eq!(
            resp["type"]
                .as_str()
                .map(|t| t.starts_with("urn:mandate:problem:")),
            Some(true)
        );
    }
    assert_eq!(w.s.receipts(ADMIN_KEY).await.len(), before);
    // A revoked delegation gets no approvals.
    let r =
        w.s.post(
            &format!("/v1/delegations/{}/revoke", w.mandate),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let (status, _) = check(&w.s, &w.gate, &w.mandate, &w.agent.id, &h).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn approval_events_reach_the_event_stream() {
    let w = world().await;
    let assertion = w.gate.assertion(&w.s, json!({}));
    let mut resp =
        w.s.http
            .get(w.s.url("/v1/events"))
            .bearer_auth(&assertion)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let id = w.ask(&request_hash("GET", "/z", json!({}))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r =
        w.s.post(&format!("/v1/approvals/{id}/approve"), ADMIN_KEY, json!({}))
            .await;
    assert_eq!(r.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = String::new();
    while !(seen.contains("event: approval.requested") && seen.contains("event: approval.approved"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, resp.chunk()).await else {
            panic!("approval events did not arrive: {seen}");
        };
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains(&id));
}
