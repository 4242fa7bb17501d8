//! The Mandate authority's HTTP server: admin API, discovery, JWKS and the ledger.
//!
//! [`serve`] runs it until a shutdown signal; [`start`] binds, spawns and returns a handle
//! (integration tests bind `127.0.0.1:0`). On first start with an empty store it bootstraps the
//! first (operator) tenant and its owner, and prints the owner's API key once — unless
//! `MANDATE_BOOTSTRAP_KEY` preset it.
//!
//! What it must not do: log secrets, API keys or private keys; answer a mutation before its
//! receipt is durable; build an error response anywhere but [`error`].

pub mod checkpoints;
pub mod error;
pub mod extract;
pub mod keys;
pub mod routes;
pub mod state;
pub mod trust;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use mandate_core::clock::Clock;
use mandate_core::id::{HumanId, TenantId};
use mandate_core::identity::TrustDomain;
use mandate_core::receipt::{Actor, Event, EventKind, Outcome};
use mandate_core::scope::ScopeLimits;
use mandate_store::postgres::ledger::{LedgerOptions as PgLedgerOptions, PostgresLedger};
use mandate_store::postgres::{self, PostgresOptions, PostgresStore};
use mandate_store::sqlite::ledger::{LedgerOptions, SqliteLedger};
use mandate_store::sqlite::{SqliteOptions, SqliteStore};
use mandate_store::{
    Human, HumanStatus, LedgerStore, Mutation, NewApiKey, Role, Store, SystemClock, Tenant,
};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, ProblemKind};
use crate::routes::{agents, approvals, gates, humans, ledger, mandates, oauth, proofs, public};
pub use crate::state::AppState;

/// Settings of `mandate serve`.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the SQLite database and the signing key.
    pub data_dir: PathBuf,
    /// A database URL: `sqlite:PATH`, or `postgres://user@host:port/db` for PostgreSQL (which
    /// several replicas may share); default `<data_dir>/mandate.db`.
    pub database_url: Option<String>,
    /// Issuer identifier; default `http://<listen address>`.
    pub issuer: Option<String>,
    /// SPIFFE trust domain; default the issuer's host.
    pub trust_domain: Option<String>,
    /// Preset API key of the bootstrap admin (from `MANDATE_BOOTSTRAP_KEY`).
    pub bootstrap_key: Option<String>,
    /// JOSE name for Ed25519 signatures: `EdDSA` (default) or `Ed25519` (RFC 9864).
    pub signing_alg: mandate_core::jose::Algorithm,
    /// The clock (default: the wall clock). Tests pass a fixed clock.
    pub clock: Option<Arc<dyn Clock>>,
}

impl ServerConfig {
    /// Defaults: `127.0.0.1:8080`, `./mandate-data`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            database_url: None,
            issuer: None,
            trust_domain: None,
            bootstrap_key: None,
            signing_alg: mandate_core::jose::Algorithm::EdDSA,
            clock: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url)
            .field("issuer", &self.issuer)
            .field("trust_domain", &self.trust_domain)
            .field(
                "bootstrap_key",
                &self.bootstrap_key.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// A start-up failure, with a message for the operator.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ServerError(String);

impl ServerError {
    /// A new error.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// A running server.
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The issuer identifier.
    pub issuer: String,
    /// The generated bootstrap API key, if this start bootstrapped without a preset one.
    pub bootstrap_key: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, finishes in-flight requests, and waits.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Binds, bootstraps if needed, and serves in a background task.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::new(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::new(format!("no local address: {e}")))?;
    let (state, bootstrap_key, ledger) = open(&config, addr).await?;
    let issuer = state.issuer.to_string();
    let background = ledger.spawn();
    let key_reloader = state.keys.spawn_reloader();
    let app = router(state).layer(axum::Extension(ledger));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "server stopped");
        }
        background.stop().await;
        key_reloader.abort();
    });
    Ok(RunningServer {
        addr,
        issuer,
        bootstrap_key,
        shutdown: Some(tx),
        task,
    })
}

/// Runs `mandate serve` until `shutdown` resolves.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let server = start(config).await?;
    println!(
        "mandate: listening on {} (issuer {})",
        server.url(),
        server.issuer
    );
    if let Some(key) = &server.bootstrap_key {
        println!();
        println!("First start: created the operator tenant and its owner `admin`.");
        println!("Their API key is shown once; store it now:");
        println!();
        println!("    export MANDATE_API_KEY={key}");
        println!();
        println!(
            "Then, for example:  mandate whoami   ·   mandate human list   ·   mandate agent add …"
        );
    }
    shutdown.await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

