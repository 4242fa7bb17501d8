//! Starts a server with a temporary data directory and a preset bootstrap key.
//!
//! With `MANDATE_TEST_DATABASE_URL=postgres://…` every server gets a fresh PostgreSQL schema of
//! its own on that server (dropped with the [`Server`]), so the whole suite runs on the
//! PostgreSQL engine; otherwise each server has its own SQLite file.

use std::sync::Arc;

use mandate_server::{RunningServer, ServerConfig};
use mandate_store::postgres::scratch::ScratchSchema;
use mandate_store::{LedgerStore, Store};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const ADMIN_KEY: &str = "mnd_test_bootstrap_key_0123456789abcdef";

pub struct Server {
    pub clock: std::sync::Arc<mandate_core::clock::FixedClock>,
    pub running: RunningServer,
    pub dir: Arc<tempfile::TempDir>,
    pub http: reqwest::Client,
    /// The server's database (declared last: dropped after the server's handle).
    pub db: Arc<Db>,
}

/// Where a test server keeps its data.
pub enum Db {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A schema of its own on a PostgreSQL server.
    Postgres(ScratchSchema),
}

impl Db {
    /// A fresh database: a schema on the server of `MANDATE_TEST_DATABASE_URL` if that is a
    /// PostgreSQL URL, else a SQLite file in `dir`.
    pub async fn fresh(dir: &std::path::Path) -> Self {
        match std::env::var("MANDATE_TEST_DATABASE_URL") {
            Ok(url) if mandate_store::postgres::is_postgres_url(&url) => Db::Postgres(
                ScratchSchema::create(&url)
                    .await
                    .expect("MANDATE_TEST_DATABASE_URL: PostgreSQL schema"),
            ),
            _ => Db::Sqlite(dir.join("mandate.db")),
        }
    }

    /// The `database_url` a server is configured with.
    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(path) => format!("sqlite:{}", path.display()),
            Db::Postgres(schema) => schema.url().to_owned(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Another engine over the same database (a second replica, or a look from outside).
    pub async fn open_store(&self) -> Arc<dyn Store> {
        let clock = Arc::new(mandate_store::SystemClock);
        match self {
            Db::Sqlite(path) => Arc::new(
                mandate_store::sqlite::SqliteStore::open(
                    mandate_store::sqlite::SqliteOptions::new(path),
                    clock,
                )
                .expect("open sqlite store"),
            ),
            Db::Postgres(schema) => Arc::new(
                mandate_store::postgres::PostgresStore::connect(
                    mandate_store::postgres::PostgresOptions::new(schema.url()),
                    clock,
                )
                .await
                .expect("connect postgres store"),
            ),
        }
    }

    /// The ledger side of the same database.
    pub async fn open_ledger(&self) -> Arc<dyn LedgerStore> {
        match self {
            Db::Sqlite(path) => Arc::new(
                mandate_store::sqlite::ledger::SqliteLedger::open(
                    mandate_store::sqlite::ledger::LedgerOptions::new(path),
                )
                .expect("open sqlite ledger"),
            ),
            Db::Postgres(schema) => Arc::new(
                mandate_store::postgres::ledger::PostgresLedger::connect(
                    mandate_store::postgres::ledger::LedgerOptions::new(schema.url()),
                )
                .await
                .expect("connect postgres ledger"),
            ),
        }
    }

    /// The contents of a PostgreSQL database as text, for secret scans (a SQLite database is
    /// its files in the data directory).
    pub async fn dump(&self) -> Vec<(String, Vec<u8>)> {
        match self {
            Db::Sqlite(_) => Vec::new(),
            Db::Postgres(schema) => vec![(
                format!("PostgreSQL schema {}", schema.name()),
                schema.dump().await.expect("dump").into_bytes(),
            )],
        }
    }

    /// A fault injected from outside the server: the receipts table refuses every insert
    /// (`on`), or accepts them again.
    pub async fn break_ledger(&self, on: bool) {
        match self {
            Db::Sqlite(path) => sqlite_exec(
                path,
                if on {
                    "CREATE TRIGGER no_ledger BEFORE INSERT ON receipts BEGIN SELECT RAISE(ABORT, 'disk full'); END;"
                } else {
                    "DROP TRIGGER no_ledger;"
                },
            ),
            Db::Postgres(schema) => schema
                .execute(if on {
                    "CREATE OR REPLACE FUNCTION no_ledger() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'disk full'; END $$; \
                     CREATE TRIGGER no_ledger BEFORE INSERT ON receipts \
                     FOR EACH ROW EXECUTE FUNCTION no_ledger();"
                } else {
                    "DROP TRIGGER no_ledger ON receipts;"
                })
                .await
                .expect("fault injection"),
        }
    }
}

/// Runs SQL against a SQLite file from another process (python3's sqlite3).
fn sqlite_exec(path: &std::path::Path, sql: &str) {
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()")
        .arg(path)
        .arg(sql)
        .status()
        .expect("python3");
    assert!(status.success());
}

pub async fn start() -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let db = Arc::new(Db::fresh(&dir.path().join("data")).await);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = std::sync::Arc::new(mandate_core::clock::FixedClock::new(now));
    launch(dir, db, clock, None).await
}

