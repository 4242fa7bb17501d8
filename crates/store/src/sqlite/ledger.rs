//! The SQLite [`LedgerStore`]: integration of sequenced receipts into per-tenant Merkle trees,
//! proofs and stored checkpoints, on connections of its own.
//!
//! Tables (the ledger-proofs migration in [`super::schema`]): `merkle_nodes(tenant, level, idx, hash)` holds the complete subtrees of
//! each tenant's tree in the layout of [`mandate_core::merkle`] (level 0 = leaf hashes);
//! `merkle_trees(tenant, size, root)` the integrated size; `checkpoints(tenant, size, root, note,
//! kid, signed_at)` the signed checkpoints.
//!
//! Integration reads the receipts past a tenant's integrated size and hashes them **outside**
//! any write transaction, then writes the new rows in one short `BEGIN IMMEDIATE` transaction per
//! batch, so the group-commit writer waits at most for those inserts. Its connection runs with
//! `synchronous=NORMAL`: everything it writes is derived from receipts that the writer already
//! made durable, so a power cut can only lose tree rows that the next integration rewrites
//! identically.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mandate_core::id::TenantId;
use mandate_core::merkle::{
    self, EMPTY_ROOT, Hash, MemoryTree, MerkleError, NodeId, leaf_hash, nodes_completed_by_append,
    nodes_for_consistency, nodes_for_inclusion, nodes_for_root, verify_consistency,
    verify_inclusion,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::read::corrupt;
use super::{ReadPool, open_conn, schema, unavailable};
use crate::StoreError;
use crate::ledger::{
    ConsistencyProof, InclusionProof, LedgerError, LedgerStore, StoredCheckpoint, TreeHead,
};

/// Options of the SQLite ledger.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// The database file (the one [`super::SqliteStore`] writes receipts to).
    pub path: PathBuf,
    /// Most leaves integrated per write transaction.
    pub batch: u64,
    /// Reader connections kept open for proofs.
    pub readers: usize,
}

impl LedgerOptions {
    /// Defaults for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            batch: 4096,
            readers: 2,
        }
    }
}

/// The SQLite ledger engine.
pub struct SqliteLedger {
    integrator: Arc<Mutex<Integrator>>,
    readers: Arc<ReadPool>,
    batch: u64,
}

/// The integrator's connection, and the highest receipt `rowid` it has looked at: receipts are
/// append-only, so the tenants with new receipts are those of rows past it, found without a scan.
struct Integrator {
    conn: Connection,
    seen: Option<i64>,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger")
            .field("path", &self.readers.path)
            .finish_non_exhaustive()
    }
}

impl SqliteLedger {
    /// Opens the ledger side of the database at `options.path`, migrating it if needed.
    pub fn open(options: LedgerOptions) -> Result<Self, StoreError> {
        let conn = open_conn(&options.path, false)?;
        schema::migrate(&conn)?;
        // Derived data only: see the module docs.
        conn.execute_batch("PRAGMA synchronous=NORMAL;")
            .map_err(unavailable)?;
        Ok(Self {
            integrator: Arc::new(Mutex::new(Integrator { conn, seen: None })),
            readers: Arc::new(ReadPool {
                path: options.path,
                idle: Mutex::new(Vec::new()),
                max_idle: options.readers.max(1),
            }),
            batch: options.batch.max(1),
        })
    }

    /// Runs `f` on the integrator's connection, off the async threads.
    async fn integrating<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Integrator, u64) -> Result<T, LedgerError> + Send + 'static,
    {
        let integrator = Arc::clone(&self.integrator);
        let batch = self.batch;
        tokio::task::spawn_blocking(move || {
            let mut guard = integrator
                .lock()
                .map_err(|_| StoreError::Unavailable("the ledger integrator failed".into()))?;
            f(&mut guard, batch)
        })
        .await
        .map_err(|_| StoreError::Unavailable("the ledger integrator failed".into()))?
    }

    /// Runs `f` on a reader connection.
    async fn reading<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        // The pool's error type is `StoreError`; carry ours through it untouched.
        self.readers.run(move |c| Ok(f(c))).await?
    }
}

