//! The store conformance suite: written once against [`Store`], run against every engine.
//!
//! Each check takes a fresh, empty store. Engines call [`run_all`] from their tests.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a test suite: a failed check must stop the run"
)]

use std::sync::Arc;

use mandate_core::id::{AgentId, ApiKeyId, HumanId, TenantId};
use mandate_core::jwk::private_jwk_from_seed;
use mandate_core::receipt::{Actor, ChainVerifier, Event, EventKind, Outcome};

use crate::{
    Agent, AgentFilter, AgentStatus, AgentTransition, AppliedValue, Human, HumanStatus, KeyRecord,
    Mutation, NewApiKey, Page, Role, Store, StoreError, Tenant,
};

/// Runs every check against stores made by `fresh`.
pub async fn run_all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    tenant_bootstrap_and_api_key(fresh().await).await;
    agent_lifecycle(fresh().await).await;
    conflicts_change_nothing(fresh().await).await;
    tenants_are_isolated(fresh().await).await;
    concurrent_commits_form_one_chain(fresh().await).await;
}

fn event(kind: EventKind, resource: String) -> Event {
    Event {
        kind,
        actor: Actor::default(),
        on_behalf_of: None,
        delegation: None,
        token: None,
        action: Some("create".into()),
        resource: Some(resource),
        decision: Outcome::Allow,
        reasons: vec![],
        request_hash: None,
    }
}

fn rnd(n: u8) -> [u8; 10] {
    [n; 10]
}

/// A tenant with an owner and API key, committed.
pub async fn seed_tenant(store: &dyn Store, n: u8, name: &str) -> (Tenant, Human, [u8; 32]) {
    let tenant = Tenant {
        id: TenantId::from_parts(1_000 + i64::from(n), rnd(n)),
        name: name.into(),
        operator: n == 0,
        created_at: 1_000,
    };
    let owner = Human {
        id: HumanId::from_parts(1_000, rnd(n)),
        tenant: tenant.id.clone(),
        name: "Owner".into(),
        email: format!("owner@{name}"),
        role: Role::Owner,
        status: HumanStatus::Active,
        created_at: 1_000,
    };
    let hash = [n.wrapping_add(100); 32];
    let api_key = NewApiKey {
        id: ApiKeyId::from_parts(1_000, rnd(n)),
        tenant: tenant.id.clone(),
        human: owner.id.clone(),
        hash,
        created_at: 1_000,
    };
    let ev = event(EventKind::TenantCreated, format!("tenants/{}", tenant.id));
    store
        .commit(
            Mutation::CreateTenant {
                tenant: tenant.clone(),
                owner: owner.clone(),
                api_key,
            },
            vec![(tenant.id.clone(), ev)],
        )
        .await
        .expect("seed tenant");
    (tenant, owner, hash)
}

fn agent(tenant: &Tenant, owner: &Human, n: u8, name: &str) -> Agent {
    let (jwk, _) = private_jwk_from_seed(&[n; 32]);
    Agent {
        id: AgentId::from_parts(2_000 + i64::from(n), rnd(n)),
        tenant: tenant.id.clone(),
        owner: owner.id.clone(),
        name: name.into(),
        purpose: "test".into(),
        ceiling: serde_json::json!([{"type": "mandate", "actions": ["read"], "resources": ["**"]}]),
        commitment: "00".repeat(32),
        status: AgentStatus::Active,
        trust: 50,
        keys: vec![KeyRecord::new(jwk, 2_000)],
        created_at: 2_000,
        last_seen_at: None,
    }
}

async fn verify_chain(store: &dyn Store, tenant: &TenantId) -> u64 {
    let mut v = ChainVerifier::new();
    let mut after = 0;
    loop {
        let page = store.receipts(tenant, after, 100).await.expect("receipts");
        if page.is_empty() {
            break;
        }
        for r in page {
            let body: serde_json::Value = serde_json::from_str(&r.body).expect("json");
            v.push(r.seq, &mandate_core::encoding::hex(&r.hash), &body)
                .expect("chain verifies");
            after = r.seq;
        }
    }
    v.finish().count
}