async fn open(
    config: &ServerConfig,
    addr: SocketAddr,
) -> Result<(AppState, Option<String>, checkpoints::Ledger), ServerError> {
    create_private_dir(&config.data_dir)?;
    let clock: Arc<dyn Clock> = config
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(SystemClock));
    let (store, ledger_store) = open_engines(config, &clock).await?;
    let keys = keys::KeyRing::load_or_create(&config.data_dir, config.signing_alg)?;
    let issuer = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();
    let host = issuer
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or("mandate.local")
        .to_ascii_lowercase();
    let td = config.trust_domain.clone().unwrap_or(host);
    let trust_domain = TrustDomain::parse(&td).map_err(|e| ServerError::new(e.to_string()))?;
    let status_indexes = state::StatusIndexes::new(Arc::clone(&store), state::StatusIndexes::BLOCK);
    let state = AppState {
        store,
        clock,
        issuer: issuer.into(),
        trust_domain: Arc::new(trust_domain),
        keys: Arc::new(keys),
        status_indexes: Arc::new(status_indexes),
        policy: Arc::new(state::Policy {
            alg: config.signing_alg,
            ..state::Policy::default()
        }),
        limits: Arc::new(ScopeLimits::default()),
    };
    let generated = match bootstrap(&state, config.bootstrap_key.as_deref()).await {
        Ok(generated) => generated,
        // Replicas started at once on an empty database: another one bootstrapped first.
        Err(_) if !state.store.is_empty().await.unwrap_or(true) => None,
        Err(e) => return Err(e),
    };
    let ledger = checkpoints::Ledger::new(
        ledger_store,
        Arc::clone(&state.keys),
        Arc::clone(&state.clock),
        &state.issuer,
    );
    Ok((state, generated, ledger))
}

/// The store and its ledger, by `database_url`: `postgres://…` or `postgresql://…` opens the
/// PostgreSQL engine (replicas may share its database); `sqlite:PATH`, or nothing, the SQLite
/// file (default `<data_dir>/mandate.db`).
async fn open_engines(
    config: &ServerConfig,
    clock: &Arc<dyn Clock>,
) -> Result<(Arc<dyn Store>, Arc<dyn LedgerStore>), ServerError> {
    if let Some(url) = config.database_url.as_deref()
        && postgres::is_postgres_url(url)
    {
        // Never echo the URL: it may hold a password.
        let store = PostgresStore::connect(PostgresOptions::new(url), Arc::clone(clock))
            .await
            .map_err(|e| ServerError::new(format!("cannot open the PostgreSQL database: {e}")))?;
        let ledger = PostgresLedger::connect(PgLedgerOptions::new(url))
            .await
            .map_err(|e| ServerError::new(format!("cannot open the PostgreSQL database: {e}")))?;
        return Ok((Arc::new(store), Arc::new(ledger)));
    }
    let db_path = match config.database_url.as_deref() {
        None => config.data_dir.join("mandate.db"),
        Some(url) => match url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Some(path) => PathBuf::from(path),
            None => {
                return Err(ServerError::new(
                    "unsupported `database_url`: use `sqlite:PATH` or `postgres://…`",
                ));
            }
        },
    };
    let store = SqliteStore::open(SqliteOptions::new(&db_path), Arc::clone(clock))
        .map_err(|e| ServerError::new(format!("cannot open `{}`: {e}", db_path.display())))?;
    let ledger = SqliteLedger::open(LedgerOptions::new(&db_path))
        .map_err(|e| ServerError::new(format!("cannot open `{}`: {e}", db_path.display())))?;
    Ok((Arc::new(store), Arc::new(ledger)))
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), ServerError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| ServerError::new(format!("cannot create `{}`: {e}", dir.display())))
}

