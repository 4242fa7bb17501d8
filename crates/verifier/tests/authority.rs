//! The verifier against the real authority: tokens issued by the token endpoint, sub-delegated
//! by token exchange, revoked through the admin API — and the verifier learning of it through
//! the event stream within a second, or through status lists, or failing closed when the
//! authority is unreachable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failure must abort the test"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use mandate_core::clock::{Clock, FixedClock};
use mandate_core::encoding::b64url;
use mandate_core::jose::{self, Algorithm, JwtKind};
use mandate_core::jwk::PublicJwk;
use mandate_server::{RunningServer, ServerConfig};
use mandate_verifier::{
    Caller, Decision, Denial, DenyCode, Operation, RequestProof, Verifier, VerifierConfig,
    VerifierError,
};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const ADMIN_KEY: &str = "mnd_test_bootstrap_key_0123456789abcdef";
const CRM: &str = "https://crm.example.com";
const TARGET: &str = "https://crm.example.com/tickets/42";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A TCP relay in front of the authority that can be cut, to partition the verifier from it.
struct Relay {
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(listener: TcpListener, upstream: std::net::SocketAddr) -> Self {
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let inner = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                inner.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { tasks }
    }

    /// Drops the listener and every relayed connection.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

struct Authority {
    clock: Arc<FixedClock>,
    running: RunningServer,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
    /// The issuer: the relay's address.
    issuer: String,
    relay: Relay,
}

struct Holder {
    id: String,
    key: SigningKey,
}

fn nonce() -> String {
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

impl Holder {
    fn kid(&self) -> String {
        PublicJwk::from_seed(&self.key.to_bytes()).thumbprint()
    }
}

impl Authority {
    /// Starts the authority with its issuer at a relay that forwards to it.
    async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let relay_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", relay_listener.local_addr().unwrap());
        let mut config = ServerConfig::new(dir.path().join("data"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.bootstrap_key = Some(ADMIN_KEY.into());
        config.issuer = Some(issuer.clone());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let clock = Arc::new(FixedClock::new(now));
        config.clock = Some(clock.clone());
        let running = mandate_server::start(config).await.unwrap();
        let relay = Relay::start(relay_listener, running.addr).await;
        Self {
            clock,
            running,
            _dir: dir,
            http: reqwest::Client::new(),
            issuer,
            relay,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms() / 1000
    }

    /// Admin calls go straight to the authority, never through the relay.
    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.running.url()))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn me(&self) -> String {
        let r: Value = self
            .http
            .get(format!("{}/v1/me", self.running.url()))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["human"]["id"].as_str().unwrap().to_owned()
    }

    async fn agent(&self, owner: &str, name: &str, seed: u8) -> Holder {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let jwk = PublicJwk::from_seed(&key.to_bytes()).to_json();
        let ceiling = json!([{"type": "mandate", "actions": ["read", "write"], "locations": [CRM], "resources": ["tickets/*"]}]);
        let r = self
            .post(
                "/v1/agents",
                json!({"name": name, "owner": owner, "purpose": "triage", "ceiling": ceiling, "jwk": jwk}),
            )
            .await;
        Holder {
            id: r["agent"]["id"].as_str().unwrap().to_owned(),
            key,
        }
    }

    async fn gate(&self, audience: &str, seed: u8) -> Holder {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let jwk = PublicJwk::from_seed(&key.to_bytes()).to_json();
        let r = self
            .post(
                "/v1/gates",
                json!({"name": format!("gate-{seed}"), "audience": audience, "jwk": jwk}),
            )
            .await;
        Holder {
            id: r["id"].as_str().unwrap().to_owned(),
            key,
        }
    }

    fn assertion(&self, h: &Holder, extra: Value) -> String {
        let now = self.now();
        let mut claims = json!({"iss": h.id, "sub": h.id, "aud": self.issuer, "iat": now, "exp": now + 120, "jti": nonce()});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let kind = if extra.get("delegator").is_some() {
            JwtKind::ActorToken
        } else {
            JwtKind::ClientAssertion
        };
        jose::sign(kind, Some(&h.kid()), Algorithm::EdDSA, &claims, &h.key)
    }

    fn proof(&self, key: &SigningKey, htm: &str, htu: &str, token: Option<&str>) -> String {
        let mut claims = json!({"jti": nonce(), "htm": htm, "htu": htu, "iat": self.now()});
        if let Some(t) = token {
            claims["ath"] = json!(jose::access_token_hash(t));
        }
        jose::sign_with_jwk(JwtKind::DpopProof, Algorithm::EdDSA, &claims, key)
    }

    async fn token_request(&self, params: &[(&str, &str)], dpop: &SigningKey) -> Value {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let proof = self.proof(dpop, "POST", &format!("{}/oauth2/token", self.issuer), None);
        let r = self
            .http
            .post(format!("{}/oauth2/token", self.running.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("DPoP", proof)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// An agent with a mandate, a gate for the CRM, and a token of the agent.
struct World {
    a: Authority,
    agent: Holder,
    gate: Holder,
    mandate: String,
    dpop: SigningKey,
    token: String,
}

async fn world(details: Value) -> World {
    let a = Authority::start().await;
    let me = a.me().await;
    let agent = a.agent(&me, "triage-bot", 11).await;
    let gate = a.gate(CRM, 12).await;
    let m = a
        .post(
            "/v1/mandates",
            json!({"agent": agent.id, "authorization_details": details, "expires_in": 3600, "purpose": "triage",
                   "prohibitions": [{"actions": ["write"], "resources": ["tickets/7"]}]}),
        )
        .await;
    let mandate = m["id"].as_str().unwrap().to_owned();
    let document = m["delegation"].as_str().unwrap().to_owned();
    let dpop = SigningKey::from_bytes(&[40; 32]);
    let assertion = a.assertion(&agent, json!({}));
    let body = a
        .token_request(
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", &document),
                ("subject_token_type", "urn:mandate:token-type:delegation"),
                ("client_assertion_type", BEARER),
                ("client_assertion", &assertion),
            ],
            &dpop,
        )
        .await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    World {
        a,
        agent,
        gate,
        mandate,
        dpop,
        token,
    }
}

fn tickets() -> Value {
    json!([{"type": "mandate", "actions": ["read", "write"], "locations": [CRM], "resources": ["tickets/*"]}])
}

impl World {
    fn config(&self) -> VerifierConfig {
        VerifierConfig::new(&self.a.issuer, CRM, &self.gate.id, self.gate.key.clone())
    }

    async fn verifier(&self) -> Verifier {
        Verifier::start(self.config(), self.a.clock.clone(), reqwest::Client::new())
            .await
            .unwrap()
    }

    async fn present(
        &self,
        v: &Verifier,
        token: &str,
        dpop: &SigningKey,
    ) -> Result<Caller, Denial> {
        let proof = self.a.proof(dpop, "GET", TARGET, Some(token));
        v.authenticate(&RequestProof {
            method: "GET",
            url: TARGET,
            authorization: Some(&format!("DPoP {token}")),
            dpop: Some(&proof),
        })
        .await
    }

    /// Presents the token until it is refused or `within` passes; returns the denial and when.
    async fn until_refused(
        &self,
        v: &Verifier,
        token: &str,
        dpop: &SigningKey,
        since: Instant,
        within: Duration,
    ) -> (Denial, Duration) {
        loop {
            match self.present(v, token, dpop).await {
                Err(d) => return (d, since.elapsed()),
                Ok(_) if since.elapsed() > within => panic!("still accepted after {within:?}"),
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// B's token, sub-delegated from the agent's by token exchange (DESIGN §4 grant 2).
    async fn sub_delegate(&self, seed: u8) -> (Holder, String, SigningKey) {
        let me = self.a.me().await;
        let b = self.a.agent(&me, "sub-bot", seed).await;
        let b_dpop = SigningKey::from_bytes(&[seed + 1; 32]);
        let jkt = PublicJwk::from_seed(&b_dpop.to_bytes()).thumbprint();
        let actor = self
            .a
            .assertion(&b, json!({"delegator": self.agent.id, "cnf": {"jkt": jkt}}));
        let assertion = self.a.assertion(&self.agent, json!({}));
        let details = json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/42"]}]).to_string();
        let body = self
            .a
            .token_request(
                &[
                    ("grant_type", EXCHANGE),
                    ("subject_token", &self.token),
                    (
                        "subject_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                    ("actor_token", &actor),
                    ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                    ("client_assertion_type", BEARER),
                    ("client_assertion", &assertion),
                    ("authorization_details", &details),
                ],
                &self.dpop,
            )
            .await;
        (b, body["access_token"].as_str().unwrap().to_owned(), b_dpop)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_the_authority_are_verified_and_authorized() {
    let w = world(tickets()).await;
    let v = w.verifier().await;
    let f = v.freshness();
    assert!(f.events_connected && f.revocation_fresh, "{f:?}");
    assert!(f.jwks_age.is_some());
    let caller = w.present(&v, &w.token, &w.dpop).await.unwrap();
    assert_eq!(caller.agent(), w.agent.id);
    assert_eq!(caller.delegation(), w.mandate);
    assert_eq!(caller.actors(), std::slice::from_ref(&w.agent.id));
    assert!(
        v.freshness().status_lists_age.is_some(),
        "its status list was fetched"
    );
    let read = v
        .authorize(&caller, &Operation::new("read", "tickets/42"))
        .await;
    assert_eq!(
        read,
        Decision::Allow {
            detail: 0,
            approval_required: false
        }
    );
    // The mandate's prohibitions travel in the token and are enforced offline.
    let write = v
        .authorize(&caller, &Operation::new("write", "tickets/7"))
        .await;
    assert!(
        matches!(write, Decision::Deny(ref d) if d.code == DenyCode::Prohibited),
        "{write:?}"
    );
    assert!(
        v.authorize(&caller, &Operation::new("write", "tickets/8"))
            .await
            .is_allow()
    );
    // A sub-delegated token (depth 2) names both agents and only reads tickets/42.
    let (b, b_token, b_dpop) = w.sub_delegate(31).await;
    let b_caller = w.present(&v, &b_token, &b_dpop).await.unwrap();
    assert_eq!(b_caller.actors(), [b.id.clone(), w.agent.id.clone()]);
    assert!(
        v.authorize(&b_caller, &Operation::new("read", "tickets/42"))
            .await
            .is_allow()
    );
    let other = v
        .authorize(&b_caller, &Operation::new("read", "tickets/43"))
        .await;
    assert!(matches!(other, Decision::Deny(ref d) if d.code == DenyCode::InsufficientScope));
    // A's key cannot present B's token.
    assert_eq!(
        w.present(&v, &b_token, &w.dpop).await.unwrap_err().code,
        DenyCode::InvalidDpopProof
    );
    // A gate whose key the authority does not know cannot start.
    let mut wrong = w.config();
    wrong.gate_key = SigningKey::from_bytes(&[99; 32]);
    let err = Verifier::start(wrong, w.a.clock.clone(), reqwest::Client::new())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, VerifierError::Config(_)), "{err}");
    // A gate for another audience refuses the token.
    let other_gate = w.a.gate("https://billing.example.com", 13).await;
    let cfg = VerifierConfig::new(
        &w.a.issuer,
        "https://billing.example.com",
        &other_gate.id,
        other_gate.key.clone(),
    );
    let billing = Verifier::start(cfg, w.a.clock.clone(), reqwest::Client::new())
        .await
        .unwrap();
    assert_eq!(
        w.present(&billing, &w.token, &w.dpop)
            .await
            .unwrap_err()
            .code,
        DenyCode::InvalidToken
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_the_verifier_within_a_second() {
    let w = world(tickets()).await;
    let (_, b_token, b_dpop) = w.sub_delegate(31).await;
    let v = w.verifier().await;
    w.present(&v, &w.token, &w.dpop).await.unwrap();
    w.present(&v, &b_token, &b_dpop).await.unwrap();

    // Revoking the mandate: the agent's token names it (matched from the event); the
    // sub-delegated token only names its own delegation, so the verifier learns of the
    // cascade from the status list it refetches on the event.
    let t0 = Instant::now();
    w.a.post(
        &format!("/v1/delegations/{}/revoke", w.mandate),
        json!({"reason": "task done"}),
    )
    .await;
    let (d, after) = w
        .until_refused(&v, &w.token, &w.dpop, t0, Duration::from_secs(1))
        .await;
    assert_eq!(d.code, DenyCode::Revoked, "{d}");
    assert!(after < Duration::from_secs(1), "refused after {after:?}");
    let (d, after) = w
        .until_refused(&v, &b_token, &b_dpop, t0, Duration::from_secs(1))
        .await;
    assert_eq!(d.code, DenyCode::Revoked, "{d}");
    assert!(
        d.reason.contains("status list"),
        "learnt from the status list: {d}"
    );
    assert!(
        after < Duration::from_secs(1),
        "cascade refused after {after:?}"
    );
    eprintln!("cascade refused {after:?} after the revocation");
    assert!(v.freshness().last_event_id.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_is_lifted_by_resumption() {
    let w = world(tickets()).await;
    let v = w.verifier().await;
    w.present(&v, &w.token, &w.dpop).await.unwrap();
    let t0 = Instant::now();
    w.a.post(
        &format!("/v1/agents/{}/suspend", w.agent.id),
        json!({"reason": "incident"}),
    )
    .await;
    let (d, after) = w
        .until_refused(&v, &w.token, &w.dpop, t0, Duration::from_secs(1))
        .await;
    assert_eq!(d.code, DenyCode::Revoked);
    assert!(after < Duration::from_secs(1), "refused after {after:?}");
    w.a.post(&format!("/v1/agents/{}/resume", w.agent.id), json!({}))
        .await;
    let t1 = Instant::now();
    loop {
        match w.present(&v, &w.token, &w.dpop).await {
            Ok(_) => break,
            Err(d) if t1.elapsed() < Duration::from_secs(2) => {
                assert_eq!(d.code, DenyCode::Revoked);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(d) => panic!("still refused after resumption: {d}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_carry_revocations_made_before_the_verifier_started() {
    let w = world(tickets()).await;
    w.a.post(&format!("/v1/delegations/{}/revoke", w.mandate), json!({}))
        .await;
    // The event stream starts at its head: only the status list knows.
    let v = w.verifier().await;
    let d = w.present(&v, &w.token, &w.dpop).await.unwrap_err();
    assert_eq!(d.code, DenyCode::Revoked);
    assert!(d.reason.contains("status list"), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_authority_fails_closed_past_max_staleness() {
    let w = world(tickets()).await;
    let v = w.verifier().await;
    w.present(&v, &w.token, &w.dpop).await.unwrap();
    w.a.relay.cut();
    // Within the staleness bound the cached list still vouches for the token.
    w.a.clock.advance(10_000);
    w.present(&v, &w.token, &w.dpop).await.unwrap();
    // Past it, with neither the stream nor a fresh status list, the token is refused.
    w.a.clock.advance(21_000);
    let d = w.present(&v, &w.token, &w.dpop).await.unwrap_err();
    assert_eq!(d.code, DenyCode::RevocationStale, "{d}");
    assert_eq!(d.code.http_status(), 503);
    assert!(!v.freshness().revocation_fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_trust_reads_the_score_by_introspection() {
    let details = json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/*"], "constraints": {"min_trust": 1}}]);
    let w = world(details).await;
    let v = w.verifier().await;
    let caller = w.present(&v, &w.token, &w.dpop).await.unwrap();
    let decision = v
        .authorize(&caller, &Operation::new("read", "tickets/42"))
        .await;
    // What the registry says, asked the same way.
    let assertion = w.a.assertion(&w.gate, json!({}));
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", w.token.as_str()),
            ("client_assertion_type", BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .finish();
    let info: Value =
        w.a.http
            .post(format!("{}/oauth2/introspect", w.a.running.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(info["active"], true);
    eprintln!("trust {:?}: {decision:?}", info.get("trust"));
    match info.get("trust").and_then(Value::as_u64) {
        Some(t) if t >= 1 => assert!(decision.is_allow(), "trust {t}: {decision:?}"),
        _ => assert!(
            matches!(decision, Decision::Deny(ref d) if d.code == DenyCode::MinTrust),
            "{decision:?}"
        ),
    }
    // A revoked token is reported inactive by introspection: refused however trusted.
    w.a.post(&format!("/v1/delegations/{}/revoke", w.mandate), json!({}))
        .await;
    w.a.clock.advance(11_000);
    let again = v
        .authorize(&caller, &Operation::new("read", "tickets/42"))
        .await;
    assert!(
        matches!(again, Decision::Deny(ref d) if d.code == DenyCode::Revoked),
        "{again:?}"
    );
}
