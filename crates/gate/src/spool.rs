//! The local decision spool: every decision is durable on the gate's disk before the request
//! goes on, and is shipped to the authority's ledger in the background.
//!
//! SECURITY.md, line 1: "No … gated call completes unless its ledger record is durable first."
//! The gate cannot wait for the authority on every call (DESIGN §9: the authority is not on the
//! hot path), so the record is made durable locally first and shipped afterwards:
//!
//! - **Writing**: records are JSON lines appended to segment files
//!   `decisions-<n>.jsonl`. One writer thread drains every record waiting, writes them with one
//!   `write`, calls `fdatasync` once and only then acknowledges each caller (group commit:
//!   concurrent requests share one fsync). A write or sync failure fails every caller of the
//!   batch: the gate answers 503 and never calls the upstream.
//! - **Recovery**: at start, a torn last line (a crash mid-write; its caller was never
//!   acknowledged) is cut off.
//! - **Shipping**: a task reads what is durable from a cursor (`cursor.json`: segment and
//!   offset, replaced atomically and fsync'd), posts batches to `POST /v1/gates/receipts`,
//!   advances the cursor only after the authority accepted, retries with exponential backoff
//!   and deletes segments once shipped. After a crash or restart it re-sends from the cursor;
//!   the authority ignores ids it already holds, so nothing is recorded twice.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::authority::{Authority, ShipError};
use crate::error::GateError;

/// A segment is closed and a new one started once it reaches this size.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Most records written by one fsync.
const MAX_BATCH: usize = 2048;
/// Most records shipped in one request.
const MAX_SHIP: usize = 500;
/// Most bytes read from the spool for one batch; a record is far smaller.
const READ_WINDOW: u64 = 1024 * 1024;
const CURSOR: &str = "cursor.json";

/// One decision, as spooled and shipped (the body of one item of `POST /v1/gates/receipts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Unique id (`gdr_…`); the idempotency key at the authority and `X-Mandate-Receipt`.
    pub id: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// The reason code (`granted`, `approved`, `unmapped`, `approval_pending`, or a verifier
    /// deny code such as `insufficient_scope` or `max_amount`).
    pub reason: String,
    /// The acting agent (`client_id`).
    pub agent: String,
    /// The human at the root (`sub`).
    pub sub: String,
    /// The delegation of the token (`del`).
    pub delegation: String,
    /// The mapped action (`None` when the request mapped to none).
    pub action: Option<String>,
    /// The mapped resource (`None` when the request mapped to none).
    pub resource: Option<String>,
    /// HTTP method, or the JSON-RPC method for MCP.
    pub method: String,
    /// Canonical path and query, or the tool name for MCP (`None`: no target).
    pub target: Option<String>,
    /// Base64url SHA-256 of the JCS form of `{method, target, arguments}` (RFC 8785).
    pub request_hash: String,
    /// Unix milliseconds of the decision.
    pub at: i64,
}

/// Why a record could not be made durable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the decision spool cannot write: {0}")]
pub(crate) struct SpoolError(String);

/// Position in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Position {
    segment: u64,
    offset: u64,
}

struct Job {
    line: Vec<u8>,
    ack: oneshot::Sender<Result<(), SpoolError>>,
}

