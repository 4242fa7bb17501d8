//! Several `mandate serve` replicas over one PostgreSQL database (DESIGN §9), as real processes:
//! issuance through both, revocation through one seen at once by the other's introspection and
//! within a second on its event stream, single-use assertion ids across replicas, one verifying
//! ledger chain under concurrent issuance, and a `kill -9` of one replica mid-burst.
//!
//! PostgreSQL: `MANDATE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`); each
//! test gets a schema of its own. Skipped loudly when no server is reachable, unless
//! `MANDATE_REQUIRE_POSTGRES=1` (set by `scripts/test` when one is), which makes that a failure.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mandate_core::encoding::b64url;
use mandate_core::jose::{self, Algorithm, JwtKind};
use mandate_server::keys::ServerKey;
use mandate_store::postgres::scratch::{DEFAULT_TEST_URL, ScratchSchema};
use serde_json::{Value, json};

use crate::proc::{ADMIN_KEY, ServerProcess, mandate};

const CRM: &str = "https://crm.example.com";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A scratch schema, or `None` (after a loud message) when PostgreSQL is not reachable.
fn schema(rt: &tokio::runtime::Runtime) -> Option<ScratchSchema> {
    let base = std::env::var("MANDATE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_URL.into());
    match rt.block_on(ScratchSchema::create(&base)) {
        Ok(s) => Some(s),
        Err(e) => {
            assert!(
                std::env::var("MANDATE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "MANDATE_REQUIRE_POSTGRES=1 but PostgreSQL is not usable at {base}: {e}"
            );
            eprintln!(
                "\n!!! SKIPPED: PostgreSQL not reachable at {base} ({e}); replica tests did not run !!!\n"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two replicas on `db`, sharing `data` (the signing-key file) and one issuer identifier (what
/// a load balancer in front of them would be); the first one bootstraps.
fn replicas(data: &Path, db: &str) -> (ServerProcess, ServerProcess, String) {
    let (pa, pb) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{pa}");
    let a = ServerProcess::start_with(data, pa, &["--database-url", db, "--issuer", &issuer]);
    let b = ServerProcess::start_with(data, pb, &["--database-url", db, "--issuer", &issuer]);
    (a, b, issuer)
}

struct Agent {
    id: String,
    key: ServerKey,
}

impl Agent {
    fn assertion(&self, issuer: &str) -> String {
        let now = now_secs();
        jose::sign(
            JwtKind::ClientAssertion,
            Some(&self.key.kid()),
            Algorithm::EdDSA,
            &json!({"iss": self.id, "sub": self.id, "aud": issuer, "iat": now, "exp": now + 120, "jti": nonce()}),
            self.key.signing_key(),
        )
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn nonce() -> String {
    b64url(&mandate_server::state::random::<16>().unwrap())
}

fn dpop(key: &ServerKey, htu: &str) -> String {
    jose::sign_with_jwk(
        JwtKind::DpopProof,
        Algorithm::EdDSA,
        &json!({"jti": nonce(), "htm": "POST", "htu": htu, "iat": now_secs()}),
        key.signing_key(),
    )
}

async fn admin(http: &reqwest::Client, url: &str, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{url}{path}"))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {path}: {status} {v}");
    v
}

async fn setup_agent(http: &reqwest::Client, url: &str, owner: &str, name: &str) -> Agent {
    let key = ServerKey::from_seed(&mandate_server::state::random::<32>().unwrap());
    let jwk = key.jwk(Algorithm::EdDSA);
    let body = json!({"name": name, "owner": owner, "purpose": "replica test",
        "ceiling": [{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/*"]}],
        "jwk": {"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"]}});
    let v = admin(http, url, "/v1/agents", body).await;
    Agent {
        id: v["agent"]["id"].as_str().unwrap().to_owned(),
        key,
    }
}

async fn mandate_for(http: &reqwest::Client, url: &str, agent: &str) -> String {
    let v = admin(http, url, "/v1/mandates", json!({"agent": agent, "expires_in": 3600, "purpose": "replicas",
        "authorization_details": [{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/*"]}]}))
    .await;
    v["id"].as_str().unwrap().to_owned()
}

/// `application/x-www-form-urlencoded` of `pairs` (everything but unreserved characters escaped).
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |v: &str| {
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `client_credentials` at `url` with `assertion`; (status, body).
async fn token(
    http: &reqwest::Client,
    url: &str,
    issuer: &str,
    assertion: &str,
    dpop_key: &ServerKey,
) -> (u16, Value) {
    let r = http
        .post(format!("{url}/oauth2/token"))
        .header("DPoP", dpop(dpop_key, &format!("{issuer}/oauth2/token")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ]))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn introspect(
    http: &reqwest::Client,
    url: &str,
    issuer: &str,
    gate: &Agent,
    tok: &str,
) -> Value {
    let r = http
        .post(format!("{url}/oauth2/introspect"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &gate.assertion(issuer)),
            ("token", tok),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[test]
fn two_replicas_on_one_database() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = runtime();
    let Some(db) = schema(&rt) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, issuer) = replicas(&dir.path().join("data"), db.url());
    let (ua, ub) = (a.url.clone(), b.url.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();

    rt.block_on(async {
        // Setup through A; B sees it (one database).
        let owner = admin(
            &http,
            &ua,
            "/v1/humans",
            json!({"name": "Ria", "email": "ria@example.com"}),
        )
        .await;
        let owner = owner["id"].as_str().unwrap().to_owned();
        let agent = setup_agent(&http, &ub, &owner, "replicated-bot").await;
        let gate_key = ServerKey::from_seed(&mandate_server::state::random::<32>().unwrap());
        let gjwk = gate_key.jwk(Algorithm::EdDSA);
        let g = admin(
            &http,
            &ua,
            "/v1/gates",
            json!({"name": "crm-gate", "audience": CRM,
            "jwk": {"kty": gjwk["kty"], "crv": gjwk["crv"], "x": gjwk["x"]}}),
        )
        .await;
        let gate = Agent {
            id: g["id"].as_str().unwrap().to_owned(),
            key: gate_key,
        };
        let m1 = mandate_for(&http, &ua, &agent.id).await;
        let dk = ServerKey::from_seed(&mandate_server::state::random::<32>().unwrap());

        // Issue through both replicas; each verifies the other's tokens (shared signing keys).
        let (s, from_a) = token(&http, &ua, &issuer, &agent.assertion(&issuer), &dk).await;
        assert_eq!(s, 200, "{from_a}");
        let (s, from_b) = token(&http, &ub, &issuer, &agent.assertion(&issuer), &dk).await;
        assert_eq!(s, 200, "{from_b}");
        let ta = from_a["access_token"].as_str().unwrap().to_owned();
        let tb = from_b["access_token"].as_str().unwrap().to_owned();
        assert_eq!(
            introspect(&http, &ub, &issuer, &gate, &ta).await["active"],
            true
        );
        assert_eq!(
            introspect(&http, &ua, &issuer, &gate, &tb).await["active"],
            true
        );

        // B's event stream, then a revocation through A.
        let mut events = http
            .get(format!("{ub}/v1/events"))
            .bearer_auth(ADMIN_KEY)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
        admin(
            &http,
            &ua,
            &format!("/v1/delegations/{m1}/revoke"),
            json!({}),
        )
        .await;
        let revoked_at = Instant::now();
        // B's introspection: inactive at once (it reads the shared database).
        assert_eq!(
            introspect(&http, &ub, &issuer, &gate, &ta).await,
            json!({"active": false})
        );
        assert_eq!(
            introspect(&http, &ub, &issuer, &gate, &tb).await,
            json!({"active": false})
        );
        // B's event stream delivers the revocation in under a second (LISTEN/NOTIFY fan-out).
        let mut seen = String::new();
        let delivered = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(chunk) = events.chunk().await.unwrap() {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains(&m1) {
                    return revoked_at.elapsed();
                }
            }
            panic!("event stream ended");
        })
        .await
        .unwrap_or_else(|_| {
            panic!("B's event stream did not deliver the revocation within 1 s: {seen}")
        });
        eprintln!("revocation through A reached B's event stream after {delivered:?}");

        // 200 parallel uses of one assertion, spread over both replicas: exactly one succeeds.
        let _m2 = mandate_for(&http, &ub, &agent.id).await;
        let one = Arc::new(agent.assertion(&issuer));
        let ok = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (http, url, issuer, one, ok) = (
                http.clone(),
                if i % 2 == 0 { ua.clone() } else { ub.clone() },
                issuer.clone(),
                Arc::clone(&one),
                Arc::clone(&ok),
            );
            tasks.push(tokio::spawn(async move {
                let dk = ServerKey::from_seed(&mandate_server::state::random::<32>().unwrap());
                let (s, body) = token(&http, &url, &issuer, &one, &dk).await;
                match s {
                    200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    401 => assert_eq!(body["error"], "invalid_client", "{body}"),
                    other => panic!("unexpected {other}: {body}"),
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            ok.load(Ordering::SeqCst),
            1,
            "one assertion was used more than once across replicas"
        );

        // Concurrent issuance on both: 200 tokens, then one verifying chain.
        let issued = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (http, url, issuer, issued) = (
                http.clone(),
                if i % 2 == 0 { ua.clone() } else { ub.clone() },
                issuer.clone(),
                Arc::clone(&issued),
            );
            let assertion = agent.assertion(&issuer);
            tasks.push(tokio::spawn(async move {
                let dk = ServerKey::from_seed(&mandate_server::state::random::<32>().unwrap());
                let (s, body) = token(&http, &url, &issuer, &assertion, &dk).await;
                assert_eq!(s, 200, "{body}");
                issued.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(issued.load(Ordering::SeqCst), 200);
    });

    for url in [&ua, &ub] {
        let (code, out, err) = mandate(url, ADMIN_KEY, &["audit", "verify"]);
        assert_eq!(code, 0, "audit verify through {url}: {out} {err}");
        assert!(out.contains("ledger ok"), "{out}");
    }
    drop((a, b));
}

#[test]
fn kill_9_of_one_replica_loses_no_acknowledged_operation() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = runtime();
    let Some(db) = schema(&rt) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _issuer) = replicas(&dir.path().join("data"), db.url());
    let (ua, ub) = (a.url.clone(), b.url.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let owner = rt.block_on(admin(
        &http,
        &ua,
        "/v1/humans",
        json!({"name": "Kai", "email": "kai@example.com"}),
    ));
    let owner = owner["id"].as_str().unwrap().to_owned();

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let burst = {
        let (acked, http, ua, ub) = (Arc::clone(&acked), http.clone(), ua.clone(), ub.clone());
        std::thread::spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for i in 0..600 {
                    let url = if i % 2 == 0 { ua.clone() } else { ub.clone() };
                    let (http, owner, acked, kill_tx) =
                        (http.clone(), owner.clone(), Arc::clone(&acked), kill_tx.clone());
                    tasks.push(tokio::spawn(async move {
                        let body = json!({"name": format!("bot-{i}"), "owner": owner, "purpose": "crash test",
                            "ceiling": [{"type": "mandate", "actions": ["read"], "resources": ["**"]}]});
                        let Ok(r) = http.post(format!("{url}/v1/agents")).bearer_auth(ADMIN_KEY).json(&body).send().await
                        else {
                            return;
                        };
                        if r.status() != 201 {
                            return;
                        }
                        if let Ok(v) = r.json::<Value>().await {
                            let mut a = acked.lock().unwrap();
                            a.push(v["agent"]["id"].as_str().unwrap().to_owned());
                            if a.len() == 150 {
                                let _ = kill_tx.send(());
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
    };
    kill_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("150 acknowledgements");
    a.kill9();
    burst.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150);

    // Every acknowledged registration — through either replica — is there, seen from B.
    let rt = runtime();
    rt.block_on(async {
        for id in &acked {
            let r = http
                .get(format!("{ub}/v1/agents/{id}"))
                .bearer_auth(ADMIN_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                200,
                "acknowledged agent {id} is missing after kill -9 of A"
            );
        }
    });
    let (code, out, err) = mandate(&ub, ADMIN_KEY, &["audit", "verify"]);
    assert_eq!(code, 0, "audit verify after kill -9: {out} {err}");
    eprintln!(
        "kill -9 of A after 150 acknowledgements: {} acknowledged, all present",
        acked.len()
    );
    drop(b);
}
