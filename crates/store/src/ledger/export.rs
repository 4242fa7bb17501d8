//! The ledger export and its offline verification against signed checkpoints.
//!
//! An export is JSON lines, one receipt per line, `seq` ascending from 1, each line the item that
//! `GET /v1/receipts` serves: `{"seq": n, "hash": "<hex sha256(JCS(receipt))>", "receipt": {…}}`.
//! [`verify_export`] needs nothing but the export, the checkpoint notes and the trusted keys, and
//! checks, in order:
//!
//! 1. each checkpoint's note signature (C2SP signed-note) by a trusted key named after its origin;
//! 2. the hash chain: every receipt's hash recomputed from its content, `prev` linking to the
//!    previous hash, `seq` contiguous from 1, one tenant (as [`ChainVerifier`] does);
//! 3. the tree: the RFC 9162 root over the first `size` receipt hashes (leaf data = the 32-byte
//!    receipt hash) must be the checkpoint's root, so the checkpoint covers exactly these
//!    receipts — a changed, removed, reordered, truncated or rolled-back ledger fails here even
//!    when its chain was rebuilt;
//! 4. with a previous checkpoint: its root recomputed from the same export at its own size, so
//!    the newer tree extends the older one (the export holds the leaves, so both roots are
//!    recomputed rather than taken from a proof).
//!
//! Everything is pure apart from reading the export through the `open` callback. Hashing runs on
//! `threads` threads through the receipt's fixed-order canonical form; if anything fails on that
//! fast path the export is re-walked with [`ChainVerifier`] and its generic RFC 8785 pass, so a
//! failure is always reported the way `mandate audit verify` reports it online. With
//! [`AuditOptions::generic_jcs`] every receipt goes through [`ChainVerifier`].
//!
//! The fast path accepts nothing the generic one refuses: it makes the same order, tenant and
//! link checks, parses each receipt strictly (unknown members refused), sends unsafe integers to
//! the generic path, compares `prev` as spelled rather than decoded, and hashes the fixed-order
//! serialisation that `mandate_core::receipt`'s tests hold equal to RFC 8785.

use std::io::{BufRead, Read};

use mandate_core::checkpoint::{self, Checkpoint, CheckpointError, NoteVerifier};
use mandate_core::jcs::MAX_SAFE_INTEGER;
use mandate_core::jwk::PublicJwk;
use mandate_core::merkle::{self, EMPTY_ROOT, Hash, MerkleError, NodeId, leaf_hash};
use mandate_core::receipt::{ChainError, ChainVerifier, Receipt, ReceiptHash};
use serde::Deserialize;
use serde_json::Value;

/// Default [`AuditOptions::chunk_bytes`].
const CHUNK_BYTES: usize = 8 << 20;

/// How to verify.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Re-canonicalise every receipt through the generic RFC 8785 path ([`ChainVerifier`]), not
    /// only when the fast path finds a fault (several times slower; see BENCHMARKS.md).
    pub generic_jcs: bool,
    /// Hashing threads (at least 1).
    pub threads: usize,
    /// Bytes of the export read and hashed per parallel step.
    pub chunk_bytes: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            generic_jcs: false,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            chunk_bytes: CHUNK_BYTES,
        }
    }
}

/// The keys a checkpoint may be signed by.
#[derive(Debug, Clone)]
pub enum TrustedKeys {
    /// Ed25519 keys of a JWKS document (the server's `/jwks.json`): each one is trusted under
    /// the name of the checkpoint's origin.
    Jwks(Vec<PublicJwk>),
    /// Note verifier keys (`<name>+<key id>+<base64 key>`), trusted under their own names.
    Verifiers(Vec<NoteVerifier>),
}

