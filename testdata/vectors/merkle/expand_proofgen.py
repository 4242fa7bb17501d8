#!/usr/bin/env python3
"""Regenerates inclusion_probes.json and consistency_probes.json.

A line-by-line transcription of the probe rules of cmd/proofgen/main.go in
github.com/transparency-dev/merkle (commit 0e039277d77118c07aa643920617ab865274c7c0),
applied to the literal vectors of reference_tree.json (transcribed from proofgen's own
literals, which equal those of proof/verify_test.go). Each probe records the upstream file it
corresponds to (`file`, the path proofgen writes under testdata/), and byte strings are base64
exactly as Go's encoding/json writes []byte, so a probe can be compared with the upstream file.
Only Python's standard library is used. Run from this directory: python3 expand_proofgen.py
"""
import base64
import hashlib
import json

with open("reference_tree.json") as f:
    REF = json.load(f)

U64 = (1 << 64) - 1
SOME_HASH = bytes.fromhex(REF["sha256_some_hash"])
EMPTY_TREE_HASH = bytes.fromhex(REF["sha256_empty_tree_hash"])
ROOTS = [bytes.fromhex(h) for h in REF["roots"]]
LEAVES = [bytes.fromhex(h) for h in REF["leaves"]]


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def b64list(proof):
    return None if proof is None else [b64(p) for p in proof]


def file_name(desc):
    # fileName(): strings.NewReplacer(" - ", "-", "(", "", ")", "", " ", "-")
    out, i = [], 0
    while i < len(desc):
        if desc.startswith(" - ", i):
            out.append("-"); i += 3
        elif desc[i] in "()":
            i += 1
        elif desc[i] == " ":
            out.append("-"); i += 1
        else:
            out.append(desc[i]); i += 1
    return "".join(out) + ".json"


def extend(proof, *hashes):
    return list(proof or []) + list(hashes)


def prepend(proof, *hashes):
    return list(hashes) + list(proof or [])


def inc(d, leaf_idx, size, root, lh, proof, desc, want_err):
    return {"file": f"testdata/inclusion/{d}/{file_name(desc)}", "leafIdx": leaf_idx & U64,
            "treeSize": size & U64, "root": b64(root), "leafHash": b64(lh),
            "proof": b64list(proof), "desc": desc, "wantErr": want_err}


