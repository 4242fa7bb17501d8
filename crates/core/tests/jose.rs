//! The JOSE pipeline end to end: signing, parsing, verifying each kind, and the negative cases
//! of the SECURITY.md catalogue's JOSE, client-authentication and DPoP families. Every
//! negative case asserts the exact `JoseError`, next to a positive control where one helps.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use ed25519_dalek::{Signer, SigningKey};
use mandate_core::encoding::b64url;
use mandate_core::jose::{
    self, ALL_KINDS, AccessTokenClaims, AccessTokenExpectation, Algorithm, AssertionExpectation,
    Confirmation, DpopExpectation, JoseError, JoseLimits, JwtKind, Unverified, Verified,
    access_token_hash, verify_client_assertion, verify_dpop_proof,
};
use mandate_core::jwk::{JwkError, PublicJwk};
use serde_json::{Value, json};

const NOW: i64 = 1_763_900_000;
const ISSUER: &str = "https://mandate.example";
const TOKEN_ENDPOINT: &str = "https://mandate.example/oauth2/token";

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn public(n: u8) -> PublicJwk {
    PublicJwk::from_seed(&[n; 32])
}

fn parse(token: &str) -> Result<Unverified, JoseError> {
    Unverified::parse(token, &JoseLimits::default())
}

fn verify(token: &str, kind: JwtKind, key: &PublicJwk) -> Result<Verified, JoseError> {
    parse(token)?.verify(kind, key)
}

/// A compact JWS over exactly these header and payload bytes: for headers `sign` never writes.
fn raw(header: &str, payload: &str, key: &SigningKey) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url(&signature.to_bytes()))
}

/// Signs as `kind` the way a legitimate producer would (DPoP proofs carry their `jwk`).
fn sign_as(kind: JwtKind, alg: Algorithm, claims: &Value, key: &SigningKey) -> String {
    match kind {
        JwtKind::DpopProof => jose::sign_with_jwk(kind, alg, claims, key),
        _ => jose::sign(kind, Some("k1"), alg, claims, key),
    }
}

