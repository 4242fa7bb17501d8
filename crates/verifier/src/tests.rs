//! Every denial path of the verifier, offline, with tokens signed by a test authority key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failure must abort the test"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mandate_core::clock::FixedClock;
use mandate_core::encoding::b64url;
use mandate_core::jose::{self, AccessTokenClaims, Algorithm, Confirmation, JwtKind};
use mandate_core::jwk::PublicJwk;
use mandate_core::status_list::{INVALID, SUSPENDED, StatusList, VALID};
use serde_json::{Value, json};

use super::*;
use crate::revocation::CachedList;
use crate::verify::{TrustEntry, lock, read, write};

const ISSUER: &str = "https://auth.example.com";
const GATE: &str = "https://crm.example.com";
const URL: &str = "https://crm.example.com/tickets/1";
/// Wednesday 2026-07-01 10:00:00 UTC.
const NOW_MS: i64 = 1_782_900_000_000;
const LIST_URI: &str = "https://auth.example.com/statuslists/0";

struct Fx {
    clock: Arc<FixedClock>,
    v: Verifier,
    authority: SigningKey,
    dpop: SigningKey,
}

fn jwks(key: &SigningKey, kid: &str) -> Value {
    let mut k = PublicJwk::from_seed(&key.to_bytes()).to_json();
    k["kid"] = json!(kid);
    k["use"] = json!("sig");
    k["alg"] = json!("EdDSA");
    json!({"keys": [k]})
}

fn config() -> VerifierConfig {
    VerifierConfig::new(ISSUER, GATE, "gat_test", SigningKey::from_bytes(&[9; 32]))
}

fn fx() -> Fx {
    fx_with(|_| {})
}

fn fx_with(tune: impl FnOnce(&mut VerifierConfig)) -> Fx {
    let mut cfg = config();
    tune(&mut cfg);
    let clock = Arc::new(FixedClock::new(NOW_MS));
    let authority = SigningKey::from_bytes(&[1; 32]);
    let v = Verifier::offline(cfg, jwks(&authority, "k1"), clock.clone());
    Fx {
        clock,
        v,
        authority,
        dpop: SigningKey::from_bytes(&[5; 32]),
    }
}

fn now() -> i64 {
    NOW_MS / 1000
}

fn nonce() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    format!("n{}", N.fetch_add(1, Ordering::Relaxed))
}

impl Fx {
    fn now(&self) -> i64 {
        use mandate_core::clock::Clock;
        self.clock.now_ms() / 1000
    }

    fn claims(&self) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: ISSUER.into(),
            sub: "usr_1".into(),
            aud: vec![GATE.into()],
            client_id: "agt_c".into(),
            iat: now(),
            nbf: now(),
            exp: now() + 300,
            jti: nonce(),
            authorization_details: json!([{"type": "mandate", "actions": ["read", "write"], "locations": [GATE], "resources": ["tickets/*"]}]),
            scope: "read write".into(),
            act: json!({"sub": "spiffe://example/agent/agt_c", "act": {"sub": "spiffe://example/agent/agt_b", "act": {"sub": "spiffe://example/agent/agt_a"}}}),
            cnf: Confirmation {
                jkt: PublicJwk::from_seed(&self.dpop.to_bytes()).thumbprint(),
            },
            del: "dlg_3".into(),
            dpt: 3,
            cmt: "cmt_c".into(),
            tnt: "tnt_1".into(),
            status: None,
            prohibitions: None,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        jose::sign(
            JwtKind::AccessToken,
            Some("k1"),
            Algorithm::EdDSA,
            claims,
            &self.authority,
        )
    }

    fn token(&self) -> String {
        self.sign(&self.claims().to_value())
    }

    fn token_with(&self, patch: impl FnOnce(&mut AccessTokenClaims)) -> String {
        let mut c = self.claims();
        patch(&mut c);
        self.sign(&c.to_value())
    }

    fn proof_claims(&self, token: &str) -> Value {
        json!({"jti": nonce(), "htm": "GET", "htu": URL, "iat": self.now(), "ath": jose::access_token_hash(token)})
    }

    fn proof(&self, token: &str) -> String {
        self.proof_patched(token, json!({}))
    }

    fn proof_patched(&self, token: &str, patch: Value) -> String {
        let mut claims = self.proof_claims(token);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        jose::sign_with_jwk(JwtKind::DpopProof, Algorithm::EdDSA, &claims, &self.dpop)
    }

    async fn auth_with(
        &self,
        authorization: Option<&str>,
        dpop: Option<&str>,
    ) -> Result<Caller, Denial> {
        self.v
            .authenticate(&RequestProof {
                method: "GET",
                url: URL,
                authorization,
                dpop,
            })
            .await
    }

    async fn auth(&self, token: &str) -> Result<Caller, Denial> {
        let proof = self.proof(token);
        self.auth_with(Some(&format!("DPoP {token}")), Some(&proof))
            .await
    }

    async fn caller(&self, patch: impl FnOnce(&mut AccessTokenClaims)) -> Caller {
        let token = self.token_with(patch);
        self.auth(&token).await.expect("authenticates")
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, Denial>) -> DenyCode {
    r.expect_err("denied").code
}

