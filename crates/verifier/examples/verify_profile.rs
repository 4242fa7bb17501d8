//! A deterministic workload for instruction-count profiling of the verifier's hot paths
//! (`valgrind --tool=callgrind`): the depth-3 token of the `verify` benchmark, authenticated
//! and authorised `N` times either uncached (a new token each time) or cached (one token, a
//! fresh DPoP proof each time).
//!
//! Run: `cargo run --release -p mandate-verifier --example verify_profile -- cold 200`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a profiling harness: a failure must abort the run"
)]

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use mandate_core::clock::FixedClock;
use mandate_core::jose::{self, AccessTokenClaims, Algorithm, Confirmation, JwtKind};
use mandate_core::jwk::PublicJwk;
use mandate_verifier::{Decision, Operation, RequestProof, Verifier, VerifierConfig};
use serde_json::json;

const ISSUER: &str = "https://auth.example.com";
const GATE: &str = "https://crm.example.com";
const URL: &str = "https://crm.example.com/tickets/42";
const NOW: i64 = 1_782_900_000;

fn token(authority: &SigningKey, dpop: &SigningKey, jti: &str) -> String {
    let agent = |id: &str| format!("spiffe://auth.example.com/agent/{id}");
    let claims = AccessTokenClaims {
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
            jkt: PublicJwk::from_seed(&dpop.to_bytes()).thumbprint(),
        },
        del: "dlg_01kaw7x0b8f3yq2m9v5n6c4d2h".into(),
        dpt: 3,
        cmt: "b".repeat(64),
        tnt: "tnt_01kaw7x0b8f3yq2m9v5n6c4d2j".into(),
        status: Some(json!({"status_list": {"idx": 7, "uri": format!("{ISSUER}/statuslists/0")}})),
        prohibitions: Some(json!([{"actions": ["delete"], "resources": ["**"]}])),
    };
    jose::sign(
        JwtKind::AccessToken,
        Some("k1"),
        Algorithm::EdDSA,
        &claims.to_value(),
        authority,
    )
}

fn proof(dpop: &SigningKey, token: &str, i: usize) -> String {
    jose::sign_with_jwk(
        JwtKind::DpopProof,
        Algorithm::EdDSA,
        &json!({"jti": format!("p{i:08}"), "htm": "GET", "htu": URL, "iat": NOW,
                "ath": jose::access_token_hash(token)}),
        dpop,
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "cold".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let authority = SigningKey::from_bytes(&[1; 32]);
    let dpop = SigningKey::from_bytes(&[5; 32]);
    let mut key = PublicJwk::from_seed(&authority.to_bytes()).to_json();
    key["kid"] = json!("k1");
    let jwks = json!({"keys": [key]});
    let clock = Arc::new(FixedClock::new(NOW * 1000));
    let mut cfg = VerifierConfig::new(ISSUER, GATE, "gat_bench", SigningKey::from_bytes(&[9; 32]));
    cfg.token_cache_capacity = if mode == "cold" { 1 } else { 16 };
    let v = Verifier::offline(cfg, jwks, clock);
    let one = token(&authority, &dpop, "jti-warm");
    let requests: Vec<(String, String)> = (0..n)
        .map(|i| {
            let t = if mode == "cold" {
                token(&authority, &dpop, &format!("jti-{i}"))
            } else {
                one.clone()
            };
            let p = proof(&dpop, &t, i);
            (format!("DPoP {t}"), p)
        })
        .collect();
    let op = Operation::new("read", "tickets/42");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let start = std::time::Instant::now();
    rt.block_on(async {
        for (auth, p) in &requests {
            let caller = v
                .authenticate(&RequestProof {
                    method: "GET",
                    url: URL,
                    authorization: Some(auth),
                    dpop: Some(p),
                })
                .await
                .expect("authenticated");
            match v.authorize(&caller, &op).await {
                Decision::Allow { .. } => {}
                Decision::Deny(d) => panic!("denied: {d}"),
            }
        }
    });
    let per_request = start.elapsed().as_nanos() as f64 / n as f64;
    // One Ed25519 verification of the access token's signature, for comparison.
    let (input, sig) = one.rsplit_once('.').expect("JWS");
    let sig: [u8; 64] = mandate_core::encoding::b64url_decode(sig)
        .expect("b64")
        .try_into()
        .expect("64");
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    let vk = *PublicJwk::from_seed(&[1; 32]).verifying_key();
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(vk.verify_strict(std::hint::black_box(input.as_bytes()), &sig))
            .expect("verifies");
    }
    let ed = start.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "{mode}: {n} requests allowed, {:.1} µs each, {:.2}× one Ed25519 verify ({:.1} µs)",
        per_request / 1000.0,
        per_request / ed,
        ed / 1000.0
    );
}
