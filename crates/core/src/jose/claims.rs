//! Typed reads of JWT claims (RFC 7519 §4.1) shared by the claim profiles.

use serde_json::{Map, Value};

use super::JoseError;

/// Longest client id, `jti` or other identifier claim accepted, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 255;
/// Latest NumericDate accepted: 9999-12-31T23:59:59Z. Later (or negative) dates are refused,
/// which keeps every time computation far from overflow.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// A claim that must be a string, if present.
pub(crate) fn opt_str<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, JoseError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JoseError::InvalidClaim { name }),
    }
}

/// A required string claim.
pub(crate) fn req_str<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, JoseError> {
    opt_str(claims, name)?.ok_or(JoseError::MissingClaim { name })
}

/// A required identifier: a string of 1 to [`MAX_IDENTIFIER_BYTES`] bytes.
pub(crate) fn req_identifier<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, JoseError> {
    let value = req_str(claims, name)?;
    if value.is_empty() || value.len() > MAX_IDENTIFIER_BYTES {
        return Err(JoseError::InvalidClaim { name });
    }
    Ok(value)
}

/// RFC 7519 §2: a NumericDate is "a JSON numeric value representing the number of seconds from
/// 1970-01-01T00:00:00Z UTC until the specified UTC date/time, ignoring leap seconds", and may
/// be non-integer. Fractions are dropped (rounded down); anything outside
/// `0..=`[`MAX_NUMERIC_DATE`] or not a number is refused.
pub(crate) fn opt_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, JoseError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let invalid = JoseError::InvalidClaim { name };
    let Value::Number(n) = value else {
        return Err(invalid);
    };
    let secs = if let Some(i) = n.as_i64() {
        i
    } else {
        let f = n.as_f64().ok_or(invalid.clone())?;
        if !f.is_finite() || f < 0.0 || f > MAX_NUMERIC_DATE as f64 {
            return Err(invalid);
        }
        // INVARIANT: `f` is finite and within 0..=MAX_NUMERIC_DATE, so the cast is exact.
        f.floor() as i64
    };
    if !(0..=MAX_NUMERIC_DATE).contains(&secs) {
        return Err(invalid);
    }
    Ok(Some(secs))
}

/// A required NumericDate.
pub(crate) fn req_date(claims: &Map<String, Value>, name: &'static str) -> Result<i64, JoseError> {
    opt_date(claims, name)?.ok_or(JoseError::MissingClaim { name })
}

/// The validity window shared by every profile, with `leeway` for clock skew (RFC 7519 §4.1.4,
/// §4.1.5; `iat` per RFC 9068 §4 / RFC 7523 §3): `exp` must be after `now - leeway`, `nbf` and
/// `iat` no later than `now + leeway`.
pub(crate) fn check_window(
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
    now: i64,
    leeway: i64,
) -> Result<(), JoseError> {
    // RFC 7519 §4.1.4: "the current date/time MUST be before the expiration date/time".
    if exp <= now.saturating_sub(leeway) {
        return Err(JoseError::Expired);
    }
    // RFC 7519 §4.1.5: "the current date/time MUST be after or equal to the not-before
    // date/time".
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(JoseError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(JoseError::IssuedInFuture);
    }
    Ok(())
}
