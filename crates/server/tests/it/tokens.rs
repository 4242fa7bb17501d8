//! Tokens: mandates redeemed with private_key_jwt + DPoP, client_credentials, introspection,
//! revocation, and the negative cases of SECURITY.md — each with its standard error, no token
//! issued, and a refusal receipt where the client was authenticated.

use ed25519_dalek::SigningKey;
use mandate_core::encoding::b64url;
use mandate_core::jose::{self, Algorithm, JwtKind};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{self, ADMIN_KEY, Server};

pub const CRM: &str = "https://crm.example.com";

/// A client (agent or gate) holding its Ed25519 key.
pub struct Holder {
    pub id: String,
    pub key: SigningKey,
}

impl Holder {
    pub fn kid(&self) -> String {
        mandate_core::jwk::PublicJwk::from_seed(&self.key.to_bytes()).thumbprint()
    }

    /// An RFC 7523 client assertion; `patch` overrides claims (null removes).
    pub fn assertion(&self, s: &Server, patch: Value) -> String {
        let now = s.clock_secs();
        let mut claims = json!({"iss": self.id, "sub": self.id, "aud": s.running.issuer, "iat": now, "exp": now + 120, "jti": nonce()});
        merge(&mut claims, patch);
        jose::sign(
            JwtKind::ClientAssertion,
            Some(&self.kid()),
            Algorithm::EdDSA,
            &claims,
            &self.key,
        )
    }
}

pub fn nonce() -> String {
    let mut b = [0u8; 16];
    getrandom_fill(&mut b);
    b64url(&b)
}

fn getrandom_fill(b: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::SeqCst).to_le_bytes();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_le_bytes();
    for (i, x) in b.iter_mut().enumerate() {
        *x = n[i % 8] ^ t[i % 16];
    }
}

pub fn merge(claims: &mut Value, patch: Value) {
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
}

/// An ephemeral DPoP key.
pub struct Dpop {
    pub key: SigningKey,
}

