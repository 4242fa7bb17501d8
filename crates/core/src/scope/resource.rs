//! Resource patterns and request paths: one normalisation, then exact segment matching.
//!
//! Both patterns and paths go through [`normalise`] exactly once:
//!
//! 1. strip one leading `/`; the rest must not be empty;
//! 2. split on `/`; every segment must be non-empty;
//! 3. in patterns, a segment that is exactly `*` or `**` is a wildcard and is done;
//!    any other `*` is refused (`a*b` in a pattern, any `*` in a path);
//! 4. percent-decode each segment once (`%` must start two hex digits; the bytes must be UTF-8);
//! 5. refuse a decoded segment that contains `/` or `\` (`%2F`, `%5C`), `%` (`%252F`: we never
//!    decode twice), `*` (`%2A`), a control character, or that is `.` or `..`;
//! 6. NFC-normalise the segment and run the checks of step 5 again, so composition cannot
//!    smuggle in a separator or a dot segment; the result is at most 255 bytes.
//!
//! A literal segment therefore never contains `/`, `%` or `*`, and its text is its serialized
//! form: printing a pattern and parsing it again gives the same pattern.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use super::error::{ScopeError, shown};
use super::limits::{MAX_SEGMENT_BYTES, MAX_SEGMENTS};

/// A resource pattern such as `tickets/*` or `customers/42/**`.
///
/// Segments are literals or `*` (exactly one segment); a final `**` matches zero or more
/// remaining segments. Serialized as its normal string form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourcePattern {
    segments: Vec<PatternSegment>,
    /// Whether the pattern ends in `**`.
    rest: bool,
}

/// A concrete request path such as `customers/42/orders`: no wildcards, at least one segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourcePath {
    segments: Vec<String>,
}

/// One fixed-position segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum PatternSegment {
    /// Matches exactly this (decoded, NFC) text.
    Literal(String),
    /// `*`: matches any one segment.
    Any,
}

impl ResourcePattern {
    /// Parses and normalises a pattern (at most [`MAX_SEGMENTS`] segments).
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let mut segments = Vec::new();
        let mut rest = false;
        for segment in normalise(input, Kind::Pattern)? {
            if rest {
                return Err(ScopeError::MisplacedWildcard {
                    resource: shown(input),
                });
            }
            match segment {
                Normalised::Literal(text) => segments.push(PatternSegment::Literal(text)),
                Normalised::Any => segments.push(PatternSegment::Any),
                Normalised::Rest => rest = true,
            }
        }
        Ok(Self { segments, rest })
    }

    /// `**`: every path.
    pub fn everything() -> Self {
        Self {
            segments: Vec::new(),
            rest: true,
        }
    }

    /// Whether `path` is matched: segment by segment, `*` matching any one segment and a
    /// final `**` any remaining ones (including none).
    pub fn matches(&self, path: &ResourcePath) -> bool {
        let length_ok = if self.rest {
            path.segments.len() >= self.segments.len()
        } else {
            path.segments.len() == self.segments.len()
        };
        length_ok
            && self
                .segments
                .iter()
                .zip(&path.segments)
                .all(|(pattern, segment)| match pattern {
                    PatternSegment::Any => true,
                    PatternSegment::Literal(text) => text == segment,
                })
    }

    /// Whether every path matched by `other` is matched by `self` (exact, not approximate).
    ///
    /// Without a final `**`, `self` contains `other` iff `other` has no `**`, the same number
    /// of segments, and each of its segments is contained in `self`'s (a literal in the same
    /// literal or in `*`, `*` only in `*`). With a final `**`, `other` needs at least as many
    /// fixed segments, the first ones contained as above; the rest of `other` is covered.
    pub fn contains(&self, other: &ResourcePattern) -> bool {
        let length_ok = if self.rest {
            other.segments.len() >= self.segments.len()
        } else {
            !other.rest && other.segments.len() == self.segments.len()
        };
        length_ok
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(parent, child)| match (parent, child) {
                    (PatternSegment::Any, _) => true,
                    (PatternSegment::Literal(a), PatternSegment::Literal(b)) => a == b,
                    (PatternSegment::Literal(_), PatternSegment::Any) => false,
                })
    }

    /// Whether the pattern has a `*` or `**`.
    pub fn has_wildcards(&self) -> bool {
        self.rest || self.segments.contains(&PatternSegment::Any)
    }

    /// The number of segments as written, counting a final `**`.
    pub fn segment_count(&self) -> usize {
        self.segments.len() + usize::from(self.rest)
    }
}