fn denied(d: Decision) -> DenyCode {
    match d {
        Decision::Deny(d) => d.code,
        other => panic!("allowed: {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_request_is_authenticated_and_authorized() {
    let f = fx();
    let token = f.token();
    let caller = f.auth(&token).await.unwrap();
    assert_eq!(caller.agent(), "agt_c");
    assert_eq!(caller.human(), "usr_1");
    assert_eq!(caller.delegation(), "dlg_3");
    assert_eq!(caller.tenant(), "tnt_1");
    assert_eq!(caller.depth(), 3);
    assert_eq!(caller.actors(), ["agt_c", "agt_b", "agt_a"]);
    assert_eq!(caller.token_hash, crate::cache::token_hash(&token));
    assert!(!format!("{caller:?}").contains(&token), "no token in Debug");
    let d =
        f.v.authorize(&caller, &Operation::new("read", "tickets/1"))
            .await;
    assert_eq!(
        d,
        Decision::Allow {
            detail: 0,
            approval_required: false
        }
    );
    // The DPoP scheme name is case-insensitive; `htu` is normalised (RFC 9449 §4.3).
    let proof = f.proof_patched(
        &token,
        json!({"htu": "HTTPS://CRM.example.com:443/tickets/1?q=1"}),
    );
    f.auth_with(Some(&format!("dpop {token}")), Some(&proof))
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_tokens_are_refused() {
    let f = fx();
    let other = SigningKey::from_bytes(&[2; 32]);
    let c = f.claims().to_value();
    let mut cases: Vec<(&str, String)> = vec![
        ("garbage", "not.a.token".into()),
        (
            "other key",
            jose::sign(
                JwtKind::AccessToken,
                Some("k1"),
                Algorithm::EdDSA,
                &c,
                &other,
            ),
        ),
        (
            "unknown kid",
            jose::sign(
                JwtKind::AccessToken,
                Some("k9"),
                Algorithm::EdDSA,
                &c,
                &f.authority,
            ),
        ),
        (
            "no kid",
            jose::sign(
                JwtKind::AccessToken,
                None,
                Algorithm::EdDSA,
                &c,
                &f.authority,
            ),
        ),
        (
            "typ of another kind",
            jose::sign(
                JwtKind::Delegation,
                Some("k1"),
                Algorithm::EdDSA,
                &c,
                &f.authority,
            ),
        ),
        (
            "wrong issuer",
            f.token_with(|c| c.iss = "https://evil.example.com".into()),
        ),
        (
            "wrong audience",
            f.token_with(|c| c.aud = vec!["https://other.example.com".into()]),
        ),
        (
            "expired",
            f.token_with(|c| {
                c.iat = now() - 600;
                c.nbf = now() - 600;
                c.exp = now() - 60
            }),
        ),
        ("not yet valid", f.token_with(|c| c.nbf = now() + 120)),
    ];
    let mut no_cnf = f.claims().to_value();
    no_cnf.as_object_mut().unwrap().remove("cnf");
    cases.push(("no cnf", f.sign(&no_cnf)));
    let mut bad_details = f.claims().to_value();
    bad_details["authorization_details"] =
        json!([{"type": "mandate", "actions": [], "resources": ["x"]}]);
    cases.push(("bad authorization_details", f.sign(&bad_details)));
    let mut bad_prohibitions = f.claims().to_value();
    bad_prohibitions["prohibitions"] = json!([{"actions": ["read"]}]);
    cases.push(("bad prohibitions", f.sign(&bad_prohibitions)));
    for (what, token) in &cases {
        assert_eq!(code(f.auth(token).await), DenyCode::InvalidToken, "{what}");
    }
    // No token, or the wrong scheme: a DPoP-bound token under Bearer (RFC 9449 §7.1).
    let token = f.token();
    let proof = f.proof(&token);
    assert_eq!(
        code(f.auth_with(None, Some(&proof)).await),
        DenyCode::InvalidToken
    );
    for header in [
        format!("Bearer {token}"),
        format!("Basic {token}"),
        token.clone(),
    ] {
        let proof = f.proof(&token);
        assert_eq!(
            code(f.auth_with(Some(&header), Some(&proof)).await),
            DenyCode::InvalidToken,
            "{}",
            &header[..6]
        );
    }
    assert_eq!(
        f.v.inner.signature_checks.load(Ordering::Relaxed) as usize,
        9,
        "only well-formed tokens with a known key reach the signature check"
    );
    // Positive control.
    f.auth(&token).await.unwrap();
}

#[tokio::test]
async fn a_token_is_verified_once_and_rechecked_for_expiry_on_every_use() {
    let f = fx();
    let token = f.token_with(|c| c.exp = now() + 60);
    for _ in 0..3 {
        f.auth(&token).await.unwrap();
    }
    assert_eq!(f.v.inner.signature_checks.load(Ordering::Relaxed), 1);
    f.clock.advance((60 + verify::TOKEN_LEEWAY_SECS) * 1000);
    let d = f.auth(&token).await.unwrap_err();
    assert_eq!(d.code, DenyCode::InvalidToken);
    assert!(d.reason.contains("expired"), "{d}");
}

#[tokio::test]
async fn the_token_cache_is_bounded_and_follows_the_jwks() {
    let f = fx_with(|c| c.token_cache_capacity = 2);
    let tokens: Vec<String> = (0..3).map(|_| f.token()).collect();
    for t in &tokens {
        f.auth(t).await.unwrap();
    }
    assert_eq!(f.v.inner.signature_checks.load(Ordering::Relaxed), 3);
    f.auth(&tokens[2]).await.unwrap();
    assert_eq!(
        f.v.inner.signature_checks.load(Ordering::Relaxed),
        3,
        "cached"
    );
    f.auth(&tokens[0]).await.unwrap();
    assert_eq!(
        f.v.inner.signature_checks.load(Ordering::Relaxed),
        4,
        "evicted, verified again"
    );
    // The authority stops publishing the key: cached tokens signed by it are refused.
    let other = SigningKey::from_bytes(&[3; 32]);
    let keys = keys::KeySet::parse(&jwks(&other, "k2")).unwrap();
    write(&f.v.inner.keys).replace(keys, NOW_MS);
    assert_eq!(code(f.auth(&tokens[2]).await), DenyCode::InvalidToken);
}

#[tokio::test]
async fn bad_dpop_proofs_are_refused() {
    let f = fx();
    let token = f.token();
    let auth = format!("DPoP {token}");
    let other_token = f.token();
    let thief = SigningKey::from_bytes(&[6; 32]);
    let mut thief_claims = f.proof_claims(&token);
    thief_claims["jti"] = json!(nonce());
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong method",
            f.proof_patched(&token, json!({"htm": "POST"})),
        ),
        (
            "wrong uri",
            f.proof_patched(&token, json!({"htu": "https://crm.example.com/tickets/2"})),
        ),
        (
            "wrong host",
            f.proof_patched(&token, json!({"htu": "https://evil.example.com/tickets/1"})),
        ),
        (
            "too old",
            f.proof_patched(&token, json!({"iat": now() - 301})),
        ),
        (
            "from the future",
            f.proof_patched(&token, json!({"iat": now() + 60})),
        ),
        ("no ath", f.proof_patched(&token, json!({"ath": null}))),
        (
            "ath of another token",
            f.proof_patched(
                &token,
                json!({"ath": jose::access_token_hash(&other_token)}),
            ),
        ),
        ("no jti", f.proof_patched(&token, json!({"jti": null}))),
        (
            "key not bound to the token",
            jose::sign_with_jwk(JwtKind::DpopProof, Algorithm::EdDSA, &thief_claims, &thief),
        ),
        (
            "typ of an access token",
            jose::sign(
                JwtKind::AccessToken,
                None,
                Algorithm::EdDSA,
                &f.proof_claims(&token),
                &f.dpop,
            ),
        ),
        (
            "two proofs",
            format!("{},{}", f.proof(&token), f.proof(&token)),
        ),
        ("garbage", "x.y.z".into()),
    ];
    for (what, proof) in &cases {
        assert_eq!(
            code(f.auth_with(Some(&auth), Some(proof)).await),
            DenyCode::InvalidDpopProof,
            "{what}"
        );
    }
    assert_eq!(
        code(f.auth_with(Some(&auth), None).await),
        DenyCode::InvalidDpopProof,
        "missing"
    );
    // Single use (RFC 9449 §11.1).
    let proof = f.proof(&token);
    f.auth_with(Some(&auth), Some(&proof)).await.unwrap();
    let d = f.auth_with(Some(&auth), Some(&proof)).await.unwrap_err();
    assert_eq!(d.code, DenyCode::InvalidDpopProof);
    assert!(d.reason.contains("already used"), "{d}");
    // A validated proof key is reused only for the identical `jwk` header: the same `x` with
    // private material (RFC 9449 §4.3 check 7) is refused although the key is known.
    let raw = |header: Value, claims: Value| {
        use ed25519_dalek::Signer;
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = f.dpop.sign(input.as_bytes());
        format!("{input}.{}", b64url(&sig.to_bytes()))
    };
    let mut jwk = PublicJwk::from_seed(&f.dpop.to_bytes()).to_json();
    let good = raw(
        json!({"alg": "EdDSA", "typ": "dpop+jwt", "jwk": jwk}),
        f.proof_claims(&token),
    );
    f.auth_with(Some(&auth), Some(&good)).await.unwrap();
    jwk["d"] = json!(b64url(&f.dpop.to_bytes()));
    let private = raw(
        json!({"alg": "EdDSA", "typ": "dpop+jwt", "jwk": jwk}),
        f.proof_claims(&token),
    );
    let d = f.auth_with(Some(&auth), Some(&private)).await.unwrap_err();
    assert_eq!(d.code, DenyCode::InvalidDpopProof);
    assert!(d.reason.contains("private"), "{d}");
    // The configured window applies.
    let f = fx_with(|c| c.dpop_max_age = Duration::from_secs(10));
    let token = f.token();
    let old = f.proof_patched(&token, json!({"iat": now() - 11}));
    assert_eq!(
        code(
            f.auth_with(Some(&format!("DPoP {token}")), Some(&old))
                .await
        ),
        DenyCode::InvalidDpopProof
    );
}

#[tokio::test]
async fn revocation_events_refuse_every_part_of_the_chain() {
    let cases = [
        ("delegation.revoked", json!({"delegation": "dlg_3"})),
        ("agent.suspended", json!({"resource": "agents/agt_a"})),
        ("agent.revoked", json!({"resource": "agents/agt_c"})),
        ("human.revoked", json!({"resource": "humans/usr_1"})),
        ("tenant.revoked", json!({"resource": "tenants/tnt_1"})),
    ];
    for (kind, data) in cases {
        let f = fx();
        let token = f.token();
        f.auth(&token).await.unwrap();
        write(&f.v.inner.events).apply(kind, &data, NOW_MS);
        assert_eq!(code(f.auth(&token).await), DenyCode::Revoked, "{kind}");
    }
    let f = fx();
    let token = f.token();
    let caller = f.auth(&token).await.unwrap();
    write(&f.v.inner.events).apply("token.revoked", &json!({"token": caller.jti()}), NOW_MS);
    assert_eq!(code(f.auth(&token).await), DenyCode::Revoked);
    // Other tokens are unaffected.
    f.auth(&f.token()).await.unwrap();
}

fn list_with(idx: u64, status: u8) -> StatusList {
    let mut l = StatusList::new(2, 16).unwrap();
    l.set(idx, status).unwrap();
    l
}

#[tokio::test]
async fn status_list_entries_decide_revocation_and_suspension() {
    for (status, ok) in [
        (VALID, true),
        (INVALID, false),
        (SUSPENDED, false),
        (3, false),
    ] {
        let f = fx();
        let token =
            f.token_with(|c| c.status = Some(json!({"status_list": {"idx": 7, "uri": LIST_URI}})));
        let generation = read(&f.v.inner.events).generation;
        lock(&f.v.inner.lists).lists.insert(
            LIST_URI.into(),
            CachedList {
                list: list_with(7, status),
                fetched_at: NOW_MS,
                ttl_ms: 30_000,
                generation,
            },
        );
        let r = f.auth(&token).await;
        if ok {
            r.unwrap();
        } else {
            assert_eq!(code(r), DenyCode::Revoked, "status {status}");
        }
    }
    // An index outside the list is not vouched for.
    let f = fx();
    let token =
        f.token_with(|c| c.status = Some(json!({"status_list": {"idx": 99, "uri": LIST_URI}})));
    lock(&f.v.inner.lists).lists.insert(
        LIST_URI.into(),
        CachedList {
            list: list_with(0, VALID),
            fetched_at: NOW_MS,
            ttl_ms: 30_000,
            generation: 0,
        },
    );
    assert_eq!(code(f.auth(&token).await), DenyCode::Revoked);
}

#[test]
fn status_list_tokens_are_verified() {
    let key = SigningKey::from_bytes(&[1; 32]);
    let public = Arc::new(PublicJwk::from_seed(&[1; 32]));
    let list = list_with(3, INVALID);
    let sign = |claims: Value, kind: JwtKind| {
        jose::sign(kind, Some("k1"), Algorithm::EdDSA, &claims, &key)
    };
    let good = json!({"sub": LIST_URI, "iat": now(), "exp": now() + 60, "ttl": 30, "status_list": {"bits": 2, "lst": list.encode()}});
    let parse = |jwt: &str| {
        revocation::parse_status_list_token(jwt, LIST_URI, now(), |_| Some(public.clone()))
    };
    let (back, ttl) = parse(&sign(good.clone(), JwtKind::StatusList)).unwrap();
    assert_eq!((back.get(3).unwrap(), ttl), (INVALID, Some(30)));
    let mut other_sub = good.clone();
    other_sub["sub"] = json!("https://auth.example.com/statuslists/1");
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 1);
    let mut bad_bits = good.clone();
    bad_bits["status_list"]["bits"] = json!(3);
    for (what, jwt) in [
        ("another list", sign(other_sub, JwtKind::StatusList)),
        ("expired", sign(expired, JwtKind::StatusList)),
        ("bad bits", sign(bad_bits, JwtKind::StatusList)),
        ("another kind", sign(good.clone(), JwtKind::AccessToken)),
        (
            "another key",
            jose::sign(
                JwtKind::StatusList,
                Some("k1"),
                Algorithm::EdDSA,
                &good,
                &SigningKey::from_bytes(&[2; 32]),
            ),
        ),
    ] {
        assert!(parse(&jwt).is_err(), "{what}");
    }
}

