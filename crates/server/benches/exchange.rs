//! Exchange throughput: sub-delegation by token exchange with the subject token at depth 1, 2
//! and 3, against root issuance (`client_credentials` under a mandate) — same server, same run,
//! 16 requests in flight over loopback. Requests are signed before the timed window, so the
//! client's signing does not compete for the 2 cores while measuring.
//!
//! Run: `cargo bench -p mandate-server --bench exchange`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark: a failure must abort the run"
)]

use std::sync::Arc;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use mandate_core::encoding::b64url;
use mandate_core::jose::{self, Algorithm, JwtKind};
use mandate_core::jwk::PublicJwk;
use mandate_server::ServerConfig;
use serde_json::{Value, json};

const ADMIN: &str = "mnd_bench_bootstrap_key_0123456789abcdef";
const CONCURRENCY: usize = 16;
/// Requests per measurement (`EXCHANGE_REQUESTS` overrides).
const REQUESTS: usize = 1_500;
/// Measurements per series (`EXCHANGE_RUNS` overrides).
const RUNS: usize = 3;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of this process (server and client together), seconds, from `/proc/self/stat`.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5) (utime, stime) are the 12th and 13th after the name.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}
const CRM: &str = "https://crm.example.com";
const BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

struct Agent {
    id: String,
    key: SigningKey,
}

impl Agent {
    fn kid(&self) -> String {
        PublicJwk::from_seed(&self.key.to_bytes()).thumbprint()
    }
}

fn nonce(i: u64, salt: u64) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&i.to_be_bytes());
    b[8..].copy_from_slice(&salt.to_be_bytes());
    b64url(&b)
}

struct Ctx {
    http: reqwest::Client,
    base: String,
    issuer: String,
}

