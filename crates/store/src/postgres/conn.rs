//! Connections: one PostgreSQL session with a statement cache, and a small pool of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Config, NoTls, Row, Statement};

use crate::StoreError;

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One session. Statements are prepared once per session and kept.
pub(crate) struct Conn {
    client: tokio_postgres::Client,
    statements: Mutex<HashMap<String, Statement>>,
    /// Set while an explicit transaction may be open: such a session is never handed out again.
    in_tx: AtomicBool,
}

impl Conn {
    /// Opens a session; its connection is driven by a task of its own until the client drops.
    pub(crate) async fn open(config: &Config) -> Result<Self, StoreError> {
        let (client, connection) = config.connect(NoTls).await.map_err(unavailable)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        Ok(Self {
            client,
            statements: Mutex::new(HashMap::new()),
            in_tx: AtomicBool::new(false),
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(st) = self
            .statements
            .lock()
            .ok()
            .and_then(|m| m.get(sql).cloned())
        {
            return Ok(st);
        }
        let st = self.client.prepare(sql).await?;
        if let Ok(mut m) = self.statements.lock() {
            m.insert(sql.to_owned(), st.clone());
        }
        Ok(st)
    }

    pub(crate) async fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.query(&st, params).await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.query_opt(&st, params).await
    }

    pub(crate) async fn query_one(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.query_one(&st, params).await
    }

    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.execute(&st, params).await
    }

    /// Runs `sql` (one or more statements, no parameters) by the simple query protocol.
    pub(crate) async fn batch(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(sql).await
    }

    /// `BEGIN`, marking the session as possibly inside a transaction.
    pub(crate) async fn begin(&self, then: &str) -> Result<(), tokio_postgres::Error> {
        self.in_tx.store(true, Ordering::SeqCst);
        self.client.batch_execute(&format!("BEGIN; {then}")).await
    }

    /// `COMMIT`; the session is clean again only if it succeeded.
    pub(crate) async fn commit(&self) -> Result<(), tokio_postgres::Error> {
        self.commit_after("").await
    }

    /// `before` (statements without parameters, may be empty) then `COMMIT`, in one round trip.
    /// If a statement of `before` fails, the rest is skipped and the transaction stays open
    /// (aborted) for the caller to roll back.
    pub(crate) async fn commit_after(&self, before: &str) -> Result<(), tokio_postgres::Error> {
        self.client
            .batch_execute(&format!("{before}COMMIT"))
            .await?;
        self.in_tx.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// `ROLLBACK`, best effort.
    pub(crate) async fn rollback(&self) {
        if self.client.batch_execute("ROLLBACK").await.is_ok() {
            self.in_tx.store(false, Ordering::SeqCst);
        }
    }

    fn reusable(&self) -> bool {
        !self.is_closed() && !self.in_tx.load(Ordering::SeqCst)
    }
}

/// A bounded pool of sessions, opened on demand.
pub(crate) struct Pool {
    config: Config,
    idle: Mutex<Vec<Arc<Conn>>>,
    limit: tokio::sync::Semaphore,
}

impl Pool {
    pub(crate) fn new(config: Config, size: usize) -> Self {
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            limit: tokio::sync::Semaphore::new(size.max(1)),
        }
    }

    /// A session for the caller's exclusive use until the guard drops.
    pub(crate) async fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let permit = self
            .limit
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the connection pool is closed".into()))?;
        loop {
            let next = self.idle.lock().ok().and_then(|mut v| v.pop());
            match next {
                Some(conn) if conn.reusable() => {
                    return Ok(Pooled {
                        pool: self,
                        conn,
                        _permit: permit,
                    });
                }
                Some(_) => continue,
                None => break,
            }
        }
        let conn = Arc::new(Conn::open(&self.config).await?);
        Ok(Pooled {
            pool: self,
            conn,
            _permit: permit,
        })
    }
}

/// A pooled session; back to the pool on drop (unless broken or left inside a transaction).
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Arc<Conn>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if self.conn.reusable()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(Arc::clone(&self.conn));
        }
    }
}

pub(crate) fn unavailable(e: tokio_postgres::Error) -> StoreError {
    tracing::error!(error = %e, "postgres error");
    StoreError::Unavailable("the database could not complete the operation".into())
}

/// Column `i` of `row` as `T`.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i).map_err(unavailable)
}

/// Whether `e` is an integrity-constraint violation (SQLSTATE class 23: unique, foreign key,
/// not-null, check) — the same class of failure SQLite reports as a constraint violation.
pub(crate) fn is_constraint_violation(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("23"))
}

/// Saturating conversion for counts and positions bound as `BIGINT`.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
