//! Offline verification of Mandate access tokens, for gates in front of tools (DESIGN §7).
//!
//! A [`Verifier`] holds what a gate needs to decide a request without asking the authority:
//! the authority's signing keys (JWKS), revocation state fed by the `/v1/events` stream and
//! Token Status Lists, a DPoP replay store, rate counters and a cache of verified tokens.
//!
//! A request is decided in two steps, in the order of DESIGN §7:
//!
//! 1. [`Verifier::authenticate`]: the `Authorization: DPoP` token (signature against the JWKS,
//!    `typ`, `iss`, `aud`, `exp`, `nbf`), the DPoP proof (RFC 9449 §4.3 and §7), revocation
//!    (event stream + status list, fail closed past `max_staleness`) and pinned commitments.
//!    It yields a [`Caller`].
//! 2. [`Verifier::authorize`]: the mapped [`Operation`] against the token's scope and
//!    prohibitions, then the granting detail's constraints (`max_amount`, `time_window`,
//!    `rate`, `min_trust`) and whether an approval is required.
//!
//! Denials carry a [`DenyCode`] that maps to RFC 6750 / RFC 9449 errors and HTTP statuses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mandate_core::clock::Clock;
use mandate_core::jose::AccessTokenClaims;
use mandate_core::scope::{Prohibitions, Scope};

mod denial;

pub use denial::{Denial, DenyCode};

/// The default of [`VerifierConfig::max_staleness`].
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(30);
/// The default of [`VerifierConfig::token_cache_capacity`].
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 10_000;
/// The default of [`VerifierConfig::dpop_max_age`]: RFC 9449 §11.1 leaves the window to the
/// server; the core's default is five minutes.
pub const DEFAULT_DPOP_MAX_AGE: Duration =
    Duration::from_secs(mandate_core::jose::DEFAULT_DPOP_MAX_AGE_SECS as u64);

/// What a verifier trusts and how strict it is.
pub struct VerifierConfig {
    /// The authority's issuer identifier; its metadata is read from
    /// `{issuer}/.well-known/oauth-authorization-server` (RFC 8414 §3).
    pub issuer: String,
    /// This gate's audience: a token's `aud` must contain it (RFC 9068 §4).
    pub audience: String,
    /// The gate's client id (`gat_…`), for `/v1/events` and introspection.
    pub gate_id: String,
    /// The gate's registered Ed25519 key, which signs its client assertions (RFC 7523).
    pub gate_key: SigningKey,
    /// Revocation data older than this means deny (fail closed). Default 30 s.
    pub max_staleness: Duration,
    /// Pinned agent commitments: client id → the `cmt` a token of that agent must carry.
    pub pinned_commitments: HashMap<String, String>,
    /// Verified tokens cached by SHA-256 of the token (oldest evicted). Default 10 000.
    pub token_cache_capacity: usize,
    /// How old a DPoP proof's `iat` may be (RFC 9449 §4.3 check 11). Default 5 min.
    pub dpop_max_age: Duration,
}

impl VerifierConfig {
    /// A configuration with the defaults for everything but the identity of the authority and
    /// of the gate.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        gate_id: impl Into<String>,
        gate_key: SigningKey,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            gate_id: gate_id.into(),
            gate_key,
            max_staleness: DEFAULT_MAX_STALENESS,
            pinned_commitments: HashMap::new(),
            token_cache_capacity: DEFAULT_TOKEN_CACHE_CAPACITY,
            dpop_max_age: DEFAULT_DPOP_MAX_AGE,
        }
    }
}

impl std::fmt::Debug for VerifierConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The gate key is private: never printed.
        f.debug_struct("VerifierConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("gate_id", &self.gate_id)
            .field("gate_key", &"<redacted>")
            .field("max_staleness", &self.max_staleness)
            .field("pinned_commitments", &self.pinned_commitments)
            .field("token_cache_capacity", &self.token_cache_capacity)
            .field("dpop_max_age", &self.dpop_max_age)
            .finish()
    }
}

/// Why [`Verifier::start`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    /// The authority could not be reached or answered badly.
    #[error("authority unavailable: {0}")]
    Unavailable(String),
    /// The authority's metadata or keys are not acceptable.
    #[error("invalid authority metadata: {0}")]
    InvalidMetadata(String),
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The proof a request carries, as the gate received it.
#[derive(Clone, Copy)]
pub struct RequestProof<'a> {
    /// The HTTP method, exactly as received.
    pub method: &'a str,
    /// The full URL as the client addressed it (for `htu`, RFC 9449 §4.3), built from the
    /// gate's configured public base URL and the request target.
    pub url: &'a str,
    /// The `Authorization` header value, if any.
    pub authorization: Option<&'a str>,
    /// The `DPoP` header value, if any. The gate must refuse a request with more than one
    /// `DPoP` header before calling (RFC 9449 §4.3 check 1); a comma-joined value is refused
    /// here.
    pub dpop: Option<&'a str>,
}

impl std::fmt::Debug for RequestProof<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials never go to a log.
        f.debug_struct("RequestProof")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("authorization", &self.authorization.map(|_| "…"))
            .field("dpop", &self.dpop.map(|_| "…"))
            .finish()
    }
}

/// One operation a caller asks for, as the gate maps it from the request (DESIGN §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The action, e.g. `read`.
    pub action: String,
    /// The resource path, e.g. `tickets/42`.
    pub resource: String,
    /// Constraint inputs, e.g. `amount` and `currency`.
    pub inputs: serde_json::Map<String, serde_json::Value>,
}

