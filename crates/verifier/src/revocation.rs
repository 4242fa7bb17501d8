//! Revocation state: what the `/v1/events` stream said (DESIGN §5) and the Token Status Lists
//! (draft-ietf-oauth-status-list-17) fetched from the authority.
//!
//! The event stream names the object revoked: a token (`jti`), a delegation, an agent, a
//! human, a tenant. A token carries its own `jti`, its delegation (`del`), every agent of its
//! chain (`act`), its human (`sub`) and its tenant (`tnt`), so those revocations are matched
//! directly. A revocation further up the chain (a parent delegation) or one that cascades
//! through the registry (a human's agents suspended, a key retired) cannot be matched from the
//! token alone: every such event marks the cached status lists *dirty*, and a dirty list is
//! fetched again before it is used. The authority computes status lists at request time, so
//! the refetched list shows the cascade.

use mandate_core::jose::{JoseError, JoseLimits, JwtKind, Unverified};
use mandate_core::jwk::PublicJwk;
use mandate_core::status_list::{INVALID, SUSPENDED, StatusList, VALID};
use serde_json::Value;

use crate::cache::{Fifo, IdSet};

/// How many revoked ids of each kind are remembered.
const MAX_REVOKED_IDS: usize = 1 << 20;
/// How long a revoked id is remembered. Tokens live minutes and never outlive their
/// delegation; a day is far past any token issued before the event.
pub(crate) const REVOKED_ID_RETENTION_MS: i64 = 24 * 3600 * 1000;
/// The most status lists cached.
const MAX_STATUS_LISTS: usize = 4096;

/// What the event stream has said, and how recently it was heard.
#[derive(Debug)]
pub(crate) struct EventState {
    pub(crate) jtis: IdSet,
    pub(crate) delegations: IdSet,
    pub(crate) revoked_agents: IdSet,
    pub(crate) suspended_agents: IdSet,
    pub(crate) humans: IdSet,
    pub(crate) tenants: IdSet,
    /// Bumped by every event that may cascade and by every (re)connection: status lists
    /// fetched before the current generation are dirty.
    pub(crate) generation: u64,
    /// Whether the stream is connected.
    pub(crate) connected: bool,
    /// When the stream last delivered anything (an event or a keep-alive), unix ms.
    pub(crate) last_heard: Option<i64>,
    /// The last event id, for `Last-Event-ID`.
    pub(crate) last_event_id: Option<u64>,
    /// The HTTP status of the last refused connection attempt, if the last attempt was refused.
    pub(crate) refused: Option<u16>,
}

impl Default for EventState {
    fn default() -> Self {
        Self {
            jtis: IdSet::new(MAX_REVOKED_IDS),
            delegations: IdSet::new(MAX_REVOKED_IDS),
            revoked_agents: IdSet::new(MAX_REVOKED_IDS),
            suspended_agents: IdSet::new(MAX_REVOKED_IDS),
            humans: IdSet::new(MAX_REVOKED_IDS),
            tenants: IdSet::new(MAX_REVOKED_IDS),
            generation: 0,
            connected: false,
            last_heard: None,
            last_event_id: None,
            refused: None,
        }
    }
}

/// What a token is matched against: the parts of it that revocation events can name.
pub(crate) struct TokenRefs<'a> {
    pub(crate) jti: &'a str,
    pub(crate) delegation: &'a str,
    pub(crate) actors: &'a [String],
    pub(crate) human: &'a str,
    pub(crate) tenant: &'a str,
}

