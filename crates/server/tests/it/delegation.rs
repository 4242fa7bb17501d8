//! Sub-delegation by token exchange (DESIGN §4 grant 2): authority only shrinks, the key
//! binding is kept, and revocation cascades.

use ed25519_dalek::SigningKey;
use mandate_core::jose::{self, Algorithm, JwtKind};
use serde_json::{Value, json};

use crate::harness::ADMIN_KEY;
use crate::tokens::{
    BEARER, CRM, Dpop, EXCHANGE, Holder, World, merge, nonce, register_agent, world,
};

const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A sub-agent's consent to receive authority from `delegator`.
fn consent(w: &World, sub: &Holder, delegator: &str, patch: Value) -> String {
    let now = w.s.clock_secs();
    let mut claims = json!({"iss": sub.id, "sub": sub.id, "aud": w.s.running.issuer, "iat": now, "exp": now + 120, "jti": nonce(), "delegator": delegator});
    merge(&mut claims, patch);
    jose::sign(
        JwtKind::ActorToken,
        Some(&sub.kid()),
        Algorithm::EdDSA,
        &claims,
        &sub.key,
    )
}

/// A token held by an agent, with the DPoP key it is bound to.
struct Held {
    token: String,
    dpop: Dpop,
    delegation: String,
}

impl World {
    async fn root_token(&self, seed: u8) -> Held {
        let dpop = Dpop::new(seed);
        let (status, _, body) = self.redeem(&dpop).await;
        assert_eq!(status, 200, "{body:?}");
        Held {
            token: body["access_token"].as_str().unwrap().to_owned(),
            dpop,
            delegation: self.mandate.clone(),
        }
    }

    /// `holder` (authenticating as `caller`) delegates to `sub`; returns the raw response.
    async fn delegate(
        &self,
        caller: &Holder,
        held: &Held,
        actor: &str,
        extra: &[(&str, &str)],
        proof_key: Option<&Dpop>,
    ) -> (u16, Value) {
        let a = caller.assertion(&self.s, json!({}));
        let p = proof_key
            .unwrap_or(&held.dpop)
            .proof(&self.s, "POST", "/oauth2/token", json!({}));
        let mut params = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", held.token.as_str()),
            ("subject_token_type", ACCESS),
            ("actor_token", actor),
            ("actor_token_type", JWT),
            ("client_assertion_type", BEARER),
            ("client_assertion", a.as_str()),
        ];
        params.extend_from_slice(extra);
        let (status, _, body) = self.s.form("/oauth2/token", &params, Some(&p)).await;
        (status, body)
    }
}

fn tickets(actions: &[&str], resources: &[&str]) -> String {
    json!([{"type": "mandate", "actions": actions, "locations": [CRM], "resources": resources}])
        .to_string()
}

async fn setup() -> (World, Holder, Holder) {
    let w = world().await;
    let me = w.s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = register_agent(&w.s, &me, "sub-bot", 31).await;
    let c = register_agent(&w.s, &me, "sub-sub-bot", 32).await;
    (w, b, c)
}

