//! Ledger proofs: append + integrate throughput against group commit alone, proof generation
//! in a tree of 1 M leaves, and offline verification of a 1 M-receipt export.
//!
//! Run: `cargo bench -p mandate-store --bench proofs`. It builds a 1 M-receipt ledger through
//! `Store::commit` first (about a minute, ~2 GB in the temp directory; `PROOFS_LEAVES=N` changes
//! the size), prints criterion's estimates, and at the end medians and ratios against the
//! baselines measured in the same run.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark: a failure must abort the run"
)]

use std::io::{BufReader, BufWriter, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ed25519_dalek::SigningKey;
use mandate_core::checkpoint::{Checkpoint, NoteSigner};
use mandate_core::id::{ApiKeyId, HumanId, TenantId};
use mandate_core::merkle::{verify_consistency, verify_inclusion};
use mandate_core::receipt::{Actor, Event, EventKind, Outcome};
use mandate_store::ledger::export::{AuditOptions, TrustedKeys, verify_export};
use mandate_store::sqlite::ledger::{LedgerOptions, SqliteLedger};
use mandate_store::sqlite::{SqliteOptions, SqliteStore};
use mandate_store::{
    Human, HumanStatus, LedgerStore, Mutation, NewApiKey, Role, Store, SystemClock, Tenant,
};

/// Concurrent appenders per measured burst (as in the `ledger` bench).
const BURST: usize = 4_000;

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

fn open(
    rt: &tokio::runtime::Runtime,
    dir: &tempfile::TempDir,
    name: &str,
) -> (Arc<dyn Store>, Arc<SqliteLedger>, TenantId) {
    let path = dir.path().join(name);
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(SqliteOptions::new(&path), Arc::new(SystemClock)).expect("open"),
    );
    let ledger = Arc::new(SqliteLedger::open(LedgerOptions::new(&path)).expect("ledger"));
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
    rt.block_on(store.commit(
        Mutation::CreateTenant {
            tenant,
            owner,
            api_key,
        },
        vec![(id.clone(), event(0))],
    ))
    .expect("seed tenant");
    (store, ledger, id)
}