def inclusion_probes():
    out = []
    for i, v in enumerate(REF["inclusion_proofs"]):
        leaf1, size = v["leaf"], v["size"]  # leaf is 1-based, as in the Go literals
        proof = None if v["proof"] is None else [bytes.fromhex(h) for h in v["proof"]]
        idx = leaf1 - 1
        root = ROOTS[size - 1]
        lh = leaf_hash(LEAVES[idx])
        out.append(inc(i, idx, size, root, lh, proof, "happy path", False))
        probes = [
            (idx - 1, size, root, lh, proof, "leafIdx sub @1"),
            (idx + 1, size, root, lh, proof, "leafIdx plus @1"),
            (idx ^ 2, size, root, lh, proof, "leafIdx XOR @2"),
            (idx, size * 2, root, lh, proof, "treeSize mul @2"),
            (idx, size // 2, root, lh, proof, "treeSize div @2"),
            (idx, size, root, b"WrongLeaf", proof, "wrong leaf"),
            (idx, size, EMPTY_TREE_HASH, lh, proof, "empty root"),
            (idx, size, SOME_HASH, lh, proof, "random root"),
            (idx, size, root, lh, extend(proof, b""), "trailing garbage"),
            (idx, size, root, lh, extend(proof, root), "trailing root"),
            (idx, size, root, lh, prepend(proof, b""), "preceding garbage"),
            (idx, size, root, lh, prepend(proof, root), "preceding root"),
        ]
        ln = len(proof or [])
        for j in range(ln):
            wrong = list(proof)
            wrong[j] = bytes([wrong[j][0] ^ 8]) + wrong[j][1:]
            probes.append((idx, size, root, lh, wrong, f"modified proof[{j}] bit @3"))
        if ln > 0:
            probes.append((idx, size, root, lh, proof[: ln - 1], "removed component"))
        if ln > 1:
            probes.append((idx, size, root, lh, prepend(proof[1:], proof[0], SOME_HASH),
                           "inserted component"))
        for p in probes:
            out.append(inc(i, *p, True))
    for i, (index, size) in enumerate([(0, 0), (0, 1), (1, 0), (2, 1)]):
        d = f"additional/{i}"
        out.append(inc(d, index, size, b"", SOME_HASH, [], "random leaf", True))
        out.append(inc(d, index, size, EMPTY_TREE_HASH, b"", [], "empty root", True))
        out.append(inc(d, index, size, EMPTY_TREE_HASH, SOME_HASH, [],
                       "empty root and random leaf", True))
    h = leaf_hash(b"data")
    for root, lh, desc, want_err in [(h, h, "matching root and leaf", False),
                                     (h, b"", "empty leaf", True),
                                     (b"", h, "empty root", True),
                                     (b"", b"", "empty root and leaf", True)]:
        out.append(inc("single-entry", 0, 1, root, lh, [], desc, want_err))
    return out


def con(d, s1, s2, r1, r2, proof, desc, want_err):
    return {"file": f"testdata/consistency/{d}/{file_name(desc)}", "size1": s1 & U64,
            "size2": s2 & U64, "root1": b64(r1), "root2": b64(r2),
            "proof": b64list(proof), "desc": desc, "wantErr": want_err}


def consistency_probes():
    out = []
    for i, v in enumerate(REF["consistency_proofs"]):
        s1, s2 = v["size1"], v["size2"]
        proof = None if v["proof"] is None else [bytes.fromhex(h) for h in v["proof"]]
        r1, r2 = ROOTS[s1 - 1], ROOTS[s2 - 1]
        out.append(con(i, s1, s2, r1, r2, proof, "happy path", False))
        if not proof:
            continue
        ln = len(proof)
        probes = [
            (s1 - 1, s2, r1, r2, proof, "size1 sub @1"),
            (s1 + 1, s2, r1, r2, proof, "size1 plus @1"),
            (s1 ^ 2, s2, r1, r2, proof, "size1 XOR @2"),
            (s1, s2 * 2, r1, r2, proof, "size2 mul @2"),
            (s1, s2 // 2, r1, r2, proof, "size2 div @2"),
            (s1, s2, b"WrongRoot", r2, proof, "wrong root1"),
            (s1, s2, r1, b"WrongRoot", proof, "wrong root2"),
            (s1, s2, r2, r1, proof, "swapped roots"),
            (s1, s2, r1, r2, [], "empty proof"),
            (s1, s2, r1, r2, extend(proof, b""), "trailing garbage"),
            (s1, s2, r1, r2, extend(proof, r1), "trailing root1"),
            (s1, s2, r1, r2, extend(proof, r2), "trailing root2"),
            (s1, s2, r1, r2, prepend(proof, b""), "preceding garbage"),
            (s1, s2, r1, r2, prepend(proof, r1), "preceding root1"),
            (s1, s2, r1, r2, prepend(proof, r2), "preceding root2"),
            (s1, s2, r1, r2, prepend(proof, proof[0]), "preceding proof @0"),
        ]
        probes.append((s1, s2, r1, r2, proof[: ln - 1], "truncated proof"))
        for j in range(ln):
            wrong = list(proof)
            wrong[j] = bytes([wrong[j][0] ^ 16]) + wrong[j][1:]
            probes.append((s1, s2, r1, r2, wrong, f"modified proof@{j} bit @4"))
        for p in probes:
            out.append(con(i, *p, True))
    root1, root2 = b"don't care 1", b"don't care 2"
    p1, p2 = [], [EMPTY_TREE_HASH]
    E = EMPTY_TREE_HASH
    for s1, s2, r1, r2, proof, desc, want_err in [
        (0, 0, root1, root2, p1, "sizes are equal (zero) but roots are not", True),
        (1, 1, root1, root2, p1, "sizes are equal (one) but roots are not", True),
        (0, 0, root1, root1, p1, "sizes are equal (zero) and proof is empty", True),
        (0, 1, root1, root2, p1, "size1 is zero and does not equal size2", True),
        (1, 1, root2, root2, p1, "sizes are equal (one) and proof is empty", False),
        (1, 0, root1, root2, p1, "size1 is greater than size2", True),
        (2, 1, root1, root2, p1, "size1 is greater than size2 again", True),
        (1, 2, root1, root2, p1, "sizes do not watch and proof is empty", True),
        (0, 0, E, root2, p1, "roots do not match and sizes are zero", True),
        (1, 1, E, root2, p1, "roots do not not match and sizes are one", True),
        (0, 0, E, E, p2, "sizes match but proof is not empty and sizes are zero", True),
        (1, 1, E, E, p2, "sizes match but proof is not empty and sizes are one", True),
        (0, 1, E, root2, p1, "size1 is zero and size2 is not zero", True),
        (0, 1, E, E, p2, "consistency check on empty tree (size1 is zero) is useless", True),
    ]:
        out.append(con("additional", s1, s2, r1, r2, proof, desc, want_err))
    return out


def write(name, probes, note):
    doc = {"note": note, "probes": probes}
    with open(name, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    note = ("Expanded by expand_proofgen.py from reference_tree.json with the probe rules of "
            "transparency-dev/merkle cmd/proofgen/main.go; see SOURCE.md")
    write("inclusion_probes.json", inclusion_probes(), note)
    write("consistency_probes.json", consistency_probes(), note)
