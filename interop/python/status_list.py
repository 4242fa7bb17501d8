"""Independent Token Status List reader (draft-ietf-oauth-status-list-17 §4.1), stdlib only.

Usage: status_list.py <status list URL> <idx> [<idx> ...]
Checks the bit order against the draft's own 2-bit example first, then fetches the list
(a statuslist+jwt), inflates `lst` with zlib and prints `idx=status` for each index.
The JWT signature is not checked here: the point is an independent decoding of the bits.
"""
import base64
import json
import sys
import urllib.request
import zlib


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def status_at(raw: bytes, bits: int, idx: int) -> int:
    # §4.1: index 0 is in the least significant bits of byte 0.
    per_byte = 8 // bits
    byte = raw[idx // per_byte]
    shift = (idx % per_byte) * bits
    return (byte >> shift) & ((1 << bits) - 1)


def self_check() -> None:
    # The draft's example: 2-bit statuses [1,2,0,3,0,1,0,1,1,2,3,3] -> lst "eNo76fITAAPfAgc".
    raw = zlib.decompress(b64url_decode("eNo76fITAAPfAgc"))
    assert raw == bytes([0xC9, 0x44, 0xF9]), raw.hex()
    want = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]
    got = [status_at(raw, 2, i) for i in range(12)]
    assert got == want, got


def main() -> int:
    self_check()
    url, idxs = sys.argv[1], [int(x) for x in sys.argv[2:]]
    with urllib.request.urlopen(url) as resp:
        ctype = resp.headers.get("Content-Type", "")
        jwt = resp.read().decode()
    assert ctype.startswith("application/statuslist+jwt"), ctype
    header_b64, payload_b64, _sig = jwt.split(".")
    header = json.loads(b64url_decode(header_b64))
    assert header["typ"] == "statuslist+jwt", header
    claims = json.loads(b64url_decode(payload_b64))
    assert claims["sub"] == url, (claims["sub"], url)
    assert isinstance(claims.get("ttl"), int), claims
    sl = claims["status_list"]
    raw = zlib.decompress(b64url_decode(sl["lst"]))
    for i in idxs:
        print(f"{i}={status_at(raw, sl['bits'], i)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
