//! The authority's signing keys, from its JWKS (RFC 7517 §5): current, next and retiring keys
//! of its ring, each with a `kid`.

use std::collections::HashMap;
use std::sync::Arc;

use mandate_core::jwk::PublicJwk;
use serde_json::Value;

/// Fewest milliseconds between two JWKS fetches triggered by an unknown `kid`: a flood of
/// tokens with invented key ids must not turn into a flood of requests to the authority.
pub(crate) const UNKNOWN_KID_REFETCH_MS: i64 = 10_000;
/// How often the JWKS is refreshed in the background (the authority serves it with
/// `max-age=60`), so that `next` keys are known before they sign and removed keys go away.
pub(crate) const JWKS_REFRESH_MS: i64 = 60_000;
/// The most keys accepted from one JWKS document.
const MAX_KEYS: usize = 64;

/// A key set: `kid` → key.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, Arc<PublicJwk>>,
    /// When the set was last fetched (unix ms); `None` for a set given at construction.
    pub(crate) fetched_at: Option<i64>,
    /// When a fetch was last attempted for an unknown `kid` (unix ms).
    pub(crate) last_unknown_kid_fetch: Option<i64>,
}

impl KeySet {
    /// Reads a JWKS document. Keys without a `kid`, or that are not valid public OKP Ed25519
    /// keys (private members, small order, unknown members, `use` other than `sig`), are left
    /// out; a document with no usable key is refused.
    pub(crate) fn parse(doc: &Value) -> Result<HashMap<String, Arc<PublicJwk>>, String> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the JWKS has no `keys` array")?;
        let mut out = HashMap::new();
        for key in keys.iter().take(MAX_KEYS) {
            let Some(kid) = key.get("kid").and_then(Value::as_str) else {
                continue;
            };
            match PublicJwk::from_json(key) {
                Ok(jwk) => {
                    out.insert(kid.to_owned(), Arc::new(jwk));
                }
                Err(e) => tracing::warn!(kid, error = %e, "ignoring an unusable JWKS key"),
            }
        }
        if out.is_empty() {
            return Err("the JWKS has no usable Ed25519 key with a `kid`".into());
        }
        Ok(out)
    }

    pub(crate) fn get(&self, kid: &str) -> Option<Arc<PublicJwk>> {
        self.keys.get(kid).cloned()
    }

    pub(crate) fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Replaces the keys; returns whether a key that was known before is gone (cached tokens
    /// signed by it must then be forgotten).
    pub(crate) fn replace(&mut self, keys: HashMap<String, Arc<PublicJwk>>, now_ms: i64) -> bool {
        let removed = self.keys.keys().any(|k| !keys.contains_key(k));
        self.keys = keys;
        self.fetched_at = Some(now_ms);
        removed
    }

    pub(crate) fn with_keys(keys: HashMap<String, Arc<PublicJwk>>) -> Self {
        Self {
            keys,
            fetched_at: None,
            last_unknown_kid_fetch: None,
        }
    }

    /// Whether an unknown `kid` may trigger a fetch now; records the attempt if so.
    pub(crate) fn may_fetch_for_unknown_kid(&mut self, now_ms: i64) -> bool {
        match self.last_unknown_kid_fetch {
            Some(at) if now_ms.saturating_sub(at) < UNKNOWN_KID_REFETCH_MS => false,
            _ => {
                self.last_unknown_kid_fetch = Some(now_ms);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_usable_keys_and_skips_others() {
        let good = PublicJwk::from_seed(&[1; 32]).to_json();
        let mut with_kid = good.clone();
        with_kid["kid"] = json!("k1");
        with_kid["use"] = json!("sig");
        with_kid["alg"] = json!("EdDSA");
        let mut private = with_kid.clone();
        private["d"] = json!("AAAA");
        private["kid"] = json!("k2");
        let doc = json!({"keys": [with_kid, good, private, {"kty": "RSA", "kid": "k3"}]});
        let keys = KeySet::parse(&doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.contains_key("k1"));
        assert!(KeySet::parse(&json!({"keys": []})).is_err());
        assert!(KeySet::parse(&json!({})).is_err());
    }

    #[test]
    fn unknown_kid_fetches_are_rate_limited() {
        let mut k = KeySet::default();
        assert!(k.may_fetch_for_unknown_kid(0));
        assert!(!k.may_fetch_for_unknown_kid(UNKNOWN_KID_REFETCH_MS - 1));
        assert!(k.may_fetch_for_unknown_kid(UNKNOWN_KID_REFETCH_MS));
    }
}