#[async_trait]
impl LedgerStore for SqliteLedger {
    async fn integrate(&self) -> Result<Vec<(TenantId, u64)>, LedgerError> {
        self.integrating(|i, batch| {
            let c = &i.conn;
            let top: i64 = c
                .prepare_cached("SELECT COALESCE(MAX(rowid), 0) FROM receipts")
                .map_err(unavailable)?
                .query_row([], |r| r.get(0))
                .map_err(unavailable)?;
            // Every tenant on the first pass; afterwards only those with receipts past `seen`.
            let candidates = match i.seen {
                None => tenants(c)?,
                Some(seen) if seen >= top => Vec::new(),
                Some(seen) => tenants_after(c, seen)?,
            };
            let mut grown = Vec::new();
            for tenant in candidates {
                let before = tree_head(c, &tenant)?.size;
                // One damaged tenant must not stop the others' logs.
                match integrate_tenant(c, &tenant, batch) {
                    Ok(after) if after > before => grown.push((tenant, after)),
                    Ok(_) => {}
                    Err(e) => tracing::error!(tenant = %tenant, error = %e, "integration failed"),
                }
            }
            i.seen = Some(top);
            Ok(grown)
        })
        .await
    }

    async fn integrate_tenant(&self, tenant: &TenantId) -> Result<u64, LedgerError> {
        let t = tenant.clone();
        self.integrating(move |i, batch| integrate_tenant(&i.conn, &t, batch))
            .await
    }

    async fn tree_head(&self, tenant: &TenantId) -> Result<TreeHead, LedgerError> {
        let t = tenant.clone();
        self.reading(move |c| tree_head(c, &t)).await
    }

    async fn root_at(&self, tenant: &TenantId, size: u64) -> Result<Hash, LedgerError> {
        let t = tenant.clone();
        self.reading(move |c| root_at(c, &t, size)).await
    }

    async fn inclusion_proof(
        &self,
        tenant: &TenantId,
        index: u64,
        size: u64,
    ) -> Result<InclusionProof, LedgerError> {
        let t = tenant.clone();
        self.reading(move |c| inclusion(c, &t, index, size)).await
    }

    async fn consistency_proof(
        &self,
        tenant: &TenantId,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        let t = tenant.clone();
        self.reading(move |c| consistency(c, &t, from, to)).await
    }

    async fn checkpoint(
        &self,
        tenant: &TenantId,
        size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let t = tenant.clone();
        self.reading(move |c| checkpoint(c, &t, size)).await
    }

    async fn save_checkpoint(
        &self,
        tenant: &TenantId,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), LedgerError> {
        let (t, cp) = (tenant.clone(), checkpoint.clone());
        self.integrating(move |i, _| save_checkpoint(&i.conn, &t, &cp))
            .await
    }
}

fn tenants(c: &Connection) -> Result<Vec<TenantId>, LedgerError> {
    let mut stmt = c
        .prepare_cached("SELECT id FROM tenants ORDER BY id")
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let id = row.map_err(unavailable)?;
        out.push(TenantId::parse(&id).map_err(|_| corrupt("tenant id"))?);
    }
    Ok(out)
}

/// Tenants with receipts whose `rowid` is past `seen` (a range scan of the newest rows only).
fn tenants_after(c: &Connection, seen: i64) -> Result<Vec<TenantId>, LedgerError> {
    let mut stmt = c
        .prepare_cached("SELECT DISTINCT tenant FROM receipts WHERE rowid > ?1")
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![seen], |r| r.get::<_, String>(0))
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let id = row.map_err(unavailable)?;
        out.push(TenantId::parse(&id).map_err(|_| corrupt("tenant id"))?);
    }
    Ok(out)
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

