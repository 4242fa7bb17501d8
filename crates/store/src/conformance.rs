//! The store conformance suite: written once against [`Store`], run against every engine.
//!
//! Each check takes a fresh, empty store. Engines call [`run_all`] (and [`run_ledger`] for
//! their [`LedgerStore`]) from their tests.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a test suite: a failed check must stop the run"
)]

use std::sync::Arc;

use mandate_core::id::{AgentId, ApiKeyId, DelegationId, GateId, HumanId, TenantId};
use mandate_core::jwk::private_jwk_from_seed;
use mandate_core::receipt::{Actor, ChainVerifier, Event, EventKind, Outcome};

use crate::{
    Agent, AgentFilter, AgentStatus, AgentTransition, AppliedValue, Delegation, DelegationStatus,
    Delegator, Gate, Human, HumanStatus, JtiUse, KeyRecord, LedgerError, LedgerStore, Mutation,
    NewApiKey, Page, Role, Store, StoreError, StoredCheckpoint, Tenant, TokenRecord, TokenStatus,
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
    single_use_ids(fresh().await).await;
    a_failing_job_rolls_back_only_itself(fresh().await).await;
    a_receipt_for_an_unknown_tenant_fails_only_its_job(fresh().await).await;
    status_indexes_are_reserved_once(fresh().await).await;
    subscribers_see_each_receipt_once_in_order(fresh().await).await;
    issuance_is_checked_at_commit_and_revocation_cascades(fresh().await).await;
    approvals_open_once_are_decided_once_used_once_and_expire(fresh().await).await;
    denials_are_counted_per_agent_and_used_ids_are_reported(fresh().await).await;
}