/// The `jwk` header value of key `n`.
fn jwk_json(n: u8) -> Value {
    public(n).to_json()
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------------
// Signing and verifying every kind.

#[test]
fn every_kind_round_trips_under_both_algorithm_names() {
    let claims = json!({"iss": ISSUER, "sub": "someone", "n": 1, "nested": {"a": [1, 2]}});
    for kind in ALL_KINDS {
        for alg in [Algorithm::EdDSA, Algorithm::Ed25519] {
            let token = sign_as(kind, alg, &claims, &key(1));
            let unverified = parse(&token).unwrap();
            assert_eq!(unverified.header()["alg"], alg.as_str());
            assert_eq!(unverified.header()["typ"], kind.typ());
            assert_eq!(unverified.claims()["sub"], "someone");
            let verified = unverified.verify(kind, &public(1)).unwrap();
            assert_eq!(verified.kind(), kind);
            assert_eq!(Value::Object(verified.claims().clone()), claims);
            assert_eq!(verified.header()["alg"], alg.as_str());
            if kind == JwtKind::DpopProof {
                assert_eq!(verified.kid(), None);
                assert_eq!(verified.header()["jwk"], jwk_json(1));
            } else {
                assert_eq!(verified.kid(), Some("k1"));
            }
        }
    }
}

#[test]
fn signing_is_deterministic_and_kid_is_optional() {
    let claims = json!({"a": 1});
    let one = jose::sign(
        JwtKind::Delegation,
        None,
        Algorithm::EdDSA,
        &claims,
        &key(1),
    );
    let two = jose::sign(
        JwtKind::Delegation,
        None,
        Algorithm::EdDSA,
        &claims,
        &key(1),
    );
    assert_eq!(one, two);
    let parsed = parse(&one).unwrap();
    assert_eq!(parsed.kid(), None);
    assert!(!parsed.header().contains_key("kid"));
}

#[test]
fn a_token_of_one_kind_never_verifies_as_another() {
    let claims = json!({"sub": "x"});
    let mut pairs = 0;
    for signer in ALL_KINDS {
        let token = sign_as(signer, Algorithm::EdDSA, &claims, &key(1));
        for reader in ALL_KINDS {
            let result = verify(&token, reader, &public(1));
            let assertion_family = |k| matches!(k, JwtKind::ClientAssertion | JwtKind::ActorToken);
            if signer == reader {
                assert!(result.is_ok(), "{signer:?}");
            } else if assertion_family(signer) && assertion_family(reader) {
                // Documented on `JwtKind`: these two share their `typ` values and are told
                // apart by claims and by the request parameter they arrive in.
                assert!(result.is_ok(), "{signer:?} as {reader:?}");
            } else {
                pairs += 1;
                assert_eq!(
                    result.unwrap_err(),
                    JoseError::WrongType { expected: reader },
                    "{signer:?} read as {reader:?}"
                );
            }
        }
    }
    assert_eq!(pairs, 6 * 5 - 2);
}

#[test]
fn typ_is_required_except_for_assertions_and_tolerates_case_and_prefix() {
    for kind in ALL_KINDS {
        let header = if kind == JwtKind::DpopProof {
            json!({"alg": "EdDSA", "jwk": jwk_json(1)})
        } else {
            json!({"alg": "EdDSA"})
        };
        let token = raw(&header.to_string(), "{}", &key(1));
        let result = verify(&token, kind, &public(1));
        match kind {
            JwtKind::ClientAssertion | JwtKind::ActorToken => assert!(result.is_ok()),
            _ => assert_eq!(result.unwrap_err(), JoseError::WrongType { expected: kind }),
        }
    }
    for typ in ["application/at+jwt", "AT+JWT", "Application/At+Jwt"] {
        let token = raw(
            &json!({"alg": "EdDSA", "typ": typ}).to_string(),
            "{}",
            &key(1),
        );
        assert!(
            verify(&token, JwtKind::AccessToken, &public(1)).is_ok(),
            "{typ}"
        );
    }
    for typ in ["at+jwt; q=1", "text/at+jwt", "at+jwt ", "jwt", "at+jwt+jwt"] {
        let token = raw(
            &json!({"alg": "EdDSA", "typ": typ}).to_string(),
            "{}",
            &key(1),
        );
        assert_eq!(
            verify(&token, JwtKind::AccessToken, &public(1)).unwrap_err(),
            JoseError::WrongType {
                expected: JwtKind::AccessToken
            },
            "{typ}"
        );
    }
    for typ in ["JWT", "client-authentication+jwt", "application/jwt"] {
        let token = raw(
            &json!({"alg": "EdDSA", "typ": typ}).to_string(),
            "{}",
            &key(1),
        );
        assert!(verify(&token, JwtKind::ClientAssertion, &public(1)).is_ok());
    }
}

// ---------------------------------------------------------------------------------------------
// Algorithm confusion and signatures.

#[test]
fn only_eddsa_and_ed25519_are_accepted_whatever_the_header_says() {
    let payload = json!({"sub": "x"}).to_string();
    for alg in [
        "none", "HS256", "RS256", "ES256", "PS256", "EdDSA ", "eddsa", "ED25519", "Ed448", "",
    ] {
        let header = json!({"alg": alg, "typ": "at+jwt"}).to_string();
        let token = raw(&header, &payload, &key(1));
        assert_eq!(
            verify(&token, JwtKind::AccessToken, &public(1)).unwrap_err(),
            JoseError::UnsupportedAlgorithm {
                alg: alg.to_owned()
            },
            "{alg}"
        );
    }
    // `alg: none` with the empty signature of an unsecured JWS (RFC 7519 §6.1).
    let unsecured = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"at+jwt"}"#),
        b64url(payload.as_bytes())
    );
    assert_eq!(
        verify(&unsecured, JwtKind::AccessToken, &public(1)).unwrap_err(),
        JoseError::UnsupportedAlgorithm { alg: "none".into() }
    );
    // HS256 "signed" with the public key bytes as the HMAC secret: refused on the name alone.
    let hs = format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"HS256","typ":"at+jwt"}"#),
        b64url(payload.as_bytes()),
        b64url(&[0u8; 32])
    );
    assert_eq!(
        verify(&hs, JwtKind::AccessToken, &public(1)).unwrap_err(),
        JoseError::UnsupportedAlgorithm {
            alg: "HS256".into()
        }
    );
    // Missing, and not a string.
    let missing = raw(r#"{"typ":"at+jwt"}"#, &payload, &key(1));
    assert_eq!(
        verify(&missing, JwtKind::AccessToken, &public(1)).unwrap_err(),
        JoseError::MissingHeader { name: "alg" }
    );
    let number = raw(r#"{"alg":1,"typ":"at+jwt"}"#, &payload, &key(1));
    assert_eq!(
        parse(&number).unwrap_err(),
        JoseError::InvalidHeader { name: "alg" }
    );
    // A hostile alg is escaped and truncated in the message.
    let hostile = raw(
        &json!({"alg": format!("`\n{}", "A".repeat(100)), "typ": "at+jwt"}).to_string(),
        &payload,
        &key(1),
    );
    let message = verify(&hostile, JwtKind::AccessToken, &public(1))
        .unwrap_err()
        .to_string();
    assert!(!message.contains('\n') && message.len() < 150, "{message}");
}

#[test]
fn a_signature_by_another_key_does_not_verify() {
    for alg in [Algorithm::EdDSA, Algorithm::Ed25519] {
        let token = jose::sign(JwtKind::AccessToken, None, alg, &json!({}), &key(2));
        assert_eq!(
            verify(&token, JwtKind::AccessToken, &public(1)).unwrap_err(),
            JoseError::BadSignature
        );
    }
}

#[test]
fn tampering_with_any_segment_breaks_the_signature() {
    let token = jose::sign(
        JwtKind::AccessToken,
        Some("k1"),
        Algorithm::EdDSA,
        &json!({"sub": "alice"}),
        &key(1),
    );
    let s = segments(&token);
    let other_payload = b64url(br#"{"sub":"mallory"}"#);
    let other_header = b64url(br#"{"alg":"Ed25519","typ":"at+jwt","kid":"k1"}"#);
    for forged in [
        format!("{}.{}.{}", s[0], other_payload, s[2]),
        format!("{}.{}.{}", other_header, s[1], s[2]),
        format!("{}.{}.{}", s[0], s[1], b64url(&[0u8; 64])),
        format!("{}.{}.{}", s[0], s[1], b64url(&[0u8; 63])),
        format!("{}.{}.{}", s[0], s[1], b64url(&[0u8; 65])),
        format!("{}.{}.", s[0], s[1]),
    ] {
        assert_eq!(
            verify(&forged, JwtKind::AccessToken, &public(1)).unwrap_err(),
            JoseError::BadSignature,
            "{forged}"
        );
    }
}

#[test]
fn a_non_canonical_s_is_refused_by_strict_verification() {
    let token = jose::sign(
        JwtKind::AccessToken,
        None,
        Algorithm::EdDSA,
        &json!({}),
        &key(1),
    );
    assert!(verify(&token, JwtKind::AccessToken, &public(1)).is_ok());
    let s = segments(&token);
    let mut signature: [u8; 64] = mandate_core::encoding::b64url_decode(&s[2])
        .unwrap()
        .try_into()
        .unwrap();
    // S + L (L = 2^252 + 27742317777372353535851937790883648493, little-endian) is the same
    // scalar mod L: a lax verifier accepts it, RFC 8032 §5.1.7 requires S < L.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (i, l) in L.iter().enumerate() {
        let sum = u16::from(signature[32 + i]) + u16::from(*l) + carry;
        signature[32 + i] = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    let malleated = format!("{}.{}.{}", s[0], s[1], b64url(&signature));
    assert_eq!(
        verify(&malleated, JwtKind::AccessToken, &public(1)).unwrap_err(),
        JoseError::BadSignature
    );
}

// ---------------------------------------------------------------------------------------------
// Headers.

#[test]
fn crit_b64_and_zip_are_refused_before_any_key_is_looked_up() {
    let payload = "{}";
    let cases = [
        (
            json!({"alg": "EdDSA", "typ": "at+jwt", "crit": ["exp"], "exp": 1}),
            JoseError::CriticalHeader,
        ),
        (
            json!({"alg": "EdDSA", "typ": "at+jwt", "crit": []}),
            JoseError::CriticalHeader,
        ),
        (
            json!({"alg": "EdDSA", "typ": "at+jwt", "b64": false, "crit": ["b64"]}),
            JoseError::CriticalHeader,
        ),
        (
            json!({"alg": "EdDSA", "typ": "at+jwt", "b64": false}),
            JoseError::UnsupportedHeader { name: "b64" },
        ),
        (
            json!({"alg": "EdDSA", "typ": "at+jwt", "b64": "false"}),
            JoseError::UnsupportedHeader { name: "b64" },
        ),
        (
            json!({"alg": "EdDSA", "typ": "at+jwt", "zip": "DEF"}),
            JoseError::UnsupportedHeader { name: "zip" },
        ),
        (
            json!({"alg": "EdDSA", "typ": 7}),
            JoseError::InvalidHeader { name: "typ" },
        ),
        (
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": 7}),
            JoseError::InvalidHeader { name: "kid" },
        ),
    ];
    for (header, want) in cases {
        let token = raw(&header.to_string(), payload, &key(1));
        assert_eq!(parse(&token).unwrap_err(), want, "{header}");
    }
    // `b64: true` is the default and harmless.
    let token = raw(
        r#"{"alg":"EdDSA","typ":"at+jwt","b64":true}"#,
        payload,
        &key(1),
    );
    assert!(verify(&token, JwtKind::AccessToken, &public(1)).is_ok());
}

#[test]
fn key_carrying_headers_are_refused_for_every_kind() {
    let values = [
        ("jku", json!("https://evil.example/jwks.json")),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("x5t", json!("dGh1bWI")),
        ("x5t#S256", json!("dGh1bWI")),
    ];
    for kind in ALL_KINDS {
        for (name, value) in &values {
            let mut header = json!({"alg": "EdDSA", "typ": kind.typ()});
            header[*name] = value.clone();
            if kind == JwtKind::DpopProof {
                header["jwk"] = jwk_json(1);
            }
            let token = raw(&header.to_string(), "{}", &key(1));
            assert_eq!(
                verify(&token, kind, &public(1)).unwrap_err(),
                JoseError::KeyInHeader { name },
                "{kind:?} {name}"
            );
        }
        // `jwk` itself, even naming the right key, everywhere but a DPoP proof.
        let token = jose::sign_with_jwk(kind, Algorithm::EdDSA, &json!({}), &key(1));
        let result = verify(&token, kind, &public(1));
        if kind == JwtKind::DpopProof {
            assert!(result.is_ok());
        } else {
            assert_eq!(
                result.unwrap_err(),
                JoseError::KeyInHeader { name: "jwk" },
                "{kind:?}"
            );
        }
    }
    // An attacker's own key in `jwk`, signed by it, on an access token.
    let token = jose::sign_with_jwk(JwtKind::AccessToken, Algorithm::EdDSA, &json!({}), &key(9));
    assert_eq!(
        verify(&token, JwtKind::AccessToken, &public(1)).unwrap_err(),
        JoseError::KeyInHeader { name: "jwk" }
    );
}

// ---------------------------------------------------------------------------------------------
// Shape: segments, base64url, JSON, size.

#[test]
fn exactly_three_segments() {
    let token = jose::sign(
        JwtKind::AccessToken,
        None,
        Algorithm::EdDSA,
        &json!({}),
        &key(1),
    );
    let s = segments(&token);
    for bad in [
        String::new(),
        s[0].clone(),
        format!("{}.{}", s[0], s[1]),
        format!("{}.{}.{}.{}", s[0], s[1], s[2], s[2]),
        format!("{token}."),
        format!(".{token}"),
        format!("{}.{}.{}.{}.{}", s[0], s[0], s[1], s[1], s[2]),
    ] {
        assert_eq!(parse(&bad).unwrap_err(), JoseError::SegmentCount, "{bad}");
    }
}

#[test]
fn base64url_must_be_strict_and_unpadded() {
    let token = jose::sign(
        JwtKind::AccessToken,
        None,
        Algorithm::EdDSA,
        &json!({"x": "???"}),
        &key(1),
    );
    let s = segments(&token);
    assert!(s[1].contains('_'), "{}", s[1]);
    let dash = jose::sign(
        JwtKind::AccessToken,
        None,
        Algorithm::EdDSA,
        &json!({"x": ">>>"}),
        &key(1),
    );
    let d = segments(&dash);
    assert!(d[1].contains('-'), "{}", d[1]);
    // The signature is 64 bytes: 86 characters whose last one carries two zero bits.
    let mut sig_tail = s[2].clone();
    let last = sig_tail.pop().unwrap();
    let cases = [
        (format!("{}=.{}.{}", s[0], s[1], s[2]), "header"),
        (format!("{}.{}=.{}", s[0], s[1], s[2]), "payload"),
        (format!("{}.{}.{}==", s[0], s[1], s[2]), "signature"),
        (
            format!("{}.{}.{}", s[0], s[1].replace('_', "/"), s[2]),
            "payload",
        ),
        (
            format!("{}.{}.{}", d[0], d[1].replace('-', "+"), d[2]),
            "payload",
        ),
        (format!("{} .{}.{}", s[0], s[1], s[2]), "header"),
        (format!("{}.{}.{}\n", s[0], s[1], s[2]), "signature"),
        (
            format!("{}.{}.{sig_tail}{}", s[0], s[1], next_char(last)),
            "signature",
        ),
        // 85 characters cannot be base64 of any byte string.
        (format!("{}.{}.{}", s[0], s[1], &s[2][..85]), "signature"),
    ];
    for (bad, segment) in cases {
        assert_eq!(
            parse(&bad).unwrap_err(),
            JoseError::Base64 { segment },
            "{bad}"
        );
    }
    assert!(verify(&token, JwtKind::AccessToken, &public(1)).is_ok());
}

/// The base64url character right after `c` in the alphabet's order: same high bits, low bit
/// set, so it only changes bits past the end of the data.
fn next_char(c: char) -> char {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let i = ALPHABET.find(c).unwrap();
    assert_eq!(
        i % 4,
        0,
        "the last character of a 64-byte signature has two zero bits"
    );
    ALPHABET.as_bytes()[i + 1] as char
}

#[test]
fn duplicate_members_are_refused_in_header_and_payload() {
    let cases = [
        (
            r#"{"alg":"EdDSA","alg":"none","typ":"at+jwt"}"#,
            r#"{"sub":"a"}"#,
            "header",
        ),
        (
            r#"{"alg":"EdDSA","typ":"at+jwt","typ":"dpop+jwt"}"#,
            r#"{"sub":"a"}"#,
            "header",
        ),
        (
            r#"{"alg":"EdDSA","typ":"at+jwt"}"#,
            r#"{"sub":"alice","sub":"admin"}"#,
            "payload",
        ),
        (
            r#"{"alg":"EdDSA","typ":"at+jwt"}"#,
            r#"{"cnf":{"jkt":"a","jkt":"b"}}"#,
            "payload",
        ),
    ];
    for (header, payload, want) in cases {
        let token = raw(header, payload, &key(1));
        let err = parse(&token).unwrap_err();
        assert!(
            matches!(err, JoseError::Json { segment, .. } if segment == want),
            "{err:?}"
        );
        assert!(err.to_string().contains("duplicate member"), "{err}");
    }
}

#[test]
fn header_and_payload_must_be_json_objects() {
    let header = r#"{"alg":"EdDSA","typ":"at+jwt"}"#;
    for payload in ["[1]", "\"claims\"", "null", "1", "true"] {
        let token = raw(header, payload, &key(1));
        assert_eq!(
            parse(&token).unwrap_err(),
            JoseError::NotAnObject { segment: "payload" },
            "{payload}"
        );
    }
    let token = raw("[]", "{}", &key(1));
    assert_eq!(
        parse(&token).unwrap_err(),
        JoseError::NotAnObject { segment: "header" }
    );
    for payload in ["", "{", "{} {}", "{\"a\":1,}", "\u{feff}{}", "{'a':1}"] {
        let token = raw(header, payload, &key(1));
        assert!(
            matches!(
                parse(&token).unwrap_err(),
                JoseError::Json {
                    segment: "payload",
                    ..
                }
            ),
            "{payload:?}"
        );
    }
    // Invalid UTF-8 inside a string.
    let token = format!(
        "{}.{}.{}",
        b64url(header.as_bytes()),
        b64url(b"{\"a\":\"\xff\"}"),
        b64url(&[0; 64])
    );
    assert!(matches!(
        parse(&token).unwrap_err(),
        JoseError::Json {
            segment: "payload",
            ..
        }
    ));
}

#[test]
fn nesting_and_size_are_bounded() {
    let header = r#"{"alg":"EdDSA","typ":"at+jwt"}"#;
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
    // The payload object is level 1; 15 more levels is the default limit of 16.
    let ok = raw(header, &format!("{{\"a\":{}}}", nested(16)), &key(1));
    assert!(verify(&ok, JwtKind::AccessToken, &public(1)).is_ok());
    let deep = raw(header, &format!("{{\"a\":{}}}", nested(17)), &key(1));
    assert!(matches!(
        parse(&deep).unwrap_err(),
        JoseError::Json {
            segment: "payload",
            ..
        }
    ));

    let big = jose::sign(
        JwtKind::AccessToken,
        None,
        Algorithm::EdDSA,
        &json!({"pad": "x".repeat(20_000)}),
        &key(1),
    );
    assert_eq!(
        parse(&big).unwrap_err(),
        JoseError::TooLarge { max: 16 * 1024 }
    );
    let small = JoseLimits {
        max_token_bytes: 100,
        ..JoseLimits::default()
    };
    let token = jose::sign(
        JwtKind::AccessToken,
        None,
        Algorithm::EdDSA,
        &json!({"pad": "x".repeat(10)}),
        &key(1),
    );
    assert_eq!(
        Unverified::parse(&token, &small).unwrap_err(),
        JoseError::TooLarge { max: 100 }
    );
    // The size check comes first: an oversized string of garbage is not even split.
    assert_eq!(
        parse(&"!".repeat(16 * 1024 + 1)).unwrap_err(),
        JoseError::TooLarge { max: 16 * 1024 }
    );
}

// ---------------------------------------------------------------------------------------------
// DPoP (RFC 9449 §4.3).

const HTU: &str = "https://mandate.example/oauth2/token";

fn dpop_claims() -> Value {
    json!({"jti": "proof-1", "htm": "POST", "htu": HTU, "iat": NOW})
}

fn dpop(claims: &Value) -> String {
    jose::sign_with_jwk(JwtKind::DpopProof, Algorithm::EdDSA, claims, &key(5))
}

fn check_dpop(proof: &str, expect: &DpopExpectation<'_>) -> Result<jose::DpopProof, JoseError> {
    verify_dpop_proof(proof, expect, &JoseLimits::default())
}

fn expect_post() -> DpopExpectation<'static> {
    DpopExpectation::new("POST", HTU, NOW)
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

#[test]
fn dpop_proof_happy_path_returns_thumbprint_jti_and_iat() {
    let proof = check_dpop(&dpop(&dpop_claims()), &expect_post()).unwrap();
    assert_eq!(proof.jkt(), public(5).thumbprint());
    assert_eq!(proof.jti(), "proof-1");
    assert_eq!(proof.iat(), NOW);
    assert_eq!(proof.check_binding(&public(5).thumbprint()), Ok(()));
    assert_eq!(
        proof.check_binding(&public(6).thumbprint()),
        Err(JoseError::KeyBindingMismatch)
    );
    // Both algorithm names.
    let ed = jose::sign_with_jwk(
        JwtKind::DpopProof,
        Algorithm::Ed25519,
        &dpop_claims(),
        &key(5),
    );
    assert!(check_dpop(&ed, &expect_post()).is_ok());
}

#[test]
fn dpop_proof_key_must_be_a_public_ed25519_jwk_in_the_header() {
    let payload = dpop_claims().to_string();
    // No jwk at all: a proof signed like any other JWT.
    let no_jwk = jose::sign(
        JwtKind::DpopProof,
        None,
        Algorithm::EdDSA,
        &dpop_claims(),
        &key(5),
    );
    assert_eq!(
        check_dpop(&no_jwk, &expect_post()).unwrap_err(),
        JoseError::MissingHeader { name: "jwk" }
    );
    let header_with =
        |jwk: Value| json!({"alg": "EdDSA", "typ": "dpop+jwt", "jwk": jwk}).to_string();
    let mut private = jwk_json(5);
    private["d"] = json!(b64url(&[5u8; 32]));
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let cases = [
        (private, JwkError::PrivateMaterial("d".into())),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(&identity)}),
            JwkError::SmallOrder,
        ),
        (
            json!({"kty": "RSA", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"}),
            JwkError::Unsupported("RSA".into()),
        ),
        (
            json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
            JwkError::Unsupported("EC".into()),
        ),
        (json!("a key"), JwkError::NotAnObject),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": format!("{}=", b64url(&[5u8; 32]))}),
            JwkError::BadLength,
        ),
    ];
    for (jwk, want) in cases {
        let token = raw(&header_with(jwk.clone()), &payload, &key(5));
        assert_eq!(
            check_dpop(&token, &expect_post()).unwrap_err(),
            JoseError::InvalidProofKey(want),
            "{jwk}"
        );
    }
    // The jwk names one key, the proof is signed by another.
    let token = raw(&header_with(jwk_json(6)), &payload, &key(5));
    assert_eq!(
        check_dpop(&token, &expect_post()).unwrap_err(),
        JoseError::BadSignature
    );
    // Verifying a proof with a key other than its own jwk is caught too.
    let token = dpop(&dpop_claims());
    assert_eq!(
        verify(&token, JwtKind::DpopProof, &public(6)).unwrap_err(),
        JoseError::ProofKeyMismatch
    );
}

#[test]
fn dpop_header_profile_applies() {
    // An access token carrying a jwk is not a DPoP proof.
    let at = jose::sign_with_jwk(
        JwtKind::AccessToken,
        Algorithm::EdDSA,
        &dpop_claims(),
        &key(5),
    );
    assert_eq!(
        check_dpop(&at, &expect_post()).unwrap_err(),
        JoseError::WrongType {
            expected: JwtKind::DpopProof
        }
    );
    let none = raw(
        &json!({"alg": "none", "typ": "dpop+jwt", "jwk": jwk_json(5)}).to_string(),
        &dpop_claims().to_string(),
        &key(5),
    );
    assert_eq!(
        check_dpop(&none, &expect_post()).unwrap_err(),
        JoseError::UnsupportedAlgorithm { alg: "none".into() }
    );
    let jku = raw(
        &json!({"alg": "EdDSA", "typ": "dpop+jwt", "jwk": jwk_json(5), "jku": "https://e.example"})
            .to_string(),
        &dpop_claims().to_string(),
        &key(5),
    );
    assert_eq!(
        check_dpop(&jku, &expect_post()).unwrap_err(),
        JoseError::KeyInHeader { name: "jku" }
    );
}

#[test]
fn dpop_required_claims() {
    for name in ["jti", "htm", "htu", "iat"] {
        let proof = dpop(&without(dpop_claims(), name));
        assert_eq!(
            check_dpop(&proof, &expect_post()).unwrap_err(),
            JoseError::MissingClaim { name: leak(name) },
            "{name}"
        );
    }
    let cases = [
        ("jti", json!("")),
        ("jti", json!("j".repeat(256))),
        ("jti", json!(7)),
        ("htm", json!(["POST"])),
        ("htu", json!(null)),
        ("iat", json!("1763900000")),
        ("iat", json!(-5)),
        ("htu", json!("/oauth2/token")),
        ("htu", json!("mandate.example/oauth2/token")),
    ];
    for (name, value) in cases {
        let proof = dpop(&with(dpop_claims(), name, value.clone()));
        assert_eq!(
            check_dpop(&proof, &expect_post()).unwrap_err(),
            JoseError::InvalidClaim { name: leak(name) },
            "{name} = {value}"
        );
    }
    let longest = dpop(&with(dpop_claims(), "jti", json!("j".repeat(255))));
    assert!(check_dpop(&longest, &expect_post()).is_ok());
}

/// Claim names in these tests are literals; the error carries `&'static str`.
fn leak(name: &str) -> &'static str {
    [
        "jti",
        "htm",
        "htu",
        "iat",
        "ath",
        "nonce",
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "client_id",
        "authorization_details",
        "scope",
        "act",
        "cnf",
        "del",
        "dpt",
        "cmt",
        "tnt",
        "status",
    ]
    .into_iter()
    .find(|n| *n == name)
    .unwrap()
}

