//! Unit tests: the generator against the RFC recursions, append rows, read sets, encodings.

use sha2::{Digest, Sha256};

use super::*;

/// RFC 9162 §2.1.1 MTH, written as the plain recursion over a list of leaf hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash(Sha256::digest(b"").into()),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.1 PATH, as written.
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF, as written.
fn subproof(m: usize, leaves: &[Hash], known: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if known { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = largest_power_of_two_below(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], known);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn leaves(n: u32) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
}

#[test]
fn empty_root_is_sha256_of_nothing() {
    assert_eq!(EMPTY_ROOT.0, <[u8; 32]>::from(Sha256::digest(b"")));
    assert_eq!(MemoryTree::new().root().unwrap(), EMPTY_ROOT);
    assert_eq!(root(0, |_| None).unwrap(), EMPTY_ROOT);
}

#[test]
fn hash_encodings_round_trip_and_are_strict() {
    let h = leaf_hash(b"x");
    assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
    assert_eq!(Hash::from_base64(&h.to_base64()), Some(h));
    assert_eq!(Hash::from_slice(h.as_bytes()), Some(h));
    assert_eq!(Hash::from_slice(&[0u8; 31]), None);
    assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), None);
    // 32 bytes need 43 symbols + "=", and the last symbol carries 2 padding bits.
    let zero = Hash([0u8; 32]).to_base64();
    assert_eq!(zero, format!("{}=", "A".repeat(43)));
    assert_eq!(Hash::from_base64(&format!("{}B=", "A".repeat(42))), None);
    assert_eq!(Hash::from_base64(&"A".repeat(43)), None);
    assert_eq!(Hash::from_base64(&format!(" {zero}")), None);
}

#[test]
fn generator_matches_the_rfc_recursions() {
    let all = leaves(70);
    let tree = MemoryTree::from_leaf_hashes(all.iter().copied()).unwrap();
    for n in 0..=all.len() {
        let d = &all[..n];
        let size = n as u64;
        assert_eq!(tree.root_at(size).unwrap(), mth(d), "root {n}");
        for m in 0..n {
            assert_eq!(
                tree.inclusion_proof(m as u64, size).unwrap(),
                path(m, d),
                "path {m} {n}"
            );
        }
        for m in 1..n {
            assert_eq!(
                tree.consistency_proof(m as u64, size).unwrap(),
                subproof(m, d, true),
                "proof {m} {n}"
            );
        }
    }
}

#[test]
fn append_writes_the_leaf_and_every_completed_subtree() {
    let all = leaves(8);
    let tree = MemoryTree::from_leaf_hashes(all[..7].iter().copied()).unwrap();
    let rows = nodes_completed_by_append(7, all[7], |id| tree.node(id)).unwrap();
    let ids: Vec<NodeId> = rows.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        [
            NodeId::new(0, 7),
            NodeId::new(1, 3),
            NodeId::new(2, 1),
            NodeId::new(3, 0)
        ]
    );
    assert_eq!(rows[3].1, mth(&all));
    assert_eq!(rows[2].1, mth(&all[4..]));

    let rows = nodes_completed_by_append(6, all[6], |id| tree.node(id)).unwrap();
    assert_eq!(rows, [(NodeId::new(0, 6), all[6])]);
    assert_eq!(
        nodes_completed_by_append(u64::MAX, all[0], |_| None),
        Err(MerkleError::TreeFull)
    );
}

#[test]
fn a_missing_complete_node_is_reported_not_papered_over() {
    let tree = MemoryTree::from_leaf_hashes(leaves(6)).unwrap();
    let gap = NodeId::new(1, 2);
    let get = |id: NodeId| if id == gap { None } else { tree.node(id) };
    assert_eq!(root(6, get), Err(MerkleError::MissingNode(gap)));
    assert_eq!(
        inclusion_proof(0, 6, get),
        Err(MerkleError::MissingNode(gap))
    );
    assert_eq!(
        consistency_proof(1, 6, get),
        Err(MerkleError::MissingNode(gap))
    );
    assert_eq!(
        nodes_completed_by_append(6, leaf_hash(b"7"), |id| if id == NodeId::new(0, 5) {
            None
        } else {
            tree.node(id)
        }),
        Ok(vec![(NodeId::new(0, 6), leaf_hash(b"7"))]),
        "leaf 6 is a left child: it completes nothing and reads nothing"
    );
}

#[test]
fn reads_stay_logarithmic_for_huge_trees() {
    for size in [
        1u64,
        2,
        3,
        1 << 20,
        (1 << 20) + 12_345,
        u64::MAX >> 1,
        u64::MAX,
    ] {
        assert!(nodes_for_root(size).len() <= 64);
        for index in [0, size / 3, size - 1] {
            let reads = nodes_for_inclusion(index, size);
            assert!(reads.len() <= 2 * 64, "{index} {size}: {}", reads.len());
            let reads = nodes_for_consistency(index + 1, size);
            assert!(reads.len() <= 2 * 64 + 1, "{index} {size}: {}", reads.len());
        }
    }
    assert_eq!(nodes_for_root(u64::MAX).len(), 64);
    assert!(nodes_for_inclusion(5, 5).is_empty());
    assert!(nodes_for_consistency(6, 5).is_empty());
}

#[test]
fn node_ids_cover_their_leaves() {
    assert_eq!(NodeId::new(0, 5).leaf_range(), Some(5..6));
    assert_eq!(NodeId::new(3, 2).leaf_range(), Some(16..24));
    assert_eq!(NodeId::new(63, 1).leaf_range(), None);
    assert_eq!(NodeId::new(64, 0).leaf_range(), None);
}

#[test]
fn memory_tree_refuses_sizes_it_does_not_hold() {
    let tree = MemoryTree::from_leaf_hashes(leaves(3)).unwrap();
    let beyond = MerkleError::BeyondTree {
        requested: 4,
        size: 3,
    };
    assert_eq!(tree.root_at(4), Err(beyond.clone()));
    assert_eq!(tree.inclusion_proof(0, 4), Err(beyond.clone()));
    assert_eq!(tree.consistency_proof(1, 4), Err(beyond));
    assert_eq!(
        tree.inclusion_proof(3, 3),
        Err(MerkleError::IndexOutOfRange { index: 3, size: 3 })
    );
    assert_eq!(
        tree.consistency_proof(3, 2),
        Err(MerkleError::SizeOrder {
            old_size: 3,
            new_size: 2
        })
    );
}
