//! `mandate token`: the agent's side of the protocol (DESIGN §4), from the terminal.
//!
//! These commands act AS an agent: they authenticate with the agent's private key file
//! (`private_key_jwt`, RFC 7523), never with an API key. Every token is bound (DPoP, RFC 9449)
//! to a fresh ephemeral key that is saved with it, so a token file is the token plus the only
//! key that can use it: it is written with mode 0600, never overwritten, and its token is never
//! printed — only claims decoded from it.

mod keys;
mod oauth;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Subcommand};
use mandate_core::encoding::b64url;
use mandate_core::jose::{JoseLimits, JwtKind, Unverified};
use serde_json::{Map, Value, json};

use crate::Outcome;
use crate::input;
use crate::output::{self, Field, Output, Render};

use self::keys::KeyPair;
use self::oauth::AuthorizationServer;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const DELEGATION_TYPE: &str = "urn:mandate:token-type:delegation";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of the client assertions and consents made here (the server accepts up to 300 s).
const ASSERTION_SECS: i64 = 60;

/// Deepest `act` nesting rendered (the server caps depth at 10).
const MAX_CHAIN: usize = 32;

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Redeem a mandate as its agent: get a short-lived token bound to a fresh DPoP key.
    Redeem(RedeemArgs),
    /// Delegate part of a token's authority to a sub-agent (token exchange with its consent).
    Delegate(DelegateArgs),
    /// Show the claims of a saved token (decoded locally; the token itself is never printed).
    Show {
        /// A token file written by `token redeem` or `token delegate`.
        #[arg(value_name = "TOKEN.json")]
        file: PathBuf,
    },
    /// Call a resource (typically through a gate) with a saved token: `Authorization: DPoP
    /// <token>` and a fresh DPoP proof from the token's key (RFC 9449 §7.1, with `ath`). Prints
    /// the status and the body; exits 3 when the answer is an error.
    Call(CallArgs),
}

#[derive(Args)]
pub(crate) struct CallArgs {
    /// The token file (`mandate token redeem|delegate --save`).
    #[arg(long, value_name = "TOKEN.json")]
    token: PathBuf,
    /// The HTTP method.
    #[arg(short = 'X', long, default_value = "GET")]
    method: String,
    /// A JSON body to send (`JSON` or `@FILE`).
    #[arg(long, value_name = "JSON_OR_@FILE")]
    json: Option<String>,
    /// The URL.
    url: String,
}

#[derive(Args)]
pub(crate) struct RedeemArgs {
    /// The agent's private key: a JWK file as written by `mandate agent add --save-key`.
    #[arg(long, value_name = "AGENT.jwk")]
    key: PathBuf,
    /// The signed delegation document, as written by `mandate mandate add --save-document`.
    #[arg(long, value_name = "MANDATE.jwt")]
    document: PathBuf,
    /// Ask for less than the mandate grants: JSON authorization_details (array or one object),
    /// or `@FILE`.
    #[arg(long, value_name = "JSON_OR_@FILE")]
    authorization_details: Option<String>,
    /// The resource server the token is for (repeatable; default: the scope's locations).
    #[arg(long, value_name = "URL")]
    resource: Vec<String>,
    /// Write the token and its DPoP key to FILE (created with mode 0600, never overwritten).
    #[arg(long, value_name = "TOKEN.json")]
    save: PathBuf,
}

#[derive(Args)]
pub(crate) struct DelegateArgs {
    /// The delegating agent's private key (the agent the token in `--token` was issued to).
    #[arg(long, value_name = "AGENT.jwk")]
    key: PathBuf,
    /// The delegating agent's token file, from `token redeem` or `token delegate`.
    #[arg(long, value_name = "TOKEN.json")]
    token: PathBuf,
    /// The sub-agent (`agt_…`).
    #[arg(long, value_name = "SUB_AGENT_ID")]
    to: String,
    /// The sub-agent's private key, used here to sign its consent. This is a demo shortcut: in a
    /// real deployment the sub-agent signs its consent itself and sends only that to the
    /// delegating agent; its key never leaves it.
    #[arg(long, value_name = "SUB.jwk")]
    to_key: PathBuf,
    /// The authority handed on, within the token's: JSON authorization_details (array or one
    /// object), or `@FILE`; default: all of it.
    #[arg(long, value_name = "JSON_OR_@FILE")]
    authorization_details: Option<String>,
    /// Extra denials for the sub-agent and below: JSON (array or one object), or `@FILE`.
    #[arg(long, value_name = "JSON_OR_@FILE")]
    prohibitions: Option<String>,
    /// Lifetime of the sub-delegation in seconds (default: that of the parent).
    #[arg(long, value_name = "SECS")]
    expires_in: Option<u32>,
    /// The resource server the new token is for (repeatable; default: the scope's locations).
    #[arg(long, value_name = "URL")]
    resource: Vec<String>,
    /// Write the sub-agent's token and its DPoP key to FILE (mode 0600, never overwritten).
    #[arg(long, value_name = "SUB_TOKEN.json")]
    save: PathBuf,
}

