//! `mandate audit export`, `audit checkpoint`, `audit verifier-key`, and the offline
//! `audit verify --export FILE --checkpoint FILE --key FILE [--previous-checkpoint FILE]`.
//!
//! The offline verification talks to no server: it reads the export (JSON lines), the signed
//! checkpoint note(s) and the trusted keys (the server's JWKS, or note verifier keys), and runs
//! [`mandate_store::ledger::export::verify_export`]: note signatures, the hash chain, the Merkle
//! root of the export against the checkpoint, and consistency with an older checkpoint.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use mandate_store::ledger::export::{
    AuditError, AuditOptions, AuditReport, CheckedCheckpoint, TrustedKeys, verify_export,
};
use serde_json::{Value, json};

use crate::Outcome;
use crate::client::{ApiClient, MAX_PAGE};
use crate::output::{self, Output};

const RECEIPTS: &[&str] = &["v1", "receipts"];
const CHECKPOINT: &[&str] = &["v1", "ledger", "checkpoint"];
const VERIFIER_KEY: &[&str] = &["v1", "ledger", "verifier-key"];

/// Files of an offline verification.
#[derive(Args, Debug, Default)]
pub(crate) struct OfflineArgs {
    /// Verify this export (from `mandate audit export`) offline instead of the server's ledger.
    #[arg(long, value_name = "FILE", requires_all = ["checkpoint", "key"])]
    pub(crate) export: Option<PathBuf>,
    /// The signed checkpoint the export must match (from `mandate audit checkpoint`).
    #[arg(long, value_name = "FILE", requires = "export")]
    pub(crate) checkpoint: Option<PathBuf>,
    /// The trusted server keys: the JWKS (`/jwks.json`) or note verifier keys, one per line
    /// (`mandate audit verifier-key`).
    #[arg(long, value_name = "FILE", requires = "export")]
    pub(crate) key: Option<PathBuf>,
    /// An older saved checkpoint the export must be consistent with (catches a rewritten or
    /// rolled-back log).
    #[arg(long, value_name = "FILE", requires = "export")]
    pub(crate) previous_checkpoint: Option<PathBuf>,
    /// Re-canonicalise every receipt through the generic RFC 8785 path (slower).
    #[arg(long, requires = "export")]
    pub(crate) generic_jcs: bool,
}

/// `mandate audit export [-o FILE] [--checkpoint FILE]`.
pub(crate) async fn export(
    api: &ApiClient,
    to: Option<&Path>,
    checkpoint: Option<&Path>,
) -> Result<Outcome> {
    // The checkpoint first: the export, taken after it, then holds every receipt it covers.
    if let Some(path) = checkpoint {
        let cp = api.get(CHECKPOINT, &[]).await?;
        write_file(path, note_of(&cp)?.as_bytes())?;
    }
    let mut sink: Box<dyn io::Write> = match to {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create `{}`", path.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let mut sink = BufWriter::new(&mut sink);
    let mut cursor: Option<String> = None;
    let mut count: u64 = 0;
    loop {
        let page = api.page(RECEIPTS, &[], cursor.as_deref(), MAX_PAGE).await?;
        for item in &page.items {
            serde_json::to_writer(&mut sink, item)?;
            sink.write_all(b"\n")?;
            count += 1;
        }
        match page.next {
            None => break,
            Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                bail!("the server returned the cursor `{next}` twice; stopping")
            }
            Some(next) => cursor = Some(next),
        }
    }
    sink.flush()?;
    if to.is_some() {
        eprintln!("exported {count} receipts");
    }
    Ok(Outcome::Ok)
}

/// `mandate audit checkpoint [--size N] [-o FILE]`.
pub(crate) async fn checkpoint(
    api: &ApiClient,
    out: &Output,
    size: Option<u64>,
    to: Option<&Path>,
) -> Result<Outcome> {
    let size = size.map(|s| s.to_string());
    let query: Vec<(&str, &str)> = size.iter().map(|s| ("size", s.as_str())).collect();
    let cp = api.get(CHECKPOINT, &query).await?;
    let note = note_of(&cp)?;
    match to {
        Some(path) => write_file(path, note.as_bytes())?,
        None if out.is_json() => output::print_json(&cp)?,
        None => output::print_stdout(&note)?,
    }
    Ok(Outcome::Ok)
}

