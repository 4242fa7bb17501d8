//! The verifier's state and the two decision steps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use mandate_core::clock::Clock;
use mandate_core::jose::{
    AccessTokenClaims, AccessTokenExpectation, DEFAULT_DPOP_FUTURE_LEEWAY_SECS, DpopExpectation,
    JoseLimits, JwtKind, Unverified, verify_dpop_proof_for_token_hash,
};
use mandate_core::jwk::{JwkError, PublicJwk};
use mandate_core::scope::{
    AccessRequest, Action, Constraints, Decision as ScopeDecision, DenyReason, Location,
    Prohibitions, ResourcePath, Scope, evaluate,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::cache::{Fifo, ReplayError, ReplayStore, token_hash};
use crate::constraints::{RateLimiter, check_max_amount, check_time_window};
use crate::denial::{Denial, DenyCode};
use crate::keys::KeySet;
use crate::net::{self, Endpoints};
use crate::revocation::{
    CachedList, EventState, StatusLists, TokenRefs, parse_status_list_token, status_denial,
};
use crate::{Caller, Decision, Operation, RequestProof, TokenFacts, VerifierConfig};

/// Clock skew tolerated on a token's `exp`, `nbf` and `iat` (SECURITY.md, line 2: "a small
/// leeway"), in seconds.
pub(crate) const TOKEN_LEEWAY_SECS: i64 = 10;
/// The most `(jkt, jti)` pairs the DPoP replay store holds.
const REPLAY_CAPACITY: usize = 1 << 20;
/// How long an agent's trust score read by introspection is reused, ms.
pub(crate) const TRUST_TTL_MS: i64 = 10_000;
/// The most DPoP proof keys remembered as validated.
const PROOF_KEY_CAPACITY: usize = 4096;
/// The most trust scores cached.
const TRUST_CAPACITY: usize = 1 << 14;
/// Bounds on a status list's `ttl` as used here, ms: at least a second (no fetch storms), at
/// most a day.
const TTL_BOUNDS_MS: (i64, i64) = (1_000, 24 * 3600 * 1000);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// A verified token in the cache: its claims and what was parsed from them.
pub(crate) type Verified = (Arc<AccessTokenClaims>, Arc<TokenFacts>);

/// A trust score read from the registry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrustEntry {
    pub(crate) score: Option<u8>,
    pub(crate) at: i64,
}

