//! Ed25519 key files on the agent's side: its long-term private JWK, and ephemeral DPoP keys
//! generated for one token and saved with it.

use std::fs;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use mandate_core::encoding::{b64url, b64url_decode};
use mandate_core::jose::{self, Algorithm, JwtKind};
use mandate_core::jwk;
use mandate_server::keys::ServerKey;
use serde_json::Value;

/// An Ed25519 key pair held by this process (an agent key or a DPoP key).
///
/// `ServerKey` is the workspace's general Ed25519 key pair (a seed with its public JWK); nothing
/// here is a server key. Its `Debug` shows the thumbprint only.
#[derive(Debug)]
pub(crate) struct KeyPair {
    key: ServerKey,
}

impl KeyPair {
    /// A fresh key from the operating system's CSPRNG, with its private JWK
    /// `{kty, crv, x, d, kid}` (for the token file it travels in).
    pub(crate) fn generate() -> Result<(Self, Value)> {
        let seed = mandate_server::state::random::<32>()
            .map_err(|_| anyhow!("the system random source is unavailable"))?;
        let (_, private) = jwk::private_jwk_from_seed(&seed);
        Ok((
            Self {
                key: ServerKey::from_seed(&seed),
            },
            private,
        ))
    }

    /// Reads a private JWK file such as `mandate agent add --save-key` writes.
    pub(crate) fn load(path: &Path, flag: &str) -> Result<Self> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("`{flag}`: cannot read `{}`", path.display()))?;
        // The parse error names a line and column, never the text.
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "`{flag}`: `{}` is not a JSON key file (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        Self::from_jwk(&value)
            .with_context(|| format!("`{flag}`: `{}` is not a usable key", path.display()))
    }

    /// A key pair from a private Ed25519 JWK; `x` and `kid`, when present, must match `d`.
    pub(crate) fn from_jwk(jwk: &Value) -> Result<Self> {
        let Some(obj) = jwk.as_object() else {
            bail!("expected a JWK object");
        };
        let member = |name: &str| obj.get(name).and_then(Value::as_str);
        if member("kty") != Some("OKP") || member("crv") != Some("Ed25519") {
            bail!("expected an Ed25519 key (`kty` `OKP`, `crv` `Ed25519`)");
        }
        let Some(d) = member("d") else {
            bail!("the JWK holds no private key (`d`): this command needs the private key file");
        };
        let mut seed: [u8; 32] = b64url_decode(d)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| anyhow!("`d` is not 32 bytes of base64url"))?;
        let key = ServerKey::from_seed(&seed);
        seed.fill(0);
        if let Some(x) = member("x")
            && x != b64url(&key.public().bytes())
        {
            bail!("`x` is not the public key of `d`");
        }
        if let Some(kid) = member("kid")
            && kid != key.kid()
        {
            bail!("`kid` is not the thumbprint of the key");
        }
        Ok(Self { key })
    }

    /// The RFC 7638 thumbprint: the agent key's `kid`, or the `jkt` a token is bound to.
    pub(crate) fn thumbprint(&self) -> String {
        self.key.kid()
    }

    /// Signs `claims` as `kind` with this key named by `kid`.
    pub(crate) fn sign(&self, kind: JwtKind, claims: &Value) -> String {
        jose::sign(
            kind,
            Some(&self.thumbprint()),
            Algorithm::EdDSA,
            claims,
            self.key.signing_key(),
        )
    }

    /// Signs `claims` as a DPoP proof, the public key in the `jwk` header.
    pub(crate) fn sign_dpop(&self, claims: &Value) -> String {
        jose::sign_with_jwk(
            JwtKind::DpopProof,
            Algorithm::EdDSA,
            claims,
            self.key.signing_key(),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn generated_keys_round_trip_through_their_jwk() {
        let (key, private) = KeyPair::generate().unwrap();
        let again = KeyPair::from_jwk(&private).unwrap();
        assert_eq!(key.thumbprint(), again.thumbprint());
        assert_eq!(private["kid"], key.thumbprint());
        let (other, _) = KeyPair::generate().unwrap();
        assert_ne!(key.thumbprint(), other.thumbprint());
    }

    #[test]
    fn inconsistent_or_public_keys_are_refused() {
        let (_, private) = jwk::private_jwk_from_seed(&[7; 32]);
        let (_, other) = jwk::private_jwk_from_seed(&[8; 32]);
        let mut wrong_x = private.clone();
        wrong_x["x"] = other["x"].clone();
        let mut wrong_kid = private.clone();
        wrong_kid["kid"] = other["kid"].clone();
        let mut public = private.clone();
        public.as_object_mut().unwrap().remove("d");
        let mut rsa = private.clone();
        rsa["kty"] = json!("RSA");
        for (what, jwk) in [
            ("x", wrong_x),
            ("kid", wrong_kid),
            ("no d", public),
            ("kty", rsa),
            (
                "short d",
                json!({"kty": "OKP", "crv": "Ed25519", "d": "AAAA"}),
            ),
            ("array", json!([])),
        ] {
            let e = KeyPair::from_jwk(&jwk).unwrap_err().to_string();
            assert!(!e.contains(private["d"].as_str().unwrap()), "{what}: {e}");
        }
        assert!(KeyPair::from_jwk(&private).is_ok());
    }

    #[test]
    fn a_key_file_that_is_not_json_does_not_echo_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.jwk");
        fs::write(&path, "SECRET-not-json").unwrap();
        let e = format!("{:#}", KeyPair::load(&path, "--key").unwrap_err());
        assert!(e.contains("--key") && !e.contains("SECRET"), "{e}");
    }
}
