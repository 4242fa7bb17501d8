//! The one error type of the JOSE module.

use crate::json::JsonError;
use crate::jwk::JwkError;

use super::JwtKind;

/// Everything that can make a JWT unacceptable.
///
/// Every message is safe to show to whoever sent the token: none carries key material, and the
/// few that echo input (an unknown `alg`) escape and truncate it. The enum is deliberately
/// exhaustive: each protocol mapping must break when a variant is added.
///
/// How the server maps these (SECURITY.md, "Error conventions"):
///
/// - an access token at a gate or resource: `401 invalid_token`;
/// - a DPoP proof: `invalid_dpop_proof` (`400` at the token endpoint, `401` at a resource),
///   except [`JoseError::WrongNonce`], which is `use_dpop_nonce` with a fresh `DPoP-Nonce`;
/// - a client assertion: `401 invalid_client`, identical for every variant;
/// - an actor token or a delegation document: the token endpoint's bad-grant code;
/// - [`JoseError::ApiMisuse`]: a bug in the caller, `500 server_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// The token is longer than [`JoseLimits::max_token_bytes`](super::JoseLimits).
    #[error("the token is longer than {max} bytes")]
    TooLarge {
        /// The limit in force.
        max: usize,
    },
    /// Not three `.`-separated segments (RFC 7515 §7.1).
    #[error("a compact JWS has exactly three segments separated by `.`")]
    SegmentCount,
    /// A segment that is not strict unpadded base64url (RFC 7515 §2).
    #[error("the {segment} is not unpadded base64url")]
    Base64 {
        /// `header`, `payload` or `signature`.
        segment: &'static str,
    },
    /// The header or payload is not valid JSON, has duplicate members or nests too deeply.
    #[error("malformed {segment}: {source}")]
    Json {
        /// `header` or `payload`.
        segment: &'static str,
        /// What the strict parser refused.
        source: JsonError,
    },
    /// The header or payload is JSON but not an object (RFC 7519 §7.2 steps 5 and 10).
    #[error("the {segment} must be a JSON object")]
    NotAnObject {
        /// `header` or `payload`.
        segment: &'static str,
    },
    /// A `crit` header: no extension is understood here (RFC 7515 §4.1.11).
    #[error("the `crit` header is not supported: no JWS extension is understood")]
    CriticalHeader,
    /// A header that changes how the token is processed (`b64: false`, `zip`).
    #[error("the `{name}` header is not supported")]
    UnsupportedHeader {
        /// The header parameter.
        name: &'static str,
    },
    /// A required header parameter is absent.
    #[error("the `{name}` header is required")]
    MissingHeader {
        /// The header parameter.
        name: &'static str,
    },
    /// A header parameter of the wrong JSON type.
    #[error("the `{name}` header has the wrong type")]
    InvalidHeader {
        /// The header parameter.
        name: &'static str,
    },
    /// An `alg` other than `EdDSA` / `Ed25519`: the key decides the algorithm, never the header.
    #[error("unsupported algorithm `{alg}`: only `EdDSA` and `Ed25519` are accepted")]
    UnsupportedAlgorithm {
        /// The offending value (escaped, truncated).
        alg: String,
    },
    /// The `typ` header does not mark the token as the kind the caller expects.
    #[error("wrong `typ` header for {}: expected {}", .expected.name(), .expected.accepted_types())]
    WrongType {
        /// The kind the token was checked as.
        expected: JwtKind,
    },
    /// A header that names or carries a key (`jku`, `x5u`, `x5c`, `x5t`, `x5t#S256`, `jwk`):
    /// keys only come from the registry or configuration.
    #[error("the `{name}` header is not accepted: keys are never taken from a token")]
    KeyInHeader {
        /// The header parameter.
        name: &'static str,
    },
    /// A DPoP proof's `jwk` header is not a public OKP Ed25519 key.
    #[error("invalid DPoP proof key: {0}")]
    InvalidProofKey(JwkError),
    /// A DPoP proof whose `jwk` header is not the key it was verified with.
    #[error("the DPoP proof's `jwk` header is not the verification key")]
    ProofKeyMismatch,
    /// The signature is not 64 bytes or does not verify strictly (RFC 8032 §5.1.7).
    #[error("the signature does not verify")]
    BadSignature,
    /// A required claim is absent.
    #[error("the `{name}` claim is required")]
    MissingClaim {
        /// The claim.
        name: &'static str,
    },
    /// A claim of the wrong type, out of range or empty.
    #[error("the `{name}` claim is invalid")]
    InvalidClaim {
        /// The claim.
        name: &'static str,
    },
    /// `iss` is not the expected issuer.
    #[error("the `iss` claim is not the expected issuer")]
    WrongIssuer,
    /// `aud` does not name the expected audience (or names more than allowed).
    #[error("the `aud` claim is not the expected audience")]
    WrongAudience,
    /// A client assertion whose `iss` and `sub` differ (RFC 7523 §3).
    #[error("the `iss` and `sub` claims must both be the client id")]
    IssuerSubjectMismatch,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is ahead of the current time by more than the leeway.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// The token lives longer than this profile allows.
    #[error("the token lives longer than {max_secs} seconds")]
    LifetimeTooLong {
        /// The longest lifetime accepted.
        max_secs: i64,
    },
    /// A DPoP proof whose `iat` is older than the accepted window.
    #[error("the DPoP proof is older than {max_age_secs} seconds")]
    StaleProof {
        /// The oldest `iat` accepted, in seconds before now.
        max_age_secs: i64,
    },
    /// A DPoP proof for another HTTP method.
    #[error("the `htm` claim does not match the request method")]
    WrongMethod,
    /// A DPoP proof for another URI.
    #[error("the `htu` claim does not match the request uri")]
    WrongUri,
    /// A DPoP proof whose `ath` is not the hash of the presented access token.
    #[error("the `ath` claim does not match the access token")]
    AccessTokenHashMismatch,
    /// A DPoP proof without the server's current nonce, or with another one.
    #[error("the DPoP proof must carry the server-provided `nonce`")]
    WrongNonce,
    /// A DPoP proof signed by a key other than the one the access token is bound to.
    #[error("the DPoP proof key is not the key the access token is bound to")]
    KeyBindingMismatch,
    /// The caller used the API wrongly (for example, passed a verified token of another kind).
    #[error("internal error: {reason}")]
    ApiMisuse {
        /// What was misused.
        reason: &'static str,
    },
}

/// Escapes and truncates a value from input before it goes into a message.
pub(crate) fn shown(value: &str) -> String {
    const MAX_CHARS: usize = 32;
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || c == '`' || !c.is_ascii() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}
