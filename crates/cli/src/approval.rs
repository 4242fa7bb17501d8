//! `mandate approve` and `mandate approval …`: the human side of approvals (DESIGN §7) — list
//! the requests gates are holding, look at one, approve or deny it.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use crate::Outcome;
use crate::client::ApiClient;
use crate::human::reason_body;
use crate::output::{Field, Output};

/// `mandate approve <apr_…>`.
#[derive(Args)]
pub(crate) struct ApproveArgs {
    /// The approval (`apr_…`).
    id: String,
    /// Why; recorded in the ledger.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum ApprovalCommand {
    /// List approvals (all, or those with one status).
    List {
        /// Only approvals with this status.
        #[arg(long, value_enum)]
        status: Option<ApprovalStatus>,
    },
    /// Show one approval.
    Show {
        /// The approval (`apr_…`).
        id: String,
    },
    /// Approve a pending request (the same as `mandate approve`).
    Approve(ApproveArgs),
    /// Deny a pending request.
    Deny {
        /// The approval (`apr_…`).
        id: String,
        /// Why; recorded in the ledger.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Consumed,
    Expired,
}

impl ApprovalStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Consumed => "consumed",
            Self::Expired => "expired",
        }
    }
}

const APPROVAL_ROW: &[Field] = &[
    Field::new("id", "id"),
    Field::new("status", "status"),
    Field::new("agent", "agent"),
    Field::new("action", "action"),
    Field::new("resource", "resource").max(32),
    Field::new("summary", "summary").max(40),
    Field::new("expires", "expires_at"),
];

const APPROVAL: &[Field] = &[
    Field::new("id", "id"),
    Field::new("status", "status"),
    Field::new("summary", "summary").max(80),
    Field::new("agent", "agent"),
    Field::new("delegation", "delegation"),
    Field::new("action", "action"),
    Field::new("resource", "resource").max(80),
    Field::new("request hash", "request_hash"),
    Field::new("gate", "gate"),
    Field::new("created", "created_at"),
    Field::new("expires", "expires_at"),
    Field::new("decided", "decided_at"),
    Field::new("decided by", "decided_by"),
    Field::new("used", "consumed_at"),
    Field::new("tenant", "tenant"),
];

/// `mandate approve`.
pub(crate) async fn approve(api: &ApiClient, out: &Output, args: ApproveArgs) -> Result<Outcome> {
    decide(api, out, &args.id, "approve", args.reason).await
}

async fn decide(
    api: &ApiClient,
    out: &Output,
    id: &str,
    verb: &str,
    reason: Option<String>,
) -> Result<Outcome> {
    let a = api
        .post(&["v1", "approvals", id, verb], &reason_body(reason))
        .await?;
    out.object(&a, APPROVAL)?;
    Ok(Outcome::Ok)
}

pub(crate) async fn run(api: &ApiClient, out: &Output, cmd: ApprovalCommand) -> Result<Outcome> {
    match cmd {
        ApprovalCommand::List { status } => {
            let query: Vec<(&str, &str)> =
                status.map(|s| ("status", s.as_str())).into_iter().collect();
            let items = api.list_all(&["v1", "approvals"], &query).await?;
            out.list(items, APPROVAL_ROW)?;
            Ok(Outcome::Ok)
        }
        ApprovalCommand::Show { id } => {
            let a = api.get(&["v1", "approvals", &id], &[]).await?;
            out.object(&a, APPROVAL)?;
            Ok(Outcome::Ok)
        }
        ApprovalCommand::Approve(args) => approve(api, out, args).await,
        ApprovalCommand::Deny { id, reason } => decide(api, out, &id, "deny", reason).await,
    }
}
