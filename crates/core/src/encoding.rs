//! Small, strict encoders used across the core: hex, base64url and Crockford base32.

use base64ct::{Base64UrlUnpadded, Encoding};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes lowercase hex into exactly `N` bytes; `None` on any other input.
pub fn hex_to_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let raw = s.as_bytes();
    if raw.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        let hi = hex_digit(pair[0])?;
        let lo = hex_digit(pair[1])?;
        *out.get_mut(i)? = (hi << 4) | lo;
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Unpadded base64url (RFC 4648 §5) of `bytes`.
pub fn b64url(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// Strict unpadded base64url decoding (rejects padding, whitespace and non-canonical tails).
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    Base64UrlUnpadded::decode_vec(s).ok()
}

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Lowercase Crockford base32 of 16 bytes: 26 characters, order-preserving.
pub fn base32_128(bytes: &[u8; 16]) -> String {
    let n = u128::from_be_bytes(*bytes);
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        // 26 * 5 = 130 bits: the first character carries the top 3 bits.
        let shift = 125 - 5 * i as u32;
        let idx = ((n >> shift) & 0x1f) as usize;
        *slot = CROCKFORD[idx];
    }
    out.iter().map(|b| char::from(*b)).collect()
}

/// Inverse of [`base32_128`]; `None` unless `s` is exactly its output form.
pub fn base32_128_decode(s: &str) -> Option<[u8; 16]> {
    let raw = s.as_bytes();
    if raw.len() != 26 {
        return None;
    }
    let mut n: u128 = 0;
    for (i, c) in raw.iter().enumerate() {
        let v = CROCKFORD.iter().position(|d| d == c)? as u128;
        if i == 0 && v > 0b111 {
            return None;
        }
        n = (n << 5) | v;
    }
    Some(n.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trips_and_preserves_order() {
        let a = [0u8; 16];
        let mut b = [0u8; 16];
        b[15] = 1;
        let c = [0xffu8; 16];
        for x in [a, b, c] {
            assert_eq!(base32_128_decode(&base32_128(&x)), Some(x));
        }
        assert!(base32_128(&a) < base32_128(&b));
        assert!(base32_128(&b) < base32_128(&c));
        assert_eq!(base32_128_decode("8zzzzzzzzzzzzzzzzzzzzzzzzz"), None);
        assert_eq!(base32_128_decode("0000000000000000000000000I"), None);
    }

    #[test]
    fn hex_round_trips() {
        let x = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&x), "0001abff");
        assert_eq!(hex_to_array::<4>("0001abff"), Some(x));
        assert_eq!(hex_to_array::<4>("0001ABFF"), None);
        assert_eq!(hex_to_array::<4>("0001ab"), None);
    }
}
