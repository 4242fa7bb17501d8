//! `gate.toml`: the gate's settings, read strictly (unknown keys are an error).
//!
//! ```toml
//! listen = "127.0.0.1:8443"
//! public_url = "https://gate.example.com"      # optional; default http://<listen address>
//! issuer = "https://mandate.example.com"       # the authority's issuer identifier
//! audience = "https://crm.example.com"         # the `aud` tokens must carry for this gate
//! gate_id = "gat_…"
//! key_file = "gate-key.json"                   # private JWK; relative to this file
//! spool_dir = "spool"                          # relative to this file
//!
//! [[upstream]]
//! name = "crm"
//! kind = "http"
//! url = "http://127.0.0.1:9000"
//!
//! [[route]]
//! method = "DELETE"
//! path = "/tickets/{id}"
//! action = "delete"
//! resource = "tickets/{id}"
//! ```
//!
//! The full format is documented in the crate docs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use mandate_core::clock::Clock;
use mandate_core::encoding::b64url_decode;
use mandate_core::jwk::PublicJwk;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::GateError;

/// The default of [`GateConfig::max_staleness_secs`].
pub const DEFAULT_MAX_STALENESS_SECS: u64 = 30;
/// The default of [`GateConfig::dpop_max_age_secs`].
pub const DEFAULT_DPOP_MAX_AGE_SECS: u64 = 300;
/// The default of [`GateConfig::token_cache_capacity`].
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 10_000;
/// The default of [`GateConfig::max_body_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything a gate needs; the schema of `gate.toml`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Address to listen on (`IP:PORT`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The gate's public base URL as clients address it (`scheme://host[:port]`, no path): the
    /// base of DPoP `htu` checks and of the RFC 9728 metadata URL. Default: `http://` and the
    /// bound listen address.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The authority's issuer identifier; the gate reaches the authority there.
    pub issuer: String,
    /// The resource identifier this gate guards: tokens must carry it in `aud`, and it is the
    /// `resource` of the protected-resource metadata.
    pub audience: String,
    /// The gate's client id at the authority (`gat_…`).
    pub gate_id: String,
    /// The gate's private Ed25519 key as a JWK file (`kty`, `crv`, `x`, `d`, optional `kid`).
    pub key_file: PathBuf,
    /// Directory of the durable decision spool and its shipping cursor.
    pub spool_dir: PathBuf,
    /// Revocation data older than this many seconds means deny. Default 30.
    #[serde(default = "default_max_staleness")]
    pub max_staleness_secs: u64,
    /// Pinned agent commitments: agent id → the `cmt` its tokens must carry.
    #[serde(default)]
    pub pinned_commitments: BTreeMap<String, String>,
    /// How old a DPoP proof may be, in seconds. Default 300.
    #[serde(default = "default_dpop_max_age")]
    pub dpop_max_age_secs: u64,
    /// How many verified tokens are cached. Default 10 000.
    #[serde(default = "default_token_cache")]
    pub token_cache_capacity: usize,
    /// Largest request body the gate reads (MCP messages, bodies with inputs). Default 1 MiB.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The tools behind the gate.
    #[serde(rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    /// HTTP routes.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// MCP tools.
    #[serde(default, rename = "tool")]
    pub tools: Vec<ToolConfig>,
    /// The clock (tests); the system clock when `None`. Not read from the file.
    #[serde(skip)]
    pub clock: Option<Arc<dyn Clock>>,
}

/// How an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// Plain HTTP: requests are mapped by method and path.
    Http,
    /// MCP Streamable HTTP: JSON-RPC messages are mapped by method and tool name.
    Mcp,
}

/// One upstream tool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name that routes refer to.
    pub name: String,
    /// `http` or `mcp`.
    pub kind: UpstreamKind,
    /// Where the upstream listens: for `http`, the base URL that route paths are appended to;
    /// for `mcp`, the MCP endpoint itself.
    pub url: String,
    /// Where the gate serves it: for `http`, a path prefix (default `/`), stripped before
    /// forwarding; for `mcp`, the gate's MCP endpoint path (default: the path of `url`).
    #[serde(default)]
    pub mount: Option<String>,
}