/// `mandate audit verifier-key`.
pub(crate) async fn verifier_key(api: &ApiClient, out: &Output) -> Result<Outcome> {
    let v = api.get(VERIFIER_KEY, &[]).await?;
    if out.is_json() {
        output::print_json(&v)?;
    } else {
        let key = v
            .get("verifier_key")
            .and_then(Value::as_str)
            .context("unexpected response from the server: no `verifier_key`")?;
        output::print_stdout(&format!("{key}\n"))?;
    }
    Ok(Outcome::Ok)
}

fn note_of(cp: &Value) -> Result<String> {
    cp.get("note")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("unexpected response from the server: the checkpoint has no `note`")
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write `{}`", path.display()))
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} `{}`", path.display()))
}

/// `mandate audit verify --export …`: entirely offline.
pub(crate) fn verify(out: &Output, args: &OfflineArgs) -> Result<Outcome> {
    let (Some(export), Some(checkpoint), Some(key)) = (&args.export, &args.checkpoint, &args.key)
    else {
        bail!("offline verification needs `--export`, `--checkpoint` and `--key`");
    };
    let note = read_file(checkpoint, "checkpoint")?;
    let previous = args
        .previous_checkpoint
        .as_deref()
        .map(|p| read_file(p, "previous checkpoint"))
        .transpose()?;
    let keys = String::from_utf8(read_file(key, "key file")?)
        .map_err(|_| anyhow::anyhow!("the key file `{}` is not UTF-8", key.display()))?;
    let keys = TrustedKeys::parse(&keys).map_err(anyhow::Error::new)?;
    // Fail on an unreadable export before any work.
    File::open(export).with_context(|| format!("cannot read the export `{}`", export.display()))?;
    let options = AuditOptions {
        generic_jcs: args.generic_jcs,
        ..AuditOptions::default()
    };
    let result = verify_export(
        || Ok(BufReader::with_capacity(1 << 20, File::open(export)?)),
        &note,
        previous.as_deref(),
        &keys,
        &options,
    );
    match result {
        Ok(report) => {
            print_report(out, &report)?;
            Ok(Outcome::Ok)
        }
        Err(AuditError::Failed(failure)) => {
            if out.is_json() {
                output::print_json(&json!({ "ok": false, "error": failure.to_string() }))?;
            } else {
                output::print_stdout(&format!("ledger BROKEN: {failure}\n"))?;
            }
            Ok(Outcome::Denied)
        }
        Err(e) => Err(anyhow::Error::new(e)),
    }
}

fn checkpoint_json(cp: &CheckedCheckpoint) -> Value {
    json!({
        "origin": cp.origin,
        "size": cp.size,
        "root": cp.root.to_hex(),
        "signers": cp.signers,
    })
}

fn print_report(out: &Output, r: &AuditReport) -> Result<()> {
    if out.is_json() {
        return output::print_json(&json!({
            "ok": true,
            "count": r.count,
            "head": r.head,
            "tenant": r.tenant,
            "checkpoint": checkpoint_json(&r.checkpoint),
            "previous": r.previous.as_ref().map(checkpoint_json),
        }));
    }
    let cp = &r.checkpoint;
    let mut text = format!(
        "ledger ok: {} receipts, head {}\ncheckpoint ok: {} at {} receipts, root {}, signed by {}\n",
        r.count,
        r.head,
        cp.origin,
        cp.size,
        cp.root,
        cp.signers.join(", ")
    );
    if let Some(p) = &r.previous {
        text.push_str(&format!(
            "consistent with the previous checkpoint at {} receipts (root {})\n",
            p.size, p.root
        ));
    }
    if r.count > cp.size {
        text.push_str(&format!(
            "note: the last {} receipts are chained but not covered by the checkpoint\n",
            r.count - cp.size
        ));
    }
    output::print_stdout(&text)
}