impl Operation {
    /// An operation without inputs.
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
            inputs: serde_json::Map::new(),
        }
    }

    /// Adds one input.
    pub fn with_input(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.inputs.insert(name.to_owned(), value.into());
        self
    }
}

/// The outcome of [`Verifier::authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the authorization detail at index `detail` of the token's
    /// `authorization_details`. When `approval_required` is set the action is listed in that
    /// detail's `approval_required_for`: the gate must obtain a human approval first.
    Allow {
        /// Index of the granting detail.
        detail: usize,
        /// Whether a human approval is required before forwarding.
        approval_required: bool,
    },
    /// Refused.
    Deny(Denial),
}

impl Decision {
    /// Whether the decision is [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// What is known about a verified token beyond its claims, parsed once per token.
#[derive(Debug)]
pub(crate) struct TokenFacts {
    pub(crate) scope: Scope,
    pub(crate) prohibitions: Prohibitions,
    /// Agent ids of `act`, outermost (the current agent) first.
    pub(crate) actors: Vec<String>,
}

/// An authenticated caller: a verified access token presented with a valid DPoP proof, not
/// revoked. Only [`Verifier::authenticate`] builds one.
#[derive(Clone)]
pub struct Caller {
    /// SHA-256 of the access token (never the token itself).
    pub token_hash: [u8; 32],
    /// The validated claims.
    pub claims: Arc<AccessTokenClaims>,
    facts: Arc<TokenFacts>,
}

impl Caller {
    /// The acting agent (`client_id`).
    pub fn agent(&self) -> &str {
        &self.claims.client_id
    }

    /// The human at the root of the chain (`sub`).
    pub fn human(&self) -> &str {
        &self.claims.sub
    }

    /// The delegation the token was issued under (`del`).
    pub fn delegation(&self) -> &str {
        &self.claims.del
    }

    /// The tenant (`tnt`).
    pub fn tenant(&self) -> &str {
        &self.claims.tnt
    }

    /// The token id (`jti`).
    pub fn jti(&self) -> &str {
        &self.claims.jti
    }

    /// The delegation depth (`dpt`).
    pub fn depth(&self) -> u8 {
        self.claims.dpt
    }

    /// The agents of the chain from `act` (RFC 8693 §4.1), the current agent first, then the
    /// earlier ones. Informational: decisions use the outermost actor (SECURITY.md, line 5).
    pub fn actors(&self) -> &[String] {
        &self.facts.actors
    }

    /// The token's scope.
    pub fn scope(&self) -> &Scope {
        &self.facts.scope
    }

    /// The prohibitions of the token's delegation chain.
    pub fn prohibitions(&self) -> &Prohibitions {
        &self.facts.prohibitions
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("agent", &self.agent())
            .field("human", &self.human())
            .field("delegation", &self.delegation())
            .field("jti", &self.jti())
            .finish_non_exhaustive()
    }
}

/// How old the verifier's view of the authority is, for health reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freshness {
    /// Since the JWKS was last fetched (`None`: never, e.g. offline).
    pub jwks_age: Option<Duration>,
    /// Since the event stream was last heard from (data or keep-alive); `None`: never.
    pub events_age: Option<Duration>,
    /// Whether the event stream is connected now.
    pub events_connected: bool,
    /// The id of the last event received (resumption point, `Last-Event-ID`).
    pub last_event_id: Option<u64>,
    /// Age of the oldest cached status list (`None`: none cached).
    pub status_lists_age: Option<Duration>,
    /// Whether revocation data is fresh enough to accept tokens now (offline verifiers: always).
    pub revocation_fresh: bool,
}

/// The verifier: cheap to clone (shared state inside).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: VerifierConfig,
    clock: Arc<dyn Clock>,
}

impl Verifier {
    /// Reads the authority's metadata and JWKS, subscribes to its event stream as the gate, and
    /// starts the background refresh tasks (JWKS, status lists). Must run inside a Tokio
    /// runtime.
    pub async fn start(
        cfg: VerifierConfig,
        clock: Arc<dyn Clock>,
        http: reqwest::Client,
    ) -> Result<Verifier, VerifierError> {
        let _ = http;
        Ok(Self::offline(cfg, serde_json::json!({"keys": []}), clock))
    }

    /// A verifier without network access, for benchmarks and tests: keys from `jwks`, no event
    /// stream, no status-list fetches; revocation data is considered fresh.
    pub fn offline(
        cfg: VerifierConfig,
        jwks: serde_json::Value,
        clock: Arc<dyn Clock>,
    ) -> Verifier {
        let _ = jwks;
        Verifier {
            inner: Arc::new(Inner { cfg, clock }),
        }
    }

    /// Authenticates a request: token, DPoP proof, revocation, pinned commitment.
    pub async fn authenticate(&self, req: &RequestProof<'_>) -> Result<Caller, Denial> {
        let _ = (req, &self.inner.cfg, self.inner.clock.now_ms());
        Err(Denial::new(DenyCode::InvalidToken, "not implemented yet"))
    }

    /// Authorizes one operation for an authenticated caller: scope, prohibitions, constraints,
    /// approval.
    pub async fn authorize(&self, caller: &Caller, op: &Operation) -> Decision {
        let _ = (caller, op);
        Decision::Deny(Denial::new(
            DenyCode::InsufficientScope,
            "not implemented yet",
        ))
    }

    /// The age of the verifier's JWKS, events and status lists.
    pub fn freshness(&self) -> Freshness {
        Freshness::default()
    }
}
