//! Load tool of the token issuance benchmark (`bench/tokens/run.sh`).
//!
//! Every token request carries a fresh `private_key_jwt` client assertion (RFC 7523) and a fresh
//! DPoP proof (RFC 9449), both single-use. Signing them costs client CPU on the same machine as
//! the server, so the tool **pre-signs** a pool of complete HTTP/1.1 requests before each timed
//! window and only writes them during it, over `concurrency` keep-alive connections (one
//! request in flight per connection). The server's CPU time (utime + stime of its process, from
//! `/proc/<pid>/stat`) is read around each window, which gives tokens per server CPU-second
//! next to tokens per second.
//!
//! Subcommands:
//!
//! - `setup-mandate --base URL --admin-key KEY --agents N --out FILE [--grant client_credentials|exchange]`:
//!   registers N agents with their own Ed25519 keys and one mandate each through the admin API,
//!   and writes the target file.
//! - `setup-peer --issuer URL --agents N --out FILE --clients-out FILE [--resource URL]`:
//!   writes the target file for an OpenID provider at `URL` (token endpoint `URL/token`) and the
//!   client registrations (public JWKS) the peer server loads.
//! - `run --target FILE --concurrency C --duration S --runs R --server-pid PID --label L --out FILE [--connect HOST:PORT]`:
//!   warm-up, then R timed windows; appends one JSON line per window to `--out`.
//! - `summary --results FILE --criterion DIR [--subject mandate] [--baseline peer]
//!   [--reference-ceiling TOKENS_PER_CORE_S] [--markdown FILE]`: medians per (label, concurrency),
//!   the Ed25519 ceiling from criterion's estimates (or the reference, whichever is higher),
//!   ratios.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark tool: any failure must abort the run loudly"
)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use mandate_core::encoding::{b64url, b64url_decode, hex, hex_to_array};
use mandate_core::jose::{self, Algorithm, JwtKind};
use mandate_core::jwk::PublicJwk;
use serde_json::{Value, json};
use tokio::net::TcpStream;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const DELEGATION_TOKEN_TYPE: &str = "urn:mandate:token-type:delegation";
const CRM: &str = "https://crm.example.com";
/// Lifetime of the pre-signed assertions: both servers accept `exp` up to 300 s ahead, and
/// DPoP `iat` up to 300 s old; each timed window starts right after its pool is signed.
const ASSERTION_LIFETIME_SECS: i64 = 240;

// ---------------------------------------------------------------------------------------------
// Arguments

struct Args(Vec<String>);

impl Args {
    fn get(&self, name: &str) -> Option<String> {
        let flag = format!("--{name}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1).cloned())
    }

    fn req(&self, name: &str) -> String {
        self.get(name)
            .unwrap_or_else(|| panic!("missing required argument --{name}"))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("--{name}: not a number: {v}")),
        }
    }
}

fn main() {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        eprintln!("usage: mandate-loadgen setup-mandate|setup-peer|run|summary [--flags]");
        std::process::exit(2);
    }
    let cmd = argv.remove(0);
    let args = Args(argv);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match cmd.as_str() {
        "setup-mandate" => rt.block_on(setup_mandate(&args)),
        "setup-peer" => setup_peer(&args),
        "run" => rt.block_on(run(&args)),
        "summary" => summary(&args),
        other => {
            eprintln!("unknown subcommand `{other}`");
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal HTTP/1.1 client (keep-alive, Content-Length or chunked bodies)

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("only http:// URLs are supported: {url}"));
    match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
    close: bool,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    async fn connect(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16384];
        // Readiness + try_read: tokio's `net` feature alone, no `io-util` (the workspace's
        // tokio features stay those of the server).
        let n = loop {
            self.stream.readable().await?;
            match self.stream.try_read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn send(&mut self, request: &[u8]) -> std::io::Result<Response> {
        let mut off = 0;
        while off < request.len() {
            self.stream.writable().await?;
            match self.stream.try_write(&request[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        self.read_response().await
    }

    async fn read_response(&mut self) -> std::io::Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad status line"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        self.buf.drain(..head_end);
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    self.fill().await?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| std::io::Error::other("bad chunk size"))?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    self.fill().await?;
                }
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            let n = length.unwrap_or(0);
            while self.buf.len() < n {
                self.fill().await?;
            }
            self.buf.drain(..n).collect()
        };
        Ok(Response {
            status,
            body,
            close,
        })
    }
}

