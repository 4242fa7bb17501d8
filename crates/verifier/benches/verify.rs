//! What a gate pays per request: Mandate's offline verification against one Ed25519 verify and
//! against a Biscuit token carrying the same three-hop attenuated authority.
//!
//! - `ed25519/verify_strict`: one signature check over an access token's signing input — the
//!   floor, since every request must at least verify its DPoP proof.
//! - `mandate/cold`: `authenticate` + `authorize` of a depth-3 token seen for the first time
//!   (token signature, claims, scope parsing, DPoP proof, replay store, revocation, scope and
//!   prohibitions).
//! - `mandate/warm`: the same with the token in the verified-token cache: the DPoP proof,
//!   replay, revocation and authorization are still done on every request.
//! - `biscuit/verify_authorize`: a Biscuit with an authority block and two attenuation blocks
//!   (checks on operation and resource, one prohibition, expiry) parsed and verified from bytes,
//!   then authorized by a Datalog authorizer holding the request facts.
//!
//! Run: `cargo bench -p mandate-verifier --bench verify`. Prints criterion's estimates and, at
//! the end, medians of this run and the ratios.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark: a failure must abort the run"
)]

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use biscuit_auth::macros::{authorizer, biscuit, block};
use biscuit_auth::{AuthorizerLimits, Biscuit, KeyPair};
use criterion::{Bencher, Criterion};
use ed25519_dalek::{Signature, SigningKey};
use mandate_core::clock::FixedClock;
use mandate_core::jose::{self, AccessTokenClaims, Algorithm, Confirmation, JwtKind};
use mandate_core::jwk::PublicJwk;
use mandate_verifier::{Decision, Operation, RequestProof, Verifier, VerifierConfig};
use serde_json::{Value, json};

const ISSUER: &str = "https://auth.example.com";
const GATE: &str = "https://crm.example.com";
const URL: &str = "https://crm.example.com/tickets/42";
/// 2026-07-01T10:00:00Z.
const NOW: i64 = 1_782_900_000;
/// DPoP proofs generated per token; a verifier is rebuilt (untimed) when they run out, since
/// each proof is single use.
const POOL: usize = 4096;

type Samples = Arc<Mutex<Vec<f64>>>;

fn median(samples: &Samples) -> f64 {
    let mut v = samples.lock().expect("lock").clone();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn record(samples: &Samples, d: Duration, iters: u64) {
    samples
        .lock()
        .expect("lock")
        .push(d.as_nanos() as f64 / iters as f64);
}

struct Fixture {
    clock: Arc<FixedClock>,
    jwks: Value,
    authority: SigningKey,
    dpop: SigningKey,
}

fn claims(f: &Fixture, jti: &str) -> AccessTokenClaims {
    let agent = |id: &str| format!("spiffe://auth.example.com/agent/{id}");
    AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "usr_01kaw7x0b8f3yq2m9v5n6c4d2g".into(),
        aud: vec![GATE.into()],
        client_id: "agt_01kaw7x0b8f3yq2m9v5n6c4d2c".into(),
        iat: NOW,
        nbf: NOW,
        exp: NOW + 300,
        jti: jti.into(),
        authorization_details: json!([{"type": "mandate", "actions": ["read"],
            "locations": [GATE], "resources": ["tickets/*"]}]),
        scope: "read".into(),
        act: json!({"sub": agent("agt_01kaw7x0b8f3yq2m9v5n6c4d2c"),
            "act": {"sub": agent("agt_01kaw7x0b8f3yq2m9v5n6c4d2b"),
                "act": {"sub": agent("agt_01kaw7x0b8f3yq2m9v5n6c4d2a")}}}),
        cnf: Confirmation {
            jkt: PublicJwk::from_seed(&f.dpop.to_bytes()).thumbprint(),
        },
        del: "dlg_01kaw7x0b8f3yq2m9v5n6c4d2h".into(),
        dpt: 3,
        cmt: "b".repeat(64),
        tnt: "tnt_01kaw7x0b8f3yq2m9v5n6c4d2j".into(),
        status: Some(json!({"status_list": {"idx": 7, "uri": format!("{ISSUER}/statuslists/0")}})),
        prohibitions: Some(json!([{"actions": ["delete"], "resources": ["**"]}])),
    }
}

fn token(f: &Fixture, jti: &str) -> String {
    jose::sign(
        JwtKind::AccessToken,
        Some("k1"),
        Algorithm::EdDSA,
        &claims(f, jti).to_value(),
        &f.authority,
    )
}

fn proofs(f: &Fixture, token: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            jose::sign_with_jwk(
                JwtKind::DpopProof,
                Algorithm::EdDSA,
                &json!({"jti": format!("p{i:08}-{}", &token[token.len() - 8..]), "htm": "GET",
                        "htu": URL, "iat": NOW, "ath": jose::access_token_hash(token)}),
                &f.dpop,
            )
        })
        .collect()
}

fn verifier(f: &Fixture, capacity: usize) -> Verifier {
    let mut cfg = VerifierConfig::new(ISSUER, GATE, "gat_bench", SigningKey::from_bytes(&[9; 32]));
    cfg.token_cache_capacity = capacity;
    Verifier::offline(cfg, f.jwks.clone(), f.clock.clone())
}

