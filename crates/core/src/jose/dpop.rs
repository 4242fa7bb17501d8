//! DPoP proof validation: every check of RFC 9449 §4.3 that needs no store.

use std::borrow::Borrow;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::encoding::b64url;
use crate::jwk::{JwkError, PublicJwk};

use super::claims::{opt_str, req_date, req_identifier, req_str};
use super::jws::Unverified;
use super::{JoseError, JoseLimits, JwtKind, htu};

/// The default of [`DpopExpectation::max_age_secs`]: a proof is accepted for five minutes.
pub const DEFAULT_DPOP_MAX_AGE_SECS: i64 = 300;
/// The default of [`DpopExpectation::future_leeway_secs`].
pub const DEFAULT_DPOP_FUTURE_LEEWAY_SECS: i64 = 5;

/// What the request a DPoP proof arrived with says the proof must match.
#[derive(Clone, Copy)]
pub struct DpopExpectation<'a> {
    /// The request's HTTP method, exactly as received (methods are case-sensitive,
    /// RFC 9110 §9.1).
    pub htm: &'a str,
    /// The request's target URI, built from the server's configured public base URL and the
    /// request path (never from a `Host` header the server does not control).
    pub htu: &'a str,
    /// The current time, unix seconds.
    pub now: i64,
    /// Oldest accepted `iat`, in seconds before `now`.
    pub max_age_secs: i64,
    /// Latest accepted `iat`, in seconds after `now`.
    pub future_leeway_secs: i64,
    /// The access token presented with the proof, if any: `ath` is then required and checked.
    pub access_token: Option<&'a str>,
    /// The nonce the server gave this client, if any: `nonce` must then equal it.
    pub nonce: Option<&'a str>,
}

impl<'a> DpopExpectation<'a> {
    /// An expectation with the default window, no access token and no nonce.
    pub fn new(htm: &'a str, htu: &'a str, now: i64) -> Self {
        Self {
            htm,
            htu,
            now,
            max_age_secs: DEFAULT_DPOP_MAX_AGE_SECS,
            future_leeway_secs: DEFAULT_DPOP_FUTURE_LEEWAY_SECS,
            access_token: None,
            nonce: None,
        }
    }
}

impl std::fmt::Debug for DpopExpectation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The access token is a bearer credential: it never goes to a log.
        f.debug_struct("DpopExpectation")
            .field("htm", &self.htm)
            .field("htu", &self.htu)
            .field("now", &self.now)
            .field("max_age_secs", &self.max_age_secs)
            .field("future_leeway_secs", &self.future_leeway_secs)
            .field("access_token", &self.access_token.map(|_| "…"))
            .field("nonce", &self.nonce)
            .finish()
    }
}

/// A DPoP proof that passed every stateless check of RFC 9449 §4.3. Only
/// [`verify_dpop_proof`] builds one.
///
/// What is left to the caller: reject a request with more than one `DPoP` header (check 1),
/// record `(jkt, jti)` in a replay store shared across replicas and kept for at least
/// `max_age_secs + future_leeway_secs` (RFC 9449 §11.1), and, with an access token, call
/// [`DpopProof::check_binding`] with its `cnf.jkt` (check 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    jkt: String,
    jti: String,
    iat: i64,
}

impl DpopProof {
    /// The RFC 7638 thumbprint of the proof key: what `cnf.jkt` binds a token to.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The proof's `jti`, for the replay store.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The proof's `iat`, unix seconds.
    pub fn iat(&self) -> i64 {
        self.iat
    }

    /// RFC 9449 §4.3 (12): "confirm that the public key to which the access token is bound
    /// matches the public key from the DPoP proof", given the token's `cnf.jkt`.
    pub fn check_binding(&self, cnf_jkt: &str) -> Result<(), JoseError> {
        if self.jkt != cnf_jkt {
            return Err(JoseError::KeyBindingMismatch);
        }
        Ok(())
    }
}

/// RFC 9449 §4.2: `ath` is "the base64url encoding [...] of the SHA-256 [...] hash of the
/// ASCII encoding of the associated access token's value".
pub fn access_token_hash(access_token: &str) -> String {
    b64url(&Sha256::digest(access_token.as_bytes()))
}

/// Validates a DPoP proof against the request it came with (RFC 9449 §4.3, checks 2 to 12;
/// check 1 and the replay check are the caller's, see [`DpopProof`]).
pub fn verify_dpop_proof(
    proof: &str,
    expect: &DpopExpectation<'_>,
    limits: &JoseLimits,
) -> Result<DpopProof, JoseError> {
    verify_dpop_proof_with(proof, expect, limits, PublicJwk::from_json)
}

/// [`verify_dpop_proof`] with the proof key read from the `jwk` header by `key_of`, which
/// must validate it exactly as [`PublicJwk::from_json`] does — for example a cache, keyed by
/// the whole `jwk` object, of keys that function accepted (a client reuses its DPoP key).
pub fn verify_dpop_proof_with<K: Borrow<PublicJwk>>(
    proof: &str,
    expect: &DpopExpectation<'_>,
    limits: &JoseLimits,
    key_of: impl FnOnce(&Value) -> Result<K, JwkError>,
) -> Result<DpopProof, JoseError> {
    let ath = expect.access_token.map(AccessTokenRef::Token);
    verify(proof, expect, limits, ath, key_of)
}

