//! `mandate gate`: register gates (resource servers) and inspect them.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use crate::Outcome;
use crate::client::ApiClient;
use crate::input;
use crate::output::{Field, Output, Render};

#[derive(Subcommand)]
pub(crate) enum GateCommand {
    /// Register a gate with its Ed25519 public key.
    Add {
        /// Display name.
        #[arg(long)]
        name: String,
        /// The resource-server identifier the gate guards (an absolute URL).
        #[arg(long, value_name = "URL")]
        audience: String,
        /// The gate's Ed25519 public key as a JWK file (`@FILE`); only public members are sent.
        #[arg(long, value_name = "@FILE")]
        jwk: String,
    },
    /// List gates.
    List,
    /// Show one gate.
    Show {
        /// The gate (`gat_…`).
        id: String,
    },
}

const GATE_ROW: &[Field] = &[
    Field::new("id", "id"),
    Field::new("name", "name").max(24),
    Field::new("audience", "audience").max(40),
    Field::new("keys", "keys").render(Render::Count),
    Field::new("created", "created_at").render(Render::Date),
];

const GATE: &[Field] = &[
    Field::new("id", "id"),
    Field::new("name", "name").max(60),
    Field::new("audience", "audience").max(60),
    Field::new("keys", "keys").render(Render::Keys).max(60),
    Field::new("created", "created_at"),
    Field::new("tenant", "tenant"),
];

pub(crate) async fn run(api: &ApiClient, out: &Output, cmd: GateCommand) -> Result<Outcome> {
    match cmd {
        GateCommand::Add {
            name,
            audience,
            jwk,
        } => {
            let body =
                json!({ "name": name, "audience": audience, "jwk": input::public_jwk(&jwk)? });
            let gate = api.post(&["v1", "gates"], &body).await?;
            out.object(&gate, GATE)?;
        }
        GateCommand::List => {
            let gates = api.list_all(&["v1", "gates"], &[]).await?;
            out.list(gates, GATE_ROW)?;
        }
        GateCommand::Show { id } => {
            let gate = api.get(&["v1", "gates", &id], &[]).await?;
            out.object(&gate, GATE)?;
        }
    }
    Ok(Outcome::Ok)
}
