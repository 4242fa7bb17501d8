//! Cascade revocation: one `RevokeDelegation` over a 100 000-node delegation tree, and the
//! revocation of one agent holding 10 000 live tokens, against the same operations on a single
//! node (the baseline) — medians of several runs, each on a freshly built tree.
//!
//! Run: `cargo bench -p mandate-store --bench revocation`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark: a failure must abort the run"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mandate_core::id::{AgentId, ApiKeyId, DelegationId, HumanId, TenantId};
use mandate_core::jwk::PublicJwk;
use mandate_core::receipt::{Actor, Event, EventKind, Outcome};
use mandate_store::sqlite::{SqliteOptions, SqliteStore};
use mandate_store::{
    Agent, AgentStatus, AgentTransition, Delegation, DelegationStatus, Delegator, Human,
    HumanStatus, KeyRecord, Mutation, NewApiKey, Role, Store, SystemClock, Tenant, TokenRecord,
    TokenStatus,
};
use serde_json::json;

const RUNS: usize = 5;

fn ev() -> Event {
    Event {
        kind: EventKind::Record,
        actor: Actor::default(),
        on_behalf_of: None,
        delegation: None,
        token: None,
        action: None,
        resource: None,
        decision: Outcome::Allow,
        reasons: vec![],
        request_hash: None,
    }
}

struct Fixture {
    store: Arc<dyn Store>,
    tenant: TenantId,
    human: HumanId,
    agents: Vec<AgentId>,
    _dir: tempfile::TempDir,
}

fn rnd(i: u64) -> [u8; 10] {
    let mut r = [0u8; 10];
    r[..8].copy_from_slice(&i.to_be_bytes());
    r
}

async fn fixture(n_agents: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            SqliteOptions::new(dir.path().join("b.db")),
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    let tenant = TenantId::from_parts(1, [1; 10]);
    let human = HumanId::from_parts(1, [1; 10]);
    store
        .commit(
            Mutation::CreateTenant {
                tenant: Tenant {
                    id: tenant.clone(),
                    name: "bench".into(),
                    operator: true,
                    created_at: 1,
                },
                owner: Human {
                    id: human.clone(),
                    tenant: tenant.clone(),
                    name: "o".into(),
                    email: "o@b".into(),
                    role: Role::Owner,
                    status: HumanStatus::Active,
                    created_at: 1,
                },
                api_key: NewApiKey {
                    id: ApiKeyId::from_parts(1, [1; 10]),
                    tenant: tenant.clone(),
                    human: human.clone(),
                    hash: [1; 32],
                    created_at: 1,
                },
            },
            vec![(tenant.clone(), ev())],
        )
        .await
        .unwrap();
    let mut agents = Vec::new();
    let mut batch = Vec::new();
    for i in 0..n_agents {
        let id = AgentId::from_parts(2, rnd(i as u64));
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
        batch.push(Mutation::CreateAgent(Agent {
            id: id.clone(),
            tenant: tenant.clone(),
            owner: human.clone(),
            name: format!("a{i}"),
            purpose: "p".into(),
            ceiling: json!([]),
            commitment: "00".into(),
            status: AgentStatus::Active,
            trust: 50,
            keys: vec![KeyRecord::new(PublicJwk::from_seed(&seed), 1)],
            created_at: 1,
            last_seen_at: None,
        }));
        agents.push(id);
    }
    store
        .commit(Mutation::Batch(batch), vec![(tenant.clone(), ev())])
        .await
        .unwrap();
    Fixture {
        store,
        tenant,
        human,
        agents,
        _dir: dir,
    }
}

fn delegation(
    f: &Fixture,
    i: u64,
    parent: Option<&DelegationId>,
    root: &DelegationId,
    depth: u8,
) -> Delegation {
    let id = if parent.is_none() {
        root.clone()
    } else {
        DelegationId::from_parts(3, rnd(i))
    };
    Delegation {
        id,
        tenant: f.tenant.clone(),
        parent: parent.cloned(),
        root: root.clone(),
        delegator: match parent {
            None => Delegator::Human(f.human.clone()),
            Some(_) => Delegator::Agent(f.agents[0].clone()),
        },
        delegate: f.agents[(i as usize) % f.agents.len()].clone(),
        scope: json!([]),
        prohibitions: json!([]),
        purpose: "p".into(),
        task: None,
        depth,
        max_depth: 10,
        expires_at: i64::MAX / 2,
        created_at: 1,
        status: DelegationStatus::Active,
        revoked_at: None,
        digest: "00".into(),
        human_signature: None,
    }
}

