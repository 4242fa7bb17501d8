//! RFC 9162 Merkle tree conformance against the transparency-dev/merkle vectors, plus properties.
//!
//! - `rfc6962_hasher.json`: leaf and empty-tree hashes (`rfc6962/rfc6962_test.go`).
//! - `reference_tree.json`: the eight reference leaves, the roots of sizes 1..8 and the known
//!   inclusion and consistency proofs (`proof/verify_test.go`). Our generator must reproduce
//!   every root and proof byte for byte.
//! - `inclusion_probes.json`, `consistency_probes.json`: the happy paths and every corruption
//!   `cmd/proofgen` derives from them (upstream `testdata/inclusion/**`, `testdata/consistency/**`).
//!   Positive probes must verify, negative ones must fail.
//! - `proof_nodes.json`: which stored nodes a proof needs (`proof/proof_test.go`); our generator
//!   must read exactly those.
//!
//! Provenance of every file: `testdata/vectors/merkle/SOURCE.md`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64ct::{Base64, Encoding};
use mandate_core::merkle::{
    EMPTY_ROOT, Hash, MemoryTree, MerkleError, NodeId, consistency_proof, inclusion_proof,
    leaf_hash, nodes_for_consistency, nodes_for_inclusion, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors/merkle")
}

fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn hex_bytes(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_hash(v: &Value) -> Hash {
    Hash::from_hex(v.as_str().unwrap()).unwrap()
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("`{key}` in {v}"))
}

/// A Go `[]byte` as encoding/json writes it: standard base64, `null` for nil.
fn go_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => Base64::decode_vec(s).unwrap(),
        other => panic!("not a byte string: {other}"),
    }
}

/// A byte string as a [`Hash`]; `None` when it is not 32 bytes long, which our typed API
/// cannot even express (upstream probes use such values as garbage).
fn go_hash(v: &Value) -> Option<Hash> {
    Hash::from_slice(&go_bytes(v))
}

fn go_proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(go_hash).collect(),
        other => panic!("not a proof: {other}"),
    }
}

struct Reference {
    leaves: Vec<Vec<u8>>,
    roots: Vec<Hash>,
    tree: MemoryTree,
    doc: Value,
}

fn reference() -> Reference {
    let doc = load("reference_tree.json");
    let leaves: Vec<Vec<u8>> = doc["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| hex_bytes(v.as_str().unwrap()))
        .collect();
    let roots = doc["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(hex_hash)
        .collect();
    let tree = MemoryTree::from_leaf_hashes(leaves.iter().map(|d| leaf_hash(d))).unwrap();
    Reference {
        leaves,
        roots,
        tree,
        doc,
    }
}

fn optional_hex_proof(v: &Value) -> Vec<Hash> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().map(hex_hash).collect(),
        other => panic!("not a proof: {other}"),
    }
}

#[test]
fn rfc6962_hasher_vectors() {
    let doc = load("rfc6962_hasher.json");
    assert_eq!(EMPTY_ROOT, hex_hash(&doc["empty_root"]));
    assert_eq!(MemoryTree::new().root().unwrap(), EMPTY_ROOT);
    let rows = doc["leaves"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let data = hex_bytes(row["data_hex"].as_str().unwrap());
        assert_eq!(leaf_hash(&data), hex_hash(&row["hash"]), "{}", row["desc"]);
    }
}

#[test]
fn reference_roots_for_sizes_one_to_eight() {
    let r = reference();
    assert_eq!(r.roots.len(), 8);
    assert_eq!(r.leaves.len(), 8);
    for (i, want) in r.roots.iter().enumerate() {
        let size = i as u64 + 1;
        assert_eq!(r.tree.root_at(size).unwrap(), *want, "size {size}");
        // The same root from a tree that holds exactly `size` leaves.
        let exact = MemoryTree::from_leaf_hashes(r.leaves[..=i].iter().map(|d| leaf_hash(d)));
        assert_eq!(exact.unwrap().root().unwrap(), *want, "size {size}");
    }
}

