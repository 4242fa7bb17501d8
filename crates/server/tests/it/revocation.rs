//! Revocation at every granularity of DESIGN §5, each cascading at once and receipted with its
//! cause. (Token by its holder, sub-delegation and mandate: see `tokens` and `delegation`.)

use ed25519_dalek::SigningKey;
use mandate_core::jose::{self, Algorithm, JwtKind};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::ADMIN_KEY;
use crate::tokens::{BEARER, CRM, Dpop, EXCHANGE, Holder, nonce, register_agent, world};

fn jti(token: &str) -> String {
    let c: Value = serde_json::from_slice(
        &mandate_core::encoding::b64url_decode(token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    c["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn admin_token_agent_and_human_revocation() {
    let w = world().await;
    let (_, _, body) = w.redeem(&Dpop::new(140)).await;
    let t1 = body["access_token"].as_str().unwrap().to_owned();
    let (_, _, body) = w.redeem(&Dpop::new(141)).await;
    let t2 = body["access_token"].as_str().unwrap().to_owned();
    // One token, by an admin.
    let r =
        w.s.post(
            &format!("/v1/tokens/{}/revoke", jti(&t1)),
            ADMIN_KEY,
            json!({"reason": "leaked"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(w.introspect(&t1).await, json!({"active": false}));
    assert_eq!(w.introspect(&t2).await["active"], true);
    let r =
        w.s.post("/v1/tokens/nope/revoke", ADMIN_KEY, json!({}))
            .await;
    assert_eq!(r.status, 404);

    // An agent, for good: every delegation to it is revoked with its subtree.
    let r =
        w.s.post(
            &format!("/v1/agents/{}/revoke", w.agent.id),
            ADMIN_KEY,
            json!({"reason": "compromised"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(w.introspect(&t2).await, json!({"active": false}));
    let d =
        w.s.get(&format!("/v1/delegations/{}", w.mandate), ADMIN_KEY)
            .await
            .body;
    assert_eq!(d["status"], "revoked");

    // A human: every mandate they made is revoked, their agents suspended, their keys dead.
    let (alice, alice_key) = w.s.human(ADMIN_KEY, "alice", "admin").await;
    let bot = register_agent(&w.s, &alice, "alices-bot", 142).await;
    let r = w.s.post("/v1/mandates", &alice_key, json!({"agent": bot.id, "authorization_details": crate::tokens::read_tickets(), "expires_in": 600, "purpose": "p"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mandate = r.body["id"].as_str().unwrap().to_owned();
    let doc = r.body["delegation"].as_str().unwrap().to_owned();
    let a = bot.assertion(&w.s, json!({}));
    let (status, _, body) =
        w.s.form(
            "/oauth2/token",
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", &doc),
                ("subject_token_type", "urn:mandate:token-type:delegation"),
                ("client_assertion_type", BEARER),
                ("client_assertion", &a),
            ],
            Some(&Dpop::new(143).proof(&w.s, "POST", "/oauth2/token", json!({}))),
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    let t3 = body["access_token"].as_str().unwrap().to_owned();
    let r =
        w.s.post(
            &format!("/v1/humans/{alice}/revoke"),
            ADMIN_KEY,
            json!({"reason": "left the company"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(w.introspect(&t3).await, json!({"active": false}));
    assert_eq!(
        w.s.get(&format!("/v1/delegations/{mandate}"), ADMIN_KEY)
            .await
            .body["status"],
        "revoked"
    );
    assert_eq!(
        w.s.get(&format!("/v1/agents/{}", bot.id), ADMIN_KEY)
            .await
            .body["status"],
        "suspended"
    );
    assert_eq!(w.s.get("/v1/me", &alice_key).await.status, 401);
    let kinds: Vec<String> =
        w.s.receipts(ADMIN_KEY)
            .await
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_owned())
            .collect();
    for k in ["token.revoked", "agent.revoked", "human.revoked"] {
        assert!(kinds.contains(&k.to_owned()), "{k} receipted");
    }
}

#[tokio::test]
async fn retiring_a_key_revokes_the_tokens_bound_to_it() {
    let w = world().await;
    let me = w.s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sub = register_agent(&w.s, &me, "sub", 150).await;
    let d = Dpop::new(151);
    let (_, _, body) = w.redeem(&d).await;
    let parent = body["access_token"].as_str().unwrap().to_owned();
    // The sub-agent's consent names no ephemeral key: its token is bound to its registered key.
    let now = w.s.clock_secs();
    let consent = jose::sign(
        JwtKind::ActorToken,
        Some(&sub.kid()),
        Algorithm::EdDSA,
        &json!({"iss": sub.id, "sub": sub.id, "aud": w.s.running.issuer, "exp": now + 60, "jti": nonce(), "delegator": w.agent.id}),
        &sub.key,
    );
    let a = w.agent.assertion(&w.s, json!({}));
    let p = d.proof(&w.s, "POST", "/oauth2/token", json!({}));
    let (status, _, body) =
        w.s.form(
            "/oauth2/token",
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", &parent),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("actor_token", &consent),
                ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("client_assertion_type", BEARER),
                ("client_assertion", &a),
            ],
            Some(&p),
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    let bound = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(w.introspect(&bound).await["cnf"]["jkt"], sub.kid());
    // Rotate in a new key, then retire the old one.
    let next = SigningKey::from_bytes(&[152; 32]);
    let jwk = mandate_core::jwk::PublicJwk::from_seed(&next.to_bytes()).to_json();
    assert_eq!(
        w.s.post(
            &format!("/v1/agents/{}/keys", sub.id),
            ADMIN_KEY,
            json!({"jwk": jwk})
        )
        .await
        .status,
        201
    );
    let r =
        w.s.call(
            Method::DELETE,
            &format!("/v1/agents/{}/keys/{}", sub.id, sub.kid()),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(w.introspect(&bound).await, json!({"active": false}));
    assert_eq!(
        w.introspect(&parent).await["active"],
        true,
        "tokens bound to other keys live on"
    );
    // And the retired key no longer authenticates.
    let old = Holder {
        id: sub.id.clone(),
        key: sub.key.clone(),
    };
    let a = old.assertion(&w.s, json!({}));
    let (status, _, _) =
        w.s.form(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", BEARER),
                ("client_assertion", &a),
            ],
            Some(&Dpop::new(153).proof(&w.s, "POST", "/oauth2/token", json!({}))),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn revoking_a_tenant_revokes_everything_in_it() {
    let s = crate::harness::start().await;
    let r = s
        .post(
            "/v1/tenants",
            ADMIN_KEY,
            json!({"name": "doomed", "owner": {"name": "D", "email": "d@d.example"}}),
        )
        .await;
    let tid = r.body["tenant"]["id"].as_str().unwrap().to_owned();
    let dkey = r.body["api_key"].as_str().unwrap().to_owned();
    let downer = r.body["owner"]["id"].as_str().unwrap().to_owned();
    let key = SigningKey::from_bytes(&[160; 32]);
    let jwk = mandate_core::jwk::PublicJwk::from_seed(&key.to_bytes()).to_json();
    let r = s.post("/v1/agents", &dkey, json!({"name": "d-bot", "owner": downer, "purpose": "p", "ceiling": crate::tokens::ceiling(), "jwk": jwk})).await;
    let agent = Holder {
        id: r.body["agent"]["id"].as_str().unwrap().to_owned(),
        key,
    };
    let r = s.post("/v1/mandates", &dkey, json!({"agent": agent.id, "authorization_details": crate::tokens::read_tickets(), "expires_in": 600, "purpose": "p"})).await;
    let mandate = r.body["id"].as_str().unwrap().to_owned();
    // Another tenant's owner cannot even see it; the operator owner revokes it.
    let r = s
        .post(&format!("/v1/tenants/{tid}/revoke"), &dkey, json!({}))
        .await;
    assert_eq!(r.status, 404);
    let r = s
        .post(
            &format!("/v1/tenants/{tid}/revoke"),
            ADMIN_KEY,
            json!({"reason": "contract ended"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        s.get("/v1/me", &dkey).await.status,
        401,
        "its humans are revoked"
    );
    let a = agent.assertion(&s, json!({}));
    let (status, _, _) = s
        .form(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", BEARER),
                ("client_assertion", &a),
            ],
            Some(&Dpop::new(161).proof(&s, "POST", "/oauth2/token", json!({}))),
        )
        .await;
    assert_eq!(status, 401, "its agents are revoked");
    let _ = (mandate, CRM);
    let me_tenant = s.get("/v1/me", ADMIN_KEY).await.body["tenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .post(
            &format!("/v1/tenants/{me_tenant}/revoke"),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "the operator tenant stays");
}