impl EventState {
    /// Applies one event of the stream (`event:` name and `data:` receipt).
    pub(crate) fn apply(&mut self, kind: &str, data: &Value, now_ms: i64) {
        let resource_id = |prefix: &str| {
            data.get("resource")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(prefix))
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .map(str::to_owned)
        };
        match kind {
            "token.revoked" => {
                if let Some(jti) = data.get("token").and_then(Value::as_str) {
                    self.jtis.insert(jti, now_ms);
                }
                // Token revocations do not cascade; the direct match is enough.
                return;
            }
            "delegation.revoked" => {
                if let Some(d) = data.get("delegation").and_then(Value::as_str) {
                    self.delegations.insert(d, now_ms);
                }
            }
            "agent.suspended" => {
                if let Some(a) = resource_id("agents/") {
                    self.suspended_agents.insert(&a, now_ms);
                }
            }
            "agent.resumed" => {
                if let Some(a) = resource_id("agents/") {
                    self.suspended_agents.remove(&a);
                }
            }
            "agent.revoked" => {
                if let Some(a) = resource_id("agents/") {
                    self.revoked_agents.insert(&a, now_ms);
                }
            }
            "human.revoked" => {
                if let Some(h) = resource_id("humans/") {
                    self.humans.insert(&h, now_ms);
                }
            }
            "tenant.revoked" => {
                if let Some(t) = resource_id("tenants/") {
                    self.tenants.insert(&t, now_ms);
                }
            }
            // `agent.key_retired` and anything unknown: only the status lists can tell.
            _ => {}
        }
        self.generation = self.generation.wrapping_add(1);
    }

    /// The reason `token` is revoked according to the events, if it is.
    pub(crate) fn revoked(&self, t: &TokenRefs<'_>) -> Option<&'static str> {
        if self.jtis.contains(t.jti) {
            return Some("the token was revoked");
        }
        if self.delegations.contains(t.delegation) {
            return Some("the token's delegation was revoked");
        }
        for agent in t.actors {
            if self.revoked_agents.contains(agent) {
                return Some("an agent of the token's chain was revoked");
            }
            if self.suspended_agents.contains(agent) {
                return Some("an agent of the token's chain is suspended");
            }
        }
        if self.humans.contains(t.human) {
            return Some("the token's human was revoked");
        }
        if self.tenants.contains(t.tenant) {
            return Some("the token's tenant was revoked");
        }
        None
    }

    /// Whether the stream vouches for the present: connected and heard from within
    /// `max_staleness_ms`.
    pub(crate) fn fresh(&self, now_ms: i64, max_staleness_ms: i64) -> bool {
        self.connected
            && self
                .last_heard
                .is_some_and(|at| now_ms.saturating_sub(at) <= max_staleness_ms)
    }

    /// Forgets revoked ids older than the retention.
    pub(crate) fn purge(&mut self, now_ms: i64) {
        let before = now_ms.saturating_sub(REVOKED_ID_RETENTION_MS);
        for set in [
            &mut self.jtis,
            &mut self.delegations,
            &mut self.revoked_agents,
            &mut self.humans,
            &mut self.tenants,
        ] {
            set.purge_older_than(before);
        }
    }
}

/// One fetched status list.
#[derive(Debug, Clone)]
pub(crate) struct CachedList {
    pub(crate) list: StatusList,
    pub(crate) fetched_at: i64,
    /// How long the list may be cached (its `ttl`), ms.
    pub(crate) ttl_ms: i64,
    /// [`EventState::generation`] when the fetch started.
    pub(crate) generation: u64,
}

impl CachedList {
    /// Whether the list may be used without consulting the authority again at `now_ms`:
    /// fetched after the last cascading event, and either within its `ttl` and the maximum
    /// staleness, or vouched for by a fresh event stream.
    pub(crate) fn usable(
        &self,
        now_ms: i64,
        generation: u64,
        max_staleness_ms: i64,
        events_fresh: bool,
    ) -> bool {
        let age = now_ms.saturating_sub(self.fetched_at);
        self.generation == generation
            && (events_fresh || (age <= self.ttl_ms && age <= max_staleness_ms))
    }

    /// Whether a background refresh is due: dirty, or past half its `ttl`.
    pub(crate) fn refresh_due(&self, now_ms: i64, generation: u64) -> bool {
        self.generation != generation || now_ms.saturating_sub(self.fetched_at) >= self.ttl_ms / 2
    }
}

/// Cached status lists by URI.
#[derive(Debug)]
pub(crate) struct StatusLists {
    pub(crate) lists: Fifo<String, CachedList>,
}

impl Default for StatusLists {
    fn default() -> Self {
        Self {
            lists: Fifo::new(MAX_STATUS_LISTS),
        }
    }
}

/// What the status of a token means for a request (draft-ietf-oauth-status-list-17 §7.1).
pub(crate) fn status_denial(status: u8) -> Option<&'static str> {
    match status {
        VALID => None,
        INVALID => Some("the token is revoked (status list)"),
        SUSPENDED => Some("the token is suspended (status list)"),
        // 0x03 and application-specific values: not known to be valid, so refused.
        _ => Some("the token's status is not valid (status list)"),
    }
}

