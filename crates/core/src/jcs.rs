//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Two paths produce canonical JSON, and tests hold them equal:
//! - [`canonicalize`]: the generic path for arbitrary JSON values (vectors, commitments,
//!   verification of receipts received from elsewhere);
//! - fixed-order serialisation of structs whose members are declared in JCS order and hold only
//!   strings, safe integers, booleans, null, arrays and such structs (the receipt hot path).
//!   serde_json's compact writer escapes strings exactly as RFC 8785 §3.2.2.2 requires (`"`, `\`
//!   and control characters, lowercase `\u00xx`, nothing else), so for those structs its output
//!   *is* JCS; `receipt::tests` prove it on random receipts.

use serde_json::Value;

/// Largest integer that JSON numbers carry exactly (RFC 8785 §3.2.2.3, I-JSON).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A value JCS cannot canonicalise faithfully.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JcsError {
    /// An integer outside ±(2^53 − 1): its canonical form would silently round.
    #[error("integer `{0}` is outside the exactly representable range ±(2^53 - 1)")]
    UnsafeInteger(String),
    /// The serializer failed (cannot happen for `serde_json::Value`; please file a bug).
    #[error("canonical serialisation failed: {0}")]
    Serialize(String),
}

/// Canonicalises `value` per RFC 8785.
///
/// Integers beyond ±(2^53 − 1) are refused rather than rounded, so a hash never commits to a
/// number other than the one written.
pub fn canonicalize(value: &Value) -> Result<String, JcsError> {
    check_safe_integers(value)?;
    serde_json_canonicalizer::to_string(value).map_err(|e| JcsError::Serialize(e.to_string()))
}

/// SHA-256 of the canonical form of `value`.
pub fn sha256(value: &Value) -> Result<[u8; 32], JcsError> {
    use sha2::Digest;
    let text = canonicalize(value)?;
    Ok(sha2::Sha256::digest(text.as_bytes()).into())
}

fn check_safe_integers(value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Number(n) => {
            let unsafe_int = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u > MAX_SAFE_INTEGER,
                (None, Some(i)) => i.unsigned_abs() > MAX_SAFE_INTEGER,
                _ => false,
            };
            if unsafe_int {
                return Err(JcsError::UnsafeInteger(n.to_string()));
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_safe_integers),
        Value::Object(map) => map.values().try_for_each(check_safe_integers),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_strips_whitespace() {
        let v = json!({"b": 1, "a": [true, null, "x"], "c": {"z": 1.5, "y": -0.0}});
        assert_eq!(
            canonicalize(&v).unwrap(),
            r#"{"a":[true,null,"x"],"b":1,"c":{"y":0,"z":1.5}}"#
        );
    }

    #[test]
    fn refuses_integers_that_would_round() {
        assert!(canonicalize(&json!(9_007_199_254_740_991u64)).is_ok());
        assert!(canonicalize(&json!(9_007_199_254_740_993u64)).is_err());
        assert!(canonicalize(&json!([{"a": -9_007_199_254_740_993i64}])).is_err());
    }
}
