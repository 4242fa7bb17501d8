//! `mandate audit`: follow the receipt ledger and verify its hash chain end to end, online or,
//! from an export and signed checkpoints, offline (see [`crate::audit_offline`]).

use std::collections::VecDeque;
use std::io::{self, IsTerminal as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use mandate_core::receipt::ChainVerifier;
use serde_json::{Value, json};

use crate::Outcome;
use crate::audit_offline::{self, OfflineArgs};
use crate::client::{ApiClient, ApiError, MAX_PAGE};
use crate::output::{self, Field, Output, Render};

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Show the newest receipts; with `--json --follow`, one JSON item per line.
    Tail {
        /// How many receipts to show.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20)]
        count: usize,
        /// Keep polling (every second) and print new receipts as they are written.
        #[arg(long)]
        follow: bool,
    },
    /// Re-check the hash chain of every receipt of the tenant; exits 3 if a record is bad.
    ///
    /// With `--export`, verify a saved export entirely offline instead: the chain, its Merkle root
    /// against a signed checkpoint, and consistency with an older checkpoint.
    Verify(OfflineArgs),
    /// Write every receipt of the tenant as JSON lines (the input of `audit verify --export`).
    Export {
        /// Write to FILE instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also save the current signed checkpoint to FILE, taken before the export.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Print the tenant log's signed checkpoint (a C2SP signed note); save it to check later
    /// exports against.
    Checkpoint {
        /// The checkpoint at this tree size instead of the current one.
        #[arg(long, value_name = "N")]
        size: Option<u64>,
        /// Write the note to FILE.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the note verifier key that checks this tenant's checkpoints.
    VerifierKey,
}

const RECEIPTS: &[&str] = &["v1", "receipts"];
const POLL: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: u64 = 10_000;

/// Columns of `audit tail`, with their widths (the last one is not padded).
const TAIL: &[(Field, usize)] = &[
    (Field::new("SEQ", "seq"), 8),
    (Field::new("AT", "receipt.at").render(Render::UnixMs), 24),
    (Field::new("KIND", "receipt.kind").max(22), 22),
    (Field::new("DECISION", "receipt.decision").max(8), 8),
    (
        Field::new("ACTOR", "receipt.actor").render(Render::Actor),
        30,
    ),
    (Field::new("ACTION", "receipt.action").max(8), 8),
    (Field::new("RESOURCE", "receipt.resource").max(40), 0),
];

pub(crate) async fn run(api: &ApiClient, out: &Output, cmd: AuditCommand) -> Result<Outcome> {
    match cmd {
        AuditCommand::Tail { count, follow } => tail(api, out, count, follow).await,
        AuditCommand::Verify(args) if args.export.is_some() => audit_offline::verify(out, &args),
        AuditCommand::Verify(_) => verify(api, out).await,
        AuditCommand::Export { output, checkpoint } => {
            audit_offline::export(api, output.as_deref(), checkpoint.as_deref()).await
        }
        AuditCommand::Checkpoint { size, output } => {
            audit_offline::checkpoint(api, out, size, output.as_deref()).await
        }
        AuditCommand::VerifierKey => audit_offline::verifier_key(api, out).await,
    }
}

async fn tail(api: &ApiClient, out: &Output, count: usize, follow: bool) -> Result<Outcome> {
    // The API pages forward only, so the newest items are found by walking to the end.
    let mut newest: VecDeque<Value> = VecDeque::with_capacity(count.min(1024));
    let mut last_seq = None;
    let mut cursor: Option<String> = None;
    loop {
        let page = api.page(RECEIPTS, &[], cursor.as_deref(), MAX_PAGE).await?;
        for item in page.items {
            last_seq = seq_of(&item).or(last_seq);
            if count > 0 {
                if newest.len() == count {
                    newest.pop_front();
                }
                newest.push_back(item);
            }
        }
        match page.next {
            None => break,
            Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                bail!("the server returned the cursor `{next}` twice; stopping")
            }
            Some(next) => cursor = Some(next),
        }
    }

    if out.is_json() && !follow {
        output::print_json(&json!({ "items": Vec::from(newest), "next": null }))?;
        return Ok(Outcome::Ok);
    }
    if !out.is_json() {
        output::print_stdout(&tail_header())?;
    }
    print_tail_items(out, newest)?;
    if !follow {
        return Ok(Outcome::Ok);
    }
    loop {
        tokio::time::sleep(POLL).await;
        let after = last_seq.map(|s: u64| s.to_string());
        let page = match api.page(RECEIPTS, &[], after.as_deref(), MAX_PAGE).await {
            Ok(page) => page,
            Err(e) if is_transient(&e) => {
                eprintln!("warning: {e:#}; retrying");
                continue;
            }
            Err(e) => return Err(e),
        };
        // Only items past the last one shown, even if the server repeats some.
        let fresh: Vec<Value> = page
            .items
            .into_iter()
            .filter(|item| match (seq_of(item), last_seq) {
                (Some(seq), Some(last)) => seq > last,
                _ => true,
            })
            .collect();
        for item in &fresh {
            last_seq = seq_of(item).or(last_seq);
        }
        print_tail_items(out, fresh)?;
    }
}

async fn verify(api: &ApiClient, out: &Output) -> Result<Outcome> {
    let progress = io::stderr().is_terminal();
    let mut shown_progress = false;
    let mut verifier = ChainVerifier::new();
    let mut verified: u64 = 0;
    let mut last_seq: u64 = 0;
    let mut cursor: Option<String> = None;
    let result = 'pages: loop {
        let page = api.page(RECEIPTS, &[], cursor.as_deref(), MAX_PAGE).await?;
        for item in &page.items {
            match push(&mut verifier, item, last_seq) {
                Ok(seq) => last_seq = seq,
                Err(broken) => break 'pages Some(broken),
            }
            verified += 1;
            if progress && verified.is_multiple_of(PROGRESS_EVERY) {
                eprint!("\rverified {verified} receipts…");
                shown_progress = true;
            }
        }
        match page.next {
            None => break None,
            Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                bail!("the server returned the cursor `{next}` twice; stopping")
            }
            Some(next) => cursor = Some(next),
        }
    };
    if shown_progress {
        // Erase the progress line.
        eprint!("\r\x1b[2K");
    }

    match result {
        None => {
            let summary = verifier.finish();
            if out.is_json() {
                output::print_json(
                    &json!({ "ok": true, "count": summary.count, "head": summary.head }),
                )?;
            } else {
                output::print_stdout(&format!(
                    "ledger ok: {} receipts, head {}\n",
                    summary.count, summary.head
                ))?;
            }
            Ok(Outcome::Ok)
        }
        Some((seq, fault)) => {
            if out.is_json() {
                output::print_json(&json!({ "ok": false, "seq": seq, "error": fault }))?;
            } else {
                output::print_stdout(&format!("ledger BROKEN at seq {seq}: {fault}\n"))?;
            }
            Ok(Outcome::Denied)
        }
    }
}

