//! `mandate`: runs the authority (`serve`) and drives its admin API (every other command).

mod agent;
mod agent_client;
mod approval;
mod audit;
mod audit_offline;
mod client;
mod delegation;
mod demo;
mod events;
mod gate;
mod human;
mod input;
mod key;
mod output;
mod revoke;
mod serve;
mod server_keys;
mod tenant;
mod whoami;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::ApiClient;
use crate::output::Output;

/// Identity, delegation and audit authority for AI agents.
#[derive(Parser)]
#[command(name = "mandate", version, propagate_version = true)]
struct Cli {
    /// Base URL of the Mandate server.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MANDATE_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    server: String,

    /// API key of the calling human (prefer the environment variable over the flag).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MANDATE_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    api_key: Option<String>,

    /// Print the raw JSON responses instead of tables.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Mandate server.
    Serve(serve::ServeArgs),
    /// Show the human and tenant the API key belongs to.
    Whoami,
    /// Manage tenants (operator owners only).
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Manage humans and their API keys.
    #[command(subcommand)]
    Human(human::HumanCommand),
    /// Register and manage agents.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Manage an agent's keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Run a gate (`--config gate.toml`), or register and inspect gates.
    Gate(gate::GateArgs),
    /// Delegate to an agent as the calling human (a mandate).
    #[command(subcommand)]
    Mandate(delegation::MandateCommand),
    /// Inspect, list and revoke delegations.
    #[command(subcommand)]
    Delegation(delegation::DelegationCommand),
    /// Act as an agent: redeem a mandate, delegate to a sub-agent, show a token. Authenticates
    /// with the agent's private key file, not with an API key.
    #[command(subcommand)]
    Token(agent_client::TokenCommand),
    /// A guided tour on a throw-away deployment: authority, gate and tool in this process; a
    /// human, an agent and a sub-agent; allowed, denied and approved calls; a revocation; the
    /// ledger verified.
    Demo(demo::DemoArgs),
    /// Approve a request a gate is holding for a human's decision (`apr_…`).
    Approve(approval::ApproveArgs),
    /// List, show, approve and deny the requests gates hold for a human's decision.
    #[command(subcommand)]
    Approval(approval::ApprovalCommand),
    /// Revoke exactly one thing: an agent, a human, a key, a token, a tenant or a delegation.
    Revoke(revoke::RevokeArgs),
    /// Follow revocations, suspensions and resumptions as they happen (until Ctrl-C).
    Events(events::EventsArgs),
    /// Manage the server itself (operator owners only).
    #[command(subcommand)]
    Server(server_keys::ServerCommand),
    /// Read and verify the receipt ledger.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// How a command that ran to completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Everything went as asked: exit 0.
    Ok,
    /// The command ran but its answer is "no": a verification failed or access was denied (exit 3).
    Denied,
}

const EXIT_FAILURE: u8 = 1;
const EXIT_DENIED: u8 = 3;

fn main() -> ExitCode {
    client::install_crypto_provider();

    // Usage errors exit with 2, `--help` and `--version` with 0 (clap's own codes).
    let cli = Cli::parse();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };

    match runtime.block_on(run(cli)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Denied) => ExitCode::from(EXIT_DENIED),
        // The reader went away (`mandate audit tail --follow | head`): nobody to tell.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_FAILURE),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let out = Output::new(cli.json);
    if let Command::Serve(args) = cli.command {
        serve::run(args).await?;
        return Ok(Outcome::Ok);
    }
    if let Command::Demo(args) = cli.command {
        return demo::run(args).await;
    }
    if let Command::Gate(gate::GateArgs {
        config: Some(path), ..
    }) = &cli.command
    {
        return gate::serve(path).await;
    }
    if let Command::Token(cmd) = cli.command {
        return agent_client::run(&cli.server, &out, cmd).await;
    }
    let api = ApiClient::new(&cli.server, cli.api_key)?;
    match cli.command {
        // Handled above: serving, and acting as an agent, need neither the client nor an API key.
        Command::Serve(_) | Command::Token(_) | Command::Demo(_) => Ok(Outcome::Ok),
        Command::Whoami => whoami::run(&api, &out).await,
        Command::Tenant(cmd) => tenant::run(&api, &out, cmd).await,
        Command::Human(cmd) => human::run(&api, &out, cmd).await,
        Command::Agent(cmd) => agent::run(&api, &out, cmd).await,
        Command::Key(cmd) => key::run(&api, &out, cmd).await,
        Command::Gate(args) => gate::run(&api, &out, args).await,
        Command::Mandate(cmd) => delegation::run_mandate(&api, &out, cmd).await,
        Command::Delegation(cmd) => delegation::run(&api, &out, cmd).await,
        Command::Approve(args) => approval::approve(&api, &out, args).await,
        Command::Approval(cmd) => approval::run(&api, &out, cmd).await,
        Command::Revoke(args) => revoke::run(&api, &out, args).await,
        Command::Events(args) => events::run(&api, &out, args).await,
        Command::Server(cmd) => server_keys::run(&api, &out, cmd).await,
        Command::Audit(cmd) => audit::run(&api, &out, cmd).await,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