/// Everything a verifier holds.
pub(crate) struct Inner {
    pub(crate) cfg: VerifierConfig,
    pub(crate) clock: Arc<dyn Clock>,
    /// `None`: offline (no network; revocation data considered fresh).
    pub(crate) http: Option<reqwest::Client>,
    pub(crate) endpoints: Endpoints,
    /// The gate's audience as a scope location, for `locations` of authorization details.
    pub(crate) location: Option<Location>,
    pub(crate) limits: JoseLimits,
    pub(crate) keys: RwLock<KeySet>,
    pub(crate) jwks_fetch: tokio::sync::Mutex<()>,
    pub(crate) tokens: Mutex<Fifo<[u8; 32], Verified>>,
    pub(crate) replay: Mutex<ReplayStore>,
    /// DPoP proof keys already validated, by `x`, with the exact `jwk` header they came in.
    pub(crate) proof_keys: Mutex<Fifo<String, (Value, Arc<PublicJwk>)>>,
    pub(crate) events: RwLock<EventState>,
    pub(crate) lists: Mutex<StatusLists>,
    pub(crate) list_fetch: tokio::sync::Mutex<()>,
    pub(crate) rates: Mutex<RateLimiter>,
    pub(crate) trust: Mutex<Fifo<String, TrustEntry>>,
    /// Wakes the maintenance task (a cascading event made status lists dirty).
    pub(crate) refresh: tokio::sync::Notify,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Token signature verifications done (cache misses), for tests and metrics.
    pub(crate) signature_checks: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Inner {
    pub(crate) fn new(
        cfg: VerifierConfig,
        clock: Arc<dyn Clock>,
        http: Option<reqwest::Client>,
        endpoints: Endpoints,
        keys: KeySet,
    ) -> Self {
        let location = Location::parse(&cfg.audience).ok();
        let capacity = cfg.token_cache_capacity;
        Self {
            cfg,
            clock,
            http,
            endpoints,
            location,
            limits: JoseLimits::default(),
            keys: RwLock::new(keys),
            jwks_fetch: tokio::sync::Mutex::new(()),
            tokens: Mutex::new(Fifo::new(capacity)),
            replay: Mutex::new(ReplayStore::new(REPLAY_CAPACITY)),
            proof_keys: Mutex::new(Fifo::new(PROOF_KEY_CAPACITY)),
            events: RwLock::new(EventState::default()),
            lists: Mutex::new(StatusLists::default()),
            list_fetch: tokio::sync::Mutex::new(()),
            rates: Mutex::new(RateLimiter::default()),
            trust: Mutex::new(Fifo::new(TRUST_CAPACITY)),
            refresh: tokio::sync::Notify::new(),
            tasks: Mutex::new(Vec::new()),
            signature_checks: AtomicU64::new(0),
        }
    }

    pub(crate) fn offline(&self) -> bool {
        self.http.is_none()
    }

    fn max_staleness_ms(&self) -> i64 {
        i64::try_from(self.cfg.max_staleness.as_millis()).unwrap_or(i64::MAX)
    }

    // ---- authentication -------------------------------------------------------------------

    pub(crate) async fn authenticate(&self, req: &RequestProof<'_>) -> Result<Caller, Denial> {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let token = dpop_token(req.authorization)?;
        if token.len() > self.limits.max_token_bytes {
            return Err(invalid_token("the access token is too large"));
        }

        // 1. The token: signature against the JWKS and claims (DESIGN §7), once per token.
        let hash = token_hash(token);
        let cached = lock(&self.tokens).get(&hash).cloned();
        let (claims, facts) = match cached {
            // A cached token stays valid only while the key that signed it is published.
            Some(hit) if read(&self.keys).contains(&hit.1.kid) => hit,
            _ => {
                let fresh = self.verify_token(token, now_ms).await?;
                lock(&self.tokens).insert(hash, fresh.clone());
                fresh
            }
        };
        // RFC 7519 §4.1.4 / §4.1.5, again on every use: a cached token expires too.
        if claims.exp <= now.saturating_sub(TOKEN_LEEWAY_SECS) {
            return Err(invalid_token("the access token has expired"));
        }
        if claims.nbf > now.saturating_add(TOKEN_LEEWAY_SECS) {
            return Err(invalid_token("the access token is not valid yet"));
        }

        // 2. The DPoP proof (RFC 9449 §4.3, §7.1), on every request.
        self.check_dpop(req, &hash, &claims, now, now_ms)?;

        // 3. Revocation: event stream and status list, fail closed past max staleness.
        self.check_revocation(&claims, &facts, now_ms).await?;

        // 4. Pinned commitments (DESIGN §1, "a gate can pin the exact identity it trusts").
        if let Some(pinned) = self.cfg.pinned_commitments.get(&claims.client_id)
            && *pinned != claims.cmt
        {
            return Err(Denial::new(
                DenyCode::CommitmentMismatch,
                "the agent's commitment is not the one pinned by this gate",
            ));
        }

        Ok(Caller {
            token_hash: hash,
            claims,
            facts,
        })
    }

    /// RFC 9068 §4 validation of an access token not yet in the cache.
    async fn verify_token(&self, token: &str, now_ms: i64) -> Result<Verified, Denial> {
        let jose = |e: mandate_core::jose::JoseError| invalid_token(e.to_string());
        let unverified = Unverified::parse(token, &self.limits).map_err(jose)?;
        let kid = unverified
            .kid()
            .ok_or_else(|| invalid_token("the access token has no `kid`"))?
            .to_owned();
        let key = self
            .key_for(&kid, now_ms)
            .await
            .ok_or_else(|| invalid_token("the access token is signed by an unknown key"))?;
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        // RFC 9068 §4: "The resource server MUST validate the signature of all incoming JWT
        // access tokens according to [RFC7515] using the algorithm specified in the JWT 'alg'
        // Header Parameter" — here pinned to Ed25519 by the key — and `typ` must be at+jwt.
        let verified = unverified
            .verify(JwtKind::AccessToken, &key)
            .map_err(jose)?;
        let expect = AccessTokenExpectation {
            issuer: &self.cfg.issuer,
            audience: Some(&self.cfg.audience),
            now: now_ms.div_euclid(1000),
            leeway: TOKEN_LEEWAY_SECS,
        };
        let claims = AccessTokenClaims::from_verified(&verified, &expect).map_err(jose)?;
        let facts = token_facts(&claims, token, kid)?;
        Ok((Arc::new(claims), Arc::new(facts)))
    }

    /// The key `kid` of the authority; an unknown `kid` refetches the JWKS, at most once per
    /// [`crate::keys::UNKNOWN_KID_REFETCH_MS`].
    pub(crate) async fn key_for(&self, kid: &str, now_ms: i64) -> Option<Arc<PublicJwk>> {
        if let Some(key) = read(&self.keys).get(kid) {
            return Some(key);
        }
        if self.offline() || !write(&self.keys).may_fetch_for_unknown_kid(now_ms) {
            return None;
        }
        if let Err(e) = self.refresh_jwks().await {
            tracing::warn!(error = %e, "JWKS refresh failed");
        }
        read(&self.keys).get(kid)
    }

    pub(crate) async fn refresh_jwks(&self) -> Result<(), String> {
        let Some(http) = &self.http else {
            return Ok(());
        };
        let _one = self.jwks_fetch.lock().await;
        let doc = net::get_json(http, &self.endpoints.jwks_uri).await?;
        let keys = KeySet::parse(&doc)?;
        let removed = write(&self.keys).replace(keys, self.clock.now_ms());
        if removed {
            // Cached tokens are checked against the published kids on every hit; dropping
            // them also frees the memory at once.
            let keys = read(&self.keys);
            lock(&self.tokens).retain(|_, (_, facts)| keys.contains(&facts.kid));
        }
        Ok(())
    }

    /// RFC 9449 §4.3 checks 1–12 and §11.1 replay, for a proof presented with the access
    /// token whose SHA-256 is `token_sha256`.
    fn check_dpop(
        &self,
        req: &RequestProof<'_>,
        token_sha256: &[u8; 32],
        claims: &AccessTokenClaims,
        now: i64,
        now_ms: i64,
    ) -> Result<(), Denial> {
        let bad = |reason: String| Denial::new(DenyCode::InvalidDpopProof, reason);
        // RFC 9449 §7.1: a DPoP-bound access token is sent with a DPoP proof.
        let proof = req
            .dpop
            .ok_or_else(|| bad("a DPoP proof is required with a DPoP-bound token".into()))?;
        // (1) "There is not more than one DPoP HTTP request header field." Joined header
        // values are comma-separated; a JWT never contains a comma.
        if proof.contains(',') {
            return Err(bad("more than one DPoP proof".into()));
        }
        let max_age_secs = i64::try_from(self.cfg.dpop_max_age.as_secs()).unwrap_or(i64::MAX);
        let expect = DpopExpectation {
            htm: req.method,
            htu: req.url,
            now,
            max_age_secs,
            future_leeway_secs: DEFAULT_DPOP_FUTURE_LEEWAY_SECS,
            // `ath` is checked against `token_sha256`, the hash the token cache is keyed by:
            // the same SHA-256 of the token's ASCII (RFC 9449 §4.2), computed once.
            access_token: None,
            nonce: None,
        };
        // (2)–(11), and the `ath` half of (12).
        let verified =
            verify_dpop_proof_for_token_hash(proof, &expect, &self.limits, token_sha256, |jwk| {
                self.proof_key(jwk)
            })
            .map_err(|e| bad(e.to_string()))?;
        // (12) "confirm that the public key to which the access token is bound matches the
        // public key from the DPoP proof".
        verified
            .check_binding(&claims.cnf.jkt)
            .map_err(|e| bad(e.to_string()))?;
        // §11.1: the `jti` is remembered for as long as the proof would be accepted.
        let keep_ms = max_age_secs
            .saturating_add(DEFAULT_DPOP_FUTURE_LEEWAY_SECS)
            .saturating_add(1)
            .saturating_mul(1000);
        let recorded = lock(&self.replay).record(
            verified.jkt(),
            verified.jti(),
            now_ms,
            now_ms.saturating_add(keep_ms),
        );
        match recorded {
            Ok(()) => Ok(()),
            Err(ReplayError::Replayed) => Err(bad("the DPoP proof was already used".into())),
            Err(ReplayError::Full) => Err(bad(
                "too many DPoP proofs within the replay window; retry later".into(),
            )),
        }
    }

    /// The key of a DPoP proof's `jwk` header, validated by `PublicJwk::from_json` the first
    /// time it is seen (RFC 9449 §4.3 check 7 and the key profile); later proofs with the
    /// identical `jwk` object reuse it: clients keep one DPoP key per task.
    fn proof_key(&self, jwk: &Value) -> Result<Arc<PublicJwk>, JwkError> {
        let x = jwk.get("x").and_then(Value::as_str);
        if let Some(x) = x
            && let Some((seen, key)) = lock(&self.proof_keys).get(x)
            && seen == jwk
        {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(PublicJwk::from_json(jwk)?);
        if let Some(x) = x {
            lock(&self.proof_keys).insert(x.to_owned(), (jwk.clone(), Arc::clone(&key)));
        }
        Ok(key)
    }

    /// Revocation per DESIGN §5/§7: the event stream names revoked tokens, delegations, agents,
    /// humans and tenants; the token's status list entry covers cascades. If neither is
    /// fresher than `max_staleness`, the token is refused (fail closed).
    async fn check_revocation(
        &self,
        claims: &AccessTokenClaims,
        facts: &TokenFacts,
        now_ms: i64,
    ) -> Result<(), Denial> {
        let max_stale = self.max_staleness_ms();
        let refs = TokenRefs {
            jti: &claims.jti,
            delegation: &claims.del,
            actors: &facts.actors,
            human: &claims.sub,
            tenant: &claims.tnt,
        };
        let (events_fresh, generation) = {
            let events = read(&self.events);
            if let Some(reason) = events.revoked(&refs) {
                return Err(Denial::new(DenyCode::Revoked, reason));
            }
            (
                self.offline() || events.fresh(now_ms, max_stale),
                events.generation,
            )
        };
        let Some((uri, idx)) = &facts.status else {
            // No status list entry: the event stream alone must vouch for the token.
            return if events_fresh { Ok(()) } else { Err(stale()) };
        };
        let cached = lock(&self.lists).lists.get(uri).and_then(|l| {
            l.usable(now_ms, generation, max_stale, events_fresh)
                .then(|| l.list.get(*idx))
        });
        let status = match cached {
            Some(status) => status,
            // Offline: no list to fetch; revocation data is considered fresh.
            None if self.offline() => return Ok(()),
            None => match self.fetch_status_list(uri).await {
                Ok(list) => list.get(*idx),
                Err(e) => {
                    tracing::warn!(error = %e, "status list unavailable");
                    return Err(stale());
                }
            },
        };
        match status {
            Ok(s) => match status_denial(s) {
                None => Ok(()),
                Some(reason) => Err(Denial::new(DenyCode::Revoked, reason)),
            },
            // An index outside the list: nothing vouches for the token.
            Err(_) => Err(Denial::new(
                DenyCode::Revoked,
                "the token's status list entry does not exist",
            )),
        }
    }

    /// Fetches (or waits for a concurrent fetch of) the status list at `uri` and caches it.
    pub(crate) async fn fetch_status_list(
        &self,
        uri: &str,
    ) -> Result<mandate_core::status_list::StatusList, String> {
        let Some(http) = &self.http else {
            return Err("offline".into());
        };
        // Only the authority's own lists are fetched, whatever a token says.
        if !uri.starts_with(&self.endpoints.status_prefix) {
            return Err("the status list is not the authority's".into());
        }
        let _one = self.list_fetch.lock().await;
        let max_stale = self.max_staleness_ms();
        let (events_fresh, generation) = {
            let events = read(&self.events);
            (
                events.fresh(self.clock.now_ms(), max_stale),
                events.generation,
            )
        };
        // Someone else may have fetched it while this task waited.
        if let Some(l) = lock(&self.lists).lists.get(&uri.to_owned())
            && l.generation == generation
            && l.usable(self.clock.now_ms(), generation, max_stale, events_fresh)
            && self.clock.now_ms().saturating_sub(l.fetched_at) < l.ttl_ms / 2
        {
            return Ok(l.list.clone());
        }
        let jwt = net::get_text(http, uri).await?;
        let now_ms = self.clock.now_ms();
        let kid = Unverified::parse(jwt.trim(), &self.limits)
            .map_err(|e| e.to_string())?
            .kid()
            .map(str::to_owned)
            .ok_or("the status list has no `kid`")?;
        let key = self.key_for(&kid, now_ms).await;
        let (list, ttl) =
            parse_status_list_token(&jwt, uri, now_ms.div_euclid(1000), |_| key.clone())?;
        let ttl_ms = ttl
            .map_or(max_stale, |t| t.saturating_mul(1000))
            .clamp(TTL_BOUNDS_MS.0, TTL_BOUNDS_MS.1);
        lock(&self.lists).lists.insert(
            uri.to_owned(),
            CachedList {
                list: list.clone(),
                fetched_at: now_ms,
                ttl_ms,
                generation,
            },
        );
        Ok(list)
    }

    // ---- authorization --------------------------------------------------------------------

    pub(crate) async fn authorize(&self, caller: &Caller, op: &Operation) -> Decision {
        match self.decide(caller, op).await {
            Ok(d) => d,
            Err(denial) => Decision::Deny(denial),
        }
    }

    async fn decide(&self, caller: &Caller, op: &Operation) -> Result<Decision, Denial> {
        let scope_denial = |reason: String| Denial::new(DenyCode::InsufficientScope, reason);
        let action = Action::new(&op.action)
            .map_err(|e| scope_denial(format!("the operation's action is invalid: {e}")))?;
        let resource = ResourcePath::parse(&op.resource)
            .map_err(|e| scope_denial(format!("the operation's resource is invalid: {e}")))?;
        let request = AccessRequest {
            action,
            location: self.location.clone(),
            resource,
        };
        let scope = &caller.facts.scope;
        // Scope and prohibitions (DESIGN §3: prohibitions win over any grant).
        match evaluate(scope, &caller.facts.prohibitions, &request) {
            ScopeDecision::Allow { .. } => {}
            ScopeDecision::Deny {
                reason: DenyReason::Prohibited { .. },
            } => {
                return Err(Denial::new(
                    DenyCode::Prohibited,
                    format!(
                        "`{}` on `{}` is prohibited by the delegation chain",
                        op.action, request.resource
                    ),
                ));
            }
            ScopeDecision::Deny {
                reason: DenyReason::NotGranted,
            } => {
                return Err(scope_denial(format!(
                    "the token does not grant `{}` on `{}`",
                    op.action, request.resource
                )));
            }
        }
        // Constraints: the request is allowed if the constraints of any one granting detail
        // are met (`Scope::granting`); the first detail's denial is reported otherwise.
        let mut first: Option<Denial> = None;
        for index in scope.granting(&request) {
            let Some(detail) = scope.detail(index) else {
                continue;
            };
            let constraints = detail.constraints();
            match self.check_constraints(caller, index, constraints, op).await {
                Ok(()) => {
                    let approval_required = constraints
                        .approval_required_for()
                        .any(|a| *a == request.action);
                    return Ok(Decision::Allow {
                        detail: index,
                        approval_required,
                    });
                }
                Err(d) => {
                    first.get_or_insert(d);
                }
            }
        }
        Err(first.unwrap_or_else(|| scope_denial("no authorization detail grants it".into())))
    }

    /// `max_amount`, `time_window`, `rate`, `min_trust`, in that order.
    async fn check_constraints(
        &self,
        caller: &Caller,
        index: usize,
        c: &Constraints,
        op: &Operation,
    ) -> Result<(), Denial> {
        let now_ms = self.clock.now_ms();
        if let Some(limit) = c.max_amount() {
            check_max_amount(limit, &op.inputs)?;
        }
        if let Some(window) = c.time_window() {
            check_time_window(window, now_ms)?;
        }
        if let Some(rate) = c.rate() {
            lock(&self.rates).take((caller.agent(), caller.delegation(), index), rate, now_ms)?;
        }
        if let Some(min) = c.min_trust() {
            match self.trust_score(caller, now_ms).await? {
                Some(score) if score >= min.get() => {}
                Some(score) => {
                    return Err(Denial::new(
                        DenyCode::MinTrust,
                        format!(
                            "the agent's trust score {score} is below the required {}",
                            min.get()
                        ),
                    ));
                }
                None => {
                    return Err(Denial::new(
                        DenyCode::MinTrust,
                        "the agent's trust score is unavailable",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The agent's trust score from the registry, by RFC 7662 introspection of the caller's
    /// token as the gate, reused for [`TRUST_TTL_MS`]. An inactive token is revoked.
    async fn trust_score(&self, caller: &Caller, now_ms: i64) -> Result<Option<u8>, Denial> {
        let agent = caller.agent().to_owned();
        if let Some(t) = lock(&self.trust).get(&agent)
            && now_ms.saturating_sub(t.at) < TRUST_TTL_MS
            && t.at <= now_ms
        {
            return Ok(t.score);
        }
        let (Some(http), Some(endpoint)) = (&self.http, &self.endpoints.introspection) else {
            return Ok(None);
        };
        let assertion = match net::client_assertion(
            &self.cfg.gate_id,
            &self.cfg.gate_key,
            &self.cfg.issuer,
            now_ms.div_euclid(1000),
        ) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign a client assertion");
                return Ok(None);
            }
        };
        let response = match net::introspect(http, endpoint, &caller.facts.token, &assertion).await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "introspection failed");
                return Ok(None);
            }
        };
        // RFC 7662 §2.2: "active: REQUIRED. Boolean indicator of whether or not the presented
        // token is currently active."
        if response.get("active") != Some(&Value::Bool(true)) {
            return Err(Denial::new(
                DenyCode::Revoked,
                "the authority reports the token inactive",
            ));
        }
        let score = response
            .get("trust")
            .and_then(Value::as_u64)
            .and_then(|t| u8::try_from(t).ok())
            .filter(|t| *t <= 100);
        lock(&self.trust).insert(agent, TrustEntry { score, at: now_ms });
        Ok(score)
    }
}

fn invalid_token(reason: impl Into<String>) -> Denial {
    Denial::new(DenyCode::InvalidToken, reason)
}

fn stale() -> Denial {
    Denial::new(
        DenyCode::RevocationStale,
        "revocation data is older than the maximum staleness; retry later",
    )
}

/// RFC 9449 §7.1: "Authorization: DPoP <token>". The scheme is case-insensitive (RFC 9110
/// §11.1). Every Mandate access token is DPoP-bound (`cnf.jkt`), so the `Bearer` scheme is
/// refused: "a DPoP-bound access token [...] MUST NOT be accepted as a bearer token".
fn dpop_token(authorization: Option<&str>) -> Result<&str, Denial> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid_token("no access token"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| invalid_token("the Authorization header is not `DPoP <token>`"))?;
    let token = token.trim_start_matches(' ');
    if scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid_token(
            "a DPoP-bound access token must be sent with the DPoP scheme, not Bearer",
        ));
    }
    if !scheme.eq_ignore_ascii_case("dpop") {
        return Err(invalid_token("the Authorization scheme must be DPoP"));
    }
    // RFC 7235 §2.1 token68 (the compact JWS alphabet is a subset).
    if token.is_empty() || !token.bytes().all(|b| TOKEN68[usize::from(b)]) {
        return Err(invalid_token("the access token is malformed"));
    }
    Ok(token)
}