async fn request(v: &Verifier, authorization: &str, proof: &str, op: &Operation) -> usize {
    let caller = v
        .authenticate(&RequestProof {
            method: "GET",
            url: URL,
            authorization: Some(authorization),
            dpop: Some(proof),
        })
        .await
        .expect("authenticated");
    match v.authorize(&caller, op).await {
        Decision::Allow { detail, .. } => detail,
        Decision::Deny(d) => panic!("denied: {d}"),
    }
}

/// Runs `iters` requests cycling through `tokens` (each with its proof pool), timing only the
/// requests; `capacity` is the verifier's token cache size.
fn run(
    rt: &tokio::runtime::Runtime,
    f: &Fixture,
    tokens: &[(String, Vec<String>)],
    capacity: usize,
    warm: bool,
    iters: u64,
) -> Duration {
    let op = Operation::new("read", "tickets/42");
    let auth: Vec<String> = tokens.iter().map(|(t, _)| format!("DPoP {t}")).collect();
    rt.block_on(async {
        let mut total = Duration::ZERO;
        let mut done = 0u64;
        while done < iters {
            let v = verifier(f, capacity);
            let mut next = 0usize;
            if warm {
                // The first use of the token (a cache miss) is not measured; its proof is
                // the pool's last one.
                let (_, pool) = &tokens[0];
                request(&v, &auth[0], &pool[POOL - 1], &op).await;
            }
            let batch = ((POOL - 1) * tokens.len()).min((iters - done) as usize);
            let start = Instant::now();
            for _ in 0..batch {
                let which = next % tokens.len();
                let proof = &tokens[which].1[next / tokens.len()];
                black_box(request(&v, &auth[which], proof, &op).await);
                next += 1;
            }
            total += start.elapsed();
            done += batch as u64;
        }
        total
    })
}

/// A Biscuit equivalent of the depth-3 token: the authority block grants read on tickets to
/// agent A for the human; A attenuates to B and B to C, each block checking operation,
/// resource and expiry, the first one adding the prohibition.
fn biscuit_token(root: &KeyPair) -> Vec<u8> {
    let authority = biscuit!(
        r#"
        user("usr_01kaw7x0b8f3yq2m9v5n6c4d2g");
        agent("agt_01kaw7x0b8f3yq2m9v5n6c4d2a");
        tenant("tnt_01kaw7x0b8f3yq2m9v5n6c4d2j");
        right("https://crm.example.com", "tickets/", "read");
        right("https://crm.example.com", "tickets/", "write");
        check if time($t), $t <= 2026-07-01T10:05:00Z;
    "#
    )
    .build(root)
    .expect("authority block");
    let b1 = authority
        .append(block!(
            r#"
            check if operation($op), ["read", "write"].contains($op), $op != "delete";
            check if resource($r), $r.starts_with("tickets/");
            check if location("https://crm.example.com");
            check if time($t), $t <= 2026-07-01T10:05:00Z;
        "#
        ))
        .expect("first attenuation");
    let b2 = b1
        .append(block!(
            r#"
            check if operation("read");
            check if resource($r), $r.starts_with("tickets/");
            check if time($t), $t <= 2026-07-01T10:05:00Z;
        "#
        ))
        .expect("second attenuation");
    b2.to_vec().expect("serialise")
}

fn biscuit_verify_authorize(bytes: &[u8], root: &biscuit_auth::PublicKey) -> usize {
    let token = Biscuit::from(bytes, *root).expect("verifies");
    let mut a = authorizer!(
        r#"
        time(2026-07-01T10:00:00Z);
        location("https://crm.example.com");
        operation("read");
        resource("tickets/42");
        allow if right("https://crm.example.com", $prefix, $op), operation($op), resource($r), $r.starts_with($prefix);
    "#
    )
    // The default 1 ms time limit is a safety net, not part of the cost; a loaded machine can
    // exceed it, so it is raised here.
    .set_limits(AuthorizerLimits {
        max_time: Duration::from_secs(1),
        ..AuthorizerLimits::default()
    })
    .build(&token)
    .expect("authorizer");
    a.authorize().expect("allowed")
}

#[derive(Default)]
struct All {
    ed25519: Samples,
    cold: Samples,
    warm: Samples,
    biscuit: Samples,
}

