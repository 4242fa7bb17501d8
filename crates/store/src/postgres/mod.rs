//! The PostgreSQL engine: the same [`Store`] and [`LedgerStore`](crate::LedgerStore) as the
//! SQLite engine, for several replicas (processes) sharing one database.
//!
//! # Connecting
//!
//! A standard URL, `postgres://user[:password]@host[:port]/database[?options]`, without TLS.
//! The tables live in the first schema of the session's `search_path`; another schema is chosen
//! with `options=-csearch_path%3Dname` in the URL (every connection of the engine is opened with
//! it).
//!
//! # Group commit
//!
//! As in the SQLite engine, one writer task per process drains its queue (up to `max_batch`
//! jobs), opens one transaction, applies each job inside its own savepoint (a job that fails
//! rolls back only itself and gets its own error; a batch of one job needs no savepoint), seals
//! and inserts its receipts, commits once, and only then answers the callers. If the commit fails, every job of the batch is answered
//! [`StoreError::Unavailable`] and nothing of it persists.
//!
//! # Several replicas
//!
//! Every batch transaction first takes **one transaction-level advisory lock**
//! (`pg_advisory_xact_lock`) per schema: a single global key, deliberately. It is simple, and
//! it makes the batches of all replicas one total order, exactly the order SQLite's single
//! writer gives:
//!
//! - ledger sequencing: each tenant's head is read *inside* the lock, so every replica appends
//!   after the last receipt any replica committed — one chain per tenant, no gap, no fork; the
//!   primary key `(tenant, seq)` refuses a fork even if this reasoning were ever broken;
//! - commit-time checks (issuance against the chain and agent statuses, parents of new
//!   delegations, owners of agents) read state that no other replica can change before this
//!   transaction commits, so a cascade revocation and an issuance on two replicas are
//!   serialised like two jobs of one writer (see `apply::issue_token`);
//! - single-use ids are a primary-key insert: a second use is refused whichever replica sees
//!   it.
//!
//! The lock is held for one batch — its statements and its commit — and batches amortise it over
//! every job they hold. Integration of the Merkle trees takes its own per-tenant advisory lock
//! ([`ledger`]), never this one.
//!
//! # Live receipts across replicas
//!
//! Each batch transaction ends with `NOTIFY mandate_receipts` (schema, tenant, newest seq of
//! that tenant in the batch), delivered by PostgreSQL only once the transaction commits. Each
//! process keeps one dedicated `LISTEN` session; on a notification it reads the receipts it has
//! not yet broadcast from the ledger and broadcasts them. Receipts this process commits are
//! broadcast directly after the commit. Both paths go through one record of the highest `seq`
//! broadcast per tenant, so each receipt is broadcast once, per tenant in ascending `seq`
//! without gaps (a gap — receipts of another replica not yet notified — is filled by reading
//! the ledger).

mod apply;
mod conn;
pub mod ledger;
mod read;
mod schema;
pub mod scratch;

use std::collections::HashMap;
use std::ops::Range;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mandate_core::id::{AgentId, ApprovalId, DelegationId, GateId, HumanId, TenantId};
use mandate_core::receipt::{Event, EventKind, Outcome, Receipt, ReceiptHash};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Config, NoTls};

use self::conn::{Conn, Pool, col, to_i64, unavailable};
use crate::{
    Agent, AgentFilter, AgentStatus, Applied, Approval, ApprovalFilter, Client, Clock,
    CommittedReceipt, Delegation, DelegationTree, DenialCount, Gate, Human, KeyRecord, Mutation,
    Page, Principal, Store, StoreError, StoredReceipt, Tenant, TokenView,
};

/// The channel of receipt notifications.
const CHANNEL: &str = "mandate_receipts";

/// Options of the PostgreSQL engine.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://…` or `postgresql://…`.
    pub url: String,
    /// Most jobs per transaction.
    pub max_batch: usize,
    /// Most reader connections open at once.
    pub readers: usize,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PostgresOptions")
            .field("max_batch", &self.max_batch)
            .field("readers", &self.readers)
            .finish_non_exhaustive()
    }
}

