//! JOSE for Mandate: compact JWS with Ed25519 only, one validation profile per JWT kind.
//!
//! The pipeline has two typed steps (STYLE §2, "Let types prove that verification ran"):
//!
//! 1. [`Unverified::parse`] applies the cheap, key-independent checks — size, shape, strict
//!    base64url, strict JSON (no duplicate members, bounded depth), no `crit`, no `b64`, no
//!    `zip` — and lets the caller read the header and claims *without* trusting them, to find
//!    the key.
//! 2. [`Unverified::verify`] checks the header against the expected [`JwtKind`] (pinned
//!    algorithm, explicit `typ`, no key-carrying headers) and the signature with the caller's
//!    key, returning a [`Verified`] that nothing else can build.
//!
//! The claim profiles then take a [`Verified`]: [`verify_client_assertion`] (RFC 7523 §3 with
//! draft-ietf-oauth-rfc7523bis) and [`AccessTokenClaims::from_verified`] (RFC 9068 §4).
//! DPoP proofs carry their own key, so [`verify_dpop_proof`] runs the whole of RFC 9449 §4.3 in
//! one call. Time comes in as unix seconds; the caller keeps the replay stores.
//!
//! ```
//! use ed25519_dalek::SigningKey;
//! use mandate_core::jose::{self, Algorithm, JoseLimits, JwtKind, Unverified};
//! use mandate_core::jwk::PublicJwk;
//! use serde_json::json;
//!
//! let key = SigningKey::from_bytes(&[7u8; 32]);
//! let public = PublicJwk::from_seed(&[7u8; 32]);
//! let token = jose::sign(
//!     JwtKind::Delegation,
//!     Some("k1"),
//!     Algorithm::EdDSA,
//!     &json!({"sub": "agent"}),
//!     &key,
//! );
//! let unverified = Unverified::parse(&token, &JoseLimits::default())?;
//! assert_eq!(unverified.kid(), Some("k1"));
//! let verified = unverified.verify(JwtKind::Delegation, &public)?;
//! assert_eq!(verified.claims()["sub"], "agent");
//! // The same token is not an access token.
//! let again = Unverified::parse(&token, &JoseLimits::default())?;
//! assert!(again.verify(JwtKind::AccessToken, &public).is_err());
//! # Ok::<(), jose::JoseError>(())
//! ```

mod access_token;
mod assertion;
mod b64;
mod claims;
mod dpop;
mod ed25519;
mod error;
mod htu;
mod jws;
mod kind;

use serde::{Deserialize, Serialize};

pub use access_token::{
    AccessTokenClaims, AccessTokenExpectation, Confirmation, DEFAULT_ACCESS_TOKEN_LEEWAY_SECS,
};
pub use assertion::{
    AssertionExpectation, ClientAssertion, DEFAULT_ASSERTION_LEEWAY_SECS,
    DEFAULT_ASSERTION_LIFETIME_SECS, verify_client_assertion,
};
pub use claims::{MAX_IDENTIFIER_BYTES, MAX_NUMERIC_DATE};
pub use dpop::{
    DEFAULT_DPOP_FUTURE_LEEWAY_SECS, DEFAULT_DPOP_MAX_AGE_SECS, DpopExpectation, DpopProof,
    access_token_hash, verify_dpop_proof, verify_dpop_proof_for_token_hash, verify_dpop_proof_with,
};
pub use error::JoseError;
pub use jws::{Unverified, Verified, sign, sign_with_jwk};
pub use kind::{ALL_KINDS, Algorithm, JwtKind};

/// The default of [`JoseLimits::max_token_bytes`]: 16 KiB.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The default of [`JoseLimits::max_json_depth`].
pub const DEFAULT_MAX_JSON_DEPTH: usize = 16;

/// Bounds on the work spent on one token, with safe defaults (STYLE §2, "Bounded work").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JoseLimits {
    /// The longest compact token accepted, in bytes; checked before anything else.
    pub max_token_bytes: usize,
    /// The deepest JSON nesting accepted in the header or the payload.
    pub max_json_depth: usize,
}

impl Default for JoseLimits {
    fn default() -> Self {
        Self {
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
        }
    }
}

#[cfg(test)]
mod tests;
