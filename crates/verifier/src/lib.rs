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
//!
//! # How revocation is learnt
//!
//! The event stream names what was revoked: a token, a delegation, an agent, a human, a
//! tenant. A token carries its `jti`, its delegation, every agent of its chain (`act`), its
//! human and its tenant, so those are matched directly. A revocation further up the chain, or
//! one that cascades through the registry, is learnt from the token's status list entry: every
//! such event (and every reconnection of the stream) marks the cached status lists dirty and
//! they are fetched again, in the background and, if a request comes first, before it is
//! answered. A cached list is used while it is within its `ttl` and `max_staleness`, or while
//! the event stream is connected and heard from within `max_staleness` (the authority sends a
//! keep-alive every 15 s, so `max_staleness` should stay above that). Otherwise the list is
//! fetched, and if that fails the request is refused with [`DenyCode::RevocationStale`].
//! Tokens without a status list entry are accepted only while the event stream is fresh.
//!
//! # Constraints
//!
//! - `max_amount` applies to operations that carry an `amount` input (the gate's route
//!   mapping decides which do); a `currency` input must then be the limit's currency.
//! - `time_window` is evaluated in its IANA time zone with the tz database bundled in the
//!   binary (daylight saving time included); an unknown zone refuses.
//! - `rate` is a token bucket per (agent, delegation, detail): bursts of up to `max`, refilled
//!   at `max` per `per_seconds`; in memory, per verifier.
//! - `min_trust` asks the authority for the agent's trust score by RFC 7662 introspection as
//!   the gate (only when such a constraint applies; reused for 10 s); no score means deny, and
//!   an inactive token is revoked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mandate_core::clock::Clock;
use mandate_core::jose::AccessTokenClaims;
use mandate_core::scope::{Prohibitions, Scope};

mod cache;
mod constraints;
mod denial;
mod keys;
mod net;
mod revocation;
mod tasks;
mod verify;

pub use denial::{Denial, DenyCode};

