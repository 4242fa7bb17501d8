//! JSON views of domain objects for the admin API (times as RFC 3339 UTC with milliseconds).

use mandate_core::jwk::PublicJwk;
use mandate_store::{
    Agent, AgentStatus, Delegation, Delegator, Gate, Human, KeyRecord, KeyStatus, Tenant,
};
use serde_json::{Value, json};

use crate::state::AppState;

/// `2026-11-23T10:00:00.123Z` for unix ms `ms`.
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            millis
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".into(),
    }
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| json!(time(m)))
}

/// A tenant.
pub fn tenant(t: &Tenant) -> Value {
    json!({"id": t.id, "name": t.name, "created_at": time(t.created_at)})
}

/// A human.
pub fn human(h: &Human) -> Value {
    json!({
        "id": h.id, "tenant": h.tenant, "name": h.name, "email": h.email,
        "role": h.role, "status": h.status, "created_at": time(h.created_at),
    })
}

/// A key.
pub fn key(k: &KeyRecord) -> Value {
    json!({
        "kid": k.kid, "jwk": k.jwk.to_json(), "status": k.status,
        "created_at": time(k.created_at), "retired_at": opt_time(k.retired_at),
        "not_after": opt_time(k.not_after),
    })
}

/// An agent, with its trust score and the score's inputs.
pub fn agent(state: &AppState, a: &Agent, trust: &crate::trust::Trust) -> Value {
    let newest_active: Option<&PublicJwk> = a
        .keys
        .iter()
        .rev()
        .find(|k| k.status == KeyStatus::Active)
        .map(|k| &k.jwk);
    json!({
        "id": a.id,
        "tenant": a.tenant,
        "spiffe_id": state.trust_domain.agent_spiffe_id(&a.id),
        "did": newest_active.map(PublicJwk::did_key),
        "commitment": a.commitment,
        "owner": a.owner,
        "name": a.name,
        "purpose": a.purpose,
        "ceiling": a.ceiling,
        "status": a.status,
        "trust": trust.to_json(),
        "keys": a.keys.iter().map(key).collect::<Vec<_>>(),
        "created_at": time(a.created_at),
        "last_seen_at": opt_time(a.last_seen_at),
    })
}

/// A gate.
pub fn gate(g: &Gate) -> Value {
    json!({
        "id": g.id, "tenant": g.tenant, "name": g.name, "audience": g.audience,
        "keys": g.keys.iter().map(key).collect::<Vec<_>>(),
        "created_at": time(g.created_at),
    })
}

/// `active`, `suspended` or `revoked`.
pub fn status_word(s: AgentStatus) -> &'static str {
    match s {
        AgentStatus::Active => "active",
        AgentStatus::Suspended => "suspended",
        AgentStatus::Revoked => "revoked",
    }
}

/// A delegation (mandate or sub-delegation).
pub fn delegation(d: &Delegation) -> Value {
    let (kind, delegator) = match &d.delegator {
        Delegator::Human(h) => ("human", h.to_string()),
        Delegator::Agent(a) => ("agent", a.to_string()),
    };
    json!({
        "id": d.id, "tenant": d.tenant, "parent": d.parent, "root": d.root,
        "delegator": {"type": kind, "id": delegator},
        "delegate": d.delegate,
        "authorization_details": d.scope, "prohibitions": d.prohibitions,
        "purpose": d.purpose, "task_id": d.task,
        "depth": d.depth, "max_depth": d.max_depth,
        "expires_at": time(d.expires_at), "created_at": time(d.created_at),
        "status": d.status, "revoked_at": opt_time(d.revoked_at),
        "digest": d.digest,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_times() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::time(1_763_892_000_123), "2025-11-23T10:00:00.123Z");
    }
}
