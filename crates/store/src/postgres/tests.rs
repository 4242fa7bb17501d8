//! PostgreSQL engine tests: the conformance suites, group commit, fail-closed ledger writes, and
//! two replicas on one schema. Each test runs in schemas of its own on the server named by
//! `MANDATE_TEST_POSTGRES` (default [`scratch::DEFAULT_TEST_URL`]); without a reachable server
//! the tests say so loudly and pass, unless `MANDATE_REQUIRE_POSTGRES=1`.

use std::sync::Arc;
use std::time::Duration;

use mandate_core::clock::FixedClock;
use mandate_core::receipt::{Actor, ChainVerifier, Event, EventKind, Outcome};

use super::ledger::{LedgerOptions, PostgresLedger};
use super::scratch::{DEFAULT_TEST_URL, ScratchSchema};
use super::*;
use crate::{JtiUse, LedgerError, LedgerStore, conformance};

/// A fresh schema, or `None` (after saying so) when no server is reachable and none is required.
async fn schema() -> Option<ScratchSchema> {
    let url = std::env::var("MANDATE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_URL.into());
    match ScratchSchema::create(&url).await {
        Ok(s) => Some(s),
        Err(e) => {
            assert!(
                std::env::var("MANDATE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "MANDATE_REQUIRE_POSTGRES=1 but PostgreSQL is not usable at {url}: {e}"
            );
            eprintln!("SKIPPED: PostgreSQL not reachable at {url} ({e})");
            None
        }
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(FixedClock::new(1_700_000_000_000))
}

async fn open(s: &ScratchSchema) -> PostgresStore {
    PostgresStore::connect(PostgresOptions::new(s.url()), clock())
        .await
        .expect("connect")
}

fn record(i: usize) -> Event {
    Event {
        kind: EventKind::Record,
        actor: Actor::default(),
        on_behalf_of: None,
        delegation: None,
        token: None,
        action: Some("read".into()),
        resource: Some(format!("r/{i}")),
        decision: Outcome::Allow,
        reasons: vec![],
        request_hash: None,
    }
}

async fn verify_chain(store: &dyn Store, tenant: &TenantId) -> u64 {
    let mut v = ChainVerifier::new();
    let mut after = 0;
    loop {
        let page = store.receipts(tenant, after, 500).await.expect("receipts");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let Some(first) = schema().await else { return };
    let schemas = Arc::new(tokio::sync::Mutex::new(vec![first]));
    let taken = std::sync::atomic::AtomicBool::new(false);
    let base = std::env::var("MANDATE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_URL.into());
    conformance::run_all(|| {
        let schemas = Arc::clone(&schemas);
        let reuse_first = !taken.swap(true, std::sync::atomic::Ordering::SeqCst);
        let base = base.clone();
        async move {
            let mut all = schemas.lock().await;
            if !reuse_first {
                all.push(ScratchSchema::create(&base).await.expect("schema"));
            }
            let s = all.last().expect("a schema");
            let store: Arc<dyn Store> = Arc::new(open(s).await);
            store
        }
    })
    .await;
    for s in Arc::try_unwrap(schemas)
        .map(|m| m.into_inner())
        .unwrap_or_default()
    {
        s.drop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_conformance_suite() {
    let Some(first) = schema().await else { return };
    let base = std::env::var("MANDATE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_URL.into());
    let schemas = Arc::new(tokio::sync::Mutex::new(vec![first]));
    let taken = std::sync::atomic::AtomicBool::new(false);
    conformance::run_ledger(|| {
        let schemas = Arc::clone(&schemas);
        let reuse_first = !taken.swap(true, std::sync::atomic::Ordering::SeqCst);
        let base = base.clone();
        async move {
            let mut all = schemas.lock().await;
            if !reuse_first {
                all.push(ScratchSchema::create(&base).await.expect("schema"));
            }
            let s = all.last().expect("a schema");
            let store: Arc<dyn Store> = Arc::new(open(s).await);
            let mut options = LedgerOptions::new(s.url());
            // Small batches: many write transactions and frontier reloads.
            options.batch = 3;
            let ledger: Arc<dyn LedgerStore> =
                Arc::new(PostgresLedger::connect(options).await.expect("ledger"));
            (store, ledger)
        }
    })
    .await;
    for s in Arc::try_unwrap(schemas)
        .map(|m| m.into_inner())
        .unwrap_or_default()
    {
        s.drop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_ledger_refuses_the_mutation_and_changes_nothing() {
    let Some(s) = schema().await else { return };
    let store = open(&s).await;
    let (tenant, owner, _) = conformance::seed_tenant(&store, 0, "ops").await;
    // A real fault from outside the process: the receipts table refuses every insert.
    s.execute(
        "CREATE FUNCTION no_ledger() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'disk full'; END $$; \
         CREATE TRIGGER no_ledger BEFORE INSERT ON receipts \
         FOR EACH ROW EXECUTE FUNCTION no_ledger();",
    )
    .await
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
            vec![(tenant.id.clone(), record(0))],
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
    s.execute("DROP TRIGGER no_ledger ON receipts")
        .await
        .expect("drop trigger");
    let applied = store
        .commit(
            Mutation::CreateHuman(human.clone()),
            vec![(tenant.id.clone(), record(1))],
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
    drop(store);
    s.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_survive_reconnect_and_the_chain_continues() {
    let Some(s) = schema().await else { return };
    let (tenant, _, _) = {
        let store = open(&s).await;
        conformance::seed_tenant(&store, 0, "ops").await
    };
    let store = open(&s).await;
    let applied = store
        .commit(Mutation::Record, vec![(tenant.id.clone(), record(0))])
        .await
        .expect("commit");
    assert_eq!(applied.receipts[0].1, 2);
    assert_eq!(verify_chain(&store, &tenant.id).await, 2);
    drop(store);
    s.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrating_at_once_apply_each_migration_once() {
    let Some(s) = schema().await else { return };
    let (a, b, c) = tokio::join!(open(&s), open(&s), open(&s));
    let conn = Conn::open(&parse_url(s.url()).expect("url"))
        .await
        .expect("conn");
    let rows = conn
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("versions");
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=schema::latest()).collect::<Vec<_>>());
    drop((a, b, c, conn));
    s.drop_now().await;
}

/// Two engines on one schema are two replicas: commits for one tenant from both at once form
/// one chain, gap-free and verifiable; each replica's subscribers see every receipt once, in
/// order, whichever replica committed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_commit_one_chain_and_both_see_every_receipt() {
    let Some(s) = schema().await else { return };
    let a = Arc::new(open(&s).await);
    let b = Arc::new(open(&s).await);
    let (tenant, _, _) = conformance::seed_tenant(a.as_ref(), 0, "ops").await;
    let mut rx_a = a.subscribe();
    let mut rx_b = b.subscribe();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store: Arc<dyn Store> = if i % 2 == 0 {
            Arc::clone(&a) as Arc<dyn Store>
        } else {
            Arc::clone(&b) as Arc<dyn Store>
        };
        let t = tenant.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit(Mutation::Record, vec![(t, record(i))])
                .await
                .expect("commit")
                .receipts[0]
                .1
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("join"));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=301).collect::<Vec<_>>(), "no gap, no fork");
    assert_eq!(verify_chain(a.as_ref(), &tenant.id).await, 301);
    assert_eq!(verify_chain(b.as_ref(), &tenant.id).await, 301);
    for rx in [&mut rx_a, &mut rx_b] {
        let mut got = Vec::new();
        while got.last() != Some(&301) {
            let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a receipt within 10 s")
                .expect("not lagging");
            got.push(r.seq);
        }
        // Replica `b` learnt of the tenant from a notification, possibly after its subscriber
        // was created: it may also deliver the tenant's first receipt, but nothing else.
        if got.first() == Some(&1) {
            got.remove(0);
        }
        assert_eq!(got, (2..=301).collect::<Vec<_>>());
        let extra = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
        assert!(extra.is_err(), "nothing twice: {extra:?}");
    }
    drop((a, b));
    s.drop_now().await;
}

/// 200 concurrent uses of one single-use id, spread over two replicas: exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_jti_used_200_times_across_replicas_succeeds_once() {
    let Some(s) = schema().await else { return };
    let a = Arc::new(open(&s).await);
    let b = Arc::new(open(&s).await);
    let (tenant, _, _) = conformance::seed_tenant(a.as_ref(), 0, "ops").await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store: Arc<dyn Store> = if i % 2 == 0 {
            Arc::clone(&a) as Arc<dyn Store>
        } else {
            Arc::clone(&b) as Arc<dyn Store>
        };
        let t = tenant.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit(
                    Mutation::TokenRequest {
                        jtis: vec![JtiUse {
                            kind: "dpop",
                            scope: "jkt-1".into(),
                            jti: "the-one".into(),
                            expires_at: i64::MAX / 2,
                        }],
                        issue: None,
                        now: 1,
                        seen: None,
                    },
                    vec![(t, record(i))],
                )
                .await
        }));
    }
    let (mut ok, mut conflicts) = (0, 0);
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 199));
    assert_eq!(verify_chain(b.as_ref(), &tenant.id).await, 2);
    drop((a, b));
    s.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_index_blocks_of_two_replicas_never_overlap() {
    let Some(s) = schema().await else { return };
    let a = Arc::new(open(&s).await);
    let b = Arc::new(open(&s).await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store: Arc<dyn Store> = if i % 2 == 0 {
            Arc::clone(&a) as Arc<dyn Store>
        } else {
            Arc::clone(&b) as Arc<dyn Store>
        };
        tasks.push(tokio::spawn(async move {
            store.reserve_status_indexes(256).await.expect("reserve")
        }));
    }
    let mut all: Vec<u64> = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((n, all.len()), (40 * 256, 40 * 256));
    drop((a, b));
    s.drop_now().await;
}

/// Two ledgers integrating the same schema at once (two replicas' background tasks) while
/// receipts keep arriving: the trees end identical to the receipts, every row written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_integrators_at_once_build_one_tree() {
    let Some(s) = schema().await else { return };
    let store = Arc::new(open(&s).await);
    let (tenant, _, _) = conformance::seed_tenant(store.as_ref(), 0, "ops").await;
    let ledgers: Vec<Arc<PostgresLedger>> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            let mut o = LedgerOptions::new(s.url());
            o.batch = 7;
            v.push(Arc::new(PostgresLedger::connect(o).await.expect("ledger")));
        }
        v
    };
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (st, t) = (Arc::clone(&store), tenant.id.clone());
        tasks.push(tokio::spawn(async move {
            st.commit(Mutation::Record, vec![(t, record(i))])
                .await
                .expect("append");
        }));
    }
    let mut integrators = Vec::new();
    for l in &ledgers {
        let l = Arc::clone(l);
        integrators.push(tokio::spawn(async move {
            for _ in 0..40 {
                l.integrate().await.expect("integrate");
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    for t in integrators {
        t.await.expect("join");
    }
    let size = ledgers[1]
        .integrate_tenant(&tenant.id)
        .await
        .expect("final");
    assert_eq!(size, 401);
    let receipts = store.receipts(&tenant.id, 0, 1000).await.expect("receipts");
    let tree = mandate_core::merkle::MemoryTree::from_leaf_hashes(
        receipts
            .iter()
            .map(|r| mandate_core::merkle::leaf_hash(&r.hash)),
    )
    .expect("tree");
    for l in &ledgers {
        assert_eq!(
            l.tree_head(&tenant.id).await.expect("head").root,
            tree.root().expect("root")
        );
    }
    let conn = Conn::open(&parse_url(s.url()).expect("url"))
        .await
        .expect("conn");
    let n: i64 = conn
        .query_one("SELECT COUNT(*) FROM merkle_nodes", &[])
        .await
        .expect("count")
        .get(0);
    // Only subtrees of 16 leaves and more are stored: 25 + 12 + 6 + 3 + 1.
    assert_eq!(n, 25 + 12 + 6 + 3 + 1);
    for index in [0, 15, 16, 200, 400] {
        let p = ledgers[0]
            .inclusion_proof(&tenant.id, index, 401)
            .await
            .expect("inclusion");
        assert_eq!(p.proof, tree.inclusion_proof(index, 401).expect("memory"));
    }
    drop((store, ledgers, conn));
    s.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_after_integration_is_reported_not_served() {
    let Some(s) = schema().await else { return };
    let store = open(&s).await;
    let ledger = PostgresLedger::connect(LedgerOptions::new(s.url()))
        .await
        .expect("ledger");
    let (tenant, _, _) = conformance::seed_tenant(&store, 0, "ops").await;
    for i in 0..5 {
        store
            .commit(Mutation::Record, vec![(tenant.id.clone(), record(i))])
            .await
            .expect("append");
    }
    ledger.integrate().await.expect("integrate");
    s.execute(&format!(
        "UPDATE receipts SET hash = '\\x{}'::BYTEA WHERE tenant = '{}' AND seq = 2",
        "00".repeat(32),
        tenant.id
    ))
    .await
    .expect("tamper");
    let corrupt =
        |r: &Result<_, LedgerError>| matches!(r, Err(LedgerError::Store(StoreError::Corrupt(_))));
    let proof = ledger.inclusion_proof(&tenant.id, 1, 6).await;
    assert!(corrupt(&proof.map(|_| ())), "inclusion");
    let root = ledger.root_at(&tenant.id, 3).await;
    assert!(corrupt(&root.map(|_| ())), "root");
    let proof = ledger.consistency_proof(&tenant.id, 2, 6).await;
    assert!(corrupt(&proof.map(|_| ())), "consistency");
    s.execute(&format!(
        "DELETE FROM receipts WHERE tenant = '{}' AND seq > 4",
        tenant.id
    ))
    .await
    .expect("truncate");
    let integrated = ledger.integrate_tenant(&tenant.id).await;
    assert!(corrupt(&integrated.map(|_| ())), "truncation");
    drop((store, ledger));
    s.drop_now().await;
}

/// A replica whose listening session is cut still delivers what other replicas commit: it
/// reconnects and catches up from the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_reconnects_and_catches_up() {
    let Some(s) = schema().await else { return };
    let a = open(&s).await;
    let b = open(&s).await;
    let (tenant, _, _) = conformance::seed_tenant(&a, 0, "ops").await;
    let mut rx = a.subscribe();
    // Cut the listening sessions of this schema from outside.
    s.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = 'LISTEN mandate_receipts' AND application_name = current_schema()",
    )
    .await
    .expect("terminate");
    for i in 0..5 {
        b.commit(Mutation::Record, vec![(tenant.id.clone(), record(i))])
            .await
            .expect("commit");
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        let r = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("delivered after reconnecting")
            .expect("not lagging");
        got.push(r.seq);
    }
    assert_eq!(got, vec![2, 3, 4, 5, 6]);
    drop((a, b));
    s.drop_now().await;
}

/// Group commit: concurrent commits share transactions (the receipts of one batch are written by
/// one transaction, so they share `xmin`), and every caller still gets its own receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_transactions() {
    let Some(s) = schema().await else { return };
    let store = Arc::new(open(&s).await);
    let (tenant, _, _) = conformance::seed_tenant(store.as_ref(), 0, "ops").await;
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (st, t) = (Arc::clone(&store), tenant.id.clone());
        tasks.push(tokio::spawn(async move {
            st.commit(Mutation::Record, vec![(t, record(i))])
                .await
                .expect("commit")
                .receipts[0]
                .1
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("join"));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=401).collect::<Vec<_>>());
    let conn = Conn::open(&parse_url(s.url()).expect("url"))
        .await
        .expect("conn");
    let transactions: i64 = conn
        .query_one(
            "SELECT COUNT(DISTINCT xmin::TEXT) FROM receipts WHERE seq > 1",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert!(
        transactions < 200,
        "400 concurrent commits took {transactions} transactions"
    );
    eprintln!("400 concurrent commits in {transactions} transactions");
    drop((store, conn));
    s.drop_now().await;
}
