//! `mandate human`: add, list, show and revoke humans, and issue their API keys.

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use crate::Outcome;
use crate::client::ApiClient;
use crate::input;
use crate::output::{Field, Output, Render};

#[derive(Subcommand)]
pub(crate) enum HumanCommand {
    /// Add a human to the caller's tenant.
    Add {
        /// Full name.
        #[arg(long)]
        name: String,
        /// Email address.
        #[arg(long)]
        email: String,
        /// What the human may do (only owners may add owners).
        #[arg(long, value_enum, default_value_t = Role::Admin)]
        role: Role,
    },
    /// List the tenant's humans.
    List,
    /// Show one human.
    Show {
        /// The human (`usr_…`).
        id: String,
    },
    /// Offboard a human: their API keys stop working and the agents they own are suspended.
    Revoke {
        /// The human (`usr_…`).
        id: String,
        /// Why; recorded in the ledger.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Issue a new API key for a human (the secret is shown once).
    ApiKey {
        /// The human (`usr_…`).
        id: String,
    },
    /// Manage a human's Ed25519 keys for signing mandates.
    #[command(subcommand)]
    Key(HumanKeyCommand),
}

#[derive(Subcommand)]
pub(crate) enum HumanKeyCommand {
    /// Register a human's Ed25519 public key; their mandates must then carry `human_signature`.
    Add {
        /// The human (`usr_…`).
        id: String,
        /// The Ed25519 public key as a JWK file (`@FILE`); only public members are sent.
        #[arg(long, value_name = "@FILE")]
        jwk: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Role {
    Owner,
    Admin,
    Auditor,
}

const HUMAN_ROW: &[Field] = &[
    Field::new("id", "id"),
    Field::new("name", "name").max(24),
    Field::new("email", "email").max(32),
    Field::new("role", "role"),
    Field::new("status", "status"),
    Field::new("created", "created_at").render(Render::Date),
];

pub(crate) const HUMAN: &[Field] = &[
    Field::new("id", "id"),
    Field::new("name", "name").max(60),
    Field::new("email", "email").max(60),
    Field::new("role", "role"),
    Field::new("status", "status"),
    Field::new("created", "created_at"),
    Field::new("tenant", "tenant"),
];

const API_KEY: &[Field] = &[
    Field::new("id", "id"),
    Field::new("human", "human"),
    // The secret is shown once: never truncated.
    Field::new("api key", "api_key"),
    Field::new("created", "created_at"),
];

pub(crate) async fn run(api: &ApiClient, out: &Output, cmd: HumanCommand) -> Result<Outcome> {
    match cmd {
        HumanCommand::Add { name, email, role } => {
            let body = json!({ "name": name, "email": email, "role": role.as_str() });
            let human = api.post(&["v1", "humans"], &body).await?;
            out.object(&human, HUMAN)?;
        }
        HumanCommand::List => {
            let humans = api.list_all(&["v1", "humans"], &[]).await?;
            out.list(humans, HUMAN_ROW)?;
        }
        HumanCommand::Show { id } => {
            let human = api.get(&["v1", "humans", &id], &[]).await?;
            out.object(&human, HUMAN)?;
        }
        HumanCommand::Revoke { id, reason } => {
            let human = api
                .post(&["v1", "humans", &id, "revoke"], &reason_body(reason))
                .await?;
            out.object(&human, HUMAN)?;
        }
        HumanCommand::ApiKey { id } => {
            let key = api
                .post(&["v1", "humans", &id, "api-keys"], &json!({}))
                .await?;
            eprintln!("warning: this API key is shown once and never again; store it now");
            out.object(&key, API_KEY)?;
        }
        HumanCommand::Key(HumanKeyCommand::Add { id, jwk }) => {
            let body = json!({ "jwk": input::public_jwk(&jwk)? });
            let key = api.post(&["v1", "humans", &id, "keys"], &body).await?;
            out.object(&key, crate::key::KEY)?;
            eprintln!("note: mandates made by this human must now carry a `human_signature`");
        }
    }
    Ok(Outcome::Ok)
}

/// `{"reason": R}`, or `{}` when no reason was given.
pub(crate) fn reason_body(reason: Option<String>) -> serde_json::Value {
    match reason {
        Some(reason) => json!({ "reason": reason }),
        None => json!({}),
    }
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Auditor => "auditor",
        }
    }
}
