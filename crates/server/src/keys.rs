//! The server's Ed25519 signing key: generated on first start, kept in a 0600 file, never
//! logged. Published (public part only) at `/jwks.json`.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;
use mandate_core::encoding::{b64url, b64url_decode};
use mandate_core::jwk::PublicJwk;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::ServerError;

/// The signing key and its public JWK.
pub struct ServerKey {
    signing: SigningKey,
    public: PublicJwk,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey({})", self.public.thumbprint())
    }
}

impl ServerKey {
    /// Loads the key from `path`, or generates and writes it (mode 0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<Self, ServerError> {
        let err = |what: &str| ServerError::new(format!("{what} `{}`", path.display()));
        if path.exists() {
            let text = Zeroizing::new(
                std::fs::read_to_string(path).map_err(|_| err("cannot read the signing key"))?,
            );
            let seed = b64url_decode(text.trim()).ok_or_else(|| err("malformed signing key"))?;
            let seed: Zeroizing<[u8; 32]> =
                Zeroizing::new(seed.try_into().map_err(|_| err("malformed signing key"))?);
            return Ok(Self::from_seed(&seed));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|_| err("no random source to create the signing key"))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts
            .open(path)
            .map_err(|_| err("cannot create the signing key"))?;
        file.write_all(format!("{}\n", b64url(seed.as_ref())).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|_| err("cannot write the signing key"))?;
        Ok(Self::from_seed(&seed))
    }

    /// A key from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
            public: PublicJwk::from_seed(seed),
        }
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> String {
        self.public.thumbprint()
    }

    /// The public JWK as published in the JWKS.
    pub fn jwk(&self) -> Value {
        let mut v = self.public.to_json();
        if let Some(o) = v.as_object_mut() {
            o.insert("kid".into(), json!(self.kid()));
            o.insert("use".into(), json!("sig"));
            o.insert("alg".into(), json!("EdDSA"));
        }
        v
    }

    /// The signing key (for token issuance).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

/// The server's signing keys: the current one signs; every one is published and verifies.
///
/// Rotation (next/retiring) builds on this set; for now it holds the current key.
#[derive(Debug)]
pub struct KeyRing {
    current: ServerKey,
}

impl KeyRing {
    /// A ring with one key.
    pub fn new(current: ServerKey) -> Self {
        Self { current }
    }

    /// The signing key.
    pub fn current(&self) -> &ServerKey {
        &self.current
    }

    /// Every key that verifies (current, next, retiring).
    pub fn verifying(&self) -> impl Iterator<Item = &ServerKey> {
        std::iter::once(&self.current)
    }

    /// The published JWK of `kid`, if it is ours.
    pub fn find(&self, kid: &str) -> Option<&ServerKey> {
        self.verifying().find(|k| k.kid() == kid)
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.verifying().map(ServerKey::jwk).collect::<Vec<_>>()})
    }
}

impl ServerKey {
    /// The public key.
    pub fn public(&self) -> &PublicJwk {
        &self.public
    }
}