async fn burst(store: &Arc<dyn Store>, tenant: &TenantId, n: usize, offset: usize) {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (s, t) = (Arc::clone(store), tenant.clone());
        tasks.push(tokio::spawn(async move {
            s.commit(Mutation::Record, vec![(t, event(offset + i))])
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("durable append");
    }
}

type Samples = Arc<Mutex<Vec<f64>>>;

fn median(samples: &Samples) -> f64 {
    let mut v = samples.lock().expect("lock").clone();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Group commit alone vs group commit with the integrator running (every 200 ms, as in the
/// server), each burst timed until its receipts are durable **and** integrated. The two run in
/// alternation, burst by burst, so that the shared machine's load drifts over both alike; the
/// summary takes the median of the per-round ratios.
fn append_integrate(
    rt: &tokio::runtime::Runtime,
    alone: &Samples,
    with: &Samples,
    ratio: &Samples,
) {
    const ROUNDS: usize = 15;
    let dir = tempfile::tempdir().expect("tempdir");
    let (store_a, _, tenant_a) = open(rt, &dir, "alone.db");
    let (store_b, ledger, tenant_b) = open(rt, &dir, "with.db");
    let running = Arc::new(AtomicBool::new(true));
    let integrator = {
        let (ledger, running) = (Arc::clone(&ledger), Arc::clone(&running));
        rt.spawn(async move {
            while running.load(Ordering::Relaxed) {
                ledger.integrate().await.expect("integrate");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // One warm-up round each.
    for round in 0..=ROUNDS {
        let start = Instant::now();
        rt.block_on(burst(&store_a, &tenant_a, BURST, 0));
        let a = BURST as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        rt.block_on(async {
            burst(&store_b, &tenant_b, BURST, 0).await;
            ledger.integrate_tenant(&tenant_b).await.expect("catch up");
        });
        let w = BURST as f64 / start.elapsed().as_secs_f64();
        if round > 0 {
            alone.lock().expect("lock").push(a);
            with.lock().expect("lock").push(w);
            ratio.lock().expect("lock").push(w / a);
        }
    }
    running.store(false, Ordering::Relaxed);
    rt.block_on(integrator).expect("integrator");
    let head = rt.block_on(ledger.tree_head(&tenant_b)).expect("head");
    assert_eq!(
        head.size,
        (ROUNDS as u64 + 1) * BURST as u64 + 1,
        "all integrated"
    );
}

/// A large ledger, integrated, exported and signed.
struct Big {
    _dir: tempfile::TempDir,
    ledger: Arc<SqliteLedger>,
    tenant: TenantId,
    size: u64,
    export: std::path::PathBuf,
    note: String,
    keys: TrustedKeys,
    append_secs: f64,
    integrate_secs: f64,
    export_bytes: u64,
}

fn build_big(rt: &tokio::runtime::Runtime, leaves: usize) -> Big {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, ledger, tenant) = open(rt, &dir, "big.db");
    eprintln!("building a ledger of {leaves} receipts…");
    let start = Instant::now();
    let mut written = 1;
    while written < leaves {
        let n = BURST.min(leaves - written);
        rt.block_on(burst(&store, &tenant, n, written));
        written += n;
    }
    let append_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let size = rt
        .block_on(ledger.integrate_tenant(&tenant))
        .expect("integrate");
    let integrate_secs = start.elapsed().as_secs_f64();
    assert_eq!(size, leaves as u64);

    let export = dir.path().join("export.jsonl");
    let mut out = BufWriter::new(std::fs::File::create(&export).expect("export file"));
    let mut after = 0;
    loop {
        let page = rt
            .block_on(store.receipts(&tenant, after, 10_000))
            .expect("receipts");
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            writeln!(
                out,
                "{{\"hash\":\"{}\",\"receipt\":{},\"seq\":{}}}",
                mandate_core::encoding::hex(&r.hash),
                r.body,
                r.seq
            )
            .expect("write");
        }
    }
    out.flush().expect("flush");
    drop(out);
    let export_bytes = std::fs::metadata(&export).expect("metadata").len();

    let head = rt.block_on(ledger.tree_head(&tenant)).expect("head");
    let origin = format!("bench.example/mandate/{tenant}");
    let signer = NoteSigner::new(&origin, SigningKey::from_bytes(&[7; 32])).expect("signer");
    let note = signer
        .sign_checkpoint(&Checkpoint::new(origin, head.size, head.root, vec![]).expect("cp"))
        .expect("sign");
    Big {
        _dir: dir,
        ledger,
        tenant,
        size,
        export,
        note,
        keys: TrustedKeys::Verifiers(vec![signer.verifier()]),
        append_secs,
        integrate_secs,
        export_bytes,
    }
}

/// A deterministic spread of indexes.
fn spread(i: u64, n: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
}

fn proofs(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    big: &Big,
    inclusion: &Samples,
    consistency: &Samples,
) {
    let mut g = c.benchmark_group("proofs_1m");
    let n = big.size;
    // Every proof is checked once before timing.
    let head = rt
        .block_on(big.ledger.tree_head(&big.tenant))
        .expect("head");
    for i in 0..100 {
        let p = rt
            .block_on(big.ledger.inclusion_proof(&big.tenant, spread(i, n), n))
            .expect("inclusion");
        verify_inclusion(p.index, n, &p.leaf_hash, &p.proof, &head.root).expect("verifies");
        let from = spread(i, n) + 1;
        let p = rt
            .block_on(big.ledger.consistency_proof(&big.tenant, from, n))
            .expect("consistency");
        verify_consistency(from, n, &p.from_root, &head.root, &p.proof).expect("verifies");
    }
    let mut i = 0u64;
    g.bench_function("inclusion_proof", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                i += 1;
                let p = rt
                    .block_on(big.ledger.inclusion_proof(&big.tenant, spread(i, n), n))
                    .expect("inclusion");
                std::hint::black_box(p);
            }
            let d = start.elapsed();
            inclusion
                .lock()
                .expect("lock")
                .push(d.as_secs_f64() * 1e6 / iters as f64);
            d
        })
    });
    g.bench_function("consistency_proof", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                i += 1;
                let p = rt
                    .block_on(
                        big.ledger
                            .consistency_proof(&big.tenant, spread(i, n) + 1, n),
                    )
                    .expect("consistency");
                std::hint::black_box(p);
            }
            let d = start.elapsed();
            consistency
                .lock()
                .expect("lock")
                .push(d.as_secs_f64() * 1e6 / iters as f64);
            d
        })
    });
    g.finish();
}