/// An online verifier whose authority is unreachable.
fn unreachable() -> Fx {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let f = fx();
    let cfg = config();
    let endpoints = net::Endpoints::derived("http://127.0.0.1:9");
    let keys = keys::KeySet::with_keys(keys::KeySet::parse(&jwks(&f.authority, "k1")).unwrap());
    let inner = Inner::new(
        cfg,
        f.clock.clone(),
        Some(reqwest::Client::new()),
        endpoints,
        keys,
    );
    Fx {
        v: Verifier {
            inner: Arc::new(inner),
        },
        ..f
    }
}

#[tokio::test]
async fn stale_revocation_data_fails_closed() {
    let f = unreachable();
    // No event stream and no status list: refused.
    let token = f.token();
    assert_eq!(code(f.auth(&token).await), DenyCode::RevocationStale);
    let listed = f.token_with(|c| {
        c.status =
            Some(json!({"status_list": {"idx": 1, "uri": "http://127.0.0.1:9/statuslists/0"}}))
    });
    assert_eq!(code(f.auth(&listed).await), DenyCode::RevocationStale);
    // A live event stream vouches for the token without a status list.
    {
        let mut ev = write(&f.v.inner.events);
        ev.connected = true;
        ev.last_heard = Some(NOW_MS);
    }
    f.auth(&token).await.unwrap();
    assert!(f.v.freshness().revocation_fresh);
    // ...until it has been silent for longer than the maximum staleness.
    f.clock.advance(30_001);
    assert_eq!(code(f.auth(&token).await), DenyCode::RevocationStale);
    assert!(!f.v.freshness().revocation_fresh);
    // A fresh status list vouches for its tokens; a stale one (or a dirty one) does not.
    let generation = read(&f.v.inner.events).generation;
    let uri = "http://127.0.0.1:9/statuslists/0".to_owned();
    use mandate_core::clock::Clock;
    lock(&f.v.inner.lists).lists.insert(
        uri.clone(),
        CachedList {
            list: list_with(1, VALID),
            fetched_at: f.clock.now_ms(),
            ttl_ms: 30_000,
            generation,
        },
    );
    f.auth(&listed).await.unwrap();
    write(&f.v.inner.events).apply(
        "delegation.revoked",
        &json!({"delegation": "dlg_other"}),
        NOW_MS,
    );
    assert_eq!(
        code(f.auth(&listed).await),
        DenyCode::RevocationStale,
        "dirty list"
    );
    // Status lists are only fetched from the authority.
    let foreign = f.token_with(|c| {
        c.status =
            Some(json!({"status_list": {"idx": 1, "uri": "http://127.0.0.2:9/statuslists/0"}}))
    });
    assert_eq!(code(f.auth(&foreign).await), DenyCode::RevocationStale);
}