/// What `token redeem` and `token delegate` print: claims of the new token (`token show` has
/// them all).
const SUMMARY: &[Field] = &[
    Field::new("agent", "agent"),
    Field::new("chain", "chain"),
    Field::new("delegation", "delegation"),
    Field::new("depth", "depth"),
    Field::new("scope", "scope"),
    Field::new("authorization details", "authorization_details")
        .render(Render::Json)
        .max(80),
    Field::new("audience", "audience"),
    Field::new("bound to (jkt)", "jkt"),
    Field::new("expires", "expires_at"),
    Field::new("saved to", "saved_to"),
];

/// What `token show` prints.
const SHOW: &[Field] = &[
    Field::new("agent", "agent"),
    Field::new("on behalf of", "on_behalf_of"),
    Field::new("chain", "chain"),
    Field::new("act", "act").render(Render::Json).max(100),
    Field::new("delegation", "delegation"),
    Field::new("depth", "depth"),
    Field::new("scope", "scope"),
    Field::new("authorization details", "authorization_details")
        .render(Render::Json)
        .max(100),
    Field::new("audience", "audience"),
    Field::new("bound to (jkt)", "jkt"),
    Field::new("dpop key", "dpop_key"),
    Field::new("issued", "issued_at"),
    Field::new("expires", "expires_at"),
    Field::new("status list", "status"),
    Field::new("token id (jti)", "jti"),
    Field::new("issuer", "issuer"),
    Field::new("tenant", "tenant"),
];

pub(crate) async fn run(server: &str, out: &Output, cmd: TokenCommand) -> Result<Outcome> {
    match cmd {
        TokenCommand::Redeem(args) => redeem(server, out, args).await?,
        TokenCommand::Delegate(args) => delegate(server, out, args).await?,
        TokenCommand::Show { file } => show(out, &file)?,
        TokenCommand::Call(args) => return call(out, args).await,
    }
    Ok(Outcome::Ok)
}

/// The answer of a [`call`].
pub(crate) struct CallResponse {
    /// HTTP status.
    pub(crate) status: u16,
    /// `WWW-Authenticate`, if any.
    pub(crate) www_authenticate: Option<String>,
    /// The body, as JSON when it is JSON, else as a string.
    pub(crate) body: Value,
}

/// Sends `method url` with the token of `token_file` and a fresh DPoP proof of its key.
pub(crate) async fn send_with_token(
    token_file: &Path,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> Result<CallResponse> {
    let held = TokenFile::load(token_file)?;
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| anyhow!("invalid HTTP method `{}`", output::sanitize(method)))?;
    let mut target = reqwest::Url::parse(url)
        .with_context(|| format!("invalid URL `{}`", output::sanitize(url)))?;
    if !matches!(target.scheme(), "http" | "https") {
        bail!(
            "invalid URL `{}`: expected http:// or https://",
            output::sanitize(url)
        );
    }
    target.set_fragment(None);
    // RFC 9449 §4.2: `htu` is the target URI without query and fragment.
    let mut htu = target.clone();
    htu.set_query(None);
    let proof = held.dpop.sign_dpop(&json!({
        "jti": jti()?, "htm": method.as_str(), "htu": htu.as_str(), "iat": now_secs()?,
        "ath": mandate_core::jose::access_token_hash(&held.access_token),
    }));
    crate::client::install_crypto_provider();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")?;
    let mut request = http
        .request(method, target)
        .header("Authorization", format!("DPoP {}", held.access_token))
        .header("DPoP", proof);
    if let Some(b) = body {
        request = request.json(b);
    }
    let response = request.send().await.map_err(|e| {
        anyhow::Error::new(e.without_url())
            .context(format!("cannot reach `{}`", output::sanitize(url)))
    })?;
    let status = response.status().as_u16();
    let www_authenticate = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .bytes()
        .await
        .map_err(|e| anyhow::Error::new(e.without_url()))?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(CallResponse {
        status,
        www_authenticate,
        body,
    })
}