use verify::{Inner, lock, read};

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
pub(crate) struct TokenFacts {
    pub(crate) scope: Scope,
    pub(crate) prohibitions: Prohibitions,
    /// Agent ids of `act`, outermost (the current agent) first.
    pub(crate) actors: Vec<String>,
    /// The Token Status List reference: list URI and index.
    pub(crate) status: Option<(String, u64)>,
    /// The token itself, for introspection when a `min_trust` constraint needs the registry.
    /// Never logged or printed.
    pub(crate) token: Box<str>,
    /// The key that signed it.
    pub(crate) kid: String,
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

/// How long [`Verifier::start`] waits for the event stream's first connection.
const FIRST_CONNECTION_WAIT: Duration = Duration::from_secs(5);

impl Verifier {
    /// Reads the authority's metadata (RFC 8414) and JWKS, subscribes to its event stream as
    /// the gate, and starts the background refresh of the JWKS and the status lists. Must run
    /// inside a Tokio runtime. Waits up to five seconds for the event stream to connect; until
    /// it does, tokens are checked against status lists alone. Fails if the authority refuses
    /// the gate's credentials.
    pub async fn start(
        cfg: VerifierConfig,
        clock: Arc<dyn Clock>,
        http: reqwest::Client,
    ) -> Result<Verifier, VerifierError> {
        check_config(&cfg)?;
        let meta = net::get_json(&http, &net::metadata_url(&cfg.issuer))
            .await
            .map_err(VerifierError::Unavailable)?;
        let endpoints = net::Endpoints::from_metadata(&cfg.issuer, &meta)
            .map_err(VerifierError::InvalidMetadata)?;
        let jwks = net::get_json(&http, &endpoints.jwks_uri)
            .await
            .map_err(VerifierError::Unavailable)?;
        let parsed = keys::KeySet::parse(&jwks).map_err(VerifierError::InvalidMetadata)?;
        let mut keys = keys::KeySet::default();
        keys.replace(parsed, clock.now_ms());
        let inner = Arc::new(Inner::new(cfg, clock, Some(http), endpoints, keys));
        tasks::spawn(&inner);
        let waited = tokio::time::timeout(FIRST_CONNECTION_WAIT, async {
            loop {
                let state = {
                    let events = read(&inner.events);
                    (events.connected || events.refused.is_some()).then_some(events.refused)
                };
                if let Some(refused) = state {
                    return refused;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        match waited {
            Ok(None) => {}
            // The gate's credentials are wrong: better said now than found out per request.
            Ok(Some(status @ (401 | 403))) => {
                return Err(VerifierError::Config(format!(
                    "the authority refused the gate's client assertion on the event stream \
                     (HTTP {status}): check `gate_id` and `gate_key`"
                )));
            }
            Ok(Some(status)) => {
                tracing::warn!(status, "the event stream refused; relying on status lists");
            }
            Err(_) => {
                tracing::warn!("the event stream did not connect yet; relying on status lists");
            }
        }
        Ok(Verifier { inner })
    }

    /// A verifier without network access, for benchmarks and tests: keys from `jwks` (a JWKS
    /// document; unusable keys are left out), no event stream, no status-list fetches, no
    /// introspection (`min_trust` constraints cannot be met); revocation data is considered
    /// fresh.
    pub fn offline(
        cfg: VerifierConfig,
        jwks: serde_json::Value,
        clock: Arc<dyn Clock>,
    ) -> Verifier {
        let keys = match keys::KeySet::parse(&jwks) {
            Ok(k) => keys::KeySet::with_keys(k),
            Err(e) => {
                tracing::warn!(error = %e, "offline verifier without keys");
                keys::KeySet::default()
            }
        };
        let endpoints = net::Endpoints::derived(&cfg.issuer);
        Verifier {
            inner: Arc::new(Inner::new(cfg, clock, None, endpoints, keys)),
        }
    }

    /// Authenticates a request, in the order of DESIGN §7: the access token (signature against
    /// the JWKS, `typ: at+jwt`, `iss`, `aud` ∋ this gate's audience, `exp`, `nbf`; verified once
    /// and cached by its SHA-256), the DPoP proof (RFC 9449 §4.3 and §7.1, on every request,
    /// single use), revocation (event stream and status list; fail closed past
    /// `max_staleness`), and the pinned commitment of the agent, if any.
    pub async fn authenticate(&self, req: &RequestProof<'_>) -> Result<Caller, Denial> {
        self.inner.authenticate(req).await
    }

    /// Authorizes one operation for an authenticated caller: scope and prohibitions
    /// (`mandate_core::scope::evaluate`), then the constraints of a granting detail
    /// (`max_amount`, `time_window`, `rate`, `min_trust`), and whether the action needs an
    /// approval (`approval_required_for`).
    pub async fn authorize(&self, caller: &Caller, op: &Operation) -> Decision {
        self.inner.authorize(caller, op).await
    }

    /// The age of the verifier's JWKS, events and status lists.
    pub fn freshness(&self) -> Freshness {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let age =
            |at: i64| Duration::from_millis(u64::try_from(now.saturating_sub(at)).unwrap_or(0));
        let max_stale = i64::try_from(inner.cfg.max_staleness.as_millis()).unwrap_or(i64::MAX);
        let events = read(&inner.events);
        let lists = lock(&inner.lists);
        let oldest = lists.lists.iter().map(|(_, l)| l.fetched_at).min();
        Freshness {
            jwks_age: read(&inner.keys).fetched_at.map(age),
            events_age: events.last_heard.map(age),
            events_connected: events.connected,
            last_event_id: events.last_event_id,
            status_lists_age: oldest.map(age),
            revocation_fresh: inner.offline() || events.fresh(now, max_stale),
        }
    }
}

fn check_config(cfg: &VerifierConfig) -> Result<(), VerifierError> {
    let bad = |m: &str| Err(VerifierError::Config(m.to_owned()));
    if !(cfg.issuer.starts_with("https://") || cfg.issuer.starts_with("http://")) {
        return bad("`issuer` must be an http(s) URL");
    }
    if cfg.issuer.ends_with('/') {
        return bad("`issuer` must not end with `/`");
    }
    if cfg.audience.is_empty() {
        return bad("`audience` is required");
    }
    if cfg.gate_id.is_empty() {
        return bad("`gate_id` is required");
    }
    if cfg.max_staleness.is_zero() {
        return bad("`max_staleness` must be positive");
    }
    Ok(())
}

/// Reads an Ed25519 private JWK (`{"kty": "OKP", "crv": "Ed25519", "d": …, "x": …}`, as the
/// authority returns a generated key once) into a signing key for
/// [`VerifierConfig::gate_key`]. When `x` is present it must match `d`.
pub fn signing_key_from_jwk(jwk: &serde_json::Value) -> Result<SigningKey, VerifierError> {
    let bad = |m: &str| VerifierError::Config(format!("gate key: {m}"));
    if jwk.get("kty").and_then(serde_json::Value::as_str) != Some("OKP")
        || jwk.get("crv").and_then(serde_json::Value::as_str) != Some("Ed25519")
    {
        return Err(bad("only OKP Ed25519 keys are supported"));
    }
    let d = jwk
        .get("d")
        .and_then(serde_json::Value::as_str)
        .and_then(mandate_core::encoding::b64url_decode)
        .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
        .ok_or_else(|| bad("`d` must be 32 bytes of base64url"))?;
    let key = SigningKey::from_bytes(&d);
    if let Some(x) = jwk.get("x") {
        let public = mandate_core::encoding::b64url(key.verifying_key().as_bytes());
        if x.as_str() != Some(public.as_str()) {
            return Err(bad("`x` does not match `d`"));
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