/// The writing side of the spool; cheap to clone.
#[derive(Clone)]
pub(crate) struct Spool {
    tx: mpsc::Sender<Job>,
    /// Successful fsyncs so far (each made a batch of records durable).
    syncs: Arc<std::sync::atomic::AtomicU64>,
    durable: watch::Receiver<Position>,
    dir: Arc<PathBuf>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovers a torn tail, and starts the writer.
    pub(crate) fn open(dir: &Path) -> Result<Self, GateError> {
        let err = |what: &str, e: std::io::Error| {
            GateError::Spool(format!("{what} `{}`: {e}", dir.display()))
        };
        fs::create_dir_all(dir).map_err(|e| err("cannot create", e))?;
        let segments = list_segments(dir).map_err(|e| err("cannot list", e))?;
        let segment = segments.last().copied().unwrap_or(1);
        let path = segment_path(dir, segment);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| err("cannot open", e))?;
        let len = recover_tail(&file).map_err(|e| err("cannot recover", e))?;
        sync_dir(dir).map_err(|e| err("cannot sync", e))?;
        let (durable_tx, durable) = watch::channel(Position {
            segment,
            offset: len,
        });
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let syncs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writer = Writer {
            syncs: syncs.clone(),
            dir: dir.to_owned(),
            segment,
            file,
            len,
            broken: false,
            durable: durable_tx,
        };
        std::thread::Builder::new()
            .name("gate-spool".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| err("cannot start the writer for", e))?;
        Ok(Self {
            tx,
            syncs,
            durable,
            dir: Arc::new(dir.to_owned()),
        })
    }

    /// How many fsyncs made records durable so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends `record` and waits until it is durable.
    pub(crate) async fn append(&self, record: &DecisionRecord) -> Result<(), SpoolError> {
        let mut line =
            serde_json::to_vec(record).map_err(|e| SpoolError(format!("serialise: {e}")))?;
        line.push(b'\n');
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job { line, ack })
            .await
            .map_err(|_| SpoolError("the writer stopped".into()))?;
        done.await
            .map_err(|_| SpoolError("the writer stopped".into()))?
    }

    /// Starts shipping durable records to the authority until `stop` fires.
    pub(crate) fn ship(
        &self,
        authority: Arc<Authority>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let shipper = Shipper {
            dir: self.dir.as_ref().clone(),
            durable: self.durable.clone(),
            authority,
            stop,
        };
        tokio::spawn(shipper.run())
    }
}

struct Writer {
    syncs: Arc<std::sync::atomic::AtomicU64>,
    dir: PathBuf,
    segment: u64,
    file: File,
    len: u64,
    /// The last failure left the file in an unknown state: start a new segment first.
    broken: bool,
    durable: watch::Sender<Position>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let result = self.write(&batch);
            if let Err(e) = &result {
                tracing::error!(error = %e, records = batch.len(), "decision spool write failed; refusing requests");
            }
            for job in batch {
                let _ = job.ack.send(result.clone());
            }
        }
    }

    fn write(&mut self, batch: &[Job]) -> Result<(), SpoolError> {
        if self.broken || self.len >= SEGMENT_BYTES {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|j| j.line.len()).sum());
        for job in batch {
            buf.extend_from_slice(&job.line);
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.syncs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.len += buf.len() as u64;
                self.durable.send_replace(Position {
                    segment: self.segment,
                    offset: self.len,
                });
                Ok(())
            }
            Err(e) => {
                // Cut back to the last durable length; if even that fails, the next batch
                // starts a new segment.
                if self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_data())
                    .is_err()
                {
                    self.broken = true;
                }
                Err(SpoolError(e.to_string()))
            }
        }
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        let next = self.segment + 1;
        let path = segment_path(&self.dir, next);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .read(true)
            .open(&path)
            .and_then(|f| sync_dir(&self.dir).map(|()| f))
            .map_err(|e| SpoolError(format!("cannot start segment {next}: {e}")))?;
        self.file = file;
        self.segment = next;
        self.len = 0;
        self.broken = false;
        self.durable.send_replace(Position {
            segment: next,
            offset: 0,
        });
        Ok(())
    }
}

struct Shipper {
    dir: PathBuf,
    durable: watch::Receiver<Position>,
    authority: Arc<Authority>,
    stop: watch::Receiver<bool>,
}

