#!/usr/bin/env python3
"""Independent check of a Mandate ledger, sharing no code with Mandate.

Uses only the standard library and stock `cryptography` (Ed25519), plus its own RFC 9162
hashing. Given files saved from a server:

  --export FILE        JSON lines, one {"seq", "hash", "receipt"} item per line (`mandate audit export`)
  --checkpoint FILE    a C2SP signed note (GET /v1/ledger/checkpoint)
  --verifier-key FILE  the note verifier key <name>+<key id>+<base64> (GET /v1/ledger/verifier-key)
  --inclusion FILE     optional: an inclusion proof (GET /v1/ledger/proof/inclusion), JSON

it verifies the checkpoint's note signature, every receipt's hash (sha256 over the RFC 8785
form) and `prev` link, recomputes the Merkle root of the first `size` receipts (leaf data = the
32-byte receipt hash) and compares it with the signed one, and checks the inclusion proof against
the signed root. Exits 0 and prints "ok" lines, or exits 1 naming the first failure.
"""

import argparse
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


# --- RFC 9162 §2.1 -------------------------------------------------------------------------


def leaf_hash(data):
    """MTH({d[0]}) = SHA-256(0x00 || d[0])."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """MTH(D_n) of a list of leaf hashes, iteratively (split at the largest power of two < n)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    # Pairing left to right and carrying an odd last node up equals the recursive definition.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# --- C2SP signed-note and tlog-checkpoint --------------------------------------------------


def parse_verifier_key(text):
    name, key_id, key = text.strip().split("+", 2)
    typed = base64.b64decode(key, validate=True)
    if typed[0] != 0x01 or len(typed) != 33:
        raise ValueError("not an Ed25519 verifier key")
    if hashlib.sha256(name.encode() + b"\n" + typed).digest()[:4] != bytes.fromhex(key_id):
        raise ValueError("verifier key id does not match its name and key")
    return name, bytes.fromhex(key_id), Ed25519PublicKey.from_public_bytes(typed[1:])


def open_checkpoint(note, name, key_id, key):
    split = note.rindex("\n\n")
    body, signatures = note[: split + 1], note[split + 2 :]
    verified = False
    for line in signatures.splitlines():
        signer, sig = line.removeprefix("\u2014 ").split(" ")
        raw = base64.b64decode(sig, validate=True)
        if signer == name and raw[:4] == key_id:
            key.verify(raw[4:], body.encode())  # raises InvalidSignature
            verified = True
    if not verified:
        raise ValueError("no signature by the trusted key")
    origin, size, root = body.split("\n")[:3]
    return origin, int(size), base64.b64decode(root, validate=True)


# --- the export ----------------------------------------------------------------------------


def jcs(value):
    """RFC 8785 for receipts: objects, arrays, strings, safe integers and null only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def read_export(path):
    hashes, prev = [], "0" * 64
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(l for l in f if l.strip()):
            item = json.loads(line)
            receipt = item["receipt"]
            if item["seq"] != n + 1 or receipt["seq"] != n + 1:
                raise ValueError(f"line {n + 1}: expected receipt {n + 1}")
            if hashlib.sha256(jcs(receipt)).hexdigest() != item["hash"]:
                raise ValueError(f"receipt {n + 1}: content does not match its hash")
            if receipt["prev"] != prev:
                raise ValueError(f"receipt {n + 1}: prev does not link to the previous receipt")
            prev = item["hash"]
            hashes.append(bytes.fromhex(item["hash"]))
    return hashes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--verifier-key", required=True)
    ap.add_argument("--inclusion")
    args = ap.parse_args()
    try:
        with open(args.verifier_key, encoding="utf-8") as f:
            name, key_id, key = parse_verifier_key(f.read())
        with open(args.checkpoint, encoding="utf-8") as f:
            origin, size, root = open_checkpoint(f.read(), name, key_id, key)
        if origin != name:
            raise ValueError(f"checkpoint origin {origin} is not the key name {name}")
        print(f"ok: checkpoint signature by {name} ({size} receipts)")
        receipt_hashes = read_export(args.export)
        print(f"ok: {len(receipt_hashes)} receipts, hashes and links recomputed")
        if len(receipt_hashes) < size:
            raise ValueError(f"export holds {len(receipt_hashes)} receipts, checkpoint {size}")
        if mth([leaf_hash(h) for h in receipt_hashes[:size]]) != root:
            raise ValueError("the export's Merkle root is not the signed root")
        print(f"ok: Merkle root of the first {size} receipts is the signed root")
        if args.inclusion:
            with open(args.inclusion, encoding="utf-8") as f:
                p = json.load(f)
            index, psize = p["index"], p["size"]
            leaf = leaf_hash(receipt_hashes[index])
            if leaf.hex() != p["leaf_hash"] or psize != size:
                raise ValueError("the proof is not for this receipt or this checkpoint")
            proof = [bytes.fromhex(h) for h in p["proof"]]
            if not verify_inclusion(index, psize, leaf, proof, root):
                raise ValueError("the inclusion proof does not lead to the signed root")
            print(f"ok: receipt {index + 1} is included in the signed tree")
    except (ValueError, KeyError, InvalidSignature, OSError) as e:
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
