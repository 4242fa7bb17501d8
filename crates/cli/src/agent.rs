//! `mandate agent`: register agents, list and show them, suspend, resume and revoke them.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use crate::Outcome;
use crate::client::ApiClient;
use crate::human::reason_body;
use crate::input;
use crate::output::{Field, Output, Render};

#[derive(Subcommand)]
pub(crate) enum AgentCommand {
    /// Register an agent; without `--jwk` the server generates its key and returns it once.
    Add {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Id of the human who owns the agent (`usr_…`).
        #[arg(long, value_name = "USR")]
        owner: String,
        /// What the agent is for.
        #[arg(long)]
        purpose: String,
        /// The most the agent may ever be granted: JSON authorization_details, or `@FILE`.
        #[arg(long, value_name = "JSON_OR_@FILE")]
        ceiling: String,
        /// The agent's Ed25519 public key as a JWK file (`@FILE`); only public members are sent.
        #[arg(long, value_name = "@FILE")]
        jwk: Option<String>,
        /// Write the server-generated private key to FILE (created with mode 0600).
        #[arg(long, value_name = "FILE", conflicts_with = "jwk")]
        save_key: Option<PathBuf>,
    },
    /// List agents.
    List {
        /// Only agents with this status.
        #[arg(long, value_enum)]
        status: Option<AgentStatus>,
        /// Only agents owned by this human (`usr_…`).
        #[arg(long, value_name = "USR")]
        owner: Option<String>,
    },
    /// Show one agent.
    Show {
        /// The agent (`agt_…`).
        id: String,
    },
    /// Suspend an agent (reversible with `resume`).
    Suspend {
        /// The agent (`agt_…`).
        id: String,
        /// Why; recorded in the ledger.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a suspended agent.
    Resume {
        /// The agent (`agt_…`).
        id: String,
        /// Why; recorded in the ledger.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke an agent for good.
    Revoke {
        /// The agent (`agt_…`).
        id: String,
        /// Why; recorded in the ledger.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum AgentStatus {
    Active,
    Suspended,
    Revoked,
}

const AGENT_ROW: &[Field] = &[
    Field::new("id", "id"),
    Field::new("name", "name").max(24),
    Field::new("owner", "owner"),
    Field::new("status", "status"),
    Field::new("trust", "trust.score"),
    Field::new("keys", "keys").render(Render::Count),
    Field::new("created", "created_at").render(Render::Date),
];

pub(crate) const AGENT: &[Field] = &[
    Field::new("id", "id"),
    Field::new("name", "name").max(60),
    Field::new("purpose", "purpose").max(60),
    Field::new("owner", "owner"),
    Field::new("status", "status"),
    Field::new("trust", "trust.score"),
    Field::new("spiffe id", "spiffe_id").max(60),
    Field::new("did", "did").max(24),
    Field::new("commitment", "commitment").max(16),
    Field::new("ceiling", "ceiling")
        .render(Render::Json)
        .max(60),
    Field::new("keys", "keys").render(Render::Keys).max(60),
    Field::new("created", "created_at"),
    Field::new("last seen", "last_seen_at"),
    Field::new("tenant", "tenant"),
];

pub(crate) async fn run(api: &ApiClient, out: &Output, cmd: AgentCommand) -> Result<Outcome> {
    match cmd {
        AgentCommand::Add {
            name,
            owner,
            purpose,
            ceiling,
            jwk,
            save_key,
        } => {
            let mut body = json!({
                "name": name,
                "owner": owner,
                "purpose": purpose,
                "ceiling": input::ceiling(&ceiling)?,
            });
            if let Some(jwk) = jwk {
                body["jwk"] = input::public_jwk(&jwk)?;
            }
            if let Some(path) = &save_key {
                input::check_save_target(path)?;
            }
            let Value::Object(mut created) = api.post(&["v1", "agents"], &body).await? else {
                bail!("unexpected response from the server: expected an object");
            };
            let held = input::deliver_private_key(&mut created, save_key.as_deref(), out)?;
            print_created(out, created)?;
            input::print_private_key(held)?;
        }
        AgentCommand::List { status, owner } => {
            let mut query = Vec::new();
            if let Some(status) = status {
                query.push(("status", status.as_str()));
            }
            if let Some(owner) = &owner {
                query.push(("owner", owner.as_str()));
            }
            let agents = api.list_all(&["v1", "agents"], &query).await?;
            out.list(agents, AGENT_ROW)?;
        }
        AgentCommand::Show { id } => {
            let agent = api.get(&["v1", "agents", &id], &[]).await?;
            out.object(&agent, AGENT)?;
        }
        AgentCommand::Suspend { id, reason } => {
            transition(api, out, &id, "suspend", reason).await?
        }
        AgentCommand::Resume { id, reason } => transition(api, out, &id, "resume", reason).await?,
        AgentCommand::Revoke { id, reason } => transition(api, out, &id, "revoke", reason).await?,
    }
    Ok(Outcome::Ok)
}

fn print_created(out: &Output, created: Map<String, Value>) -> Result<()> {
    if out.is_json() {
        return crate::output::print_json(&Value::Object(created));
    }
    let agent = created.get("agent").unwrap_or(&Value::Null);
    out.object(agent, AGENT)
}

pub(crate) async fn transition(
    api: &ApiClient,
    out: &Output,
    id: &str,
    verb: &str,
    reason: Option<String>,
) -> Result<()> {
    let agent = api
        .post(&["v1", "agents", id, verb], &reason_body(reason))
        .await?;
    out.object(&agent, AGENT)
}

impl AgentStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
        }
    }
}