impl ResourcePath {
    /// Parses and normalises a request path (at most [`MAX_SEGMENTS`] segments).
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let segments = normalise(input, Kind::Path)?
            .into_iter()
            .map(|segment| match segment {
                Normalised::Literal(text) => Ok(text),
                Normalised::Any | Normalised::Rest => Err(ScopeError::WildcardInPath {
                    resource: shown(input),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { segments })
    }

    /// The decoded, NFC-normalised segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(String::as_str)
    }
}

impl TryFrom<String> for ResourcePattern {
    type Error = ScopeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl FromStr for ResourcePattern {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<ResourcePattern> for String {
    fn from(value: ResourcePattern) -> Self {
        value.to_string()
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let texts = self
            .segments
            .iter()
            .map(|segment| match segment {
                PatternSegment::Literal(text) => text.as_str(),
                PatternSegment::Any => "*",
            })
            .chain(self.rest.then_some("**"));
        for text in texts {
            if !first {
                f.write_str("/")?;
            }
            first = false;
            f.write_str(text)?;
        }
        Ok(())
    }
}

impl TryFrom<String> for ResourcePath {
    type Error = ScopeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl FromStr for ResourcePath {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<ResourcePath> for String {
    fn from(value: ResourcePath) -> Self {
        value.to_string()
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("/"))
    }
}

/// What is being normalised: wildcards are only recognised in patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pattern,
    Path,
}

/// One normalised segment.
enum Normalised {
    Literal(String),
    Any,
    Rest,
}

/// The one normalisation of patterns and paths (see the module docs).
fn normalise(input: &str, kind: Kind) -> Result<Vec<Normalised>, ScopeError> {
    let body = input.strip_prefix('/').unwrap_or(input);
    if body.is_empty() {
        return Err(ScopeError::EmptyResource);
    }
    if body.split('/').count() > MAX_SEGMENTS {
        return Err(ScopeError::TooManySegments {
            resource: shown(input),
            max: MAX_SEGMENTS,
        });
    }
    let mut out = Vec::new();
    for raw in body.split('/') {
        if raw.is_empty() {
            return Err(ScopeError::EmptySegment {
                resource: shown(input),
            });
        }
        if kind == Kind::Pattern {
            match raw {
                "*" => {
                    out.push(Normalised::Any);
                    continue;
                }
                "**" => {
                    out.push(Normalised::Rest);
                    continue;
                }
                _ => {}
            }
        }
        // Three bytes of escape per decoded byte at most.
        if raw.len() > MAX_SEGMENT_BYTES * 3 {
            return Err(ScopeError::SegmentTooLong {
                resource: shown(input),
                max: MAX_SEGMENT_BYTES,
            });
        }
        check_segment(raw, input, kind, false)?;
        let decoded = percent_decode(raw).ok_or_else(|| ScopeError::InvalidPercentEncoding {
            resource: shown(input),
        })?;
        check_segment(&decoded, input, kind, true)?;
        let composed: String = decoded.nfc().collect();
        check_segment(&composed, input, kind, true)?;
        if composed.len() > MAX_SEGMENT_BYTES {
            return Err(ScopeError::SegmentTooLong {
                resource: shown(input),
                max: MAX_SEGMENT_BYTES,
            });
        }
        out.push(Normalised::Literal(composed));
    }
    Ok(out)
}

/// The checks of steps 5 and 6, also run on the raw text, where `%` is still the escape
/// character and so allowed.
fn check_segment(segment: &str, input: &str, kind: Kind, decoded: bool) -> Result<(), ScopeError> {
    let resource = || shown(input);
    for c in segment.chars() {
        match c {
            '/' | '\\' => {
                return Err(ScopeError::EncodedSeparator {
                    resource: resource(),
                });
            }
            '%' if decoded => {
                return Err(ScopeError::DoubleEncoding {
                    resource: resource(),
                });
            }
            '*' if kind == Kind::Pattern => {
                return Err(ScopeError::WildcardInLiteral {
                    resource: resource(),
                });
            }
            '*' => {
                return Err(ScopeError::WildcardInPath {
                    resource: resource(),
                });
            }
            c if c.is_control() => {
                return Err(ScopeError::ControlCharacter {
                    resource: resource(),
                });
            }
            _ => {}
        }
    }
    if segment == "." || segment == ".." {
        return Err(ScopeError::DotSegment {
            resource: resource(),
        });
    }
    Ok(())
}

/// Decodes `%XX` escapes once (RFC 3986 §2.1). `None` on a bad escape or on bytes that are
/// not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