impl TrustedKeys {
    /// Parses a JWKS document (`{"keys": [...]}`; keys other than Ed25519 are skipped) or
    /// verifier keys, one per line (blank lines and `#` comments skipped).
    pub fn parse(text: &str) -> Result<Self, AuditError> {
        let bad = |detail: String| AuditError::Keys(detail);
        if text.trim_start().starts_with('{') {
            let doc: Value =
                serde_json::from_str(text).map_err(|e| bad(format!("not a JWKS: {e}")))?;
            let keys = doc
                .get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("not a JWKS: no `keys` array".into()))?;
            let keys: Vec<PublicJwk> = keys
                .iter()
                .filter_map(|k| PublicJwk::from_json(k).ok())
                .collect();
            if keys.is_empty() {
                return Err(bad("the JWKS holds no Ed25519 public key".into()));
            }
            return Ok(Self::Jwks(keys));
        }
        let verifiers = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| NoteVerifier::parse(l).map_err(|e| bad(format!("verifier key: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if verifiers.is_empty() {
            return Err(bad("no verifier key found".into()));
        }
        Ok(Self::Verifiers(verifiers))
    }

    fn verifiers_for(&self, origin: &str) -> Vec<NoteVerifier> {
        match self {
            Self::Jwks(keys) => keys
                .iter()
                .filter_map(|k| NoteVerifier::new(origin, *k.verifying_key()).ok())
                .collect(),
            Self::Verifiers(v) => v.clone(),
        }
    }
}

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCheckpoint {
    /// The log's origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// `name+keyid` of each trusted key whose signature verified.
    pub signers: Vec<String>,
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Receipts in the export.
    pub count: u64,
    /// Hex hash of the last receipt.
    pub head: String,
    /// The tenant whose chain it is (`None` for an empty export).
    pub tenant: Option<String>,
    /// The checkpoint the export matches.
    pub checkpoint: CheckedCheckpoint,
    /// The older checkpoint it is consistent with.
    pub previous: Option<CheckedCheckpoint>,
}

/// Why the export does not match what was signed: the verdict "broken" (`audit verify` exits 3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditFailure {
    /// The checkpoint note is malformed or its signature does not verify.
    #[error("{which} checkpoint: {error}")]
    Checkpoint {
        /// `the` or `the previous`.
        which: &'static str,
        /// What is wrong.
        error: CheckpointError,
    },
    /// The previous checkpoint belongs to another log.
    #[error("the previous checkpoint is for log `{previous}`, not `{origin}`")]
    OtherLog {
        /// Origin of the checkpoint.
        origin: String,
        /// Origin of the previous checkpoint.
        previous: String,
    },
    /// The checkpoint's origin does not name the export's tenant.
    #[error("the checkpoint is for log `{origin}`, not for tenant `{tenant}`")]
    OtherTenant {
        /// Origin of the checkpoint.
        origin: String,
        /// Tenant of the export.
        tenant: String,
    },
    /// The "previous" checkpoint is larger than the checkpoint.
    #[error("the previous checkpoint ({previous} receipts) is larger than the checkpoint ({size})")]
    PreviousIsNewer {
        /// Size of the previous checkpoint.
        previous: u64,
        /// Size of the checkpoint.
        size: u64,
    },
    /// The hash chain is broken.
    #[error("{0}")]
    Chain(ChainError),
    /// A line that is not an export item.
    #[error("line {line}: {detail}")]
    Malformed {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        detail: String,
    },
    /// The export ends before the checkpoint's size.
    #[error(
        "{which} checkpoint covers {size} receipts but the export holds only {count}: receipts \
         were removed or the ledger was truncated or rolled back"
    )]
    Truncated {
        /// `the` or `the previous`.
        which: &'static str,
        /// The checkpoint's size.
        size: u64,
        /// Receipts in the export.
        count: u64,
    },
    /// The export's first `size` receipts do not have the signed root.
    #[error(
        "the first {size} receipts of the export do not have the root signed in the checkpoint: \
         receipts were changed, removed, reordered or rolled back"
    )]
    RootMismatch {
        /// The checkpoint's size.
        size: u64,
    },
    /// The export is not an extension of the tree the previous checkpoint signed.
    #[error(
        "the export is not consistent with the previous checkpoint: its first {size} receipts \
         do not have the root signed then (the log was rewritten or rolled back)"
    )]
    Inconsistent {
        /// The previous checkpoint's size.
        size: u64,
    },
}