#[test]
fn dpop_htm_must_match_exactly() {
    for htm in ["GET", "post", "PUT", "POST "] {
        let proof = dpop(&with(dpop_claims(), "htm", json!(htm)));
        assert_eq!(
            check_dpop(&proof, &expect_post()).unwrap_err(),
            JoseError::WrongMethod,
            "{htm}"
        );
    }
}

#[test]
fn dpop_htu_compares_scheme_authority_and_path_after_normalisation() {
    for same in [
        "https://MANDATE.example/oauth2/token",
        "HTTPS://mandate.example/oauth2/token",
        "https://mandate.example:443/oauth2/token",
        "https://mandate.example/oauth2/token?client=1",
        "https://mandate.example/oauth2/token#x",
        "https://mandate.example/oauth2/%74oken",
    ] {
        let proof = dpop(&with(dpop_claims(), "htu", json!(same)));
        assert!(check_dpop(&proof, &expect_post()).is_ok(), "{same}");
    }
    for different in [
        "https://mandate.example/oauth2/introspect",
        "https://mandate.example/oauth2/token/",
        "https://mandate.example/OAUTH2/token",
        "https://mandate.example:8443/oauth2/token",
        "http://mandate.example/oauth2/token",
        "https://evil.example/oauth2/token",
        "https://mandate.example.evil.example/oauth2/token",
    ] {
        let proof = dpop(&with(dpop_claims(), "htu", json!(different)));
        assert_eq!(
            check_dpop(&proof, &expect_post()).unwrap_err(),
            JoseError::WrongUri,
            "{different}"
        );
    }
    // The server's own URI is normalised the same way (its query is ignored too).
    let proof = dpop(&dpop_claims());
    let expect = DpopExpectation::new("POST", "https://Mandate.Example:443/oauth2/token?a=b", NOW);
    assert!(check_dpop(&proof, &expect).is_ok());
    let unusable = DpopExpectation::new("POST", "not a uri", NOW);
    assert_eq!(
        check_dpop(&proof, &unusable).unwrap_err(),
        JoseError::WrongUri
    );
}

