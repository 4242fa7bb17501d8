//! Shared server state and the effects it performs (randomness, time, commits).

use std::sync::Arc;

use mandate_core::clock::Clock;
use mandate_core::id::TenantId;
use mandate_core::identity::TrustDomain;
use mandate_core::receipt::Event;
use mandate_core::scope::ScopeLimits;
use mandate_store::{Applied, Mutation, Store};

use crate::error::{ApiError, ProblemKind};
use crate::keys::ServerKey;

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
    /// The server's signing key.
    pub key: Arc<ServerKey>,
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
