//! Ledger receipts: their fixed canonical form, hashing, and chain verification (DESIGN §6).
//!
//! A receipt's hash is `sha256(JCS(receipt))`. Receipts are serialised from [`Receipt`], whose
//! members are declared in JCS order (RFC 8785 §3.2.3 sorts by UTF-16 code units; all member
//! names here are ASCII, so declaration order = byte order) and hold only strings, safe
//! integers, null and arrays. serde_json's compact output of such a struct is exactly JCS —
//! see [`crate::jcs`] and the proof tests below — which avoids a generic `Value` pass on the
//! append path.
//!
//! Receipts hold ids and hashes only: never raw tokens, keys or secrets.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::encoding::{hex, hex_to_array};
use crate::jcs;

/// `prev` of the first receipt of a chain.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The kinds of event the ledger records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A tenant was created.
    #[serde(rename = "tenant.created")]
    TenantCreated,
    /// A human was added.
    #[serde(rename = "human.created")]
    HumanCreated,
    /// A human was offboarded.
    #[serde(rename = "human.revoked")]
    HumanRevoked,
    /// An API key was issued to a human (the secret itself is never recorded).
    #[serde(rename = "apikey.created")]
    ApiKeyCreated,
    /// An agent was registered.
    #[serde(rename = "agent.registered")]
    AgentRegistered,
    /// An agent was suspended.
    #[serde(rename = "agent.suspended")]
    AgentSuspended,
    /// A suspended agent was resumed.
    #[serde(rename = "agent.resumed")]
    AgentResumed,
    /// An agent was revoked (final).
    #[serde(rename = "agent.revoked")]
    AgentRevoked,
    /// A key was added to an agent.
    #[serde(rename = "agent.key_added")]
    AgentKeyAdded,
    /// A key of an agent was retired.
    #[serde(rename = "agent.key_retired")]
    AgentKeyRetired,
    /// A gate was registered.
    #[serde(rename = "gate.registered")]
    GateRegistered,
    /// A human registered an Ed25519 signing key.
    #[serde(rename = "human.key_added")]
    HumanKeyAdded,
    /// A mandate or sub-delegation was created.
    #[serde(rename = "delegation.created")]
    DelegationCreated,
    /// A delegation (and its subtree) was revoked.
    #[serde(rename = "delegation.revoked")]
    DelegationRevoked,
    /// An access token was issued.
    #[serde(rename = "token.issued")]
    TokenIssued,
    /// A well-formed token request was refused.
    #[serde(rename = "token.refused")]
    TokenRefused,
    /// An access token was revoked.
    #[serde(rename = "token.revoked")]
    TokenRevoked,
    /// A tenant was revoked with everything in it.
    #[serde(rename = "tenant.revoked")]
    TenantRevoked,
    /// The server's signing keys were rotated.
    #[serde(rename = "server.signing_key_rotated")]
    SigningKeyRotated,
    /// A free-standing record (no state change besides the receipt).
    #[serde(rename = "record")]
    Record,
    /// A gate asked for a human's approval of one request (pending).
    #[serde(rename = "approval.requested")]
    ApprovalRequested,
    /// A human approved a pending request.
    #[serde(rename = "approval.approved")]
    ApprovalApproved,
    /// A human denied a pending request.
    #[serde(rename = "approval.denied")]
    ApprovalDenied,
    /// A gate used an approval for the request it was given for (single use).
    #[serde(rename = "approval.consumed")]
    ApprovalConsumed,
    /// A gate's access decision on one request, shipped by the gate.
    #[serde(rename = "gate.decision")]
    GateDecision,
}

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action was allowed / the change applied.
    Allow,
    /// The action was refused.
    Deny,
}

/// Who acted. Members in JCS order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The acting agent, if an agent acted.
    pub agent: Option<String>,
    /// Earlier agents of the delegation chain, outermost first.
    pub chain: Vec<String>,
    /// The acting human, if a human acted.
    pub human: Option<String>,
}