/// `n` replicas started at the same moment on one fresh database (one server on SQLite, which
/// is single-process).
pub async fn start_replicas(n: usize) -> Vec<Server> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let db = Arc::new(Db::fresh(&dir.path().join("data")).await);
    let n = if db.is_postgres() { n } else { 1 };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = std::sync::Arc::new(mandate_core::clock::FixedClock::new(now));
    // One address for all: the issuer is fixed before any of them binds.
    let issuer = Some("http://mandate.replicas.test".to_owned());
    let starts = (0..n).map(|_| {
        launch(
            Arc::clone(&dir),
            Arc::clone(&db),
            Arc::clone(&clock),
            issuer.clone(),
        )
    });
    futures_util::future::join_all(starts).await
}

async fn launch(
    dir: Arc<tempfile::TempDir>,
    db: Arc<Db>,
    clock: Arc<mandate_core::clock::FixedClock>,
    issuer: Option<String>,
) -> Server {
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.bootstrap_key = Some(ADMIN_KEY.into());
    config.issuer = issuer;
    if db.is_postgres() {
        config.database_url = Some(db.url());
    }
    config.clock = Some(clock.clone());
    let running = mandate_server::start(config).await.expect("start");
    Server {
        clock,
        running,
        dir,
        http: reqwest::Client::new(),
        db,
    }
}

impl Server {
    /// Another replica of this server: its own process state and address, the same database,
    /// data directory (signing keys), issuer and clock — as behind a load balancer. Only the
    /// PostgreSQL engine supports replicas.
    pub async fn replica(&self) -> Server {
        launch(
            Arc::clone(&self.dir),
            Arc::clone(&self.db),
            Arc::clone(&self.clock),
            Some(self.running.issuer.clone()),
        )
        .await
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        Self::read(resp).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let resp = self
            .http
            .request(method, self.url(path))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("send");
        Self::read(resp).await
    }

    async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    /// Creates a human and returns (id, their new API key).
    pub async fn human(&self, key: &str, name: &str, role: &str) -> (String, String) {
        let r = self
            .post(
                "/v1/humans",
                key,
                json!({"name": name, "email": format!("{name}@example.com"), "role": role}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let k = self
            .post(&format!("/v1/humans/{id}/api-keys"), key, json!({}))
            .await;
        assert_eq!(k.status, 201, "{:?}", k.body);
        (id, k.body["api_key"].as_str().unwrap().to_owned())
    }

    pub async fn agent(&self, key: &str, owner: &str, name: &str) -> Value {
        let r = self
            .post("/v1/agents", key, json!({"name": name, "owner": owner, "purpose": "triage support tickets", "ceiling": ceiling()}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body
    }

    /// All receipts of the caller's tenant, checked with the chain verifier.
    pub async fn receipts(&self, key: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = 0u64;
        let mut verifier = mandate_core::receipt::ChainVerifier::new();
        loop {
            let r = self
                .get(&format!("/v1/receipts?cursor={cursor}&limit=1000"), key)
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            for item in r.body["items"].as_array().unwrap() {
                verifier
                    .push(
                        item["seq"].as_u64().unwrap(),
                        item["hash"].as_str().unwrap(),
                        &item["receipt"],
                    )
                    .expect("chain verifies");
                out.push(item["receipt"].clone());
            }
            match r.body["next"].as_u64() {
                Some(n) => cursor = n,
                None => break,
            }
        }
        out
    }
}

pub fn ceiling() -> Value {
    json!([{"type": "mandate", "actions": ["read", "write"], "locations": ["https://crm.example.com"], "resources": ["tickets/*", "customers/42/**"], "constraints": {"max_amount": {"value": 100, "currency": "USD"}}}])
}

/// A fresh valid public JWK.
pub fn public_jwk(seed: u8) -> Value {
    let (public, _) = mandate_core::jwk::private_jwk_from_seed(&[seed; 32]);
    public.to_json()
}
