//! Unit tests of the JOSE internals: the RFC 8037 signing vector, `typ` matching, NumericDates
//! and the `htu` normaliser. The public pipeline is tested in `tests/jose.rs`.

use ed25519_dalek::SigningKey;
use serde_json::{Map, Value, json};

use super::claims::{check_window, opt_date};
use super::htu::normalize;
use super::jws::compact;
use super::*;
use crate::encoding::b64url_decode;
use crate::jwk::PublicJwk;

// RFC 8037 Appendix A.1: the Ed25519 key pair.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
// RFC 8037 Appendix A.4: the JWS of "Example of Ed25519 signing" under {"alg":"EdDSA"}.
const RFC8037_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

fn rfc8037_key() -> SigningKey {
    let seed: [u8; 32] = b64url_decode(RFC8037_D).unwrap().try_into().unwrap();
    SigningKey::from_bytes(&seed)
}

#[test]
fn rfc8037_a4_signature_is_reproduced_exactly() {
    let key = rfc8037_key();
    assert_eq!(
        crate::encoding::b64url(key.verifying_key().as_bytes()),
        RFC8037_X
    );
    let jws = compact(
        &json!({"alg": "EdDSA"}),
        b"Example of Ed25519 signing",
        &key,
    );
    assert_eq!(jws, RFC8037_JWS);
}

