//! The server's Ed25519 signing keys: generated on first start, kept in a 0600 file, never
//! logged, rotated on demand. Published (public parts only) at `/jwks.json`: the current key
//! (signs), the next key (published ahead so verifiers cache it before it signs), and retiring
//! keys (still verify what they signed until that can no longer be valid).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use ed25519_dalek::SigningKey;
use mandate_core::encoding::{b64url, b64url_decode};
use mandate_core::jose::Algorithm;
use mandate_core::jwk::PublicJwk;
use serde::{Deserialize, Serialize};
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

    /// The public JWK as published in the JWKS, with the `alg` the server signs under.
    pub fn jwk(&self, alg: Algorithm) -> Value {
        let mut v = self.public.to_json();
        if let Some(o) = v.as_object_mut() {
            o.insert("kid".into(), json!(self.kid()));
            o.insert("use".into(), json!("sig"));
            o.insert("alg".into(), json!(alg.as_str()));
        }
        v
    }

    /// The public key.
    pub fn public(&self) -> &PublicJwk {
        &self.public
    }

    /// The signing key (for token issuance).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

/// The key ring as stored (seeds, base64url). Written atomically, mode 0600.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RingFile {
    current: String,
    next: String,
    retiring: Vec<RetiringFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetiringFile {
    seed: String,
    /// Unix ms after which the key verifies nothing.
    until: i64,
}

struct Ring {
    current: Arc<ServerKey>,
    next: Arc<ServerKey>,
    retiring: Vec<(Arc<ServerKey>, i64)>,
    seeds: RingFile,
}

/// The server's signing keys.
pub struct KeyRing {
    path: PathBuf,
    alg: Algorithm,
    ring: RwLock<Ring>,
    /// Modification time and length of the file as last read or written: replicas sharing one
    /// key file (DESIGN §9) pick up a rotation made by another replica when it changes.
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

/// How often a running server looks for a key file changed by another replica.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The key that signs from now on.
    pub current: String,
    /// The key published to sign next.
    pub next: String,
    /// The key that stopped signing, and until when (unix ms) it still verifies.
    pub retiring: (String, i64),
}

impl KeyRing {
    /// Loads `<dir>/signing-keys.json`, or creates it with a fresh current and next key.
    ///
    /// Creation is race-free: several replicas starting at once on one shared directory all end
    /// up with the ring the first of them linked into place.
    pub fn load_or_create(dir: &Path, alg: Algorithm) -> Result<Self, ServerError> {
        let path = dir.join("signing-keys.json");
        let err = |what: &str| ServerError::new(format!("{what} `{}`", path.display()));
        if !path.exists() {
            let file = RingFile {
                current: b64url(fresh_seed()?.as_ref()),
                next: b64url(fresh_seed()?.as_ref()),
                retiring: vec![],
            };
            write_private(&path, &file, false)?;
        }
        let seeds = read_file(&path)?;
        let ring = Ring::from_file(seeds).map_err(|()| err("malformed signing keys"))?;
        Ok(Self {
            stamp: Mutex::new(file_stamp(&path)),
            path,
            alg,
            ring: RwLock::new(ring),
        })
    }

    /// Re-reads the key file if it changed since it was last read or written here (a rotation
    /// by another replica sharing it). Returns whether the ring changed.
    pub fn reload_if_changed(&self) -> Result<bool, ServerError> {
        let now_stamp = file_stamp(&self.path);
        {
            let stamp = self
                .stamp
                .lock()
                .map_err(|_| ServerError::new("the key ring is unavailable"))?;
            if now_stamp.is_none() || *stamp == now_stamp {
                return Ok(false);
            }
        }
        let seeds = read_file(&self.path)?;
        let ring = Ring::from_file(seeds).map_err(|()| {
            ServerError::new(format!("malformed signing keys `{}`", self.path.display()))
        })?;
        let mut r = self
            .ring
            .write()
            .map_err(|_| ServerError::new("the key ring is unavailable"))?;
        *r = ring;
        if let Ok(mut stamp) = self.stamp.lock() {
            *stamp = now_stamp;
        }
        Ok(true)
    }

