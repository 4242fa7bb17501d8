//! Compact JWS (RFC 7515 §7.1) signing and the two-step parse-then-verify pipeline.

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Map, Value};

use crate::encoding::b64url;
use crate::json::parse_strict;
use crate::jwk::PublicJwk;

use super::claims::{req_identifier, req_str};
use super::error::shown;
use super::{Algorithm, JoseError, JoseLimits, JwtKind};
use super::{b64, ed25519};

/// Headers that name or carry a key. Keys come from our registry or configuration, never from
/// the token (SECURITY.md, line 2); a DPoP proof's own `jwk` is the one exception.
const KEY_HEADERS: [&str; 5] = ["jku", "x5u", "x5c", "x5t", "x5t#S256"];

/// Signs `claims` as a compact JWS of `kind`: header `{alg, typ, kid?}`, `typ` from
/// [`JwtKind::typ`].
///
/// `claims` should be a JSON object; anything else is signed as given and refused by every
/// verifier. Deterministic: Ed25519 signatures have no randomness (RFC 8032 §5.1.6).
pub fn sign(
    kind: JwtKind,
    kid: Option<&str>,
    alg: Algorithm,
    claims: &Value,
    key: &SigningKey,
) -> String {
    let mut header = Map::new();
    header.insert("alg".into(), alg.as_str().into());
    header.insert("typ".into(), kind.typ().into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    compact(&Value::Object(header), claims.to_string().as_bytes(), key)
}

/// Signs like [`sign`] but puts the public key in a `jwk` header and no `kid`: the form of a
/// DPoP proof (RFC 9449 §4.2), for clients and tests. Verification refuses a `jwk` header on
/// every other kind.
pub fn sign_with_jwk(kind: JwtKind, alg: Algorithm, claims: &Value, key: &SigningKey) -> String {
    let x = b64url(key.verifying_key().as_bytes());
    let mut jwk = Map::new();
    jwk.insert("kty".into(), "OKP".into());
    jwk.insert("crv".into(), "Ed25519".into());
    jwk.insert("x".into(), x.into());
    let mut header = Map::new();
    header.insert("alg".into(), alg.as_str().into());
    header.insert("typ".into(), kind.typ().into());
    header.insert("jwk".into(), Value::Object(jwk));
    compact(&Value::Object(header), claims.to_string().as_bytes(), key)
}

/// A compact JWS whose structure was checked but whose signature was NOT: nothing read from it
/// may be trusted. Its only uses are finding the verification key ([`Unverified::kid`],
/// [`Unverified::unverified_client_id`]) and calling [`Unverified::verify`].
#[derive(Clone)]
pub struct Unverified {
    signing_input: String,
    signature: Vec<u8>,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl Unverified {
    /// Parses a compact JWS, applying every check that needs no key:
    ///
    /// - at most [`JoseLimits::max_token_bytes`] bytes, before anything else;
    /// - exactly three segments, each strict unpadded base64url;
    /// - header and payload are JSON objects without duplicate members, nested at most
    ///   [`JoseLimits::max_json_depth`] deep;
    /// - no `crit`, no `zip`, no `b64` other than `true`; `alg`, `typ`, `kid` are strings.
    pub fn parse(token: &str, limits: &JoseLimits) -> Result<Self, JoseError> {
        if token.len() > limits.max_token_bytes {
            return Err(JoseError::TooLarge {
                max: limits.max_token_bytes,
            });
        }
        // RFC 7515 §7.1: BASE64URL(UTF8(JWS Protected Header)) || '.' || BASE64URL(JWS Payload)
        // || '.' || BASE64URL(JWS Signature).
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoseError::SegmentCount);
        };
        let header = object(h, "header", limits)?;
        check_header(&header)?;
        let claims = object(p, "payload", limits)?;
        let signature = b64::decode(s).ok_or(JoseError::Base64 {
            segment: "signature",
        })?;
        // The signing input is the token up to its second dot.
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or(JoseError::SegmentCount)?
            .to_owned();
        Ok(Self {
            signing_input,
            signature,
            header,
            claims,
        })
    }

    /// The protected header, unverified.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The claims, unverified: use them only to find the key.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The `kid` header, unverified.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// The client id a client assertion claims to come from (RFC 7523 §3: `sub` is the client
    /// id, and `iss` must equal it), read before verification so the server can look up the
    /// client's key. UNTRUSTED until [`verify_client_assertion`](super::verify_client_assertion)
    /// has succeeded; an unknown client must fail exactly like a bad signature.
    pub fn unverified_client_id(&self) -> Result<&str, JoseError> {
        let sub = req_identifier(&self.claims, "sub")?;
        if req_str(&self.claims, "iss")? != sub {
            return Err(JoseError::IssuerSubjectMismatch);
        }
        Ok(sub)
    }

    /// Verifies the token as `kind` with `key` and returns it as [`Verified`].
    ///
    /// In order: `alg` is `EdDSA` or `Ed25519` (the key is Ed25519, whatever the header says);
    /// `typ` marks `kind`; no `jku`, `x5u`, `x5c`, `x5t`, `x5t#S256` header; a `jwk` header only
    /// on a DPoP proof, where it is required and must be `key`; then the signature, with
    /// `verify_strict` over `ASCII(header_b64 '.' payload_b64)` (RFC 7515 §5.2 step 8).
    ///
    /// Claims are not checked here: the profile functions do that.
    pub fn verify(self, kind: JwtKind, key: &PublicJwk) -> Result<Verified, JoseError> {
        // RFC 7515 §4.1.1: "alg" is REQUIRED; RFC 8725 §3.1: "Libraries MUST enable the caller
        // to specify a supported set of algorithms and MUST NOT use any other algorithms".
        let alg = match self.header.get("alg") {
            None => return Err(JoseError::MissingHeader { name: "alg" }),
            Some(Value::String(alg)) => alg,
            Some(_) => return Err(JoseError::InvalidHeader { name: "alg" }),
        };
        if Algorithm::from_header(alg).is_none() {
            return Err(JoseError::UnsupportedAlgorithm { alg: shown(alg) });
        }
        // RFC 8725 §3.11: "use explicit typing"; §2.8 cross-JWT confusion.
        let typ = self.header.get("typ").and_then(Value::as_str);
        if !kind.accepts_typ(typ) {
            return Err(JoseError::WrongType { expected: kind });
        }
        if let Some(name) = KEY_HEADERS
            .into_iter()
            .find(|n| self.header.contains_key(*n))
        {
            return Err(JoseError::KeyInHeader { name });
        }
        match (kind, self.header.get("jwk")) {
            // RFC 9449 §4.2: a DPoP proof's header carries `jwk`, "the public key chosen by the
            // client"; it must be the key this proof is verified with.
            (JwtKind::DpopProof, None) => return Err(JoseError::MissingHeader { name: "jwk" }),
            (JwtKind::DpopProof, Some(jwk)) => {
                if !key.matches_json(jwk).map_err(JoseError::InvalidProofKey)? {
                    return Err(JoseError::ProofKeyMismatch);
                }
            }
            (_, Some(_)) => return Err(JoseError::KeyInHeader { name: "jwk" }),
            (_, None) => {}
        }
        // RFC 8037 §3.1 / RFC 8032 §5.1.7, with the strict checks (canonical S, no small-order
        // R or A) that `verify_strict` adds.
        let bytes: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| JoseError::BadSignature)?;
        // `ed25519::verify_strict` accepts exactly what `VerifyingKey::verify_strict` does.
        if !ed25519::verify_strict(key, self.signing_input.as_bytes(), &bytes) {
            return Err(JoseError::BadSignature);
        }
        Ok(Verified {
            kind,
            header: self.header,
            claims: self.claims,
        })
    }
}

