//! Typed, prefixed, time-ordered identifiers (`ten_…`, `usr_…`, `agt_…`, `gat_…`, `key_…`,
//! `del_…`, `apr_…`).
//!
//! An id is a prefix and 26 Crockford base32 characters of 16 bytes: 6 bytes of unix
//! milliseconds (big-endian) then 10 random bytes supplied by the caller. Ids therefore sort by
//! creation time, which the store uses for stable pagination.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::encoding::{base32_128, base32_128_decode};

/// The kinds of identifier, each with its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// `ten_`: a tenant.
    Tenant,
    /// `usr_`: a human.
    Human,
    /// `agt_`: an agent.
    Agent,
    /// `gat_`: a gate (resource server client).
    Gate,
    /// `key_`: a human's API key record.
    ApiKey,
    /// `del_`: a delegation.
    Delegation,
    /// `apr_`: a human-in-the-loop approval of one request.
    Approval,
}

impl IdKind {
    /// The textual prefix, including the underscore.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Tenant => "ten_",
            Self::Human => "usr_",
            Self::Agent => "agt_",
            Self::Gate => "gat_",
            Self::ApiKey => "key_",
            Self::Delegation => "del_",
            Self::Approval => "apr_",
        }
    }
}

/// A malformed identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind} id `{value}`")]
pub struct IdError {
    kind: &'static str,
    value: String,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Builds an id from a creation time (unix ms) and 10 caller-supplied random bytes.
            pub fn from_parts(now_ms: i64, random: [u8; 10]) -> Self {
                let mut raw = [0u8; 16];
                let ms = u64::try_from(now_ms).unwrap_or(0).to_be_bytes();
                raw[..6].copy_from_slice(&ms[2..]);
                raw[6..].copy_from_slice(&random);
                Self(format!("{}{}", $kind.prefix(), base32_128(&raw)))
            }

            /// Parses the textual form, checking prefix and encoding.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                s.strip_prefix($kind.prefix())
                    .and_then(base32_128_decode)
                    .map(|_| Self(s.to_owned()))
                    .ok_or_else(|| IdError { kind: $label, value: truncate(s) })
            }

            /// The textual form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// A tenant: the hard isolation boundary.
    TenantId, IdKind::Tenant, "tenant"
);
typed_id!(
    /// A human of a tenant.
    HumanId, IdKind::Human, "human"
);
typed_id!(
    /// An agent.
    AgentId, IdKind::Agent, "agent"
);
typed_id!(
    /// A gate registered as a client.
    GateId, IdKind::Gate, "gate"
);
typed_id!(
    /// The record of one API key of a human (never the secret itself).
    ApiKeyId, IdKind::ApiKey, "api key"
);
typed_id!(
    /// A delegation (a mandate or a sub-delegation).
    DelegationId, IdKind::Delegation, "delegation"
);
typed_id!(
    /// A human-in-the-loop approval of one request (DESIGN §7).
    ApprovalId, IdKind::Approval, "approval"
);

/// Keeps user input quoted in errors short.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_reject_wrong_prefix() {
        let a = AgentId::from_parts(1_000, [0xff; 10]);
        let b = AgentId::from_parts(1_001, [0; 10]);
        assert!(a < b);
        assert!(AgentId::parse(b.as_str()).is_ok());
        assert!(HumanId::parse(b.as_str()).is_err());
        let apr = ApprovalId::from_parts(1_000, [7; 10]);
        assert!(apr.as_str().starts_with("apr_"));
        assert!(ApprovalId::parse(apr.as_str()).is_ok());
        assert!(ApprovalId::parse(b.as_str()).is_err());
        assert!(AgentId::parse("agt_").is_err());
        assert!(AgentId::parse("agt_../../etc/passwd").is_err());
        let err = AgentId::parse("agt_x").unwrap_err().to_string();
        assert_eq!(err, "malformed agent id `agt_x`");
    }
}