/// Why verification could not run or did not pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The export could not be read.
    #[error("cannot read the export: {0}")]
    Io(#[from] std::io::Error),
    /// The trusted keys could not be used.
    #[error("trusted keys: {0}")]
    Keys(String),
    /// Tree arithmetic failed (a bug: please report it).
    #[error("tree arithmetic failed: {0}")]
    Merkle(#[from] MerkleError),
    /// The export does not match the checkpoints.
    #[error(transparent)]
    Failed(#[from] AuditFailure),
}

/// One export line, parsed on the fast path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    hash: String,
    receipt: Receipt,
}

/// A line after hashing, before the sequential chain checks.
enum Hashed {
    Ok {
        seq: u64,
        claimed: [u8; 32],
        /// `claimed` as the line spelled it (hex that decodes to `claimed`).
        claimed_hex: String,
        leaf: Hash,
        /// The receipt's `prev`, as spelled.
        prev: String,
        tenant: String,
        own_seq: u64,
    },
    /// Needs the generic path: unparsable, unsafe integers, or a hash mismatch.
    Fault,
}

/// Verifies the export that `open` reads against `checkpoint` (and `previous`) and `keys`.
/// `open` is called once, or twice when the fast path finds a fault: the generic path
/// ([`ChainVerifier`]) is the reference, and its verdict stands.
pub fn verify_export<R: BufRead>(
    open: impl Fn() -> std::io::Result<R>,
    checkpoint: &[u8],
    previous: Option<&[u8]>,
    keys: &TrustedKeys,
    options: &AuditOptions,
) -> Result<AuditReport, AuditError> {
    let cp = open_checkpoint(checkpoint, keys, "the")?;
    let prev = previous
        .map(|p| open_checkpoint(p, keys, "the previous"))
        .transpose()?;
    if let Some(p) = &prev {
        if p.origin != cp.origin {
            return Err(AuditFailure::OtherLog {
                origin: cp.origin.clone(),
                previous: p.origin.clone(),
            }
            .into());
        }
        if p.size > cp.size {
            return Err(AuditFailure::PreviousIsNewer {
                previous: p.size,
                size: cp.size,
            }
            .into());
        }
    }
    let sizes = [Some(cp.size), prev.as_ref().map(|p| p.size)];
    let sizes: Vec<u64> = sizes.into_iter().flatten().collect();
    let scan = if options.generic_jcs {
        scan_generic(open()?, &sizes)?
    } else {
        match scan_fast(open()?, &sizes, options)? {
            Some(scan) => scan,
            None => scan_generic(open()?, &sizes)?,
        }
    };

    if let Some(tenant) = &scan.tenant
        && cp.origin.rsplit('/').next() != Some(tenant.as_str())
    {
        return Err(AuditFailure::OtherTenant {
            origin: cp.origin.clone(),
            tenant: tenant.clone(),
        }
        .into());
    }
    let root_at = |size: u64| scan.roots.iter().find(|(s, _)| *s == size).map(|(_, r)| *r);
    if let Some(p) = &prev {
        match root_at(p.size) {
            None => {
                return Err(AuditFailure::Truncated {
                    which: "the previous",
                    size: p.size,
                    count: scan.count,
                }
                .into());
            }
            Some(root) if root != p.root => {
                return Err(AuditFailure::Inconsistent { size: p.size }.into());
            }
            Some(_) => {}
        }
    }
    match root_at(cp.size) {
        None => Err(AuditFailure::Truncated {
            which: "the",
            size: cp.size,
            count: scan.count,
        }
        .into()),
        Some(root) if root != cp.root => Err(AuditFailure::RootMismatch { size: cp.size }.into()),
        Some(_) => Ok(AuditReport {
            count: scan.count,
            head: scan.head.to_hex(),
            tenant: scan.tenant,
            checkpoint: cp,
            previous: prev,
        }),
    }
}

/// The first line of a note's text, unverified (to know which name to trust keys under).
fn origin_of(note: &[u8]) -> &str {
    std::str::from_utf8(note)
        .ok()
        .and_then(|t| t.split('\n').next())
        .unwrap_or_default()
}

fn open_checkpoint(
    note: &[u8],
    keys: &TrustedKeys,
    which: &'static str,
) -> Result<CheckedCheckpoint, AuditError> {
    let verifiers = keys.verifiers_for(origin_of(note));
    let fail = |error| AuditFailure::Checkpoint { which, error };
    let opened = checkpoint::open_note(note, &verifiers).map_err(fail)?;
    let signers = opened
        .signers()
        .iter()
        .map(|(name, id)| format!("{name}+{id:08x}"))
        .collect();
    let cp = Checkpoint::parse_body(opened.body()).map_err(fail)?;
    // C2SP tlog-checkpoint: the origin "SHOULD" be the key name; we sign it that way, and a
    // checkpoint signed under another name is not a statement about this log.
    if !opened.signers().iter().any(|(name, _)| name == cp.origin()) {
        return Err(fail(CheckpointError::NoTrustedSignature).into());
    }
    Ok(CheckedCheckpoint {
        origin: cp.origin().to_owned(),
        size: cp.size(),
        root: *cp.root(),
        signers,
    })
}

/// The result of walking an export.
struct Scan {
    count: u64,
    head: ReceiptHash,
    tenant: Option<String>,
    /// The root at each requested size the export reaches.
    roots: Vec<(u64, Hash)>,
}

/// The right edge of a tree being built leaf by leaf: the last complete node of each level, which
/// is all that appends and the root read (see [`merkle::nodes_completed_by_append`]).
struct Frontier {
    size: u64,
    edge: Vec<Option<(u64, Hash)>>,
    wanted: Vec<u64>,
    roots: Vec<(u64, Hash)>,
}

impl Frontier {
    fn new(wanted: &[u64]) -> Self {
        Self {
            size: 0,
            edge: vec![None; 64],
            wanted: wanted.to_vec(),
            roots: if wanted.contains(&0) {
                vec![(0, EMPTY_ROOT)]
            } else {
                Vec::new()
            },
        }
    }

    fn get(&self, id: NodeId) -> Option<Hash> {
        match self.edge.get(usize::from(id.level)) {
            Some(Some((index, hash))) if *index == id.index => Some(*hash),
            _ => None,
        }
    }

    fn push(&mut self, leaf: Hash) -> Result<(), MerkleError> {
        let rows = merkle::nodes_completed_by_append(self.size, leaf, |id| self.get(id))?;
        for (id, hash) in rows {
            if let Some(slot) = self.edge.get_mut(usize::from(id.level)) {
                *slot = Some((id.index, hash));
            }
        }
        self.size += 1;
        self.record()
    }

    fn record(&mut self) -> Result<(), MerkleError> {
        if self.wanted.contains(&self.size) && !self.roots.iter().any(|(s, _)| *s == self.size) {
            let root = merkle::root(self.size, |id| self.get(id))?;
            self.roots.push((self.size, root));
        }
        Ok(())
    }
}

/// The fast path: the export read in large byte chunks; each chunk's lines parsed (typed),
/// hashed through the fixed-order canonical form and leaf-hashed on `threads` threads while the
/// previous chunk's results go through the chain checks and into the tree, in order. `None`
/// when any line needs the generic path.
fn scan_fast<R: BufRead>(
    mut export: R,
    sizes: &[u64],
    options: &AuditOptions,
) -> Result<Option<Scan>, AuditError> {
    let (threads, chunk_bytes) = (options.threads.max(1), options.chunk_bytes.max(1));
    let mut chain = FastChain {
        frontier: Frontier::new(sizes),
        prev: ReceiptHash::GENESIS,
        prev_hex: mandate_core::receipt::GENESIS_PREV.to_owned(),
        tenant: None,
    };
    let mut pending: Option<Vec<Hashed>> = None;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let (chunk, eof) = next_chunk(&mut export, &mut carry, chunk_bytes)?;
        if chunk.is_empty() && eof {
            break;
        }
        // Hash this chunk on the workers while the previous one is folded in here.
        let folded = std::thread::scope(|s| {
            let workers: Vec<_> = split_lines(&chunk, threads)
                .into_iter()
                .map(|part| s.spawn(move || hash_part(part)))
                .collect();
            let ok = pending.take().map_or(Ok(true), |done| chain.fold(done));
            let hashed: Vec<Hashed> = workers
                .into_iter()
                // A worker that died yields a fault, which sends the export to the generic path.
                .flat_map(|w| w.join().unwrap_or_else(|_| vec![Hashed::Fault]))
                .collect();
            (ok, hashed)
        });
        match folded {
            (Ok(true), hashed) => pending = Some(hashed),
            (Ok(false), _) => return Ok(None),
            (Err(e), _) => return Err(e.into()),
        }
        if eof {
            break;
        }
    }
    if let Some(done) = pending.take()
        && !chain.fold(done)?
    {
        return Ok(None);
    }
    Ok(Some(Scan {
        count: chain.frontier.size,
        head: chain.prev,
        tenant: chain.tenant,
        roots: chain.frontier.roots,
    }))
}