impl PostgresOptions {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_batch: 2048,
            readers: 16,
        }
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Parses a connection URL (never echoing it: it may hold a password).
pub(crate) fn parse_url(url: &str) -> Result<Config, StoreError> {
    if !is_postgres_url(url) {
        return Err(StoreError::Unavailable(
            "a PostgreSQL URL starts with `postgres://` or `postgresql://`".into(),
        ));
    }
    let mut config = Config::from_str(url).map_err(|e| {
        StoreError::Unavailable(format!(
            "invalid PostgreSQL URL: {}",
            redact(&e.to_string())
        ))
    })?;
    if config.get_application_name().is_none() {
        config.application_name("mandate");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok(config)
}

fn redact(s: &str) -> String {
    // Parse errors name the offending part, never the password; keep them short anyway.
    s.chars().take(120).collect()
}

/// The PostgreSQL engine.
pub struct PostgresStore {
    jobs: mpsc::Sender<Job>,
    publish: Arc<Publish>,
    pool: Arc<Pool>,
}

struct Job {
    mutation: Mutation,
    receipts: Vec<(TenantId, Event)>,
    reply: oneshot::Sender<Result<Applied, StoreError>>,
}

impl PostgresStore {
    /// Connects, migrates the schema if needed, and starts the writer and the listener.
    pub async fn connect(
        options: PostgresOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let config = parse_url(&options.url)?;
        let writer_conn = Conn::open(&config).await?;
        schema::migrate(&writer_conn).await?;
        let row = writer_conn
            .query_one(
                "SELECT current_schema()::TEXT, \
                 hashtextextended(current_schema() || '/mandate-ledger', 0)",
                &[],
            )
            .await
            .map_err(unavailable)?;
        let schema: String = col(&row, 0)?;
        let lock_key: i64 = col(&row, 1)?;
        let pool = Arc::new(Pool::new(config.clone(), options.readers));
        let (committed, _) = broadcast::channel(8_192);
        let publish = Arc::new(Publish {
            tx: committed,
            published: Mutex::new(HashMap::new()),
        });
        // LISTEN before reading the heads: every commit after the heads is then notified.
        let listener = Listener::start(&config).await?;
        let heads = {
            let c = pool.get().await?;
            read::all_heads(&c).await?
        };
        if let Ok(mut map) = publish.published.lock() {
            map.extend(heads);
        }
        let (fill_tx, fill_rx) = mpsc::unbounded_channel();
        tokio::spawn(
            Follower {
                config: config.clone(),
                schema: schema.clone(),
                pool: Arc::clone(&pool),
                publish: Arc::clone(&publish),
            }
            .run(listener, fill_rx),
        );
        let (tx, rx) = mpsc::channel::<Job>(16_384);
        let writer = Writer {
            config,
            conn: Some(writer_conn),
            clock,
            lock_key,
            schema,
            last_purge: 0,
            publish: Arc::clone(&publish),
            fill: fill_tx,
            sealed: Vec::new(),
            release_pending: false,
        };
        tokio::spawn(writer.run(rx, options.max_batch.max(1)));
        Ok(Self {
            jobs: tx,
            publish,
            pool,
        })
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn commit(
        &self,
        mutation: Mutation,
        receipts: Vec<(TenantId, Event)>,
    ) -> Result<Applied, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                mutation,
                receipts,
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("the ledger writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the ledger writer has stopped".into()))?
    }

    fn subscribe(&self) -> broadcast::Receiver<CommittedReceipt> {
        self.publish.tx.subscribe()
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        read::is_empty(&*self.pool.get().await?).await
    }

    async fn principal_by_api_key(&self, hash: [u8; 32]) -> Result<Option<Principal>, StoreError> {
        read::principal_by_api_key(&*self.pool.get().await?, &hash).await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        read::tenant(&*self.pool.get().await?, id).await
    }

    async fn human(&self, tenant: &TenantId, id: &HumanId) -> Result<Option<Human>, StoreError> {
        read::human(&*self.pool.get().await?, tenant, id).await
    }

    async fn humans(&self, tenant: &TenantId, page: &Page) -> Result<Vec<Human>, StoreError> {
        read::humans(&*self.pool.get().await?, tenant, page).await
    }

    async fn agent(&self, tenant: &TenantId, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        read::agent(&*self.pool.get().await?, tenant, id).await
    }

    async fn agents(
        &self,
        tenant: &TenantId,
        filter: &AgentFilter,
        page: &Page,
    ) -> Result<Vec<Agent>, StoreError> {
        read::agents(&*self.pool.get().await?, tenant, filter, page).await
    }

    async fn gate(&self, tenant: &TenantId, id: &GateId) -> Result<Option<Gate>, StoreError> {
        read::gate(&*self.pool.get().await?, tenant, id).await
    }

    async fn gates(&self, tenant: &TenantId, page: &Page) -> Result<Vec<Gate>, StoreError> {
        read::gates(&*self.pool.get().await?, tenant, page).await
    }

    async fn client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        read::client(&*self.pool.get().await?, id).await
    }

    async fn delegation(
        &self,
        tenant: &TenantId,
        id: &DelegationId,
    ) -> Result<Option<Delegation>, StoreError> {
        read::delegation(&*self.pool.get().await?, tenant, id).await
    }

    async fn delegation_chain(
        &self,
        tenant: &TenantId,
        id: &DelegationId,
    ) -> Result<Vec<Delegation>, StoreError> {
        read::chain(&*self.pool.get().await?, tenant, id).await
    }

    async fn delegation_tree(
        &self,
        tenant: &TenantId,
        id: &DelegationId,
    ) -> Result<Option<DelegationTree>, StoreError> {
        read::tree(&*self.pool.get().await?, tenant, id).await
    }

    async fn agent_delegations(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
    ) -> Result<(Vec<Delegation>, Vec<Delegation>), StoreError> {
        read::agent_delegations(&*self.pool.get().await?, tenant, agent).await
    }

    async fn active_mandates(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        now: i64,
    ) -> Result<Vec<Delegation>, StoreError> {
        read::active_mandates(&*self.pool.get().await?, tenant, agent, now).await
    }

    async fn token(&self, jti: &str) -> Result<Option<TokenView>, StoreError> {
        read::token_view(&*self.pool.get().await?, jti).await
    }

    async fn max_status_idx(&self) -> Result<Option<u64>, StoreError> {
        read::max_status_idx(&*self.pool.get().await?).await
    }

    async fn reserve_status_indexes(&self, n: u64) -> Result<Range<u64>, StoreError> {
        let n = i64::try_from(n)
            .map_err(|_| StoreError::Conflict("too many status indexes at once".into()))?;
        // One row, updated atomically: concurrent reservations (from any replica) queue on its
        // row lock and each gets a disjoint block.
        let c = self.pool.get().await?;
        let row = c
            .query_one(
                "UPDATE counters SET value = value + $1 WHERE name = 'status_idx' RETURNING value",
                &[&n],
            )
            .await
            .map_err(unavailable)?;
        let end: i64 = col(&row, 0)?;
        let end = u64::try_from(end).map_err(|_| read::corrupt("status index counter"))?;
        let start = end
            .checked_sub(n.unsigned_abs())
            .ok_or_else(|| read::corrupt("status index counter"))?;
        Ok(start..end)
    }

    async fn tokens_in_status_range(&self, lo: u64, hi: u64) -> Result<Vec<TokenView>, StoreError> {
        read::tokens_in_status_range(&*self.pool.get().await?, lo, hi).await
    }

    async fn agent_status(
        &self,
        tenant: &TenantId,
        id: &AgentId,
    ) -> Result<Option<AgentStatus>, StoreError> {
        read::agent_status(&*self.pool.get().await?, tenant, id).await
    }

    async fn human_keys(
        &self,
        tenant: &TenantId,
        human: &HumanId,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let _ = tenant;
        read::keys(&*self.pool.get().await?, human.as_str()).await
    }

    async fn receipt_head(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        Ok(read::chain_head(&*self.pool.get().await?, tenant)
            .await?
            .seq)
    }

    async fn receipts(
        &self,
        tenant: &TenantId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredReceipt>, StoreError> {
        read::receipts(&*self.pool.get().await?, tenant, after, limit).await
    }

    async fn approval(
        &self,
        tenant: &TenantId,
        id: &ApprovalId,
    ) -> Result<Option<Approval>, StoreError> {
        read::approval(&*self.pool.get().await?, tenant, id).await
    }

    async fn approvals(
        &self,
        tenant: &TenantId,
        filter: &ApprovalFilter,
        page: &Page,
        now: i64,
    ) -> Result<Vec<Approval>, StoreError> {
        read::approvals(&*self.pool.get().await?, tenant, filter, page, now).await
    }

    async fn approval_for_request(
        &self,
        tenant: &TenantId,
        delegation: &DelegationId,
        request_hash: &str,
    ) -> Result<Option<Approval>, StoreError> {
        read::approval_for_request(&*self.pool.get().await?, tenant, delegation, request_hash).await
    }

    async fn used_jtis(
        &self,
        kind: &str,
        scope: &str,
        jtis: &[String],
    ) -> Result<Vec<String>, StoreError> {
        read::used_jtis(&*self.pool.get().await?, kind, scope, jtis).await
    }

    async fn agent_denials(
        &self,
        tenant: &TenantId,
        agents: &[AgentId],
        since: i64,
    ) -> Result<Vec<DenialCount>, StoreError> {
        read::agent_denials(&*self.pool.get().await?, tenant, agents, since).await
    }
}

