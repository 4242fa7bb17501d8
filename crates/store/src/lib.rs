//! Storage for Mandate: one trait in domain terms, and its engines.
//!
//! Every change to the registry travels as a [`Mutation`] together with the ledger [`Event`]s
//! that record it. An engine applies the mutation and appends its receipts **in one
//! transaction**; if a receipt cannot be written, the mutation is rolled back and the caller gets
//! [`StoreError::Unavailable`] (fail closed, DESIGN §6 / SECURITY line 1). Engines group-commit:
//! many mutations share one transaction and one fsync, and each caller is answered only once the
//! transaction holding its receipt is durable.
//!
//! Engines: [`sqlite::SqliteStore`] (embedded default) and [`postgres::PostgresStore`] (several
//! replicas sharing one database). Both pass the same conformance suite ([`conformance`]).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
pub mod ledger;
mod model;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use mandate_core::id::{AgentId, ApprovalId, DelegationId, GateId, HumanId, TenantId};
use mandate_core::receipt::Event;

pub use error::StoreError;
pub use ledger::{
    ConsistencyProof, InclusionProof, LedgerError, LedgerStore, StoredCheckpoint, TreeHead,
};
pub use mandate_core::clock::Clock;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}
pub use model::*;

/// The storage of one Mandate deployment.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `mutation` and appends `receipts` atomically; returns once durable.
    async fn commit(
        &self,
        mutation: Mutation,
        receipts: Vec<(TenantId, Event)>,
    ) -> Result<Applied, StoreError>;

    /// Every receipt committed from now on, in commit order, as soon as it is durable (for event
    /// streams). A lagging receiver misses events and must re-read the ledger.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<CommittedReceipt>;

    /// Whether no tenant exists yet (first start).
    async fn is_empty(&self) -> Result<bool, StoreError>;

    /// The principal holding the API key whose SHA-256 is `hash`, if the key and its human are
    /// active.
    async fn principal_by_api_key(&self, hash: [u8; 32]) -> Result<Option<Principal>, StoreError>;

    /// A tenant.
    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;

    /// A human of `tenant`.
    async fn human(&self, tenant: &TenantId, id: &HumanId) -> Result<Option<Human>, StoreError>;

    /// Humans of `tenant`, ordered by id.
    async fn humans(&self, tenant: &TenantId, page: &Page) -> Result<Vec<Human>, StoreError>;

    /// An agent of `tenant`, with its keys.
    async fn agent(&self, tenant: &TenantId, id: &AgentId) -> Result<Option<Agent>, StoreError>;

    /// Agents of `tenant`, ordered by id.
    async fn agents(
        &self,
        tenant: &TenantId,
        filter: &AgentFilter,
        page: &Page,
    ) -> Result<Vec<Agent>, StoreError>;

    /// A gate of `tenant`, with its keys.
    async fn gate(&self, tenant: &TenantId, id: &GateId) -> Result<Option<Gate>, StoreError>;

    /// Gates of `tenant`, ordered by id.
    async fn gates(&self, tenant: &TenantId, page: &Page) -> Result<Vec<Gate>, StoreError>;

    /// An agent or gate by id, whatever its tenant (client authentication).
    async fn client(&self, id: &str) -> Result<Option<Client>, StoreError>;

    /// A delegation of `tenant`.
    async fn delegation(
        &self,
        tenant: &TenantId,
        id: &DelegationId,
    ) -> Result<Option<Delegation>, StoreError>;

    /// The chain from the mandate down to `id`, root first.
    async fn delegation_chain(
        &self,
        tenant: &TenantId,
        id: &DelegationId,
    ) -> Result<Vec<Delegation>, StoreError>;

    /// A delegation with its whole subtree.
    async fn delegation_tree(
        &self,
        tenant: &TenantId,
        id: &DelegationId,
    ) -> Result<Option<DelegationTree>, StoreError>;

    /// Delegations to (first) and from (second) an agent.
    async fn agent_delegations(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
    ) -> Result<(Vec<Delegation>, Vec<Delegation>), StoreError>;

    /// Active, unexpired mandates whose delegate is `agent` (at most 101).
    async fn active_mandates(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        now: i64,
    ) -> Result<Vec<Delegation>, StoreError>;

    /// An issued token with its chain and agent, whatever its tenant.
    async fn token(&self, jti: &str) -> Result<Option<TokenView>, StoreError>;

    /// The highest status-list index ever recorded.
    async fn max_status_idx(&self) -> Result<Option<u64>, StoreError>;

    /// Reserves `n` Token Status List indexes: a block that no other caller — in this process or
    /// any replica sharing the database — ever gets. Indexes are never reused; those of a block
    /// left unused are gaps.
    async fn reserve_status_indexes(&self, n: u64) -> Result<std::ops::Range<u64>, StoreError>;

    /// Tokens whose status-list index lies in `[lo, hi)`, with their chains and agents.
    async fn tokens_in_status_range(&self, lo: u64, hi: u64) -> Result<Vec<TokenView>, StoreError>;

    /// Status of an agent of `tenant`.
    async fn agent_status(
        &self,
        tenant: &TenantId,
        id: &AgentId,
    ) -> Result<Option<AgentStatus>, StoreError>;

    /// Signing keys registered to a human.
    async fn human_keys(
        &self,
        tenant: &TenantId,
        human: &HumanId,
    ) -> Result<Vec<KeyRecord>, StoreError>;

    /// The `seq` of the newest receipt of `tenant` (0 for an empty chain).
    async fn receipt_head(&self, tenant: &TenantId) -> Result<u64, StoreError>;

    /// Receipts of `tenant` with `seq > after`, ascending, at most `limit`.
    async fn receipts(
        &self,
        tenant: &TenantId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredReceipt>, StoreError>;

    /// An approval of `tenant`.
    async fn approval(
        &self,
        tenant: &TenantId,
        id: &ApprovalId,
    ) -> Result<Option<Approval>, StoreError>;

    /// Approvals of `tenant`, ordered by id, with their status at `now` matching `filter`.
    async fn approvals(
        &self,
        tenant: &TenantId,
        filter: &ApprovalFilter,
        page: &Page,
        now: i64,
    ) -> Result<Vec<Approval>, StoreError>;

    /// The newest approval of `tenant` for `request_hash` under `delegation`. At most one
    /// approval per request is ever open (pending or approved), and it is the newest.
    async fn approval_for_request(
        &self,
        tenant: &TenantId,
        delegation: &DelegationId,
        request_hash: &str,
    ) -> Result<Option<Approval>, StoreError>;

    /// Which of `jtis` were already consumed as single-use ids of `kind` in `scope`.
    async fn used_jtis(
        &self,
        kind: &str,
        scope: &str,
        jtis: &[String],
    ) -> Result<Vec<String>, StoreError>;

    /// Refusals attributed to each of `agents` (of `tenant`) by receipts sealed at or after
    /// `since` (unix ms, hour precision). Engines keep these counts while appending receipts:
    /// every receipt with `decision: deny` and an `actor.agent` adds one to its agent's count
    /// for the hour, receipt kind and first reason.
    async fn agent_denials(
        &self,
        tenant: &TenantId,
        agents: &[AgentId],
        since: i64,
    ) -> Result<Vec<DenialCount>, StoreError>;
}
