//! Shared server state and the effects it performs (randomness, time, commits).

use std::sync::Arc;

use mandate_core::clock::Clock;
use mandate_core::id::TenantId;
use mandate_core::identity::TrustDomain;
use mandate_core::receipt::Event;
use mandate_core::scope::ScopeLimits;
use mandate_store::{Applied, Mutation, Store};

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

/// Hands out Token Status List indexes: strictly increasing, never reused. Starts above the
/// highest index recorded; an index handed out to a token whose issuance then failed is simply
/// skipped.
#[derive(Debug)]
pub struct StatusIndexes(std::sync::atomic::AtomicU64);

impl StatusIndexes {
    /// Continues after `highest` (the largest recorded index), or from 0.
    pub fn after(highest: Option<u64>) -> Self {
        Self(std::sync::atomic::AtomicU64::new(
            highest.map_or(0, |h| h + 1),
        ))
    }

    /// The next index.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// The next index, without taking it.
    pub fn peek(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
