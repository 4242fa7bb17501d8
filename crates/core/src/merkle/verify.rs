//! Proof verification, transcribed step by step from RFC 9162 §2.1.3.2 and §2.1.4.2.
//!
//! Deliberately independent of the generator in `tree.rs`: only [`node_hash`] is shared, so a
//! mistake in the tree arithmetic cannot hide itself by being made twice.

use super::{EMPTY_ROOT, Hash, MerkleError, node_hash};

/// Checks that `leaf_hash` is leaf number `index` of the tree of `size` leaves with root `root`.
///
/// A root does not by itself fix the tree size: a proof for leaf `index` of a tree of `size`
/// leaves can also pass, against the same root, for a neighbouring size whose paths have the
/// same shape (leaf 0 of 3 leaves and of 4 leaves, for instance). Take `size` and `root`
/// together from one signed checkpoint, never from separate sources.
///
/// RFC 9162 §2.1.3.2, "Verifying an Inclusion Proof": "When a client has received an inclusion
/// proof (e.g., in a TransItem of type inclusion_proof_v2) and wishes to verify inclusion of an
/// input hash for a given tree_size and root_hash, the following algorithm may be used to prove
/// the hash was included in the root_hash:"
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    // "1. Compare leaf_index from the inclusion_proof_v2 structure against tree_size. If
    //  leaf_index is greater than or equal to tree_size, then fail the proof verification."
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // "2. Set fn to leaf_index and sn to tree_size - 1."
    let (mut f_n, mut s_n) = (index, size - 1);
    // "3. Set r to hash."
    let mut r = *leaf_hash;
    // "4. For each value p in the inclusion_path array:"
    for p in proof {
        // "a. If sn is 0, then stop the iteration and fail the proof verification."
        if s_n == 0 {
            return Err(MerkleError::ProofLength);
        }
        // "b. If LSB(fn) is set, or if fn is equal to sn, then:"
        if lsb(f_n) || f_n == s_n {
            // "i. Set r to HASH(0x01 || p || r)."
            r = node_hash(p, &r);
            // "ii. If LSB(fn) is not set, then right-shift both fn and sn equally until either
            //  LSB(fn) is set or fn is 0."
            if !lsb(f_n) {
                loop {
                    f_n >>= 1;
                    s_n >>= 1;
                    if lsb(f_n) || f_n == 0 {
                        break;
                    }
                }
            }
        } else {
            // "Otherwise: i. Set r to HASH(0x01 || r || p)."
            r = node_hash(&r, p);
        }
        // "c. Finally, right-shift both fn and sn one time."
        f_n >>= 1;
        s_n >>= 1;
    }
    // "5. Compare sn to 0. Compare r against the root_hash. If sn is equal to 0 and r and the
    //  root_hash are equal, then the log has proven the inclusion of hash. Otherwise, fail the
    //  proof verification."
    if s_n != 0 {
        return Err(MerkleError::ProofLength);
    }
    if r != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`.
///
/// The RFC algorithm covers `0 < old_size < new_size`. Outside it: a larger old tree is refused;
/// equal sizes need an empty proof and equal roots; the empty tree (root [`EMPTY_ROOT`]) is
/// extended by every tree, with an empty proof.
///
/// RFC 9162 §2.1.4.2, "Verifying Consistency between Two Tree Heads": "When a client has a tree
/// head first_hash for tree size first, a tree head second_hash for tree size second where
/// 0 < first < second, and has received a consistency proof between the two, the following
/// algorithm may be used to verify the consistency proof:"
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizeOrder { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(MerkleError::ProofLength);
        }
        if old_size == 0 && *old_root != EMPTY_ROOT {
            return Err(MerkleError::OldRootMismatch);
        }
        if old_size == new_size && old_root != new_root {
            return Err(MerkleError::RootMismatch);
        }
        return Ok(());
    }
    let (first, second) = (old_size, new_size);
    // "1. If consistency_path is an empty array, stop and fail the proof verification."
    if proof.is_empty() {
        return Err(MerkleError::ProofLength);
    }
    // "2. If first is an exact power of 2, then prepend first_hash to the consistency_path
    //  array."
    let mut path = first
        .is_power_of_two()
        .then_some(old_root)
        .into_iter()
        .chain(proof);
    // "3. Set fn to first - 1 and sn to second - 1."
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    // "4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set."
    while lsb(f_n) {
        f_n >>= 1;
        s_n >>= 1;
    }
    // "5. Set both fr and sr to the first value in the consistency_path array."
    let Some(&first_value) = path.next() else {
        return Err(MerkleError::ProofLength);
    };
    let (mut f_r, mut s_r) = (first_value, first_value);
    // "6. For each subsequent value c in the consistency_path array:"
    for c in path {
        // "a. If sn is 0, then stop the iteration and fail the proof verification."
        if s_n == 0 {
            return Err(MerkleError::ProofLength);
        }
        // "b. If LSB(fn) is set, or if fn is equal to sn, then:"
        if lsb(f_n) || f_n == s_n {
            // "i. Set fr to HASH(0x01 || c || fr)."
            f_r = node_hash(c, &f_r);
            // "ii. Set sr to HASH(0x01 || c || sr)."
            s_r = node_hash(c, &s_r);
            // "iii. If LSB(fn) is not set, then right-shift both fn and sn equally until either
            //  LSB(fn) is set or fn is 0."
            if !lsb(f_n) {
                loop {
                    f_n >>= 1;
                    s_n >>= 1;
                    if lsb(f_n) || f_n == 0 {
                        break;
                    }
                }
            }
        } else {
            // "Otherwise: i. Set sr to HASH(0x01 || sr || c)."
            s_r = node_hash(&s_r, c);
        }
        // "c. Finally, right-shift both fn and sn one time."
        f_n >>= 1;
        s_n >>= 1;
    }
    // "7. After completing iterating through the consistency_path array as described above,
    //  verify that the fr calculated is equal to the first_hash supplied, that the sr
    //  calculated is equal to the second_hash supplied, and that sn is 0."
    if s_n != 0 {
        return Err(MerkleError::ProofLength);
    }
    if f_r != *old_root {
        return Err(MerkleError::OldRootMismatch);
    }
    if s_r != *new_root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// `LSB(x)`: whether the least significant bit of `x` is set.
fn lsb(x: u64) -> bool {
    x & 1 == 1
}
