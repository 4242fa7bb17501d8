//! The PostgreSQL [`LedgerStore`]: integration of sequenced receipts into per-tenant Merkle
//! trees, proofs and stored checkpoints — the tables and layout of the SQLite engine's ledger
//! (`merkle_nodes`, `merkle_trees`, `checkpoints`; subtrees under 16 leaves folded from the
//! receipt hashes when needed).
//!
//! Several replicas may run integration at the same time. Hashing happens outside any
//! transaction; each batch of rows is then written in one short transaction that takes a
//! **per-tenant** transaction-level advisory lock (never the sequencing lock, so appends are
//! not held up) and re-reads the tree's size under it. If another integrator extended the tree
//! meanwhile, the batch is dropped and integration resumes from the new size: the rows another
//! replica wrote are the rows this one would have written (they are a function of the
//! receipts), so running integration twice, or in two places at once, is harmless.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use mandate_core::id::TenantId;
use mandate_core::merkle::{
    self, EMPTY_ROOT, Hash, MemoryTree, MerkleError, NodeId, leaf_hash, nodes_completed_by_append,
    nodes_for_consistency, nodes_for_inclusion, nodes_for_root, verify_consistency,
    verify_inclusion,
};

use super::conn::{Conn, Pool, col, to_i64, unavailable};
use super::read::corrupt;
use super::{parse_url, schema};
use crate::StoreError;
use crate::ledger::{
    ConsistencyProof, InclusionProof, LedgerError, LedgerStore, StoredCheckpoint, TreeHead,
};

/// Options of the PostgreSQL ledger.
#[derive(Clone)]
pub struct LedgerOptions {
    /// The database (the one [`super::PostgresStore`] writes receipts to).
    pub url: String,
    /// Most leaves integrated per write transaction.
    pub batch: u64,
    /// Connections kept for integration and proofs.
    pub connections: usize,
}

impl std::fmt::Debug for LedgerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerOptions")
            .field("batch", &self.batch)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl LedgerOptions {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            batch: 4096,
            connections: 3,
        }
    }
}

/// The PostgreSQL ledger engine.
pub struct PostgresLedger {
    pool: Arc<Pool>,
    /// One integration at a time in this process (other replicas are handled by the lock).
    integrating: tokio::sync::Mutex<()>,
    batch: u64,
}

impl std::fmt::Debug for PostgresLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLedger").finish_non_exhaustive()
    }
}

/// Class of the per-tenant integration locks (`pg_advisory_xact_lock(int4, int4)`, a key space
/// apart from the one-`bigint` keys of sequencing and migrations).
const INTEGRATION_LOCK_CLASS: i32 = 0x4d4e_4454;

impl PostgresLedger {
    /// Connects to the ledger side of the database, migrating it if needed.
    pub async fn connect(options: LedgerOptions) -> Result<Self, StoreError> {
        let config = parse_url(&options.url)?;
        let pool = Arc::new(Pool::new(config, options.connections.max(2)));
        {
            let c = pool.get().await?;
            schema::migrate(&c).await?;
        }
        Ok(Self {
            pool,
            integrating: tokio::sync::Mutex::new(()),
            batch: options.batch.max(1),
        })
    }
}