/// What a caller asks the ledger to record; the ledger adds `seq`, `at`, `prev` and `tenant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The kind of event.
    pub kind: EventKind,
    /// Who acted.
    pub actor: Actor,
    /// The human on whose behalf an agent acted.
    pub on_behalf_of: Option<String>,
    /// The delegation in force.
    pub delegation: Option<String>,
    /// A token id (`jti`) — never a raw token.
    pub token: Option<String>,
    /// The action, e.g. `create`, `suspend`, `read`.
    pub action: Option<String>,
    /// The object acted on, e.g. `agents/agt_…`.
    pub resource: Option<String>,
    /// Allowed or denied.
    pub decision: Outcome,
    /// Why (reason codes and causes), in order.
    pub reasons: Vec<String>,
    /// Hex sha256 of the canonical request, when there was one.
    pub request_hash: Option<String>,
}

/// One ledger record. Member order is JCS order; do not reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// See [`Event::action`].
    pub action: Option<String>,
    /// See [`Event::actor`].
    pub actor: Actor,
    /// When it was recorded, unix milliseconds.
    pub at: i64,
    /// See [`Event::decision`].
    pub decision: Outcome,
    /// See [`Event::delegation`].
    pub delegation: Option<String>,
    /// See [`Event::kind`].
    pub kind: EventKind,
    /// See [`Event::on_behalf_of`].
    pub on_behalf_of: Option<String>,
    /// Hex hash of the previous receipt of this tenant's chain ([`GENESIS_PREV`] for the first).
    pub prev: String,
    /// See [`Event::reasons`].
    pub reasons: Vec<String>,
    /// See [`Event::request_hash`].
    pub request_hash: Option<String>,
    /// See [`Event::resource`].
    pub resource: Option<String>,
    /// Position in the tenant's chain, from 1.
    pub seq: u64,
    /// The tenant whose chain this is.
    pub tenant: String,
    /// See [`Event::token`].
    pub token: Option<String>,
}

impl Receipt {
    /// Seals `event` as receipt number `seq` of `tenant`'s chain, after `prev`.
    pub fn seal(event: Event, tenant: &str, seq: u64, at: i64, prev: &ReceiptHash) -> Self {
        Self {
            action: event.action,
            actor: event.actor,
            at,
            decision: event.decision,
            delegation: event.delegation,
            kind: event.kind,
            on_behalf_of: event.on_behalf_of,
            prev: prev.to_hex(),
            reasons: event.reasons,
            request_hash: event.request_hash,
            resource: event.resource,
            seq,
            tenant: tenant.to_owned(),
            token: event.token,
        }
    }

    /// Appends the canonical (JCS) bytes of this receipt to `out`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        // INVARIANT: serialising a struct of strings/integers/vectors into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
    }

    /// The canonical bytes and the hash over them.
    pub fn canonical_and_hash(&self) -> (Vec<u8>, ReceiptHash) {
        let mut buf = Vec::with_capacity(512);
        self.write_canonical(&mut buf);
        let hash = ReceiptHash(Sha256::digest(&buf).into());
        (buf, hash)
    }
}

/// A receipt hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ReceiptHash(pub [u8; 32]);

impl ReceiptHash {
    /// The `prev` of a chain's first receipt.
    pub const GENESIS: Self = Self([0u8; 32]);

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses lowercase hex.
    pub fn from_hex(s: &str) -> Option<Self> {
        hex_to_array::<32>(s).map(Self)
    }
}