async fn call(out: &Output, args: CallArgs) -> Result<Outcome> {
    let body = args.json.as_deref().map(input::json_or_file).transpose()?;
    let r = send_with_token(&args.token, &args.method, &args.url, body.as_ref()).await?;
    if out.is_json() {
        output::print_json(&json!({
            "status": r.status, "www_authenticate": r.www_authenticate, "body": r.body,
        }))?;
    } else {
        let mut text = format!("HTTP {}\n", r.status);
        if let Some(w) = &r.www_authenticate {
            text.push_str(&format!("WWW-Authenticate: {}\n", output::sanitize(w)));
        }
        let body = match &r.body {
            Value::String(s) => output::sanitize(s),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        };
        text.push_str(&body);
        text.push('\n');
        output::print_stdout(&text)?;
    }
    Ok(if r.status >= 400 {
        Outcome::Denied
    } else {
        Outcome::Ok
    })
}

/// DESIGN §4 grant 1: token exchange of the delegation document, as its delegate agent.
async fn redeem(server: &str, out: &Output, args: RedeemArgs) -> Result<()> {
    input::check_save_target(&args.save)?;
    let key = KeyPair::load(&args.key, "--key")?;
    let document = read_document(&args.document)?;
    let agent = document_agent(&document)
        .with_context(|| format!("`--document`: `{}`", args.document.display()))?;
    let details = args
        .authorization_details
        .as_deref()
        .map(|a| {
            input::object_list(a, "--authorization-details", "authorization_details")
                .map(|v| v.to_string())
        })
        .transpose()?;

    let oauth = AuthorizationServer::discover(server).await?;
    let (dpop, dpop_jwk) = KeyPair::generate()?;
    let assertion = client_assertion(&oauth, &agent, &key)?;
    let mut params = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", document.as_str()),
        ("subject_token_type", DELEGATION_TYPE),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.as_str()),
    ];
    if let Some(d) = &details {
        params.push(("authorization_details", d));
    }
    params.extend(args.resource.iter().map(|r| ("resource", r.as_str())));
    let response = oauth
        .token(&params, &dpop_proof(&oauth, &dpop)?)
        .await
        .with_context(|| {
            format!(
                "agent {} cannot redeem the mandate",
                output::sanitize(&agent)
            )
        })?;

    let issued = Issued::check(&response, &agent, &dpop)?;
    issued
        .save(&args.save, dpop_jwk)
        .context("the token was issued but is discarded (it is short-lived; redeem again)")?;
    print_summary(out, &issued.claims, &args.save)
}

/// DESIGN §4 grant 2: the holder of a token delegates part of it to a sub-agent.
async fn delegate(server: &str, out: &Output, args: DelegateArgs) -> Result<()> {
    input::check_save_target(&args.save)?;
    let key = KeyPair::load(&args.key, "--key")?;
    let held = TokenFile::load(&args.token)?;
    let sub_key = KeyPair::load(&args.to_key, "--to-key")?;
    if let Some(exp) = held.claims.get("exp").and_then(Value::as_i64)
        && exp <= now_secs()?
    {
        bail!(
            "the token in `{}` expired at {}; get a new one with `mandate token redeem`",
            args.token.display(),
            secs_to_rfc3339(exp)
        );
    }
    let details = args
        .authorization_details
        .as_deref()
        .map(|a| {
            input::object_list(a, "--authorization-details", "authorization_details")
                .map(|v| v.to_string())
        })
        .transpose()?;
    let prohibitions = args
        .prohibitions
        .as_deref()
        .map(|p| input::object_list(p, "--prohibitions", "prohibition").map(|v| v.to_string()))
        .transpose()?;
    let expires_in = args.expires_in.map(|s| s.to_string());

    let oauth = AuthorizationServer::discover(server).await?;
    // The sub-agent's token is bound to a fresh key, named in its consent (`cnf.jkt`).
    let (dpop, dpop_jwk) = KeyPair::generate()?;
    let now = now_secs()?;
    let consent = sub_key.sign(
        JwtKind::ActorToken,
        &json!({
            "iss": args.to, "sub": args.to, "aud": oauth.issuer,
            "iat": now, "exp": now + ASSERTION_SECS, "jti": jti()?,
            "delegator": held.agent,
            "cnf": {"jkt": dpop.thumbprint()},
        }),
    );
    let assertion = client_assertion(&oauth, &held.agent, &key)?;
    let mut params = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", held.access_token.as_str()),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("actor_token", consent.as_str()),
        ("actor_token_type", JWT_TYPE),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.as_str()),
    ];
    if let Some(d) = &details {
        params.push(("authorization_details", d));
    }
    if let Some(p) = &prohibitions {
        params.push(("prohibitions", p));
    }
    if let Some(e) = &expires_in {
        params.push(("expires_in", e));
    }
    params.extend(args.resource.iter().map(|r| ("resource", r.as_str())));
    // The parent token is used only with a proof of the key it is bound to.
    let response = oauth
        .token(&params, &dpop_proof(&oauth, &held.dpop)?)
        .await
        .with_context(|| {
            format!(
                "agent {} cannot delegate to {}",
                output::sanitize(&held.agent),
                output::sanitize(&args.to)
            )
        })?;

    let issued = Issued::check(&response, &args.to, &dpop)?;
    let delegation = response
        .get("delegation")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    issued.save(&args.save, dpop_jwk).with_context(|| {
        format!(
            "the sub-delegation {} exists but its token is discarded; revoke it with \
             `mandate delegation revoke {0}` or delegate again",
            output::sanitize(&delegation)
        )
    })?;
    if !out.is_json() {
        output::print_stdout(&format!(
            "sub-delegation {}: {} → {}\n",
            output::sanitize(&delegation),
            output::sanitize(&held.agent),
            output::sanitize(&args.to)
        ))?;
    }
    print_summary(out, &issued.claims, &args.save)
}