#[async_trait]
impl LedgerStore for PostgresLedger {
    async fn integrate(&self) -> Result<Vec<(TenantId, u64)>, LedgerError> {
        let _one = self.integrating.lock().await;
        let c = self.pool.get().await?;
        // Tenants with receipts past their tree: one index probe per tenant.
        let rows = c
            .query(
                "SELECT t.id, COALESCE(m.size, 0) FROM tenants t \
                 LEFT JOIN merkle_trees m ON m.tenant = t.id \
                 WHERE EXISTS (SELECT 1 FROM receipts r WHERE r.tenant = t.id \
                   AND r.seq > COALESCE(m.size, 0)) ORDER BY t.id",
                &[],
            )
            .await
            .map_err(unavailable)?;
        let mut candidates = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = col(&r, 0)?;
            let size: i64 = col(&r, 1)?;
            candidates.push((
                TenantId::parse(&id).map_err(|_| corrupt("tenant id"))?,
                to_u64(size, "tree size")?,
            ));
        }
        let mut grown = Vec::new();
        for (tenant, before) in candidates {
            // One damaged tenant must not stop the others' logs.
            match integrate_tenant(&c, &tenant, self.batch).await {
                Ok(after) if after > before => grown.push((tenant, after)),
                Ok(_) => {}
                Err(e) => tracing::error!(tenant = %tenant, error = %e, "integration failed"),
            }
        }
        Ok(grown)
    }

    async fn integrate_tenant(&self, tenant: &TenantId) -> Result<u64, LedgerError> {
        let _one = self.integrating.lock().await;
        let c = self.pool.get().await?;
        integrate_tenant(&c, tenant, self.batch).await
    }

    async fn tree_head(&self, tenant: &TenantId) -> Result<TreeHead, LedgerError> {
        tree_head(&*self.pool.get().await?, tenant).await
    }

    async fn root_at(&self, tenant: &TenantId, size: u64) -> Result<Hash, LedgerError> {
        root_at(&*self.pool.get().await?, tenant, size).await
    }

    async fn inclusion_proof(
        &self,
        tenant: &TenantId,
        index: u64,
        size: u64,
    ) -> Result<InclusionProof, LedgerError> {
        inclusion(&*self.pool.get().await?, tenant, index, size).await
    }

    async fn consistency_proof(
        &self,
        tenant: &TenantId,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        consistency(&*self.pool.get().await?, tenant, from, to).await
    }

    async fn checkpoint(
        &self,
        tenant: &TenantId,
        size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, LedgerError> {
        checkpoint(&*self.pool.get().await?, tenant, size).await
    }

    async fn save_checkpoint(
        &self,
        tenant: &TenantId,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), LedgerError> {
        save_checkpoint(&*self.pool.get().await?, tenant, checkpoint).await
    }
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

fn hash_of(bytes: &[u8], what: &str) -> Result<Hash, StoreError> {
    Hash::from_slice(bytes).ok_or_else(|| corrupt(what))
}

async fn tree_head(c: &Conn, tenant: &TenantId) -> Result<TreeHead, LedgerError> {
    let row = c
        .query_opt(
            "SELECT size, root FROM merkle_trees WHERE tenant = $1",
            &[&tenant.as_str()],
        )
        .await
        .map_err(unavailable)?;
    match row {
        None => Ok(TreeHead {
            size: 0,
            root: EMPTY_ROOT,
        }),
        Some(r) => {
            let size: i64 = col(&r, 0)?;
            let root: Vec<u8> = col(&r, 1)?;
            Ok(TreeHead {
                size: to_u64(size, "tree size")?,
                root: hash_of(&root, "tree root")?,
            })
        }
    }
}

/// Subtrees below this level (under 16 leaves) are not stored but folded from the receipt
/// hashes of their block when needed (as in the SQLite engine).
const STORED_FROM_LEVEL: u8 = 4;

/// Leaves per block of unstored subtrees.
const BLOCK: u64 = 1 << STORED_FROM_LEVEL;

/// The complete nodes `ids` of `tenant`'s tree that exist (missing ones are left out, so the
/// Merkle functions report them as [`MerkleError::MissingNode`]): stored ones in one query,
/// lower ones folded from the receipt hashes of their block.
async fn fetch_nodes(
    c: &Conn,
    tenant: &TenantId,
    ids: impl IntoIterator<Item = NodeId>,
) -> Result<HashMap<NodeId, Hash>, LedgerError> {
    let mut out = HashMap::new();
    let mut blocks: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
    let mut levels: Vec<i64> = Vec::new();
    let mut indexes: Vec<i64> = Vec::new();
    for id in ids {
        if id.level < STORED_FROM_LEVEL {
            if let Some(range) = id.leaf_range() {
                blocks.entry(range.start / BLOCK).or_default().push(id);
            }
            continue;
        }
        levels.push(i64::from(id.level));
        indexes.push(to_i64(id.index));
    }
    if !levels.is_empty() {
        let rows = c
            .query(
                "SELECT n.level, n.idx, n.hash FROM merkle_nodes n \
                 JOIN unnest($2::BIGINT[], $3::BIGINT[]) AS w(level, idx) \
                   ON n.level = w.level AND n.idx = w.idx \
                 WHERE n.tenant = $1",
                &[&tenant.as_str(), &levels, &indexes],
            )
            .await
            .map_err(unavailable)?;
        for r in rows {
            let level: i64 = col(&r, 0)?;
            let idx: i64 = col(&r, 1)?;
            let hash: Vec<u8> = col(&r, 2)?;
            let level = u8::try_from(level).map_err(|_| corrupt("merkle node level"))?;
            out.insert(
                NodeId::new(level, to_u64(idx, "merkle node index")?),
                hash_of(&hash, "merkle node")?,
            );
        }
    }
    for (block, wanted) in blocks {
        let first = block * BLOCK;
        let leaves = sequenced_after(c, tenant, first, BLOCK).await?;
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
async fn within(c: &Conn, tenant: &TenantId, size: u64) -> Result<TreeHead, LedgerError> {
    let head = tree_head(c, tenant).await?;
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

/// The root at `size`, checked against the root integration recorded (the lowest levels are
/// folded from the receipts, so a root at an older size is proved consistent with the head
/// before anyone signs or serves it).
async fn root_at(c: &Conn, tenant: &TenantId, size: u64) -> Result<Hash, LedgerError> {
    let head = within(c, tenant, size).await?;
    if size == head.size {
        return Ok(head.root);
    }
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    let ids = nodes_for_root(size)
        .into_iter()
        .chain(nodes_for_consistency(size, head.size));
    let nodes = fetch_nodes(c, tenant, ids).await?;
    let get = |id: NodeId| nodes.get(&id).copied();
    let root = merkle::root(size, get)?;
    let proof = merkle::consistency_proof(size, head.size, get)?;
    verify_consistency(size, head.size, &root, &head.root, &proof).map_err(|_| rewritten())?;
    Ok(root)
}

async fn inclusion(
    c: &Conn,
    tenant: &TenantId,
    index: u64,
    size: u64,
) -> Result<InclusionProof, LedgerError> {
    within(c, tenant, size).await?;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size }.into());
    }
    let root = root_at(c, tenant, size).await?;
    let leaf_id = NodeId::new(0, index);
    let ids = nodes_for_inclusion(index, size)
        .into_iter()
        .chain([leaf_id]);
    let nodes = fetch_nodes(c, tenant, ids).await?;
    let get = |id: NodeId| nodes.get(&id).copied();
    let proof = merkle::inclusion_proof(index, size, get)?;
    let leaf = get(leaf_id).ok_or(MerkleError::MissingNode(leaf_id))?;
    // A receipt changed after integration gives a path that misses the recorded root.
    verify_inclusion(index, size, &leaf, &proof, &root).map_err(|_| rewritten())?;
    let receipt_hash = sequenced_after(c, tenant, index, 1)
        .await?
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

async fn consistency(
    c: &Conn,
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
    within(c, tenant, to).await?;
    let from_root = root_at(c, tenant, from).await?;
    let to_root = root_at(c, tenant, to).await?;
    let nodes = fetch_nodes(c, tenant, nodes_for_consistency(from, to)).await?;
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

async fn checkpoint(
    c: &Conn,
    tenant: &TenantId,
    size: Option<u64>,
) -> Result<Option<StoredCheckpoint>, LedgerError> {
    let row = match size {
        Some(size) => c
            .query_opt(
                "SELECT size, root, note, kid, signed_at FROM checkpoints \
                 WHERE tenant = $1 AND size = $2",
                &[&tenant.as_str(), &to_i64(size)],
            )
            .await
            .map_err(unavailable)?,
        None => c
            .query_opt(
                "SELECT size, root, note, kid, signed_at FROM checkpoints \
                 WHERE tenant = $1 ORDER BY size DESC LIMIT 1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(unavailable)?,
    };
    let Some(r) = row else {
        return Ok(None);
    };
    let size: i64 = col(&r, 0)?;
    let root: Vec<u8> = col(&r, 1)?;
    Ok(Some(StoredCheckpoint {
        size: to_u64(size, "checkpoint size")?,
        root: hash_of(&root, "checkpoint root")?,
        note: col(&r, 2)?,
        kid: col(&r, 3)?,
        signed_at: col(&r, 4)?,
    }))
}

async fn save_checkpoint(
    c: &Conn,
    tenant: &TenantId,
    cp: &StoredCheckpoint,
) -> Result<(), LedgerError> {
    // Nodes never change once written, so the root can be checked before the write.
    if root_at(c, tenant, cp.size).await? != cp.root {
        return Err(LedgerError::CheckpointMismatch { size: cp.size });
    }
    // Two replicas signing the same size both store a valid checkpoint; the later one stays.
    c.execute(
        "INSERT INTO checkpoints (tenant, size, root, note, kid, signed_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, size) DO UPDATE SET \
         root = excluded.root, note = excluded.note, kid = excluded.kid, \
         signed_at = excluded.signed_at",
        &[
            &tenant.as_str(),
            &to_i64(cp.size),
            &&cp.root.0[..],
            &cp.note,
            &cp.kid,
            &cp.signed_at,
        ],
    )
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// Integrates every receipt of `tenant` sequenced past its tree, `batch` leaves per write
/// transaction; returns the new size.
async fn integrate_tenant(c: &Conn, tenant: &TenantId, batch: u64) -> Result<u64, LedgerError> {
    loop {
        let head = tree_head(c, tenant).await?;
        let leaves = sequenced_after(c, tenant, head.size, batch).await?;
        if leaves.is_empty() {
            let last = last_seq(c, tenant).await?;
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
        let (rows, new_head) = extend(c, tenant, head.size, &leaves).await?;
        if !write_batch(c, tenant, head.size, &rows, new_head).await? {
            // Another integrator got there first: continue from its tree.
            continue;
        }
        if (leaves.len() as u64) < batch {
            return Ok(new_head.size);
        }
    }
}

/// Receipt hashes of `tenant` with `seq > size`, ascending, at most `limit`, checked to continue
/// the tree without a gap.
async fn sequenced_after(
    c: &Conn,
    tenant: &TenantId,
    size: u64,
    limit: u64,
) -> Result<Vec<[u8; 32]>, LedgerError> {
    let rows = c
        .query(
            "SELECT seq, hash FROM receipts WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&tenant.as_str(), &to_i64(size), &to_i64(limit)],
        )
        .await
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = col(&r, 0)?;
        let hash: Vec<u8> = col(&r, 1)?;
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

async fn last_seq(c: &Conn, tenant: &TenantId) -> Result<u64, LedgerError> {
    let row = c
        .query_one(
            "SELECT MAX(seq) FROM receipts WHERE tenant = $1",
            &[&tenant.as_str()],
        )
        .await
        .map_err(unavailable)?;
    let last: Option<i64> = col(&row, 0)?;
    Ok(to_u64(last.unwrap_or(0), "receipt seq")?)
}

/// The rows that appending `receipt_hashes` to the tree of `size` leaves writes, and the new
/// head. Pure hashing over the tree's right edge, read once.
async fn extend(
    c: &Conn,
    tenant: &TenantId,
    size: u64,
    receipt_hashes: &[[u8; 32]],
) -> Result<(Vec<(NodeId, Hash)>, TreeHead), LedgerError> {
    // The left siblings an append reads are exactly the complete nodes of the current root.
    let mut nodes = fetch_nodes(c, tenant, nodes_for_root(size)).await?;
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

/// Writes one integration batch in its own short transaction, under the tenant's integration
/// lock. `false` if another integrator extended the tree first (nothing written).
async fn write_batch(
    c: &Conn,
    tenant: &TenantId,
    expected_size: u64,
    rows: &[(NodeId, Hash)],
    head: TreeHead,
) -> Result<bool, LedgerError> {
    c.begin("").await.map_err(unavailable)?;
    let written = async {
        c.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&INTEGRATION_LOCK_CLASS, &tenant.as_str()],
        )
        .await
        .map_err(unavailable)?;
        if tree_head(c, tenant).await?.size != expected_size {
            return Ok(false);
        }
        // Lower levels are folded from the receipts when needed (see `STORED_FROM_LEVEL`).
        let stored: Vec<&(NodeId, Hash)> = rows
            .iter()
            .filter(|(id, _)| id.level >= STORED_FROM_LEVEL)
            .collect();
        if !stored.is_empty() {
            let levels: Vec<i64> = stored.iter().map(|(id, _)| i64::from(id.level)).collect();
            let indexes: Vec<i64> = stored.iter().map(|(id, _)| to_i64(id.index)).collect();
            let hashes: Vec<&[u8]> = stored.iter().map(|(_, h)| &h.0[..]).collect();
            c.execute(
                "INSERT INTO merkle_nodes (tenant, level, idx, hash) \
                 SELECT $1, l, i, h FROM unnest($2::BIGINT[], $3::BIGINT[], $4::BYTEA[]) \
                 AS t(l, i, h)",
                &[&tenant.as_str(), &levels, &indexes, &hashes],
            )
            .await
            .map_err(unavailable)?;
        }
        c.execute(
            "INSERT INTO merkle_trees (tenant, size, root) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant) DO UPDATE SET size = excluded.size, root = excluded.root",
            &[&tenant.as_str(), &to_i64(head.size), &&head.root.0[..]],
        )
        .await
        .map_err(unavailable)?;
        Ok::<bool, LedgerError>(true)
    }
    .await;
    match written {
        Ok(true) => {
            c.commit().await.map_err(unavailable)?;
            Ok(true)
        }
        Ok(false) => {
            c.rollback().await;
            Ok(false)
        }
        Err(e) => {
            c.rollback().await;
            Err(e)
        }
    }
}
