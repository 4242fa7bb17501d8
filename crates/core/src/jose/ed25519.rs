//! Ed25519 signature verification (RFC 8032 §5.1.7) that accepts exactly the signatures
//! `ed25519_dalek::VerifyingKey::verify_strict` accepts, with one field inversion fewer.
//!
//! `verify_strict` requires `S < ℓ`, an `R` that decodes to a point, `R` and `A` not of small
//! order, and then compares the *encoding* of `[S]B - [k]A` with the bytes of `R`, which costs
//! an inversion to reach affine coordinates. Here the comparison is between points, in
//! projective coordinates, after checking that the bytes of `R` are the canonical encoding of
//! the point they decode to. The two acceptance sets are the same:
//!
//! - If `verify_strict` accepts, `R`'s bytes are `compress(P)` for `P = [S]B - [k]A`. A
//!   compression is canonical (its `y` is below `p`), and decompressing it gives `P` back, so
//!   the point decoded from `R` equals `P` and this check accepts.
//! - If this check accepts, the point `r` decoded from `R` equals `P`, so `compress(P)` is
//!   `compress(r)`. With `y < p` checked, `compress(r)` has the same `y` bytes as `R`, and the
//!   same sign bit unless `x = 0`; `x = 0` only for `y = ±1`, points of order 1 and 2, which
//!   both checks refuse as small-order. So `compress(P)` equals `R` and `verify_strict`
//!   accepts.
//!
//! The differential tests below hold the two to the same answers on valid, tampered,
//! non-canonical and small-order inputs.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

use crate::jwk::PublicJwk;

/// Whether `signature` (`R ‖ S`) is a valid Ed25519 signature of `message` by `key`, under the
/// strict rules of `VerifyingKey::verify_strict`.
///
/// `key` is a [`PublicJwk`], which is never of small order (`PublicJwk::from_bytes` refuses
/// weak keys; a key derived from a seed has order ℓ), so `verify_strict`'s small-order check
/// of `A` always passes and is not repeated here.
pub(crate) fn verify_strict(key: &PublicJwk, message: &[u8], signature: &[u8; 64]) -> bool {
    verify_with(key.verifying_key(), true, message, signature)
}

/// [`verify_strict`] for any key, checking `A` for small order unless `key_checked`.
fn verify_with(
    key: &ed25519_dalek::VerifyingKey,
    key_checked: bool,
    message: &[u8],
    signature: &[u8; 64],
) -> bool {
    let (r_bytes, s_bytes) = signature.split_at(32);
    let (Ok(r_bytes), Ok(s_bytes)) = (<[u8; 32]>::try_from(r_bytes), <[u8; 32]>::try_from(s_bytes))
    else {
        return false;
    };
    // RFC 8032 §5.1.7 step 1: "Decode the first half as a point R, and the second half as an
    // integer S, in the range 0 <= s < L. [...] If any of the decodings fail (including S
    // being out of range), the signature is invalid."
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    if !canonical_y(&r_bytes) {
        return false;
    }
    let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
        return false;
    };
    let a = key.to_edwards();
    // The strict checks of `verify_strict`: no small-order R or A.
    if r.is_small_order() || (!key_checked && a.is_small_order()) {
        return false;
    }
    // Step 2: "Compute SHA512(dom2(F, C) || R || A || PH(M)), and interpret the 64-octet digest
    // as a little-endian integer k." (Pure Ed25519: no dom2, PH is the identity.)
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.as_bytes());
    h.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    // Step 3, in the form `verify_strict` uses: [S]B - [k]A = R, compared as points.
    let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &(-a), &s);
    expected == r
}

/// Whether the 255-bit `y` of an encoded point is below `p = 2^255 - 19` (RFC 8032 §5.1.3
/// step 1: "If the resulting value is >= p, decoding fails"). The values at or above `p` are
/// `0x7fff…ffed` to `0x7fff…ffff`, little-endian, sign bit aside.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f == 0x7f;
    let middle = bytes[1..31].iter().all(|b| *b == 0xff);
    !(top && middle && bytes[0] >= 0xed)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

    use super::*;

    fn dalek(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    /// Both entry points agree with `verify_strict`; a key valid as a `PublicJwk` goes through
    /// `verify_strict` here too.
    fn same(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
        let ours = verify_with(key, false, message, signature);
        assert_eq!(ours, dalek(key, message, signature), "{signature:?}");
        if let Ok(jwk) = PublicJwk::from_bytes(key.as_bytes()) {
            assert_eq!(verify_strict(&jwk, message, signature), ours);
        }
        ours
    }

    /// The group order ℓ, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
            out[i] = sum as u8;
            carry = sum >> 8;
        }
        out
    }

    #[test]
    fn agrees_with_verify_strict() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for round in 0..300u32 {
            let seed: [u8; 32] = std::array::from_fn(|_| next() as u8);
            let signer = SigningKey::from_bytes(&seed);
            let key = signer.verifying_key();
            let message: Vec<u8> = (0..(next() % 300)).map(|_| next() as u8).collect();
            let good = signer.sign(&message).to_bytes();
            assert!(same(&key, &message, &good));
            accepted += 1;
            // Another message, another key.
            let mut other = message.clone();
            other.push(round as u8);
            assert!(!same(&key, &other, &good));
            let stranger = SigningKey::from_bytes(&[round as u8; 32]).verifying_key();
            same(&stranger, &message, &good);
            // One bit flipped anywhere in R or S.
            let mut flipped = good;
            let bit = (next() % 512) as usize;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(!same(&key, &message, &flipped));
            // S + ℓ: the same signature equation, a non-canonical scalar.
            let mut malleated = good;
            let s: [u8; 32] = good[32..].try_into().unwrap();
            malleated[32..].copy_from_slice(&add_le(&s, &L));
            assert!(!same(&key, &message, &malleated));
            // Random R and S.
            let noise: [u8; 64] = std::array::from_fn(|_| next() as u8);
            same(&key, &message, &noise);
        }
        assert_eq!(accepted, 300);
    }

    #[test]
    fn refuses_small_order_and_non_canonical_r_like_verify_strict() {
        let signer = SigningKey::from_bytes(&[7; 32]);
        let key = signer.verifying_key();
        let message = b"m";
        let good = signer.sign(message).to_bytes();
        let mut r_values: Vec<[u8; 32]> = Vec::new();
        // Small-order encodings: identity (y = 1), order 2 (y = -1), their sign-bit twins,
        // and every y at or above p (non-canonical, some of them decodable).
        let mut one = [0u8; 32];
        one[0] = 1;
        r_values.push(one);
        let mut one_neg = one;
        one_neg[31] |= 0x80;
        r_values.push(one_neg);
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        r_values.push(minus_one);
        for low in 0xedu8..=0xff {
            for sign in [0u8, 0x80] {
                let mut y = [0xffu8; 32];
                y[0] = low;
                y[31] = 0x7f | sign;
                assert!(!canonical_y(&y));
                r_values.push(y);
            }
        }
        r_values.push([0u8; 32]);
        for r in r_values {
            let mut sig = good;
            sig[..32].copy_from_slice(&r);
            assert!(!same(&key, message, &sig));
        }
        assert!(canonical_y(&minus_one));
        // A small-order public key: refused even with a signature that satisfies the equation
        // for some messages.
        let weak = VerifyingKey::from_bytes(&one).unwrap();
        same(&weak, message, &good);
    }
}