impl std::fmt::Debug for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signature is left out: header and claims alone cannot be replayed.
        f.debug_struct("Unverified")
            .field("header", &self.header)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// A JWT whose header passed its kind's profile and whose signature verified. Only
/// [`Unverified::verify`] builds one.
#[derive(Debug, Clone)]
pub struct Verified {
    kind: JwtKind,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl Verified {
    /// The kind the token was verified as.
    pub fn kind(&self) -> JwtKind {
        self.kind
    }

    /// The protected header.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The claims. Signed, but not yet validated against any profile.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The `kid` header.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }
}

/// RFC 7515 §5.1 steps 1–6: the JWS Signing Input, signed, and the three segments joined.
pub(crate) fn compact(header: &Value, payload: &[u8], key: &SigningKey) -> String {
    let mut out = b64url(header.to_string().as_bytes());
    out.push('.');
    out.push_str(&b64url(payload));
    let signature = key.sign(out.as_bytes());
    out.push('.');
    out.push_str(&b64url(&signature.to_bytes()));
    out
}

/// RFC 7519 §7.2 steps 2–5 and 8–10: decode a segment and require a JSON object.
fn object(
    segment_b64: &str,
    segment: &'static str,
    limits: &JoseLimits,
) -> Result<Map<String, Value>, JoseError> {
    let bytes = b64::decode(segment_b64).ok_or(JoseError::Base64 { segment })?;
    match parse_strict(&bytes, limits.max_json_depth) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JoseError::NotAnObject { segment }),
        Err(source) => Err(JoseError::Json { segment, source }),
    }
}

/// Header checks that need no key and no kind.
fn check_header(header: &Map<String, Value>) -> Result<(), JoseError> {
    // RFC 7515 §4.1.11: "If any of the listed extension Header Parameters are not understood
    // and supported by the recipient, then the JWS is invalid." We understand none.
    if header.contains_key("crit") {
        return Err(JoseError::CriticalHeader);
    }
    // RFC 7797 §3: `b64: false` would sign the payload unencoded; we only do the default.
    if header.get("b64").is_some_and(|b| *b != Value::Bool(true)) {
        return Err(JoseError::UnsupportedHeader { name: "b64" });
    }
    // RFC 7516 §4.1.3: compression belongs to JWE; never decompress attacker input.
    if header.contains_key("zip") {
        return Err(JoseError::UnsupportedHeader { name: "zip" });
    }
    for name in ["alg", "typ", "kid"] {
        if header.get(name).is_some_and(|v| !v.is_string()) {
            return Err(JoseError::InvalidHeader { name });
        }
    }
    Ok(())
}
