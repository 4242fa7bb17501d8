//! RFC 9162 §2.1 Merkle tree over the ledger: hashing, the stored-node layout, proofs, verifiers.
//!
//! # Layout
//!
//! The ledger's tree grows one leaf at a time and may reach billions of leaves, so it is kept in
//! the database as the hashes of its **complete** (perfect) subtrees, addressed by [`NodeId`]:
//! node `(level, index)` covers leaves `[index · 2^level, (index + 1) · 2^level)`, level 0 being
//! the leaf hashes. A tree of size `n` has all nodes with `(index + 1) · 2^level <= n` and no
//! others: subtrees on the ragged right edge are never stored, because their hash changes with
//! every append. Their hashes are folded on demand from the complete nodes under them.
//!
//! - Integration appends leaf `n` by writing the rows [`nodes_completed_by_append`] returns: the
//!   leaf itself plus one row per subtree that the new leaf completes (amortised two rows).
//! - [`root`], [`inclusion_proof`] and [`consistency_proof`] read `O(log n)` complete nodes
//!   through a `get` callback and never anything else. The `nodes_for_*` functions list the
//!   same nodes up front, so a store can fetch them in one query and answer `get` from memory.
//! - [`verify_inclusion`] and [`verify_consistency`] are written from the RFC's verification
//!   algorithms (§2.1.3.2, §2.1.4.2) and share nothing with the generator except [`node_hash`].
//! - [`MemoryTree`] keeps the same layout in memory, for tests and for checking an export.
//!
//! Everything here is pure: no IO, no clock, no randomness.
//!
//! ```
//! use mandate_core::merkle::{leaf_hash, verify_consistency, verify_inclusion, MemoryTree};
//!
//! let mut tree = MemoryTree::new();
//! for i in 0u32..10 {
//!     tree.append(leaf_hash(&i.to_be_bytes())).unwrap();
//! }
//! let old_root = tree.root_at(7).unwrap();
//! let root = tree.root().unwrap();
//!
//! let proof = tree.inclusion_proof(3, 10).unwrap();
//! verify_inclusion(3, 10, &leaf_hash(&3u32.to_be_bytes()), &proof, &root).unwrap();
//!
//! let proof = tree.consistency_proof(7, 10).unwrap();
//! verify_consistency(7, 10, &old_root, &root, &proof).unwrap();
//! ```

mod memory;
mod tree;
mod verify;

use std::fmt;

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha256};

use crate::encoding::{hex, hex_to_array};

pub use memory::MemoryTree;
pub use tree::{
    consistency_proof, inclusion_proof, nodes_completed_by_append, nodes_for_consistency,
    nodes_for_inclusion, nodes_for_root, root,
};
pub use verify::{verify_consistency, verify_inclusion};

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

/// The root of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1, `MTH({}) = HASH()`).
pub const EMPTY_ROOT: Hash = Hash([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

/// The address of a complete subtree: node `(level, index)` covers leaves
/// `[index · 2^level, (index + 1) · 2^level)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves; 0 is a leaf hash.
    pub level: u8,
    /// Position among the nodes of this level, from the left.
    pub index: u64,
}

/// Why a Merkle operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size it was checked against.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizeOrder {
        /// The earlier tree size.
        old_size: u64,
        /// The later tree size.
        new_size: u64,
    },
    /// A tree size larger than the tree that was asked about.
    #[error("tree size {requested} is beyond the {size} leaves the tree holds")]
    BeyondTree {
        /// The size asked for.
        requested: u64,
        /// The leaves the tree holds.
        size: u64,
    },
    /// The tree already holds `2^64 - 1` leaves.
    #[error("the tree is full")]
    TreeFull,
    /// The store did not return a complete node that must exist for this tree size. The store is
    /// damaged or behind the requested size; please file a bug if neither is the case.
    #[error("complete node at level {} index {} is missing from the store", .0.level, .0.index)]
    MissingNode(NodeId),
    /// The proof holds too many or too few hashes for these tree sizes.
    #[error("proof has the wrong number of hashes for these tree sizes")]
    ProofLength,
    /// The proof does not lead to the given (new) root.
    #[error("proof does not lead to the given root")]
    RootMismatch,
    /// The consistency proof does not lead to the given old root.
    #[error("consistency proof does not lead to the given old root")]
    OldRootMismatch,
}

/// RFC 9162 §2.1.1: "The hash of a list with one entry (also known as a leaf hash) is:
/// `MTH({d[0]}) = HASH(0x00 || d[0])`."
pub fn leaf_hash(data: &[u8]) -> Hash {
    Hash(
        Sha256::new_with_prefix([LEAF_PREFIX])
            .chain_update(data)
            .finalize()
            .into(),
    )
}

/// RFC 9162 §2.1.1: "`MTH(D_n) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`."
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash(
        Sha256::new_with_prefix([NODE_PREFIX])
            .chain_update(left.0)
            .chain_update(right.0)
            .finalize()
            .into(),
    )
}

impl Hash {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// The hash held in `bytes`, if it is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        hex_to_array::<32>(s).map(Self)
    }

    /// Standard padded base64 (RFC 4648 §4), as in checkpoints.
    pub fn to_base64(&self) -> String {
        Base64::encode_string(&self.0)
    }

    /// Parses standard padded base64 (RFC 4648 §4) of exactly 32 bytes, in its canonical form
    /// only (no whitespace, zero padding bits).
    pub fn from_base64(s: &str) -> Option<Self> {
        let bytes = Base64::decode_vec(s).ok()?;
        let hash = Self::from_slice(&bytes)?;
        // Canonical form only: the same 32 bytes must not have two accepted spellings.
        (hash.to_base64() == s).then_some(hash)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl NodeId {
    /// Node `(level, index)`.
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }

    /// The leaves this node covers, or `None` if the range does not fit in `u64`.
    pub fn leaf_range(&self) -> Option<std::ops::Range<u64>> {
        let width = 1u64.checked_shl(u32::from(self.level))?;
        let start = self.index.checked_mul(width)?;
        let end = start.checked_add(width)?;
        Some(start..end)
    }
}

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

#[cfg(test)]
mod tests;
