//! The ledger conformance suite on the SQLite engine (the PostgreSQL engine runs it in its own
//! tests, on a schema per check).
#![allow(clippy::expect_used, reason = "test code: a panic is a failed test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mandate_core::clock::FixedClock;
use mandate_store::sqlite::ledger::{LedgerOptions, SqliteLedger};
use mandate_store::sqlite::{SqliteOptions, SqliteStore};
use mandate_store::{LedgerStore, Store, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = AtomicUsize::new(0);
    conformance::run_ledger(|| {
        let path = dir
            .path()
            .join(format!("l{}.db", n.fetch_add(1, Ordering::SeqCst)));
        async move {
            let store: Arc<dyn Store> = Arc::new(
                SqliteStore::open(
                    SqliteOptions::new(&path),
                    Arc::new(FixedClock::new(1_700_000_000_000)),
                )
                .expect("open store"),
            );
            let mut options = LedgerOptions::new(&path);
            // Small batches: many write transactions and frontier reloads.
            options.batch = 3;
            let ledger: Arc<dyn LedgerStore> =
                Arc::new(SqliteLedger::open(options).expect("open ledger"));
            (store, ledger)
        }
    })
    .await;
}
