//! Why a request is refused, and how each reason maps to HTTP and OAuth error codes.

use std::fmt;

/// The reason a request was refused, as a stable code.
///
/// | code | `as_str` | HTTP | `error` |
/// |---|---|---|---|
/// | [`InvalidToken`](DenyCode::InvalidToken) | `invalid_token` | 401 | `invalid_token` |
/// | [`InvalidDpopProof`](DenyCode::InvalidDpopProof) | `invalid_dpop_proof` | 401 | `invalid_dpop_proof` |
/// | [`Revoked`](DenyCode::Revoked) | `revoked` | 401 | `invalid_token` |
/// | [`CommitmentMismatch`](DenyCode::CommitmentMismatch) | `commitment_mismatch` | 401 | `invalid_token` |
/// | [`RevocationStale`](DenyCode::RevocationStale) | `revocation_stale` | 503 | `temporarily_unavailable` |
/// | [`InsufficientScope`](DenyCode::InsufficientScope) | `insufficient_scope` | 403 | `insufficient_scope` |
/// | [`Prohibited`](DenyCode::Prohibited) | `prohibited` | 403 | `insufficient_scope` |
/// | [`MaxAmount`](DenyCode::MaxAmount) | `max_amount` | 403 | `insufficient_scope` |
/// | [`TimeWindow`](DenyCode::TimeWindow) | `time_window` | 403 | `insufficient_scope` |
/// | [`MinTrust`](DenyCode::MinTrust) | `min_trust` | 403 | `insufficient_scope` |
/// | [`RateLimited`](DenyCode::RateLimited) | `rate_limited` | 429 | `insufficient_scope` |
///
/// Decisions taken here:
///
/// - A revoked token and a token whose agent commitment is not the pinned one are *invalid
///   tokens* (RFC 6750 §3.1: "revoked … or invalid for other reasons"): 401.
/// - A `rate` constraint that is exhausted answers 429 (RFC 6585 §4) so that clients back off
///   instead of asking for a new token; the OAuth error, for a `WWW-Authenticate` header if
///   the gate sends one, stays `insufficient_scope`.
/// - When revocation data is older than the verifier's maximum staleness the verifier cannot
///   tell whether the token is still valid and refuses (fail closed); that is a dependency
///   being unavailable, not a fault of the token: 503 with `temporarily_unavailable`
///   (SECURITY.md, "a dependency unavailable"), and the gate should add `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyCode {
    /// No token, a malformed or unverifiable token, wrong issuer/audience/type, expired, or
    /// a DPoP-bound token presented under another scheme (RFC 6750 §3.1, RFC 9449 §7.1).
    InvalidToken,
    /// The DPoP proof is missing or fails a check of RFC 9449 §4.3, or was replayed.
    InvalidDpopProof,
    /// No authorization detail of the token grants the operation.
    InsufficientScope,
    /// A prohibition of the delegation chain denies the operation.
    Prohibited,
    /// The operation's `amount` exceeds the `max_amount` constraint (or cannot be checked).
    MaxAmount,
    /// The operation falls outside the `time_window` constraint.
    TimeWindow,
    /// The `rate` constraint for this agent and delegation is exhausted.
    RateLimited,
    /// The agent's trust score is below `min_trust` (or unknown).
    MinTrust,
    /// The token, its delegation chain, an agent of the chain, its human or its tenant is
    /// revoked or suspended.
    Revoked,
    /// Revocation data (event stream and status list) is older than the maximum staleness.
    RevocationStale,
    /// The acting agent's commitment (`cmt`) is not the one pinned for it.
    CommitmentMismatch,
}

impl DenyCode {
    /// Every code, for tables and tests.
    pub const ALL: [DenyCode; 11] = [
        DenyCode::InvalidToken,
        DenyCode::InvalidDpopProof,
        DenyCode::InsufficientScope,
        DenyCode::Prohibited,
        DenyCode::MaxAmount,
        DenyCode::TimeWindow,
        DenyCode::RateLimited,
        DenyCode::MinTrust,
        DenyCode::Revoked,
        DenyCode::RevocationStale,
        DenyCode::CommitmentMismatch,
    ];

    /// A stable snake_case reason code, for receipts, logs and JSON-RPC error data.
    pub fn as_str(&self) -> &'static str {
        match self {
            DenyCode::InvalidToken => "invalid_token",
            DenyCode::InvalidDpopProof => "invalid_dpop_proof",
            DenyCode::InsufficientScope => "insufficient_scope",
            DenyCode::Prohibited => "prohibited",
            DenyCode::MaxAmount => "max_amount",
            DenyCode::TimeWindow => "time_window",
            DenyCode::RateLimited => "rate_limited",
            DenyCode::MinTrust => "min_trust",
            DenyCode::Revoked => "revoked",
            DenyCode::RevocationStale => "revocation_stale",
            DenyCode::CommitmentMismatch => "commitment_mismatch",
        }
    }

    /// The OAuth error code for a `WWW-Authenticate` header or an error body: RFC 6750 §3.1
    /// `invalid_token` / `insufficient_scope`, RFC 9449 §7.1 `invalid_dpop_proof`, and RFC 6749
    /// §4.1.2.1 `temporarily_unavailable` for stale revocation data.
    pub fn oauth_error(&self) -> &'static str {
        match self {
            DenyCode::InvalidToken | DenyCode::Revoked | DenyCode::CommitmentMismatch => {
                "invalid_token"
            }
            DenyCode::InvalidDpopProof => "invalid_dpop_proof",
            DenyCode::RevocationStale => "temporarily_unavailable",
            DenyCode::InsufficientScope
            | DenyCode::Prohibited
            | DenyCode::MaxAmount
            | DenyCode::TimeWindow
            | DenyCode::RateLimited
            | DenyCode::MinTrust => "insufficient_scope",
        }
    }

    /// The HTTP status: 401 for authentication failures, 403 for authorization failures,
    /// 429 for an exhausted rate, 503 for stale revocation data (see the table above).
    pub fn http_status(&self) -> u16 {
        match self {
            DenyCode::InvalidToken
            | DenyCode::InvalidDpopProof
            | DenyCode::Revoked
            | DenyCode::CommitmentMismatch => 401,
            DenyCode::RevocationStale => 503,
            DenyCode::RateLimited => 429,
            DenyCode::InsufficientScope
            | DenyCode::Prohibited
            | DenyCode::MaxAmount
            | DenyCode::TimeWindow
            | DenyCode::MinTrust => 403,
        }
    }

    /// Whether this denial happened while authenticating the caller (401/503) rather than
    /// while authorizing an operation.
    pub fn is_authentication(&self) -> bool {
        matches!(self.http_status(), 401 | 503)
    }
}

impl fmt::Display for DenyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: a code and a human-readable reason that is safe to send to the caller (it
/// never contains a token, a key or internal details).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The stable code.
    pub code: DenyCode,
    /// Why, in words.
    pub reason: String,
}

impl Denial {
    /// A denial with `code` and `reason`.
    pub fn new(code: DenyCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.reason)
    }
}

impl std::error::Error for Denial {}