/// RFC 7235 §2.1: `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`,
/// as a table of the allowed bytes (the position of `=` is not checked: no JWS contains one).
const TOKEN68: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    t
};

/// What the verifier needs from a token beyond its claims, parsed once.
fn token_facts(claims: &AccessTokenClaims, token: &str, kid: String) -> Result<TokenFacts, Denial> {
    // The authority wrote `authorization_details` from a parsed scope; the structural
    // deserializer reads it back with every invariant checked, whatever the action vocabulary.
    let scope = Scope::deserialize(&claims.authorization_details)
        .map_err(|_| invalid_token("the token's `authorization_details` are invalid"))?;
    let prohibitions = match &claims.prohibitions {
        None => Prohibitions::none(),
        Some(v) => Prohibitions::deserialize(v)
            .map_err(|_| invalid_token("the token's `prohibitions` are invalid"))?,
    };
    let mut actors = Vec::new();
    let mut level = Some(&claims.act);
    while let Some(act) = level {
        if let Some(sub) = act.get("sub").and_then(Value::as_str) {
            // `spiffe://<trust domain>/agent/<agent id>` names the agent.
            let id = sub.rsplit_once("/agent/").map_or(sub, |(_, id)| id);
            actors.push(id.to_owned());
        }
        level = act.get("act");
    }
    let status = claims.status.as_ref().and_then(|s| {
        let list = s.get("status_list")?;
        Some((
            list.get("uri")?.as_str()?.to_owned(),
            list.get("idx")?.as_u64()?,
        ))
    });
    Ok(TokenFacts {
        scope,
        prohibitions,
        actors,
        status,
        token: token.into(),
        kid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_must_use_the_dpop_scheme() {
        assert_eq!(dpop_token(Some("DPoP abc.def.ghi")).unwrap(), "abc.def.ghi");
        assert_eq!(
            dpop_token(Some("dpop   abc.def.ghi")).unwrap(),
            "abc.def.ghi"
        );
        for bad in [
            None,
            Some(""),
            Some("DPoP"),
            Some("DPoP "),
            Some("Bearer abc.def.ghi"),
            Some("Basic abc"),
            Some("DPoP abc def"),
            Some("DPoP abc\"def"),
        ] {
            let d = dpop_token(bad).unwrap_err();
            assert_eq!(d.code, DenyCode::InvalidToken, "{bad:?}");
        }
    }
}
