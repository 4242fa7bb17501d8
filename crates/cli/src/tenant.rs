//! `mandate tenant`: create a tenant with its first owner (operator owners only).

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use crate::Outcome;
use crate::client::ApiClient;
use crate::output::{Field, Output};

#[derive(Subcommand)]
pub(crate) enum TenantCommand {
    /// Create a tenant and its first owner; prints the owner's API key once.
    Add {
        /// Name of the new tenant.
        #[arg(long)]
        name: String,
        /// Name of its first owner.
        #[arg(long)]
        owner_name: String,
        /// Email of its first owner.
        #[arg(long)]
        owner_email: String,
    },
}

const CREATED: &[Field] = &[
    Field::new("tenant", "tenant.id"),
    Field::new("name", "tenant.name").max(40),
    Field::new("owner", "owner.id"),
    Field::new("owner name", "owner.name").max(40),
    Field::new("owner email", "owner.email").max(40),
    // The secret is shown once: never truncated.
    Field::new("owner api key", "api_key"),
    Field::new("created", "tenant.created_at"),
];

pub(crate) async fn run(api: &ApiClient, out: &Output, cmd: TenantCommand) -> Result<Outcome> {
    match cmd {
        TenantCommand::Add {
            name,
            owner_name,
            owner_email,
        } => {
            let body =
                json!({ "name": name, "owner": { "name": owner_name, "email": owner_email } });
            let created = api.post(&["v1", "tenants"], &body).await?;
            eprintln!("warning: the owner's API key is shown once and never again; store it now");
            out.object(&created, CREATED)?;
        }
    }
    Ok(Outcome::Ok)
}