#[test]
fn generator_reproduces_reference_proofs_exactly() {
    let r = reference();
    let inclusion = r.doc["inclusion_proofs"].as_array().unwrap();
    assert_eq!(inclusion.len(), 5);
    for v in inclusion {
        let (index, size) = (u64_of(v, "leaf") - 1, u64_of(v, "size"));
        let want = optional_hex_proof(&v["proof"]);
        let got = r.tree.inclusion_proof(index, size).unwrap();
        assert_eq!(got, want, "inclusion {index} in {size}");
        let leaf = leaf_hash(&r.leaves[index as usize]);
        let root = r.roots[size as usize - 1];
        verify_inclusion(index, size, &leaf, &got, &root).unwrap();
    }
    let consistency = r.doc["consistency_proofs"].as_array().unwrap();
    assert_eq!(consistency.len(), 5);
    for v in consistency {
        let (old, new) = (u64_of(v, "size1"), u64_of(v, "size2"));
        let want = optional_hex_proof(&v["proof"]);
        let got = r.tree.consistency_proof(old, new).unwrap();
        assert_eq!(got, want, "consistency {old} to {new}");
        let (old_root, new_root) = (r.roots[old as usize - 1], r.roots[new as usize - 1]);
        verify_consistency(old, new, &old_root, &new_root, &got).unwrap();
    }
}

#[test]
fn inclusion_probes() {
    let doc = load("inclusion_probes.json");
    let probes = doc["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 98);
    let r = reference();
    let (mut accepted, mut rejected, mut untyped) = (0, 0, 0);
    for p in probes {
        let (index, size) = (u64_of(p, "leafIdx"), u64_of(p, "treeSize"));
        let want_err = p["wantErr"].as_bool().unwrap();
        let name = p["file"].as_str().unwrap();
        let (Some(root), Some(leaf), Some(proof)) = (
            go_hash(&p["root"]),
            go_hash(&p["leafHash"]),
            go_proof(&p["proof"]),
        ) else {
            // A hash that is not 32 bytes cannot be passed to the verifier at all.
            assert!(want_err, "{name}: a positive probe must be expressible");
            untyped += 1;
            continue;
        };
        let result = verify_inclusion(index, size, &leaf, &proof, &root);
        if want_err {
            assert!(result.is_err(), "{name}: verified a corrupted proof");
            rejected += 1;
        } else {
            assert_eq!(result, Ok(()), "{name}");
            accepted += 1;
            if name.ends_with("/happy-path.json") {
                assert_eq!(
                    r.tree.inclusion_proof(index, size).unwrap(),
                    proof,
                    "{name}"
                );
            } else {
                // single-entry: the one-leaf tree of "data".
                let tree = MemoryTree::from_leaf_hashes([leaf]).unwrap();
                assert_eq!(tree.inclusion_proof(index, size).unwrap(), proof, "{name}");
                assert_eq!(tree.root().unwrap(), root, "{name}");
            }
        }
    }
    assert_eq!((accepted, rejected, untyped), (6, 66, 26));
}

#[test]
fn consistency_probes() {
    let doc = load("consistency_probes.json");
    let probes = doc["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 98);
    let r = reference();
    let (mut accepted, mut rejected, mut untyped) = (0, 0, Vec::new());
    for p in probes {
        let (old, new) = (u64_of(p, "size1"), u64_of(p, "size2"));
        let want_err = p["wantErr"].as_bool().unwrap();
        let name = p["file"].as_str().unwrap();
        let (Some(old_root), Some(new_root), Some(proof)) = (
            go_hash(&p["root1"]),
            go_hash(&p["root2"]),
            go_proof(&p["proof"]),
        ) else {
            untyped.push((name.to_owned(), want_err));
            continue;
        };
        let result = verify_consistency(old, new, &old_root, &new_root, &proof);
        if want_err {
            assert!(result.is_err(), "{name}: verified a corrupted proof");
            rejected += 1;
        } else {
            assert_eq!(result, Ok(()), "{name}");
            assert_eq!(r.tree.consistency_proof(old, new).unwrap(), proof, "{name}");
            accepted += 1;
        }
    }
    // The only positive probe our types cannot express: upstream's sizes-equal check with the
    // 12-byte placeholder roots "don't care 2". Its 32-byte equivalent is checked below.
    let positive_untyped: Vec<&str> = untyped
        .iter()
        .filter(|(_, want_err)| !want_err)
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        positive_untyped,
        ["testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"]
    );
    let root = leaf_hash(b"any");
    verify_consistency(1, 1, &root, &root, &[]).unwrap();
    assert_eq!((accepted, rejected, untyped.len()), (5, 66, 27));
}

#[test]
fn generator_reads_exactly_the_upstream_node_sets() {
    let doc = load("proof_nodes.json");
    let ids = |v: &Value| -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let level = u8::try_from(pair[0].as_u64().unwrap()).unwrap();
                NodeId::new(level, pair[1].as_u64().unwrap())
            })
            .collect();
        ids.sort();
        ids
    };
    let dummy = |_: NodeId| Some(Hash([0u8; 32]));
    let cases = doc["inclusion"].as_array().unwrap();
    assert_eq!(cases.len(), 23);
    for c in cases {
        let (index, size) = (u64_of(c, "index"), u64_of(c, "size"));
        if c.get("error").is_some() {
            assert!(inclusion_proof(index, size, dummy).is_err(), "{c}");
            continue;
        }
        let mut got = nodes_for_inclusion(index, size);
        got.sort();
        assert_eq!(got, ids(&c["nodes"]), "inclusion {index} in {size}");
    }
    let cases = doc["consistency"].as_array().unwrap();
    assert_eq!(cases.len(), 27);
    for c in cases {
        let (old, new) = (u64_of(c, "size1"), u64_of(c, "size2"));
        if c.get("error").is_some() {
            assert!(consistency_proof(old, new, dummy).is_err(), "{c}");
            continue;
        }
        let mut got = nodes_for_consistency(old, new);
        got.sort();
        assert_eq!(got, ids(&c["nodes"]), "consistency {old} to {new}");
    }
}