/// A tree of `n` delegations under one mandate, fan-out 10 (depth ≤ 6 for 100 000).
async fn tree(f: &Fixture, n: u64, salt: u64) -> DelegationId {
    let root = DelegationId::from_parts(4, rnd(salt));
    let mut ids = vec![root.clone()];
    let mut depths = vec![1u8];
    let mut batch = vec![Mutation::CreateDelegation(delegation(f, 0, None, &root, 1))];
    for i in 1..n {
        let parent = ((i - 1) / 10) as usize;
        let d = delegation(
            f,
            salt * 1_000_000 + i,
            Some(&ids[parent]),
            &root,
            depths[parent] + 1,
        );
        ids.push(d.id.clone());
        depths.push(depths[parent] + 1);
        batch.push(Mutation::CreateDelegation(d));
        if batch.len() == 5_000 {
            f.store
                .commit(Mutation::Batch(std::mem::take(&mut batch)), vec![])
                .await
                .unwrap();
        }
    }
    if !batch.is_empty() {
        f.store
            .commit(Mutation::Batch(batch), vec![])
            .await
            .unwrap();
    }
    root
}

async fn time_revoke(f: &Fixture, root: &DelegationId) -> Duration {
    let t = Instant::now();
    f.store
        .commit(
            Mutation::RevokeDelegation {
                tenant: f.tenant.clone(),
                id: root.clone(),
                at: 5,
            },
            vec![(f.tenant.clone(), ev())],
        )
        .await
        .unwrap();
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let f = fixture(50).await;
        let (mut big, mut one) = (Vec::new(), Vec::new());
        for run in 0..RUNS as u64 {
            let root = tree(&f, 100_000, run + 1).await;
            big.push(time_revoke(&f, &root).await);
            let single = tree(&f, 1, 100 + run).await;
            one.push(time_revoke(&f, &single).await);
        }
        let (big, one) = (median(big), median(one));
        println!(
            "cascade revocation, 100 000-node tree   median {:>9.1} ms   (target < 1 000 ms)",
            big.as_secs_f64() * 1e3
        );
        println!(
            "baseline: one delegation               median {:>9.1} ms   ratio {:.0}x",
            one.as_secs_f64() * 1e3,
            big.as_secs_f64() / one.as_secs_f64()
        );

        // One agent with 10 000 live tokens under 100 mandates; revoking the agent revokes every
        // delegation to it and every token under them.
        let (mut heavy, mut light) = (Vec::new(), Vec::new());
        for run in 0..RUNS as u64 {
            let g = fixture(2).await;
            let target = g.agents[0].clone();
            let mut batch = Vec::new();
            for m in 0..100u64 {
                let root = DelegationId::from_parts(5, rnd(run * 1000 + m));
                let mut d = delegation(&g, 0, None, &root, 1);
                d.delegate = target.clone();
                batch.push(Mutation::CreateDelegation(d));
                for t in 0..100u64 {
                    batch.push(Mutation::TokenRequest {
                        jtis: vec![],
                        issue: Some(TokenRecord {
                            jti: format!("j{run}-{m}-{t}"),
                            tenant: g.tenant.clone(),
                            delegation: root.clone(),
                            agent: target.clone(),
                            jkt: "k".into(),
                            issued_at: 1,
                            expires_at: i64::MAX / 2,
                            status: TokenStatus::Active,
                            status_idx: Some(run * 1_000_000 + m * 100 + t),
                        }),
                        now: 2,
                        seen: None,
                    });
                }
            }
            g.store
                .commit(Mutation::Batch(batch), vec![])
                .await
                .unwrap();
            let revoke = |id: AgentId| Mutation::TransitionAgent {
                tenant: g.tenant.clone(),
                id,
                to: AgentTransition::Revoke,
                at: 5,
            };
            let t = Instant::now();
            g.store
                .commit(revoke(target), vec![(g.tenant.clone(), ev())])
                .await
                .unwrap();
            heavy.push(t.elapsed());
            let t = Instant::now();
            g.store
                .commit(revoke(g.agents[1].clone()), vec![(g.tenant.clone(), ev())])
                .await
                .unwrap();
            light.push(t.elapsed());
        }
        let (heavy, light) = (median(heavy), median(light));
        println!(
            "revoke one agent with 10 000 live tokens median {:>7.1} ms",
            heavy.as_secs_f64() * 1e3
        );
        println!(
            "baseline: agent with no tokens         median {:>9.1} ms   ratio {:.0}x",
            light.as_secs_f64() * 1e3,
            heavy.as_secs_f64() / light.as_secs_f64()
        );
    });
}
