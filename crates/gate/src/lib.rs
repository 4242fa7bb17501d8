//! The Mandate gate: an enforcing reverse proxy in front of HTTP tools and MCP servers
//! (DESIGN §7).
//!
//! For every request the gate checks, in order: the path and method are in canonical form;
//! the DPoP-bound access token, its proof and its revocation status
//! ([`mandate_verifier::Verifier::authenticate`]); the route maps the request to an action, a
//! resource and constraint inputs; the token's scope, prohibitions and constraints allow it
//! ([`mandate_verifier::Verifier::authorize`]); a human approved it when the scope asks for
//! approval. It then writes the decision to a durable local spool and only then forwards the
//! request, without the caller's `Authorization` and `DPoP` headers and with identity headers
//! (`X-Mandate-Agent`, `X-Mandate-On-Behalf-Of`, `X-Mandate-Delegation`, `X-Mandate-Receipt`).
//! Denials are spooled too; a background task ships the spool to the authority's ledger.
//!
//! What it must not do: forward a request it did not decide on exactly as forwarded; forward
//! the caller's token; forward anything whose decision is not durable; list tools the caller
//! cannot call.
//!
//! # `gate.toml`
//!
//! Unknown keys are an error. Relative paths are taken relative to the file's directory.
//!
//! ```toml
//! listen = "127.0.0.1:8443"            # IP:PORT (port 0: any free port)
//! public_url = "http://127.0.0.1:8443" # optional; how clients address the gate (scheme://host[:port]),
//!                                      # base of DPoP `htu` and of the metadata URL; default http://<bound address>
//! issuer = "http://127.0.0.1:8080"     # the authority's issuer identifier (also where the gate reaches it)
//! audience = "https://crm.example.com" # the gate's registered audience: tokens must carry it in `aud`;
//!                                      # also the RFC 9728 `resource`
//! gate_id = "gat_…"                    # the gate's client id (`mandate gate add`)
//! key_file = "gate-key.json"           # the gate's private Ed25519 JWK {kty, crv, x, d, kid?}
//! spool_dir = "spool"                  # durable decision spool + shipping cursor
//! max_staleness_secs = 30              # optional: revocation data older than this → deny
//! dpop_max_age_secs = 300              # optional: oldest accepted DPoP proof
//! token_cache_capacity = 10000         # optional: verified tokens cached
//! max_body_bytes = 1048576             # optional: largest body the gate reads
//!
//! [pinned_commitments]                 # optional: agent id → the `cmt` its tokens must carry
//! # agt_01J… = "9f2c…"
//!
//! [[upstream]]
//! name = "crm"
//! kind = "http"                        # "http" | "mcp"
//! url = "http://127.0.0.1:9000"        # http: base URL the route path is appended to
//! mount = "/"                          # optional; http: path prefix at the gate (stripped), default "/"
//!
//! [[upstream]]
//! name = "tools"
//! kind = "mcp"
//! url = "http://127.0.0.1:9100/mcp"    # mcp: the MCP endpoint itself
//! mount = "/mcp"                       # optional; mcp: the gate's MCP endpoint, default the path of `url`
//!
//! [[route]]                            # HTTP: method + path template → action + resource
//! upstream = "crm"                     # optional when there is exactly one http upstream
//! method = "DELETE"                    # uppercase, matched exactly
//! path = "/tickets/{id}"               # below the mount; {name} captures one segment ([a-z0-9_]+)
//! action = "delete"
//! resource = "tickets/{id}"            # {name}: a captured segment
//!
//! [[route]]
//! method = "POST"
//! path = "/orders/{id}/refunds"
//! action = "write"
//! resource = "orders/{id}"
//! inputs = { amount = "body.amount", currency = "query.currency" }  # body.<a>.<b> (JSON body) | query.<param>
//!
//! [[tool]]                             # MCP: tools/call + tool name → action + resource
//! upstream = "tools"                   # optional when there is exactly one mcp upstream
//! name = "refund_order"
//! action = "execute"
//! resource = "orders/{arguments.order_id}"  # {arguments.<a>.<b>}: a string or integer argument
//! inputs = { amount = "arguments.amount" }
//! ```
//!
//! Routes of one upstream and method that could match the same path are refused at start.
//! Captured values and arguments are percent-encoded into one resource segment, so a value
//! can never add a segment, a wildcard or a dot segment.
//!
//! # Serving
//!
//! - `GET /.well-known/oauth-protected-resource` (and the same path followed by each MCP
//!   endpoint's mount, RFC 9728 §3.1) serves the protected-resource metadata; every 401
//!   carries `WWW-Authenticate: DPoP error="…", algs="EdDSA Ed25519", resource_metadata="…"`.
//! - `GET /.well-known/mandate-gate`: the gate's health — whether its revocation data is fresh
//!   enough to accept tokens (200, else 503), whether the authority's event stream is
//!   connected, and the ages of its JWKS, events and status lists. For load balancers and
//!   monitoring; it reveals nothing about callers.
//! - HTTP routes: denials are RFC 6750 errors (`401 invalid_token` / `invalid_dpop_proof`,
//!   `403 insufficient_scope` with a JSON body that has `reason`, `receipt` and, for approvals,
//!   `approval_id`). Requests that map to no route are denied (403), never forwarded.
//! - MCP endpoints (Streamable HTTP, one JSON-RPC message per POST): `initialize`, `ping`,
//!   `notifications/*`, `tools/list` and JSON-RPC responses pass for any authenticated caller;
//!   `tools/call` is decided per tool; every other method is denied. Batches are refused.
//!   `Mcp-Method` / `Mcp-Name` headers, when present, must agree with the body (400, JSON-RPC
//!   `-32001`). `tools/list` answers (JSON or SSE) list only the mapped tools whose action the
//!   caller's scope grants on every resource the tool can name. Authorization denials are
//!   JSON-RPC errors `-32003` in a 200 response, whose `data` holds `error`
//!   (`insufficient_scope`), `reason`, `receipt` and `approval_id`; unmappable arguments are
//!   `-32602`. GET (server stream) and DELETE (session end) pass for authenticated callers.
//!   SSE answers stream through.
//!
//! # Decision records
//!
//! Each decision on a mapped (or unmapped) request of an authenticated caller is a
//! [`DecisionRecord`] in the spool; protocol housekeeping (`initialize`, `ping`,
//! notifications, `tools/list`) is not a decision and is not recorded. Requests refused before
//! authentication (malformed, path tricks, bad tokens) are not recorded either: nobody
//! accountable made them, and recording them would let anyone fill the ledger.
//!
//! ```no_run
//! # async fn example() -> Result<(), mandate_gate::GateError> {
//! let config = mandate_gate::GateConfig::load(std::path::Path::new("gate.toml"))?;
//! let gate = mandate_gate::start(config).await?;
//! println!("listening on {}", gate.url());
//! gate.stop().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod authority;
mod config;
mod error;
mod mcp;
mod path;
mod proxy;
mod routes;
mod spool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mandate_core::clock::Clock;
use mandate_verifier::{Verifier, VerifierConfig};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{
    DEFAULT_DPOP_MAX_AGE_SECS, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_STALENESS_SECS,
    DEFAULT_TOKEN_CACHE_CAPACITY, GateConfig, RouteConfig, ToolConfig, UpstreamConfig,
    UpstreamKind,
};
pub use error::GateError;
pub use spool::DecisionRecord;

