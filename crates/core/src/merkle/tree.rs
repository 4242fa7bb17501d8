//! Tree arithmetic over stored complete subtrees: append, root and proof generation.
//!
//! Every function reads complete nodes through `get` and nothing else. A subtree on the ragged
//! right edge (leaves `[lo, hi)` with `hi - lo` not a power of two) is folded from the complete
//! subtrees it splits into, one per set bit of `hi - lo`. Each proof contains at most one such
//! subtree, so a proof costs at most about `2 · log2(n)` reads and as many hashes.

use std::cell::RefCell;

use super::{EMPTY_ROOT, Hash, MerkleError, NodeId, node_hash};

/// The rows to write when leaf number `size_before` (0-based) with hash `leaf` is appended to a
/// tree of `size_before` leaves: the leaf node `(0, size_before)`, then every subtree that the
/// leaf completes, lowest first. Reads the left sibling of each completed subtree through `get`.
pub fn nodes_completed_by_append(
    size_before: u64,
    leaf: Hash,
    get: impl Fn(NodeId) -> Option<Hash>,
) -> Result<Vec<(NodeId, Hash)>, MerkleError> {
    if size_before == u64::MAX {
        return Err(MerkleError::TreeFull);
    }
    let mut out = Vec::with_capacity(1 + size_before.trailing_ones() as usize);
    out.push((NodeId::new(0, size_before), leaf));
    let (mut level, mut index, mut hash) = (0u8, size_before, leaf);
    // Node (level, index) is a right child exactly when `index` is odd; then its parent becomes
    // complete now, and its left sibling (level, index - 1) was completed earlier.
    while index & 1 == 1 {
        let left = NodeId::new(level, index - 1);
        hash = node_hash(&fetch(&get, left)?, &hash);
        level += 1;
        index >>= 1;
        out.push((NodeId::new(level, index), hash));
    }
    Ok(out)
}