fn tree_of(n: u64, salt: u64) -> (Vec<Hash>, MemoryTree) {
    let leaves: Vec<Hash> = (0..n)
        .map(|i| leaf_hash(&[salt.to_le_bytes(), i.to_le_bytes()].concat()))
        .collect();
    let tree = MemoryTree::from_leaf_hashes(leaves.iter().copied()).unwrap();
    (leaves, tree)
}

#[test]
fn every_pair_of_small_sizes_is_consistent() {
    let (_, tree) = tree_of(64, 7);
    for new in 0..=64u64 {
        let new_root = tree.root_at(new).unwrap();
        for old in 0..=new {
            let old_root = tree.root_at(old).unwrap();
            let proof = tree.consistency_proof(old, new).unwrap();
            verify_consistency(old, new, &old_root, &new_root, &proof)
                .unwrap_or_else(|e| panic!("{old} to {new}: {e}"));
        }
    }
}

#[test]
fn edge_cases_of_the_consistency_verifier() {
    let (_, tree) = tree_of(5, 1);
    let (r3, r5) = (tree.root_at(3).unwrap(), tree.root_at(5).unwrap());
    let some = leaf_hash(b"some");
    assert_eq!(
        verify_consistency(5, 3, &r5, &r3, &[]),
        Err(MerkleError::SizeOrder {
            old_size: 5,
            new_size: 3
        })
    );
    // The empty tree is extended by every tree, but its root is fixed and it needs no proof.
    verify_consistency(0, 5, &EMPTY_ROOT, &r5, &[]).unwrap();
    verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]).unwrap();
    assert_eq!(
        verify_consistency(0, 5, &some, &r5, &[]),
        Err(MerkleError::OldRootMismatch)
    );
    assert_eq!(
        verify_consistency(0, 5, &EMPTY_ROOT, &r5, &[some]),
        Err(MerkleError::ProofLength)
    );
    assert_eq!(
        verify_consistency(5, 5, &r5, &r3, &[]),
        Err(MerkleError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(3, 5, &r3, &r5, &[]),
        Err(MerkleError::ProofLength)
    );
    // Documented on verify_inclusion: a root alone does not fix the size. Leaf 0's proof in the
    // tree of 3 leaves also passes as a proof in a tree of 4 leaves with the same root.
    let (leaves, small) = tree_of(3, 2);
    let proof = small.inclusion_proof(0, 3).unwrap();
    let r3 = small.root().unwrap();
    verify_inclusion(0, 4, &leaves[0], &proof, &r3).unwrap();
    assert_eq!(
        verify_inclusion(0, 0, &some, &[], &EMPTY_ROOT),
        Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every inclusion proof of a tree of `n <= 300` leaves verifies, and fails once one byte is
    /// flipped, the index is moved, or the size is changed. With the *same* root a neighbouring
    /// size (`n ± 1`) can share the proof's shape and verify: a root does not commit to its
    /// size, which is why checkpoints sign both. So size changes are checked with the changed
    /// size's own root, plus the `2n` and `n / 2` changes of the upstream probes.
    #[test]
    fn inclusion_proofs_verify_and_tampering_fails(
        n in 1u64..=300,
        salt: u64,
        pick: u64,
        byte in 0usize..32,
        bit in 0u8..8,
    ) {
        let (leaves, tree) = tree_of(2 * n, salt);
        let root = tree.root_at(n).unwrap();
        for i in 0..n {
            let proof = tree.inclusion_proof(i, n).unwrap();
            prop_assert_eq!(verify_inclusion(i, n, &leaves[i as usize], &proof, &root), Ok(()));
        }
        let i = pick % n;
        let leaf = leaves[i as usize];
        let proof = tree.inclusion_proof(i, n).unwrap();
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = (pick as usize / 7) % bad.len();
            bad[at].0[byte] ^= 1 << bit;
            prop_assert!(verify_inclusion(i, n, &leaf, &bad, &root).is_err());
            prop_assert!(verify_inclusion(i, n, &leaf, &proof[1..], &root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(i, n, &leaf, &longer, &root).is_err());
        for wrong in [i ^ 1, i ^ 2, i.wrapping_sub(1), i + 1] {
            if wrong != i {
                prop_assert!(verify_inclusion(wrong, n, &leaf, &proof, &root).is_err());
            }
        }
        for size in [2 * n, n / 2] {
            if size != n {
                prop_assert!(verify_inclusion(i, size, &leaf, &proof, &root).is_err());
            }
        }
        for size in 1..=2 * n {
            if size != n && i < size {
                let other_root = tree.root_at(size).unwrap();
                prop_assert!(verify_inclusion(i, size, &leaf, &proof, &other_root).is_err());
            }
        }
    }

    /// Every consistency proof into a tree of `n <= 300` leaves verifies, and fails once one
    /// byte is flipped or a size is changed.
    #[test]
    fn consistency_proofs_verify_and_tampering_fails(
        n in 1u64..=300,
        salt: u64,
        pick: u64,
        byte in 0usize..32,
        bit in 0u8..8,
    ) {
        let (_, tree) = tree_of(2 * n, salt);
        let roots: Vec<Hash> = (0..=2 * n).map(|s| tree.root_at(s).unwrap()).collect();
        let new_root = roots[n as usize];
        for m in 0..=n {
            let proof = tree.consistency_proof(m, n).unwrap();
            prop_assert_eq!(
                verify_consistency(m, n, &roots[m as usize], &new_root, &proof),
                Ok(())
            );
        }
        let m = pick % n + 1;
        let old_root = roots[m as usize];
        let proof = tree.consistency_proof(m, n).unwrap();
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = (pick as usize / 7) % bad.len();
            bad[at].0[byte] ^= 1 << bit;
            prop_assert!(verify_consistency(m, n, &old_root, &new_root, &bad).is_err());
            prop_assert!(
                verify_consistency(m, n, &old_root, &new_root, &proof[..proof.len() - 1])
                    .is_err()
            );
        }
        let mut longer = proof.clone();
        longer.push(new_root);
        prop_assert!(verify_consistency(m, n, &old_root, &new_root, &longer).is_err());
        for (old, new) in [(m - 1, n), (m + 1, n), (m ^ 2, n), (m, 2 * n), (m, n / 2)] {
            if (old, new) != (m, n) {
                prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof).is_err());
            }
        }
        for new in m..=2 * n {
            if new != n {
                let other = roots[new as usize];
                prop_assert!(verify_consistency(m, new, &old_root, &other, &proof).is_err());
            }
        }
        if m != n {
            prop_assert!(verify_consistency(m, n, &new_root, &old_root, &proof).is_err());
        }
    }
}