fn timed_with(b: &mut Bencher<'_>, samples: &Samples, mut f: impl FnMut(u64) -> Duration) {
    b.iter_custom(|iters| {
        let d = f(iters);
        record(samples, d, iters);
        d
    });
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(30)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    let authority = SigningKey::from_bytes(&[1; 32]);
    let mut key = PublicJwk::from_seed(&authority.to_bytes()).to_json();
    key["kid"] = json!("k1");
    let f = Fixture {
        clock: Arc::new(FixedClock::new(NOW * 1000)),
        jwks: json!({"keys": [key]}),
        authority,
        dpop: SigningKey::from_bytes(&[5; 32]),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cold_tokens: Vec<(String, Vec<String>)> = ["jti-cold-a", "jti-cold-b"]
        .iter()
        .map(|jti| {
            let t = token(&f, jti);
            let p = proofs(&f, &t, POOL);
            (t, p)
        })
        .collect();
    let warm_token = token(&f, "jti-warm");
    let warm_tokens = vec![(warm_token.clone(), proofs(&f, &warm_token, POOL))];
    println!(
        "access token: {} bytes, depth 3; DPoP proof: {} bytes",
        warm_token.len(),
        warm_tokens[0].1[0].len()
    );

    // The signature over the access token's signing input, for the baseline.
    let (input, sig) = warm_token.rsplit_once('.').expect("JWS");
    let sig: [u8; 64] = mandate_core::encoding::b64url_decode(sig)
        .expect("b64")
        .try_into()
        .expect("64");
    let sig = Signature::from_bytes(&sig);
    let vk = *PublicJwk::from_seed(&[1; 32]).verifying_key();
    let input = input.as_bytes().to_vec();

    let root = KeyPair::new();
    let root_public = root.public();
    let biscuit_bytes = biscuit_token(&root);
    println!("biscuit: {} bytes, 3 blocks", biscuit_bytes.len());
    // Sanity: every path allows the request before it is measured.
    biscuit_verify_authorize(&biscuit_bytes, &root_public);
    run(&rt, &f, &cold_tokens, 1, false, 4);
    run(&rt, &f, &warm_tokens, 16, true, 4);

    let s = All::default();
    {
        let mut g = c.benchmark_group("ed25519");
        g.bench_function("verify_strict", |b| {
            timed_with(b, &s.ed25519, |iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(vk.verify_strict(black_box(&input), black_box(&sig)))
                        .expect("verifies");
                }
                start.elapsed()
            })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("mandate");
        // Capacity 1 and two alternating tokens: every request is a cache miss.
        g.bench_function("cold_depth3", |b| {
            timed_with(b, &s.cold, |iters| {
                run(&rt, &f, &cold_tokens, 1, false, iters)
            })
        });
        g.bench_function("warm_depth3", |b| {
            timed_with(b, &s.warm, |iters| {
                run(&rt, &f, &warm_tokens, 16, true, iters)
            })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("biscuit");
        g.bench_function("verify_authorize_3_blocks", |b| {
            timed_with(b, &s.biscuit, |iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(biscuit_verify_authorize(
                        black_box(&biscuit_bytes),
                        &root_public,
                    ));
                }
                start.elapsed()
            })
        });
        g.finish();
    }
    c.final_summary();

    let (ed, cold, warm, bis) = (
        median(&s.ed25519),
        median(&s.cold),
        median(&s.warm),
        median(&s.biscuit),
    );
    println!();
    println!("== verifier summary (medians of this run) ==");
    let row = |name: &str, ns: f64| println!("{name:<52} {:>9.2} µs", ns / 1000.0);
    row("Ed25519 verify_strict (baseline)", ed);
    row("mandate authenticate+authorize, cold (depth 3)", cold);
    row(
        "mandate authenticate+authorize, warm/cached (depth 3)",
        warm,
    );
    row("biscuit verify+authorize (3 blocks)", bis);
    let ratio =
        |name: &str, r: f64, target: &str| println!("{name:<52} {r:>9.2}   target {target}");
    ratio("cached / ed25519", warm / ed, "<= 1.3");
    ratio("biscuit / cached", bis / warm, ">= 5");
    ratio("biscuit / uncached", bis / cold, ">= 2");

    // On a shared machine the load changes between criterion's groups; ratios measured in
    // interleaved rounds (each round runs the four workloads back to back) are steadier.
    let per_iter = |d: Duration, n: u64| d.as_nanos() as f64 / n as f64;
    let (mut r_warm_ed, mut r_bis_warm, mut r_bis_cold) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..PAIRED_ROUNDS {
        let start = Instant::now();
        for _ in 0..200 {
            black_box(vk.verify_strict(black_box(&input), black_box(&sig))).expect("verifies");
        }
        let ed = per_iter(start.elapsed(), 200);
        let warm = per_iter(run(&rt, &f, &warm_tokens, 16, true, 200), 200);
        let cold = per_iter(run(&rt, &f, &cold_tokens, 1, false, 100), 100);
        let start = Instant::now();
        for _ in 0..50 {
            black_box(biscuit_verify_authorize(&biscuit_bytes, &root_public));
        }
        let bis = per_iter(start.elapsed(), 50);
        r_warm_ed.push(warm / ed);
        r_bis_warm.push(bis / warm);
        r_bis_cold.push(bis / cold);
    }
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!("== paired ratios (median of {PAIRED_ROUNDS} interleaved rounds) ==");
    ratio("cached / ed25519", mid(r_warm_ed), "<= 1.3");
    ratio("biscuit / cached", mid(r_bis_warm), ">= 5");
    ratio("biscuit / uncached", mid(r_bis_cold), ">= 2");
}

/// Rounds of the interleaved ratio measurement.
const PAIRED_ROUNDS: usize = 25;
