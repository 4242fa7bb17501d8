//! `mandate demo`: a guided tour on a throw-away deployment.
//!
//! Starts an authority (SQLite in a temporary directory), a small built-in ticket tool, and a
//! gate in front of the tool, all in this process on free loopback ports; then walks the whole
//! story with the same code paths the CLI commands use: a human, her agent and its sub-agent, a
//! mandate, redemption and sub-delegation (DESIGN §4 grants 1 and 2), an allowed call through
//! the gate, a denied one, a call that needs the human's approval, a revocation that cuts the
//! sub-agent off, and a verification of the ledger. Each step is printed with what it proves.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use axum::Json;
use axum::extract::Path as UrlPath;
use axum::http::HeaderMap;
use clap::{Args, Parser};
use serde_json::{Value, json};

use crate::Outcome;
use crate::agent_client::{self, TokenCommand};
use crate::audit::{self, AuditCommand};
use crate::client::ApiClient;
use crate::delegation::{self, DelegationCommand};
use crate::output::{self, Output};

/// The audience (resource identifier) of the demo gate.
const AUDIENCE: &str = "https://tickets.demo.example";

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Keep the authority and the gate running after the tour (until Ctrl-C), to explore them
    /// with the other commands.
    #[arg(long)]
    keep_running: bool,
    /// Where to keep the demo's data (default: a temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

/// Parses `args` as a `mandate` sub-command of type `T` (the demo drives the real commands).
fn parse<T: clap::Subcommand>(args: &[&str]) -> Result<T> {
    #[derive(Parser)]
    struct Wrap<S: clap::Subcommand> {
        #[command(subcommand)]
        cmd: S,
    }
    let all = std::iter::once("mandate").chain(args.iter().copied());
    Ok(Wrap::<T>::try_parse_from(all)
        .map_err(|e| anyhow!("demo: {e}"))?
        .cmd)
}

struct Tour {
    step: usize,
}

impl Tour {
    fn say(&mut self, title: &str, detail: &str) {
        self.step += 1;
        println!();
        println!("── {}. {title}", self.step);
        if !detail.is_empty() {
            for line in detail.lines() {
                println!("   {line}");
            }
        }
    }
}

fn show_call(label: &str, r: &agent_client::CallResponse) {
    println!("   {label} → HTTP {}", r.status);
    if let Some(w) = &r.www_authenticate {
        println!("   WWW-Authenticate: {}", output::sanitize(w));
    }
    let body = serde_json::to_string(&r.body).unwrap_or_default();
    println!("   {}", output::ellipsize(&output::sanitize(&body), 300));
}

