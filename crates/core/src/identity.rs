//! Agent identity: SPIFFE ids, trust domains and the agent commitment (DESIGN §1).

use serde_json::{Value, json};

use crate::encoding::hex;
use crate::id::AgentId;
use crate::jcs::{self, JcsError};

/// A SPIFFE trust domain (lowercase letters, digits, `.`, `-`, `_`; 1–255 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomain(String);

/// A malformed trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trust domain `{0}`: use lowercase letters, digits, `.`, `-` and `_`")]
pub struct TrustDomainError(String);

impl TrustDomain {
    /// Parses a trust domain name (SPIFFE-ID §2.1).
    pub fn parse(s: &str) -> Result<Self, TrustDomainError> {
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(TrustDomainError(s.chars().take(64).collect()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `spiffe://<trust-domain>/agent/<agent id>`.
    pub fn agent_spiffe_id(&self, agent: &AgentId) -> String {
        format!("spiffe://{}/agent/{}", self.0, agent)
    }
}

/// The agent commitment: hex `sha256(JCS({"ceiling", "name", "purpose"}))`.
///
/// `ceiling` is the serialised, validated scope. Changing what the agent is (name, purpose) or
/// may do (ceiling) changes the commitment, so a gate can pin an exact identity.
pub fn commitment(name: &str, purpose: &str, ceiling: &Value) -> Result<String, JcsError> {
    let digest = jcs::sha256(&json!({"name": name, "purpose": purpose, "ceiling": ceiling}))?;
    Ok(hex(&digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commitment_is_order_independent_and_sensitive() {
        let a = commitment(
            "bot",
            "triage",
            &json!([{"type": "mandate", "actions": ["read"]}]),
        )
        .unwrap();
        let b = commitment(
            "bot",
            "triage",
            &serde_json::from_str(r#"[{"actions":["read"],"type":"mandate"}]"#).unwrap(),
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let c = commitment(
            "bot",
            "triage!",
            &json!([{"type": "mandate", "actions": ["read"]}]),
        )
        .unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn trust_domains() {
        assert!(TrustDomain::parse("example.org").is_ok());
        assert!(TrustDomain::parse("Example.org").is_err());
        assert!(TrustDomain::parse("a/b").is_err());
        assert!(TrustDomain::parse("").is_err());
    }
}
