//! The `private_key_jwt` client assertion profile (RFC 7523 §3, draft-ietf-oauth-rfc7523bis).

use serde_json::Value;

use super::claims::{check_window, opt_date, req_date, req_identifier, req_str};
use super::jws::Verified;
use super::{JoseError, JwtKind};

/// The default of [`AssertionExpectation::max_lifetime_secs`] (DESIGN §4: `exp` ≤ 5 min ahead).
pub const DEFAULT_ASSERTION_LIFETIME_SECS: i64 = 300;
/// The default of [`AssertionExpectation::leeway_secs`].
pub const DEFAULT_ASSERTION_LEEWAY_SECS: i64 = 30;

/// What a client assertion must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssertionExpectation<'a> {
    /// Our issuer identifier (RFC 8414 `issuer`): the only accepted audience.
    pub issuer: &'a str,
    /// The current time, unix seconds.
    pub now: i64,
    /// Longest accepted lifetime: `exp - now`, and `exp - iat` when `iat` is present.
    pub max_lifetime_secs: i64,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_secs: i64,
}

impl<'a> AssertionExpectation<'a> {
    /// An expectation with the default lifetime and leeway.
    pub fn new(issuer: &'a str, now: i64) -> Self {
        Self {
            issuer,
            now,
            max_lifetime_secs: DEFAULT_ASSERTION_LIFETIME_SECS,
            leeway_secs: DEFAULT_ASSERTION_LEEWAY_SECS,
        }
    }
}

/// A client assertion that passed its profile. Only [`verify_client_assertion`] builds one.
///
/// The caller must still consume [`ClientAssertion::jti`] atomically in a replay store that
/// survives restarts, keeping it at least until [`ClientAssertion::exp`] plus the leeway
/// (SECURITY.md, line 4), and must make an unknown client, a wrong key and a disabled client
/// fail identically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAssertion {
    client_id: String,
    jti: String,
    exp: i64,
}

impl ClientAssertion {
    /// The authenticated client id (`iss` = `sub`).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The assertion's `jti`, for the replay store.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The assertion's `exp`, unix seconds: how long the replay store must remember `jti`.
    pub fn exp(&self) -> i64 {
        self.exp
    }
}

/// Validates the claims of a verified client assertion (or actor token, which has the same
/// shape; see [`JwtKind`] on telling them apart).
///
/// RFC 7523 §3 and draft-ietf-oauth-rfc7523bis: `iss` = `sub` = the client id; `aud` is our
/// issuer identifier as a single value; `exp` required and at most `max_lifetime_secs` ahead;
/// `nbf` and `iat` not in the future; `jti` required.
pub fn verify_client_assertion(
    verified: &Verified,
    expect: &AssertionExpectation<'_>,
) -> Result<ClientAssertion, JoseError> {
    if !matches!(
        verified.kind(),
        JwtKind::ClientAssertion | JwtKind::ActorToken
    ) {
        return Err(JoseError::ApiMisuse {
            reason: "a client assertion profile was applied to another kind of token",
        });
    }
    let claims = verified.claims();

    // RFC 7523 §3 (1): "The JWT MUST contain an "iss" (issuer) claim that contains a unique
    // identifier for the entity that issued the JWT." (2.B): "For client authentication, the
    // subject MUST be the "client_id" of the OAuth client." RFC 7521 §5.2: iss = sub.
    let sub = req_identifier(claims, "sub")?;
    let iss = req_str(claims, "iss")?;
    if iss != sub {
        return Err(JoseError::IssuerSubjectMismatch);
    }

    // RFC 7523 §3 (3), as updated by draft-ietf-oauth-rfc7523bis: the audience is the
    // authorization server's issuer identifier, as a single string; an array is tolerated
    // only when it holds exactly that one value.
    match claims.get("aud") {
        None => return Err(JoseError::MissingClaim { name: "aud" }),
        Some(Value::String(aud)) if aud == expect.issuer => {}
        Some(Value::Array(auds))
            if auds.len() == 1 && auds.first().and_then(Value::as_str) == Some(expect.issuer) => {}
        Some(_) => return Err(JoseError::WrongAudience),
    }

    // RFC 7523 §3 (4): "The JWT MUST contain an "exp" (expiration time) claim that limits the
    // time window during which the JWT can be used." (5) `nbf` and (6) `iat` are optional.
    let exp = req_date(claims, "exp")?;
    let nbf = opt_date(claims, "nbf")?;
    let iat = opt_date(claims, "iat")?;
    check_window(exp, nbf, iat, expect.now, expect.leeway_secs)?;
    // RFC 7523 §3 (4): "The authorization server MAY reject JWTs with an "exp" claim value
    // that is unreasonably far in the future."
    let too_long = JoseError::LifetimeTooLong {
        max_secs: expect.max_lifetime_secs,
    };
    if exp.saturating_sub(expect.now) > expect.max_lifetime_secs {
        return Err(too_long);
    }
    if iat.is_some_and(|iat| exp.saturating_sub(iat) > expect.max_lifetime_secs) {
        return Err(too_long);
    }

    // RFC 7523 §3 (7): "The JWT MAY contain a "jti" (JWT ID) claim"; we require it, as the
    // replay protection of SECURITY.md line 4 is keyed on it.
    let jti = req_identifier(claims, "jti")?;

    Ok(ClientAssertion {
        client_id: sub.to_owned(),
        jti: jti.to_owned(),
        exp,
    })
}
