//! Load tool of the gate benchmark (`bench/gate/run.sh`).
//!
//! - `keygen PRIVATE.jwk PUBLIC.jwk`: a fresh Ed25519 key pair as JWK files.
//! - `upstream PORT`: a trivial HTTP tool (`GET /tickets/{id}` → a small JSON body), the
//!   baseline the gate's added latency is measured against.
//! - `run --url URL --concurrency C --requests N --label L [--token TOKEN.json] --out FILE`:
//!   pre-signs N requests (with `--token`: `Authorization: DPoP <token>` and a fresh DPoP proof
//!   each, RFC 9449 — signing happens before the timed window), writes them over C keep-alive
//!   connections (one in flight per connection), records each request's latency, and appends one
//!   JSON line `{label, concurrency, requests, p50_ms, p99_ms, mean_ms, rps, errors}` to FILE.
//! - `summary FILE`: medians of p50/p99 per label over the rounds, and the gate's added latency
//!   (gate − direct) at p50 and p99.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark tool: any failure must abort the run loudly"
)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use mandate_core::encoding::b64url_decode;
use mandate_core::jose::{self, Algorithm, JwtKind};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn flag(args: &[String], name: &str) -> Option<String> {
    let f = format!("--{name}");
    args.iter()
        .position(|a| *a == f)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match args.first().map(String::as_str) {
        Some("keygen") => keygen(&args[1], &args[2]),
        Some("upstream") => rt.block_on(upstream(args[1].parse().unwrap())),
        Some("run") => rt.block_on(run(&args)),
        Some("summary") => summary(&args[1]),
        _ => panic!("usage: mandate-gatebench keygen|upstream|run|summary …"),
    }
}

fn keygen(private: &str, public: &str) {
    let mut seed = [0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut seed).unwrap();
    let (_, jwk) = mandate_core::jwk::private_jwk_from_seed(&seed);
    std::fs::write(private, jwk.to_string()).unwrap();
    let public_jwk = json!({"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"]});
    std::fs::write(public, public_jwk.to_string()).unwrap();
}

async fn upstream(port: u16) {
    let app = axum::Router::new().route(
        "/tickets/{id}",
        axum::routing::get(
            |axum::extract::Path(id): axum::extract::Path<String>| async move {
                axum::Json(json!({"ticket": id, "title": "printer on fire"}))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn run(args: &[String]) {
    let url = flag(args, "url").expect("--url");
    let concurrency: usize = flag(args, "concurrency").unwrap().parse().unwrap();
    let n: usize = flag(args, "requests").unwrap().parse().unwrap();
    let label = flag(args, "label").expect("--label");
    let out = flag(args, "out").expect("--out");
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, base_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let base_path = base_path.trim_end_matches('/').to_owned();
    let token = flag(args, "token").map(|p| {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        let d = v["dpop_jwk"]["d"].as_str().unwrap();
        let seed: [u8; 32] = b64url_decode(d).unwrap().try_into().unwrap();
        (
            v["access_token"].as_str().unwrap().to_owned(),
            SigningKey::from_bytes(&seed),
        )
    });
    // Pre-sign every request: the window measures the path, not the client's signing.
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let requests: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let path = format!("{base_path}/tickets/{}", i % 1000);
            let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
            if let Some((token, key)) = &token {
                let proof = jose::sign_with_jwk(
                    JwtKind::DpopProof,
                    Algorithm::EdDSA,
                    &json!({
                        "jti": format!("{epoch:x}-{i}"), "htm": "GET",
                        "htu": format!("http://{host}{path}"), "iat": now_secs(),
                        "ath": jose::access_token_hash(token),
                    }),
                    key,
                );
                req.push_str(&format!("Authorization: DPoP {token}\r\nDPoP: {proof}\r\n"));
            }
            req.push_str("\r\n");
            req.into_bytes()
        })
        .collect();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (requests, next, errors, host) = (
            Arc::clone(&requests),
            Arc::clone(&next),
            Arc::clone(&errors),
            host.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = TcpStream::connect(&host).await.unwrap();
            conn.set_nodelay(true).unwrap();
            let mut lat = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests.len() {
                    break;
                }
                let t = Instant::now();
                conn.write_all(&requests[i]).await.unwrap();
                let status = read_response(&mut conn, &mut buf).await;
                lat.push(t.elapsed().as_micros() as u32);
                if status != 200 && errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("first error: HTTP {status}");
                }
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| f64::from(all[((all.len() - 1) as f64 * p).round() as usize]) / 1000.0;
    let mean = all.iter().map(|&x| f64::from(x)).sum::<f64>() / all.len() as f64 / 1000.0;
    let line = json!({
        "label": label, "concurrency": concurrency, "requests": n,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99), "mean_ms": mean,
        "rps": n as f64 / secs, "errors": errors.load(Ordering::Relaxed),
    });
    println!("{line}");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

/// Reads one HTTP/1.1 response with a `Content-Length` body; returns its status.
async fn read_response(conn: &mut TcpStream, buf: &mut [u8]) -> u16 {
    let mut have = 0usize;
    loop {
        let n = conn.read(&mut buf[have..]).await.unwrap();
        assert!(n > 0, "connection closed");
        have += n;
        let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end])
            .unwrap()
            .to_ascii_lowercase();
        let status: u16 = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("content-length");
        while have < end + 4 + len {
            let n = conn.read(&mut buf[have..]).await.unwrap();
            assert!(n > 0, "connection closed");
            have += n;
        }
        return status;
    }
}

fn summary(path: &str) {
    type Samples = (Vec<f64>, Vec<f64>, Vec<f64>);
    let mut by: BTreeMap<String, Samples> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["errors"], 0, "a window had errors: {line}");
        let e = by
            .entry(v["label"].as_str().unwrap().to_owned())
            .or_default();
        e.0.push(v["p50_ms"].as_f64().unwrap());
        e.1.push(v["p99_ms"].as_f64().unwrap());
        e.2.push(v["rps"].as_f64().unwrap());
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| path | p50 ms | p99 ms | requests/s | windows |");
    println!("|---|---:|---:|---:|---:|");
    let mut med = BTreeMap::new();
    for (label, (p50, p99, rps)) in by {
        let w = p50.len();
        let (a, b, c) = (median(p50), median(p99), median(rps));
        println!("| {label} | {a:.3} | {b:.3} | {c:.0} | {w} |");
        med.insert(label, (a, b));
    }
    if let (Some(d), Some(g)) = (med.get("direct"), med.get("gate")) {
        println!();
        println!(
            "added by the gate (median of windows): p50 +{:.3} ms, p99 +{:.3} ms",
            g.0 - d.0,
            g.1 - d.1
        );
    }
}