pub(crate) async fn run(args: DemoArgs) -> Result<Outcome> {
    let temp;
    let root = match &args.data {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create `{}`", root.display()))?;
    let out = Output::new(false);
    let mut tour = Tour { step: 0 };

    // The authority.
    let admin_key = format!(
        "mnd_demo_{}",
        mandate_core::encoding::hex(
            &mandate_server::state::random::<16>().map_err(|_| anyhow!("no random source"))?
        )
    );
    let mut config = mandate_server::ServerConfig::new(root.join("authority"));
    config.listen = "127.0.0.1:0".parse().context("listen address")?;
    config.bootstrap_key = Some(admin_key.clone());
    let authority = mandate_server::start(config)
        .await
        .map_err(|e| anyhow!("cannot start the authority: {e}"))?;
    let server = authority.url();
    let admin = ApiClient::new(&server, Some(admin_key.clone()))?;

    // The tool, and the gate in front of it.
    let tool = start_tool().await?;
    let gate_jwk = generate_key(&root.join("gate-key.json"))?;
    let gate = admin
        .post(
            &["v1", "gates"],
            &json!({"name": "tickets-gate", "audience": AUDIENCE, "jwk": public_of(&gate_jwk)}),
        )
        .await?;
    let gate_id = str_of(&gate, "id")?;
    let gate_toml = format!(
        r#"listen = "127.0.0.1:0"
issuer = "{server}"
audience = "{AUDIENCE}"
gate_id = "{gate_id}"
key_file = "gate-key.json"
spool_dir = "gate-spool"

[[upstream]]
name = "tickets"
kind = "http"
url = "{tool}"

[[route]]
method = "GET"
path = "/tickets/{{id}}"
action = "read"
resource = "tickets/{{id}}"

[[route]]
method = "DELETE"
path = "/tickets/{{id}}"
action = "delete"
resource = "tickets/{{id}}"
"#
    );
    std::fs::write(root.join("gate.toml"), &gate_toml).context("cannot write gate.toml")?;
    let gate_config = mandate_gate::GateConfig::load(&root.join("gate.toml"))
        .map_err(|e| anyhow!("gate.toml: {e}"))?;
    let running_gate = mandate_gate::start(gate_config)
        .await
        .map_err(|e| anyhow!("cannot start the gate: {e}"))?;
    let gate_url = running_gate.url();
    tour.say(
        "A throw-away deployment",
        &format!(
            "authority  {server}   (SQLite under {})\n\
             tool       {tool}   (a ticket API that knows nothing about tokens)\n\
             gate       {gate_url}   ({gate_id}, audience {AUDIENCE}; GET → read, DELETE → delete)",
            root.display()
        ),
    );

    // People and agents.
    let alice = admin
        .post(
            &["v1", "humans"],
            &json!({"name": "Alice", "email": "alice@example.com"}),
        )
        .await?;
    let alice_id = str_of(&alice, "id")?;
    let alice_key = admin
        .post(&["v1", "humans", &alice_id, "api-keys"], &json!({}))
        .await?;
    let alice_api = ApiClient::new(&server, Some(str_of(&alice_key, "api_key")?))?;
    let ceiling = json!([{"type": "mandate", "actions": ["read", "delete"], "locations": [AUDIENCE], "resources": ["tickets/*"]}]);
    let agent = |name: &'static str, purpose: &'static str| {
        let admin = &admin;
        let ceiling = ceiling.clone();
        let alice_id = alice_id.clone();
        let root = root.clone();
        async move {
            let jwk = generate_key(&root.join(format!("{name}.jwk")))?;
            let created = admin
                .post(
                    &["v1", "agents"],
                    &json!({"name": name, "owner": alice_id, "purpose": purpose, "ceiling": ceiling, "jwk": public_of(&jwk)}),
                )
                .await?;
            anyhow::Ok(str_of(&created["agent"], "id")?)
        }
    };
    let triage = agent("triage-bot", "triage support tickets").await?;
    let summarizer = agent("summarizer", "summarize tickets").await?;
    tour.say(
        "One human, two agents, each with its own Ed25519 key",
        &format!(
            "Alice        {alice_id}\ntriage-bot   {triage}   (owner Alice)\nsummarizer   {summarizer}   (owner Alice)"
        ),
    );

    // The mandate.
    let mandate = alice_api
        .post(
            &["v1", "mandates"],
            &json!({
                "agent": triage, "expires_in": 3600, "purpose": "triage the support queue",
                "authorization_details": [
                    {"type": "mandate", "actions": ["read"], "locations": [AUDIENCE], "resources": ["tickets/*"]},
                    {"type": "mandate", "actions": ["delete"], "locations": [AUDIENCE], "resources": ["tickets/*"],
                     "constraints": {"approval_required_for": ["delete"]}},
                ],
            }),
        )
        .await?;
    let mandate_id = str_of(&mandate, "id")?;
    std::fs::write(root.join("mandate.jwt"), str_of(&mandate, "delegation")?)
        .context("cannot save the mandate")?;
    tour.say(
        "Alice → triage-bot: a mandate (authority starts only from a human)",
        &format!(
            "{mandate_id}: read tickets/*, delete tickets/* only with Alice's approval, for 1 h"
        ),
    );

    // Grants 1 and 2.
    let p = |name: &str| root.join(name).display().to_string();
    tour.say(
        "triage-bot redeems the mandate (private_key_jwt + DPoP)",
        "",
    );
    agent_client::run(
        &server,
        &out,
        parse::<TokenCommand>(&[
            "redeem",
            "--key",
            &p("triage-bot.jwk"),
            "--document",
            &p("mandate.jwt"),
            "--save",
            &p("triage.token.json"),
        ])?,
    )
    .await?;
    let read_only = json!([{"type": "mandate", "actions": ["read"], "locations": [AUDIENCE], "resources": ["tickets/*"]}]).to_string();
    tour.say(
        "triage-bot → summarizer: read only (authority only shrinks)",
        "",
    );
    agent_client::run(
        &server,
        &out,
        parse::<TokenCommand>(&[
            "delegate",
            "--key",
            &p("triage-bot.jwk"),
            "--token",
            &p("triage.token.json"),
            "--to",
            &summarizer,
            "--to-key",
            &p("summarizer.jwk"),
            "--authorization-details",
            &read_only,
            "--save",
            &p("summarizer.token.json"),
        ])?,
    )
    .await?;
    tour.say("The chain, as the authority stores it", "");
    delegation::run(
        &admin,
        &out,
        parse::<DelegationCommand>(&["tree", &mandate_id])?,
    )
    .await?;

    // Calls through the gate.
    let ticket = format!("{gate_url}/tickets/42");
    tour.say(
        "summarizer reads ticket 42 through the gate",
        "The tool sees who acts, for whom, under which delegation — never the token.",
    );
    let r =
        agent_client::send_with_token(&root.join("summarizer.token.json"), "GET", &ticket, None)
            .await?;
    show_call("GET /tickets/42", &r);
    expect(r.status == 200, "the allowed call failed")?;

    tour.say(
        "summarizer tries to delete it",
        "Its delegation is read-only: the gate refuses, the tool never sees the request.",
    );
    let r =
        agent_client::send_with_token(&root.join("summarizer.token.json"), "DELETE", &ticket, None)
            .await?;
    show_call("DELETE /tickets/42", &r);
    expect(r.status == 403, "the forbidden call was not refused")?;

    tour.say(
        "triage-bot deletes it: Alice must approve first",
        "The approval is bound to this exact request, single-use, and expires.",
    );
    let r = agent_client::send_with_token(&root.join("triage.token.json"), "DELETE", &ticket, None)
        .await?;
    show_call("DELETE /tickets/42", &r);
    let approval = find_approval_id(&r.body)
        .ok_or_else(|| anyhow!("the gate did not name an approval: {}", r.body))?;
    alice_api
        .post(&["v1", "approvals", &approval, "approve"], &json!({}))
        .await?;
    println!("   Alice approves {approval}");
    let r = agent_client::send_with_token(&root.join("triage.token.json"), "DELETE", &ticket, None)
        .await?;
    show_call("DELETE /tickets/42 (approved)", &r);
    expect(r.status == 200, "the approved call failed")?;
    let r = agent_client::send_with_token(&root.join("triage.token.json"), "DELETE", &ticket, None)
        .await?;
    show_call("DELETE /tickets/42 (again)", &r);
    expect(r.status == 403, "the approval was used twice")?;

    // Revocation.
    let sub = summarizer_delegation(&root.join("summarizer.token.json"))?;
    tour.say(
        "Alice revokes summarizer's delegation",
        "The gate hears it on the authority's event stream; the next call is refused.",
    );
    alice_api
        .post(&["v1", "delegations", &sub, "revoke"], &json!({}))
        .await?;
    let start = Instant::now();
    loop {
        let r = agent_client::send_with_token(
            &root.join("summarizer.token.json"),
            "GET",
            &ticket,
            None,
        )
        .await?;
        if r.status != 200 {
            show_call("GET /tickets/42", &r);
            println!(
                "   refused {} ms after the revocation",
                start.elapsed().as_millis()
            );
            break;
        }
        if start.elapsed() > Duration::from_secs(5) {
            bail!("the revoked delegation still worked after 5 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The ledger.
    tour.say(
        "Every decision is in the tamper-evident ledger",
        "Gate decisions are shipped from the gate's durable spool; verify the whole chain:",
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let verdict = audit::run(&admin, &out, parse::<AuditCommand>(&["verify"])?).await?;

    println!();
    if args.keep_running {
        println!("Running until Ctrl-C. Explore with:");
        println!("    export MANDATE_SERVER={server} MANDATE_API_KEY={admin_key}");
        println!(
            "    mandate delegation tree {mandate_id}  ·  mandate audit tail  ·  mandate events"
        );
        let _ = tokio::signal::ctrl_c().await;
    } else {
        println!("Done. Run your own: `mandate serve`, then see README.md.");
    }
    running_gate.stop().await;
    authority.stop().await;
    Ok(verdict)
}

fn expect(cond: bool, what: &str) -> Result<()> {
    if cond { Ok(()) } else { bail!("demo: {what}") }
}

fn str_of(v: &Value, key: &str) -> Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("unexpected answer: no `{key}`"))
}

fn find_approval_id(body: &Value) -> Option<String> {
    match body {
        Value::Object(m) => m
            .get("approval_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| m.values().find_map(find_approval_id)),
        _ => None,
    }
}

/// The delegation id (`del`) of the token saved in `path`.
fn summarizer_delegation(path: &Path) -> Result<String> {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let token = file
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("no token"))?;
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!("not a JWT"))?;
    let claims: Value = serde_json::from_slice(
        &mandate_core::encoding::b64url_decode(payload).ok_or_else(|| anyhow!("not a JWT"))?,
    )?;
    str_of(&claims, "del")
}

/// Writes a fresh Ed25519 private JWK to `path` (0600) and returns it.
fn generate_key(path: &Path) -> Result<Value> {
    let seed = mandate_server::state::random::<32>().map_err(|_| anyhow!("no random source"))?;
    let (_, private) = mandate_core::jwk::private_jwk_from_seed(&seed);
    crate::input::write_private_text(path, &private.to_string())?;
    Ok(private)
}

fn public_of(jwk: &Value) -> Value {
    json!({"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"]})
}

/// The built-in tool: a ticket API that echoes the identity headers the gate adds.
async fn start_tool() -> Result<String> {
    fn identity(headers: &HeaderMap) -> Value {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        json!({
            "X-Mandate-Agent": h("x-mandate-agent"),
            "X-Mandate-On-Behalf-Of": h("x-mandate-on-behalf-of"),
            "X-Mandate-Delegation": h("x-mandate-delegation"),
            "X-Mandate-Receipt": h("x-mandate-receipt"),
            "authorization_seen": headers.contains_key("authorization"),
        })
    }
    let app = axum::Router::new().route(
        "/tickets/{id}",
        axum::routing::get(
            |UrlPath(id): UrlPath<String>, headers: HeaderMap| async move {
                Json(json!({"ticket": id, "title": "printer on fire", "seen": identity(&headers)}))
            },
        )
        .delete(
            |UrlPath(id): UrlPath<String>, headers: HeaderMap| async move {
                Json(json!({"deleted": id, "seen": identity(&headers)}))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the demo tool")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}
