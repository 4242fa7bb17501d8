//! One canonical form for request paths and queries: what the gate matches is what it forwards.
//!
//! A path is refused, never repaired, when two readers could disagree about it (SECURITY.md,
//! line 9: "decides on exactly the normalised request it forwards"):
//!
//! 1. it must be absolute, with at most [`MAX_SEGMENTS`] segments, and no segment may be empty
//!    (`//`, a trailing `/`);
//! 2. every raw byte must be an RFC 3986 `pchar` (§3.3) or a `%` starting two hex digits: a raw
//!    `\`, space or non-ASCII byte is refused;
//! 3. each segment is percent-decoded exactly once and must be UTF-8; the decoded text must not
//!    contain `/` or `\` (`%2F`, `%5C`), `%` (`%252F`: decoding twice would change it), or a
//!    control character, and must not be `.` or `..` (also when written `%2E%2E`);
//! 4. the decoded text must already be in Unicode NFC, so no composition can change it later.
//!
//! The canonical form percent-encodes every byte that is not RFC 3986 `unreserved` (§2.3), in
//! uppercase hex (§2.1): each decoded segment has exactly one spelling, and it is the one sent
//! upstream. Literal route segments are compared with the decoded text, case-sensitively.

use unicode_normalization::is_nfc;

/// Most segments a request path may have.
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Longest decoded segment, in bytes.
pub(crate) const MAX_SEGMENT_BYTES: usize = 255;
/// Longest raw query, in bytes.
pub(crate) const MAX_QUERY_BYTES: usize = 8 * 1024;

/// A request path in its one canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CanonicalPath {
    /// The decoded segments.
    segments: Vec<String>,
}

/// Why a path or query was refused. Messages are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// Not an absolute path.
    #[error("the request path must start with `/`")]
    NotAbsolute,
    /// `//` or a trailing `/`.
    #[error("the request path has an empty segment")]
    EmptySegment,
    /// `.` or `..`, however encoded.
    #[error("the request path has a dot segment")]
    DotSegment,
    /// `%2F`, `%5C`, or a raw `\`.
    #[error("the request path has an encoded or backward slash")]
    Separator,
    /// `%25…`: a second round of decoding would change the path.
    #[error("the request path is percent-encoded twice")]
    DoubleEncoding,
    /// A malformed escape, non-UTF-8, a control or otherwise unexpected character.
    #[error("the request path has a malformed or forbidden character")]
    BadCharacter,
    /// Text that NFC normalisation would change.
    #[error("the request path is not in Unicode normalisation form C")]
    NotNfc,
    /// Too many segments or too long a segment.
    #[error("the request path is too long")]
    TooLong,
    /// A query that cannot be read one way only.
    #[error("the query string is malformed")]
    BadQuery,
}

impl CanonicalPath {
    /// Canonicalises a raw request path (without the query).
    pub(crate) fn parse(raw: &str) -> Result<Self, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        if rest.is_empty() {
            return Ok(Self {
                segments: Vec::new(),
            });
        }
        let mut segments = Vec::new();
        for raw_segment in rest.split('/') {
            if segments.len() == MAX_SEGMENTS {
                return Err(PathError::TooLong);
            }
            segments.push(decode_segment(raw_segment)?);
        }
        Ok(Self { segments })
    }

    /// The decoded segments.
    pub(crate) fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether `prefix`'s segments start this path.
    pub(crate) fn starts_with(&self, prefix: &CanonicalPath) -> bool {
        self.segments.starts_with(&prefix.segments)
    }

    /// The path without the first `n` segments.
    pub(crate) fn strip(&self, n: usize) -> CanonicalPath {
        CanonicalPath {
            segments: self.segments.get(n..).unwrap_or_default().to_vec(),
        }
    }

    /// The canonical text: `/` then the segments, each with every non-`unreserved` byte
    /// percent-encoded in uppercase hex.
    pub(crate) fn encoded(&self) -> String {
        if self.segments.is_empty() {
            return "/".to_owned();
        }
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            out.push_str(&encode(s));
        }
        out
    }
}

/// Percent-encodes every byte of `text` that is not RFC 3986 `unreserved`.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// A parsed query: `name=value` pairs in order, decoded once (`+` is a space, as in
/// `application/x-www-form-urlencoded`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query strictly: every escape well-formed, UTF-8, no control characters.
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, PathError> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Self::default());
        };
        if raw.len() > MAX_QUERY_BYTES {
            return Err(PathError::BadQuery);
        }
        let mut pairs = Vec::new();
        for pair in raw.split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((decode_query_part(name)?, decode_query_part(value)?));
        }
        Ok(Self { pairs })
    }

    /// The single value of `name`: `Ok(None)` if absent, an error if it appears twice.
    pub(crate) fn single(&self, name: &str) -> Result<Option<&str>, PathError> {
        let mut values = self.pairs.iter().filter(|(n, _)| n == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(PathError::BadQuery);
        }
        Ok(first)
    }

    /// The canonical serialisation (`application/x-www-form-urlencoded`), empty when there are
    /// no pairs.
    pub(crate) fn encoded(&self) -> String {
        if self.pairs.is_empty() {
            return String::new();
        }
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.pairs.iter())
            .finish()
    }
}

