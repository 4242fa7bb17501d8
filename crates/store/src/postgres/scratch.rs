//! Throwaway schemas for tests: each test gets a schema of its own on a shared PostgreSQL
//! server (`mt_<pid>_<random>`), selected by a `search_path` option in the URL it is given, and
//! dropped afterwards. Schemas left behind by test processes that no longer run are dropped
//! when the next one starts.

use std::time::Duration;

use tokio_postgres::NoTls;

use super::parse_url;
use crate::StoreError;

/// The server tests use when `MANDATE_TEST_POSTGRES` is not set.
pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema created for one test.
#[derive(Debug)]
pub struct ScratchSchema {
    base: String,
    name: String,
    url: String,
    dropped: bool,
}

impl ScratchSchema {
    /// Creates a fresh schema on the server at `base_url`.
    pub async fn create(base_url: &str) -> Result<Self, StoreError> {
        let client = connect(base_url).await?;
        collect_orphans(&client).await;
        let mut random = [0u8; 6];
        getrandom::fill(&mut random)
            .map_err(|_| StoreError::Unavailable("no randomness".into()))?;
        let name = format!(
            "mt_{}_{}",
            std::process::id(),
            mandate_core::encoding::hex(&random)
        );
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot create schema: {e}")))?;
        let sep = if base_url.contains('?') { '&' } else { '?' };
        Ok(Self {
            base: base_url.to_owned(),
            url: format!("{base_url}{sep}options=-csearch_path%3D{name}&application_name={name}"),
            name,
            dropped: false,
        })
    }

    /// The URL that opens sessions in this schema.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` (statements without parameters) in this schema, from a session of its own.
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let client = connect(&self.url).await?;
        client
            .batch_execute(sql)
            .await
            .map_err(|e| StoreError::Unavailable(format!("statement failed: {e}")))
    }

    /// Every row of every table of this schema, as text (`bytea` as hex): what an attacker
    /// with a copy of the database would read.
    pub async fn dump(&self) -> Result<String, StoreError> {
        let client = connect(&self.url).await?;
        let fail = |e: tokio_postgres::Error| StoreError::Unavailable(format!("dump failed: {e}"));
        let tables = client
            .query(
                "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = current_schema() \
                 ORDER BY tablename",
                &[],
            )
            .await
            .map_err(fail)?;
        let mut out = String::new();
        for t in tables {
            let table: String = t.try_get(0).map_err(fail)?;
            out.push_str(&format!("-- {table}\n"));
            let rows = client
                .query(&format!("SELECT t::TEXT FROM \"{table}\" t"), &[])
                .await
                .map_err(fail)?;
            for r in rows {
                let line: String = r.try_get(0).map_err(fail)?;
                out.push_str(&line);
                out.push('\n');
            }
        }
        Ok(out)
    }

    /// Drops the schema and everything in it.
    pub async fn drop_now(mut self) {
        self.dropped = true;
        if let Ok(client) = connect(&self.base).await {
            let _ = drop_schema(&client, &self.name).await;
        }
    }
}

impl Drop for ScratchSchema {
    /// Best effort, without blocking the caller: a thread of its own drops the schema; if the
    /// process ends first, the next test process collects it.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (base, name) = (self.base.clone(), self.name.clone());
        let _ = std::thread::Builder::new()
            .name("drop-scratch-schema".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(client) = connect(&base).await {
                        let _ = drop_schema(&client, &name).await;
                    }
                });
            });
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, StoreError> {
    let mut config = parse_url(url)?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Unavailable(format!("PostgreSQL not reachable: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn drop_schema(client: &tokio_postgres::Client, name: &str) -> Result<(), StoreError> {
    // Sessions of a server that is still shutting down may hold locks for a moment.
    client
        .batch_execute(&format!(
            "SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS {name} CASCADE"
        ))
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot drop schema: {e}")))
}

/// Drops the scratch schemas of test processes that are gone (once per process).
async fn collect_orphans(client: &tokio_postgres::Client) {
    static ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if ONCE.swap(true, std::sync::atomic::Ordering::SeqCst)
        || !std::path::Path::new("/proc/self").exists()
    {
        return;
    }
    let Ok(rows) = client
        .query(
            "SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 'mt\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<_, String>(0) else {
            continue;
        };
        let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        let valid = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = drop_schema(client, &name).await;
        }
    }
}