fn to_i64(v: u64) -> i64 {
    // Sizes and indexes beyond i64::MAX cannot exist in SQLite; saturate so lookups miss.
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn hash_of(bytes: &[u8], what: &str) -> Result<Hash, StoreError> {
    Hash::from_slice(bytes).ok_or_else(|| corrupt(what))
}

fn tree_head(c: &Connection, tenant: &TenantId) -> Result<TreeHead, LedgerError> {
    let row: Option<(i64, Vec<u8>)> = c
        .prepare_cached("SELECT size, root FROM merkle_trees WHERE tenant = ?1")
        .map_err(unavailable)?
        .query_row(params![tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(unavailable)?;
    match row {
        None => Ok(TreeHead {
            size: 0,
            root: EMPTY_ROOT,
        }),
        Some((size, root)) => Ok(TreeHead {
            size: to_u64(size, "tree size")?,
            root: hash_of(&root, "tree root")?,
        }),
    }
}

/// Subtrees below this level (under 16 leaves) are not stored: they are folded from the receipt
/// hashes, one block of [`BLOCK`] leaves at a time, when needed. That keeps the table at about one
/// row per 8 receipts instead of two per receipt, and integration cheap.
const STORED_FROM_LEVEL: u8 = 4;

/// Leaves per block of unstored subtrees.
const BLOCK: u64 = 1 << STORED_FROM_LEVEL;

/// The complete nodes `ids` of `tenant`'s tree that exist (missing ones are left out, so the
/// Merkle functions report them as [`MerkleError::MissingNode`]): stored ones from
/// `merkle_nodes`, lower ones folded from the receipt hashes of their block.
fn fetch_nodes(
    c: &Connection,
    tenant: &TenantId,
    ids: impl IntoIterator<Item = NodeId>,
) -> Result<HashMap<NodeId, Hash>, LedgerError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT hash FROM merkle_nodes WHERE tenant = ?1 AND level = ?2 AND idx = ?3",
        )
        .map_err(unavailable)?;
    let mut out = HashMap::new();
    let mut blocks: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
    for id in ids {
        if out.contains_key(&id) {
            continue;
        }
        if id.level < STORED_FROM_LEVEL {
            if let Some(range) = id.leaf_range() {
                blocks.entry(range.start / BLOCK).or_default().push(id);
            }
            continue;
        }
        let hash: Option<Vec<u8>> = stmt
            .query_row(params![tenant.as_str(), id.level, to_i64(id.index)], |r| {
                r.get(0)
            })
            .optional()
            .map_err(unavailable)?;
        if let Some(hash) = hash {
            out.insert(id, hash_of(&hash, "merkle node")?);
        }
    }
    for (block, wanted) in blocks {
        let first = block * BLOCK;
        let leaves = sequenced_after(c, tenant, first, BLOCK)?;
        let tree = MemoryTree::from_leaf_hashes(leaves.iter().map(|h| leaf_hash(h)))?;
        for id in wanted {
            // Node (l, i) is node (l, i - first / 2^l) of the block's own tree.
            let local = NodeId::new(id.level, id.index - (first >> id.level));
            if let Some(hash) = tree.node(local) {
                out.insert(id, hash);
            }
        }
    }
    Ok(out)
}

/// Checks that `size` is within the integrated tree.
fn within(c: &Connection, tenant: &TenantId, size: u64) -> Result<TreeHead, LedgerError> {
    let head = tree_head(c, tenant)?;
    if size > head.size {
        return Err(MerkleError::BeyondTree {
            requested: size,
            size: head.size,
        }
        .into());
    }
    Ok(head)
}

/// Receipts changed after integration, found by a self-check.
fn rewritten() -> LedgerError {
    StoreError::Corrupt(
        "the receipts no longer match the Merkle tree: they were changed after integration".into(),
    )
    .into()
}

/// The root at `size`, checked against the root integration recorded: the lowest levels are
/// folded from the receipts, so a root at an older size is proved consistent with the head
/// before anyone signs or serves it (cf. ct-merkle's `self_check`).
fn root_at(c: &Connection, tenant: &TenantId, size: u64) -> Result<Hash, LedgerError> {
    let head = within(c, tenant, size)?;
    if size == head.size {
        return Ok(head.root);
    }
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    let ids = nodes_for_root(size)
        .into_iter()
        .chain(nodes_for_consistency(size, head.size));
    let nodes = fetch_nodes(c, tenant, ids)?;
    let get = |id: NodeId| nodes.get(&id).copied();
    let root = merkle::root(size, get)?;
    let proof = merkle::consistency_proof(size, head.size, get)?;
    verify_consistency(size, head.size, &root, &head.root, &proof).map_err(|_| rewritten())?;
    Ok(root)
}

fn inclusion(
    c: &Connection,
    tenant: &TenantId,
    index: u64,
    size: u64,
) -> Result<InclusionProof, LedgerError> {
    within(c, tenant, size)?;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size }.into());
    }
    let root = root_at(c, tenant, size)?;
    let leaf_id = NodeId::new(0, index);
    let ids = nodes_for_inclusion(index, size)
        .into_iter()
        .chain([leaf_id]);
    let nodes = fetch_nodes(c, tenant, ids)?;
    let get = |id: NodeId| nodes.get(&id).copied();
    let proof = merkle::inclusion_proof(index, size, get)?;
    let leaf = get(leaf_id).ok_or(MerkleError::MissingNode(leaf_id))?;
    // A receipt changed after integration gives a path that misses the recorded root.
    verify_inclusion(index, size, &leaf, &proof, &root).map_err(|_| rewritten())?;
    let receipt_hash = sequenced_after(c, tenant, index, 1)?
        .first()
        .copied()
        .ok_or(MerkleError::MissingNode(leaf_id))?;
    Ok(InclusionProof {
        index,
        size,
        receipt_hash,
        leaf_hash: leaf,
        proof,
        root,
    })
}