#[tokio::test]
async fn a_chain_of_three_narrows_and_keeps_its_bindings() {
    let (w, b, c) = setup().await;
    let a_held = w.root_token(90).await;
    // B consents and names an ephemeral key for its token.
    let b_dpop = Dpop::new(91);
    let actor = consent(&w, &b, &w.agent.id, json!({"cnf": {"jkt": b_dpop.jkt()}}));
    let (status, body) = w
        .delegate(
            &w.agent,
            &a_held,
            &actor,
            &[(
                "authorization_details",
                &tickets(&["read"], &["tickets/42"]),
            )],
            None,
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    let b_held = Held {
        token: body["access_token"].as_str().unwrap().to_owned(),
        dpop: b_dpop,
        delegation: body["delegation"].as_str().unwrap().to_owned(),
    };
    let info = w.introspect(&b_held.token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], b.id);
    assert_eq!(info["dpt"], 2);
    assert_eq!(info["cnf"]["jkt"], b_held.dpop.jkt());
    assert!(
        info["act"]["sub"].as_str().unwrap().ends_with(&b.id),
        "outermost actor is the current agent"
    );
    assert!(
        info["act"]["act"]["sub"]
            .as_str()
            .unwrap()
            .ends_with(&w.agent.id),
        "nested actor is the delegator"
    );
    assert_eq!(info["delegation_chain"].as_array().unwrap().len(), 2);
    assert_eq!(
        info["authorization_details"][0]["resources"],
        json!(["tickets/42"])
    );

    // The caller cannot use or re-exchange the token it made for B.
    let (status, body) = w
        .delegate(
            &w.agent,
            &b_held,
            &consent(&w, &c, &w.agent.id, json!({})),
            &[],
            Some(&a_held.dpop),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "someone else's token: {body:?}"
    );

    // B delegates to C; C's token is bound to C's registered key (no cnf in its consent).
    let (status, body) = w
        .delegate(&b, &b_held, &consent(&w, &c, &b.id, json!({})), &[], None)
        .await;
    assert_eq!(status, 200, "{body:?}");
    let c_token = body["access_token"].as_str().unwrap().to_owned();
    let c_info = w.introspect(&c_token).await;
    assert_eq!(c_info["dpt"], 3);
    assert_eq!(c_info["cnf"]["jkt"], c.kid());
    assert_eq!(
        c_info["act"]["act"]["act"]["sub"]
            .as_str()
            .map(|s| s.ends_with(&w.agent.id)),
        Some(true)
    );

    // The tree and the agent views.
    let tree =
        w.s.get(&format!("/v1/delegations/{}/tree", w.mandate), ADMIN_KEY)
            .await
            .body;
    assert_eq!(tree["children"][0]["delegate"], b.id, "{tree:#}");
    assert_eq!(tree["children"][0]["children"][0]["delegate"], c.id);
    let bd =
        w.s.get(&format!("/v1/agents/{}/delegations", b.id), ADMIN_KEY)
            .await
            .body;
    assert_eq!(bd["in"].as_array().unwrap().len(), 1);
    assert_eq!(bd["out"].as_array().unwrap().len(), 1);

    // Depth 3 is the default max: C cannot delegate further.
    let d = register_agent(
        &w.s,
        w.s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
            .as_str()
            .unwrap(),
        "d-bot",
        33,
    )
    .await;
    let c_held = Held {
        token: c_token.clone(),
        dpop: Dpop { key: c.key.clone() },
        delegation: String::new(),
    };
    let (status, body) = w
        .delegate(&c, &c_held, &consent(&w, &d, &c.id, json!({})), &[], None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "depth: {body:?}"
    );

    // Revoking B's sub-delegation cuts B and C, not A.
    let r =
        w.s.post(
            &format!("/v1/delegations/{}/revoke", b_held.delegation),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["revoked_delegations"], 2);
    assert_eq!(w.introspect(&b_held.token).await, json!({"active": false}));
    assert_eq!(w.introspect(&c_token).await, json!({"active": false}));
    assert_eq!(w.introspect(&a_held.token).await["active"], true);
    // Suspending A (an ancestor) would also cut every token below it.
}