impl Dpop {
    pub fn new(seed: u8) -> Self {
        Self {
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    pub fn jkt(&self) -> String {
        mandate_core::jwk::PublicJwk::from_seed(&self.key.to_bytes()).thumbprint()
    }

    pub fn proof(&self, s: &Server, htm: &str, path: &str, patch: Value) -> String {
        let mut claims = json!({"jti": nonce(), "htm": htm, "htu": format!("{}{path}", s.running.issuer), "iat": s.clock_secs()});
        merge(&mut claims, patch);
        jose::sign_with_jwk(JwtKind::DpopProof, Algorithm::EdDSA, &claims, &self.key)
    }
}

impl Server {
    pub fn clock_secs(&self) -> i64 {
        use mandate_core::clock::Clock;
        self.clock.now_ms() / 1000
    }

    /// POSTs a form to an OAuth endpoint.
    pub async fn form(
        &self,
        path: &str,
        params: &[(&str, &str)],
        dpop: Option<&str>,
    ) -> (u16, HeaderMap, Value) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(p) = dpop {
            req = req.header("DPoP", p);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// Counts receipts of a kind in the operator tenant.
    pub async fn count(&self, kind: &str) -> usize {
        self.receipts(ADMIN_KEY)
            .await
            .iter()
            .filter(|r| r["kind"] == kind)
            .count()
    }
}

/// An agent with its own key, a gate, and a mandate to the agent.
pub struct World {
    pub s: Server,
    pub agent: Holder,
    pub gate: Holder,
    pub mandate: String,
    pub document: String,
}

pub fn ceiling() -> Value {
    json!([{"type": "mandate", "actions": ["read", "write"], "locations": [CRM], "resources": ["tickets/*"]}])
}

pub async fn register_agent(s: &Server, owner: &str, name: &str, seed: u8) -> Holder {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let jwk = mandate_core::jwk::PublicJwk::from_seed(&key.to_bytes()).to_json();
    let r = s.post("/v1/agents", ADMIN_KEY, json!({"name": name, "owner": owner, "purpose": "triage", "ceiling": ceiling(), "jwk": jwk})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    Holder {
        id: r.body["agent"]["id"].as_str().unwrap().to_owned(),
        key,
    }
}

pub async fn mandate(s: &Server, agent: &str, details: Value, expires_in: i64) -> (String, String) {
    let r = s.post("/v1/mandates", ADMIN_KEY, json!({"agent": agent, "authorization_details": details, "expires_in": expires_in, "purpose": "triage"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["delegation"].as_str().unwrap().to_owned(),
    )
}

pub fn read_tickets() -> Value {
    json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/*"]}])
}

pub async fn world() -> World {
    let s = harness::start().await;
    let me = s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = register_agent(&s, &me, "triage-bot", 11).await;
    let gate_key = SigningKey::from_bytes(&[12; 32]);
    let gjwk = mandate_core::jwk::PublicJwk::from_seed(&gate_key.to_bytes()).to_json();
    let r = s
        .post(
            "/v1/gates",
            ADMIN_KEY,
            json!({"name": "crm-gate", "audience": CRM, "jwk": gjwk}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let gate = Holder {
        id: r.body["id"].as_str().unwrap().to_owned(),
        key: gate_key,
    };
    let (mandate, document) = mandate(&s, &agent.id, read_tickets(), 3600).await;
    World {
        s,
        agent,
        gate,
        mandate,
        document,
    }
}

pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const DELEGATION: &str = "urn:mandate:token-type:delegation";
pub const BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

impl World {
    pub async fn redeem_with(
        &self,
        assertion: &str,
        document: &str,
        dpop: Option<&str>,
        extra: &[(&str, &str)],
    ) -> (u16, HeaderMap, Value) {
        let mut params = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", document),
            ("subject_token_type", DELEGATION),
            ("client_assertion_type", BEARER),
            ("client_assertion", assertion),
        ];
        params.extend_from_slice(extra);
        self.s.form("/oauth2/token", &params, dpop).await
    }

    pub async fn redeem(&self, dpop: &Dpop) -> (u16, HeaderMap, Value) {
        let a = self.agent.assertion(&self.s, json!({}));
        let p = dpop.proof(&self.s, "POST", "/oauth2/token", json!({}));
        self.redeem_with(&a, &self.document, Some(&p), &[]).await
    }

    pub async fn introspect(&self, token: &str) -> Value {
        let a = self.gate.assertion(&self.s, json!({}));
        let (status, _, body) = self
            .s
            .form(
                "/oauth2/introspect",
                &[
                    ("token", token),
                    ("client_assertion_type", BEARER),
                    ("client_assertion", &a),
                ],
                None,
            )
            .await;
        assert_eq!(status, 200, "{body:?}");
        body
    }
}

#[tokio::test]
async fn redeem_introspect_and_revoke_a_mandate() {
    let w = world().await;
    let dpop = Dpop::new(40);
    let (status, headers, body) = w.redeem(&dpop).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!(expires_in > 0 && expires_in <= 300, "{expires_in}");
    let token = body["access_token"].as_str().unwrap().to_owned();

    let info = w.introspect(&token).await;
    assert_eq!(info["active"], true, "{info:?}");
    assert_eq!(info["client_id"], w.agent.id);
    assert_eq!(info["aud"], CRM);
    assert_eq!(info["scope"], "read");
    assert_eq!(info["cnf"]["jkt"], dpop.jkt());
    assert_eq!(info["del"], w.mandate);
    assert_eq!(info["dpt"], 1);
    let me = w.s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"].clone();
    assert_eq!(info["sub"], me, "sub is the human at the root");
    assert!(info["act"]["sub"].as_str().unwrap().ends_with(&w.agent.id));
    assert_eq!(info["delegation_chain"].as_array().unwrap().len(), 1);
    let agent =
        w.s.get(&format!("/v1/agents/{}", w.agent.id), ADMIN_KEY)
            .await
            .body;
    assert_eq!(info["cmt"], agent["commitment"]);
    assert!(
        agent["last_seen_at"].is_string(),
        "authenticated use updates last-seen"
    );

    // Revoking the mandate deactivates the token as soon as the call returns.
    let r =
        w.s.post(
            &format!("/v1/delegations/{}/revoke", w.mandate),
            ADMIN_KEY,
            json!({"reason": "task done"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "revoked");
    assert_eq!(w.introspect(&token).await, json!({"active": false}));
    // And it can never be redeemed again.
    let (status, _, body) = w.redeem(&Dpop::new(41)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let r =
        w.s.post(
            &format!("/v1/delegations/{}/revoke", w.mandate),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "a revoked delegation stays revoked");
    assert_eq!(w.s.count("token.issued").await, 1);
    assert_eq!(w.s.count("token.refused").await, 1);
    assert_eq!(w.s.count("delegation.revoked").await, 1);
}

#[tokio::test]
async fn the_holder_revokes_its_token_and_foreign_tokens_are_inactive() {
    let w = world().await;
    let (_, _, body) = w.redeem(&Dpop::new(42)).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    // Unknown tokens: 200, nothing happens (RFC 7009 §2.2).
    let a = w.agent.assertion(&w.s, json!({}));
    let (status, _, _) =
        w.s.form(
            "/oauth2/revoke",
            &[
                ("token", "garbage"),
                ("client_assertion_type", BEARER),
                ("client_assertion", &a),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let a = w.agent.assertion(&w.s, json!({}));
    let (status, _, _) =
        w.s.form(
            "/oauth2/revoke",
            &[
                ("token", &token),
                ("client_assertion_type", BEARER),
                ("client_assertion", &a),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(w.introspect(&token).await, json!({"active": false}));
    assert_eq!(w.s.count("token.revoked").await, 1);
    // Garbage and tampered tokens introspect as exactly inactive.
    assert_eq!(w.introspect("garbage").await, json!({"active": false}));
    let mut tampered = token.clone();
    tampered.pop();
    assert_eq!(w.introspect(&tampered).await, json!({"active": false}));
    // Introspection needs an authenticated gate.
    let (status, _, body) =
        w.s.form("/oauth2/introspect", &[("token", &token)], None)
            .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn suspension_and_expiry_deactivate_tokens() {
    let w = world().await;
    let (_, _, body) = w.redeem(&Dpop::new(43)).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let r =
        w.s.post(
            &format!("/v1/agents/{}/suspend", w.agent.id),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(w.introspect(&token).await, json!({"active": false}));
    let (status, _, body) = w.redeem(&Dpop::new(44)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "a suspended agent cannot authenticate"
    );
    let r =
        w.s.post(
            &format!("/v1/agents/{}/resume", w.agent.id),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        w.introspect(&token).await["active"],
        true,
        "resume restores unexpired tokens"
    );
    w.s.clock.advance(301_000);
    assert_eq!(
        w.introspect(&token).await,
        json!({"active": false}),
        "expired after 5 minutes"
    );
}

#[tokio::test]
async fn client_credentials_uses_exactly_one_covering_mandate() {
    let w = &world().await;
    let cc = |extra: Vec<(&'static str, String)>| {
        let a = w.agent.assertion(&w.s, json!({}));
        let p = Dpop::new(45).proof(&w.s, "POST", "/oauth2/token", json!({}));
        async move {
            let mut params: Vec<(&str, String)> = vec![
                ("grant_type", "client_credentials".into()),
                ("client_assertion_type", BEARER.into()),
                ("client_assertion", a),
            ];
            params.extend(extra);
            let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            w.s.form("/oauth2/token", &refs, Some(&p)).await
        }
    };
    let (status, _, body) = cc(vec![]).await;
    assert_eq!(status, 200, "{body:?}");
    // A second mandate makes a bare request ambiguous…
    let write = json!([{"type": "mandate", "actions": ["write"], "locations": [CRM], "resources": ["tickets/*"]}]);
    mandate(&w.s, &w.agent.id, write.clone(), 600).await;
    let (status, _, body) = cc(vec![]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body:?}"
    );
    // …and authorization_details chooses.
    let (status, _, body) = cc(vec![("authorization_details", write.to_string())]).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(body["scope"], "write");
    // Nothing covers a delete.
    let delete = json!([{"type": "mandate", "actions": ["delete"], "locations": [CRM], "resources": ["tickets/*"]}]);
    let (status, _, body) = cc(vec![("authorization_details", delete.to_string())]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body:?}"
    );
}

#[tokio::test]
async fn narrowing_is_checked_never_clamped() {
    let w = &world().await;
    let narrow = |details: Value, resource: Option<&'static str>| {
        let a = w.agent.assertion(&w.s, json!({}));
        let p = Dpop::new(46).proof(&w.s, "POST", "/oauth2/token", json!({}));
        let d = details.to_string();
        async move {
            let mut extra = vec![("authorization_details", d.as_str())];
            if let Some(r) = resource {
                extra.push(("resource", r));
            }
            w.redeem_with(&a, &w.document, Some(&p), &extra).await
        }
    };
    let one = json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/42"]}]);
    let (status, _, body) = narrow(one, None).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(
        body["authorization_details"][0]["resources"],
        json!(["tickets/42"])
    );
    let before = w.s.count("token.issued").await;
    for (wider, what) in [
        (
            json!([{"type": "mandate", "actions": ["read", "write"], "locations": [CRM], "resources": ["tickets/*"]}]),
            "action",
        ),
        (
            json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["**"]}]),
            "resource",
        ),
        (
            json!([{"type": "mandate", "actions": ["read"], "locations": ["https://other.example"], "resources": ["tickets/*"]}]),
            "location",
        ),
        (
            json!([{"type": "mandate", "actions": ["read"], "resources": ["tickets/*"]}]),
            "any location",
        ),
    ] {
        let (status, headers, body) = narrow(wider, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_scope")),
            "{what}: {body:?}"
        );
        assert_eq!(headers["cache-control"], "no-store");
        assert!(body.get("access_token").is_none());
    }
    let (status, _, body) = narrow(read_tickets(), Some("https://other.example")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body:?}"
    );
    assert_eq!(w.s.count("token.issued").await, before, "no token issued");
}

#[tokio::test]
async fn bad_client_assertions_are_invalid_client() {
    let w = world().await;
    let me = w.s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = register_agent(&w.s, &me, "other-bot", 13).await;
    let issuer = w.s.running.issuer.clone();
    let now = w.s.clock_secs();
    let unsigned = |alg: &str| {
        let h = b64url(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        let c = b64url(json!({"iss": w.agent.id, "sub": w.agent.id, "aud": issuer, "exp": now + 60, "jti": nonce()}).to_string().as_bytes());
        format!("{h}.{c}.{}", b64url(b"not-a-signature-not-a-signature"))
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!("{}.", unsigned("none").rsplit_once('.').unwrap().0),
        ),
        ("alg HS256", unsigned("HS256")),
        ("alg RS256", unsigned("RS256")),
        (
            "wrong aud",
            w.agent
                .assertion(&w.s, json!({"aud": format!("{issuer}/oauth2/token")})),
        ),
        (
            "two audiences",
            w.agent
                .assertion(&w.s, json!({"aud": [issuer.clone(), "https://x.example"]})),
        ),
        (
            "expired",
            w.agent
                .assertion(&w.s, json!({"iat": now - 600, "exp": now - 300})),
        ),
        (
            "lifetime too long",
            w.agent.assertion(&w.s, json!({"exp": now + 3600})),
        ),
        ("no jti", w.agent.assertion(&w.s, json!({"jti": null}))),
        (
            "iss differs from sub",
            w.agent.assertion(&w.s, json!({"iss": other.id})),
        ),
        (
            "signed by another agent's key",
            Holder {
                id: w.agent.id.clone(),
                key: other.key.clone(),
            }
            .assertion(&w.s, json!({})),
        ),
        (
            "unknown client",
            Holder {
                id: "agt_00000000000000000000000000".into(),
                key: other.key.clone(),
            }
            .assertion(&w.s, json!({})),
        ),
        (
            "a DPoP proof as assertion",
            Dpop::new(47).proof(&w.s, "POST", "/oauth2/token", json!({})),
        ),
    ];
    let issued = w.s.count("token.issued").await;
    for (what, assertion) in cases {
        let p = Dpop::new(48).proof(&w.s, "POST", "/oauth2/token", json!({}));
        let (status, headers, body) = w.redeem_with(&assertion, &w.document, Some(&p), &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{what}: {body:?}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{what}");
        assert!(body.get("access_token").is_none(), "{what}");
    }
    // Replayed jti: the first use succeeds, the second is refused.
    let a = w.agent.assertion(&w.s, json!({}));
    let p1 = Dpop::new(49).proof(&w.s, "POST", "/oauth2/token", json!({}));
    assert_eq!(w.redeem_with(&a, &w.document, Some(&p1), &[]).await.0, 200);
    let p2 = Dpop::new(49).proof(&w.s, "POST", "/oauth2/token", json!({}));
    let (status, _, body) = w.redeem_with(&a, &w.document, Some(&p2), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body:?}"
    );
    // HTTP Basic is a downgrade: refused with WWW-Authenticate.
    let resp =
        w.s.http
            .post(w.s.url("/oauth2/token"))
            .basic_auth(&w.agent.id, Some("secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    // A revoked agent looks like an unknown one.
    w.s.post(
        &format!("/v1/agents/{}/revoke", other.id),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    let a = other.assertion(&w.s, json!({}));
    let p = Dpop::new(50).proof(&w.s, "POST", "/oauth2/token", json!({}));
    let (status, _, body) = w.redeem_with(&a, &w.document, Some(&p), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(body["error_description"], "client authentication failed");
    assert_eq!(w.s.count("token.issued").await, issued + 1);
}

#[tokio::test]
async fn bad_dpop_proofs_are_invalid_dpop_proof() {
    let w = world().await;
    let d = Dpop::new(51);
    let now = w.s.clock_secs();
    let wrong_key = {
        // Header jwk of one key, signature of another.
        let p = d.proof(&w.s, "POST", "/oauth2/token", json!({}));
        let other = Dpop::new(52).proof(&w.s, "POST", "/oauth2/token", json!({}));
        let (h, _) = p.split_once('.').unwrap();
        let rest = other.split_once('.').unwrap().1;
        format!("{h}.{rest}")
    };
    let replayed = d.proof(&w.s, "POST", "/oauth2/token", json!({}));
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        (
            "wrong htm",
            Some(d.proof(&w.s, "GET", "/oauth2/token", json!({}))),
        ),
        (
            "wrong htu",
            Some(d.proof(&w.s, "POST", "/oauth2/introspect", json!({}))),
        ),
        (
            "stale iat",
            Some(d.proof(&w.s, "POST", "/oauth2/token", json!({"iat": now - 3600}))),
        ),
        (
            "future iat",
            Some(d.proof(&w.s, "POST", "/oauth2/token", json!({"iat": now + 3600}))),
        ),
        (
            "no jti",
            Some(d.proof(&w.s, "POST", "/oauth2/token", json!({"jti": null}))),
        ),
        ("key not matching", Some(wrong_key)),
        (
            "an assertion as proof",
            Some(w.agent.assertion(&w.s, json!({}))),
        ),
    ];
    let issued = w.s.count("token.issued").await;
    for (what, proof) in cases {
        let a = w.agent.assertion(&w.s, json!({}));
        let (status, _, body) = w.redeem_with(&a, &w.document, proof.as_deref(), &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{what}: {body:?}"
        );
    }
    assert_eq!(w.s.count("token.issued").await, issued);
    let refused = w.s.count("token.refused").await;
    assert!(
        refused >= 8,
        "authenticated refusals are receipted: {refused}"
    );
    // Replay: first use works, second does not.
    let a = w.agent.assertion(&w.s, json!({}));
    assert_eq!(
        w.redeem_with(&a, &w.document, Some(&replayed), &[]).await.0,
        200
    );
    let a = w.agent.assertion(&w.s, json!({}));
    let (status, _, body) = w.redeem_with(&a, &w.document, Some(&replayed), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body:?}"
    );
}

#[tokio::test]
async fn bad_grants_are_invalid_grant() {
    let w = world().await;
    let me = w.s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = register_agent(&w.s, &me, "other-bot", 14).await;
    let (_, others_doc) = mandate(&w.s, &other.id, read_tickets(), 3600).await;
    let (short_id, short_doc) = mandate(&w.s, &w.agent.id, read_tickets(), 60).await;
    let (revoked_id, revoked_doc) = mandate(&w.s, &w.agent.id, read_tickets(), 3600).await;
    w.s.post(
        &format!("/v1/delegations/{revoked_id}/revoke"),
        ADMIN_KEY,
        json!({}),
    )
    .await;
    let _ = short_id;
    let mut forged = w.document.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    w.s.clock.advance(61_000);
    let cases = [
        ("a mandate of another agent", others_doc),
        ("expired mandate", short_doc),
        ("revoked mandate", revoked_doc),
        ("forged signature", forged),
        ("not a JWT", "abc".to_owned()),
    ];
    let issued = w.s.count("token.issued").await;
    for (what, doc) in cases {
        let a = w.agent.assertion(&w.s, json!({}));
        let p = Dpop::new(53).proof(&w.s, "POST", "/oauth2/token", json!({}));
        let (status, _, body) = w.redeem_with(&a, &doc, Some(&p), &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{what}: {body:?}"
        );
    }
    assert_eq!(w.s.count("token.issued").await, issued);
    // Malformed requests.
    let a = w.agent.assertion(&w.s, json!({}));
    let (status, _, body) =
        w.s.form(
            "/oauth2/token",
            &[
                ("grant_type", "password"),
                ("client_assertion_type", BEARER),
                ("client_assertion", &a),
            ],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type")),
        "{body:?}"
    );
    let (status, _, body) =
        w.s.form(
            "/oauth2/token",
            &[("grant_type", "a"), ("grant_type", "b")],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_parallel_uses_of_one_assertion_succeed_once() {
    let w = std::sync::Arc::new(world().await);
    let assertion = w.agent.assertion(&w.s, json!({}));
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let w = w.clone();
        let a = assertion.clone();
        let proof = Dpop::new((i % 200) as u8 + 1).proof(&w.s, "POST", "/oauth2/token", json!({}));
        tasks.push(tokio::spawn(async move {
            w.redeem_with(&a, &w.document, Some(&proof), &[]).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            401 => assert_eq!(body["error"], "invalid_client"),
            other => panic!("unexpected {other}: {body:?}"),
        }
    }
    assert_eq!(ok, 1, "exactly one redemption succeeds");
    assert_eq!(w.s.count("token.issued").await, 1);
}

#[tokio::test]
async fn tokens_verify_across_a_server_key_rotation() {
    let w = world().await;
    let jwks = |s: &Server| {
        let url = s.url("/jwks.json");
        let http = s.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let before = jwks(&w.s).await;
    let kids = |v: &Value| {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let before = kids(&before);
    assert_eq!(before.len(), 2, "current and next are published");
    let (_, _, body) = w.redeem(&Dpop::new(70)).await;
    let old_token = body["access_token"].as_str().unwrap().to_owned();
    let header = |t: &str| -> Value {
        serde_json::from_slice(
            &mandate_core::encoding::b64url_decode(t.split('.').next().unwrap()).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header(&old_token)["kid"], before[0]);

    let (_, other_key) = w.s.human(ADMIN_KEY, "not-operator-owner", "admin").await;
    let r =
        w.s.post("/v1/server/signing-keys/rotate", &other_key, json!({}))
            .await;
    assert_eq!(r.status, 403);
    let r =
        w.s.post("/v1/server/signing-keys/rotate", ADMIN_KEY, json!({}))
            .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["current"], before[1],
        "the published next key starts signing"
    );
    assert_eq!(r.body["retiring"]["kid"], before[0]);
    let after = kids(&jwks(&w.s).await);
    assert_eq!(after.len(), 3, "current, next and retiring: {after:?}");
    assert_eq!(after[0], before[1]);
    assert!(after.contains(&before[0]));

    // Tokens and delegation documents signed before the rotation still verify.
    assert_eq!(w.introspect(&old_token).await["active"], true);
    let (status, _, body) = w.redeem(&Dpop::new(71)).await;
    assert_eq!(status, 200, "{body:?}");
    let new_token = body["access_token"].as_str().unwrap();
    assert_eq!(header(new_token)["kid"], before[1]);
    assert_eq!(w.introspect(new_token).await["active"], true);
    assert_eq!(w.s.count("server.signing_key_rotated").await, 1);
    // After the retiring window the old key verifies nothing.
    w.s.clock.advance((24 * 3600 + 361) * 1000);
    assert_eq!(kids(&jwks(&w.s).await).len(), 2);
}

#[tokio::test]
async fn agent_keys_rotate_with_an_overlap() {
    let w = world().await;
    let new_key = SigningKey::from_bytes(&[80; 32]);
    let jwk = mandate_core::jwk::PublicJwk::from_seed(&new_key.to_bytes()).to_json();
    let r =
        w.s.post(
            &format!("/v1/agents/{}/keys", w.agent.id),
            ADMIN_KEY,
            json!({"jwk": jwk, "rotate": true, "overlap_secs": 600}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let agent =
        w.s.get(&format!("/v1/agents/{}", w.agent.id), ADMIN_KEY)
            .await
            .body;
    let old = &agent["keys"][0];
    assert!(
        old["not_after"].is_string(),
        "the old key gets an end: {agent:?}"
    );
    // Both keys authenticate during the overlap…
    let rotated = Holder {
        id: w.agent.id.clone(),
        key: new_key,
    };
    for holder in [&w.agent, &rotated] {
        let a = holder.assertion(&w.s, json!({}));
        let p = Dpop::new(81).proof(&w.s, "POST", "/oauth2/token", json!({}));
        assert_eq!(w.redeem_with(&a, &w.document, Some(&p), &[]).await.0, 200);
    }
    // …and after it only the new one.
    w.s.clock.advance(601_000);
    let a = w.agent.assertion(&w.s, json!({}));
    let p = Dpop::new(82).proof(&w.s, "POST", "/oauth2/token", json!({}));
    assert_eq!(w.redeem_with(&a, &w.document, Some(&p), &[]).await.0, 401);
    let a = rotated.assertion(&w.s, json!({}));
    let p = Dpop::new(83).proof(&w.s, "POST", "/oauth2/token", json!({}));
    assert_eq!(w.redeem_with(&a, &w.document, Some(&p), &[]).await.0, 200);
    let r =
        w.s.post(
            &format!("/v1/agents/{}/keys", w.agent.id),
            ADMIN_KEY,
            json!({"jwk": public(84), "rotate": true, "overlap_secs": 9_999_999}),
        )
        .await;
    assert_eq!(
        r.status, 422,
        "overlap beyond the policy maximum: {:?}",
        r.body
    );
}

fn public(seed: u8) -> Value {
    mandate_core::jwk::PublicJwk::from_seed(&[seed; 32]).to_json()
}