fn decode_segment(raw: &str) -> Result<String, PathError> {
    if raw.is_empty() {
        return Err(PathError::EmptySegment);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadCharacter);
            };
            out.push((hi << 4) | lo);
            i += 3;
        } else if b == b'\\' {
            return Err(PathError::Separator);
        } else if is_pchar(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(PathError::BadCharacter);
        }
    }
    let text = String::from_utf8(out).map_err(|_| PathError::BadCharacter)?;
    check_decoded(&text)?;
    Ok(text)
}

fn check_decoded(text: &str) -> Result<(), PathError> {
    if text.is_empty() {
        return Err(PathError::EmptySegment);
    }
    if text == "." || text == ".." {
        return Err(PathError::DotSegment);
    }
    if text.contains(['/', '\\']) {
        return Err(PathError::Separator);
    }
    if text.contains('%') {
        return Err(PathError::DoubleEncoding);
    }
    if text.chars().any(char::is_control) {
        return Err(PathError::BadCharacter);
    }
    if text.len() > MAX_SEGMENT_BYTES {
        return Err(PathError::TooLong);
    }
    if !is_nfc(text) {
        return Err(PathError::NotNfc);
    }
    Ok(())
}

fn decode_query_part(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadQuery);
                };
                out.push((hi << 4) | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            // RFC 3986 §3.4: query = *( pchar / "/" / "?" ).
            b if is_pchar(b) || b == b'/' || b == b'?' => {
                out.push(b);
                i += 1;
            }
            _ => return Err(PathError::BadQuery),
        }
    }
    let text = String::from_utf8(out).map_err(|_| PathError::BadQuery)?;
    if text.chars().any(char::is_control) {
        return Err(PathError::BadQuery);
    }
    Ok(text)
}

/// RFC 3986 §3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@" (without `%`,
/// handled by the callers).
fn is_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// RFC 3986 §2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn canonical_paths() {
        let p = CanonicalPath::parse("/tickets/42").unwrap();
        assert_eq!(p.segments(), ["tickets", "42"]);
        assert_eq!(p.encoded(), "/tickets/42");
        // Unreserved escapes decode; everything else is re-encoded in uppercase.
        let p = CanonicalPath::parse("/t%69ckets/a%3ab;c").unwrap();
        assert_eq!(p.segments(), ["tickets", "a:b;c"]);
        assert_eq!(p.encoded(), "/tickets/a%3Ab%3Bc");
        assert_eq!(CanonicalPath::parse("/").unwrap().encoded(), "/");
        let p = CanonicalPath::parse("/caf%C3%A9").unwrap();
        assert_eq!(p.segments(), ["café"]);
        assert_eq!(p.encoded(), "/caf%C3%A9");
    }

    #[test]
    fn refuses_every_ambiguity() {
        use PathError::*;
        for (raw, err) in [
            ("tickets", NotAbsolute),
            ("//tickets", EmptySegment),
            ("/tickets//42", EmptySegment),
            ("/tickets/", EmptySegment),
            ("/tickets/../admin", DotSegment),
            ("/tickets/./42", DotSegment),
            ("/tickets/%2e%2E", DotSegment),
            ("/tickets/%2E", DotSegment),
            ("/tickets%2F42", Separator),
            ("/tickets%2f42", Separator),
            ("/tickets%5C42", Separator),
            ("/tickets\\42", Separator),
            ("/tickets%252F42", DoubleEncoding),
            ("/tickets/%25", DoubleEncoding),
            ("/tickets/%4", BadCharacter),
            ("/tickets/%zz", BadCharacter),
            ("/tickets/%00", BadCharacter),
            ("/tickets/%0A", BadCharacter),
            ("/tickets/%C3", BadCharacter),
            ("/tickets/a b", BadCharacter),
            ("/tickets/é", BadCharacter),
            ("/tickets/e%CC%81", NotNfc),
        ] {
            assert_eq!(CanonicalPath::parse(raw), Err(err), "{raw}");
        }
        let long = format!("/{}", "a/".repeat(MAX_SEGMENTS) + "a");
        assert_eq!(CanonicalPath::parse(&long), Err(TooLong));
    }

    #[test]
    fn queries() {
        let q = Query::parse(Some("amount=5&note=a+b%21&flag")).unwrap();
        assert_eq!(q.single("amount").unwrap(), Some("5"));
        assert_eq!(q.single("note").unwrap(), Some("a b!"));
        assert_eq!(q.single("flag").unwrap(), Some(""));
        assert_eq!(q.single("other").unwrap(), None);
        assert_eq!(q.encoded(), "amount=5&note=a+b%21&flag=");
        // A second spelling of the same name is a duplicate.
        let q = Query::parse(Some("amount=5&am%6Funt=500")).unwrap();
        assert!(q.single("amount").is_err());
        assert!(Query::parse(Some("a=%zz")).is_err());
        assert!(Query::parse(Some("a=%00")).is_err());
        assert!(Query::parse(Some("a=\"")).is_err());
        assert_eq!(Query::parse(None).unwrap().encoded(), "");
    }
}