/// Reads a Status List Token (draft-ietf-oauth-status-list-17 §5): `typ: statuslist+jwt`,
/// signed by one of the authority's keys, `sub` equal to the URI it was fetched from, not
/// expired, with `status_list.bits` and `status_list.lst`. Returns the list and its `ttl` in
/// seconds, if it has one.
pub(crate) fn parse_status_list_token(
    jwt: &str,
    uri: &str,
    now_secs: i64,
    key_for: impl FnOnce(&str) -> Option<std::sync::Arc<PublicJwk>>,
) -> Result<(StatusList, Option<i64>), String> {
    let unverified =
        Unverified::parse(jwt.trim(), &JoseLimits::default()).map_err(|e| e.to_string())?;
    let kid = unverified
        .kid()
        .ok_or_else(|| "the status list has no `kid`".to_owned())?
        .to_owned();
    let key = key_for(&kid).ok_or_else(|| "the status list's key is unknown".to_owned())?;
    let verified = unverified
        .verify(JwtKind::StatusList, &key)
        .map_err(|e: JoseError| e.to_string())?;
    let claims = verified.claims();
    // §5.1: "The sub (subject) claim MUST specify the URI of the Status List Token. The value
    // MUST be equal to that of the uri claim contained in the status_list claim of the
    // Referenced Token."
    if claims.get("sub").and_then(Value::as_str) != Some(uri) {
        return Err("the status list's `sub` is not its URI".into());
    }
    // §5.1: "exp: OPTIONAL. … the Status List Token is considered expired".
    if let Some(exp) = claims.get("exp") {
        let exp = exp.as_i64().ok_or("invalid `exp`")?;
        if exp <= now_secs {
            return Err("the status list has expired".into());
        }
    }
    // §5.1: "ttl: OPTIONAL. … the maximum amount of time, in seconds, that the Status List
    // Token can be cached by a consumer before a fresh copy SHOULD be retrieved."
    let ttl = match claims.get("ttl") {
        None => None,
        Some(v) => Some(v.as_i64().filter(|t| *t >= 0).ok_or("invalid `ttl`")?),
    };
    let sl = claims.get("status_list").ok_or("no `status_list`")?;
    let bits = sl
        .get("bits")
        .and_then(Value::as_u64)
        .and_then(|b| u8::try_from(b).ok())
        .ok_or("invalid `bits`")?;
    let lst = sl
        .get("lst")
        .and_then(Value::as_str)
        .ok_or("invalid `lst`")?;
    let list = StatusList::decode(bits, lst).map_err(|e| e.to_string())?;
    Ok((list, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs<'a>(actors: &'a [String]) -> TokenRefs<'a> {
        TokenRefs {
            jti: "j1",
            delegation: "dlg_1",
            actors,
            human: "usr_1",
            tenant: "tnt_1",
        }
    }

    #[test]
    fn events_match_each_part_of_a_token() {
        let actors = vec!["agt_b".to_owned(), "agt_a".to_owned()];
        let cases = [
            ("token.revoked", json!({"token": "j1"}), false),
            ("delegation.revoked", json!({"delegation": "dlg_1"}), true),
            ("agent.suspended", json!({"resource": "agents/agt_a"}), true),
            ("agent.revoked", json!({"resource": "agents/agt_b"}), true),
            ("human.revoked", json!({"resource": "humans/usr_1"}), true),
            ("tenant.revoked", json!({"resource": "tenants/tnt_1"}), true),
        ];
        for (kind, data, cascades) in cases {
            let mut s = EventState::default();
            assert!(s.revoked(&refs(&actors)).is_none());
            s.apply(kind, &data, 1);
            assert!(s.revoked(&refs(&actors)).is_some(), "{kind}");
            assert_eq!(s.generation != 0, cascades, "{kind}");
        }
        // Someone else's revocations do not match.
        let mut s = EventState::default();
        s.apply("token.revoked", &json!({"token": "j2"}), 1);
        s.apply("agent.suspended", &json!({"resource": "agents/agt_c"}), 1);
        s.apply(
            "agent.key_retired",
            &json!({"resource": "agents/agt_a/keys/k"}),
            1,
        );
        assert!(s.revoked(&refs(&actors)).is_none());
        assert_eq!(s.generation, 2);
        // Resumption lifts a suspension.
        s.apply("agent.suspended", &json!({"resource": "agents/agt_a"}), 1);
        assert!(s.revoked(&refs(&actors)).is_some());
        s.apply("agent.resumed", &json!({"resource": "agents/agt_a"}), 1);
        assert!(s.revoked(&refs(&actors)).is_none());
    }

    #[test]
    fn freshness_needs_a_connection_heard_from_recently() {
        let mut s = EventState::default();
        assert!(!s.fresh(0, 30_000));
        s.last_heard = Some(0);
        assert!(!s.fresh(0, 30_000), "not connected");
        s.connected = true;
        assert!(s.fresh(30_000, 30_000));
        assert!(!s.fresh(30_001, 30_000));
    }

    #[test]
    fn cached_lists_are_usable_while_fresh_and_clean() {
        let l = CachedList {
            list: StatusList::new(2, 4).unwrap(),
            fetched_at: 0,
            ttl_ms: 30_000,
            generation: 3,
        };
        assert!(l.usable(30_000, 3, 30_000, false));
        assert!(!l.usable(30_001, 3, 30_000, false), "past ttl");
        assert!(l.usable(90_000, 3, 30_000, true), "events vouch for it");
        assert!(!l.usable(1, 4, 30_000, true), "dirty");
        assert!(l.refresh_due(15_000, 3) && !l.refresh_due(14_999, 3) && l.refresh_due(0, 4));
    }
}