/// DESIGN §4 bootstrap: on an empty store, create the operator tenant and its owner `admin`
/// with an API key (preset, or generated and returned for printing once).
async fn bootstrap(state: &AppState, preset: Option<&str>) -> Result<Option<String>, ServerError> {
    let fail = |e: ApiError| ServerError::new(format!("bootstrap failed: {e:?}"));
    if !state
        .store
        .is_empty()
        .await
        .map_err(|e| ServerError::new(e.to_string()))?
    {
        return Ok(None);
    }
    let now = state.now();
    let (key, key_id, generated) = match preset {
        Some(k) => {
            let ok = k.len() >= 32
                && k.len() <= 256
                && k.starts_with("mnd_")
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(ServerError::new(
                    "MANDATE_BOOTSTRAP_KEY must start with `mnd_` and be 32 to 256 characters of letters, digits, `_` and `-`",
                ));
            }
            let (_, id, _) = humans::new_api_key(now).map_err(fail)?;
            (k.to_owned(), id, false)
        }
        None => {
            let (k, id, _) = humans::new_api_key(now).map_err(fail)?;
            (k, id, true)
        }
    };
    let tenant = Tenant {
        id: TenantId::from_parts(now, state::random().map_err(fail)?),
        name: "operator".into(),
        operator: true,
        created_at: now,
    };
    let owner = Human {
        id: HumanId::from_parts(now, state::random().map_err(fail)?),
        tenant: tenant.id.clone(),
        name: "admin".into(),
        email: "admin@localhost".into(),
        role: Role::Owner,
        status: HumanStatus::Active,
        created_at: now,
    };
    let event = Event {
        kind: EventKind::TenantCreated,
        actor: Actor::default(),
        on_behalf_of: None,
        delegation: None,
        token: None,
        action: Some("bootstrap".into()),
        resource: Some(format!("tenants/{}", tenant.id)),
        decision: Outcome::Allow,
        reasons: vec![format!("owner {}", owner.id), format!("api key {key_id}")],
        request_hash: None,
    };
    let mutation = Mutation::CreateTenant {
        tenant: tenant.clone(),
        owner: owner.clone(),
        api_key: NewApiKey {
            id: key_id,
            tenant: tenant.id.clone(),
            human: owner.id.clone(),
            hash: humans::api_key_hash(&key),
            created_at: now,
        },
    };
    state
        .commit(mutation, vec![(tenant.id.clone(), event)])
        .await
        .map_err(fail)?;
    tracing::info!(tenant = %tenant.id, owner = %owner.id, "bootstrapped the operator tenant");
    Ok(generated.then_some(key))
}

/// The full router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(public::health))
        .route(
            "/.well-known/oauth-authorization-server",
            get(public::metadata),
        )
        .route("/jwks.json", get(public::jwks))
        .route("/v1/openapi.json", get(public::openapi))
        .route("/v1/me", get(humans::me))
        .route("/v1/tenants", post(humans::create_tenant))
        .route(
            "/v1/humans",
            post(humans::create_human).get(humans::list_humans),
        )
        .route("/v1/humans/{id}", get(humans::show_human))
        .route("/v1/humans/{id}/api-keys", post(humans::create_api_key))
        .route("/v1/humans/{id}/revoke", post(humans::revoke_human))
        .route(
            "/v1/agents",
            post(agents::create_agent).get(agents::list_agents),
        )
        .route("/v1/agents/{id}", get(agents::show_agent))
        .route("/v1/agents/{id}/keys", post(agents::add_key))
        .route("/v1/agents/{id}/keys/{kid}", delete(agents::retire_key))
        .route("/v1/agents/{id}/{action}", post(agents::transition_agent))
        .route(
            "/v1/gates",
            post(agents::create_gate).get(agents::list_gates),
        )
        .route("/v1/gates/{id}", get(agents::show_gate))
        .route("/v1/gates/receipts", post(gates::ship_receipts))
        .route("/v1/approvals", get(approvals::list_approvals))
        .route("/v1/approvals/check", post(approvals::check))
        .route("/v1/approvals/{id}", get(approvals::show_approval))
        .route("/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/v1/approvals/{id}/deny", post(approvals::deny))
        .route("/v1/receipts", get(ledger::list_receipts))
        .route("/v1/ledger/checkpoint", get(proofs::checkpoint))
        .route("/v1/ledger/proof/inclusion", get(proofs::inclusion))
        .route("/v1/ledger/proof/consistency", get(proofs::consistency))
        .route("/v1/ledger/verifier-key", get(proofs::verifier_key))
        .route("/v1/mandates", post(mandates::create_mandate))
        .route("/v1/delegations/{id}", get(mandates::show_delegation))
        .route(
            "/v1/delegations/{id}/revoke",
            post(mandates::revoke_delegation),
        )
        .route("/v1/humans/{id}/keys", post(mandates::add_human_key))
        .route("/v1/delegations/{id}/tree", get(mandates::delegation_tree))
        .route(
            "/v1/agents/{id}/delegations",
            get(mandates::agent_delegations),
        )
        .route(
            "/v1/server/signing-keys/rotate",
            post(humans::rotate_signing_keys),
        )
        .route("/statuslists/{n}", get(oauth::status_list))
        .route("/v1/events", get(routes::events::events))
        .route("/v1/tenants/{id}/revoke", post(humans::revoke_tenant))
        .route("/v1/tokens/{jti}/revoke", post(mandates::revoke_token))
        .route("/oauth2/token", post(oauth::token))
        .route("/oauth2/introspect", post(oauth::introspect))
        .route("/oauth2/revoke", post(oauth::revoke))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ProblemKind::MethodNotAllowed,
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(extract::MAX_BODY))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