fn show(out: &Output, path: &Path) -> Result<()> {
    let file = TokenFile::load(path)?;
    let claims = &file.claims;
    let jkt = claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str);
    let matches = jkt == Some(file.dpop.thumbprint().as_str());
    let exp = claims.get("exp").and_then(Value::as_i64);
    let expired = exp.is_none_or(|e| now_secs().is_ok_and(|now| e <= now));
    if out.is_json() {
        return output::print_json(&json!({
            "file": path.display().to_string(),
            "claims": claims,
            "chain": chain(claims),
            "expires_at": exp.map(secs_to_rfc3339),
            "expired": expired,
            "dpop_key_matches": matches,
        }));
    }
    let mut view = summary(claims);
    view["chain"] = json!(chain(claims).join(" → "));
    view["act"] = claims.get("act").cloned().unwrap_or(Value::Null);
    view["dpop_key"] = json!(if matches {
        "saved in the file (matches cnf.jkt)"
    } else {
        "MISMATCH: the key in the file is not the one the token is bound to"
    });
    view["issued_at"] = json!(
        claims
            .get("iat")
            .and_then(Value::as_i64)
            .map(secs_to_rfc3339)
    );
    if expired && let Some(text) = view["expires_at"].as_str() {
        view["expires_at"] = json!(format!("{text} (EXPIRED)"));
    }
    for (field, claim) in [("jti", "jti"), ("issuer", "iss"), ("tenant", "tnt")] {
        view[field] = claims.get(claim).cloned().unwrap_or(Value::Null);
    }
    view["status"] = json!(status_text(claims));
    out.object(&view, SHOW)
}

/// A token file: `{"access_token", "dpop_jwk", "agent", "expires_at"}`.
struct TokenFile {
    access_token: String,
    dpop: KeyPair,
    agent: String,
    claims: Map<String, Value>,
}

impl TokenFile {
    fn load(path: &Path) -> Result<Self> {
        let origin = || format!("`{}`", path.display());
        let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", origin()))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "{} is not a token file (not JSON: line {}, column {})",
                origin(),
                e.line(),
                e.column()
            )
        })?;
        let member = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{} is not a token file: no `{name}`", origin()))
        };
        let access_token = member("access_token")?;
        let agent = member("agent")?;
        let dpop = KeyPair::from_jwk(value.get("dpop_jwk").unwrap_or(&Value::Null))
            .with_context(|| format!("{}: bad `dpop_jwk`", origin()))?;
        let claims = decode(&access_token)
            .with_context(|| format!("{}: `access_token` is not a JWT", origin()))?;
        Ok(Self {
            access_token,
            dpop,
            agent,
            claims,
        })
    }
}

/// A token just issued, checked against what was asked.
struct Issued {
    access_token: String,
    agent: String,
    claims: Map<String, Value>,
}