/// One HTTP route: `method path` → `action resource`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The upstream (may be left out when there is exactly one `http` upstream).
    #[serde(default)]
    pub upstream: Option<String>,
    /// The HTTP method, uppercase (`GET`, `DELETE`, …); matched exactly.
    pub method: String,
    /// Path template below the upstream's mount, e.g. `/tickets/{id}`; `{name}` captures one
    /// segment, every other segment is literal and case-sensitive.
    pub path: String,
    /// The action, e.g. `delete`.
    pub action: String,
    /// The resource template, e.g. `tickets/{id}`; `{name}` is a captured segment.
    pub resource: String,
    /// Constraint inputs: name → `query.<param>` or `body.<member>[.<member>…]` (JSON body).
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
}

/// One MCP tool: `tools/call` + name → `action resource`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// The upstream (may be left out when there is exactly one `mcp` upstream).
    #[serde(default)]
    pub upstream: Option<String>,
    /// The tool name (`params.name`).
    pub name: String,
    /// The action, e.g. `execute`.
    pub action: String,
    /// The resource template, e.g. `orders/{arguments.order_id}`.
    pub resource: String,
    /// Constraint inputs: name → `arguments.<member>[.<member>…]`.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
}

impl GateConfig {
    /// Reads `path`; relative `key_file` and `spool_dir` are taken relative to its directory.
    pub fn load(path: &Path) -> Result<Self, GateError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GateError::Config(format!("cannot read `{}`: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base)
    }

    /// Parses TOML text; relative paths are taken relative to `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, GateError> {
        let mut config: GateConfig =
            toml::from_str(text).map_err(|e| GateError::Config(e.to_string()))?;
        if config.key_file.is_relative() {
            config.key_file = base.join(&config.key_file);
        }
        if config.spool_dir.is_relative() {
            config.spool_dir = base.join(&config.spool_dir);
        }
        Ok(config)
    }
}

impl std::fmt::Debug for GateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateConfig")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("gate_id", &self.gate_id)
            .field("key_file", &self.key_file)
            .field("spool_dir", &self.spool_dir)
            .field("upstreams", &self.upstreams)
            .finish_non_exhaustive()
    }
}

/// Reads the gate's private key from a JWK file: `kty` `OKP`, `crv` `Ed25519`, `d` the 32-byte
/// seed, and `x` (if present) its public key. Returns the key and its `kid` (the file's `kid`,
/// else the RFC 7638 thumbprint).
pub(crate) fn read_key(path: &Path) -> Result<(SigningKey, String), GateError> {
    let bad = |why: &str| GateError::Config(format!("key file `{}`: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(&e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| bad("not a JSON object"))?;
    let member = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
    if member("kty") != Some("OKP") || member("crv") != Some("Ed25519") {
        return Err(bad(
            "expected an Ed25519 JWK (`kty` `OKP`, `crv` `Ed25519`)",
        ));
    }
    let d = member("d").ok_or_else(|| bad("no private key member `d`"))?;
    let raw = Zeroizing::new(b64url_decode(d).unwrap_or_default());
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        raw.as_slice()
            .try_into()
            .map_err(|_| bad("`d` must be 32 bytes of base64url"))?,
    );
    let key = SigningKey::from_bytes(&seed);
    let public = PublicJwk::from_seed(&seed);
    if let Some(x) = member("x")
        && b64url_decode(x).as_deref() != Some(public.bytes().as_slice())
    {
        return Err(bad("`x` is not the public key of `d`"));
    }
    let kid = member("kid")
        .map(str::to_owned)
        .unwrap_or_else(|| public.thumbprint());
    Ok((key, kid))
}

fn default_max_staleness() -> u64 {
    DEFAULT_MAX_STALENESS_SECS
}
fn default_dpop_max_age() -> u64 {
    DEFAULT_DPOP_MAX_AGE_SECS
}
fn default_token_cache() -> usize {
    DEFAULT_TOKEN_CACHE_CAPACITY
}
fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
