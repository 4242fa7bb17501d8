//! Ed25519 public keys as JWKs (RFC 8037), strictly parsed, and their RFC 7638 thumbprints.
//!
//! Only `kty: OKP`, `crv: Ed25519` keys exist here. A JWK is refused when it carries private
//! material, when `x` is not exactly 32 bytes of strict base64url, when the point is not a
//! canonical encoding, or when it has small order (a "weak" key that verifies forged signatures).

use std::sync::OnceLock;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::encoding::{b64url, b64url_decode};

/// A validated Ed25519 public key.
#[derive(Clone)]
pub struct PublicJwk {
    key: VerifyingKey,
    /// The RFC 7638 thumbprint, computed on first use: a DPoP key's is needed on every proof.
    thumbprint: OnceLock<String>,
}

impl PartialEq for PublicJwk {
    fn eq(&self, other: &Self) -> bool {
        // The thumbprint is a function of the key.
        self.key == other.key
    }
}

impl Eq for PublicJwk {}

/// Why a JWK was refused. Messages are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// Not a JSON object.
    #[error("a JWK must be a JSON object")]
    NotAnObject,
    /// `kty`/`crv` other than OKP/Ed25519.
    #[error("unsupported key type `{0}`: only `OKP` keys with `crv` `Ed25519` are accepted")]
    Unsupported(String),
    /// A private member (`d`, `p`, `k`, …) where a public key belongs.
    #[error(
        "the JWK contains the private member `{0}`: send only the public key (`kty`, `crv`, `x`)"
    )]
    PrivateMaterial(String),
    /// A member this profile does not know.
    #[error("unknown JWK member `{0}`")]
    UnknownMember(String),
    /// A member with the wrong JSON type or value.
    #[error("invalid JWK member `{0}`")]
    InvalidMember(&'static str),
    /// `x` is not 32 bytes of strict base64url.
    #[error("`x` must be 32 bytes of unpadded base64url")]
    BadLength,
    /// `x` does not decode to a curve point, or not canonically.
    #[error("`x` is not a canonical Ed25519 point")]
    NotCanonical,
    /// `x` is a point of small order.
    #[error("`x` is a small-order (weak) Ed25519 point")]
    SmallOrder,
}

const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];
const ALLOWED_MEMBERS: [&str; 7] = ["kty", "crv", "x", "kid", "use", "alg", "key_ops"];

impl PublicJwk {
    /// Parses and validates a public JWK.
    pub fn from_json(value: &Value) -> Result<Self, JwkError> {
        Self::from_bytes(&Self::members(value)?)
    }

    /// Whether `value` is a public JWK of exactly this key: every member check of
    /// [`PublicJwk::from_json`], then `x` compared with this key's bytes. No curve arithmetic:
    /// this key is already known to be valid, so an equal `x` is too.
    pub fn matches_json(&self, value: &Value) -> Result<bool, JwkError> {
        Ok(Self::members(value)? == self.bytes())
    }

    /// The member checks of a public JWK, and the 32 bytes of `x`.
    fn members(value: &Value) -> Result<[u8; 32], JwkError> {
        let obj = value.as_object().ok_or(JwkError::NotAnObject)?;
        // Private material is named first, whatever else is wrong: it must never be accepted.
        if let Some(name) = obj.keys().find(|n| PRIVATE_MEMBERS.contains(&n.as_str())) {
            return Err(JwkError::PrivateMaterial(name.clone()));
        }
        let kty = str_member(obj, "kty")?;
        if kty != "OKP" {
            return Err(JwkError::Unsupported(kty.chars().take(16).collect()));
        }
        let crv = str_member(obj, "crv")?;
        if crv != "Ed25519" {
            return Err(JwkError::Unsupported(format!(
                "OKP/{}",
                crv.chars().take(16).collect::<String>()
            )));
        }
        if let Some(name) = obj.keys().find(|n| !ALLOWED_MEMBERS.contains(&n.as_str())) {
            return Err(JwkError::UnknownMember(name.chars().take(32).collect()));
        }
        if obj.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            return Err(JwkError::InvalidMember("use"));
        }
        if obj
            .get("alg")
            .is_some_and(|a| !matches!(a.as_str(), Some("EdDSA" | "Ed25519")))
        {
            return Err(JwkError::InvalidMember("alg"));
        }
        if obj.get("kid").is_some_and(|k| !k.is_string()) {
            return Err(JwkError::InvalidMember("kid"));
        }
        if let Some(ops) = obj.get("key_ops") {
            let ok = ops
                .as_array()
                .is_some_and(|a| a.iter().all(|o| o.as_str() == Some("verify")));
            if !ok {
                return Err(JwkError::InvalidMember("key_ops"));
            }
        }
        let x = str_member(obj, "x")?;
        let raw = b64url_decode(x).ok_or(JwkError::BadLength)?;
        raw.try_into().map_err(|_| JwkError::BadLength)
    }

    /// Validates a raw 32-byte public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, JwkError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| JwkError::NotCanonical)?;
        // RFC 8032 §5.1.3: a y coordinate ≥ p is a non-canonical encoding; decompression is
        // lenient about it, so re-encode and compare.
        if key.to_edwards().compress().to_bytes() != *bytes {
            return Err(JwkError::NotCanonical);
        }
        if key.is_weak() {
            return Err(JwkError::SmallOrder);
        }
        Ok(Self::new(key))
    }

    fn new(key: VerifyingKey) -> Self {
        Self {
            key,
            thumbprint: OnceLock::new(),
        }
    }

    /// The public key of the Ed25519 key with this 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::new(SigningKey::from_bytes(seed).verifying_key())
    }

    /// The raw public key bytes.
    pub fn bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The key for signature verification.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// RFC 7638 thumbprint: base64url(SHA-256 of `{"crv":"Ed25519","kty":"OKP","x":"…"}`),
    /// members in lexicographic order, no whitespace (RFC 8037 §2).
    pub fn thumbprint(&self) -> String {
        self.thumbprint_str().to_owned()
    }

    /// [`PublicJwk::thumbprint`], borrowed: computed once per key value.
    pub fn thumbprint_str(&self) -> &str {
        self.thumbprint.get_or_init(|| {
            let text = format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                b64url(&self.bytes())
            );
            b64url(&Sha256::digest(text.as_bytes()))
        })
    }

    /// The public JWK `{kty, crv, x}`.
    pub fn to_json(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(&self.bytes())})
    }

    /// `did:key` of this key: `did:key:z` + base58btc(0xed 0x01 ‖ key) (W3C CCG did:key, multicodec
    /// `ed25519-pub`).
    pub fn did_key(&self) -> String {
        let mut raw = Vec::with_capacity(34);
        raw.extend_from_slice(&[0xed, 0x01]);
        raw.extend_from_slice(&self.bytes());
        format!("did:key:z{}", bs58::encode(raw).into_string())
    }
}