impl Issued {
    fn check(response: &Value, agent: &str, dpop: &KeyPair) -> Result<Self> {
        let access_token = response
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("unexpected response from the token endpoint: no token"))?
            .to_owned();
        let claims = decode(&access_token).context("the token endpoint returned a bad token")?;
        if claims.get("client_id").and_then(Value::as_str) != Some(agent) {
            bail!("the token endpoint issued a token for another agent");
        }
        let jkt = claims
            .get("cnf")
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str);
        if jkt != Some(dpop.thumbprint().as_str()) {
            bail!("the token endpoint bound the token to a key other than the one asked for");
        }
        Ok(Self {
            access_token,
            agent: agent.to_owned(),
            claims,
        })
    }

    /// Writes the token file (mode 0600, never overwriting).
    fn save(&self, path: &Path, dpop_jwk: Value) -> Result<()> {
        let file = json!({
            "access_token": self.access_token,
            "dpop_jwk": dpop_jwk,
            "agent": self.agent,
            "expires_at": self.claims.get("exp").and_then(Value::as_i64).map(secs_to_rfc3339),
        });
        input::write_private_text(path, &serde_json::to_string_pretty(&file)?)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        eprintln!(
            "token written to `{}` (mode 0600), with the only key that can use it",
            path.display()
        );
        Ok(())
    }
}

fn print_summary(out: &Output, claims: &Map<String, Value>, saved: &Path) -> Result<()> {
    let mut view = summary(claims);
    view["saved_to"] = json!(saved.display().to_string());
    if !out.is_json() {
        view["chain"] = json!(chain(claims).join(" → "));
    }
    out.object(&view, SUMMARY)
}

/// The claims worth showing, under readable names.
fn summary(claims: &Map<String, Value>) -> Value {
    let claim = |name: &str| claims.get(name).cloned().unwrap_or(Value::Null);
    json!({
        "agent": claim("client_id"),
        "on_behalf_of": claim("sub"),
        "chain": chain(claims),
        "delegation": claim("del"),
        "depth": claim("dpt"),
        "scope": claim("scope"),
        "authorization_details": claim("authorization_details"),
        "audience": claim("aud"),
        "jkt": claims.get("cnf").and_then(|c| c.get("jkt")).cloned(),
        "expires_at": claims.get("exp").and_then(Value::as_i64).map(secs_to_rfc3339),
        "status": claim("status"),
    })
}

/// The delegation chain, root first: the human (`sub`), then each agent of the nested `act`
/// claims (RFC 8693 §4.1, outermost = current), SPIFFE ids shortened to the agent id.
fn chain(claims: &Map<String, Value>) -> Vec<String> {
    let mut actors = Vec::new();
    let mut act = claims.get("act");
    while let Some(a) = act.filter(|a| a.is_object()) {
        if actors.len() == MAX_CHAIN {
            actors.push("…".to_owned());
            break;
        }
        let sub = a.get("sub").and_then(Value::as_str).unwrap_or("?");
        let short = match sub.strip_prefix("spiffe://") {
            Some(path) => path.rsplit('/').next().unwrap_or(sub),
            None => sub,
        };
        actors.push(short.to_owned());
        act = a.get("act");
    }
    actors.reverse();
    let root = claims.get("sub").and_then(Value::as_str).unwrap_or("?");
    std::iter::once(root.to_owned()).chain(actors).collect()
}

/// The Token Status List reference as `index N of URI`.
fn status_text(claims: &Map<String, Value>) -> Option<String> {
    let list = claims.get("status")?.get("status_list")?;
    let idx = list.get("idx")?;
    let uri = list.get("uri").and_then(Value::as_str)?;
    Some(format!("index {idx} of {uri}"))
}

/// The claims of a JWT, decoded and structurally checked but NOT verified: for display and
/// for finding one's own agent id, never for a decision.
fn decode(token: &str) -> Result<Map<String, Value>> {
    let parsed = Unverified::parse(token, &JoseLimits::default())
        .map_err(|e| anyhow!("{}", output::sanitize(&e.to_string())))?;
    Ok(parsed.claims().clone())
}

fn read_document(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("`--document`: cannot read `{}`", path.display()))?;
    Ok(text.trim().to_owned())
}

/// The delegate agent a delegation document names (`azp`).
fn document_agent(document: &str) -> Result<String> {
    let claims = decode(document).context("not a delegation document")?;
    claims
        .get("azp")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("not a delegation document: it names no agent (`azp`)"))
}