/// The first fault found while walking a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The stored hash does not match the receipt's content.
    #[error("receipt {seq}: content does not match its hash")]
    HashMismatch {
        /// Position of the bad record.
        seq: u64,
    },
    /// `prev` does not name the previous receipt's hash.
    #[error("receipt {seq}: `prev` does not link to receipt {}", seq.saturating_sub(1))]
    BrokenLink {
        /// Position of the bad record.
        seq: u64,
    },
    /// A gap or reordering in the sequence.
    #[error("expected receipt {expected}, found receipt {seq}")]
    OutOfOrder {
        /// Position found.
        seq: u64,
        /// Position expected.
        expected: u64,
    },
    /// The receipt's own `seq` member disagrees with its position.
    #[error("receipt {seq}: its `seq` member says {claimed}")]
    SeqMismatch {
        /// Position of the bad record.
        seq: u64,
        /// What the record claims.
        claimed: u64,
    },
    /// A receipt of another tenant inside this chain.
    #[error("receipt {seq}: belongs to another tenant")]
    ForeignTenant {
        /// Position of the bad record.
        seq: u64,
    },
    /// Not a receipt at all.
    #[error("receipt {seq}: malformed ({detail})")]
    Malformed {
        /// Position of the bad record.
        seq: u64,
        /// What is wrong.
        detail: String,
    },
}

impl ChainError {
    /// The position of the first bad record.
    pub fn seq(&self) -> u64 {
        match self {
            Self::HashMismatch { seq }
            | Self::BrokenLink { seq }
            | Self::OutOfOrder { seq, .. }
            | Self::SeqMismatch { seq, .. }
            | Self::ForeignTenant { seq }
            | Self::Malformed { seq, .. } => *seq,
        }
    }
}

/// Summary of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Receipts verified.
    pub count: u64,
    /// Hex hash of the last receipt (the genesis `prev` for an empty chain).
    pub head: String,
}

/// Re-walks a tenant's chain from genesis, one receipt at a time.
///
/// Each receipt is re-canonicalised through the *generic* JCS path, independently of how the
/// server serialised it, so a faulty fixed-order serialiser would be caught here too.
#[derive(Debug)]
pub struct ChainVerifier {
    count: u64,
    prev: ReceiptHash,
    tenant: Option<String>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting receipt 1 next.
    pub fn new() -> Self {
        Self {
            count: 0,
            prev: ReceiptHash::GENESIS,
            tenant: None,
        }
    }

    /// Checks the next receipt: position, own `seq`, tenant, link to the previous hash, and its
    /// hash.
    pub fn push(
        &mut self,
        seq: u64,
        hash_hex: &str,
        receipt: &serde_json::Value,
    ) -> Result<(), ChainError> {
        let expected = self.count + 1;
        if seq != expected {
            return Err(ChainError::OutOfOrder { seq, expected });
        }
        let malformed = |detail: &str| ChainError::Malformed {
            seq,
            detail: detail.to_owned(),
        };
        let parsed: Receipt =
            serde_json::from_value(receipt.clone()).map_err(|e| malformed(&e.to_string()))?;
        if parsed.seq != seq {
            return Err(ChainError::SeqMismatch {
                seq,
                claimed: parsed.seq,
            });
        }
        match &self.tenant {
            Some(t) if *t != parsed.tenant => return Err(ChainError::ForeignTenant { seq }),
            Some(_) => {}
            None => self.tenant = Some(parsed.tenant.clone()),
        }
        if ReceiptHash::from_hex(&parsed.prev) != Some(self.prev) {
            return Err(ChainError::BrokenLink { seq });
        }
        let digest = jcs::sha256(receipt).map_err(|e| malformed(&e.to_string()))?;
        let claimed =
            ReceiptHash::from_hex(hash_hex).ok_or_else(|| malformed("hash is not hex"))?;
        if digest != claimed.0 {
            return Err(ChainError::HashMismatch { seq });
        }
        self.prev = claimed;
        self.count = seq;
        Ok(())
    }

    /// The summary of everything pushed so far.
    pub fn finish(self) -> ChainSummary {
        ChainSummary {
            count: self.count,
            head: self.prev.to_hex(),
        }
    }
}

#[cfg(test)]
mod tests;