/// Runs every ledger check against `(store, ledger)` pairs over one fresh database made by
/// `fresh`.
pub async fn run_ledger<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (Arc<dyn Store>, Arc<dyn LedgerStore>)>,
{
    integration_and_proofs(fresh().await).await;
    checkpoints_only_when_the_tree_agrees(fresh().await).await;
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

fn jti(kind: &'static str, id: &str) -> JtiUse {
    JtiUse {
        kind,
        scope: "client-1".into(),
        jti: id.into(),
        expires_at: i64::MAX / 2,
    }
}

fn token_request(jtis: Vec<JtiUse>) -> Mutation {
    Mutation::TokenRequest {
        jtis,
        issue: None,
        now: 5_000,
        seen: None,
    }
}

async fn single_use_ids(store: Arc<dyn Store>) {
    let (tenant, _, _) = seed_tenant(store.as_ref(), 6, "once").await;
    let ev = || event(EventKind::Record, "t".into());
    store
        .commit(
            token_request(vec![jti("dpop", "a")]),
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect("first use");
    let err = store
        .commit(
            token_request(vec![jti("dpop", "b"), jti("dpop", "a")]),
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect_err("second use");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The refused job consumed nothing: `b` is still unused, in another kind `a` is too.
    store
        .commit(
            token_request(vec![jti("dpop", "b"), jti("assertion", "a")]),
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect("unused ids");
    assert_eq!(verify_chain(store.as_ref(), &tenant.id).await, 3);
}

async fn a_failing_job_rolls_back_only_itself(store: Arc<dyn Store>) {
    let (tenant, _, _) = seed_tenant(store.as_ref(), 7, "batch").await;
    // Concurrent jobs, so that they share transactions: every third one reuses an email.
    let mut tasks = Vec::new();
    for i in 0..60u8 {
        let s = Arc::clone(&store);
        let t = tenant.id.clone();
        tasks.push(tokio::spawn(async move {
            let email = if i % 3 == 2 {
                format!("h{}@x", i - 1)
            } else {
                format!("h{i}@x")
            };
            let human = Human {
                id: HumanId::from_parts(3_000 + i64::from(i), rnd(i)),
                tenant: t.clone(),
                name: format!("h{i}"),
                email,
                role: Role::Admin,
                status: HumanStatus::Active,
                created_at: 3_000,
            };
            let r = s
                .commit(
                    Mutation::CreateHuman(human.clone()),
                    vec![(t, event(EventKind::HumanCreated, format!("h/{i}")))],
                )
                .await;
            (i, human, r)
        }));
    }
    let mut ok = 0u64;
    for t in tasks {
        let (i, human, r) = t.await.expect("join");
        let stored = store.human(&tenant.id, &human.id).await.expect("read");
        match r {
            Ok(_) => {
                ok += 1;
                assert_eq!(stored, Some(human));
            }
            Err(StoreError::Conflict(_)) => {
                assert_ne!(i % 3, 0, "only jobs sharing an email may fail");
                assert!(stored.is_none(), "a refused job leaves nothing");
            }
            Err(e) => panic!("job {i}: {e:?}"),
        }
    }
    // Every job with an email of its own, and one of each pair sharing one.
    assert_eq!(ok, 40);
    assert_eq!(verify_chain(store.as_ref(), &tenant.id).await, 1 + ok);
}

async fn status_indexes_are_reserved_once(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for n in [1u64, 7, 256, 3, 256, 0, 100, 1, 1, 50] {
        let s = Arc::clone(&store);
        tasks.push(tokio::spawn(
            async move { s.reserve_status_indexes(n).await },
        ));
    }
    let mut all = Vec::new();
    for t in tasks {
        let r = t.await.expect("join").expect("reserve");
        all.extend(r);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "no index handed out twice");
    assert_eq!(n, 675);
    let next = store.reserve_status_indexes(1).await.expect("reserve");
    assert!(next.start > all.last().copied().unwrap_or(0));
}

async fn subscribers_see_each_receipt_once_in_order(store: Arc<dyn Store>) {
    let (tenant, _, _) = seed_tenant(store.as_ref(), 8, "live").await;
    let mut rx = store.subscribe();
    let mut tasks = Vec::new();
    for i in 0..50 {
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
    for t in tasks {
        t.await.expect("join").expect("commit");
    }
    let mut seqs = Vec::new();
    while seqs.len() < 50 {
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("a receipt within 10 s")
            .expect("not lagging");
        assert_eq!(r.tenant, tenant.id);
        assert_eq!(r.kind, EventKind::Record);
        let body: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(body["seq"], r.seq);
        seqs.push(r.seq);
    }
    assert_eq!(seqs, (2..=51).collect::<Vec<_>>());
    // Nothing more, and nothing twice.
    let extra = tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv()).await;
    assert!(extra.is_err(), "unexpected {extra:?}");
}

async fn append_records(store: &dyn Store, tenant: &TenantId, n: usize) {
    for i in 0..n {
        store
            .commit(
                Mutation::Record,
                vec![(tenant.clone(), event(EventKind::Record, format!("r/{i}")))],
            )
            .await
            .expect("append");
    }
}

/// The tenant's receipt hashes as a memory tree, straight from the receipts.
async fn memory_tree(store: &dyn Store, tenant: &TenantId) -> mandate_core::merkle::MemoryTree {
    let receipts = store.receipts(tenant, 0, 100_000).await.expect("receipts");
    mandate_core::merkle::MemoryTree::from_leaf_hashes(
        receipts
            .iter()
            .map(|r| mandate_core::merkle::leaf_hash(&r.hash)),
    )
    .expect("tree")
}

async fn integration_and_proofs((store, ledger): (Arc<dyn Store>, Arc<dyn LedgerStore>)) {
    use mandate_core::merkle::{MerkleError, verify_consistency, verify_inclusion};
    let (a, _, _) = seed_tenant(store.as_ref(), 0, "a").await;
    let (b, _, _) = seed_tenant(store.as_ref(), 1, "b").await;
    append_records(store.as_ref(), &a.id, 20).await;
    append_records(store.as_ref(), &b.id, 3).await;
    let mut grown = ledger.integrate().await.expect("integrate");
    grown.sort();
    let mut want = vec![(a.id.clone(), 21), (b.id.clone(), 4)];
    want.sort();
    assert_eq!(grown, want);
    assert!(ledger.integrate().await.expect("again").is_empty());
    append_records(store.as_ref(), &b.id, 2).await;
    assert_eq!(ledger.integrate_tenant(&b.id).await.expect("b"), 6);
    for (tenant, n) in [(&a.id, 21u64), (&b.id, 6)] {
        let tree = memory_tree(store.as_ref(), tenant).await;
        let head = ledger.tree_head(tenant).await.expect("head");
        assert_eq!((head.size, head.root), (n, tree.root().expect("root")));
        for size in 1..=n {
            let root = ledger.root_at(tenant, size).await.expect("root");
            assert_eq!(root, tree.root_at(size).expect("memory"));
            for index in [0, size / 2, size - 1] {
                let p = ledger
                    .inclusion_proof(tenant, index, size)
                    .await
                    .expect("inclusion");
                assert_eq!(p.proof, tree.inclusion_proof(index, size).expect("memory"));
                verify_inclusion(index, size, &p.leaf_hash, &p.proof, &p.root).expect("verifies");
            }
            let p = ledger
                .consistency_proof(tenant, size / 2, size)
                .await
                .expect("consistency");
            verify_consistency(p.from, p.to, &p.from_root, &p.to_root, &p.proof).expect("verifies");
        }
    }
    let beyond = ledger.inclusion_proof(&a.id, 0, 22).await;
    assert!(matches!(
        beyond,
        Err(LedgerError::Merkle(MerkleError::BeyondTree { .. }))
    ));
    let backwards = ledger.consistency_proof(&a.id, 2, 1).await;
    assert!(matches!(
        backwards,
        Err(LedgerError::Merkle(MerkleError::SizeOrder { .. }))
    ));
}

async fn checkpoints_only_when_the_tree_agrees(
    (store, ledger): (Arc<dyn Store>, Arc<dyn LedgerStore>),
) {
    use mandate_core::merkle::MerkleError;
    let (tenant, _, _) = seed_tenant(store.as_ref(), 0, "ops").await;
    append_records(store.as_ref(), &tenant.id, 5).await;
    ledger.integrate().await.expect("integrate");
    assert_eq!(
        ledger.checkpoint(&tenant.id, None).await.expect("none"),
        None
    );
    let root3 = ledger.root_at(&tenant.id, 3).await.expect("root");
    let head = ledger.tree_head(&tenant.id).await.expect("head");
    let cp = |size, root, note: &str| StoredCheckpoint {
        size,
        root,
        note: note.into(),
        kid: "k1".into(),
        signed_at: 7,
    };
    for c in [
        cp(3, root3, "three"),
        cp(head.size, head.root, "six"),
        cp(3, root3, "three again"),
    ] {
        ledger.save_checkpoint(&tenant.id, &c).await.expect("save");
    }
    let latest = ledger.checkpoint(&tenant.id, None).await.expect("latest");
    assert_eq!(latest, Some(cp(6, head.root, "six")));
    let at3 = ledger.checkpoint(&tenant.id, Some(3)).await.expect("3");
    assert_eq!(at3.map(|c| c.note), Some("three again".to_owned()));
    assert_eq!(
        ledger.checkpoint(&tenant.id, Some(4)).await.expect("4"),
        None
    );
    let wrong = ledger
        .save_checkpoint(&tenant.id, &cp(3, head.root, "x"))
        .await;
    assert_eq!(wrong, Err(LedgerError::CheckpointMismatch { size: 3 }));
    let beyond = ledger
        .save_checkpoint(&tenant.id, &cp(7, head.root, "x"))
        .await;
    assert!(matches!(
        beyond,
        Err(LedgerError::Merkle(MerkleError::BeyondTree { .. }))
    ));
}

fn delegation(
    tenant: &Tenant,
    n: u8,
    parent: Option<&Delegation>,
    delegator: Delegator,
) -> Delegation {
    let id = DelegationId::from_parts(4_000 + i64::from(n), rnd(n));
    Delegation {
        root: parent.map_or_else(|| id.clone(), |p| p.root.clone()),
        depth: parent.map_or(1, |p| p.depth + 1),
        id,
        tenant: tenant.id.clone(),
        parent: parent.map(|p| p.id.clone()),
        delegator,
        delegate: AgentId::from_parts(2_000 + i64::from(n), rnd(n)),
        scope: serde_json::json!([{"type": "mandate", "actions": ["read"]}]),
        prohibitions: serde_json::json!([]),
        purpose: "p".into(),
        task: None,
        max_depth: 3,
        expires_at: 1_000_000,
        created_at: 4_000,
        status: DelegationStatus::Active,
        revoked_at: None,
        digest: "00".repeat(32),
        human_signature: None,
    }
}

fn token(d: &Delegation, n: u8, idx: u64) -> TokenRecord {
    TokenRecord {
        jti: format!("tok-{n}"),
        tenant: d.tenant.clone(),
        delegation: d.id.clone(),
        agent: d.delegate.clone(),
        jkt: format!("jkt-{n}"),
        issued_at: 5_000,
        expires_at: 600_000,
        status: TokenStatus::Active,
        status_idx: Some(idx),
    }
}

async fn issuance_is_checked_at_commit_and_revocation_cascades(store: Arc<dyn Store>) {
    let (tenant, owner, _) = seed_tenant(store.as_ref(), 9, "tokens").await;
    let ev = || event(EventKind::Record, "x".into());
    for (n, name) in [(1u8, "a1"), (2, "a2")] {
        store
            .commit(
                Mutation::CreateAgent(agent(&tenant, &owner, n, name)),
                vec![(tenant.id.clone(), ev())],
            )
            .await
            .expect("agent");
    }
    let mandate = delegation(&tenant, 1, None, Delegator::Human(owner.id.clone()));
    store
        .commit(
            Mutation::CreateDelegation(mandate.clone()),
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect("mandate");
    let sub = delegation(
        &tenant,
        2,
        Some(&mandate),
        Delegator::Agent(mandate.delegate.clone()),
    );
    // A sub-delegation and its token, with single-use ids, atomically.
    store
        .commit(
            Mutation::Delegate {
                delegation: sub.clone(),
                jtis: vec![jti("assertion", "d1")],
                issue: token(&sub, 2, 7),
                now: 5_000,
            },
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect("delegate");
    // A token under the mandate, marking the agent as seen.
    store
        .commit(
            Mutation::TokenRequest {
                jtis: vec![jti("dpop", "t1")],
                issue: Some(token(&mandate, 1, 3)),
                now: 5_000,
                seen: Some((tenant.id.clone(), mandate.delegate.clone())),
            },
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect("token");
    let seen = store
        .agent(&tenant.id, &mandate.delegate)
        .await
        .expect("read")
        .expect("agent");
    assert_eq!(seen.last_seen_at, Some(5_000));
    let view = store.token("tok-2").await.expect("read").expect("token");
    assert_eq!(view.chain, vec![mandate.clone(), sub.clone()]);
    assert_eq!(view.token, token(&sub, 2, 7));
    assert_eq!(store.max_status_idx().await.expect("max"), Some(7));
    let listed = store.tokens_in_status_range(0, 8).await.expect("range");
    assert_eq!(
        listed
            .iter()
            .map(|v| v.token.status_idx)
            .collect::<Vec<_>>(),
        vec![Some(3), Some(7)]
    );
    let tree = store
        .delegation_tree(&tenant.id, &mandate.id)
        .await
        .expect("tree")
        .expect("exists");
    assert_eq!(tree.children.len(), 1);
    // Revoking the mandate revokes the subtree and every token under it.
    let applied = store
        .commit(
            Mutation::RevokeDelegation {
                tenant: tenant.id.clone(),
                id: mandate.id.clone(),
                at: 6_000,
            },
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect("revoke");
    assert!(
        matches!(applied.value, AppliedValue::Count(2)),
        "{:?}",
        applied.value
    );
    for jti in ["tok-1", "tok-2"] {
        let v = store.token(jti).await.expect("read").expect("token");
        assert_eq!(v.token.status, TokenStatus::Revoked, "{jti}");
    }
    let d = store
        .delegation(&tenant.id, &sub.id)
        .await
        .expect("read")
        .expect("sub");
    assert_eq!(
        (d.status, d.revoked_at),
        (DelegationStatus::Revoked, Some(6_000))
    );
    // Issuance re-checks the chain at commit time.
    let err = store
        .commit(
            Mutation::TokenRequest {
                jtis: vec![],
                issue: Some(token(&sub, 3, 9)),
                now: 7_000,
                seen: None,
            },
            vec![(tenant.id.clone(), ev())],
        )
        .await
        .expect_err("revoked chain");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.token("tok-3").await.expect("read").is_none());
    assert_eq!(verify_chain(store.as_ref(), &tenant.id).await, 7);
}

/// A tenant with an agent, a gate and a mandate to the agent (for approval checks).
async fn approval_world(
    store: &dyn Store,
) -> (crate::Tenant, crate::Human, Agent, Gate, crate::Delegation) {
    let (tenant, owner, _) = seed_tenant(store, 0, "ops").await;
    let (jwk, _) = mandate_core::jwk::private_jwk_from_seed(&[5; 32]);
    let agent = Agent {
        id: AgentId::from_parts(2_000, [5; 10]),
        tenant: tenant.id.clone(),
        owner: owner.id.clone(),
        name: "bot".into(),
        purpose: "test".into(),
        ceiling: serde_json::json!([]),
        commitment: "00".repeat(32),
        status: AgentStatus::Active,
        trust: 50,
        keys: vec![KeyRecord::new(jwk, 2_000)],
        created_at: 2_000,
        last_seen_at: None,
    };
    let (gjwk, _) = mandate_core::jwk::private_jwk_from_seed(&[6; 32]);
    let gate = Gate {
        id: GateId::from_parts(2_000, [6; 10]),
        tenant: tenant.id.clone(),
        name: "gate".into(),
        audience: "https://crm.example".into(),
        keys: vec![KeyRecord::new(gjwk, 2_000)],
        created_at: 2_000,
    };
    let id = DelegationId::from_parts(3_000, [7; 10]);
    let delegation = crate::Delegation {
        id: id.clone(),
        tenant: tenant.id.clone(),
        parent: None,
        root: id,
        delegator: crate::Delegator::Human(owner.id.clone()),
        delegate: agent.id.clone(),
        scope: serde_json::json!([]),
        prohibitions: serde_json::json!([]),
        purpose: "p".into(),
        task: None,
        depth: 1,
        max_depth: 3,
        expires_at: i64::MAX / 2,
        created_at: 3_000,
        status: crate::DelegationStatus::Active,
        revoked_at: None,
        digest: "00".repeat(32),
        human_signature: None,
    };
    for m in [
        Mutation::CreateAgent(agent.clone()),
        Mutation::CreateGate(gate.clone()),
        Mutation::CreateDelegation(delegation.clone()),
    ] {
        store.commit(m, vec![]).await.expect("seed");
    }
    (tenant, owner, agent, gate, delegation)
}

fn pending(
    tenant: &crate::Tenant,
    agent: &Agent,
    gate: &Gate,
    d: &crate::Delegation,
    n: u8,
    hash: &str,
    at: i64,
) -> crate::Approval {
    crate::Approval {
        id: mandate_core::id::ApprovalId::from_parts(at, [n; 10]),
        tenant: tenant.id.clone(),
        gate: gate.id.clone(),
        delegation: d.id.clone(),
        agent: agent.id.clone(),
        action: "delete".into(),
        resource: "tickets/1".into(),
        summary: "delete ticket 1".into(),
        request_hash: hash.into(),
        status: crate::ApprovalStatus::Pending,
        created_at: at,
        expires_at: at + 900_000,
        decided_at: None,
        decided_by: None,
        consumed_at: None,
    }
}

async fn approvals_open_once_are_decided_once_used_once_and_expire(store: Arc<dyn Store>) {
    use crate::{ApprovalFilter, ApprovalStatus};
    let store = store.as_ref();
    let (tenant, owner, agent, gate, d) = approval_world(store).await;
    let t = 10_000;
    let a = pending(&tenant, &agent, &gate, &d, 1, "h1", t);
    store
        .commit(
            Mutation::CreateApproval(a.clone()),
            vec![(tenant.id.clone(), event(EventKind::Record, "a".into()))],
        )
        .await
        .expect("create");
    // A second open approval for the same request is a conflict; another hash is not.
    let dup = pending(&tenant, &agent, &gate, &d, 2, "h1", t + 1);
    let err = store
        .commit(
            Mutation::CreateApproval(dup),
            vec![(tenant.id.clone(), event(EventKind::Record, "a".into()))],
        )
        .await
        .expect_err("one open approval per request");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let other = pending(&tenant, &agent, &gate, &d, 3, "h2", t + 2);
    store
        .commit(Mutation::CreateApproval(other.clone()), vec![])
        .await
        .expect("other hash");
    let newest = store
        .approval_for_request(&tenant.id, &d.id, "h1")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(newest, a);
    // Using before approval is a conflict; approve; approve again is a conflict.
    let use_it = || Mutation::ConsumeApproval {
        tenant: tenant.id.clone(),
        id: a.id.clone(),
        at: t + 20,
    };
    assert!(matches!(
        store.commit(use_it(), vec![]).await,
        Err(StoreError::Conflict(_))
    ));
    let decide = |approve: bool, at: i64| Mutation::DecideApproval {
        tenant: tenant.id.clone(),
        id: a.id.clone(),
        approve,
        by: owner.id.clone(),
        at,
        use_by: at + 300_000,
    };
    let applied = store
        .commit(decide(true, t + 10), vec![])
        .await
        .expect("approve");
    let AppliedValue::Approval(approved) = applied.value else {
        panic!("approval expected");
    };
    assert_eq!(approved.status, ApprovalStatus::Approved);
    assert_eq!(approved.expires_at, t + 10 + 300_000);
    assert!(matches!(
        store.commit(decide(false, t + 11), vec![]).await,
        Err(StoreError::Conflict(_))
    ));
    store.commit(use_it(), vec![]).await.expect("use once");
    assert!(matches!(
        store.commit(use_it(), vec![]).await,
        Err(StoreError::Conflict(_))
    ));
    let page = Page {
        after: None,
        limit: 10,
    };
    let consumed = ApprovalFilter {
        status: Some(ApprovalStatus::Consumed),
    };
    let list = store
        .approvals(&tenant.id, &consumed, &page, t + 30)
        .await
        .expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].consumed_at, Some(t + 20));
    // Expiry: the other approval is pending until +15 min, expired after; deciding it then is a
    // conflict, and a new approval for its request may open.
    let pending_filter = ApprovalFilter {
        status: Some(ApprovalStatus::Pending),
    };
    let expired_filter = ApprovalFilter {
        status: Some(ApprovalStatus::Expired),
    };
    let late = other.expires_at;
    assert_eq!(
        store
            .approvals(&tenant.id, &pending_filter, &page, late - 1)
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(
        store
            .approvals(&tenant.id, &expired_filter, &page, late)
            .await
            .expect("list")[0]
            .id,
        other.id
    );
    let err = store
        .commit(
            Mutation::DecideApproval {
                tenant: tenant.id.clone(),
                id: other.id.clone(),
                approve: true,
                by: owner.id.clone(),
                at: late,
                use_by: late + 1,
            },
            vec![],
        )
        .await
        .expect_err("expired");
    assert!(format!("{err:?}").contains("expired"), "{err:?}");
    let again = pending(&tenant, &agent, &gate, &d, 4, "h2", late);
    store
        .commit(Mutation::CreateApproval(again.clone()), vec![])
        .await
        .expect("a fresh approval after expiry");
    let stored = store
        .approval(&tenant.id, &other.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(stored.status_at(late), ApprovalStatus::Expired);
    // Another tenant sees none of it.
    let (t2, _, _) = seed_tenant(store, 1, "other").await;
    assert!(store.approval(&t2.id, &a.id).await.expect("read").is_none());
    let all = ApprovalFilter::default();
    assert!(
        store
            .approvals(&t2.id, &all, &page, t)
            .await
            .expect("list")
            .is_empty()
    );
}

async fn denials_are_counted_per_agent_and_used_ids_are_reported(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let (tenant, _, agent, _, _) = approval_world(store).await;
    let denial = |kind: EventKind, reason: &str, agent: Option<&AgentId>| Event {
        kind,
        actor: Actor {
            agent: agent.map(ToString::to_string),
            chain: vec![],
            human: None,
        },
        decision: Outcome::Deny,
        reasons: vec![reason.into()],
        ..event(EventKind::Record, "a".into())
    };
    let receipts = vec![
        (
            tenant.id.clone(),
            denial(EventKind::TokenRefused, "invalid_scope", Some(&agent.id)),
        ),
        (
            tenant.id.clone(),
            denial(EventKind::TokenRefused, "invalid_scope", Some(&agent.id)),
        ),
        (
            tenant.id.clone(),
            denial(
                EventKind::GateDecision,
                "insufficient_scope",
                Some(&agent.id),
            ),
        ),
        // Not attributed to an agent, or not a denial: not counted.
        (
            tenant.id.clone(),
            denial(EventKind::GateDecision, "invalid_token", None),
        ),
        (tenant.id.clone(), event(EventKind::Record, "a".into())),
    ];
    let jtis = vec![crate::JtiUse {
        kind: "gate_receipt",
        scope: "gat_x".into(),
        jti: "r1".into(),
        expires_at: i64::MAX / 2,
    }];
    store
        .commit(
            Mutation::TokenRequest {
                jtis,
                issue: None,
                now: 1_700_000_000_000,
                seen: None,
            },
            receipts,
        )
        .await
        .expect("commit");
    let counts = store
        .agent_denials(
            &tenant.id,
            std::slice::from_ref(&agent.id),
            1_700_000_000_000 - 3_600_000,
        )
        .await
        .expect("counts");
    let got: Vec<(String, String, u64)> = counts
        .iter()
        .map(|c| (c.kind.clone(), c.reason.clone(), c.count))
        .collect();
    assert_eq!(
        got,
        vec![
            ("gate.decision".into(), "insufficient_scope".into(), 1),
            ("token.refused".into(), "invalid_scope".into(), 2),
        ]
    );
    // The window starts at an hour: counts from before it are left out.
    let later = store
        .agent_denials(
            &tenant.id,
            std::slice::from_ref(&agent.id),
            1_700_000_000_000 + 3_600_000,
        )
        .await
        .expect("counts");
    assert!(later.is_empty());
    let used = store
        .used_jtis("gate_receipt", "gat_x", &["r0".into(), "r1".into()])
        .await
        .expect("used");
    assert_eq!(used, vec!["r1".to_owned()]);
    assert!(
        store
            .used_jtis("gate_receipt", "gat_y", &["r1".into()])
            .await
            .expect("used")
            .is_empty()
    );
}

async fn a_receipt_for_an_unknown_tenant_fails_only_its_job(store: Arc<dyn Store>) {
    let (tenant, _, _) = seed_tenant(store.as_ref(), 10, "known").await;
    let unknown = TenantId::from_parts(99, rnd(99));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = Arc::clone(&store);
        let t = if i % 5 == 4 {
            unknown.clone()
        } else {
            tenant.id.clone()
        };
        tasks.push(tokio::spawn(async move {
            let r = s
                .commit(
                    Mutation::Record,
                    vec![(t, event(EventKind::Record, format!("r/{i}")))],
                )
                .await;
            (i, r)
        }));
    }
    for t in tasks {
        let (i, r) = t.await.expect("join");
        match (i % 5 == 4, r) {
            (false, Ok(_)) | (true, Err(StoreError::Unavailable(_))) => {}
            (_, r) => panic!("job {i}: {r:?}"),
        }
    }
    assert_eq!(verify_chain(store.as_ref(), &tenant.id).await, 33);
    assert!(
        store
            .receipts(&unknown, 0, 10)
            .await
            .expect("read")
            .is_empty()
    );
}