fn consistency(
    c: &Connection,
    tenant: &TenantId,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof, LedgerError> {
    if from > to {
        return Err(MerkleError::SizeOrder {
            old_size: from,
            new_size: to,
        }
        .into());
    }
    within(c, tenant, to)?;
    let from_root = root_at(c, tenant, from)?;
    let to_root = root_at(c, tenant, to)?;
    let nodes = fetch_nodes(c, tenant, nodes_for_consistency(from, to))?;
    let proof = merkle::consistency_proof(from, to, |id| nodes.get(&id).copied())?;
    verify_consistency(from, to, &from_root, &to_root, &proof).map_err(|_| rewritten())?;
    Ok(ConsistencyProof {
        from,
        to,
        from_root,
        to_root,
        proof,
    })
}

fn checkpoint(
    c: &Connection,
    tenant: &TenantId,
    size: Option<u64>,
) -> Result<Option<StoredCheckpoint>, LedgerError> {
    let sql = if size.is_some() {
        "SELECT size, root, note, kid, signed_at FROM checkpoints \
         WHERE tenant = ?1 AND size = ?2"
    } else {
        "SELECT size, root, note, kid, signed_at FROM checkpoints \
         WHERE tenant = ?1 AND ?2 IS NULL ORDER BY size DESC LIMIT 1"
    };
    let row: Option<(i64, Vec<u8>, String, String, i64)> = c
        .prepare_cached(sql)
        .map_err(unavailable)?
        .query_row(params![tenant.as_str(), size.map(to_i64)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()
        .map_err(unavailable)?;
    let Some((size, root, note, kid, signed_at)) = row else {
        return Ok(None);
    };
    Ok(Some(StoredCheckpoint {
        size: to_u64(size, "checkpoint size")?,
        root: hash_of(&root, "checkpoint root")?,
        note,
        kid,
        signed_at,
    }))
}

fn save_checkpoint(
    c: &Connection,
    tenant: &TenantId,
    cp: &StoredCheckpoint,
) -> Result<(), LedgerError> {
    // Nodes never change once written, so the root can be checked before the transaction.
    if root_at(c, tenant, cp.size)? != cp.root {
        return Err(LedgerError::CheckpointMismatch { size: cp.size });
    }
    c.prepare_cached(
        "INSERT OR REPLACE INTO checkpoints (tenant, size, root, note, kid, signed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .map_err(unavailable)?
    .execute(params![
        tenant.as_str(),
        to_i64(cp.size),
        &cp.root.0[..],
        cp.note,
        cp.kid,
        cp.signed_at
    ])
    .map_err(unavailable)?;
    Ok(())
}

/// Integrates every receipt of `tenant` sequenced past its tree, `batch` leaves per write
/// transaction; returns the new size.
fn integrate_tenant(c: &Connection, tenant: &TenantId, batch: u64) -> Result<u64, LedgerError> {
    loop {
        let head = tree_head(c, tenant)?;
        let leaves = sequenced_after(c, tenant, head.size, batch)?;
        if leaves.is_empty() {
            let last = last_seq(c, tenant)?;
            if last < head.size {
                // The receipts end before the tree does: they were removed after integration.
                return Err(StoreError::Corrupt(format!(
                    "the tree holds {} leaves but the chain ends at receipt {last}",
                    head.size
                ))
                .into());
            }
            return Ok(head.size);
        }
        let (rows, new_head) = extend(c, tenant, head.size, &leaves)?;
        write_batch(c, tenant, head.size, &rows, new_head)?;
        if (leaves.len() as u64) < batch {
            return Ok(new_head.size);
        }
    }
}

/// Receipt hashes of `tenant` with `seq > size`, ascending, at most `limit`, checked to continue
/// the tree without a gap.
fn sequenced_after(
    c: &Connection,
    tenant: &TenantId,
    size: u64,
    limit: u64,
) -> Result<Vec<[u8; 32]>, LedgerError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT seq, hash FROM receipts WHERE tenant = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![tenant.as_str(), to_i64(size), to_i64(limit)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, hash) = row.map_err(unavailable)?;
        let expected = size + out.len() as u64 + 1;
        if to_u64(seq, "receipt seq")? != expected {
            return Err(StoreError::Corrupt(format!(
                "receipt {expected} is missing from the chain; found {seq}"
            ))
            .into());
        }
        out.push(
            <[u8; 32]>::try_from(hash.as_slice())
                .map_err(|_| corrupt(&format!("hash of receipt {expected}")))?,
        );
    }
    Ok(out)
}

fn last_seq(c: &Connection, tenant: &TenantId) -> Result<u64, LedgerError> {
    let last: Option<i64> = c
        .prepare_cached("SELECT MAX(seq) FROM receipts WHERE tenant = ?1")
        .map_err(unavailable)?
        .query_row(params![tenant.as_str()], |r| r.get(0))
        .map_err(unavailable)?;
    Ok(to_u64(last.unwrap_or(0), "receipt seq")?)
}

/// The rows that appending `receipt_hashes` to the tree of `size` leaves writes, and the new head.
/// Pure hashing over the tree's right edge, read once.
fn extend(
    c: &Connection,
    tenant: &TenantId,
    size: u64,
    receipt_hashes: &[[u8; 32]],
) -> Result<(Vec<(NodeId, Hash)>, TreeHead), LedgerError> {
    // The left siblings an append reads are exactly the complete nodes of the current root.
    let mut nodes = fetch_nodes(c, tenant, nodes_for_root(size))?;
    let mut rows = Vec::with_capacity(receipt_hashes.len() * 2);
    let mut n = size;
    for receipt_hash in receipt_hashes {
        let added =
            nodes_completed_by_append(n, leaf_hash(receipt_hash), |id| nodes.get(&id).copied())?;
        for &(id, hash) in &added {
            nodes.insert(id, hash);
        }
        rows.extend(added);
        n += 1;
    }
    let root = merkle::root(n, |id| nodes.get(&id).copied())?;
    Ok((rows, TreeHead { size: n, root }))
}

/// Writes one integration batch in its own short transaction.
fn write_batch(
    c: &Connection,
    tenant: &TenantId,
    expected_size: u64,
    rows: &[(NodeId, Hash)],
    head: TreeHead,
) -> Result<(), LedgerError> {
    c.execute_batch("BEGIN IMMEDIATE").map_err(unavailable)?;
    let written = (|| -> Result<(), LedgerError> {
        // Another integrator on the same file may have got here first.
        if tree_head(c, tenant)?.size != expected_size {
            return Err(StoreError::Conflict("the tree was extended concurrently".into()).into());
        }
        let mut insert = c
            .prepare_cached(
                "INSERT INTO merkle_nodes (tenant, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(unavailable)?;
        // Lower levels are folded from the receipts when needed (see `STORED_FROM_LEVEL`).
        for (id, hash) in rows.iter().filter(|(id, _)| id.level >= STORED_FROM_LEVEL) {
            insert
                .execute(params![
                    tenant.as_str(),
                    id.level,
                    to_i64(id.index),
                    &hash.0[..]
                ])
                .map_err(unavailable)?;
        }
        c.prepare_cached(
            "INSERT INTO merkle_trees (tenant, size, root) VALUES (?1, ?2, ?3) \
             ON CONFLICT (tenant) DO UPDATE SET size = excluded.size, root = excluded.root",
        )
        .map_err(unavailable)?
        .execute(params![
            tenant.as_str(),
            to_i64(head.size),
            &head.root.0[..]
        ])
        .map_err(unavailable)?;
        Ok(())
    })();
    match written {
        Ok(()) => c.execute_batch("COMMIT").map_err(|e| {
            let _ = c.execute_batch("ROLLBACK");
            unavailable(e).into()
        }),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, reason = "tests")]
mod tests {
    use std::sync::Arc;

    use mandate_core::clock::FixedClock;
    use mandate_core::merkle::{MemoryTree, verify_consistency, verify_inclusion};
    use mandate_core::receipt::{Actor, Event, EventKind, Outcome};

    use super::*;
    use crate::sqlite::{SqliteOptions, SqliteStore};
    use crate::{Mutation, Store, conformance};

    fn record(i: usize) -> Event {
        Event {
            kind: EventKind::Record,
            actor: Actor::default(),
            on_behalf_of: None,
            delegation: None,
            token: None,
            action: Some("read".into()),
            resource: Some(format!("tickets/{i}")),
            decision: Outcome::Allow,
            reasons: vec![],
            request_hash: None,
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        store: SqliteStore,
        ledger: SqliteLedger,
    }

    fn fixture(batch: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.db");
        let store = SqliteStore::open(
            SqliteOptions::new(&path),
            Arc::new(FixedClock::new(1_700_000_000_000)),
        )
        .expect("open store");
        let mut options = LedgerOptions::new(&path);
        options.batch = batch;
        let ledger = SqliteLedger::open(options).expect("open ledger");
        Fixture {
            _dir: dir,
            path,
            store,
            ledger,
        }
    }

    async fn append(store: &SqliteStore, tenant: &TenantId, n: usize) {
        for i in 0..n {
            store
                .commit(Mutation::Record, vec![(tenant.clone(), record(i))])
                .await
                .expect("append");
        }
    }

    /// The tenant's receipt hashes as a memory tree, straight from the receipts.
    async fn expected(store: &SqliteStore, tenant: &TenantId) -> MemoryTree {
        let receipts = store.receipts(tenant, 0, 100_000).await.expect("receipts");
        MemoryTree::from_leaf_hashes(receipts.iter().map(|r| leaf_hash(&r.hash))).expect("tree")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn integration_matches_the_memory_tree_and_proofs_verify() {
        // A batch of 3 forces many transactions and frontier reloads.
        let f = fixture(3);
        let (tenant, _, _) = conformance::seed_tenant(&f.store, 0, "ops").await;
        let mut sizes = Vec::new();
        for round in 0..6 {
            append(&f.store, &tenant.id, round * 3 + 1).await;
            let size = f
                .ledger
                .integrate_tenant(&tenant.id)
                .await
                .expect("integrate");
            sizes.push(size);
            let tree = expected(&f.store, &tenant.id).await;
            assert_eq!(size, tree.size());
            let head = f.ledger.tree_head(&tenant.id).await.expect("head");
            assert_eq!(head.root, tree.root().expect("root"));
        }
        let tree = expected(&f.store, &tenant.id).await;
        let n = tree.size();
        for size in 1..=n {
            let root = f.ledger.root_at(&tenant.id, size).await.expect("root");
            assert_eq!(
                root,
                tree.root_at(size).expect("memory root"),
                "size {size}"
            );
            for index in [0, size / 2, size - 1] {
                let p = f
                    .ledger
                    .inclusion_proof(&tenant.id, index, size)
                    .await
                    .expect("inclusion");
                assert_eq!(p.proof, tree.inclusion_proof(index, size).expect("memory"));
                verify_inclusion(index, size, &p.leaf_hash, &p.proof, &p.root).expect("verifies");
                assert_eq!(leaf_hash(&p.receipt_hash), p.leaf_hash);
            }
            for from in [0, 1, size / 2, size] {
                let p = f
                    .ledger
                    .consistency_proof(&tenant.id, from, size)
                    .await
                    .expect("consistency");
                verify_consistency(from, size, &p.from_root, &p.to_root, &p.proof)
                    .expect("verifies");
            }
        }
        // Beyond the tree, and backwards, are refused.
        let beyond = f.ledger.inclusion_proof(&tenant.id, 0, n + 1).await;
        assert!(matches!(
            beyond,
            Err(LedgerError::Merkle(MerkleError::BeyondTree { .. }))
        ));
        let backwards = f.ledger.consistency_proof(&tenant.id, 2, 1).await;
        assert!(matches!(
            backwards,
            Err(LedgerError::Merkle(MerkleError::SizeOrder { .. }))
        ));
        let index = f.ledger.inclusion_proof(&tenant.id, n, n).await;
        assert!(matches!(
            index,
            Err(LedgerError::Merkle(MerkleError::IndexOutOfRange { .. }))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn integration_is_idempotent_and_tenants_have_separate_trees() {
        let f = fixture(4096);
        let (a, _, _) = conformance::seed_tenant(&f.store, 0, "a").await;
        let (b, _, _) = conformance::seed_tenant(&f.store, 1, "b").await;
        append(&f.store, &a.id, 10).await;
        append(&f.store, &b.id, 3).await;
        let mut grown = f.ledger.integrate().await.expect("integrate");
        grown.sort();
        let mut want = vec![(a.id.clone(), 11), (b.id.clone(), 4)];
        want.sort();
        assert_eq!(grown, want);
        assert!(f.ledger.integrate().await.expect("again").is_empty());
        // Later passes look only at tenants with new receipts, new tenants included.
        append(&f.store, &b.id, 2).await;
        let (c, _, _) = conformance::seed_tenant(&f.store, 2, "c").await;
        let mut grown = f.ledger.integrate().await.expect("more");
        grown.sort();
        let mut want = vec![(b.id.clone(), 6), (c.id.clone(), 1)];
        want.sort();
        assert_eq!(grown, want);
        let ta = expected(&f.store, &a.id).await;
        let tb = expected(&f.store, &b.id).await;
        assert_eq!(
            f.ledger.tree_head(&a.id).await.expect("a").root,
            ta.root().expect("a")
        );
        assert_eq!(
            f.ledger.tree_head(&b.id).await.expect("b").root,
            tb.root().expect("b")
        );
        assert_ne!(ta.root().expect("a"), tb.root().expect("b"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn integrating_during_a_burst_of_appends_loses_nothing() {
        let f = Arc::new(fixture(64));
        let (tenant, _, _) = conformance::seed_tenant(&f.store, 0, "ops").await;
        let mut tasks = Vec::new();
        for i in 0..400 {
            let (f, t) = (Arc::clone(&f), tenant.id.clone());
            tasks.push(tokio::spawn(async move {
                f.store
                    .commit(Mutation::Record, vec![(t, record(i))])
                    .await
                    .expect("append");
            }));
        }
        let integrator = {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                for _ in 0..50 {
                    f.ledger.integrate().await.expect("integrate");
                    tokio::task::yield_now().await;
                }
            })
        };
        for t in tasks {
            t.await.expect("join");
        }
        integrator.await.expect("join");
        let size = f.ledger.integrate_tenant(&tenant.id).await.expect("final");
        let tree = expected(&f.store, &tenant.id).await;
        assert_eq!(size, 401);
        // Only subtrees of 16 leaves and more are stored: 25 + 12 + 6 + 3 + 1.
        let count = |sql: &str| -> i64 {
            Connection::open(&f.path)
                .expect("open")
                .query_row(sql, [], |r| r.get(0))
                .expect("count")
        };
        assert_eq!(
            count("SELECT COUNT(*) FROM merkle_nodes WHERE level < 4"),
            0
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM merkle_nodes"),
            25 + 12 + 6 + 3 + 1
        );
        for index in [0, 15, 16, 200, 399, 400] {
            let p = f
                .ledger
                .inclusion_proof(&tenant.id, index, 401)
                .await
                .expect("inclusion");
            assert_eq!(p.proof, tree.inclusion_proof(index, 401).expect("memory"));
        }
        assert_eq!(
            f.ledger.tree_head(&tenant.id).await.expect("head").root,
            tree.root().expect("root")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_are_stored_only_when_the_tree_agrees() {
        let f = fixture(4096);
        let (tenant, _, _) = conformance::seed_tenant(&f.store, 0, "ops").await;
        append(&f.store, &tenant.id, 5).await;
        f.ledger.integrate().await.expect("integrate");
        assert_eq!(
            f.ledger.checkpoint(&tenant.id, None).await.expect("none"),
            None
        );
        let root3 = f.ledger.root_at(&tenant.id, 3).await.expect("root");
        let head = f.ledger.tree_head(&tenant.id).await.expect("head");
        let cp = |size, root, note: &str| StoredCheckpoint {
            size,
            root,
            note: note.into(),
            kid: "k1".into(),
            signed_at: 7,
        };
        f.ledger
            .save_checkpoint(&tenant.id, &cp(3, root3, "three"))
            .await
            .expect("save 3");
        f.ledger
            .save_checkpoint(&tenant.id, &cp(head.size, head.root, "six"))
            .await
            .expect("save 6");
        // A re-signature replaces the note of the same size.
        f.ledger
            .save_checkpoint(&tenant.id, &cp(3, root3, "three again"))
            .await
            .expect("replace");
        let latest = f.ledger.checkpoint(&tenant.id, None).await.expect("latest");
        assert_eq!(latest, Some(cp(6, head.root, "six")));
        let at3 = f
            .ledger
            .checkpoint(&tenant.id, Some(3))
            .await
            .expect("at 3");
        assert_eq!(at3.map(|c| c.note), Some("three again".to_owned()));
        assert_eq!(
            f.ledger.checkpoint(&tenant.id, Some(4)).await.expect("4"),
            None
        );
        let wrong = f
            .ledger
            .save_checkpoint(&tenant.id, &cp(3, head.root, "x"))
            .await;
        assert_eq!(wrong, Err(LedgerError::CheckpointMismatch { size: 3 }));
        let beyond = f
            .ledger
            .save_checkpoint(&tenant.id, &cp(7, head.root, "x"))
            .await;
        assert!(matches!(
            beyond,
            Err(LedgerError::Merkle(MerkleError::BeyondTree { .. }))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tampering_after_integration_is_reported_not_served() {
        let f = fixture(4096);
        let (tenant, _, _) = conformance::seed_tenant(&f.store, 0, "ops").await;
        append(&f.store, &tenant.id, 5).await;
        f.ledger.integrate().await.expect("integrate");
        let outside = Connection::open(&f.path).expect("open");
        outside
            .execute(
                "UPDATE receipts SET hash = zeroblob(32) WHERE tenant = ?1 AND seq = 2",
                params![tenant.id.as_str()],
            )
            .expect("tamper");
        let proof = f.ledger.inclusion_proof(&tenant.id, 1, 6).await;
        assert!(matches!(
            proof,
            Err(LedgerError::Store(StoreError::Corrupt(_)))
        ));
        // Nor is a root over the changed receipt offered for signing.
        let root = f.ledger.root_at(&tenant.id, 3).await;
        assert!(matches!(
            root,
            Err(LedgerError::Store(StoreError::Corrupt(_)))
        ));
        let proof = f.ledger.consistency_proof(&tenant.id, 2, 6).await;
        assert!(matches!(
            proof,
            Err(LedgerError::Store(StoreError::Corrupt(_)))
        ));
        outside
            .execute(
                "DELETE FROM receipts WHERE tenant = ?1 AND seq > 4",
                params![tenant.id.as_str()],
            )
            .expect("truncate");
        let integrated = f.ledger.integrate_tenant(&tenant.id).await;
        assert!(matches!(
            integrated,
            Err(LedgerError::Store(StoreError::Corrupt(_)))
        ));
    }
}