/// The in-order part of the fast path.
struct FastChain {
    frontier: Frontier,
    prev: ReceiptHash,
    /// `prev` as the previous line spelled it; the genesis `prev` before the first.
    prev_hex: String,
    tenant: Option<String>,
}

impl FastChain {
    /// Checks order, tenant and links of hashed lines and appends their leaves; `false` at the
    /// first line that needs the generic path.
    fn fold(&mut self, hashed: Vec<Hashed>) -> Result<bool, MerkleError> {
        for h in hashed {
            let Hashed::Ok {
                seq,
                claimed,
                claimed_hex,
                leaf,
                prev,
                tenant,
                own_seq,
            } = h
            else {
                return Ok(false);
            };
            let in_order = seq == self.frontier.size + 1 && own_seq == seq;
            let same_tenant = self.tenant.as_ref().is_none_or(|known| *known == tenant);
            // The same spelling as the hash it names (which decoded to `self.prev`): stricter
            // than comparing decoded bytes, so nothing passes here that the generic path refuses.
            if !in_order || !same_tenant || prev != self.prev_hex {
                return Ok(false);
            }
            if self.tenant.is_none() {
                self.tenant = Some(tenant);
            }
            self.frontier.push(leaf)?;
            self.prev = ReceiptHash(claimed);
            self.prev_hex = claimed_hex;
        }
        Ok(true)
    }
}