use crate::authority::Authority;
use crate::path::CanonicalPath;
use crate::routes::RouteTable;
use crate::spool::Spool;

/// A running gate.
pub struct RunningGate {
    addr: SocketAddr,
    spool: Spool,
    public_url: String,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    shipper: tokio::task::JoinHandle<()>,
}

impl RunningGate {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many fsyncs the decision spool has made: with concurrent requests, many records
    /// share one (group commit).
    pub fn spool_syncs(&self) -> u64 {
        self.spool.syncs()
    }

    /// The public base URL (no trailing `/`).
    pub fn url(&self) -> String {
        self.public_url.clone()
    }

    /// Stops accepting requests, waits for in-flight ones (up to 5 s) and stops shipping;
    /// what is not shipped yet stays in the spool for the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        let _ = self.shipper.await;
    }
}

/// Starts a gate: compiles the routes, opens the spool, starts the verifier (which reads the
/// authority's metadata and keys), binds and serves in the background.
pub async fn start(config: GateConfig) -> Result<RunningGate, GateError> {
    let routes = RouteTable::compile(&config)?;
    let (key, kid) = config::read_key(&config.key_file)?;
    let clock: Arc<dyn Clock> = config
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(SystemClock));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| GateError::Bind(config.listen.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| GateError::Bind(config.listen.to_string(), e))?;
    let public_url = match &config.public_url {
        Some(u) => check_public_url(u)?,
        None => format!("http://{addr}"),
    };
    let spool = Spool::open(&config.spool_dir)?;
    let http = reqwest::Client::builder()
        .user_agent(concat!("mandate-gate/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| GateError::Config(format!("cannot build the HTTP client: {e}")))?;
    let upstream_http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| GateError::Config(format!("cannot build the HTTP client: {e}")))?;
    let verifier_config = VerifierConfig {
        max_staleness: Duration::from_secs(config.max_staleness_secs),
        pinned_commitments: config
            .pinned_commitments
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        token_cache_capacity: config.token_cache_capacity,
        dpop_max_age: Duration::from_secs(config.dpop_max_age_secs),
        ..VerifierConfig::new(
            config.issuer.clone(),
            config.audience.clone(),
            config.gate_id.clone(),
            key.clone(),
        )
    };
    let verifier = Verifier::start(verifier_config, clock.clone(), http.clone())
        .await
        .map_err(|e| GateError::Verifier(e.to_string()))?;
    let authority = Arc::new(Authority::new(
        http,
        &config.issuer,
        &config.gate_id,
        key,
        kid,
        clock.clone(),
    ));
    let (stop, stopped) = watch::channel(false);
    let shipper = spool.ship(authority.clone(), stopped.clone());
    let spool_handle = spool.clone();
    let gate = Arc::new(Gate {
        routes,
        verifier,
        spool,
        authority,
        upstream_http,
        public_url: public_url.clone(),
        audience: config.audience.clone(),
        issuer: config.issuer.clone(),
        max_body: config.max_body_bytes,
        location: mandate_core::scope::Location::parse(&config.audience).ok(),
        clock,
    });
    let app = Router::new().fallback(proxy::handle).with_state(gate);
    let mut shutdown = stopped;
    let server = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gate server stopped");
        }
    });
    Ok(RunningGate {
        addr,
        spool: spool_handle,
        public_url,
        stop,
        server,
        shipper,
    })
}

