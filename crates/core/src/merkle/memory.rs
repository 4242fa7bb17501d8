//! An in-memory tree in the store's layout, for tests and for checking an export offline.

use super::tree::{consistency_proof, inclusion_proof, nodes_completed_by_append, root};
use super::{Hash, MerkleError, NodeId};

/// The complete subtrees of a tree, one vector per level (`levels[l][i]` is node `(l, i)`),
/// grown with the same [`nodes_completed_by_append`] the ledger's integration step uses.
///
/// Appending `n` leaves costs `n` leaf rows plus fewer than `n` interior hashes; memory is about
/// `2 · n · 32` bytes.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree holding `leaf_hashes` in order (each already a leaf hash, see
    /// [`leaf_hash`](super::leaf_hash)).
    pub fn from_leaf_hashes(
        leaf_hashes: impl IntoIterator<Item = Hash>,
    ) -> Result<Self, MerkleError> {
        let mut tree = Self::new();
        for leaf in leaf_hashes {
            tree.append(leaf)?;
        }
        Ok(tree)
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Appends a leaf hash.
    pub fn append(&mut self, leaf: Hash) -> Result<(), MerkleError> {
        let rows = nodes_completed_by_append(self.size(), leaf, |id| self.node(id))?;
        // INVARIANT: the rows come lowest level first, one per level, and row (l, i) has
        // i == levels[l].len(), so pushing keeps `levels[l][i]` equal to node (l, i).
        for (id, hash) in rows {
            match self.levels.get_mut(usize::from(id.level)) {
                Some(level) => level.push(hash),
                None => self.levels.push(vec![hash]),
            }
        }
        Ok(())
    }

    /// The hash of complete node `id`, if the tree holds it.
    pub fn node(&self, id: NodeId) -> Option<Hash> {
        let level = self.levels.get(usize::from(id.level))?;
        level.get(usize::try_from(id.index).ok()?).copied()
    }

    /// The current root.
    pub fn root(&self) -> Result<Hash, MerkleError> {
        root(self.size(), |id| self.node(id))
    }

    /// The root the tree had at `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        self.check_size(size)?;
        root(size, |id| self.node(id))
    }

    /// The inclusion proof of leaf `index` in the tree as it was at `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(size)?;
        inclusion_proof(index, size, |id| self.node(id))
    }

    /// The consistency proof between the tree at `old_size` and at `new_size` leaves.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(new_size)?;
        consistency_proof(old_size, new_size, |id| self.node(id))
    }

    fn check_size(&self, size: u64) -> Result<(), MerkleError> {
        if size > self.size() {
            return Err(MerkleError::BeyondTree {
                requested: size,
                size: self.size(),
            });
        }
        Ok(())
    }
}
