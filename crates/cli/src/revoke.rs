//! `mandate revoke`: one command for every granularity of DESIGN §5 — exactly one target.

use anyhow::{Result, bail};
use clap::{ArgGroup, Args};

use crate::Outcome;
use crate::client::ApiClient;
use crate::human::reason_body;
use crate::output::{Field, Output};
use crate::{agent, delegation, human, key};

#[derive(Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .multiple(false)
        .args(["agent", "human", "key", "token", "tenant", "delegation"])
))]
pub(crate) struct RevokeArgs {
    /// An agent (`agt_…`): every delegation to it and everything below them; final.
    #[arg(long, value_name = "ID")]
    agent: Option<String>,
    /// A human (`usr_…`): their API keys stop working and the agents they own are suspended.
    #[arg(long, value_name = "ID")]
    human: Option<String>,
    /// One agent key, as `AGENT_ID:KID`: it is retired (not the agent's last active key).
    #[arg(long, value_name = "AGENT_ID:KID")]
    key: Option<String>,
    /// One access token, by its `jti`.
    #[arg(long, value_name = "JTI")]
    token: Option<String>,
    /// A whole tenant (`ten_…`; operator owners only).
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
    /// A delegation (`del_…`), its subtree and every token under it.
    #[arg(long, value_name = "ID")]
    delegation: Option<String>,
    /// Why; recorded in the ledger (not accepted with `--key`).
    #[arg(long, conflicts_with = "key")]
    reason: Option<String>,
}

const TOKEN: &[Field] = &[Field::new("jti", "jti"), Field::new("status", "status")];

const TENANT: &[Field] = &[
    Field::new("tenant", "tenant.id"),
    Field::new("name", "tenant.name").max(40),
    Field::new("status", "status"),
    Field::new("revoked delegations", "revoked_delegations"),
];

pub(crate) async fn run(api: &ApiClient, out: &Output, args: RevokeArgs) -> Result<Outcome> {
    let RevokeArgs {
        agent,
        human,
        key,
        token,
        tenant,
        delegation,
        reason,
    } = args;
    if let Some(id) = agent {
        agent::transition(api, out, &id, "revoke", reason).await?;
    } else if let Some(id) = human {
        let h = api
            .post(&["v1", "humans", &id, "revoke"], &reason_body(reason))
            .await?;
        out.object(&h, human::HUMAN)?;
    } else if let Some(target) = key {
        let Some((agent, kid)) = target.split_once(':') else {
            bail!("invalid `--key`: expected `AGENT_ID:KID`");
        };
        let k = api.delete(&["v1", "agents", agent, "keys", kid]).await?;
        out.object(&k, key::KEY)?;
    } else if let Some(jti) = token {
        let t = api
            .post(&["v1", "tokens", &jti, "revoke"], &reason_body(reason))
            .await?;
        out.object(&t, TOKEN)?;
    } else if let Some(id) = tenant {
        let t = api
            .post(&["v1", "tenants", &id, "revoke"], &reason_body(reason))
            .await?;
        out.object(&t, TENANT)?;
    } else if let Some(id) = delegation {
        delegation::revoke(api, out, &id, reason).await?;
    } else {
        // The argument group makes exactly one target required.
        bail!(
            "name what to revoke: one of --agent, --human, --key, --token, --tenant, --delegation"
        );
    }
    Ok(Outcome::Ok)
}