/// Runs a gate until `shutdown` resolves; `on_start` is told where it listens.
pub async fn run(
    config: GateConfig,
    shutdown: impl std::future::Future<Output = ()>,
    on_start: impl FnOnce(&RunningGate),
) -> Result<(), GateError> {
    let gate = start(config).await?;
    on_start(&gate);
    shutdown.await;
    gate.stop().await;
    Ok(())
}

/// Shared state of one gate.
pub(crate) struct Gate {
    pub(crate) routes: RouteTable,
    pub(crate) verifier: Verifier,
    pub(crate) spool: Spool,
    pub(crate) authority: Arc<Authority>,
    pub(crate) upstream_http: reqwest::Client,
    /// No trailing `/`.
    pub(crate) public_url: String,
    pub(crate) audience: String,
    pub(crate) issuer: String,
    pub(crate) max_body: usize,
    /// The audience as a scope location (`None` if it is not one: then only details without
    /// locations grant anything, as in the verifier).
    pub(crate) location: Option<mandate_core::scope::Location>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Gate {
    /// A fresh decision record id.
    pub(crate) fn new_record_id(&self) -> String {
        proxy::record_id(self.clock.now_ms())
    }

    /// RFC 9728 §3.1: the metadata URL, path-suffixed for an MCP endpoint.
    pub(crate) fn metadata_url(&self, mount: Option<&CanonicalPath>) -> String {
        match mount {
            Some(m) if !m.segments().is_empty() => {
                format!("{}{}{}", self.public_url, proxy::METADATA_PATH, m.encoded())
            }
            _ => format!("{}{}", self.public_url, proxy::METADATA_PATH),
        }
    }

    /// The metadata document if `path` is one of the gate's metadata URLs.
    pub(crate) fn metadata_for(&self, path: &str) -> Option<Response> {
        let suffix = path.strip_prefix(proxy::METADATA_PATH)?;
        let known = suffix.is_empty()
            || self
                .routes
                .mcp_upstreams()
                .any(|u| u.mount.encoded() == suffix);
        if !known {
            return None;
        }
        // RFC 9728 §2 metadata, with RFC 9449 §5.1 / RFC 9728 §2 DPoP members.
        let doc = json!({
            "resource": self.audience,
            "authorization_servers": [self.issuer],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": error::DPOP_ALGS,
            "dpop_bound_access_tokens_required": true,
            "resource_name": "Mandate gate",
        });
        let mut response = axum::Json(doc).into_response();
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        Some(response)
    }
}

/// The system clock.
struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

fn check_public_url(url: &str) -> Result<String, GateError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| GateError::Config(format!("public_url `{url}`: {e}")))?;
    let ok = matches!(parsed.scheme(), "http" | "https")
        && parsed.host().is_some()
        && parsed.path() == "/"
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.username().is_empty();
    if !ok {
        return Err(GateError::Config(format!(
            "public_url `{url}` must be `scheme://host[:port]` without a path"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}