async fn tenant_bootstrap_and_api_key(store: Arc<dyn Store>) {
    assert!(store.is_empty().await.expect("is_empty"));
    let (tenant, owner, hash) = seed_tenant(store.as_ref(), 0, "ops").await;
    assert!(!store.is_empty().await.expect("is_empty"));
    let p = store
        .principal_by_api_key(hash)
        .await
        .expect("lookup")
        .expect("principal");
    assert_eq!(p.human, owner);
    assert!(p.tenant.operator);
    assert!(
        store
            .principal_by_api_key([9; 32])
            .await
            .expect("lookup")
            .is_none()
    );
    // Revoking the human disables the key.
    store
        .commit(
            Mutation::RevokeHuman {
                tenant: tenant.id.clone(),
                id: owner.id.clone(),
                at: 5_000,
            },
            vec![(
                tenant.id.clone(),
                event(EventKind::HumanRevoked, "h".into()),
            )],
        )
        .await
        .expect("revoke");
    assert!(
        store
            .principal_by_api_key(hash)
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(verify_chain(store.as_ref(), &tenant.id).await, 2);
}

async fn agent_lifecycle(store: Arc<dyn Store>) {
    let (tenant, owner, _) = seed_tenant(store.as_ref(), 1, "acme").await;
    let a = agent(&tenant, &owner, 1, "triage-bot");
    let ev = || event(EventKind::AgentRegistered, "agents/x".into());
    store
        .commit(
            Mutation::CreateAgent(a.clone()),
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect("create agent");
    let got = store
        .agent(&tenant.id, &a.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(got, a);
    for (to, want) in [
        (AgentTransition::Suspend, Ok(AgentStatus::Suspended)),
        (AgentTransition::Suspend, Err(())),
        (AgentTransition::Resume, Ok(AgentStatus::Active)),
        (AgentTransition::Revoke, Ok(AgentStatus::Revoked)),
        (AgentTransition::Resume, Err(())),
    ] {
        let r = store
            .commit(
                Mutation::TransitionAgent {
                    tenant: tenant.id.clone(),
                    id: a.id.clone(),
                    to,
                    at: 0,
                },
                vec![(tenant.id.clone(), ev())],
            )
            .await;
        match (r, want) {
            (Ok(applied), Ok(status)) => match applied.value {
                AppliedValue::Agent(x) => assert_eq!(x.status, status),
                other => panic!("unexpected {other:?}"),
            },
            (Err(StoreError::Conflict(_)), Err(())) => {}
            (r, w) => panic!("{to:?}: got {r:?}, want {w:?}"),
        }
    }
    let listed = store
        .agents(
            &tenant.id,
            &AgentFilter {
                status: Some(AgentStatus::Revoked),
                owner: None,
            },
            &Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    // 1 tenant + 1 agent + 4 successful transitions; refused transitions left no receipt.
    assert_eq!(verify_chain(store.as_ref(), &tenant.id).await, 5);
}

async fn conflicts_change_nothing(store: Arc<dyn Store>) {
    let (tenant, owner, _) = seed_tenant(store.as_ref(), 2, "initech").await;
    let a = agent(&tenant, &owner, 2, "dup");
    let ev = || event(EventKind::AgentRegistered, "agents/x".into());
    store
        .commit(
            Mutation::CreateAgent(a.clone()),
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect("first");
    let mut b = agent(&tenant, &owner, 3, "dup");
    b.id = AgentId::from_parts(9_999, rnd(3));
    let err = store
        .commit(
            Mutation::CreateAgent(b.clone()),
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect_err("duplicate name");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(
        store
            .agent(&tenant.id, &b.id)
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(verify_chain(store.as_ref(), &tenant.id).await, 2);
}

async fn tenants_are_isolated(store: Arc<dyn Store>) {
    let (ta, oa, _) = seed_tenant(store.as_ref(), 3, "a").await;
    let (tb, _, _) = seed_tenant(store.as_ref(), 4, "b").await;
    let a = agent(&ta, &oa, 4, "only-in-a");
    store
        .commit(
            Mutation::CreateAgent(a.clone()),
            vec![(ta.id.clone(), event(EventKind::AgentRegistered, "x".into()))],
        )
        .await
        .expect("create");
    assert!(store.agent(&tb.id, &a.id).await.expect("read").is_none());
    assert!(store.human(&tb.id, &oa.id).await.expect("read").is_none());
    let page = Page {
        after: None,
        limit: 100,
    };
    assert!(
        store
            .agents(&tb.id, &AgentFilter::default(), &page)
            .await
            .expect("list")
            .is_empty()
    );
    let err = store
        .commit(
            Mutation::TransitionAgent {
                tenant: tb.id.clone(),
                id: a.id.clone(),
                to: AgentTransition::Revoke,
                at: 0,
            },
            vec![(tb.id.clone(), event(EventKind::AgentRevoked, "x".into()))],
        )
        .await
        .expect_err("foreign");
    assert!(matches!(err, StoreError::NotFound(_)));
    assert_eq!(verify_chain(store.as_ref(), &tb.id).await, 1);
}

async fn concurrent_commits_form_one_chain(store: Arc<dyn Store>) {
    let (tenant, _, _) = seed_tenant(store.as_ref(), 5, "busy").await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = Arc::clone(&store);
        let t = tenant.id.clone();
        tasks.push(tokio::spawn(async move {
            s.commit(
                Mutation::Record,
                vec![(t, event(EventKind::Record, format!("r/{i}")))],
            )
            .await
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let applied = t.await.expect("join").expect("commit");
        seqs.push(applied.receipts[0].1);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=201).collect::<Vec<_>>());
    assert_eq!(verify_chain(store.as_ref(), &tenant.id).await, 201);
}
