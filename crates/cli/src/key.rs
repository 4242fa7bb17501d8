//! `mandate key`: list, add and retire an agent's keys.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::Outcome;
use crate::client::ApiClient;
use crate::input;
use crate::output::{self, Field, Output, Render};

#[derive(Subcommand)]
pub(crate) enum KeyCommand {
    /// List an agent's keys.
    List {
        /// The agent (`agt_…`).
        #[arg(long, value_name = "ID")]
        agent: String,
    },
    /// Add a key to an agent; without `--jwk` the server generates it and returns it once.
    Add {
        /// The agent (`agt_…`).
        #[arg(long, value_name = "ID")]
        agent: String,
        /// The new Ed25519 public key as a JWK file (`@FILE`); only public members are sent.
        #[arg(long, value_name = "@FILE")]
        jwk: Option<String>,
        /// Write the server-generated private key to FILE (created with mode 0600).
        #[arg(long, value_name = "FILE", conflicts_with = "jwk")]
        save_key: Option<PathBuf>,
        /// Rotate: the agent's other active keys stop authenticating after the overlap.
        #[arg(long)]
        rotate: bool,
        /// How long the other keys keep working after `--rotate`, in seconds (server default 3600).
        #[arg(long, value_name = "SECS", requires = "rotate")]
        overlap: Option<u32>,
    },
    /// Retire one of an agent's keys (not its last active one).
    Retire {
        /// The agent (`agt_…`).
        #[arg(long, value_name = "ID")]
        agent: String,
        /// The key's thumbprint.
        kid: String,
    },
}

const KEY_ROW: &[Field] = &[
    Field::new("kid", "kid").max(16),
    Field::new("status", "status"),
    Field::new("created", "created_at").render(Render::Date),
    Field::new("retired", "retired_at").render(Render::Date),
    Field::new("not after", "not_after"),
];

pub(crate) const KEY: &[Field] = &[
    Field::new("kid", "kid").max(16),
    Field::new("status", "status"),
    Field::new("jwk", "jwk").render(Render::Json).max(60),
    Field::new("created", "created_at"),
    Field::new("retired", "retired_at"),
    Field::new("not after", "not_after"),
];

pub(crate) async fn run(api: &ApiClient, out: &Output, cmd: KeyCommand) -> Result<Outcome> {
    match cmd {
        KeyCommand::List { agent } => {
            // The API has no key list of its own: keys are part of the agent.
            let agent = api.get(&["v1", "agents", &agent], &[]).await?;
            let keys = match agent.get("keys") {
                Some(Value::Array(keys)) => keys.clone(),
                _ => bail!("unexpected response from the server: the agent has no `keys` array"),
            };
            out.list(keys, KEY_ROW)?;
        }
        KeyCommand::Add {
            agent,
            jwk,
            save_key,
            rotate,
            overlap,
        } => {
            let mut body = match jwk {
                Some(jwk) => json!({ "jwk": input::public_jwk(&jwk)? }),
                None => json!({}),
            };
            if rotate {
                body["rotate"] = json!(true);
            }
            if let Some(secs) = overlap {
                body["overlap_secs"] = json!(secs);
            }
            if let Some(path) = &save_key {
                input::check_save_target(path)?;
            }
            let Value::Object(mut added) =
                api.post(&["v1", "agents", &agent, "keys"], &body).await?
            else {
                bail!("unexpected response from the server: expected an object");
            };
            let held = input::deliver_private_key(&mut added, save_key.as_deref(), out)?;
            if out.is_json() {
                output::print_json(&Value::Object(added))?;
            } else {
                out.object(added.get("key").unwrap_or(&Value::Null), KEY)?;
            }
            input::print_private_key(held)?;
            if rotate {
                eprintln!(
                    "note: the agent's other keys stop authenticating after the overlap (see `mandate key list --agent {}`)",
                    crate::output::sanitize(&agent)
                );
            }
        }
        KeyCommand::Retire { agent, kid } => {
            let key = api.delete(&["v1", "agents", &agent, "keys", &kid]).await?;
            out.object(&key, KEY)?;
        }
    }
    Ok(Outcome::Ok)
}