/// The head of one tenant's chain.
#[derive(Clone, Copy)]
pub(crate) struct Head {
    seq: u64,
    hash: ReceiptHash,
    at: i64,
}

/// What this process has broadcast: the highest `seq` per tenant.
struct Publish {
    tx: broadcast::Sender<CommittedReceipt>,
    published: Mutex<HashMap<TenantId, u64>>,
}

impl Publish {
    /// Broadcasts the receipts this process just committed that continue each tenant's
    /// broadcast; returns the `(tenant, seq)` that did not (a gap to fill from the ledger).
    fn local(&self, sealed: Vec<CommittedReceipt>) -> Vec<(TenantId, u64)> {
        let mut gaps: Vec<(TenantId, u64)> = Vec::new();
        let Ok(mut map) = self.published.lock() else {
            return gaps;
        };
        for r in sealed {
            let last = map.entry(r.tenant.clone()).or_insert(0);
            if r.seq == *last + 1 {
                *last = r.seq;
                // No subscriber is fine.
                let _ = self.tx.send(r);
            } else if r.seq > *last + 1 {
                match gaps.iter_mut().find(|(t, _)| *t == r.tenant) {
                    Some(g) => g.1 = g.1.max(r.seq),
                    None => gaps.push((r.tenant, r.seq)),
                }
            }
        }
        gaps
    }

