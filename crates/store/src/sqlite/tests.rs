//! SQLite engine tests: the conformance suite, durability, and fail-closed ledger writes.

use std::sync::Arc;

use mandate_core::clock::FixedClock;
use mandate_core::receipt::{Actor, Event, EventKind, Outcome};

use super::*;
use crate::conformance;

fn fresh(dir: &tempfile::TempDir, name: &str) -> SqliteStore {
    SqliteStore::open(
        SqliteOptions::new(dir.path().join(name)),
        Arc::new(FixedClock::new(1_700_000_000_000)),
    )
    .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let s: Arc<dyn Store> = Arc::new(fresh(&dir, &format!("c{i}.db")));
        async move { s }
    })
    .await;
}

fn record() -> Event {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_ledger_refuses_the_mutation_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f.db");
    let store = fresh(&dir, "f.db");
    let (tenant, owner, _) = conformance::seed_tenant(&store, 0, "ops").await;
    // A real fault from outside the process: the receipts table refuses every insert.
    let saboteur = Connection::open(&path).expect("open");
    saboteur
        .execute_batch(
            "CREATE TRIGGER no_ledger BEFORE INSERT ON receipts \
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .expect("trigger");
    let human = crate::Human {
        id: HumanId::from_parts(9, [9; 10]),
        tenant: tenant.id.clone(),
        name: "x".into(),
        email: "x@y".into(),
        role: crate::Role::Admin,
        status: crate::HumanStatus::Active,
        created_at: 9,
    };
    let err = store
        .commit(
            Mutation::CreateHuman(human.clone()),
            vec![(tenant.id.clone(), record())],
        )
        .await
        .expect_err("must fail closed");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        store
            .human(&tenant.id, &human.id)
            .await
            .expect("read")
            .is_none()
    );
    saboteur
        .execute_batch("DROP TRIGGER no_ledger")
        .expect("drop trigger");
    // The chain continues from where it was: nothing of the refused change persisted.
    let applied = store
        .commit(
            Mutation::CreateHuman(human.clone()),
            vec![(tenant.id.clone(), record())],
        )
        .await
        .expect("commit");
    assert_eq!(applied.receipts[0].1, 2);
    assert!(
        store
            .human(&tenant.id, &owner.id)
            .await
            .expect("read")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_survive_reopen_and_the_chain_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tenant, _, _) = {
        let store = fresh(&dir, "r.db");
        conformance::seed_tenant(&store, 0, "ops").await
    };
    let store = fresh(&dir, "r.db");
    let applied = store
        .commit(Mutation::Record, vec![(tenant.id.clone(), record())])
        .await
        .expect("commit");
    assert_eq!(applied.receipts[0].1, 2);
    let all = store.receipts(&tenant.id, 0, 10).await.expect("read");
    assert_eq!(all.len(), 2);
}

/// A tenant with an agent, a gate and a mandate to the agent (for approval checks).
async fn approval_world(
    store: &dyn Store,
) -> (crate::Tenant, crate::Human, Agent, Gate, crate::Delegation) {
    let (tenant, owner, _) = conformance::seed_tenant(store, 0, "ops").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_open_once_are_decided_once_used_once_and_expire() {
    use crate::{AppliedValue, ApprovalFilter, ApprovalStatus};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fresh(&dir, "a.db");
    let (tenant, owner, agent, gate, d) = approval_world(&store).await;
    let t = 10_000;
    let a = pending(&tenant, &agent, &gate, &d, 1, "h1", t);
    store
        .commit(
            Mutation::CreateApproval(a.clone()),
            vec![(tenant.id.clone(), record())],
        )
        .await
        .expect("create");
    // A second open approval for the same request is a conflict; another hash is not.
    let dup = pending(&tenant, &agent, &gate, &d, 2, "h1", t + 1);
    let err = store
        .commit(
            Mutation::CreateApproval(dup),
            vec![(tenant.id.clone(), record())],
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
    let (t2, _, _) = conformance::seed_tenant(&store, 1, "other").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_are_counted_per_agent_and_used_ids_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fresh(&dir, "d.db");
    let (tenant, _, agent, _, _) = approval_world(&store).await;
    let denial = |kind: EventKind, reason: &str, agent: Option<&AgentId>| Event {
        kind,
        actor: Actor {
            agent: agent.map(ToString::to_string),
            chain: vec![],
            human: None,
        },
        decision: Outcome::Deny,
        reasons: vec![reason.into()],
        ..record()
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
        (tenant.id.clone(), record()),
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