#[tokio::test]
async fn pinned_commitments_must_match() {
    let f = fx_with(|c| {
        c.pinned_commitments = HashMap::from([("agt_c".to_owned(), "cmt_expected".to_owned())])
    });
    assert_eq!(code(f.auth(&f.token()).await), DenyCode::CommitmentMismatch);
    f.caller(|c| c.cmt = "cmt_expected".into()).await;
    // Other agents are not pinned.
    f.caller(|c| c.client_id = "agt_z".into()).await;
}

#[tokio::test]
async fn scope_and_prohibitions() {
    let f = fx();
    let caller = f.caller(|_| {}).await;
    for (action, resource) in [
        ("delete", "tickets/1"),
        ("read", "customers/1"),
        ("read", "tickets/1/notes"),
        ("Read!", "tickets/1"),
        ("read", "tickets/../customers/1"),
        ("read", ""),
    ] {
        let d =
            f.v.authorize(&caller, &Operation::new(action, resource))
                .await;
        assert_eq!(
            denied(d),
            DenyCode::InsufficientScope,
            "{action} {resource}"
        );
    }
    // A detail for another location does not grant here.
    let elsewhere = f
        .caller(|c| {
            c.authorization_details = json!([{"type": "mandate", "actions": ["read"], "locations": ["https://other.example.com"], "resources": ["**"]}])
        })
        .await;
    let d =
        f.v.authorize(&elsewhere, &Operation::new("read", "tickets/1"))
            .await;
    assert_eq!(denied(d), DenyCode::InsufficientScope);
    // Prohibitions win over grants.
    let prohibited = f
        .caller(|c| {
            c.prohibitions = Some(json!([{"actions": ["write"], "resources": ["tickets/9"]}]))
        })
        .await;
    let d =
        f.v.authorize(&prohibited, &Operation::new("write", "tickets/9"))
            .await;
    assert_eq!(denied(d), DenyCode::Prohibited);
    let d =
        f.v.authorize(&prohibited, &Operation::new("write", "tickets/8"))
            .await;
    assert!(d.is_allow(), "{d:?}");
}