    /// The highest `seq` of `tenant` broadcast so far.
    fn last(&self, tenant: &TenantId) -> u64 {
        self.published
            .lock()
            .ok()
            .and_then(|m| m.get(tenant).copied())
            .unwrap_or(0)
    }

    /// Broadcasts receipts read from the ledger (ascending), skipping those already broadcast.
    fn stored(&self, tenant: &TenantId, receipts: Vec<StoredReceipt>) {
        let Ok(mut map) = self.published.lock() else {
            return;
        };
        let last = map.entry(tenant.clone()).or_insert(0);
        for r in receipts {
            if r.seq != *last + 1 {
                continue;
            }
            let kind = match serde_json::from_str::<KindOnly>(&r.body) {
                Ok(k) => k.kind,
                Err(_) => {
                    tracing::error!(tenant = %tenant, seq = r.seq, "stored receipt has no kind");
                    EventKind::Record
                }
            };
            *last = r.seq;
            let _ = self.tx.send(CommittedReceipt {
                tenant: tenant.clone(),
                seq: r.seq,
                kind,
                body: r.body.into(),
            });
        }
    }
}

#[derive(serde::Deserialize)]
struct KindOnly {
    kind: EventKind,
}

/// The dedicated `LISTEN` session: its notifications, forwarded by the task driving it.
struct Listener {
    _client: tokio_postgres::Client,
    notes: mpsc::UnboundedReceiver<String>,
}

impl Listener {
    async fn start(config: &Config) -> Result<Self, StoreError> {
        let (client, mut connection) = config.connect(NoTls).await.map_err(unavailable)?;
        let (tx, notes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "receipt listener connection lost");
                        break;
                    }
                    None => break,
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(unavailable)?;
        Ok(Self {
            _client: client,
            notes,
        })
    }
}

/// Follows the receipts committed by every replica: notifications and the writer's gaps.
struct Follower {
    config: Config,
    schema: String,
    pool: Arc<Pool>,
    publish: Arc<Publish>,
}

