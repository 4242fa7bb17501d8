//! Agent trust scores (DESIGN §8): a small, explainable number from 0 to 100, computed on
//! demand from what the registry and the ledger already hold, shown with its inputs.
//!
//! ```text
//! score = 0                                        if the agent is not active
//!       = clamp(50 + min(age_days, 50)             established agents earn up to +50
//!                  − 5 × min(denials_24h, 20)      refusals attributed to it in the last 24 h
//!                  − 10 if key_age_days > 90       its newest usable key is stale
//!                  − 10 if idle_days > 30,         unused for a month
//!               0, 100)
//! ```
//!
//! `denials_24h` counts receipts with `decision: deny` whose `actor.agent` is the agent: refused
//! token requests (`token.refused`) and gate denials (`gate.decision`). Gate denials that only
//! wait for a human's approval (first reason starting with `approval_`) do not count. A new
//! agent scores 50.

use mandate_store::{Agent, AgentStatus, DenialCount, StoreError};
use serde_json::{Value, json};

use crate::state::AppState;

const DAY_MS: i64 = 86_400_000;

/// A score and what it was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// 0..=100.
    pub score: u8,
    /// `active`, `suspended` or `revoked`.
    pub status: AgentStatus,
    /// Whole days since the agent was registered.
    pub age_days: i64,
    /// Refusals attributed to the agent in the last 24 hours.
    pub denials_24h: u64,
    /// The same, by receipt kind.
    pub denials_by_kind: Vec<(String, u64)>,
    /// Whole days since its newest usable key was added (none: no usable key).
    pub key_age_days: Option<i64>,
    /// Whole days since it last authenticated (or since registration, if never).
    pub idle_days: i64,
}

impl Trust {
    /// Computes the score of `agent` at `now` from its refusal counts of the last 24 hours.
    pub fn compute(agent: &Agent, denials: &[DenialCount], now: i64) -> Self {
        let mut by_kind: Vec<(String, u64)> = Vec::new();
        for d in denials.iter().filter(|d| d.agent == agent.id) {
            if d.reason.starts_with("approval_") {
                continue;
            }
            match by_kind.iter_mut().find(|(k, _)| *k == d.kind) {
                Some((_, n)) => *n += d.count,
                None => by_kind.push((d.kind.clone(), d.count)),
            }
        }
        let denials_24h: u64 = by_kind.iter().map(|(_, n)| n).sum();
        let days = |since: i64| (now - since).max(0) / DAY_MS;
        let age_days = days(agent.created_at);
        let key_age_days = agent
            .keys
            .iter()
            .filter(|k| k.usable(now))
            .map(|k| days(k.created_at))
            .min();
        let idle_days = days(agent.last_seen_at.unwrap_or(agent.created_at));
        let score = if agent.status == AgentStatus::Active {
            let mut s = 50 + age_days.min(50);
            s -= 5 * i64::try_from(denials_24h.min(20)).unwrap_or(20);
            if key_age_days.is_some_and(|d| d > 90) {
                s -= 10;
            }
            if idle_days > 30 {
                s -= 10;
            }
            u8::try_from(s.clamp(0, 100)).unwrap_or(0)
        } else {
            0
        };
        Self {
            score,
            status: agent.status,
            age_days,
            denials_24h,
            denials_by_kind: by_kind,
            key_age_days,
            idle_days,
        }
    }

    /// `{"score": n, "inputs": {...}}`.
    pub fn to_json(&self) -> Value {
        let by_kind: serde_json::Map<String, Value> = self
            .denials_by_kind
            .iter()
            .map(|(k, n)| (k.clone(), json!(n)))
            .collect();
        json!({
            "score": self.score,
            "inputs": {
                "status": self.status,
                "age_days": self.age_days,
                "denials_24h": self.denials_24h,
                "denials_by_kind": by_kind,
                "key_age_days": self.key_age_days,
                "idle_days": self.idle_days,
            },
        })
    }
}

/// The trust of one agent now.
pub async fn of(state: &AppState, agent: &Agent) -> Result<Trust, StoreError> {
    Ok(of_many(state, std::slice::from_ref(agent))
        .await?
        .pop()
        .unwrap_or_else(|| Trust::compute(agent, &[], state.now())))
}

/// The trust of each of `agents` (all of one tenant) now, in the same order.
pub async fn of_many(state: &AppState, agents: &[Agent]) -> Result<Vec<Trust>, StoreError> {
    let Some(first) = agents.first() else {
        return Ok(vec![]);
    };
    let now = state.now();
    let ids: Vec<_> = agents.iter().map(|a| a.id.clone()).collect();
    let denials = state
        .store
        .agent_denials(&first.tenant, &ids, now - DAY_MS)
        .await?;
    Ok(agents
        .iter()
        .map(|a| Trust::compute(a, &denials, now))
        .collect())
}

#[cfg(test)]
mod tests {
    use mandate_core::id::{AgentId, HumanId, TenantId};
    use mandate_store::KeyRecord;

    use super::*;

    fn agent(created_at: i64) -> Agent {
        let (public, _) = mandate_core::jwk::private_jwk_from_seed(&[3; 32]);
        Agent {
            id: AgentId::from_parts(created_at, [1; 10]),
            tenant: TenantId::from_parts(created_at, [2; 10]),
            owner: HumanId::from_parts(created_at, [3; 10]),
            name: "a".into(),
            purpose: "p".into(),
            ceiling: json!([]),
            commitment: String::new(),
            status: AgentStatus::Active,
            trust: 50,
            keys: vec![KeyRecord::new(public, created_at)],
            created_at,
            last_seen_at: None,
        }
    }

    fn denials(a: &Agent, kind: &str, reason: &str, count: u64) -> DenialCount {
        DenialCount {
            agent: a.id.clone(),
            kind: kind.into(),
            reason: reason.into(),
            count,
        }
    }

    #[test]
    fn the_formula_as_documented() {
        let t0 = 1_700_000_000_000;
        let a = agent(t0);
        assert_eq!(Trust::compute(&a, &[], t0).score, 50);
        // Age: +1 a day, up to +50; past 30 idle days −10; past 90 days of key age −10.
        assert_eq!(Trust::compute(&a, &[], t0 + 10 * DAY_MS).score, 60);
        let mut seen = a.clone();
        seen.last_seen_at = Some(t0 + 99 * DAY_MS);
        assert_eq!(Trust::compute(&seen, &[], t0 + 100 * DAY_MS).score, 90);
        assert_eq!(Trust::compute(&a, &[], t0 + 100 * DAY_MS).score, 80);
        // Refusals: −5 each; approval waits do not count; other agents' do not count.
        let other = agent(t0 + 1);
        let d = [
            denials(&a, "token.refused", "invalid_scope", 2),
            denials(&a, "gate.decision", "insufficient_scope", 1),
            denials(&a, "gate.decision", "approval_required", 7),
            denials(&other, "token.refused", "invalid_grant", 9),
        ];
        let t = Trust::compute(&a, &d, t0);
        assert_eq!(t.score, 35);
        assert_eq!(t.denials_24h, 3);
        assert_eq!(
            t.to_json()["inputs"]["denials_by_kind"],
            json!({"token.refused": 2, "gate.decision": 1})
        );
        assert_eq!(
            Trust::compute(&a, &[denials(&a, "token.refused", "x", 500)], t0).score,
            0
        );
        let mut suspended = a.clone();
        suspended.status = AgentStatus::Suspended;
        assert_eq!(Trust::compute(&suspended, &[], t0 + 40 * DAY_MS).score, 0);
    }
}