fn with_constraints(constraints: Value) -> impl FnOnce(&mut AccessTokenClaims) {
    move |c: &mut AccessTokenClaims| c.authorization_details = json!([{"type": "mandate", "actions": ["read", "write", "delete"], "resources": ["tickets/*"], "constraints": constraints}])
}

#[tokio::test]
async fn max_amount_and_approval() {
    let f = fx();
    let caller = f
        .caller(with_constraints(json!({"max_amount": {"value": 100, "currency": "USD"}, "approval_required_for": ["delete"]})))
        .await;
    let op = |amount: Value| Operation::new("write", "tickets/1").with_input("amount", amount);
    assert!(f.v.authorize(&caller, &op(json!(100))).await.is_allow());
    assert_eq!(
        denied(f.v.authorize(&caller, &op(json!(100.5))).await),
        DenyCode::MaxAmount
    );
    assert_eq!(
        denied(f.v.authorize(&caller, &op(json!("lots"))).await),
        DenyCode::MaxAmount
    );
    let eur = op(json!(5)).with_input("currency", "EUR");
    assert_eq!(
        denied(f.v.authorize(&caller, &eur).await),
        DenyCode::MaxAmount
    );
    assert_eq!(
        f.v.authorize(&caller, &Operation::new("delete", "tickets/1"))
            .await,
        Decision::Allow {
            detail: 0,
            approval_required: true
        }
    );
}