impl std::fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicJwk({})", self.thumbprint())
    }
}

/// A private JWK `{kty, crv, x, d, kid}` for a key generated from `seed` (which the caller draws
/// from its RNG). Returned to its owner exactly once; never stored.
pub fn private_jwk_from_seed(seed: &[u8; 32]) -> (PublicJwk, Value) {
    let public = PublicJwk::from_seed(seed);
    let jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(&public.bytes()),
        "d": b64url(seed),
        "kid": public.thumbprint(),
    });
    (public, jwk)
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, JwkError> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or(JwkError::InvalidMember(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8037 Appendix A.1 / A.3.
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";

    #[test]
    fn rfc8037_thumbprint_and_key_pair() {
        let jwk =
            PublicJwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X})).unwrap();
        assert_eq!(
            jwk.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let seed: [u8; 32] = b64url_decode(RFC8037_D).unwrap().try_into().unwrap();
        let (public, private) = private_jwk_from_seed(&seed);
        assert_eq!(public, jwk);
        assert_eq!(private["x"], RFC8037_X);
    }

    #[test]
    fn matches_json_is_from_json_equality() {
        let key = PublicJwk::from_seed(&[3; 32]);
        assert_eq!(key.matches_json(&key.to_json()), Ok(true));
        let other = PublicJwk::from_seed(&[4; 32]).to_json();
        assert_eq!(key.matches_json(&other), Ok(false));
        let mut private = key.to_json();
        private["d"] = json!(b64url(&[3; 32]));
        assert_eq!(
            key.matches_json(&private),
            Err(JwkError::PrivateMaterial("d".into()))
        );
        let mut unknown = key.to_json();
        unknown["x5u"] = json!("https://e.example");
        assert!(key.matches_json(&unknown).is_err());
    }

    #[test]
    fn did_key_matches_w3c_ccg_vector() {
        // w3c-ccg/did-method-key test-vectors/ed25519-x25519.json, seed 0.
        let (public, _) = private_jwk_from_seed(&[0u8; 32]);
        assert_eq!(
            public.did_key(),
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
        );
    }

    #[test]
    fn refuses_bad_keys() {
        let cases = [
            (json!("x"), JwkError::NotAnObject),
            (
                json!({"kty": "RSA", "n": "x", "e": "AQAB"}),
                JwkError::Unsupported("RSA".into()),
            ),
            (
                json!({"crv": "Ed25519", "x": RFC8037_X}),
                JwkError::InvalidMember("kty"),
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "x5u": "https://e.example"}),
                JwkError::UnknownMember("x5u".into()),
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": RFC8037_X}),
                JwkError::Unsupported("EC".into()),
            ),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": RFC8037_X}),
                JwkError::Unsupported("OKP/X25519".into()),
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "d": RFC8037_D}),
                JwkError::PrivateMaterial("d".into()),
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
                JwkError::BadLength,
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": format!("{RFC8037_X}=")}),
                JwkError::BadLength,
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "use": "enc"}),
                JwkError::InvalidMember("use"),
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "alg": "RS256"}),
                JwkError::InvalidMember("alg"),
            ),
        ];
        for (input, want) in cases {
            let got = PublicJwk::from_json(&input).unwrap_err();
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn refuses_small_order_and_non_canonical_points() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicJwk::from_bytes(&identity).unwrap_err(),
            JwkError::SmallOrder
        );
        // y = p + 1 ≡ 1 encodes the identity non-canonically.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert_eq!(
            PublicJwk::from_bytes(&non_canonical).unwrap_err(),
            JwkError::NotCanonical
        );
        // A point of order 8 (y = 0 … is order 4): 0 encodes (x=±sqrt(-1), y=0)? use known
        // small-order point from the "weak key" lists: all zeros is order 4.
        assert!(matches!(
            PublicJwk::from_bytes(&[0u8; 32]).unwrap_err(),
            JwkError::SmallOrder | JwkError::NotCanonical
        ));
    }
}