    /// Checks the key file every [`RELOAD_EVERY`] for a rotation made by another replica.
    pub fn spawn_reloader(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let ring = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match ring.reload_if_changed() {
                    Ok(true) => tracing::info!("signing keys changed on disk: reloaded"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "signing keys on disk unreadable; keeping the loaded ring")
                    }
                }
            }
        })
    }

    /// The key that signs.
    pub fn current(&self) -> Arc<ServerKey> {
        match self.ring.read() {
            Ok(r) => Arc::clone(&r.current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner().current),
        }
    }

    /// The key `kid` if it may verify at `now`: current, next, or retiring and not yet past.
    pub fn find(&self, kid: &str, now: i64) -> Option<Arc<ServerKey>> {
        let r = self.ring.read().ok()?;
        std::iter::once(&r.current)
            .chain(std::iter::once(&r.next))
            .chain(
                r.retiring
                    .iter()
                    .filter(|(_, until)| *until > now)
                    .map(|(k, _)| k),
            )
            .find(|k| k.kid() == kid)
            .cloned()
    }

    /// The JWKS document: current, next, then retiring keys still in their window.
    pub fn jwks(&self, now: i64) -> Value {
        let Ok(r) = self.ring.read() else {
            return json!({"keys": []});
        };
        let keys: Vec<Value> = std::iter::once(&r.current)
            .chain(std::iter::once(&r.next))
            .chain(
                r.retiring
                    .iter()
                    .filter(|(_, until)| *until > now)
                    .map(|(k, _)| k),
            )
            .map(|k| k.jwk(self.alg))
            .collect();
        json!({"keys": keys})
    }

    /// Rotates: next becomes current, a fresh key becomes next, and the old current retires —
    /// still verifying until `now + retire_after_ms`. Persisted before it takes effect.
    pub fn rotate(&self, now: i64, retire_after_ms: i64) -> Result<Rotation, ServerError> {
        let mut r = self
            .ring
            .write()
            .map_err(|_| ServerError::new("the key ring is unavailable"))?;
        let until = now.saturating_add(retire_after_ms);
        let mut retiring: Vec<RetiringFile> = r
            .seeds
            .retiring
            .iter()
            .filter(|x| x.until > now)
            .map(|x| RetiringFile {
                seed: x.seed.clone(),
                until: x.until,
            })
            .collect();
        retiring.push(RetiringFile {
            seed: r.seeds.current.clone(),
            until,
        });
        let file = RingFile {
            current: r.seeds.next.clone(),
            next: b64url(fresh_seed()?.as_ref()),
            retiring,
        };
        write_private(&self.path, &file, true)?;
        if let Ok(mut stamp) = self.stamp.lock() {
            *stamp = file_stamp(&self.path);
        }
        let old = r.current.kid();
        *r =
            Ring::from_file(file).map_err(|()| ServerError::new("rotation produced a bad ring"))?;
        Ok(Rotation {
            current: r.current.kid(),
            next: r.next.kid(),
            retiring: (old, until),
        })
    }

    /// The signing algorithm name.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
}

impl Ring {
    fn from_file(seeds: RingFile) -> Result<Self, ()> {
        let key = |s: &str| -> Result<Arc<ServerKey>, ()> {
            let raw = Zeroizing::new(b64url_decode(s).ok_or(())?);
            let seed: [u8; 32] = raw.as_slice().try_into().map_err(|_| ())?;
            let seed = Zeroizing::new(seed);
            Ok(Arc::new(ServerKey::from_seed(&seed)))
        };
        Ok(Self {
            current: key(&seeds.current)?,
            next: key(&seeds.next)?,
            retiring: seeds
                .retiring
                .iter()
                .map(|r| Ok((key(&r.seed)?, r.until)))
                .collect::<Result<_, ()>>()?,
            seeds,
        })
    }
}

fn fresh_seed() -> Result<Zeroizing<[u8; 32]>, ServerError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut())
        .map_err(|_| ServerError::new("no random source to create a signing key"))?;
    Ok(seed)
}

fn read_file(path: &Path) -> Result<RingFile, ServerError> {
    let err = |what: &str| ServerError::new(format!("{what} `{}`", path.display()));
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|_| err("cannot read the signing keys"))?,
    );
    serde_json::from_str(&text).map_err(|_| err("malformed signing keys"))
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Writes `file` to `path` atomically (temporary file, fsync, then rename — or, when not
/// `replace`, a hard link that fails if another process created `path` first), mode 0600.
fn write_private(path: &Path, file: &RingFile, replace: bool) -> Result<(), ServerError> {
    let err = |what: &str| ServerError::new(format!("{what} `{}`", path.display()));
    let text = Zeroizing::new(serde_json::to_string(file).map_err(|_| err("cannot encode"))?);
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|_| err("no random source to write"))?;
    let tmp = path.with_extension(format!("json.{}.tmp", mandate_core::encoding::hex(&nonce)));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .map_err(|_| err("cannot create the signing keys"))?;
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|_| err("cannot write the signing keys"));
    let placed = written.and_then(|()| {
        if replace {
            std::fs::rename(&tmp, path).map_err(|_| err("cannot replace the signing keys"))
        } else {
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => Ok(()),
                // Another replica created it first: theirs is the ring.
                Err(_) if path.exists() => Ok(()),
                Err(_) => Err(err("cannot create the signing keys")),
            }
        }
    });
    let _ = std::fs::remove_file(&tmp);
    placed?;
    if let Some(d) = path.parent().and_then(|dir| std::fs::File::open(dir).ok()) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn replicas_starting_together_share_one_ring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let rings: Vec<KeyRing> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| KeyRing::load_or_create(&path, Algorithm::EdDSA).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let kid = rings[0].current().kid();
        assert!(rings.iter().all(|r| r.current().kid() == kid));
        let leftovers: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("signing-keys.json")]
        );
    }

    #[test]
    fn a_rotation_by_one_replica_reaches_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeyRing::load_or_create(dir.path(), Algorithm::EdDSA).unwrap();
        let b = KeyRing::load_or_create(dir.path(), Algorithm::EdDSA).unwrap();
        assert!(!b.reload_if_changed().unwrap(), "nothing changed yet");
        let before = a.current().kid();
        // Distinct modification times even on coarse file systems.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let rotation = a.rotate(1_000, 60_000).unwrap();
        assert!(
            b.find(&rotation.current, 2_000).is_some(),
            "next was already published"
        );
        assert!(b.reload_if_changed().unwrap());
        assert_eq!(b.current().kid(), rotation.current);
        assert!(
            b.find(&before, 2_000).is_some(),
            "the old key still verifies while retiring"
        );
        assert!(!a.reload_if_changed().unwrap(), "the writer is up to date");
    }
}