impl Ctx {
    async fn post(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn agent(&self, owner: &str, name: &str, seed: u8) -> Agent {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let jwk = PublicJwk::from_seed(&key.to_bytes()).to_json();
        let ceiling = json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/*"]}]);
        let r = self.post("/v1/agents", json!({"name": name, "owner": owner, "purpose": "bench", "ceiling": ceiling, "jwk": jwk})).await;
        Agent {
            id: r["agent"]["id"].as_str().unwrap().to_owned(),
            key,
        }
    }

    fn assertion(&self, a: &Agent, now: i64, i: u64, salt: u64) -> String {
        jose::sign(
            JwtKind::ClientAssertion,
            Some(&a.kid()),
            Algorithm::EdDSA,
            &json!({"iss": a.id, "sub": a.id, "aud": self.issuer, "iat": now, "exp": now + 280, "jti": nonce(i, salt)}),
            &a.key,
        )
    }

    fn proof(&self, key: &SigningKey, now: i64, i: u64, salt: u64) -> String {
        jose::sign_with_jwk(
            JwtKind::DpopProof,
            Algorithm::EdDSA,
            &json!({"jti": nonce(i, salt), "htm": "POST", "htu": format!("{}/oauth2/token", self.issuer), "iat": now}),
            key,
        )
    }

    async fn token(&self, form: &[(&str, String)], proof: &str) -> (u16, Value) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let r = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("DPoP", proof)
            .body(body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

/// Sends pre-built requests with `CONCURRENCY` in flight; returns requests per second and
/// requests per CPU-second of this process.
async fn drive(ctx: Arc<Ctx>, requests: Vec<(Vec<(&'static str, String)>, String)>) -> (f64, f64) {
    let queue = Arc::new(tokio::sync::Mutex::new(requests));
    let n = queue.lock().await.len();
    let cpu = process_cpu();
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (ctx, queue) = (ctx.clone(), queue.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some((form, proof)) = queue.lock().await.pop() else {
                    break;
                };
                let (status, body) = ctx.token(&form, &proof).await;
                assert_eq!(status, 200, "{body}");
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu).max(0.01);
    (n as f64 / wall, n as f64 / cpu)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path().join("data"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.bootstrap_key = Some(ADMIN.into());
        let server = mandate_server::start(config).await.unwrap();
        let ctx = Arc::new(Ctx { http: reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap(), base: server.url(), issuer: server.issuer.clone() });
        let me: Value = ctx.http.get(format!("{}/v1/me", ctx.base)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        let me = me["human"]["id"].as_str().unwrap().to_owned();
        // A chain root → a1 → a2 → a3, each holding a token, and a sub-agent b to delegate to.
        let mut chain = Vec::new();
        for (i, seed) in [11u8, 12, 13].iter().enumerate() {
            chain.push(ctx.agent(&me, &format!("a{}", i + 1), *seed).await);
        }
        let b = ctx.agent(&me, "b", 20).await;
        let details = json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/*"]}]);
        let m = ctx.post("/v1/mandates", json!({"agent": chain[0].id, "authorization_details": details, "expires_in": 3600, "max_depth": 4, "purpose": "bench"})).await;
        let doc = m["delegation"].as_str().unwrap().to_owned();
        let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        // Root token of a1 (its DPoP key = its own key, for simplicity).
        let t = now();
        let (s, body) = ctx.token(&[("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange".into()), ("subject_token", doc.clone()), ("subject_token_type", "urn:mandate:token-type:delegation".into()), ("client_assertion_type", BEARER.into()), ("client_assertion", ctx.assertion(&chain[0], t, 0, 1))], &ctx.proof(&chain[0].key, t, 0, 1)).await;
        assert_eq!(s, 200, "{body}");
        let mut held = vec![body["access_token"].as_str().unwrap().to_owned()];
        // Tokens at depth 2 and 3 (bound to the holder's registered key: no cnf in consents).
        for d in 1..3 {
            let t = now();
            let consent = jose::sign(JwtKind::ActorToken, Some(&chain[d].kid()), Algorithm::EdDSA, &json!({"iss": chain[d].id, "sub": chain[d].id, "aud": ctx.issuer, "exp": t + 200, "jti": nonce(d as u64, 2), "delegator": chain[d - 1].id}), &chain[d].key);
            let (s, body) = ctx.token(&exchange_form(&ctx, &chain[d - 1], &held[d - 1], &consent, t, d as u64, 3), &ctx.proof(&chain[d - 1].key, t, d as u64, 3)).await;
            assert_eq!(s, 200, "{body}");
            held.push(body["access_token"].as_str().unwrap().to_owned());
        }
        let (requests, runs) = (env_or("EXCHANGE_REQUESTS", REQUESTS), env_or("EXCHANGE_RUNS", RUNS));
        let mut results: Vec<(String, Vec<f64>, Vec<f64>)> = vec![("root issuance (client_credentials)".into(), vec![], vec![]), ("exchange at depth 1 → 2".into(), vec![], vec![]), ("exchange at depth 2 → 3".into(), vec![], vec![]), ("exchange at depth 3 → 4".into(), vec![], vec![])];
        // `EXCHANGE_ONLY=0` (root) or `=13` (depths 1 and 3)…: run only those series (profiling).
        let only = std::env::var("EXCHANGE_ONLY").ok();
        for run in 0..runs as u64 {
            // Root issuance.
            let t = now();
            if only.as_deref().is_some_and(|o| !o.contains('0')) {
                results[0].1.push(1.0);
                results[0].2.push(1.0);
            } else {
            let reqs: Vec<_> = (0..requests as u64).map(|i| {
                let form = vec![("grant_type", "client_credentials".to_owned()), ("client_assertion_type", BEARER.to_owned()), ("client_assertion", ctx.assertion(&chain[0], t, i, 100 + run))];
                (form, ctx.proof(&chain[0].key, t, i, 200 + run))
            }).collect();
            let (rate, per_cpu) = drive(ctx.clone(), reqs).await;
            results[0].1.push(rate);
            results[0].2.push(per_cpu);
            }
            for d in 0..3 {
                if only.as_deref().is_some_and(|o| !o.contains(char::from(b'1' + d as u8))) {
                    continue;
                }
                let t = now();
                let reqs: Vec<_> = (0..requests as u64).map(|i| {
                    let salt = 1000 * (run + 1) + d as u64;
                    let consent = jose::sign(JwtKind::ActorToken, Some(&b.kid()), Algorithm::EdDSA, &json!({"iss": b.id, "sub": b.id, "aud": ctx.issuer, "exp": t + 200, "jti": nonce(i, salt), "delegator": chain[d].id}), &b.key);
                    (exchange_form(&ctx, &chain[d], &held[d], &consent, t, i, salt + 50), ctx.proof(&chain[d].key, t, i, salt + 70))
                }).collect();
                let (rate, per_cpu) = drive(ctx.clone(), reqs).await;
                results[d + 1].1.push(rate);
                results[d + 1].2.push(per_cpu);
            }
        }
        let median = |v: &mut Vec<f64>| { v.sort_by(f64::total_cmp); v[v.len() / 2] };
        let root = median(&mut results[0].1.clone());
        let root_cpu = median(&mut results[0].2.clone());
        println!("== exchange throughput (medians of {runs} runs, {requests} requests each, {CONCURRENCY} in flight)");
        for (name, v, c) in &mut results {
            if v.is_empty() {
                continue;
            }
            let (m, mc) = (median(v), median(c));
            println!("{name:<40} {m:>8.0} tokens/s {:>5.0}% of root   {mc:>8.0} per process CPU-s {:>5.0}% of root", 100.0 * m / root, 100.0 * mc / root_cpu);
        }
        server.stop().await;
    });
}

fn exchange_form(
    ctx: &Ctx,
    holder: &Agent,
    token: &str,
    consent: &str,
    t: i64,
    i: u64,
    salt: u64,
) -> Vec<(&'static str, String)> {
    vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange".into(),
        ),
        ("subject_token", token.to_owned()),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token".into(),
        ),
        ("actor_token", consent.to_owned()),
        (
            "actor_token_type",
            "urn:ietf:params:oauth:token-type:jwt".into(),
        ),
        ("client_assertion_type", BEARER.into()),
        ("client_assertion", ctx.assertion(holder, t, i, salt)),
    ]
}