/// An RFC 7523 client assertion of `agent`, for the issuer (rfc7523bis: `aud` = issuer).
fn client_assertion(oauth: &AuthorizationServer, agent: &str, key: &KeyPair) -> Result<String> {
    let now = now_secs()?;
    Ok(key.sign(
        JwtKind::ClientAssertion,
        &json!({
            "iss": agent, "sub": agent, "aud": oauth.issuer,
            "iat": now, "exp": now + ASSERTION_SECS, "jti": jti()?,
        }),
    ))
}

/// An RFC 9449 proof for `POST` to the token endpoint.
fn dpop_proof(oauth: &AuthorizationServer, key: &KeyPair) -> Result<String> {
    let mut htu = oauth.token_endpoint.clone();
    htu.set_query(None);
    htu.set_fragment(None);
    Ok(key.sign_dpop(&json!({
        "jti": jti()?, "htm": "POST", "htu": htu.as_str(), "iat": now_secs()?,
    })))
}

fn jti() -> Result<String> {
    let bytes = mandate_server::state::random::<16>()
        .map_err(|_| anyhow!("the system random source is unavailable"))?;
    Ok(b64url(&bytes))
}

fn now_secs() -> Result<i64> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    i64::try_from(since.as_secs()).context("the system clock is out of range")
}

fn secs_to_rfc3339(secs: i64) -> String {
    output::unix_ms_to_rfc3339(secs.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn chain_runs_from_the_human_to_the_current_agent() {
        let c = claims(json!({
            "sub": "usr_1",
            "act": {"sub": "spiffe://m.example/agent/agt_b", "act": {"sub": "spiffe://m.example/agent/agt_a"}},
        }));
        assert_eq!(chain(&c), ["usr_1", "agt_a", "agt_b"]);
        assert_eq!(chain(&claims(json!({"sub": "usr_1"}))), ["usr_1"]);
        let mut deep = json!({"sub": "x"});
        for _ in 0..100 {
            deep = json!({"sub": "x", "act": deep});
        }
        assert_eq!(chain(&claims(json!({"sub": "u", "act": deep}))).len(), 34);
    }

    #[test]
    fn summary_and_status_read_the_profile_claims() {
        let c = claims(json!({
            "sub": "usr_1", "client_id": "agt_a", "del": "del_1", "dpt": 1, "scope": "read",
            "aud": "https://crm.example.com", "cnf": {"jkt": "J"}, "exp": 0,
            "status": {"status_list": {"idx": 3, "uri": "https://m.example/statuslists/0"}},
        }));
        let s = summary(&c);
        assert_eq!(s["agent"], "agt_a");
        assert_eq!(s["jkt"], "J");
        assert_eq!(s["expires_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(
            status_text(&c).as_deref(),
            Some("index 3 of https://m.example/statuslists/0")
        );
    }

    #[test]
    fn token_files_round_trip_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let (dpop, dpop_jwk) = KeyPair::generate().unwrap();
        let (signer, _) = KeyPair::generate().unwrap();
        let token = signer.sign(
            JwtKind::AccessToken,
            &json!({"client_id": "agt_a", "cnf": {"jkt": dpop.thumbprint()}, "exp": 1}),
        );
        let issued = Issued::check(&json!({"access_token": token}), "agt_a", &dpop).unwrap();
        assert!(Issued::check(&json!({"access_token": token}), "agt_b", &dpop).is_err());
        assert!(Issued::check(&json!({"access_token": token}), "agt_a", &signer).is_err());
        issued.save(&path, dpop_jwk.clone()).unwrap();
        assert!(issued.save(&path, dpop_jwk).is_err(), "never overwritten");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = TokenFile::load(&path).unwrap();
        assert_eq!(loaded.agent, "agt_a");
        assert_eq!(loaded.access_token, token);
        assert_eq!(loaded.dpop.thumbprint(), dpop.thumbprint());
    }

    #[test]
    fn documents_name_their_agent() {
        let (signer, _) = KeyPair::generate().unwrap();
        let doc = signer.sign(JwtKind::Delegation, &json!({"azp": "agt_a"}));
        assert_eq!(document_agent(&doc).unwrap(), "agt_a");
        let doc = signer.sign(JwtKind::Delegation, &json!({"sub": "usr_1"}));
        assert!(document_agent(&doc).is_err());
        assert!(document_agent("not-a-jwt").is_err());
    }
}