/// CPU seconds (user + system, all threads) this process has used so far, from
/// `/proc/self/stat` (Linux; clock ticks of 1/100 s); 0 elsewhere. Quoted next to wall times
/// because it drifts much less with the load of a shared machine.
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime) are 12th and 13th after the command name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// One verification: its wall time and the CPU time it used.
fn verify_timed(big: &Big, options: &AuditOptions) -> (Duration, f64) {
    let cpu = cpu_secs();
    let wall = verify_once(big, options);
    (wall, cpu_secs() - cpu)
}

fn verify_once(big: &Big, options: &AuditOptions) -> Duration {
    let start = Instant::now();
    let report = verify_export(
        || {
            Ok(BufReader::with_capacity(
                1 << 20,
                std::fs::File::open(&big.export)?,
            ))
        },
        big.note.as_bytes(),
        None,
        &big.keys,
        options,
    )
    .expect("the export verifies");
    assert_eq!(report.count, big.size);
    start.elapsed()
}

fn offline(c: &mut Criterion, big: &Big, fast: &Samples) {
    let mut g = c.benchmark_group("offline_verify_1m");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(big.size));
    let options = AuditOptions::default();
    g.bench_function("export", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = verify_once(big, &options);
                fast.lock().expect("lock").push(d.as_secs_f64());
                total += d;
            }
            total
        })
    });
    g.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let leaves: usize = std::env::var("PROOFS_LEAVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut c = Criterion::default().configure_from_args();
    let (alone, with, ratio, inclusion, consistency, fast): (
        Samples,
        Samples,
        Samples,
        Samples,
        Samples,
        Samples,
    ) = Default::default();
    append_integrate(&rt, &alone, &with, &ratio);
    let big = build_big(&rt, leaves);
    proofs(&mut c, &rt, &big, &inclusion, &consistency);
    offline(&mut c, &big, &fast);
    // The generic RFC 8785 path once, for reference, and each path's CPU time.
    let (generic, generic_cpu) = verify_timed(
        &big,
        &AuditOptions {
            generic_jcs: true,
            ..AuditOptions::default()
        },
    );
    let (one_thread, one_thread_cpu) = verify_timed(
        &big,
        &AuditOptions {
            threads: 1,
            ..AuditOptions::default()
        },
    );
    let (two_threads, two_threads_cpu) = verify_timed(&big, &AuditOptions::default());
    c.final_summary();

    let (a, w) = (median(&alone), median(&with));
    println!();
    println!(
        "== ledger proofs summary (medians of this run, {} leaves) ==",
        big.size
    );
    println!("group commit alone         {a:>10.0} receipts/s      (baseline)");
    println!(
        "append + integrate         {w:>10.0} receipts/s      ({:.1} % of the baseline, median of {} alternating rounds)",
        100.0 * median(&ratio),
        ratio.lock().expect("lock").len()
    );
    println!(
        "building: append {:.1} s ({:.0}/s), integrate {:.1} s ({:.0} leaves/s)",
        big.append_secs,
        big.size as f64 / big.append_secs,
        big.integrate_secs,
        big.size as f64 / big.integrate_secs
    );
    println!(
        "inclusion proof            {:>10.1} µs             (target < 1000 µs)",
        median(&inclusion)
    );
    println!(
        "consistency proof          {:>10.1} µs",
        median(&consistency)
    );
    println!(
        "offline verify, fast path  {:>10.2} s              (target < 3 s; export {:.0} MB)",
        median(&fast),
        big.export_bytes as f64 / 1e6
    );
    println!(
        "offline verify, once       {:>10.2} s wall, {two_threads_cpu:.2} s CPU (default threads)",
        two_threads.as_secs_f64()
    );
    println!(
        "offline verify, 1 thread   {:>10.2} s wall, {one_thread_cpu:.2} s CPU",
        one_thread.as_secs_f64()
    );
    println!(
        "offline verify, generic    {:>10.2} s wall, {generic_cpu:.2} s CPU (every receipt through ChainVerifier)",
        generic.as_secs_f64()
    );
    println!(
        "load average at the end    {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
