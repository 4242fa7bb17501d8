//! Shared server state and the effects it performs (randomness, time, commits).

use std::sync::Arc;

use mandate_core::clock::Clock;
use mandate_core::id::TenantId;
use mandate_core::identity::TrustDomain;
use mandate_core::receipt::Event;
use mandate_core::scope::ScopeLimits;
use mandate_store::{Applied, Mutation, Store, StoreError};

use crate::error::{ApiError, ProblemKind};
use crate::keys::KeyRing;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Storage and ledger.
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The issuer identifier (RFC 8414 `issuer`).
    pub issuer: Arc<str>,
    /// SPIFFE trust domain of agents.
    pub trust_domain: Arc<TrustDomain>,
    /// The server's signing keys.
    pub keys: Arc<KeyRing>,
    /// Lifetimes, defaults and protocol switches.
    pub policy: Arc<Policy>,
    /// Token Status List index allocation.
    pub status_indexes: Arc<StatusIndexes>,
    /// Scope parsing limits and the action vocabulary.
    pub limits: Arc<ScopeLimits>,
}

impl AppState {
    /// Now, unix ms.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Commits a mutation with its receipts (fail closed: any ledger failure is a 503 and
    /// nothing changes).
    pub async fn commit(
        &self,
        mutation: Mutation,
        receipts: Vec<(TenantId, Event)>,
    ) -> Result<Applied, ApiError> {
        Ok(self.store.commit(mutation, receipts).await?)
    }
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| {
        ApiError::new(
            ProblemKind::Unavailable,
            "the system random source is unavailable",
        )
    })?;
    Ok(out)
}

/// Protocol policy: lifetimes, defaults and switches.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Longest mandate, seconds (default 24 h).
    pub max_mandate_secs: i64,
    /// Default `max_depth` of a mandate (3).
    pub default_max_depth: u8,
    /// Access-token lifetime, seconds (default 5 min; never past the delegation's expiry).
    pub token_lifetime_secs: i64,
    /// JOSE name under which Ed25519 signatures are emitted.
    pub alg: mandate_core::jose::Algorithm,
    /// `ttl` of status lists, seconds (default 30).
    pub status_list_ttl_secs: i64,
    /// Strict attenuation: a sub-delegation must be a proper subset of its parent.
    pub strict_attenuation: bool,
    /// Default overlap of an agent key rotation, seconds (1 h).
    pub key_overlap_secs: i64,
    /// Longest overlap of an agent key rotation, seconds (7 days).
    pub max_key_overlap_secs: i64,
    /// How long a pending approval waits for a human's decision, seconds (15 min).
    pub approval_pending_secs: i64,
    /// How long an approved request may wait to be used by its gate, seconds (5 min).
    pub approval_use_secs: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_mandate_secs: 24 * 3600,
            default_max_depth: 3,
            token_lifetime_secs: 300,
            alg: mandate_core::jose::Algorithm::EdDSA,
            status_list_ttl_secs: 30,
            strict_attenuation: false,
            key_overlap_secs: 3600,
            max_key_overlap_secs: 7 * 24 * 3600,
            approval_pending_secs: 15 * 60,
            approval_use_secs: 5 * 60,
        }
    }
}

/// Hands out Token Status List indexes: never reused, by this process or any replica sharing
/// the store. Takes blocks of [`StatusIndexes::BLOCK`] from the store's persistent counter and
/// hands them out in order; an index handed out to a token whose issuance then failed, or left
/// in a block when the process stops, is simply skipped.
pub struct StatusIndexes {
    store: Arc<dyn Store>,
    block: u64,
    current: tokio::sync::Mutex<std::ops::Range<u64>>,
}

impl std::fmt::Debug for StatusIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusIndexes")
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl StatusIndexes {
    /// Indexes reserved from the store at a time.
    pub const BLOCK: u64 = 256;

    /// An allocator over `store`'s counter, reserving `block` indexes at a time.
    pub fn new(store: Arc<dyn Store>, block: u64) -> Self {
        Self {
            store,
            block: block.max(1),
            current: tokio::sync::Mutex::new(0..0),
        }
    }

    /// The next index (reserving a new block from the store when the current one is used up).
    pub async fn next(&self) -> Result<u64, StoreError> {
        let mut current = self.current.lock().await;
        if current.is_empty() {
            *current = self.store.reserve_status_indexes(self.block).await?;
        }
        current
            .next()
            .ok_or_else(|| StoreError::Unavailable("no status index was reserved".into()))
    }

    /// One past the highest index recorded by any replica (0 before the first token): the
    /// status lists below it exist.
    pub async fn recorded_end(&self) -> Result<u64, StoreError> {
        Ok(self.store.max_status_idx().await?.map_or(0, |h| h + 1))
    }
}