/// The root of the tree of `size` leaves: [`EMPTY_ROOT`] for 0, otherwise `MTH(D[0:size])`
/// (RFC 9162 §2.1.1), read from one complete node per set bit of `size`.
pub fn root(size: u64, get: impl Fn(NodeId) -> Option<Hash>) -> Result<Hash, MerkleError> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    subtree_hash(0, size, &get)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
///
/// RFC 9162 §2.1.3.1: "Given an ordered list of n inputs to the tree, D_n = {d[0], d[1], ...,
/// d[n-1]}, the Merkle inclusion proof PATH(m, D_n) for the (m+1)th input d[m], 0 <= m < n, is
/// defined as follows:
///
/// The proof for the single leaf in a tree with a one-element input list D[1] = {d[0]} is
/// empty: `PATH(0, {d[0]}) = {}`
///
/// For n > 1, let k be the largest power of two smaller than n. The proof for the (m+1)th
/// element d[m] in a list of n > m elements is then defined recursively as
/// `PATH(m, D_n) = PATH(m, D[0:k]) : MTH(D[k:n])` for m < k; and
/// `PATH(m, D_n) = PATH(m - k, D[k:n]) : MTH(D[0:k])` for m >= k"
///
/// The recursion is unrolled top-down; since `:` appends, the hashes come out root-side first
/// and are reversed at the end.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    get: impl Fn(NodeId) -> Option<Hash>,
) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let (mut lo, mut hi) = (0u64, size);
    let mut proof = Vec::with_capacity(64);
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        if index - lo < k {
            proof.push(subtree_hash(lo + k, hi, &get)?);
            hi = lo + k;
        } else {
            proof.push(subtree_hash(lo, lo + k, &get)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof from the tree of `old_size` leaves to the tree of `new_size` leaves.
/// It is empty when `old_size` is 0 or equal to `new_size` (every tree extends the empty tree,
/// and a tree is consistent with itself).
///
/// RFC 9162 §2.1.4.1: "`PROOF(m, D_n) = SUBPROOF(m, D_n, true)`
///
/// In SUBPROOF, the boolean value represents whether the subtree created from D[0:m] is a
/// complete subtree of the Merkle Tree created from D_n, and, consequently, whether the subtree
/// Merkle Tree Hash MTH(D[0:m]) is known. The initial call to SUBPROOF sets this to be true,
/// and SUBPROOF is then defined as follows:
///
/// The subproof for m = n is empty if m is the value for which PROOF was originally requested
/// (meaning that the subtree Merkle Tree Hash MTH(D[0:m]) is known):
/// `SUBPROOF(m, D_m, true) = {}`
///
/// Otherwise, the subproof for m = n is the Merkle Tree Hash committing inputs D[0:m]:
/// `SUBPROOF(m, D_m, false) = {MTH(D_m)}`
///
/// For m < n, let k be the largest power of two smaller than n. The subproof is then defined
/// recursively, using the appropriate step below:
///
/// If m <= k, the right subtree entries D[k:n] only exist in the current tree. We prove that
/// the left subtree entries D[0:k] are consistent and add a commitment to D[k:n]:
/// `SUBPROOF(m, D_n, b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])`
///
/// If m > k, the right subtree entries D[k:n] are identical in both trees. We prove that the
/// right subtree entries D[k:n] are consistent and add a commitment to D[0:k]:
/// `SUBPROOF(m, D_n, b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])`"
///
/// As for [`inclusion_proof`], the recursion is unrolled top-down and the result reversed.
pub fn consistency_proof(
    old_size: u64,
    new_size: u64,
    get: impl Fn(NodeId) -> Option<Hash>,
) -> Result<Vec<Hash>, MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizeOrder { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // The current sublist is D[lo:hi]; `m` is `old_size - lo`, so "m = n" is `old_size == hi`.
    let (mut lo, mut hi, mut known) = (0u64, new_size, true);
    let mut proof = Vec::with_capacity(64);
    while old_size != hi {
        let k = largest_power_of_two_below(hi - lo);
        if old_size - lo <= k {
            proof.push(subtree_hash(lo + k, hi, &get)?);
            hi = lo + k;
        } else {
            proof.push(subtree_hash(lo, lo + k, &get)?);
            lo += k;
            known = false;
        }
    }
    if !known {
        proof.push(subtree_hash(lo, hi, &get)?);
    }
    proof.reverse();
    Ok(proof)
}

/// The complete nodes [`root`] reads for `size`, in the order it reads them.
pub fn nodes_for_root(size: u64) -> Vec<NodeId> {
    record_reads(|get| root(size, get).map(|_| ()))
}

/// The complete nodes [`inclusion_proof`] reads, in order; empty when the arguments are refused.
pub fn nodes_for_inclusion(index: u64, size: u64) -> Vec<NodeId> {
    record_reads(|get| inclusion_proof(index, size, get).map(|_| ()))
}

/// The complete nodes [`consistency_proof`] reads, in order; empty when the arguments are
/// refused.
pub fn nodes_for_consistency(old_size: u64, new_size: u64) -> Vec<NodeId> {
    record_reads(|get| consistency_proof(old_size, new_size, get).map(|_| ()))
}

/// Runs `run` against a store that has every node (all hashes zero) and lists what it read. Which
/// nodes the functions above read depends only on the sizes, never on hash values, so this is
/// the exact read set of a real run, and it cannot drift from the code it describes.
fn record_reads(
    run: impl FnOnce(&dyn Fn(NodeId) -> Option<Hash>) -> Result<(), MerkleError>,
) -> Vec<NodeId> {
    let reads = RefCell::new(Vec::new());
    let get = |id: NodeId| {
        reads.borrow_mut().push(id);
        Some(Hash([0u8; 32]))
    };
    match run(&get) {
        Ok(()) => reads.into_inner(),
        Err(_) => Vec::new(),
    }
}

/// `MTH(D[lo:hi])` for `lo < hi` where `lo` is a multiple of the smallest power of two
/// `>= hi - lo`, which holds for every sublist the RFC recursions visit. It splits into the
/// complete subtrees given by the set bits of `hi - lo`, largest first; by the definition of MTH
/// (split at the largest power of two below the length) the hash is their right fold.
fn subtree_hash(
    lo: u64,
    hi: u64,
    get: &impl Fn(NodeId) -> Option<Hash>,
) -> Result<Hash, MerkleError> {
    let len = hi - lo;
    let mut parts = Vec::with_capacity(len.count_ones() as usize);
    let mut start = lo;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if len & width != 0 {
            parts.push(fetch(get, NodeId::new(level, start >> level))?);
            start += width;
        }
    }
    // An empty range (never asked for) would fold to MTH({}), the empty root.
    Ok(parts
        .into_iter()
        .rev()
        .reduce(|right, left| node_hash(&left, &right))
        .unwrap_or(EMPTY_ROOT))
}

fn fetch(get: &impl Fn(NodeId) -> Option<Hash>, id: NodeId) -> Result<Hash, MerkleError> {
    get(id).ok_or(MerkleError::MissingNode(id))
}

/// The largest power of two strictly below `n`, for `n >= 2` (`k < n <= 2k`).
fn largest_power_of_two_below(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}