#[test]
fn rfc8037_a5_jws_is_not_a_jwt() {
    // A.5 validates the A.4 JWS; its payload is text, which no JWT profile accepts.
    let err = Unverified::parse(RFC8037_JWS, &JoseLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            JoseError::Json {
                segment: "payload",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn typ_matching_is_case_insensitive_with_an_optional_application_prefix() {
    let at = JwtKind::AccessToken;
    for ok in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        assert!(at.accepts_typ(Some(ok)), "{ok}");
    }
    for bad in [
        "at+jwt ",
        " at+jwt",
        "application/application/at+jwt",
        "application/at+jwt; charset=utf-8",
        "text/at+jwt",
        "jwt",
        "at+jwt\u{0}",
        "",
        "applicationat+jwt",
    ] {
        assert!(!at.accepts_typ(Some(bad)), "{bad:?}");
    }
    assert!(!at.accepts_typ(None));
    for kind in [JwtKind::ClientAssertion, JwtKind::ActorToken] {
        for ok in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("application/jwt"),
            Some("client-authentication+jwt"),
            Some("application/CLIENT-AUTHENTICATION+JWT"),
        ] {
            assert!(kind.accepts_typ(ok), "{kind:?} {ok:?}");
        }
        for bad in [
            "at+jwt",
            "dpop+jwt",
            "JOSE",
            "JWT+JSON",
            "jwt/client-authentication",
        ] {
            assert!(!kind.accepts_typ(Some(bad)), "{kind:?} {bad}");
        }
    }
    // The `typ` each kind writes is accepted by that kind and by no other.
    for signer in ALL_KINDS {
        for reader in ALL_KINDS {
            let same_family = matches!(
                (signer, reader),
                (
                    JwtKind::ClientAssertion | JwtKind::ActorToken,
                    JwtKind::ClientAssertion | JwtKind::ActorToken
                )
            );
            assert_eq!(
                reader.accepts_typ(Some(signer.typ())),
                signer == reader || same_family,
                "{signer:?} read as {reader:?}"
            );
        }
    }
}

#[test]
fn algorithm_names_are_exact() {
    assert_eq!(Algorithm::default(), Algorithm::EdDSA);
    assert_eq!(Algorithm::from_header("EdDSA"), Some(Algorithm::EdDSA));
    assert_eq!(Algorithm::from_header("Ed25519"), Some(Algorithm::Ed25519));
    for bad in [
        "eddsa", "EDDSA", "ed25519", "none", "HS256", "RS256", "ES256", "Ed448", "",
    ] {
        assert_eq!(Algorithm::from_header(bad), None, "{bad}");
    }
    assert_eq!(
        serde_json::to_value(Algorithm::Ed25519).unwrap(),
        json!("Ed25519")
    );
    assert_eq!(
        serde_json::from_value::<Algorithm>(json!("EdDSA")).unwrap(),
        Algorithm::EdDSA
    );
}

fn claims(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[test]
fn numeric_dates_accept_integers_and_fractions_and_refuse_the_rest() {
    let c = claims(json!({
        "a": 1_700_000_000,
        "b": 1_700_000_000.9,
        "c": "1700000000",
        "d": -1,
        "e": 1e300,
        "f": MAX_NUMERIC_DATE + 1,
        "g": null,
        "h": u64::MAX,
    }));
    assert_eq!(opt_date(&c, "a"), Ok(Some(1_700_000_000)));
    assert_eq!(opt_date(&c, "b"), Ok(Some(1_700_000_000)));
    assert_eq!(opt_date(&c, "missing"), Ok(None));
    for name in ["c", "d", "e", "f", "g", "h"] {
        assert_eq!(
            opt_date(&c, name),
            Err(JoseError::InvalidClaim { name }),
            "{name}"
        );
    }
}

#[test]
fn validity_window_with_leeway() {
    let now = 1_000;
    assert_eq!(check_window(1_001, None, None, now, 0), Ok(()));
    assert_eq!(
        check_window(1_000, None, None, now, 0),
        Err(JoseError::Expired)
    );
    assert_eq!(check_window(971, None, None, now, 30), Ok(()));
    assert_eq!(
        check_window(970, None, None, now, 30),
        Err(JoseError::Expired)
    );
    assert_eq!(
        check_window(2_000, Some(1_030), Some(1_030), now, 30),
        Ok(())
    );
    assert_eq!(
        check_window(2_000, Some(1_031), None, now, 30),
        Err(JoseError::NotYetValid)
    );
    assert_eq!(
        check_window(2_000, None, Some(1_031), now, 30),
        Err(JoseError::IssuedInFuture)
    );
    // No overflow at the edges.
    assert_eq!(check_window(0, None, None, i64::MIN, i64::MAX), Ok(()));
}

#[test]
fn htu_normal_forms() {
    let n = |s: &str| normalize(s);
    let base = Some("https://server.example.com/token".to_owned());
    for same in [
        "https://server.example.com/token",
        "HTTPS://Server.Example.COM/token",
        "https://server.example.com:443/token",
        "https://server.example.com:/token",
        "https://server.example.com:0443/token",
        "https://server.example.com/token?x=1",
        "https://server.example.com/token#frag",
        "https://server.example.com/token?x=1#frag",
        "https://server.example.com/%74oken",
        "https://server.example.com/a/../token",
        "https://server.example.com/./token",
        "https://server.example.com/a/%2E%2E/token",
    ] {
        assert_eq!(n(same), base, "{same}");
    }
    for different in [
        "https://server.example.com/Token",
        "https://server.example.com/token/",
        "https://server.example.com:8443/token",
        "http://server.example.com/token",
        "https://server.example.com.evil/token",
        "https://server.example.co/token",
    ] {
        assert!(n(different).is_some(), "{different}");
        assert_ne!(n(different), base, "{different}");
    }
    assert_eq!(
        n("http://x.example:80"),
        Some("http://x.example/".to_owned())
    );
    assert_eq!(
        n("http://x.example:443/"),
        Some("http://x.example:443/".to_owned())
    );
    assert_eq!(
        n("https://x.example/a/b/.."),
        Some("https://x.example/a/".to_owned())
    );
    assert_eq!(
        n("https://x.example/.."),
        Some("https://x.example/".to_owned())
    );
    assert_eq!(
        n("https://x.example/a%2fb"),
        Some("https://x.example/a%2Fb".to_owned())
    );
    assert_eq!(
        n("https://x.example/%7e"),
        Some("https://x.example/~".to_owned())
    );
    assert_eq!(
        n("https://[2001:DB8::1]:443/p"),
        Some("https://[2001:db8::1]/p".to_owned())
    );
    assert_eq!(
        n("https://[::1]:8443/p"),
        Some("https://[::1]:8443/p".to_owned())
    );
    for refused in [
        "",
        "server.example.com/token",
        "/token",
        "ftp://server.example.com/token",
        "https:/server.example.com/token",
        "https://user@server.example.com/token",
        "https://server.example.com:99999/token",
        "https://server.example.com:0/token",
        "https://server.example.com:x/token",
        "https:///token",
        "https://ser ver.example.com/token",
        "https://server.example.com/to ken",
        "https://server.example.com\\token",
        "https://server.example.com/a\\b",
        "https://server.example.com/%zz",
        "https://server.example.com/%4",
        "https://sérver.example.com/token",
        "https://server.example.com/tökén",
        "https://ser%76er.example.com/token",
        "https://[::1/p",
        "https://[]/p",
        "https://[::1]x/p",
    ] {
        assert_eq!(n(refused), None, "{refused}");
    }
}

#[test]
fn unverified_debug_leaves_out_the_signature() {
    let key = rfc8037_key();
    let token = sign(
        JwtKind::Delegation,
        None,
        Algorithm::EdDSA,
        &json!({"a": 1}),
        &key,
    );
    let signature = token.rsplit('.').next().unwrap().to_owned();
    let parsed = Unverified::parse(&token, &JoseLimits::default()).unwrap();
    let shown = format!("{parsed:?}");
    assert!(!shown.contains(&signature), "{shown}");
    assert!(shown.contains("delegation+jwt"));
    let verified = parsed
        .verify(JwtKind::Delegation, &PublicJwk::from_seed(&key.to_bytes()))
        .unwrap();
    assert!(!format!("{verified:?}").contains(&signature));
}

#[test]
fn dpop_expectation_debug_hides_the_access_token() {
    let mut expect = DpopExpectation::new("GET", "https://rs.example/r", 0);
    expect.access_token = Some("secret-token-value");
    assert!(!format!("{expect:?}").contains("secret-token-value"));
}