#[tokio::test]
async fn any_granting_detail_whose_constraints_hold_allows() {
    let f = fx();
    let caller = f
        .caller(|c| {
            c.authorization_details = json!([
                {"type": "mandate", "actions": ["write"], "resources": ["tickets/*"], "constraints": {"max_amount": {"value": 10, "currency": "USD"}}},
                {"type": "mandate", "actions": ["write"], "resources": ["tickets/*"], "constraints": {"max_amount": {"value": 1000, "currency": "USD"}, "approval_required_for": ["write"]}}
            ])
        })
        .await;
    let small = Operation::new("write", "tickets/1").with_input("amount", 5);
    let large = Operation::new("write", "tickets/1").with_input("amount", 500);
    let huge = Operation::new("write", "tickets/1").with_input("amount", 5000);
    assert_eq!(
        f.v.authorize(&caller, &small).await,
        Decision::Allow {
            detail: 0,
            approval_required: false
        }
    );
    assert_eq!(
        f.v.authorize(&caller, &large).await,
        Decision::Allow {
            detail: 1,
            approval_required: true
        }
    );
    assert_eq!(
        denied(f.v.authorize(&caller, &huge).await),
        DenyCode::MaxAmount
    );
}

#[tokio::test]
async fn time_window_in_the_detail_zone() {
    let f = fx();
    // 10:00 UTC on a Wednesday is 12:00 in Berlin (summer time).
    let open = f
        .caller(with_constraints(json!({"time_window": {"days": "mon-fri", "start": "11:30", "end": "12:30", "tz": "Europe/Berlin"}})))
        .await;
    let closed = f
        .caller(with_constraints(json!({"time_window": {"days": "mon-fri", "start": "09:00", "end": "11:30", "tz": "Europe/Berlin"}})))
        .await;
    let weekend = f
        .caller(with_constraints(json!({"time_window": {"days": "sat,sun", "start": "00:00", "end": "24:00", "tz": "UTC"}})))
        .await;
    let op = Operation::new("read", "tickets/1");
    assert!(f.v.authorize(&open, &op).await.is_allow());
    assert_eq!(
        denied(f.v.authorize(&closed, &op).await),
        DenyCode::TimeWindow
    );
    assert_eq!(
        denied(f.v.authorize(&weekend, &op).await),
        DenyCode::TimeWindow
    );
    f.clock.advance(45 * 60 * 1000);
    assert_eq!(
        denied(f.v.authorize(&open, &op).await),
        DenyCode::TimeWindow,
        "12:45 local"
    );
}