#[test]
fn dpop_iat_window() {
    let at = |iat: i64| dpop(&with(dpop_claims(), "iat", json!(iat)));
    assert!(check_dpop(&at(NOW - 300), &expect_post()).is_ok());
    assert!(check_dpop(&at(NOW + 5), &expect_post()).is_ok());
    assert_eq!(
        check_dpop(&at(NOW - 301), &expect_post()).unwrap_err(),
        JoseError::StaleProof { max_age_secs: 300 }
    );
    assert_eq!(
        check_dpop(&at(NOW + 6), &expect_post()).unwrap_err(),
        JoseError::IssuedInFuture
    );
    let mut strict = expect_post();
    strict.max_age_secs = 60;
    strict.future_leeway_secs = 0;
    assert_eq!(
        check_dpop(&at(NOW - 61), &strict).unwrap_err(),
        JoseError::StaleProof { max_age_secs: 60 }
    );
    assert_eq!(
        check_dpop(&at(NOW + 1), &strict).unwrap_err(),
        JoseError::IssuedInFuture
    );
}

#[test]
fn dpop_ath_binds_the_proof_to_the_access_token() {
    let access_token = "eyJhbGciOiJFZERTQSJ9.e30.c2ln";
    let ath = access_token_hash(access_token);
    let mut expect = DpopExpectation::new("GET", "https://rs.example/orders", NOW);
    expect.access_token = Some(access_token);
    let base = json!({"jti": "p", "htm": "GET", "htu": "https://rs.example/orders", "iat": NOW});

    assert!(check_dpop(&dpop(&with(base.clone(), "ath", json!(ath))), &expect).is_ok());
    assert_eq!(
        check_dpop(&dpop(&base), &expect).unwrap_err(),
        JoseError::MissingClaim { name: "ath" }
    );
    for wrong in [
        access_token_hash("another.token.value"),
        access_token.to_owned(),
        ath.to_uppercase(),
        format!("{ath}="),
    ] {
        assert_eq!(
            check_dpop(&dpop(&with(base.clone(), "ath", json!(wrong))), &expect).unwrap_err(),
            JoseError::AccessTokenHashMismatch,
            "{wrong}"
        );
    }
    assert_eq!(
        check_dpop(&dpop(&with(base.clone(), "ath", json!(1))), &expect).unwrap_err(),
        JoseError::InvalidClaim { name: "ath" }
    );
    // RFC 9449 §7.1 example: the `ath` of the access token "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU".
    assert_eq!(
        access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn dpop_nonce_must_be_the_servers() {
    let mut expect = expect_post();
    expect.nonce = Some("eyJ7S_zG.eyJH0-Z.HX4w-7v");
    let good = dpop(&with(
        dpop_claims(),
        "nonce",
        json!("eyJ7S_zG.eyJH0-Z.HX4w-7v"),
    ));
    assert!(check_dpop(&good, &expect).is_ok());
    for claims in [
        dpop_claims(),
        with(dpop_claims(), "nonce", json!("an-old-nonce")),
        with(dpop_claims(), "nonce", json!(["eyJ7S_zG.eyJH0-Z.HX4w-7v"])),
    ] {
        assert_eq!(
            check_dpop(&dpop(&claims), &expect).unwrap_err(),
            JoseError::WrongNonce,
            "{claims}"
        );
    }
    // Without a server nonce, a client nonce is ignored.
    assert!(check_dpop(&good, &expect_post()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Client assertions (RFC 7523 §3, rfc7523bis).

fn assertion_claims() -> Value {
    json!({"iss": "agt_1", "sub": "agt_1", "aud": ISSUER, "exp": NOW + 60, "iat": NOW, "jti": "a-1"})
}

fn check_assertion(claims: &Value) -> Result<jose::ClientAssertion, JoseError> {
    let token = jose::sign(
        JwtKind::ClientAssertion,
        Some("k1"),
        Algorithm::EdDSA,
        claims,
        &key(3),
    );
    let verified = verify(&token, JwtKind::ClientAssertion, &public(3))?;
    verify_client_assertion(&verified, &AssertionExpectation::new(ISSUER, NOW))
}

#[test]
fn client_assertion_happy_path() {
    let assertion = check_assertion(&assertion_claims()).unwrap();
    assert_eq!(assertion.client_id(), "agt_1");
    assert_eq!(assertion.jti(), "a-1");
    assert_eq!(assertion.exp(), NOW + 60);
    // A one-element array holding exactly the issuer is the same audience.
    assert!(check_assertion(&with(assertion_claims(), "aud", json!([ISSUER]))).is_ok());
    // `iat`, `nbf` optional; `nbf` in the past fine.
    let minimal = without(assertion_claims(), "iat");
    assert!(check_assertion(&with(minimal, "nbf", json!(NOW - 10))).is_ok());
    // Every accepted typ, and an actor token with the same shape.
    for typ in [None, Some("JWT"), Some("client-authentication+jwt")] {
        let header = match typ {
            Some(t) => json!({"alg": "EdDSA", "typ": t}),
            None => json!({"alg": "EdDSA"}),
        };
        let token = raw(
            &header.to_string(),
            &assertion_claims().to_string(),
            &key(3),
        );
        let verified = verify(&token, JwtKind::ClientAssertion, &public(3)).unwrap();
        assert!(
            verify_client_assertion(&verified, &AssertionExpectation::new(ISSUER, NOW)).is_ok()
        );
    }
}

#[test]
fn client_id_can_be_read_before_verification_but_is_checked() {
    let token = jose::sign(
        JwtKind::ClientAssertion,
        None,
        Algorithm::EdDSA,
        &assertion_claims(),
        &key(3),
    );
    assert_eq!(parse(&token).unwrap().unverified_client_id(), Ok("agt_1"));
    let mismatched = jose::sign(
        JwtKind::ClientAssertion,
        None,
        Algorithm::EdDSA,
        &with(assertion_claims(), "iss", json!("agt_2")),
        &key(3),
    );
    assert_eq!(
        parse(&mismatched).unwrap().unverified_client_id(),
        Err(JoseError::IssuerSubjectMismatch)
    );
    let no_sub = jose::sign(
        JwtKind::ClientAssertion,
        None,
        Algorithm::EdDSA,
        &without(assertion_claims(), "sub"),
        &key(3),
    );
    assert_eq!(
        parse(&no_sub).unwrap().unverified_client_id(),
        Err(JoseError::MissingClaim { name: "sub" })
    );
}

#[test]
fn client_assertion_audience_is_the_issuer_only() {
    let cases = [
        json!([ISSUER, "https://other.example"]),
        json!(["https://other.example", ISSUER]),
        json!([ISSUER, ISSUER]),
        json!(TOKEN_ENDPOINT),
        json!([TOKEN_ENDPOINT]),
        json!(format!("{ISSUER}/")),
        json!("https://MANDATE.example"),
        json!([]),
        json!(7),
        json!({"aud": ISSUER}),
    ];
    for aud in cases {
        assert_eq!(
            check_assertion(&with(assertion_claims(), "aud", aud.clone())).unwrap_err(),
            JoseError::WrongAudience,
            "{aud}"
        );
    }
    assert_eq!(
        check_assertion(&without(assertion_claims(), "aud")).unwrap_err(),
        JoseError::MissingClaim { name: "aud" }
    );
}

#[test]
fn client_assertion_iss_must_equal_sub() {
    assert_eq!(
        check_assertion(&with(assertion_claims(), "iss", json!("agt_2"))).unwrap_err(),
        JoseError::IssuerSubjectMismatch
    );
    assert_eq!(
        check_assertion(&without(assertion_claims(), "iss")).unwrap_err(),
        JoseError::MissingClaim { name: "iss" }
    );
    for sub in [json!(""), json!("a".repeat(256)), json!(1)] {
        let claims = with(
            with(assertion_claims(), "sub", sub.clone()),
            "iss",
            sub.clone(),
        );
        assert_eq!(
            check_assertion(&claims).unwrap_err(),
            JoseError::InvalidClaim { name: "sub" },
            "{sub}"
        );
    }
}

#[test]
fn client_assertion_time_bounds() {
    let at = |exp: i64, iat: Option<i64>| {
        let claims = with(assertion_claims(), "exp", json!(exp));
        match iat {
            Some(iat) => with(claims, "iat", json!(iat)),
            None => without(claims, "iat"),
        }
    };
    // Expired, with 30 s leeway.
    assert!(check_assertion(&at(NOW - 29, None)).is_ok());
    assert_eq!(
        check_assertion(&at(NOW - 30, None)).unwrap_err(),
        JoseError::Expired
    );
    assert_eq!(
        check_assertion(&at(NOW - 3600, Some(NOW - 3660))).unwrap_err(),
        JoseError::Expired
    );
    // Lifetime: exp at most 300 s ahead of now, and of iat.
    assert!(check_assertion(&at(NOW + 300, None)).is_ok());
    assert_eq!(
        check_assertion(&at(NOW + 301, None)).unwrap_err(),
        JoseError::LifetimeTooLong { max_secs: 300 }
    );
    assert_eq!(
        check_assertion(&at(NOW + 86_400 * 365, Some(NOW))).unwrap_err(),
        JoseError::LifetimeTooLong { max_secs: 300 }
    );
    assert_eq!(
        check_assertion(&at(NOW + 200, Some(NOW - 200))).unwrap_err(),
        JoseError::LifetimeTooLong { max_secs: 300 }
    );
    // nbf and iat in the future.
    assert_eq!(
        check_assertion(&with(assertion_claims(), "nbf", json!(NOW + 31))).unwrap_err(),
        JoseError::NotYetValid
    );
    assert_eq!(
        check_assertion(&with(assertion_claims(), "iat", json!(NOW + 31))).unwrap_err(),
        JoseError::IssuedInFuture
    );
    // exp required and a number.
    assert_eq!(
        check_assertion(&without(assertion_claims(), "exp")).unwrap_err(),
        JoseError::MissingClaim { name: "exp" }
    );
    for exp in [json!("1763900060"), json!(null), json!(true)] {
        assert_eq!(
            check_assertion(&with(assertion_claims(), "exp", exp.clone())).unwrap_err(),
            JoseError::InvalidClaim { name: "exp" },
            "{exp}"
        );
    }
}

#[test]
fn client_assertion_requires_a_bounded_jti() {
    assert_eq!(
        check_assertion(&without(assertion_claims(), "jti")).unwrap_err(),
        JoseError::MissingClaim { name: "jti" }
    );
    for jti in [json!(""), json!("j".repeat(256)), json!(42)] {
        assert_eq!(
            check_assertion(&with(assertion_claims(), "jti", jti.clone())).unwrap_err(),
            JoseError::InvalidClaim { name: "jti" },
            "{jti}"
        );
    }
}

#[test]
fn client_assertion_profile_is_not_applied_to_other_kinds() {
    let token = jose::sign(
        JwtKind::AccessToken,
        None,
        Algorithm::EdDSA,
        &assertion_claims(),
        &key(3),
    );
    let verified = verify(&token, JwtKind::AccessToken, &public(3)).unwrap();
    assert!(matches!(
        verify_client_assertion(&verified, &AssertionExpectation::new(ISSUER, NOW)),
        Err(JoseError::ApiMisuse { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Access tokens (RFC 9068).

const GATE: &str = "https://api.example.com";

fn access_claims() -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "hum_01".into(),
        aud: vec![GATE.into()],
        client_id: "agt_01".into(),
        iat: NOW,
        nbf: NOW,
        exp: NOW + 300,
        jti: "tok_01".into(),
        authorization_details: json!([{"type": "mandate", "actions": ["read"], "resources": ["orders/**"]}]),
        scope: "read".into(),
        act: json!({"sub": "spiffe://mandate.example/agent/agt_01", "act": {"sub": "spiffe://mandate.example/agent/agt_00"}}),
        cnf: Confirmation {
            jkt: public(5).thumbprint(),
        },
        del: "del_01".into(),
        dpt: 1,
        cmt: "cmt-hash".into(),
        tnt: "tnt_01".into(),
        status: Some(
            json!({"status_list": {"idx": 7, "uri": "https://mandate.example/statuslists/1"}}),
        ),
        prohibitions: None,
    }
}

fn read_access(
    claims: &Value,
    expect: &AccessTokenExpectation<'_>,
) -> Result<AccessTokenClaims, JoseError> {
    let token = jose::sign(
        JwtKind::AccessToken,
        Some("as-1"),
        Algorithm::EdDSA,
        claims,
        &key(1),
    );
    let verified = verify(&token, JwtKind::AccessToken, &public(1))?;
    AccessTokenClaims::from_verified(&verified, expect)
}

fn at_gate() -> AccessTokenExpectation<'static> {
    AccessTokenExpectation::new(ISSUER, Some(GATE), NOW)
}

#[test]
fn access_token_claims_round_trip() {
    let claims = access_claims();
    let value = claims.to_value();
    assert_eq!(value["aud"], json!(GATE));
    assert_eq!(value["cnf"], json!({"jkt": public(5).thumbprint()}));
    assert_eq!(read_access(&value, &at_gate()), Ok(claims.clone()));

    let mut two = claims.clone();
    two.aud.push("https://mcp.example.com".into());
    two.status = None;
    let value = two.to_value();
    assert_eq!(value["aud"], json!([GATE, "https://mcp.example.com"]));
    assert!(value.get("status").is_none());
    assert_eq!(read_access(&value, &at_gate()), Ok(two.clone()));
    let at_mcp = AccessTokenExpectation::new(ISSUER, Some("https://mcp.example.com"), NOW);
    assert_eq!(read_access(&value, &at_mcp), Ok(two.clone()));
    let anywhere = AccessTokenExpectation::new(ISSUER, None, NOW);
    assert_eq!(read_access(&value, &anywhere), Ok(two));
}

#[test]
fn access_token_prohibitions_claim() {
    let mut claims = access_claims();
    assert!(claims.to_value().get("prohibitions").is_none());
    claims.prohibitions = Some(json!([]));
    assert!(
        claims.to_value().get("prohibitions").is_none(),
        "written only when non-empty"
    );
    claims.prohibitions = Some(json!([{"actions": ["delete"], "resources": ["**"]}]));
    let value = claims.to_value();
    assert_eq!(value["prohibitions"][0]["actions"], json!(["delete"]));
    assert_eq!(read_access(&value, &at_gate()), Ok(claims));
    for bad in [json!([]), json!({}), json!(["delete"]), json!("x")] {
        let mut value = access_claims().to_value();
        value["prohibitions"] = bad.clone();
        assert_eq!(
            read_access(&value, &at_gate()),
            Err(JoseError::InvalidClaim {
                name: "prohibitions"
            }),
            "{bad}"
        );
    }
}

#[test]
fn access_token_issuer_audience_and_time() {
    let value = access_claims().to_value();
    assert_eq!(
        read_access(
            &with(value.clone(), "iss", json!("https://evil.example")),
            &at_gate()
        ),
        Err(JoseError::WrongIssuer)
    );
    assert_eq!(
        read_access(
            &with(value.clone(), "iss", json!(format!("{ISSUER}/"))),
            &at_gate()
        ),
        Err(JoseError::WrongIssuer)
    );
    let elsewhere = AccessTokenExpectation::new(ISSUER, Some("https://other.example"), NOW);
    assert_eq!(
        read_access(&value, &elsewhere),
        Err(JoseError::WrongAudience)
    );
    let later = AccessTokenExpectation::new(ISSUER, Some(GATE), NOW + 330);
    assert_eq!(read_access(&value, &later), Err(JoseError::Expired));
    let almost = AccessTokenExpectation::new(ISSUER, Some(GATE), NOW + 329);
    assert!(read_access(&value, &almost).is_ok());
    let early = AccessTokenExpectation::new(ISSUER, Some(GATE), NOW - 31);
    assert_eq!(read_access(&value, &early), Err(JoseError::NotYetValid));
    let issued_ahead = with(with(value, "nbf", json!(NOW - 100)), "iat", json!(NOW + 31));
    assert_eq!(
        read_access(&issued_ahead, &at_gate()),
        Err(JoseError::IssuedInFuture)
    );
}

#[test]
fn access_token_members_are_required_and_typed() {
    let value = access_claims().to_value();
    for name in [
        "iss",
        "sub",
        "aud",
        "client_id",
        "iat",
        "nbf",
        "exp",
        "jti",
        "authorization_details",
        "scope",
        "act",
        "cnf",
        "del",
        "dpt",
        "cmt",
        "tnt",
    ] {
        assert_eq!(
            read_access(&without(value.clone(), name), &at_gate()),
            Err(JoseError::MissingClaim { name: leak(name) }),
            "{name}"
        );
    }
    let cases = [
        ("sub", json!("")),
        ("sub", json!(["hum_01"])),
        ("aud", json!([])),
        ("aud", json!([GATE, 1])),
        ("aud", json!("")),
        ("aud", json!({"aud": GATE})),
        ("client_id", json!(1)),
        ("exp", json!("1763900300")),
        ("exp", json!(-1)),
        ("iat", json!(null)),
        ("jti", json!("")),
        ("authorization_details", json!({"type": "mandate"})),
        ("authorization_details", json!([{"actions": ["read"]}])),
        ("authorization_details", json!(["mandate"])),
        ("scope", json!(["read"])),
        ("act", json!("spiffe://mandate.example/agent/agt_01")),
        ("act", json!({"client_id": "agt_01"})),
        ("act", json!({"sub": "a", "act": "b"})),
        ("act", json!({"sub": "a", "act": {"sub": ""}})),
        ("cnf", json!({"jkt": "short"})),
        ("cnf", json!({"jwk": jwk_json(5)})),
        ("cnf", json!("jkt")),
        ("dpt", json!(256)),
        ("dpt", json!(-1)),
        ("dpt", json!(1.5)),
        ("dpt", json!("1")),
        ("cmt", json!(null)),
        ("tnt", json!("t".repeat(256))),
        (
            "status",
            json!({"status_list": {"idx": -1, "uri": "https://x"}}),
        ),
        ("status", json!({"status_list": {"idx": 1}})),
        ("status", json!({"idx": 1, "uri": "https://x"})),
        ("status", json!(null)),
    ];
    for (name, bad) in cases {
        assert_eq!(
            read_access(&with(value.clone(), name, bad.clone()), &at_gate()),
            Err(JoseError::InvalidClaim { name: leak(name) }),
            "{name} = {bad}"
        );
    }
}

#[test]
fn access_token_profile_is_not_applied_to_other_kinds() {
    let value = access_claims().to_value();
    let token = jose::sign(JwtKind::Delegation, None, Algorithm::EdDSA, &value, &key(1));
    let verified = verify(&token, JwtKind::Delegation, &public(1)).unwrap();
    assert!(matches!(
        AccessTokenClaims::from_verified(&verified, &at_gate()),
        Err(JoseError::ApiMisuse { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Messages.

#[test]
fn messages_are_lowercase_single_lines_without_key_material() {
    let mut private = jwk_json(5);
    let d = b64url(&[5u8; 32]);
    private["d"] = json!(d);
    let token = raw(
        &json!({"alg": "EdDSA", "typ": "dpop+jwt", "jwk": private}).to_string(),
        &dpop_claims().to_string(),
        &key(5),
    );
    let err = check_dpop(&token, &expect_post()).unwrap_err();
    let all = [
        err,
        JoseError::TooLarge { max: 1 },
        JoseError::SegmentCount,
        JoseError::Base64 { segment: "header" },
        JoseError::CriticalHeader,
        JoseError::WrongType {
            expected: JwtKind::ClientAssertion,
        },
        JoseError::KeyInHeader { name: "x5c" },
        JoseError::BadSignature,
        JoseError::LifetimeTooLong { max_secs: 300 },
        JoseError::StaleProof { max_age_secs: 300 },
        JoseError::WrongNonce,
        JoseError::ApiMisuse { reason: "x" },
    ];
    for e in all {
        let message = e.to_string();
        assert!(!message.contains(&d), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert!(!message.ends_with('.'), "{message}");
        assert!(
            message.chars().next().is_some_and(|c| !c.is_uppercase()),
            "{message}"
        );
    }
}
