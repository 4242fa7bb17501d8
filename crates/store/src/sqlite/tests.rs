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