#[tokio::test]
async fn widening_extending_and_laundering_are_refused() {
    let (w, b, _c) = setup().await;
    let a_held = w.root_token(100).await;
    let issued = w.s.count("token.issued").await;
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("widen actions", vec![("authorization_details", tickets(&["read", "write"], &["tickets/*"]))], "invalid_scope"),
        ("widen resources", vec![("authorization_details", tickets(&["read"], &["**"]))], "invalid_scope"),
        ("widen locations", vec![("authorization_details", json!([{"type": "mandate", "actions": ["read"], "locations": ["https://evil.example"], "resources": ["tickets/*"]}]).to_string())], "invalid_scope"),
        ("drop the location limit", vec![("authorization_details", json!([{"type": "mandate", "actions": ["read"], "resources": ["tickets/*"]}]).to_string())], "invalid_scope"),
        ("extend expiry", vec![("expires_in", "999999".into())], "invalid_grant"),
    ];
    for (what, extra, code) in cases {
        let refs: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = w
            .delegate(
                &w.agent,
                &a_held,
                &consent(&w, &b, &w.agent.id, json!({})),
                &refs,
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{what}: {body:?}"
        );
    }
    // A constraint cannot be loosened.
    let w2 = &w;
    let (_, doc) = crate::tokens::mandate(&w2.s, &w2.agent.id, json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/*"], "constraints": {"max_amount": {"value": 50, "currency": "USD"}}}]), 600).await;
    let a = w.agent.assertion(&w.s, json!({}));
    let d = Dpop::new(101);
    let p = d.proof(&w.s, "POST", "/oauth2/token", json!({}));
    let (status, _, body) = w.redeem_with(&a, &doc, Some(&p), &[]).await;
    assert_eq!(status, 200, "{body:?}");
    let limited = Held {
        token: body["access_token"].as_str().unwrap().to_owned(),
        dpop: d,
        delegation: String::new(),
    };
    let looser = json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/*"], "constraints": {"max_amount": {"value": 500, "currency": "USD"}}}]).to_string();
    let (status, body) = w
        .delegate(
            &w.agent,
            &limited,
            &consent(&w, &b, &w.agent.id, json!({})),
            &[("authorization_details", &looser)],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "loosened constraint: {body:?}"
    );
    let dropped = json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/*"]}]).to_string();
    let (status, body) = w
        .delegate(
            &w.agent,
            &limited,
            &consent(&w, &b, &w.agent.id, json!({})),
            &[("authorization_details", &dropped)],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "dropped constraint: {body:?}"
    );

    // Without proving the subject token's key (a thief holding only the token).
    let thief = Dpop::new(102);
    let (status, body) = w
        .delegate(
            &w.agent,
            &a_held,
            &consent(&w, &b, &w.agent.id, json!({})),
            &[],
            Some(&thief),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body:?}"
    );
    // Actor token: signed by the wrong key, naming another delegator, replayed.
    let forged = consent(
        &w,
        &Holder {
            id: b.id.clone(),
            key: SigningKey::from_bytes(&[103; 32]),
        },
        &w.agent.id,
        json!({}),
    );
    let (status, body) = w.delegate(&w.agent, &a_held, &forged, &[], None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body:?}"
    );
    let other = consent(&w, &b, "agt_00000000000000000000000000", json!({}));
    let (status, body) = w.delegate(&w.agent, &a_held, &other, &[], None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body:?}"
    );
    let once = consent(&w, &b, &w.agent.id, json!({}));
    assert_eq!(w.delegate(&w.agent, &a_held, &once, &[], None).await.0, 200);
    let (status, body) = w.delegate(&w.agent, &a_held, &once, &[], None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "replayed consent: {body:?}"
    );
    // A consent is never a client credential.
    let p = Dpop::new(104).proof(&w.s, "POST", "/oauth2/token", json!({}));
    let c2 = consent(&w, &b, &w.agent.id, json!({}));
    let (status, _, body) =
        w.s.form(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", BEARER),
                ("client_assertion", &c2),
            ],
            Some(&p),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body:?}"
    );
    assert_eq!(
        w.s.count("token.issued").await,
        issued + 2,
        "only the two positive controls issued tokens"
    );
}

#[tokio::test]
async fn prohibitions_are_inherited_and_dead_parents_cannot_delegate() {
    let (w, b, c) = setup().await;
    // A mandate with a prohibition; a sub-delegation that "forgets" it still has it.
    let r = w.s.post("/v1/mandates", ADMIN_KEY, json!({"agent": w.agent.id, "authorization_details": json!([{"type": "mandate", "actions": ["read", "write"], "locations": [CRM], "resources": ["tickets/*"]}]), "prohibitions": [{"actions": ["write"], "resources": ["tickets/admin"]}], "expires_in": 600, "purpose": "p"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let doc = r.body["delegation"].as_str().unwrap().to_owned();
    let d = Dpop::new(110);
    let a = w.agent.assertion(&w.s, json!({}));
    let (_, _, body) = w
        .redeem_with(
            &a,
            &doc,
            Some(&d.proof(&w.s, "POST", "/oauth2/token", json!({}))),
            &[],
        )
        .await;
    let held = Held {
        token: body["access_token"].as_str().unwrap().to_owned(),
        dpop: d,
        delegation: String::new(),
    };
    let (status, body) = w
        .delegate(
            &w.agent,
            &held,
            &consent(&w, &b, &w.agent.id, json!({})),
            &[("prohibitions", "[]")],
            None,
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    let child =
        w.s.get(
            &format!("/v1/delegations/{}", body["delegation"].as_str().unwrap()),
            ADMIN_KEY,
        )
        .await
        .body;
    assert_eq!(
        child["prohibitions"][0]["resources"],
        json!(["tickets/admin"]),
        "inherited: {child:?}"
    );

    // A suspended ancestor makes the chain below unusable for delegation.
    let b_held = Held {
        token: body["access_token"].as_str().unwrap().to_owned(),
        dpop: Dpop { key: b.key.clone() },
        delegation: String::new(),
    };
    w.s.post(
        &format!("/v1/agents/{}/suspend", w.agent.id),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    let (status, body) = w
        .delegate(&b, &b_held, &consent(&w, &c, &b.id, json!({})), &[], None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "suspended ancestor: {body:?}"
    );
    w.s.post(
        &format!("/v1/agents/{}/resume", w.agent.id),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    assert_eq!(
        w.delegate(&b, &b_held, &consent(&w, &c, &b.id, json!({})), &[], None)
            .await
            .0,
        200,
        "resumed"
    );
    // Expired parent.
    w.s.clock.advance(301_000);
    let (status, body) = w
        .delegate(&b, &b_held, &consent(&w, &c, &b.id, json!({})), &[], None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "expired parent token: {body:?}"
    );
}