fn build_request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 512);
    write!(out, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n").expect("write");
    for (k, v) in headers {
        write!(out, "{k}: {v}\r\n").expect("write");
    }
    if let Some(ct) = content_type {
        write!(out, "Content-Type: {ct}\r\n").expect("write");
    }
    write!(out, "Content-Length: {}\r\n\r\n", body.len()).expect("write");
    out.extend_from_slice(body);
    out
}

/// One JSON call on a fresh connection (setup only).
async fn call(url: &str, method: &str, bearer: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let (addr, path) = split_url(url);
    let mut conn = Conn::connect(&addr).await.expect("connect");
    let auth = bearer.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Accept", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let req = build_request(
        method,
        &addr,
        &path,
        &headers,
        body.map(|_| "application/json"),
        &bytes,
    );
    let resp = conn.send(&req).await.expect("request");
    let value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    (resp.status, value)
}

/// application/x-www-form-urlencoded value encoding (RFC 3986 unreserved kept as is).
fn form_encode(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        pct(&mut out, k);
        out.push('=');
        pct(&mut out, v);
    }
    out
}

fn pct(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Targets

/// One client of a target: its id, its registered key (signs assertions), its DPoP key, and any
/// per-client form fields (e.g. the delegation document it redeems).
struct ClientCfg {
    id: String,
    key: SigningKey,
    dpop: SigningKey,
    form: Vec<(String, String)>,
}

struct Target {
    name: String,
    issuer: String,
    token_endpoint: String,
    form: Vec<(String, String)>,
    clients: Vec<ClientCfg>,
}

fn seed(kind: u8, i: usize) -> [u8; 32] {
    let mut s = [0x5au8; 32];
    s[0] = kind;
    s[1..9].copy_from_slice(&(i as u64).to_le_bytes());
    s
}

fn pairs_json(p: &[(String, String)]) -> Value {
    Value::Array(p.iter().map(|(k, v)| json!([k, v])).collect())
}

fn pairs_from(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p[0].as_str().expect("form name").to_owned(),
                p[1].as_str().expect("form value").to_owned(),
            )
        })
        .collect()
}

impl Target {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "issuer": self.issuer,
            "token_endpoint": self.token_endpoint,
            "form": pairs_json(&self.form),
            "clients": self.clients.iter().map(|c| json!({
                "id": c.id,
                "key_seed": hex(&c.key.to_bytes()),
                "dpop_seed": hex(&c.dpop.to_bytes()),
                "form": pairs_json(&c.form),
            })).collect::<Vec<_>>(),
        })
    }

    fn load(path: &str) -> Self {
        let text = std::fs::read_to_string(path).expect("read target file");
        let v: Value = serde_json::from_str(&text).expect("target JSON");
        let s = |k: &str| v[k].as_str().expect("target field").to_owned();
        let key = |c: &Value, k: &str| {
            SigningKey::from_bytes(&hex_to_array::<32>(c[k].as_str().expect("seed")).expect("hex"))
        };
        Self {
            name: s("name"),
            issuer: s("issuer"),
            token_endpoint: s("token_endpoint"),
            form: pairs_from(&v["form"]),
            clients: v["clients"]
                .as_array()
                .expect("clients")
                .iter()
                .map(|c| ClientCfg {
                    id: c["id"].as_str().expect("id").to_owned(),
                    key: key(c, "key_seed"),
                    dpop: key(c, "dpop_seed"),
                    form: pairs_from(&c["form"]),
                })
                .collect(),
        }
    }

    fn save(&self, path: &str) {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&self.to_json()).expect("json"),
        )
        .expect("write target file");
    }
}

fn public_jwk(key: &SigningKey) -> PublicJwk {
    PublicJwk::from_seed(&key.to_bytes())
}