#[tokio::test]
async fn rate_per_agent_and_delegation() {
    let f = fx();
    let constraints = json!({"rate": {"max": 2, "per_seconds": 60}});
    let caller = f.caller(with_constraints(constraints.clone())).await;
    let op = Operation::new("read", "tickets/1");
    assert!(f.v.authorize(&caller, &op).await.is_allow());
    assert!(f.v.authorize(&caller, &op).await.is_allow());
    let d = f.v.authorize(&caller, &op).await;
    assert_eq!(denied(d.clone()), DenyCode::RateLimited);
    assert_eq!(DenyCode::RateLimited.http_status(), 429);
    // Another token of the same agent and delegation shares the budget.
    let again = f.caller(with_constraints(constraints.clone())).await;
    assert_eq!(
        denied(f.v.authorize(&again, &op).await),
        DenyCode::RateLimited
    );
    // Another delegation has its own.
    let other = f
        .caller(|c| {
            with_constraints(constraints.clone())(c);
            c.del = "dlg_4".into();
        })
        .await;
    assert!(f.v.authorize(&other, &op).await.is_allow());
    f.clock.advance(30_000);
    assert!(f.v.authorize(&caller, &op).await.is_allow());
}

#[tokio::test]
async fn min_trust_needs_a_known_score() {
    let f = fx();
    let caller = f.caller(with_constraints(json!({"min_trust": 60}))).await;
    let op = Operation::new("read", "tickets/1");
    // Offline, no score is known: refused.
    let d = f.v.authorize(&caller, &op).await;
    assert_eq!(denied(d), DenyCode::MinTrust);
    let seed = |score: Option<u8>| {
        lock(&f.v.inner.trust).insert("agt_c".into(), TrustEntry { score, at: NOW_MS })
    };
    seed(Some(59));
    assert_eq!(
        denied(f.v.authorize(&caller, &op).await),
        DenyCode::MinTrust
    );
    seed(None);
    assert_eq!(
        denied(f.v.authorize(&caller, &op).await),
        DenyCode::MinTrust
    );
    seed(Some(60));
    assert!(f.v.authorize(&caller, &op).await.is_allow());
    // Scores are reused briefly only.
    f.clock.advance(verify::TRUST_TTL_MS);
    assert_eq!(
        denied(f.v.authorize(&caller, &op).await),
        DenyCode::MinTrust
    );
}