/// Feeds one list item to the verifier: its seq, or the seq and fault of a bad record.
fn push(verifier: &mut ChainVerifier, item: &Value, last_seq: u64) -> Result<u64, (u64, String)> {
    let Some(seq) = seq_of(item) else {
        return Err((
            last_seq.saturating_add(1),
            "the item has no numeric `seq`".to_owned(),
        ));
    };
    let (Some(hash), Some(receipt)) = (
        item.get("hash").and_then(Value::as_str),
        item.get("receipt"),
    ) else {
        return Err((
            seq,
            "the item has no `hash` string or no `receipt`".to_owned(),
        ));
    };
    verifier.push(seq, hash, receipt).map_err(|e| {
        let bad = e.seq();
        let fault = e.to_string();
        // The message may already start with the position; it is printed once, in front.
        let fault = fault
            .strip_prefix(&format!("receipt {bad}: "))
            .map_or_else(|| fault.clone(), str::to_owned);
        (bad, fault)
    })?;
    Ok(seq)
}

fn seq_of(item: &Value) -> Option<u64> {
    item.get("seq").and_then(Value::as_u64)
}

fn tail_header() -> String {
    let cells = TAIL.iter().map(|(f, w)| (f.label().to_owned(), *w));
    format!("{}\n", pad_line(cells))
}

fn print_tail_items(out: &Output, items: impl IntoIterator<Item = Value>) -> Result<()> {
    for item in items {
        if out.is_json() {
            output::print_json_line(&item)?;
        } else {
            let cells = TAIL.iter().map(|(f, w)| (f.cell(&item), *w));
            output::print_stdout(&format!("{}\n", pad_line(cells)))?;
        }
    }
    Ok(())
}

fn pad_line(cells: impl Iterator<Item = (String, usize)>) -> String {
    let line: Vec<String> = cells
        .map(|(text, width)| format!("{text:<width$}"))
        .collect();
    line.join("  ").trim_end().to_owned()
}

/// Errors worth another poll: the server is briefly away or overloaded.
fn is_transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<ApiError>() {
        Some(api) => api.status() >= 500,
        None => e.chain().any(|c| c.is::<reqwest::Error>()),
    }
}
