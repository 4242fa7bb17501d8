//! Receipt append throughput: group commit vs one fsync per receipt, and the cost of hashing a
//! receipt through the fixed-order serialiser vs a generic `serde_json::Value` JCS pass.
//!
//! Run: `cargo bench -p mandate-store --bench ledger`. Prints criterion's estimates and, at the
//! end, medians and ratios against the named baselines measured in the same run.
#![allow(
    clippy::expect_used,
    reason = "a benchmark: a failure must abort the run"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mandate_core::id::{ApiKeyId, HumanId, TenantId};
use mandate_core::receipt::{Actor, Event, EventKind, Outcome, Receipt, ReceiptHash};
use mandate_store::sqlite::{SqliteOptions, SqliteStore};
use mandate_store::{Human, HumanStatus, Mutation, NewApiKey, Role, Store, SystemClock, Tenant};

/// Concurrent appenders per measured burst.
const BURST: usize = 4_000;
/// Receipts per measured burst when every receipt pays its own fsync.
const BURST_SINGLE: usize = 100;

fn event(i: usize) -> Event {
    Event {
        kind: EventKind::Record,
        actor: Actor {
            agent: Some("agt_01kaw7x0b8f3yq2m9v5n6c4d2e".into()),
            chain: vec!["agt_01kaw7x0b8f3yq2m9v5n6c4d2f".into()],
            human: None,
        },
        on_behalf_of: Some("usr_01kaw7x0b8f3yq2m9v5n6c4d2g".into()),
        delegation: Some("del_01kaw7x0b8f3yq2m9v5n6c4d2h".into()),
        token: Some(format!("jti-{i:016}")),
        action: Some("read".into()),
        resource: Some(format!("tickets/{i}")),
        decision: Outcome::Allow,
        reasons: vec!["granted by detail 0".into()],
        request_hash: Some("ab".repeat(32)),
    }
}

fn open(dir: &tempfile::TempDir, name: &str, max_batch: usize) -> (Arc<dyn Store>, TenantId) {
    let mut opts = SqliteOptions::new(dir.path().join(name));
    opts.max_batch = max_batch;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(opts, Arc::new(SystemClock)).expect("open"));
    let tenant = Tenant {
        id: TenantId::from_parts(1, [1; 10]),
        name: "bench".into(),
        operator: true,
        created_at: 1,
    };
    let owner = Human {
        id: HumanId::from_parts(1, [1; 10]),
        tenant: tenant.id.clone(),
        name: "owner".into(),
        email: "owner@bench".into(),
        role: Role::Owner,
        status: HumanStatus::Active,
        created_at: 1,
    };
    let api_key = NewApiKey {
        id: ApiKeyId::from_parts(1, [1; 10]),
        tenant: tenant.id.clone(),
        human: owner.id.clone(),
        hash: [1; 32],
        created_at: 1,
    };
    let id = tenant.id.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(store.commit(
        Mutation::CreateTenant {
            tenant,
            owner,
            api_key,
        },
        vec![(id.clone(), event(0))],
    ))
    .expect("seed tenant");
    (store, id)
}

/// Appends `n` receipts from `n` concurrent tasks; returns the wall time.
async fn burst(store: &Arc<dyn Store>, tenant: &TenantId, n: usize) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (s, t) = (Arc::clone(store), tenant.clone());
        tasks.push(tokio::spawn(async move {
            s.commit(Mutation::Record, vec![(t, event(i))]).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("durable append");
    }
    start.elapsed()
}

type Samples = Arc<Mutex<Vec<f64>>>;

fn append(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    group_rate: &Samples,
    single_rate: &Samples,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("receipt_append");
    g.sample_size(10).measurement_time(Duration::from_secs(8));

    let (store, tenant) = open(&dir, "group.db", 2048);
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("group_commit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = rt.block_on(burst(&store, &tenant, BURST));
                group_rate
                    .lock()
                    .expect("lock")
                    .push(BURST as f64 / d.as_secs_f64());
                total += d;
            }
            total
        })
    });

    let (store, tenant) = open(&dir, "single.db", 1);
    g.throughput(Throughput::Elements(BURST_SINGLE as u64));
    g.bench_function("fsync_per_receipt", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = rt.block_on(burst(&store, &tenant, BURST_SINGLE));
                single_rate
                    .lock()
                    .expect("lock")
                    .push(BURST_SINGLE as f64 / d.as_secs_f64());
                total += d;
            }
            total
        })
    });
    g.finish();
}

fn hashing(c: &mut Criterion, fixed: &Samples, generic: &Samples) {
    let receipt = Receipt::seal(
        event(7),
        "ten_01kaw7x0b8f3yq2m9v5n6c4d2j",
        42,
        1_763_900_000_000,
        &ReceiptHash([3; 32]),
    );
    let value = serde_json::to_value(&receipt).expect("value");
    let mut g = c.benchmark_group("receipt_hash");
    g.bench_function("fixed_order_struct", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(std::hint::black_box(&receipt).canonical_and_hash());
            }
            let d = start.elapsed();
            fixed
                .lock()
                .expect("lock")
                .push(d.as_nanos() as f64 / iters as f64);
            d
        })
    });
    g.bench_function("generic_value_jcs", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(
                    mandate_core::jcs::sha256(std::hint::black_box(&value)).expect("jcs"),
                );
            }
            let d = start.elapsed();
            generic
                .lock()
                .expect("lock")
                .push(d.as_nanos() as f64 / iters as f64);
            d
        })
    });
    g.finish();
}

fn median(samples: &Samples) -> f64 {
    let mut v = samples.lock().expect("lock").clone();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = Criterion::default().configure_from_args();
    let (group_rate, single_rate, fixed, generic) = Default::default();
    append(&mut c, &rt, &group_rate, &single_rate);
    hashing(&mut c, &fixed, &generic);
    c.final_summary();

    let (g, s) = (median(&group_rate), median(&single_rate));
    let (f, v) = (median(&fixed), median(&generic));
    println!();
    println!("== ledger summary (medians of this run) ==");
    println!("group commit          {g:>12.0} durable receipts/s   (baseline: fsync per receipt)");
    println!("fsync per receipt     {s:>12.0} durable receipts/s");
    println!("ratio                 {:>12.1}x", g / s);
    println!("hash, fixed-order     {f:>12.0} ns/receipt           (baseline: generic Value JCS)");
    println!("hash, generic JCS     {v:>12.0} ns/receipt");
    println!("ratio                 {:>12.1}x faster", v / f);
}