/// `cargo test --release -p mandate-core --test merkle_vectors -- --ignored --nocapture`
#[test]
#[ignore = "timing; run in release"]
fn timing_at_one_million_leaves() {
    const N: u64 = 1 << 20;
    let hashes: Vec<Hash> = (0..N).map(|i| leaf_hash(&i.to_le_bytes())).collect();

    let start = Instant::now();
    let tree = MemoryTree::from_leaf_hashes(hashes.iter().copied()).unwrap();
    let root = tree.root().unwrap();
    let build = start.elapsed();

    const ROUNDS: u64 = 10_000;
    let start = Instant::now();
    let mut total = 0usize;
    for k in 0..ROUNDS {
        let index = (k * 104_729) % N;
        total += tree.inclusion_proof(index, N).unwrap().len();
    }
    let inclusion = start.elapsed() / ROUNDS as u32;

    let start = Instant::now();
    for k in 0..ROUNDS {
        let old = 1 + (k * 7_919) % (N - 1);
        total += tree.consistency_proof(old, N - 3).unwrap().len();
    }
    let consistency = start.elapsed() / ROUNDS as u32;

    let proof = tree.inclusion_proof(123_456, N).unwrap();
    verify_inclusion(123_456, N, &hashes[123_456], &proof, &root).unwrap();
    println!(
        "{N} leaves: build + root {build:?}; inclusion proof {inclusion:?}; \
         consistency proof {consistency:?} (avg over {ROUNDS}; {total} hashes)"
    );
}