impl Follower {
    async fn run(
        self,
        mut listener: Listener,
        mut fills: mpsc::UnboundedReceiver<(TenantId, u64)>,
    ) {
        loop {
            tokio::select! {
                note = listener.notes.recv() => match note {
                    Some(payload) => {
                        if let Some((tenant, seq)) = self.parse(&payload) {
                            self.fill(&tenant, seq).await;
                        }
                    }
                    None => match self.reconnect(&mut fills).await {
                        Some(l) => listener = l,
                        None => return,
                    },
                },
                fill = fills.recv() => match fill {
                    Some((tenant, seq)) => self.fill(&tenant, seq).await,
                    // The writer has stopped: the store is gone.
                    None => return,
                },
            }
        }
    }

    /// `schema \t tenant \t seq`; notifications of other schemas are not ours.
    fn parse(&self, payload: &str) -> Option<(TenantId, u64)> {
        let mut parts = payload.split('\t');
        if parts.next()? != self.schema {
            return None;
        }
        let tenant = TenantId::parse(parts.next()?).ok()?;
        let seq = parts.next()?.parse().ok()?;
        Some((tenant, seq))
    }

    /// Broadcasts the receipts of `tenant` up to `seq` not broadcast yet, from the ledger.
    async fn fill(&self, tenant: &TenantId, seq: u64) {
        loop {
            let last = self.publish.last(tenant);
            if seq <= last {
                return;
            }
            let want = u32::try_from((seq - last).min(1_000)).unwrap_or(1_000);
            let page = match self.pool.get().await {
                Ok(c) => read::receipts(&c, tenant, last, want).await,
                Err(e) => Err(e),
            };
            match page {
                Ok(page) if !page.is_empty() => self.publish.stored(tenant, page),
                Ok(_) => {
                    tracing::error!(tenant = %tenant, seq, "notified receipt is not in the ledger");
                    return;
                }
                Err(e) => {
                    tracing::error!(tenant = %tenant, error = %e, "cannot read notified receipts");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// A new `LISTEN` session after the old one was lost, and the receipts committed meanwhile.
    async fn reconnect(
        &self,
        fills: &mut mpsc::UnboundedReceiver<(TenantId, u64)>,
    ) -> Option<Listener> {
        let mut wait = Duration::from_millis(100);
        loop {
            if fills.is_closed() {
                return None;
            }
            match Listener::start(&self.config).await {
                Ok(l) => {
                    let heads = match self.pool.get().await {
                        Ok(c) => read::all_heads(&c).await,
                        Err(e) => Err(e),
                    };
                    match heads {
                        Ok(heads) => {
                            for (tenant, seq) in heads {
                                self.fill(&tenant, seq).await;
                            }
                            return Some(l);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot catch up on receipts"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "receipt listener cannot reconnect"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}

/// The single writer of this process.
struct Writer {
    config: Config,
    conn: Option<Conn>,
    clock: Arc<dyn Clock>,
    lock_key: i64,
    schema: String,
    last_purge: i64,
    publish: Arc<Publish>,
    fill: mpsc::UnboundedSender<(TenantId, u64)>,
    /// Receipts sealed in the open transaction: inserted together just before COMMIT, published
    /// after it.
    sealed: Vec<Sealed>,
    /// The last job's savepoint is still to be released (with the next `SAVEPOINT`, or by COMMIT).
    release_pending: bool,
}

/// A receipt sealed in the open transaction.
struct Sealed {
    receipt: CommittedReceipt,
    hash: [u8; 32],
    at: i64,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
        let mut batch = Vec::with_capacity(max_batch);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch).await;
        }
    }

    /// The writer's session, reopened if it was lost.
    async fn connection(&mut self) -> Result<Conn, StoreError> {
        match self.conn.take() {
            Some(c) if !c.is_closed() => Ok(c),
            _ => Conn::open(&self.config).await,
        }
    }

    async fn commit_batch(&mut self, batch: &mut Vec<Job>) {
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(err) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(err.clone()));
                }
                return;
            }
        };
        // Expired single-use ids can go: their artefacts are refused as expired anyway. Outside
        // the batch transaction, so that a failure here costs nothing.
        let now = self.clock.now_ms();
        if now - self.last_purge >= 60_000 {
            self.last_purge = now;
            let _ = conn
                .execute(
                    "DELETE FROM used_jtis WHERE expires_at < $1",
                    &[&(now - 60_000)],
                )
                .await;
            // Refusal counts feed trust scores over at most a week.
            let _ = conn
                .execute(
                    "DELETE FROM agent_denials WHERE hour < $1",
                    &[&(now - 8 * 86_400_000).div_euclid(3_600_000)],
                )
                .await;
        }
        let outcome = self.transaction(&conn, batch).await;
        match outcome {
            Ok(results) => {
                let sealed = std::mem::take(&mut self.sealed);
                let gaps = self
                    .publish
                    .local(sealed.into_iter().map(|s| s.receipt).collect());
                for gap in gaps {
                    let _ = self.fill.send(gap);
                }
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err((err, results)) => {
                conn.rollback().await;
                self.sealed.clear();
                let mut results = results.into_iter();
                for job in batch.drain(..) {
                    let answer = match results.next() {
                        Some(Err(e)) => Err(e),
                        _ => Err(err.clone()),
                    };
                    let _ = job.reply.send(answer);
                }
            }
        }
        if !conn.is_closed() {
            self.conn = Some(conn);
        }
    }

    /// One batch transaction. On failure, the error that stops the whole batch and the answers
    /// computed so far (a job's own error stands; its success does not).
    #[allow(
        clippy::type_complexity,
        reason = "the answers, or the batch's error with the answers so far"
    )]
    async fn transaction(
        &mut self,
        conn: &Conn,
        batch: &mut [Job],
    ) -> Result<Vec<Result<Applied, StoreError>>, (StoreError, Vec<Result<Applied, StoreError>>)>
    {
        let mut results: Vec<Result<Applied, StoreError>> = Vec::with_capacity(batch.len());
        // The single global lock of this schema's ledger: see the module docs.
        if let Err(e) = conn
            .begin(&format!("SELECT pg_advisory_xact_lock({})", self.lock_key))
            .await
        {
            return Err((unavailable(e), results));
        }
        // Heads advanced by this transaction, read inside the lock.
        let mut pending: HashMap<TenantId, Head> = HashMap::new();
        self.release_pending = false;
        // A batch of one needs no savepoint: if its job fails, the whole transaction is rolled
        // back, which is the same outcome in two round trips fewer.
        let savepoints = batch.len() > 1;
        for job in batch.iter_mut() {
            let mutation = std::mem::replace(&mut job.mutation, Mutation::Record);
            let receipts = std::mem::take(&mut job.receipts);
            // A plain record writes nothing until the receipts' insert at the end of the batch
            // (a refusal also counts toward its agent's denials: that is a write).
            let writes = !matches!(mutation, Mutation::Record)
                || receipts
                    .iter()
                    .any(|(_, e)| e.decision == Outcome::Deny && e.actor.agent.is_some());
            let result = self
                .apply_job(conn, mutation, receipts, &mut pending, savepoints && writes)
                .await;
            // A lost session fails the batch at once.
            if conn.is_closed() {
                results.push(result);
                return Err((
                    StoreError::Unavailable("the database connection was lost".into()),
                    results,
                ));
            }
            results.push(result);
        }
        if !savepoints && results.iter().any(Result::is_err) {
            // The only job failed: nothing of it may persist, and its own error is the answer.
            conn.rollback().await;
            return Ok(results);
        }
        // Every receipt of the batch in one statement. Its only failures are the ledger's own
        // (a missing tenant was refused per job when its head was read), and they fail the
        // whole batch: nothing is recorded, every job is answered `Unavailable`.
        if !self.sealed.is_empty() {
            let tenants: Vec<&str> = self
                .sealed
                .iter()
                .map(|r| r.receipt.tenant.as_str())
                .collect();
            let seqs: Vec<i64> = self.sealed.iter().map(|r| to_i64(r.receipt.seq)).collect();
            let hashes: Vec<&[u8]> = self.sealed.iter().map(|r| &r.hash[..]).collect();
            let bodies: Vec<&str> = self.sealed.iter().map(|r| &*r.receipt.body).collect();
            let ats: Vec<i64> = self.sealed.iter().map(|r| r.at).collect();
            if let Err(e) = conn
                .execute(
                    "INSERT INTO receipts (tenant, seq, hash, body, at) \
                     SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::BYTEA[], $4::TEXT[], \
                     $5::BIGINT[])",
                    &[&tenants, &seqs, &hashes, &bodies, &ats],
                )
                .await
            {
                return Err((ledger_unavailable(e), results));
            }
        }
        // Delivered to every listening replica when, and only if, this transaction commits;
        // sent with the COMMIT, in one round trip (COMMIT also releases the last savepoint).
        let mut notify = String::new();
        for (tenant, head) in &pending {
            let payload = format!("{}\t{}\t{}", self.schema, tenant, head.seq).replace('\'', "''");
            notify.push_str(&format!("SELECT pg_notify('{CHANNEL}', '{payload}'); "));
        }
        match conn.commit_after(&notify).await {
            Ok(()) => Ok(results),
            Err(e) => Err((unavailable(e), results)),
        }
    }

    async fn apply_job(
        &mut self,
        conn: &Conn,
        mutation: Mutation,
        receipts: Vec<(TenantId, Event)>,
        pending: &mut HashMap<TenantId, Head>,
        savepoint: bool,
    ) -> Result<Applied, StoreError> {
        if savepoint {
            let sql = if self.release_pending {
                "RELEASE SAVEPOINT job; SAVEPOINT job"
            } else {
                "SAVEPOINT job"
            };
            self.release_pending = false;
            conn.batch(sql).await.map_err(unavailable)?;
        }
        let sealed_before = self.sealed.len();
        let saved: Vec<(TenantId, Option<Head>)> = receipts
            .iter()
            .map(|(t, _)| (t.clone(), pending.get(t).copied()))
            .collect();
        let outcome = match apply::apply(conn, mutation).await {
            Ok(value) => {
                let mut landed = Vec::with_capacity(receipts.len());
                let mut failed = None;
                for (tenant, event) in receipts {
                    match self.append(conn, &tenant, event, pending).await {
                        Ok((seq, hash)) => landed.push((tenant, seq, hash.0)),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                match failed {
                    None => Ok(Applied {
                        value,
                        receipts: landed,
                    }),
                    Some(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(applied) => {
                // Released with the next job's savepoint, or by COMMIT.
                self.release_pending = savepoint;
                Ok(applied)
            }
            Err(e) => {
                if savepoint {
                    let _ = conn
                        .batch("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")
                        .await;
                }
                self.sealed.truncate(sealed_before);
                for (tenant, head) in saved.into_iter().rev() {
                    match head {
                        Some(h) => pending.insert(tenant, h),
                        None => pending.remove(&tenant),
                    };
                }
                Err(e)
            }
        }
    }

    /// Seals `event` as the next receipt of `tenant` and inserts it.
    async fn append(
        &mut self,
        conn: &Conn,
        tenant: &TenantId,
        event: Event,
        pending: &mut HashMap<TenantId, Head>,
    ) -> Result<(u64, ReceiptHash), StoreError> {
        let head = match pending.get(tenant) {
            Some(h) => *h,
            // Inside the lock: the newest receipt any replica committed. A receipt for a tenant
            // that does not exist is refused here, for this job only (the receipts' foreign
            // key would refuse it at the end of the batch, for every job).
            None => match read::writer_head(conn, tenant).await? {
                Some(h) => h,
                None => {
                    tracing::error!(tenant = %tenant, "receipt for an unknown tenant");
                    return Err(StoreError::Unavailable(
                        "the ledger could not record the change".into(),
                    ));
                }
            },
        };
        // Receipt times never go backwards, even if the wall clock does (or differs between
        // replicas).
        let at = self.clock.now_ms().max(head.at);
        let seq = head.seq + 1;
        if event.decision == Outcome::Deny
            && let Some(agent) = &event.actor.agent
        {
            let kind = serde_json::to_value(event.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let reason = event.reasons.first().map_or("", String::as_str);
            apply::count_denial(conn, tenant, agent, at, &kind, reason).await?;
        }
        let receipt = Receipt::seal(event, tenant.as_str(), seq, at, &head.hash);
        let (body, hash) = receipt.canonical_and_hash();
        let text = String::from_utf8(body)
            .map_err(|_| StoreError::Corrupt("receipt is not UTF-8".into()))?;
        pending.insert(tenant.clone(), Head { seq, hash, at });
        self.sealed.push(Sealed {
            receipt: CommittedReceipt {
                tenant: tenant.clone(),
                seq,
                kind: receipt.kind,
                body: text.into(),
            },
            hash: hash.0,
            at,
        });
        Ok((seq, hash))
    }
}

fn ledger_unavailable(e: tokio_postgres::Error) -> StoreError {
    tracing::error!(error = %e, "ledger append failed");
    StoreError::Unavailable("the ledger could not record the change".into())
}

#[cfg(test)]
mod tests;