impl Shipper {
    async fn run(mut self) {
        let mut cursor = match read_cursor(&self.dir) {
            Ok(Some(c)) => c,
            Ok(None) => Position {
                segment: list_segments(&self.dir)
                    .ok()
                    .and_then(|s| s.first().copied())
                    .unwrap_or(1),
                offset: 0,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool cursor; shipping is stopped");
                return;
            }
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            if *self.stop.borrow() {
                return;
            }
            let durable = *self.durable.borrow_and_update();
            let batch = match read_batch(&self.dir, cursor, durable) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    self.pause(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match batch {
                Batch::Records(records) => {
                    let values: Vec<Value> = records.iter().map(|(v, _)| v.clone()).collect();
                    // A stop interrupts a shipment: whatever the authority recorded of it is
                    // recognised by id when it is sent again.
                    let sent = tokio::select! {
                        r = self.authority.ship(&values) => r,
                        _ = self.stop.changed() => return,
                    };
                    let shipped = match sent {
                        Ok(()) => records.last().map(|(_, end)| *end),
                        Err(ShipError::Rejected(e)) => {
                            // One bad record must not hold back the others: ship them one by
                            // one and drop only what the authority refuses.
                            tracing::error!(error = %e, "the authority refused a batch of decisions; shipping them one by one");
                            self.ship_one_by_one(&records).await
                        }
                        Err(ShipError::Transient(e)) => {
                            tracing::warn!(error = %e, records = records.len(), retry_in_ms = backoff.as_millis() as u64, "shipping decisions failed");
                            None
                        }
                    };
                    match shipped {
                        Some(end) => {
                            backoff = Duration::from_millis(100);
                            cursor = end;
                            if let Err(e) = write_cursor(&self.dir, cursor) {
                                tracing::error!(error = %e, "cannot save the spool cursor");
                            }
                        }
                        None => {
                            self.pause(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                Batch::NextSegment => {
                    let done = cursor.segment;
                    // The next segment that exists (numbers may have gaps after a failure).
                    let next = list_segments(&self.dir)
                        .ok()
                        .and_then(|all| all.into_iter().find(|n| *n > done))
                        .unwrap_or(durable.segment)
                        .max(done + 1);
                    cursor = Position {
                        segment: next,
                        offset: 0,
                    };
                    match write_cursor(&self.dir, cursor) {
                        Ok(()) => {
                            let _ = fs::remove_file(segment_path(&self.dir, done));
                        }
                        Err(e) => tracing::error!(error = %e, "cannot save the spool cursor"),
                    }
                }
                Batch::Skip(end) => {
                    cursor = end;
                    if let Err(e) = write_cursor(&self.dir, cursor) {
                        tracing::error!(error = %e, "cannot save the spool cursor");
                    }
                }
                Batch::Empty => {
                    tokio::select! {
                        _ = self.durable.changed() => {}
                        _ = self.stop.changed() => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Ships records singly; returns the position after the last one shipped or refused, or
    /// `None` if the first one could not be shipped.
    async fn ship_one_by_one(&self, records: &[(Value, Position)]) -> Option<Position> {
        let mut done = None;
        for (record, end) in records {
            match self.authority.ship(std::slice::from_ref(record)).await {
                Ok(()) => done = Some(*end),
                Err(ShipError::Rejected(e)) => {
                    let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
                    tracing::error!(error = %e, id, "the authority refused a decision record; it stays in the spool file only");
                    done = Some(*end);
                }
                Err(ShipError::Transient(_)) => break,
            }
        }
        done
    }

    async fn pause(&mut self, d: Duration) {
        tokio::select! {
            _ = self.stop.changed() => {}
            () = tokio::time::sleep(d) => {}
        }
    }
}

enum Batch {
    /// Records, each with the position right after it.
    Records(Vec<(Value, Position)>),
    NextSegment,
    /// Unreadable lines up to this position.
    Skip(Position),
    Empty,
}

/// Reads up to [`MAX_SHIP`] complete records from `cursor`, never past `durable`.
fn read_batch(dir: &Path, cursor: Position, durable: Position) -> std::io::Result<Batch> {
    if cursor >= durable {
        return Ok(Batch::Empty);
    }
    let limit = if cursor.segment == durable.segment {
        durable.offset
    } else {
        match fs::metadata(segment_path(dir, cursor.segment)) {
            Ok(m) => m.len(),
            // A segment that is gone was shipped or never written.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        }
    };
    if cursor.offset >= limit {
        return Ok(if cursor.segment < durable.segment {
            Batch::NextSegment
        } else {
            Batch::Empty
        });
    }
    let mut file = File::open(segment_path(dir, cursor.segment))?;
    file.seek(SeekFrom::Start(cursor.offset))?;
    let want = (limit - cursor.offset).min(READ_WINDOW);
    let mut buf = Vec::new();
    file.take(want).read_to_end(&mut buf)?;
    let mut records = Vec::new();
    let mut consumed = 0usize;
    for line in buf.split_inclusive(|b| *b == b'\n') {
        if records.len() == MAX_SHIP || line.last() != Some(&b'\n') {
            break;
        }
        consumed += line.len();
        let after = Position {
            segment: cursor.segment,
            offset: cursor.offset + consumed as u64,
        };
        match serde_json::from_slice::<DecisionRecord>(line) {
            Ok(r) => records.push((serde_json::to_value(r).unwrap_or(Value::Null), after)),
            Err(e) => {
                tracing::error!(error = %e, segment = cursor.segment, "skipping an unreadable spool line");
            }
        }
    }
    let end = Position {
        segment: cursor.segment,
        offset: cursor.offset + consumed as u64,
    };
    if records.is_empty() {
        // Only unreadable lines: move past them.
        if consumed > 0 {
            return Ok(Batch::Skip(end));
        }
        return Err(std::io::Error::other(
            "a spool line is longer than the limit",
        ));
    }
    Ok(Batch::Records(records))
}

/// Cuts a torn last line; returns the resulting length.
fn recover_tail(file: &File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Look for the last newline from the end, in chunks.
    let mut end = len;
    let mut reader = file;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = usize::try_from(end - start).unwrap_or(0);
        let part = chunk.get_mut(..n).unwrap_or_default();
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|b| *b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep != len {
                tracing::warn!(
                    cut = len - keep,
                    "cutting a torn record off the decision spool"
                );
                file.set_len(keep)?;
                file.sync_all()?;
            }
            return Ok(keep);
        }
        end = start;
    }
    file.set_len(0)?;
    file.sync_all()?;
    Ok(0)
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("decisions-{n:010}.jsonl"))
}

fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("decisions-")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn read_cursor(dir: &Path) -> std::io::Result<Option<Position>> {
    match fs::read(dir.join(CURSOR)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the cursor atomically: temporary file, fsync, rename, fsync of the directory.
fn write_cursor(dir: &Path, cursor: Position) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CURSOR}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(&cursor).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(CURSOR))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn record(i: usize) -> DecisionRecord {
        DecisionRecord {
            id: format!("gdr_{i}"),
            decision: "allow".into(),
            reason: "granted".into(),
            agent: "agt_a".into(),
            sub: "usr_h".into(),
            delegation: "del_d".into(),
            action: Some("read".into()),
            resource: Some("tickets/1".into()),
            method: "GET".into(),
            target: Some("/tickets/1".into()),
            request_hash: "00".into(),
            at: 1,
        }
    }

    #[tokio::test]
    async fn group_commit_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = spool.clone();
            tasks.push(tokio::spawn(async move { s.append(&record(i)).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // Group commit: concurrent records share fsyncs.
        let syncs = spool.syncs();
        eprintln!("200 concurrent records made durable by {syncs} fsyncs");
        assert!(syncs < 200, "{syncs} fsyncs for 200 records");
        let durable = *spool.durable.borrow();
        let path = segment_path(dir.path(), 1);
        assert_eq!(fs::metadata(&path).unwrap().len(), durable.offset);
        let Batch::Records(records) = read_batch(
            dir.path(),
            Position {
                segment: 1,
                offset: 0,
            },
            durable,
        )
        .unwrap() else {
            panic!("records expected")
        };
        assert_eq!(records.len(), 200);
        assert_eq!(records.last().unwrap().1, durable);
        drop(spool);

        // A torn tail is cut at the next open.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":\"gdr_torn").unwrap();
        drop(f);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(*spool.durable.borrow(), durable);
        spool.append(&record(999)).await.unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 201);
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<DecisionRecord>(l).is_ok())
        );
    }

    #[tokio::test]
    async fn a_failing_disk_fails_the_callers() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", segment_path(dir.path(), 1)).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert!(spool.append(&record(1)).await.is_err());
        // The next batch starts a fresh segment.
        spool.append(&record(2)).await.unwrap();
        assert!(segment_path(dir.path(), 2).exists());
    }
}
