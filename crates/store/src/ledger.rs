//! The ledger as a transparency log: one RFC 9162 Merkle tree per tenant over its receipts, their
//! proofs, and the signed checkpoints that commit to them (DESIGN §6).
//!
//! # Leaves
//!
//! Leaf `i` (0-based) of a tenant's tree is receipt `seq = i + 1` of that tenant's chain, and the
//! leaf **data is the 32-byte receipt hash** (`sha256(JCS(receipt))`), so the leaf hash is
//! `SHA-256(0x00 ‖ receipt hash)` (RFC 9162 §2.1.1). Anyone holding an export recomputes every
//! root from it; nothing else about the receipt enters the tree.
//!
//! # Sequencing vs integration
//!
//! *Sequencing* (the group-committed [`Store::commit`](crate::Store::commit)) durably assigns a
//! receipt its `seq` and hash, and nothing more. *Integration* ([`LedgerStore::integrate`]) runs
//! later, on its own connection and in its own transactions: it reads the receipts sequenced
//! past each tenant's integrated size and writes the complete subtrees they finish (the layout of
//! [`mandate_core::merkle`]). It never holds the writer's lock while hashing, so appends stay
//! group-committed; a crash between the two loses nothing, because the next integration picks up
//! where the tree ends.
//!
//! # Checkpoints
//!
//! The engine stores signed checkpoints ([`StoredCheckpoint`]) but never signs: the server holds
//! the key. [`export`] verifies an export of a tenant's chain against such checkpoints offline.

pub mod export;

use async_trait::async_trait;
use mandate_core::id::TenantId;
use mandate_core::merkle::{Hash, MerkleError};

use crate::StoreError;

/// The Merkle side of the ledger.
#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    /// Extends every tenant's tree with the receipts sequenced since the last integration.
    /// Returns the tenants whose tree grew, with their new sizes. A tenant whose receipts
    /// contradict its tree is logged and skipped; [`LedgerStore::integrate_tenant`] reports it.
    async fn integrate(&self) -> Result<Vec<(TenantId, u64)>, LedgerError>;

    /// Extends `tenant`'s tree now (on demand) and returns its size.
    async fn integrate_tenant(&self, tenant: &TenantId) -> Result<u64, LedgerError>;

    /// The integrated size of `tenant`'s tree and its root.
    async fn tree_head(&self, tenant: &TenantId) -> Result<TreeHead, LedgerError>;

    /// The root of `tenant`'s tree as it was at `size` leaves (at most the integrated size).
    async fn root_at(&self, tenant: &TenantId, size: u64) -> Result<Hash, LedgerError>;

    /// The inclusion proof of leaf `index` in `tenant`'s tree at `size` leaves.
    async fn inclusion_proof(
        &self,
        tenant: &TenantId,
        index: u64,
        size: u64,
    ) -> Result<InclusionProof, LedgerError>;

    /// The consistency proof of `tenant`'s tree from `from` to `to` leaves.
    async fn consistency_proof(
        &self,
        tenant: &TenantId,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, LedgerError>;

    /// The stored checkpoint of `tenant` at `size`, or the largest one if `size` is `None`.
    async fn checkpoint(
        &self,
        tenant: &TenantId,
        size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, LedgerError>;

    /// Stores a signed checkpoint, replacing any earlier one of the same size (a re-signature,
    /// say after a key rotation). Refused if its size is beyond the integrated tree or its root
    /// is not the tree's root at that size: the store never keeps a checkpoint its tree
    /// contradicts.
    async fn save_checkpoint(
        &self,
        tenant: &TenantId,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), LedgerError>;
}

/// A tree's integrated size and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Leaves integrated (receipts `1..=size`).
    pub size: u64,
    /// `MTH` of those leaves (the empty-tree root for 0).
    pub root: Hash,
}

/// An inclusion proof (RFC 9162 §2.1.3) of one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Leaf index (`seq - 1`).
    pub index: u64,
    /// Tree size the proof is for.
    pub size: u64,
    /// The receipt hash (the leaf data).
    pub receipt_hash: [u8; 32],
    /// `SHA-256(0x00 ‖ receipt_hash)`.
    pub leaf_hash: Hash,
    /// The audit path, leaf side first.
    pub proof: Vec<Hash>,
    /// The root at `size`.
    pub root: Hash,
}

/// A consistency proof (RFC 9162 §2.1.4) between two sizes of one tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// The root at `from`.
    pub from_root: Hash,
    /// The root at `to`.
    pub to_root: Hash,
    /// The proof hashes.
    pub proof: Vec<Hash>,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root at `size`.
    pub root: Hash,
    /// The C2SP signed note (text).
    pub note: String,
    /// Id of the server key that signed it (its JWK thumbprint).
    pub kid: String,
    /// When it was signed, unix ms.
    pub signed_at: i64,
}

/// Why a ledger operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A size or index outside the integrated tree, or a proof the tree cannot give.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// The checkpoint disagrees with the tree at its size.
    #[error("checkpoint root does not match the tree at size {size}")]
    CheckpointMismatch {
        /// The checkpoint's size.
        size: u64,
    },
    /// Storage failed or holds unexpected data.
    #[error(transparent)]
    Store(#[from] StoreError),
}