/// The next chunk of whole lines (at least `chunk_bytes` unless the export ends), and whether
/// the export ended. `carry` holds the start of a line cut at the previous chunk's end.
fn next_chunk<R: BufRead>(
    export: &mut R,
    carry: &mut Vec<u8>,
    chunk_bytes: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut chunk = std::mem::take(carry);
    chunk.reserve(chunk_bytes.saturating_add(chunk_bytes / 2));
    loop {
        // Straight into the chunk, without a second copy.
        let want = chunk_bytes
            .saturating_sub(chunk.len())
            .max(chunk_bytes / 2)
            .max(1);
        let read = export.by_ref().take(want as u64).read_to_end(&mut chunk)?;
        if read == 0 {
            return Ok((chunk, true));
        }
        // Cut after the last newline; a line longer than the chunk reads on.
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            *carry = chunk.split_off(i + 1);
            return Ok((chunk, false));
        }
    }
}

/// Splits `chunk` into at most `parts` runs of whole lines, in order.
fn split_lines(chunk: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 1..parts {
        let target = (chunk.len() * i / parts).max(start);
        let Some(nl) = chunk
            .get(target..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
        else {
            break;
        };
        out.push(&chunk[start..=target + nl]);
        start = target + nl + 1;
    }
    out.push(&chunk[start..]);
    out
}

fn hash_part(part: &[u8]) -> Vec<Hashed> {
    // One UTF-8 check for the whole run; lines that are not text go to the generic path.
    let Ok(text) = std::str::from_utf8(part) else {
        return vec![Hashed::Fault];
    };
    text.split('\n')
        .filter(|l| !l.trim().is_empty())
        .map(hash_line)
        .collect()
}

fn hash_line(line: &str) -> Hashed {
    let Ok(item) = serde_json::from_str::<Line>(line) else {
        return Hashed::Fault;
    };
    let safe = |n: u64| n <= MAX_SAFE_INTEGER;
    if !safe(item.seq) || !safe(item.receipt.seq) || !safe(item.receipt.at.unsigned_abs()) {
        return Hashed::Fault;
    }
    let Some(claimed) = ReceiptHash::from_hex(&item.hash) else {
        return Hashed::Fault;
    };
    let (_, computed) = item.receipt.canonical_and_hash();
    if computed != claimed {
        return Hashed::Fault;
    }
    Hashed::Ok {
        seq: item.seq,
        claimed: claimed.0,
        claimed_hex: item.hash,
        leaf: leaf_hash(&claimed.0),
        prev: item.receipt.prev,
        own_seq: item.receipt.seq,
        tenant: item.receipt.tenant,
    }
}

/// The generic path: every line through [`ChainVerifier`], sequentially.
fn scan_generic<R: BufRead>(export: R, sizes: &[u64]) -> Result<Scan, AuditError> {
    let mut frontier = Frontier::new(sizes);
    let mut verifier = ChainVerifier::new();
    let mut tenant: Option<String> = None;
    for (index, line) in export.lines().enumerate() {
        let line = line?;
        let line_no = index as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |detail: &str| AuditFailure::Malformed {
            line: line_no,
            detail: detail.to_owned(),
        };
        let item: Value =
            serde_json::from_str(&line).map_err(|e| malformed(&format!("not JSON: {e}")))?;
        let (Some(seq), Some(hash), Some(receipt)) = (
            item.get("seq").and_then(Value::as_u64),
            item.get("hash").and_then(Value::as_str),
            item.get("receipt"),
        ) else {
            return Err(malformed("not an export item (`seq`, `hash`, `receipt`)").into());
        };
        verifier
            .push(seq, hash, receipt)
            .map_err(AuditFailure::Chain)?;
        if tenant.is_none() {
            tenant = receipt
                .get("tenant")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        // The verifier checked the hash against the content.
        let claimed = ReceiptHash::from_hex(hash).ok_or_else(|| malformed("hash is not hex"))?;
        frontier.push(leaf_hash(&claimed.0))?;
    }
    let summary = verifier.finish();
    Ok(Scan {
        count: frontier.size,
        head: ReceiptHash::from_hex(&summary.head).unwrap_or(ReceiptHash::GENESIS),
        tenant,
        roots: frontier.roots,
    })
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, reason = "tests")]
mod tests {
    use ed25519_dalek::SigningKey;
    use mandate_core::checkpoint::NoteSigner;
    use mandate_core::merkle::MemoryTree;
    use mandate_core::receipt::{Actor, Event, EventKind, Outcome};

    use super::*;

    const TENANT: &str = "ten_01kaw7x0b8f3yq2m9v5n6c4d2j";
    const ORIGIN: &str = "mandate.example/mandate/ten_01kaw7x0b8f3yq2m9v5n6c4d2j";

    fn event(i: usize) -> Event {
        Event {
            kind: EventKind::Record,
            actor: Actor::default(),
            on_behalf_of: None,
            delegation: None,
            token: Some(format!("jti-{i}")),
            action: Some("read".into()),
            resource: Some(format!("tickets/{i}")),
            decision: Outcome::Allow,
            reasons: vec![],
            request_hash: None,
        }
    }

    /// A chain of `n` receipts as export lines, sealed from `events`.
    fn chain(tenant: &str, events: impl IntoIterator<Item = Event>) -> Vec<String> {
        let mut prev = ReceiptHash::GENESIS;
        let mut lines = Vec::new();
        for (i, e) in events.into_iter().enumerate() {
            let seq = i as u64 + 1;
            let receipt = Receipt::seal(e, tenant, seq, 1_700_000_000_000 + seq as i64, &prev);
            let (_, hash) = receipt.canonical_and_hash();
            lines.push(
                serde_json::json!({"seq": seq, "hash": hash.to_hex(), "receipt": receipt})
                    .to_string(),
            );
            prev = hash;
        }
        lines
    }

    fn export(n: usize) -> Vec<String> {
        chain(TENANT, (0..n).map(event))
    }

    fn signer() -> NoteSigner {
        NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[7; 32])).expect("signer")
    }

    fn jwks() -> TrustedKeys {
        let jwk = PublicJwk::from_seed(&[7; 32]).to_json();
        TrustedKeys::parse(&serde_json::json!({"keys": [jwk]}).to_string()).expect("jwks")
    }

    /// The signed checkpoint of the first `size` lines of `lines`.
    fn checkpoint(lines: &[String], size: usize) -> String {
        let tree = MemoryTree::from_leaf_hashes(lines[..size].iter().map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            let h = ReceiptHash::from_hex(v["hash"].as_str().expect("hash")).expect("hex");
            leaf_hash(&h.0)
        }))
        .expect("tree");
        let cp = Checkpoint::new(ORIGIN, size as u64, tree.root().expect("root"), vec![])
            .expect("checkpoint");
        signer().sign_checkpoint(&cp).expect("sign")
    }

    fn run(
        lines: &[String],
        cp: &str,
        previous: Option<&str>,
        keys: &TrustedKeys,
        generic_jcs: bool,
    ) -> Result<AuditReport, AuditError> {
        let text = lines.join("\n") + "\n";
        let options = AuditOptions {
            generic_jcs,
            threads: 2,
            ..AuditOptions::default()
        };
        verify_export(
            || Ok(std::io::Cursor::new(text.clone().into_bytes())),
            cp.as_bytes(),
            previous.map(str::as_bytes),
            keys,
            &options,
        )
    }

    fn failure(r: Result<AuditReport, AuditError>) -> AuditFailure {
        match r {
            Err(AuditError::Failed(f)) => f,
            other => panic!("expected a verification failure, got {other:?}"),
        }
    }

    #[test]
    fn a_faithful_export_verifies_on_both_paths() {
        // Over 1024 lines: the parallel path runs.
        let lines = export(2_000);
        let old = checkpoint(&lines, 700);
        let new = checkpoint(&lines, 2_000);
        for generic in [false, true] {
            let report = run(&lines, &new, Some(&old), &jwks(), generic).expect("verifies");
            assert_eq!(report.count, 2_000);
            assert_eq!(report.tenant.as_deref(), Some(TENANT));
            assert_eq!(report.checkpoint.size, 2_000);
            assert_eq!(report.checkpoint.origin, ORIGIN);
            assert_eq!(report.previous.map(|p| p.size), Some(700));
        }
        // A verifier key works as well as the JWKS; an export longer than the checkpoint is
        // fine (the tail is chain-checked, not covered by the signature).
        let vkey =
            TrustedKeys::parse(&format!("# server\n{}\n", signer().verifier())).expect("vkey");
        run(&lines, &old, None, &vkey, false).expect("verifies");
    }

    #[test]
    fn chunk_boundaries_and_blank_lines_change_nothing() {
        let lines = export(1_500);
        let cp = checkpoint(&lines, 1_500);
        let mut text = lines.join("\n\n") + "\n";
        text.insert_str(0, "  \n");
        // Shorter than a line, a few lines, and more than the whole export.
        for chunk_bytes in [100, 1_500, 100_000, 10 << 20] {
            for threads in [1, 2, 3] {
                let options = AuditOptions {
                    generic_jcs: false,
                    threads,
                    chunk_bytes,
                };
                let report = verify_export(
                    || Ok(std::io::Cursor::new(text.clone().into_bytes())),
                    cp.as_bytes(),
                    None,
                    &jwks(),
                    &options,
                )
                .expect("verifies");
                assert_eq!(
                    report.count, 1_500,
                    "chunk {chunk_bytes}, {threads} threads"
                );
                // …and on the fast path, not through the generic fallback.
                let fast = scan_fast(std::io::Cursor::new(text.as_bytes()), &[1_500], &options)
                    .expect("scan");
                assert!(fast.is_some(), "chunk {chunk_bytes}, {threads} threads");
            }
        }
    }

    #[test]
    fn the_empty_tree_checkpoint_verifies_an_empty_export() {
        let cp = Checkpoint::new(ORIGIN, 0, EMPTY_ROOT, vec![]).expect("cp");
        let note = signer().sign_checkpoint(&cp).expect("sign");
        let report = run(&[], &note, None, &jwks(), false).expect("verifies");
        assert_eq!(report.count, 0);
    }

    #[test]
    fn a_changed_byte_is_a_hash_mismatch() {
        let mut lines = export(50);
        let cp = checkpoint(&lines, 50);
        lines[20] = lines[20].replace("tickets/20", "tickets/21");
        let f = failure(run(&lines, &cp, None, &jwks(), false));
        assert!(
            matches!(f, AuditFailure::Chain(ChainError::HashMismatch { seq: 21 })),
            "{f}"
        );
    }

    #[test]
    fn a_deleted_receipt_breaks_the_sequence() {
        let mut lines = export(50);
        let cp = checkpoint(&lines, 50);
        lines.remove(10);
        let f = failure(run(&lines, &cp, None, &jwks(), false));
        assert!(
            matches!(
                f,
                AuditFailure::Chain(ChainError::OutOfOrder {
                    seq: 12,
                    expected: 11
                })
            ),
            "{f}"
        );
    }

    #[test]
    fn swapped_receipts_break_the_sequence() {
        let mut lines = export(50);
        let cp = checkpoint(&lines, 50);
        lines.swap(5, 6);
        let f = failure(run(&lines, &cp, None, &jwks(), false));
        assert!(
            matches!(
                f,
                AuditFailure::Chain(ChainError::OutOfOrder {
                    seq: 7,
                    expected: 6
                })
            ),
            "{f}"
        );
    }

    #[test]
    fn a_truncated_export_falls_short_of_the_checkpoint() {
        let mut lines = export(50);
        let cp = checkpoint(&lines, 50);
        lines.truncate(45);
        let f = failure(run(&lines, &cp, None, &jwks(), false));
        assert_eq!(
            f,
            AuditFailure::Truncated {
                which: "the",
                size: 50,
                count: 45
            }
        );
    }

    #[test]
    fn a_rebuilt_chain_does_not_have_the_signed_root() {
        // The attacker re-seals every receipt after changing one: the chain is valid again.
        let lines = export(50);
        let cp = checkpoint(&lines, 50);
        let forged = chain(
            TENANT,
            (0..50).map(|i| if i == 30 { event(999) } else { event(i) }),
        );
        let f = failure(run(&forged, &cp, None, &jwks(), false));
        assert_eq!(f, AuditFailure::RootMismatch { size: 50 });
    }

    #[test]
    fn a_fork_is_inconsistent_with_the_previous_checkpoint() {
        // Rolled back to 30 receipts, then 40 different ones appended and signed afresh.
        let lines = export(50);
        let old = checkpoint(&lines, 50);
        let forked = chain(
            TENANT,
            (0..30).map(event).chain((0..40).map(|i| event(500 + i))),
        );
        let new = checkpoint(&forked, 70);
        run(&forked, &new, None, &jwks(), false).expect("the fork alone verifies");
        let f = failure(run(&forked, &new, Some(&old), &jwks(), false));
        assert_eq!(f, AuditFailure::Inconsistent { size: 50 });
        let f = failure(run(&forked, &old, None, &jwks(), false));
        assert_eq!(f, AuditFailure::RootMismatch { size: 50 });
        // Previous and current the wrong way round.
        let small = checkpoint(&forked, 10);
        let f = failure(run(&forked, &small, Some(&new), &jwks(), false));
        assert!(matches!(f, AuditFailure::PreviousIsNewer { .. }), "{f}");
    }

    #[test]
    fn untrusted_or_forged_signatures_and_other_tenants_are_refused() {
        let lines = export(10);
        let cp = checkpoint(&lines, 10);
        let other = PublicJwk::from_seed(&[8; 32]).to_json();
        let keys =
            TrustedKeys::parse(&serde_json::json!({"keys": [other]}).to_string()).expect("jwks");
        let f = failure(run(&lines, &cp, None, &keys, false));
        assert!(
            matches!(
                f,
                AuditFailure::Checkpoint {
                    error: CheckpointError::NoTrustedSignature,
                    ..
                }
            ),
            "{f}"
        );
        // A body edited under a valid signature line.
        let forged = cp.replacen("\n10\n", "\n9\n", 1);
        let f = failure(run(&lines, &forged, None, &jwks(), false));
        assert!(
            matches!(
                f,
                AuditFailure::Checkpoint {
                    error: CheckpointError::BadSignature { .. },
                    ..
                }
            ),
            "{f}"
        );
        let foreign = chain("ten_01kaw7x0b8f3yq2m9v5n6c4d2k", (0..10).map(event));
        let f = failure(run(
            &foreign,
            &checkpoint(&foreign, 10),
            None,
            &jwks(),
            false,
        ));
        assert!(matches!(f, AuditFailure::OtherTenant { .. }), "{f}");
    }

    #[test]
    fn malformed_lines_and_keys_are_named() {
        let mut lines = export(5);
        let cp = checkpoint(&lines, 5);
        lines[2] = "{\"seq\": 3}".into();
        let f = failure(run(&lines, &cp, None, &jwks(), false));
        assert!(matches!(f, AuditFailure::Malformed { line: 3, .. }), "{f}");
        assert!(matches!(TrustedKeys::parse("{}"), Err(AuditError::Keys(_))));
        assert!(matches!(
            TrustedKeys::parse("nonsense"),
            Err(AuditError::Keys(_))
        ));
        assert!(matches!(
            TrustedKeys::parse("\n# only a comment\n"),
            Err(AuditError::Keys(_))
        ));
    }
}
