//! `mandate server`: operator-level management of the running server (operator owners only).

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use crate::Outcome;
use crate::client::ApiClient;
use crate::output::{Field, Output};

#[derive(Subcommand)]
pub(crate) enum ServerCommand {
    /// Rotate the server's signing keys: the published next key starts signing, a fresh next key
    /// is published, and the old key keeps verifying until what it signed has expired.
    RotateKeys,
}

const ROTATION: &[Field] = &[
    Field::new("current kid", "current"),
    Field::new("next kid", "next"),
    Field::new("retiring kid", "retiring.kid"),
    Field::new("retiring until", "retiring.until"),
];

pub(crate) async fn run(api: &ApiClient, out: &Output, cmd: ServerCommand) -> Result<Outcome> {
    match cmd {
        ServerCommand::RotateKeys => {
            let rotation = api
                .post(&["v1", "server", "signing-keys", "rotate"], &json!({}))
                .await?;
            out.object(&rotation, ROTATION)?;
        }
    }
    Ok(Outcome::Ok)
}
