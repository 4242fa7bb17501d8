//! The one error type of the scope module.

/// Everything that can go wrong while parsing a scope or attenuating delegation terms.
///
/// Parsing variants describe bad input (map them to `invalid_request` / `invalid_scope`);
/// the attenuation variants ([`ScopeError::ParentExpired`] to [`ScopeError::DepthExceeded`])
/// describe a request for more authority than the parent holds (`invalid_scope` /
/// `invalid_grant`). The enum is deliberately exhaustive: the protocol mapping should break
/// when a variant is added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// An action name that is not `[a-z][a-z0-9_.-]{0,31}`.
    #[error(
        "invalid action name `{name}`: use 1 to 32 lowercase letters, digits, `_`, `.` or `-`, starting with a letter"
    )]
    InvalidActionName {
        /// The offending name (escaped, truncated).
        name: String,
    },
    /// A well-formed action that the deployment's vocabulary does not know.
    #[error("unknown action `{name}`")]
    UnknownAction {
        /// The offending name.
        name: String,
    },
    /// An action vocabulary with no actions.
    #[error("the action vocabulary must not be empty")]
    EmptyVocabulary,
    /// A location that is not an acceptable absolute `https`/`http` URI.
    #[error("invalid location `{location}`: {reason}")]
    InvalidLocation {
        /// The offending location (escaped, truncated).
        location: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An empty resource (or just `/`).
    #[error("resource must not be empty")]
    EmptyResource,
    /// A resource with an empty segment (`a//b`, a trailing `/`).
    #[error("resource `{resource}` has an empty segment")]
    EmptySegment {
        /// The offending resource (escaped, truncated).
        resource: String,
    },
    /// A resource with a `.` or `..` segment (before or after decoding).
    #[error("resource `{resource}` has a `.` or `..` segment")]
    DotSegment {
        /// The offending resource (escaped, truncated).
        resource: String,
    },
    /// A `%` not followed by two hex digits, or escapes that do not decode to UTF-8.
    #[error("resource `{resource}` has an invalid percent-encoding")]
    InvalidPercentEncoding {
        /// The offending resource (escaped, truncated).
        resource: String,
    },
    /// A segment that contains `/` or `\` once decoded (`%2F`, `%5C`, a raw `\`).
    #[error("resource `{resource}` has a `/` or `\\` inside a segment")]
    EncodedSeparator {
        /// The offending resource (escaped, truncated).
        resource: String,
    },
    /// A segment that still contains `%` once decoded (`%252F`): resources are decoded once.
    #[error("resource `{resource}` still has a `%` after decoding")]
    DoubleEncoding {
        /// The offending resource (escaped, truncated).
        resource: String,
    },
    /// A segment with a control character.
    #[error("resource `{resource}` has a control character")]
    ControlCharacter {
        /// The offending resource (escaped, truncated).
        resource: String,
    },
    /// A `**` segment anywhere but last.
    #[error("resource `{resource}` has `**` before its last segment")]
    MisplacedWildcard {
        /// The offending resource (escaped, truncated).
        resource: String,
    },
    /// A `*` inside a literal pattern segment (`a*b`, or an encoded `%2A`).
    #[error("resource `{resource}` has a `*` that is not a whole segment")]
    WildcardInLiteral {
        /// The offending resource (escaped, truncated).
        resource: String,
    },
    /// A `*` in a concrete request path.
    #[error("request path `{resource}` must not contain `*`")]
    WildcardInPath {
        /// The offending path (escaped, truncated).
        resource: String,
    },
    /// A resource with more segments than allowed.
    #[error("resource `{resource}` has more than {max} segments")]
    TooManySegments {
        /// The offending resource (escaped, truncated).
        resource: String,
        /// The limit.
        max: usize,
    },
    /// A segment longer than allowed (counted in bytes after decoding and NFC).
    #[error("resource `{resource}` has a segment longer than {max} bytes")]
    SegmentTooLong {
        /// The offending resource (escaped, truncated).
        resource: String,
        /// The limit.
        max: usize,
    },
    /// A constraint whose value is out of range or malformed.
    #[error("invalid constraint `{name}`: {reason}")]
    InvalidConstraint {
        /// The constraint's member name, e.g. `max_amount`.
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// An authorization detail whose `type` is not `mandate`.
    #[error("unsupported authorization detail type `{kind}`")]
    UnsupportedType {
        /// The offending type (escaped, truncated).
        kind: String,
    },
    /// Input that does not have the expected JSON shape (wrong types, unknown or missing members).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// The parser's explanation.
        reason: String,
    },
    /// A list that must not be empty.
    #[error("`{field}` must not be empty")]
    Empty {
        /// The member name.
        field: &'static str,
    },
    /// A list longer than the limits allow.
    #[error("too many `{field}`: at most {max} allowed")]
    TooMany {
        /// The member name.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// A `max_depth` outside `1..=hard cap`.
    #[error("max depth {max_depth} is outside 1..={cap}")]
    InvalidMaxDepth {
        /// The requested max depth.
        max_depth: u8,
        /// The hard cap in force.
        cap: u8,
    },
    /// Stored terms whose depth is outside `1..=max_depth`.
    #[error("depth {depth} is outside 1..={max_depth}")]
    InvalidDepth {
        /// The depth.
        depth: u8,
        /// The max depth.
        max_depth: u8,
    },
    /// Attenuation of terms that have already expired.
    #[error("the parent delegation expired at {expires_at}, now is {now}")]
    ParentExpired {
        /// The parent's expiry (unix ms).
        expires_at: i64,
        /// The time of the request (unix ms).
        now: i64,
    },
    /// A requested scope that asks for more than the parent holds.
    #[error("requested authorization detail {detail} is wider than the parent scope: {reason}")]
    Widening {
        /// Index of the requested detail that is not covered.
        detail: usize,
        /// Which part of it is not covered.
        reason: String,
    },
    /// Strict attenuation is on and the requested scope is not a proper subset of the parent's.
    #[error("strict attenuation requires a scope strictly narrower than the parent's")]
    NotStrict,
    /// A requested expiry later than the parent's.
    #[error("requested expiry {requested} is later than the parent's expiry {parent}")]
    ExpiryExtended {
        /// The requested expiry (unix ms).
        requested: i64,
        /// The parent's expiry (unix ms).
        parent: i64,
    },
    /// A requested expiry that is not after `now`.
    #[error("requested expiry {expires_at} is not after now ({now})")]
    AlreadyExpired {
        /// The requested expiry (unix ms).
        expires_at: i64,
        /// The time of the request (unix ms).
        now: i64,
    },
    /// A delegation one hop deeper than the mandate's max depth allows.
    #[error("delegation depth {depth} would exceed the max depth {max_depth}")]
    DepthExceeded {
        /// The depth the new delegation would have.
        depth: u16,
        /// The max depth of the tree.
        max_depth: u8,
    },
}

/// A user value made safe for a one-line message: escaped and cut to 64 characters.
pub(crate) fn shown(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || c == '`' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}
