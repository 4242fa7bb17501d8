//! `mandate gate`: run a gate (`--config gate.toml`), or register gates (resource servers) with
//! the authority and inspect them.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::Outcome;
use crate::client::ApiClient;
use crate::input;
use crate::output::{Field, Output, Render};

/// `mandate gate --config FILE` or `mandate gate <COMMAND>`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
pub(crate) struct GateArgs {
    /// Run the gate described by this TOML file (a reverse proxy in front of HTTP tools and MCP
    /// servers) until Ctrl-C.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<GateCommand>,
}

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

/// Runs the gate of `config` until Ctrl-C or SIGTERM.
pub(crate) async fn serve(config: &Path) -> Result<Outcome> {
    crate::serve::init_tracing();
    let config = mandate_gate::GateConfig::load(config).map_err(|e| anyhow!("{e}"))?;
    let issuer = config.issuer.clone();
    mandate_gate::run(config, crate::serve::shutdown_signal(), |gate| {
        println!(
            "mandate gate: listening on {} (public URL {}, authority {issuer})",
            gate.local_addr(),
            gate.url()
        );
    })
    .await
    .map_err(|e| anyhow!("{e}"))?;
    Ok(Outcome::Ok)
}

/// The admin subcommands (`add`, `list`, `show`).
pub(crate) async fn run(api: &ApiClient, out: &Output, args: GateArgs) -> Result<Outcome> {
    let Some(cmd) = args.command else {
        bail!(
            "use `mandate gate --config gate.toml` to run a gate, or `mandate gate add|list|show`"
        );
    };
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