#[test]
fn deny_codes_map_to_standard_errors() {
    let mut names = std::collections::HashSet::new();
    for c in DenyCode::ALL {
        assert!(names.insert(c.as_str()), "{c} unique");
        let expected_error = match c.http_status() {
            401 if c == DenyCode::InvalidDpopProof => "invalid_dpop_proof",
            401 => "invalid_token",
            403 | 429 => "insufficient_scope",
            503 => "temporarily_unavailable",
            other => panic!("{c}: {other}"),
        };
        assert_eq!(c.oauth_error(), expected_error, "{c}");
        assert_eq!(c.is_authentication(), matches!(c.http_status(), 401 | 503));
    }
    assert_eq!(DenyCode::InvalidToken.http_status(), 401);
    assert_eq!(DenyCode::InsufficientScope.http_status(), 403);
    assert_eq!(DenyCode::Revoked.oauth_error(), "invalid_token");
}

#[test]
fn gate_keys_from_private_jwks() {
    let (_, jwk) = mandate_core::jwk::private_jwk_from_seed(&[4; 32]);
    let key = signing_key_from_jwk(&jwk).unwrap();
    assert_eq!(key.to_bytes(), [4; 32]);
    let mut wrong_x = jwk.clone();
    wrong_x["x"] = json!(b64url(&[0u8; 32]));
    assert!(signing_key_from_jwk(&wrong_x).is_err());
    assert!(signing_key_from_jwk(&json!({"kty": "OKP", "crv": "Ed25519"})).is_err());
    assert!(signing_key_from_jwk(&json!({"kty": "EC", "d": jwk["d"]})).is_err());
    let cfg = config();
    assert!(!format!("{cfg:?}").contains(&b64url(&cfg.gate_key.to_bytes())));
}

#[test]
fn offline_freshness() {
    let f = fx();
    let fr = f.v.freshness();
    assert!(fr.revocation_fresh);
    assert_eq!(fr.jwks_age, None);
    assert!(!fr.events_connected);
}

/// A one-document HTTP server counting its requests.
async fn serve_json(body: String) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let mut read = 0;
            while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
        }
    });
    (url, hits)
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_at_most_once_per_interval() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let f = fx();
    let (url, hits) = serve_json(jwks(&f.authority, "k1").to_string()).await;
    let mut endpoints = net::Endpoints::derived(ISSUER);
    endpoints.jwks_uri = url;
    // Starts without keys, as if the authority had rotated since the last fetch.
    let inner = Inner::new(
        config(),
        f.clock.clone(),
        Some(reqwest::Client::new()),
        endpoints,
        keys::KeySet::default(),
    );
    {
        let mut ev = write(&inner.events);
        ev.connected = true;
        ev.last_heard = Some(NOW_MS);
    }
    let f = Fx {
        v: Verifier {
            inner: Arc::new(inner),
        },
        ..f
    };
    f.auth(&f.token()).await.unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "fetched for the unknown kid"
    );
    let c = f.claims().to_value();
    let k9 = jose::sign(
        JwtKind::AccessToken,
        Some("k9"),
        Algorithm::EdDSA,
        &c,
        &f.authority,
    );
    assert_eq!(code(f.auth(&k9).await), DenyCode::InvalidToken);
    assert_eq!(code(f.auth(&k9).await), DenyCode::InvalidToken);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "no refetch within the interval"
    );
    f.clock.advance(keys::UNKNOWN_KID_REFETCH_MS);
    {
        let mut ev = write(&f.v.inner.events);
        ev.last_heard = Some(NOW_MS + keys::UNKNOWN_KID_REFETCH_MS);
    }
    assert_eq!(code(f.auth(&k9).await), DenyCode::InvalidToken);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one refetch per interval");
    assert!(f.v.freshness().jwks_age.is_some());
}
