//! Token Status Lists (draft-ietf-oauth-status-list-17 §4): packed statuses, zlib-compressed
//! and base64url-encoded into `lst`.
//!
//! §4.1: "Each status of a Referenced Token MUST be represented with a bit-size of 1, 2, 4, or
//! 8. … The status of the Referenced Token at index 0 is in the least significant bits of byte
//! 0." Mandate uses 2 bits so that SUSPENDED (0x02) differs from INVALID (0x01) (§7.1).

use std::io::{Read, Write};

use crate::encoding::{b64url, b64url_decode};

/// §7.1: the token is valid.
pub const VALID: u8 = 0x00;
/// §7.1: the token is revoked (or otherwise invalid) for good.
pub const INVALID: u8 = 0x01;
/// §7.1: the token is temporarily suspended.
pub const SUSPENDED: u8 = 0x02;

/// Largest list accepted when decoding (statuses).
pub const MAX_DECODED_BYTES: usize = 16 * 1024 * 1024;

/// A status list of `len` statuses of `bits` bits each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    bits: u8,
    bytes: Vec<u8>,
}

/// Why a status list could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusListError {
    /// Bit sizes are 1, 2, 4 or 8 (§4.1).
    #[error("`bits` must be 1, 2, 4 or 8")]
    Bits,
    /// A status does not fit in `bits`.
    #[error("status `{0}` does not fit the list's bit size")]
    Value(u8),
    /// An index past the end.
    #[error("index `{0}` is outside the list")]
    Index(u64),
    /// `lst` is not base64url of zlib data, or inflates past the bound.
    #[error("malformed `lst`")]
    Encoding,
}

impl StatusList {
    /// A list of `len` VALID statuses.
    pub fn new(bits: u8, len: usize) -> Result<Self, StatusListError> {
        if !matches!(bits, 1 | 2 | 4 | 8) {
            return Err(StatusListError::Bits);
        }
        let bytes = (len * usize::from(bits)).div_ceil(8);
        Ok(Self {
            bits,
            bytes: vec![0; bytes],
        })
    }

    /// Bits per status.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Sets the status at `idx`.
    pub fn set(&mut self, idx: u64, status: u8) -> Result<(), StatusListError> {
        if u16::from(status) >= 1 << self.bits {
            return Err(StatusListError::Value(status));
        }
        let (byte, shift, mask) = self.position(idx)?;
        let b = self
            .bytes
            .get_mut(byte)
            .ok_or(StatusListError::Index(idx))?;
        *b = (*b & !(mask << shift)) | (status << shift);
        Ok(())
    }

    /// The status at `idx`.
    pub fn get(&self, idx: u64) -> Result<u8, StatusListError> {
        let (byte, shift, mask) = self.position(idx)?;
        let b = self.bytes.get(byte).ok_or(StatusListError::Index(idx))?;
        Ok((b >> shift) & mask)
    }

    fn position(&self, idx: u64) -> Result<(usize, u8, u8), StatusListError> {
        let per_byte = u64::from(8 / self.bits);
        let byte = usize::try_from(idx / per_byte).map_err(|_| StatusListError::Index(idx))?;
        let shift =
            u8::try_from(idx % per_byte).map_err(|_| StatusListError::Index(idx))? * self.bits;
        let mask = if self.bits == 8 {
            0xff
        } else {
            (1u8 << self.bits) - 1
        };
        Ok((byte, shift, mask))
    }

    /// §4.1: `lst` = base64url(zlib(DEFLATE(bytes))), highest compression.
    pub fn encode(&self) -> String {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        // INVARIANT: writing into a Vec cannot fail.
        let _ = z.write_all(&self.bytes);
        b64url(&z.finish().unwrap_or_default())
    }

    /// Reads `lst` back (bounded), e.g. in verifiers and tests.
    pub fn decode(bits: u8, lst: &str) -> Result<Self, StatusListError> {
        if !matches!(bits, 1 | 2 | 4 | 8) {
            return Err(StatusListError::Bits);
        }
        let raw = b64url_decode(lst).ok_or(StatusListError::Encoding)?;
        let mut bytes = Vec::new();
        flate2::read::ZlibDecoder::new(raw.as_slice())
            .take(MAX_DECODED_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|_| StatusListError::Encoding)?;
        if bytes.len() > MAX_DECODED_BYTES {
            return Err(StatusListError::Encoding);
        }
        Ok(Self { bits, bytes })
    }

    /// The packed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draft's examples (§4.1): 1-bit `[1,0,0,1,1,1,0,1, 1,1,0,0,0,1,0,1]` and 2-bit
    /// `[1,2,0,3, 0,1,0,1, 1,2,3,3]`.
    #[test]
    fn draft_examples_bit_order_and_encoding() {
        let mut one = StatusList::new(1, 16).unwrap();
        for (i, s) in [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
            .into_iter()
            .enumerate()
        {
            one.set(i as u64, s).unwrap();
        }
        assert_eq!(one.bytes(), [0xB9, 0xA3]);
        assert_eq!(one.encode(), "eNrbuRgAAhcBXQ");
        let mut two = StatusList::new(2, 12).unwrap();
        for (i, s) in [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3].into_iter().enumerate() {
            two.set(i as u64, s).unwrap();
        }
        assert_eq!(two.bytes(), [0xC9, 0x44, 0xF9]);
        assert_eq!(two.encode(), "eNo76fITAAPfAgc");
        let back = StatusList::decode(2, "eNo76fITAAPfAgc").unwrap();
        assert_eq!(back.get(3).unwrap(), 3);
        assert_eq!(back.get(1).unwrap(), SUSPENDED);
        assert_eq!(back.get(0).unwrap(), INVALID);
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(StatusList::new(3, 8), Err(StatusListError::Bits));
        let mut l = StatusList::new(2, 4).unwrap();
        assert_eq!(l.set(0, 4), Err(StatusListError::Value(4)));
        assert_eq!(l.set(4, 1), Err(StatusListError::Index(4)));
        assert_eq!(
            StatusList::decode(2, "not base64!"),
            Err(StatusListError::Encoding)
        );
        assert_eq!(
            StatusList::decode(2, "AAAA"),
            Err(StatusListError::Encoding)
        );
    }
}
