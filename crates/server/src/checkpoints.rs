//! The transparency log's moving parts in the server: integration of newly sequenced receipts
//! into each tenant's Merkle tree, and signed checkpoints — in the background and on demand.
//!
//! A background task integrates every [`INTEGRATE_EVERY`] (and when woken), and signs a new
//! checkpoint for a tenant whose tree grew, at most every [`SIGN_EVERY`]. Requests that need a
//! fresh tree ([`Ledger::latest`], proofs beyond the integrated size) integrate their tenant on
//! demand first, so a caller always sees its own writes. Integration runs on the ledger store's
//! own connection and never on the group-commit path (see [`mandate_store::ledger`]).
//!
//! Checkpoints are C2SP `tlog-checkpoint` notes signed with the server's current Ed25519 key. The
//! origin, which is also the key name, is `<issuer host>/mandate/<tenant id>`. C2SP
//! tlog-checkpoint: "The origin line SHOULD be a schema-less URL containing neither Unicode spaces
//! nor plus (U+002B), such as `example.com/log42`." C2SP signed-note: "Key names MUST be
//! non-empty and MUST NOT contain any Unicode spaces or plus (U+002B) characters." A checkpoint
//! signed by a key that has since rotated out is re-signed when it is next served.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mandate_core::checkpoint::{Checkpoint, NoteSigner, NoteVerifier};
use mandate_core::clock::Clock;
use mandate_core::id::TenantId;
use mandate_core::merkle::{Hash, MerkleError};
use mandate_store::{LedgerError, LedgerStore, StoredCheckpoint, TreeHead};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::error::{ApiError, ProblemKind};
use crate::keys::KeyRing;

/// How often the background task integrates.
pub const INTEGRATE_EVERY: Duration = Duration::from_millis(200);

/// How often, at most, the background task signs a new checkpoint for one tenant.
pub const SIGN_EVERY: Duration = Duration::from_secs(1);

/// The ledger's integration and signing, shared by the routes and the background task.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn LedgerStore>,
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
    host: String,
    wake: Notify,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("host", &self.inner.host)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// The ledger over `store`, signing with `keys`, for the issuer `issuer`.
    pub fn new(
        store: Arc<dyn LedgerStore>,
        keys: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
        issuer: &str,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                keys,
                clock,
                host: issuer_host(issuer),
                wake: Notify::new(),
            }),
        }
    }

    /// The ledger store.
    pub fn store(&self) -> &dyn LedgerStore {
        self.inner.store.as_ref()
    }

    /// The origin line (and key name) of `tenant`'s log.
    pub fn origin(&self, tenant: &TenantId) -> String {
        format!("{}/mandate/{tenant}", self.inner.host)
    }

    /// The note verifier key of `tenant`'s log under the current server key.
    pub fn verifier_key(&self, tenant: &TenantId) -> Result<(NoteVerifier, String), ApiError> {
        let (signer, kid) = self.signer(tenant)?;
        Ok((signer.verifier(), kid))
    }

    fn signer(&self, tenant: &TenantId) -> Result<(NoteSigner, String), ApiError> {
        let key = self.inner.keys.current();
        let signer = NoteSigner::new(&self.origin(tenant), key.signing_key().clone())
            .map_err(|e| internal("cannot build the checkpoint signer", &e))?;
        Ok((signer, key.kid()))
    }

    /// Asks the background task to integrate now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Integrates `tenant`'s newly sequenced receipts now; returns its tree head.
    pub async fn integrate(&self, tenant: &TenantId) -> Result<TreeHead, ApiError> {
        self.inner
            .store
            .integrate_tenant(tenant)
            .await
            .map_err(ledger_error)?;
        self.inner
            .store
            .tree_head(tenant)
            .await
            .map_err(ledger_error)
    }

    /// The tree head of `tenant`, integrating first if it is below `size`.
    pub async fn head_at_least(&self, tenant: &TenantId, size: u64) -> Result<TreeHead, ApiError> {
        let head = self
            .inner
            .store
            .tree_head(tenant)
            .await
            .map_err(ledger_error)?;
        if size <= head.size {
            return Ok(head);
        }
        self.integrate(tenant).await
    }

    /// The checkpoint of `tenant`'s whole tree, integrating first and signing if the stored one
    /// is older or signed by a key that is no longer current.
    pub async fn latest(&self, tenant: &TenantId) -> Result<StoredCheckpoint, ApiError> {
        let head = self.integrate(tenant).await?;
        self.checkpoint_of(tenant, head.size, Some(head.root)).await
    }

    /// The checkpoint of `tenant`'s tree at `size`, signed on demand if not stored.
    pub async fn at(&self, tenant: &TenantId, size: u64) -> Result<StoredCheckpoint, ApiError> {
        let head = self.head_at_least(tenant, size).await?;
        if size > head.size {
            return Err(ledger_error(
                MerkleError::BeyondTree {
                    requested: size,
                    size: head.size,
                }
                .into(),
            ));
        }
        let root = (size == head.size).then_some(head.root);
        self.checkpoint_of(tenant, size, root).await
    }

    async fn checkpoint_of(
        &self,
        tenant: &TenantId,
        size: u64,
        root: Option<Hash>,
    ) -> Result<StoredCheckpoint, ApiError> {
        let current = self.inner.keys.current().kid();
        let stored = self
            .inner
            .store
            .checkpoint(tenant, Some(size))
            .await
            .map_err(ledger_error)?;
        if let Some(cp) = stored
            && cp.kid == current
        {
            return Ok(cp);
        }
        let root = match root {
            Some(r) => r,
            None => self
                .inner
                .store
                .root_at(tenant, size)
                .await
                .map_err(ledger_error)?,
        };
        self.sign(tenant, size, root).await
    }

    /// Signs and stores the checkpoint `(size, root)` of `tenant`.
    async fn sign(
        &self,
        tenant: &TenantId,
        size: u64,
        root: Hash,
    ) -> Result<StoredCheckpoint, ApiError> {
        let (signer, kid) = self.signer(tenant)?;
        let checkpoint = Checkpoint::new(self.origin(tenant), size, root, vec![])
            .map_err(|e| internal("cannot build a checkpoint", &e))?;
        let note = signer
            .sign_checkpoint(&checkpoint)
            .map_err(|e| internal("cannot sign a checkpoint", &e))?;
        let stored = StoredCheckpoint {
            size,
            root,
            note,
            kid,
            signed_at: self.inner.clock.now_ms(),
        };
        self.inner
            .store
            .save_checkpoint(tenant, &stored)
            .await
            .map_err(ledger_error)?;
        Ok(stored)
    }

    /// One background round: integrate every tenant, then sign for those that grew and have not
    /// been signed for [`SIGN_EVERY`].
    async fn round(&self, dirty: &mut HashSet<TenantId>, last: &mut HashMap<TenantId, Instant>) {
        match self.inner.store.integrate().await {
            Ok(grown) => {
                dirty.extend(grown.into_iter().map(|(tenant, _)| tenant));
            }
            Err(e) => tracing::warn!(error = %e, "ledger integration failed; retrying"),
        }
        // Pacing uses the monotonic clock; the injected clock only stamps `signed_at`.
        let now = Instant::now();
        let due: Vec<TenantId> = dirty
            .iter()
            .filter(|t| {
                last.get(*t)
                    .is_none_or(|at| now.duration_since(*at) >= SIGN_EVERY)
            })
            .cloned()
            .collect();
        for tenant in due {
            match self.signed_head(&tenant).await {
                Ok(()) => {
                    dirty.remove(&tenant);
                    last.insert(tenant, now);
                }
                Err(e) => tracing::warn!(tenant = %tenant, error = ?e, "checkpoint signing failed"),
            }
        }
    }

    async fn signed_head(&self, tenant: &TenantId) -> Result<(), ApiError> {
        let head = self
            .inner
            .store
            .tree_head(tenant)
            .await
            .map_err(ledger_error)?;
        self.checkpoint_of(tenant, head.size, Some(head.root))
            .await
            .map(|_| ())
    }

    /// Starts the background task.
    pub fn spawn(&self) -> Background {
        let ledger = self.clone();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut dirty: HashSet<TenantId> = HashSet::new();
            let mut last: HashMap<TenantId, Instant> = HashMap::new();
            let mut tick = tokio::time::interval(INTEGRATE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                    () = ledger.inner.wake.notified() => {}
                }
                ledger.round(&mut dirty, &mut last).await;
            }
            // Leave the tree integrated and signed at shutdown.
            last.clear();
            ledger.round(&mut dirty, &mut last).await;
        });
        Background {
            stop: Some(stop),
            task,
        }
    }
}

