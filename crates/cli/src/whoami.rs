//! `mandate whoami`: the human and tenant behind the API key in use.

use anyhow::Result;

use crate::Outcome;
use crate::client::ApiClient;
use crate::output::{Field, Output};

const ME: &[Field] = &[
    Field::new("human", "human.id"),
    Field::new("name", "human.name").max(40),
    Field::new("email", "human.email").max(40),
    Field::new("role", "human.role"),
    Field::new("status", "human.status"),
    Field::new("tenant", "tenant.id"),
    Field::new("tenant name", "tenant.name").max(40),
];

pub(crate) async fn run(api: &ApiClient, out: &Output) -> Result<Outcome> {
    let me = api.get(&["v1", "me"], &[]).await?;
    out.object(&me, ME)?;
    Ok(Outcome::Ok)
}