/// [`verify_dpop_proof_with`] for a resource server that already holds the SHA-256 of the
/// access token presented with the proof (a gate keys its verified-token cache by it), so the
/// token is not hashed twice: `ath` is required and must be the base64url encoding of
/// `access_token_sha256` (RFC 9449 §4.3 check 12). `expect.access_token` is not read.
pub fn verify_dpop_proof_for_token_hash<K: Borrow<PublicJwk>>(
    proof: &str,
    expect: &DpopExpectation<'_>,
    limits: &JoseLimits,
    access_token_sha256: &[u8; 32],
    key_of: impl FnOnce(&Value) -> Result<K, JwkError>,
) -> Result<DpopProof, JoseError> {
    let ath = Some(AccessTokenRef::Sha256(access_token_sha256));
    verify(proof, expect, limits, ath, key_of)
}

/// The access token a proof must be bound to by `ath`: itself, or its SHA-256.
#[derive(Clone, Copy)]
enum AccessTokenRef<'a> {
    Token(&'a str),
    Sha256(&'a [u8; 32]),
}

fn verify<K: Borrow<PublicJwk>>(
    proof: &str,
    expect: &DpopExpectation<'_>,
    limits: &JoseLimits,
    access_token: Option<AccessTokenRef<'_>>,
    key_of: impl FnOnce(&Value) -> Result<K, JwkError>,
) -> Result<DpopProof, JoseError> {
    // (2) "The DPoP HTTP request header field value is a single and well-formed JWT."
    let unverified = Unverified::parse(proof, limits)?;

    // (7) "The jwk JOSE Header Parameter does not contain a private key."
    // `PublicJwk::from_json` refuses private members first, then anything but a canonical,
    // non-small-order OKP Ed25519 public key.
    let jwk = unverified
        .header()
        .get("jwk")
        .ok_or(JoseError::MissingHeader { name: "jwk" })?;
    let key = key_of(jwk).map_err(JoseError::InvalidProofKey)?;
    let key: &PublicJwk = key.borrow();

    // (4) "The typ JOSE Header Parameter has the value dpop+jwt."
    // (5) "The alg JOSE Header Parameter indicates a registered asymmetric digital signature
    // algorithm [IANA.JOSE.ALGS], is not none, is supported by the application, and is
    // acceptable per local policy."
    // (6) "The JWT signature verifies with the public key contained in the jwk JOSE Header
    // Parameter."
    let verified = unverified.verify(JwtKind::DpopProof, key)?;
    let claims = verified.claims();

    // (3) "All required claims per Section 4.2 are contained in the JWT."
    // §4.2: jti, htm, htu and iat always; ath and nonce are checked below when required.
    let jti = req_identifier(claims, "jti")?;
    let htm = req_str(claims, "htm")?;
    let htu = req_str(claims, "htu")?;
    let iat = req_date(claims, "iat")?;

    // (8) "The htm claim matches the HTTP method of the current request."
    if htm != expect.htm {
        return Err(JoseError::WrongMethod);
    }

    // (9) "The htu claim matches the HTTP URI value for the HTTP request in which the JWT was
    // received, ignoring any query and fragment parts."
    let found = htu::normalize(htu).ok_or(JoseError::InvalidClaim { name: "htu" })?;
    // An expected URI that does not normalise cannot be matched by any proof.
    let wanted = htu::normalize(expect.htu).ok_or(JoseError::WrongUri)?;
    if found != wanted {
        return Err(JoseError::WrongUri);
    }

    // (10) "If the server provided a nonce value to the client, the nonce claim matches the
    // server-provided nonce value." Missing or different: `use_dpop_nonce` (§8, §9).
    if let Some(nonce) = expect.nonce {
        match opt_str(claims, "nonce") {
            Ok(Some(found)) if found == nonce => {}
            _ => return Err(JoseError::WrongNonce),
        }
    }

    // (11) "The creation time of the JWT, as determined by either the iat claim or a server
    // managed timestamp via the nonce claim, is within an acceptable window (see
    // Section 11.1)."
    if iat < expect.now.saturating_sub(expect.max_age_secs) {
        return Err(JoseError::StaleProof {
            max_age_secs: expect.max_age_secs,
        });
    }
    if iat > expect.now.saturating_add(expect.future_leeway_secs) {
        return Err(JoseError::IssuedInFuture);
    }

    // (12) "If presented to a protected resource in conjunction with an access token, ensure
    // that the value of the ath claim equals the hash of that access token, and confirm that
    // the public key to which the access token is bound matches the public key from the DPoP
    // proof." The second half is `DpopProof::check_binding`, with the token's `cnf.jkt`.
    if let Some(access_token) = access_token {
        let ath = req_str(claims, "ath")?;
        let expected = match access_token {
            AccessTokenRef::Token(token) => access_token_hash(token),
            AccessTokenRef::Sha256(hash) => b64url(hash),
        };
        if ath != expected {
            return Err(JoseError::AccessTokenHashMismatch);
        }
    }

    Ok(DpopProof {
        jkt: key.thumbprint_str().to_owned(),
        jti: jti.to_owned(),
        iat,
    })
}