/// The running background task.
#[derive(Debug)]
pub struct Background {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Integrates and signs one last time, then stops.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// The host of `issuer` (no scheme, port or path), lowercase; `mandate.local` if it has none.
fn issuer_host(issuer: &str) -> String {
    let rest = issuer.split_once("://").map_or(issuer, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal keeps its brackets, without the port.
        Some(v6) => v6
            .split_once(']')
            .map(|(h, _)| format!("[{h}]"))
            .unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default().to_owned(),
    };
    let host = host.to_ascii_lowercase();
    let usable = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '+' && c != '/');
    if usable { host } else { "mandate.local".into() }
}

fn internal(what: &str, e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    ApiError::new(ProblemKind::Internal, "an internal error occurred")
}

/// The API error for a ledger error: sizes and indexes outside the tree are the caller's,
/// everything else ours.
pub fn ledger_error(e: LedgerError) -> ApiError {
    match e {
        LedgerError::Merkle(MerkleError::BeyondTree { requested, size }) => ApiError::new(
            ProblemKind::NotFound,
            format!("tree size {requested} not found: the log holds {size} receipts"),
        ),
        LedgerError::Merkle(
            m @ (MerkleError::IndexOutOfRange { .. } | MerkleError::SizeOrder { .. }),
        ) => ApiError::bad_request(m.to_string()),
        LedgerError::Store(s) => s.into(),
        other => internal("ledger fault", &other),
    }
}

#[cfg(test)]
mod tests {
    use super::issuer_host;

    #[test]
    fn origin_host_drops_scheme_port_and_path() {
        assert_eq!(issuer_host("http://127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(
            issuer_host("https://Auth.Example.com/tenant/x"),
            "auth.example.com"
        );
        assert_eq!(issuer_host("http://[::1]:9000"), "[::1]");
        assert_eq!(issuer_host("https://"), "mandate.local");
        assert_eq!(issuer_host("http://a+b"), "mandate.local");
    }
}