async fn setup_mandate(args: &Args) {
    let base = args.req("base").trim_end_matches('/').to_owned();
    let admin = args.req("admin-key");
    let n: usize = args.num("agents", 64);
    let grant = args
        .get("grant")
        .unwrap_or_else(|| "client_credentials".into());
    let (status, meta) = call(
        &format!("{base}/.well-known/oauth-authorization-server"),
        "GET",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "discovery: {meta}");
    let issuer = meta["issuer"].as_str().expect("issuer").to_owned();
    let token_endpoint = meta["token_endpoint"]
        .as_str()
        .expect("token_endpoint")
        .to_owned();
    let (status, me) = call(&format!("{base}/v1/me"), "GET", Some(&admin), None).await;
    assert_eq!(status, 200, "/v1/me: {me}");
    let owner = me["human"]["id"].as_str().expect("human id").to_owned();
    let details = json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/*"]}]);
    let mut clients = Vec::with_capacity(n);
    let tag = unix_secs();
    for i in 0..n {
        let key = SigningKey::from_bytes(&seed(1, i));
        let dpop = SigningKey::from_bytes(&seed(2, i));
        let (status, agent) = call(
            &format!("{base}/v1/agents"),
            "POST",
            Some(&admin),
            Some(&json!({
                "name": format!("bench-agent-{tag}-{i}"),
                "owner": owner,
                "purpose": "token issuance benchmark",
                "ceiling": details,
                "jwk": public_jwk(&key).to_json(),
            })),
        )
        .await;
        assert_eq!(status, 201, "POST /v1/agents: {agent}");
        let id = agent["agent"]["id"].as_str().expect("agent id").to_owned();
        let (status, mandate) = call(
            &format!("{base}/v1/mandates"),
            "POST",
            Some(&admin),
            Some(&json!({
                "agent": id,
                "authorization_details": details,
                "expires_in": 3600,
                "purpose": "token issuance benchmark",
            })),
        )
        .await;
        assert_eq!(status, 201, "POST /v1/mandates: {mandate}");
        let form = if grant == "exchange" {
            vec![
                (
                    "subject_token".to_owned(),
                    mandate["delegation"]
                        .as_str()
                        .expect("delegation")
                        .to_owned(),
                ),
                (
                    "subject_token_type".to_owned(),
                    DELEGATION_TOKEN_TYPE.to_owned(),
                ),
            ]
        } else {
            vec![]
        };
        clients.push(ClientCfg {
            id,
            key,
            dpop,
            form,
        });
    }
    let grant_type = if grant == "exchange" {
        TOKEN_EXCHANGE
    } else {
        "client_credentials"
    };
    let target = Target {
        name: "mandate".into(),
        issuer,
        token_endpoint,
        form: vec![("grant_type".into(), grant_type.into())],
        clients,
    };
    target.save(&args.req("out"));
    eprintln!(
        "setup-mandate: {n} agents with one mandate each, grant {grant_type}, token endpoint {}",
        target.token_endpoint
    );
}

fn setup_peer(args: &Args) {
    let issuer = args.req("issuer").trim_end_matches('/').to_owned();
    let n: usize = args.num("agents", 64);
    let resource = args.get("resource").unwrap_or_else(|| CRM.into());
    let mut clients = Vec::with_capacity(n);
    let mut registrations = Vec::with_capacity(n);
    for i in 0..n {
        let key = SigningKey::from_bytes(&seed(3, i));
        let dpop = SigningKey::from_bytes(&seed(4, i));
        let id = format!("bench-client-{i}");
        let public = public_jwk(&key);
        let mut jwk = public.to_json();
        jwk["kid"] = json!(public.thumbprint());
        jwk["use"] = json!("sig");
        registrations.push(json!({"client_id": id, "jwks": {"keys": [jwk]}}));
        clients.push(ClientCfg {
            id,
            key,
            dpop,
            form: vec![],
        });
    }
    let target = Target {
        name: "peer".into(),
        token_endpoint: format!("{issuer}/token"),
        issuer,
        form: vec![
            ("grant_type".into(), "client_credentials".into()),
            ("resource".into(), resource),
        ],
        clients,
    };
    target.save(&args.req("out"));
    std::fs::write(
        args.req("clients-out"),
        serde_json::to_string_pretty(&Value::Array(registrations)).expect("json"),
    )
    .expect("write clients");
}

// ---------------------------------------------------------------------------------------------
// Pre-signed requests

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

static JTI_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique single-use id: this process's start time and a counter.
fn jti(epoch: u128) -> String {
    let n = JTI_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut b = [0u8; 24];
    b[..16].copy_from_slice(&epoch.to_le_bytes());
    b[16..].copy_from_slice(&n.to_le_bytes());
    b64url(&b)
}

/// Signs `n` complete token requests (fresh assertion + fresh DPoP proof each), round-robin over
/// the clients, on two threads.
fn presign(target: &Target, n: usize) -> Vec<Vec<u8>> {
    let (host, path) = split_url(&target.token_endpoint);
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let now = unix_secs();
    let kids: Vec<String> = target
        .clients
        .iter()
        .map(|c| public_jwk(&c.key).thumbprint())
        .collect();
    let make = |k: usize| -> Vec<u8> {
        let c = &target.clients[k % target.clients.len()];
        let claims = json!({
            "iss": c.id, "sub": c.id, "aud": target.issuer,
            "iat": now, "exp": now + ASSERTION_LIFETIME_SECS, "jti": jti(epoch),
        });
        let assertion = jose::sign(
            JwtKind::ClientAssertion,
            Some(&kids[k % target.clients.len()]),
            Algorithm::EdDSA,
            &claims,
            &c.key,
        );
        let proof_claims =
            json!({"jti": jti(epoch), "htm": "POST", "htu": target.token_endpoint, "iat": now});
        let proof =
            jose::sign_with_jwk(JwtKind::DpopProof, Algorithm::EdDSA, &proof_claims, &c.dpop);
        let mut form = target.form.clone();
        form.extend(c.form.iter().cloned());
        form.push(("client_assertion_type".into(), JWT_BEARER.into()));
        form.push(("client_assertion".into(), assertion));
        let body = form_encode(&form);
        build_request(
            "POST",
            &host,
            &path,
            &[("DPoP", &proof), ("Accept", "application/json")],
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
        )
    };
    let threads = 2;
    let mut parts: Vec<Vec<Vec<u8>>> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let make = &make;
                s.spawn(move || {
                    (0..n)
                        .filter(|k| k % threads == t)
                        .map(make)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            parts.push(h.join().expect("presign thread"));
        }
    });
    parts.into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/// utime + stime of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // The command name (field 2) is parenthesised and may contain spaces.
    let after = &stat[stat.rfind(')').expect("stat") + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // `after` starts at field 3: utime is field 14 → index 11, stime → index 12.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// Bytes the process caused to be written to storage (`write_bytes` of `/proc/<pid>/io`).
fn write_bytes(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Machine-wide (busy, total) jiffies from the `cpu` line of `/proc/stat`; busy excludes idle
/// and iowait.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Per-thread CPU of a process: (start time, tid, name, ticks), oldest thread first.
fn thread_ticks(pid: &str) -> Vec<(u64, u64, String, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let tid = e.file_name().to_string_lossy().into_owned();
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        // Field 22 (starttime) → index 19.
        let start = f[19].parse::<u64>().unwrap_or(0);
        out.push((start, tid.parse().unwrap_or(0), name, ticks));
    }
    out.sort_unstable();
    out
}

/// Server CPU over a window by thread group, in seconds. A tokio runtime names its async
/// workers and its blocking-pool threads alike (`tokio-rt-worker`); the workers are started
/// first and live as long as the runtime, so the `workers` oldest such threads are counted as
/// async workers and the rest as the blocking pool. Threads that exited during the window are missed (reported as `unattributed`).
fn thread_groups(
    before: &[(u64, u64, String, u64)],
    after: &[(u64, u64, String, u64)],
    workers: usize,
    total: f64,
    clk_tck: f64,
) -> Value {
    let mut groups: BTreeMap<String, f64> = BTreeMap::new();
    let mut tokio_seen = 0;
    for (_, tid, name, ticks) in after {
        let base = before
            .iter()
            .find(|(_, t, _, _)| t == tid)
            .map_or(0, |(_, _, _, b)| *b);
        let group = if name == "tokio-rt-worker" {
            tokio_seen += 1;
            if tokio_seen <= workers {
                "async workers (HTTP, handler, crypto)".to_owned()
            } else {
                "tokio blocking pool (store reads)".to_owned()
            }
        } else if name.starts_with("mandate-ledger") {
            "ledger writer (apply, receipts, commit)".to_owned()
        } else {
            name.clone()
        };
        *groups.entry(group).or_default() += ticks.saturating_sub(base) as f64 / clk_tck;
    }
    let attributed: f64 = groups.values().sum();
    if total - attributed > 0.05 {
        groups.insert("unattributed (exited threads)".into(), total - attributed);
    }
    json!(groups)
}

// ---------------------------------------------------------------------------------------------
// Timed window

struct Window {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    first_ok: Option<Vec<u8>>,
    elapsed: Duration,
    server_cpu: f64,
    client_cpu: f64,
    exhausted: bool,
    latencies_us: Vec<u32>,
    threads: Value,
    machine_busy_cores: f64,
    written: u64,
}

async fn window(
    addr: &str,
    pool: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    duration: Duration,
    server_pid: &str,
    clk_tck: f64,
    async_workers: usize,
) -> Window {
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(Conn::connect(addr).await.expect("connect"));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let threads0 = thread_ticks(server_pid);
    let cpu0 = cpu_ticks(server_pid);
    let machine0 = machine_ticks();
    let written0 = write_bytes(server_pid);
    let self0 = cpu_ticks("self");
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for mut conn in conns {
        let (pool, next, addr) = (Arc::clone(&pool), Arc::clone(&next), addr.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut w = Window {
                ok: 0,
                errors: 0,
                first_error: None,
                first_ok: None,
                elapsed: Duration::ZERO,
                server_cpu: 0.0,
                client_cpu: 0.0,
                exhausted: false,
                latencies_us: Vec::with_capacity(16_384),
                threads: Value::Null,
                machine_busy_cores: 0.0,
                written: 0,
            };
            loop {
                let t = Instant::now();
                if t >= deadline {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = pool.get(i) else {
                    w.exhausted = true;
                    break;
                };
                let resp = match conn.send(req).await {
                    Ok(r) => r,
                    Err(e) => {
                        w.errors += 1;
                        w.first_error.get_or_insert_with(|| format!("io: {e}"));
                        conn = Conn::connect(&addr).await.expect("reconnect");
                        continue;
                    }
                };
                w.latencies_us
                    .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                if resp.status == 200 && find(&resp.body, b"\"access_token\"").is_some() {
                    w.ok += 1;
                    if w.first_ok.is_none() {
                        w.first_ok = Some(resp.body);
                    }
                } else {
                    w.errors += 1;
                    w.first_error.get_or_insert_with(|| {
                        format!("{} {}", resp.status, String::from_utf8_lossy(&resp.body))
                    });
                }
                if resp.close {
                    conn = Conn::connect(&addr).await.expect("reconnect");
                }
            }
            w
        }));
    }
    let mut total = Window {
        ok: 0,
        errors: 0,
        first_error: None,
        first_ok: None,
        elapsed: Duration::ZERO,
        server_cpu: 0.0,
        client_cpu: 0.0,
        exhausted: false,
        latencies_us: Vec::new(),
        threads: Value::Null,
        machine_busy_cores: 0.0,
        written: 0,
    };
    for t in tasks {
        let w = t.await.expect("worker");
        total.ok += w.ok;
        total.errors += w.errors;
        total.exhausted |= w.exhausted;
        if total.first_error.is_none() {
            total.first_error = w.first_error;
        }
        if total.first_ok.is_none() {
            total.first_ok = w.first_ok;
        }
        total.latencies_us.extend(w.latencies_us);
    }
    total.elapsed = start.elapsed();
    total.server_cpu = (cpu_ticks(server_pid) - cpu0) as f64 / clk_tck;
    let machine1 = machine_ticks();
    total.written = write_bytes(server_pid) - written0;
    total.machine_busy_cores =
        (machine1.0 - machine0.0) as f64 / clk_tck / total.elapsed.as_secs_f64();
    total.client_cpu = (cpu_ticks("self") - self0) as f64 / clk_tck;
    total.threads = thread_groups(
        &threads0,
        &thread_ticks(server_pid),
        async_workers,
        total.server_cpu,
        clk_tck,
    );
    total.latencies_us.sort_unstable();
    total
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Prints what the server answered: the response members and the access token's header and
/// claim names (proof that the tokens are JWT access tokens bound to the DPoP key).
fn describe(body: &[u8]) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let token = v["access_token"].as_str().unwrap_or("");
    let mut parts = token.split('.');
    let dec = |s: Option<&str>| -> Value {
        s.and_then(b64url_decode)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let header = dec(parts.next());
    let claims = dec(parts.next());
    let names = |v: &Value| -> String {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    eprintln!(
        "  response: token_type={} expires_in={} members=[{}]; access token ({} bytes) header {} claims [{}] cnf={}",
        v["token_type"],
        v["expires_in"],
        names(&v),
        token.len(),
        header,
        names(&claims),
        claims["cnf"],
    );
}

async fn run(args: &Args) {
    let target = Target::load(&args.req("target"));
    let concurrency: usize = args.num("concurrency", 16);
    let duration = Duration::from_secs_f64(args.num("duration", 10.0));
    let warmup = Duration::from_secs_f64(args.num("warmup", 3.0));
    let runs: usize = args.num("runs", 3);
    let pid = args.req("server-pid");
    let clk_tck: f64 = args.num("clk-tck", 100.0);
    let label = args.get("label").unwrap_or_else(|| target.name.clone());
    let out = args.req("out");
    let async_workers: usize = args.num("async-workers", 2);
    let max_pool: usize = args.num("max-pool", 400_000);
    // `--connect HOST:PORT`: send to another replica than the issuer's address (the requests,
    // and their DPoP `htu`, still name the issuer's token endpoint, as behind a load balancer).
    let (addr, _) = split_url(&target.token_endpoint);
    let addr = args.get("connect").unwrap_or(addr);

    // Warm-up: a fixed pool, until it runs out or the warm-up time is over.
    let pool = Arc::new(presign(&target, args.num("warmup-requests", 4_000)));
    let w = window(
        &addr,
        pool,
        concurrency,
        warmup,
        &pid,
        clk_tck,
        async_workers,
    )
    .await;
    eprintln!(
        "[{label} c={concurrency}] warm-up: {} ok, {} errors in {:.2} s",
        w.ok,
        w.errors,
        w.elapsed.as_secs_f64()
    );
    if let Some(e) = &w.first_error {
        eprintln!("  first error: {}", e.chars().take(400).collect::<String>());
    }
    assert!(w.ok > 0, "no token issued during warm-up");
    if let Some(body) = &w.first_ok {
        describe(body);
    }
    let mut rate = w.ok as f64 / w.elapsed.as_secs_f64();

    for r in 1..=runs {
        let n = ((rate * duration.as_secs_f64() * 2.5) as usize + 4 * concurrency).min(max_pool);
        let t = Instant::now();
        let pool = Arc::new(presign(&target, n));
        let presign_s = t.elapsed().as_secs_f64();
        // Let the machine settle after signing.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let w = window(
            &addr,
            pool,
            concurrency,
            duration,
            &pid,
            clk_tck,
            async_workers,
        )
        .await;
        let secs = w.elapsed.as_secs_f64();
        let tps = w.ok as f64 / secs;
        rate = rate.max(tps);
        let per_cpu = if w.server_cpu > 0.0 {
            w.ok as f64 / w.server_cpu
        } else {
            f64::NAN
        };
        let line = json!({
            "label": label,
            "target": target.name,
            "concurrency": concurrency,
            "run": r,
            "ok": w.ok,
            "errors": w.errors,
            "elapsed_s": secs,
            "tokens_per_s": tps,
            "server_cpu_s": w.server_cpu,
            "server_cores_busy": w.server_cpu / secs,
            "tokens_per_server_cpu_s": per_cpu,
            "client_cpu_s": w.client_cpu,
            "machine_busy_cores": w.machine_busy_cores,
            "other_processes_cores": (w.machine_busy_cores - (w.server_cpu + w.client_cpu) / secs).max(0.0),
            "p50_ms": percentile_ms(&w.latencies_us, 0.5),
            "p99_ms": percentile_ms(&w.latencies_us, 0.99),
            "presigned": n,
            "presign_s": presign_s,
            "exhausted": w.exhausted,
            "server_threads_cpu_s": w.threads,
            "server_bytes_written_per_token": w.written as f64 / (w.ok.max(1)) as f64,
            "unix_time": unix_secs(),
        });
        eprintln!(
            "[{label} c={concurrency}] run {r}/{runs}: {} ok, {} err in {secs:.2} s → {tps:.0} tokens/s, server CPU {:.2} s ({:.2} cores) → {per_cpu:.0} tokens/server-CPU-s; client CPU {:.2} s; p50 {:.1} ms p99 {:.1} ms{}",
            w.ok,
            w.errors,
            w.server_cpu,
            w.server_cpu / secs,
            w.client_cpu,
            percentile_ms(&w.latencies_us, 0.5),
            percentile_ms(&w.latencies_us, 0.99),
            if w.exhausted {
                " (pool exhausted: window ended early)"
            } else {
                ""
            },
        );
        eprintln!(
            "  server CPU by thread (s): {}; storage writes {:.1} KB/token; machine busy {:.2} of {} cores (other processes {:.2})",
            w.threads,
            w.written as f64 / 1024.0 / w.ok.max(1) as f64,
            w.machine_busy_cores,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            (w.machine_busy_cores - (w.server_cpu + w.client_cpu) / secs).max(0.0),
        );
        if let Some(e) = &w.first_error {
            eprintln!("  first error: {}", e.chars().take(400).collect::<String>());
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .expect("open results");
        writeln!(f, "{line}").expect("write results");
    }
}

// ---------------------------------------------------------------------------------------------
// Summary

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Median (ns) of a criterion benchmark, from `DIR/<group>/<bench>/new/estimates.json`.
fn criterion_ns(dir: &str, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("{dir}/{id}/new/estimates.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Fastest sample (ns per iteration) of a criterion benchmark, from `sample.json`: on a shared
/// machine, the least-disturbed estimate of the cost.
fn criterion_fastest_ns(dir: &str, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("{dir}/{id}/new/sample.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let iters = v["iters"].as_array()?;
    let times = v["times"].as_array()?;
    iters
        .iter()
        .zip(times)
        .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?))
        .min_by(f64::total_cmp)
}

fn summary(args: &Args) {
    let results = std::fs::read_to_string(args.req("results")).expect("read results");
    let dir = args.req("criterion");
    let subject = args.get("subject").unwrap_or_else(|| "mandate".into());
    let baseline = args.get("baseline").unwrap_or_else(|| "peer".into());
    // (label, concurrency) → [(tokens/s, tokens/cpu-s, cores busy, p50, client cpu share)]
    let mut groups: BTreeMap<(String, u64), Vec<Value>> = BTreeMap::new();
    for line in results.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("results line");
        let key = (
            v["label"].as_str().unwrap_or("?").to_owned(),
            v["concurrency"].as_u64().unwrap_or(0),
        );
        groups.entry(key).or_default().push(v);
    }
    let med = |rows: &[Value], k: &str| median(rows.iter().filter_map(|r| r[k].as_f64()).collect());

    let crypto = [
        ("ed25519/verify_strict", "Ed25519 verify_strict"),
        ("ed25519/sign", "Ed25519 sign"),
        (
            "ed25519/2_verify_1_sign",
            "2 verify_strict + 1 sign (the ceiling)",
        ),
        (
            "jose/client_assertion_parse_verify",
            "jose: client assertion parse + verify + claims",
        ),
        (
            "jose/dpop_proof_verify",
            "jose: DPoP proof verify (all stateless checks + jkt)",
        ),
        (
            "jose/access_token_sign",
            "jose: access token sign (claims → compact JWS)",
        ),
        (
            "jose/token_path_crypto",
            "jose: assertion + DPoP + access token (our crypto path)",
        ),
    ];
    let ceiling_ns = criterion_ns(&dir, "ed25519/2_verify_1_sign");
    let fastest_ns = criterion_fastest_ns(&dir, "ed25519/2_verify_1_sign");
    let jose_ns = criterion_ns(&dir, "jose/token_path_crypto");
    // The ceiling the shares are computed against: the highest of this run's criterion median,
    // its fastest sample, and `--reference-ceiling` (tokens per core-second measured on a quiet
    // machine), so that a disturbed crypto measurement never flatters the share.
    let reference: Option<f64> = args.get("reference-ceiling").and_then(|v| v.parse().ok());
    let ceiling = [
        ceiling_ns.map(|ns| 1e9 / ns),
        fastest_ns.map(|ns| 1e9 / ns),
        reference,
    ]
    .into_iter()
    .flatten()
    .max_by(f64::total_cmp);

    let mut md = String::new();
    md.push_str(
        "| criterion (this run) | median | per core-second | fastest sample |\n|---|---|---|---|\n",
    );
    for (id, name) in crypto {
        if let Some(ns) = criterion_ns(&dir, id) {
            let fast = criterion_fastest_ns(&dir, id).unwrap_or(f64::NAN);
            md.push_str(&format!(
                "| {name} | {:.1} µs | {:.0} | {:.1} µs |\n",
                ns / 1000.0,
                1e9 / ns,
                fast / 1000.0
            ));
        }
    }
    md.push('\n');
    md.push_str("| server | concurrency | tokens/s | tokens per server CPU-s | server cores busy | share of Ed25519 ceiling (per CPU-s) | vs peer, tokens/s | vs peer, per CPU-s | p50 latency | runs |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let concs: Vec<u64> = {
        let mut c: Vec<u64> = groups.keys().map(|(_, c)| *c).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let mut verdict = Vec::new();
    for label in [&subject, &baseline] {
        for c in &concs {
            let Some(rows) = groups.get(&(label.clone(), *c)) else {
                continue;
            };
            let tps = med(rows, "tokens_per_s");
            let per_cpu = med(rows, "tokens_per_server_cpu_s");
            let busy = med(rows, "server_cores_busy");
            let p50 = med(rows, "p50_ms");
            let share = ceiling.map(|c| per_cpu / c * 100.0);
            let base = groups.get(&(baseline.clone(), *c));
            let (rt, rc) = match base {
                Some(b) if label != &baseline => (
                    format!("{:.1}×", tps / med(b, "tokens_per_s")),
                    format!("{:.1}×", per_cpu / med(b, "tokens_per_server_cpu_s")),
                ),
                _ => ("—".into(), "—".into()),
            };
            if label == &subject {
                let share_ok = share.is_some_and(|s| s >= 60.0);
                let ratio_ok = base.is_some_and(|b| tps / med(b, "tokens_per_s") >= 5.0);
                verdict.push(format!(
                    "c={c}: {:.0}% of ceiling per CPU-s (target ≥ 60%: {}), {} the peer's tokens/s (target ≥ 5×: {})",
                    share.unwrap_or(f64::NAN),
                    if share_ok { "met" } else { "MISSED" },
                    rt,
                    if ratio_ok { "met" } else { "MISSED" },
                ));
            }
            md.push_str(&format!(
                "| {label} | {c} | {tps:.0} | {per_cpu:.0} | {busy:.2} | {} | {rt} | {rc} | {p50:.1} ms | {} |\n",
                share.map(|s| format!("{s:.0} %")).unwrap_or_else(|| "—".into()),
                rows.len(),
            ));
        }
    }
    md.push('\n');
    if let Some(c) = ceiling {
        md.push_str(&format!(
            "Ed25519 ceiling used for the shares: {c:.0} tokens per core-second = {:.1} µs per 2 verify_strict + 1 sign \
             (highest of: this run's criterion median {:.1} µs, its fastest sample {:.1} µs, reference {}).",
            1e6 / c,
            ceiling_ns.unwrap_or(f64::NAN) / 1000.0,
            fastest_ns.unwrap_or(f64::NAN) / 1000.0,
            reference.map_or("none".to_owned(), |r| format!("{r:.0}/core-s = {:.1} µs", 1e6 / r)),
        ));
        if let Some(j) = jose_ns {
            md.push_str(&format!(
                " Our jose path (parse + profile checks + thumbprint + sign) costs {:.1} µs (criterion median), {:.2}× the raw crypto.",
                j / 1000.0,
                j / ceiling_ns.unwrap_or(f64::NAN)
            ));
        }
        md.push('\n');
    }
    for v in &verdict {
        md.push_str(&format!("- {v}\n"));
    }
    print!("{md}");
    if let Some(path) = args.get("markdown") {
        std::fs::write(path, &md).expect("write markdown");
    }
}
