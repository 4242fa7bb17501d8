//! A real authority (behind a link the test can cut), a registered gate and agent with a
//! mandate, a counting upstream (HTTP routes and a small MCP server), and the gate in front.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::SigningKey;
use mandate_core::encoding::b64url;
use mandate_core::jose::{self, Algorithm, JwtKind};
use mandate_core::jwk::PublicJwk;
use mandate_gate::{GateConfig, RunningGate};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub const ADMIN_KEY: &str = "mnd_test_bootstrap_key_0123456789abcdef";
pub const AUD: &str = "https://crm.example.com";
pub const OTHER_AUD: &str = "https://other.example.com";

/// The scope every test mandate grants (narrowed per test where needed).
pub fn scope() -> Value {
    json!([{
        "type": "mandate",
        "actions": ["read", "write", "delete", "execute"],
        "locations": [AUD],
        "resources": ["tickets/*", "orders/*"],
        "constraints": {
            "max_amount": {"value": 100, "currency": "USD"},
            "approval_required_for": ["delete"]
        }
    }])
}

fn ceiling() -> Value {
    json!([{
        "type": "mandate",
        "actions": ["read", "write", "delete", "execute"],
        "locations": [AUD, OTHER_AUD],
        "resources": ["tickets/*", "orders/*", "customers/*"]
    }])
}

/// A TCP relay in front of the authority that the test can take down and bring back.
pub struct Link {
    pub addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    down: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl Link {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let down = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(Notify::new());
        let (t, d, c) = (target.clone(), down.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let Some(to) = *t.lock().unwrap() else {
                    continue;
                };
                let c = c.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = c.notified() => {}
                    }
                });
            }
        });
        Self {
            addr,
            target,
            down,
            cut,
        }
    }

    /// Refuses new connections and cuts the open ones.
    pub fn take_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn bring_up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

pub struct Authority {
    pub running: mandate_server::RunningServer,
    pub link: Link,
    pub http: reqwest::Client,
    pub _dir: tempfile::TempDir,
    /// With `MANDATE_TEST_DATABASE_URL` set to a PostgreSQL URL, the authority's own schema.
    pub _schema: Option<mandate_store::postgres::scratch::ScratchSchema>,
}

impl Authority {
    pub async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let link = Link::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = mandate_server::ServerConfig::new(dir.path().join("data"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.bootstrap_key = Some(ADMIN_KEY.into());
        config.issuer = Some(format!("http://{}", link.addr));
        let schema = match std::env::var("MANDATE_TEST_DATABASE_URL") {
            Ok(url) if mandate_store::postgres::is_postgres_url(&url) => Some(
                mandate_store::postgres::scratch::ScratchSchema::create(&url)
                    .await
                    .expect("MANDATE_TEST_DATABASE_URL: PostgreSQL schema"),
            ),
            _ => None,
        };
        config.database_url = schema.as_ref().map(|s| s.url().to_owned());
        let running = mandate_server::start(config).await.unwrap();
        *link.target.lock().unwrap() = Some(running.addr);
        Self {
            running,
            link,
            http: reqwest::Client::new(),
            _dir: dir,
            _schema: schema,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    pub fn issuer(&self) -> &str {
        &self.running.issuer
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(ADMIN_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.call(Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {status} {body:?}");
        body
    }

    /// Every receipt of the operator tenant.
    pub async fn receipts(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (status, body) = self
                .call(
                    Method::GET,
                    &format!("/v1/receipts?cursor={cursor}&limit=1000"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body:?}");
            for item in body["items"].as_array().unwrap() {
                out.push(item["receipt"].clone());
            }
            match body["next"].as_u64() {
                Some(n) => cursor = n,
                None => break,
            }
        }
        out
    }
}

/// A registered agent with its key, and its token machinery.
pub struct Agent {
    pub id: String,
    pub key: SigningKey,
}

pub fn nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&N.fetch_add(1, Ordering::SeqCst).to_le_bytes());
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_le_bytes();
    b[8..].copy_from_slice(&t[..8]);
    b64url(&b)
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A DPoP key (RFC 9449) and its proofs.
pub struct Dpop {
    pub key: SigningKey,
}

impl Dpop {
    pub fn new(seed: u8) -> Self {
        Self {
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    pub fn proof(&self, htm: &str, htu: &str, token: Option<&str>) -> String {
        let mut claims = json!({"jti": nonce(), "htm": htm, "htu": htu, "iat": now_secs()});
        if let Some(t) = token {
            claims["ath"] = json!(jose::access_token_hash(t));
        }
        jose::sign_with_jwk(JwtKind::DpopProof, Algorithm::EdDSA, &claims, &self.key)
    }
}

/// Everything of one test: the authority, a gate registration, an agent with a mandate,
/// the upstreams and the running gate.
pub struct World {
    pub auth: Authority,
    pub gate_id: String,
    pub agent: Agent,
    pub mandate: String,
    pub document: String,
    pub upstream: Upstream,
    pub gate: Option<RunningGate>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl World {
    pub async fn new() -> Self {
        Self::with_scope(scope()).await
    }

    pub async fn with_scope(details: Value) -> Self {
        let auth = Authority::start().await;
        let (_, me) = auth.call(Method::GET, "/v1/me", None).await;
        let me = me["human"]["id"].as_str().unwrap().to_owned();
        let key = SigningKey::from_bytes(&[21; 32]);
        let jwk = PublicJwk::from_seed(&key.to_bytes()).to_json();
        let r = auth
            .post(
                "/v1/agents",
                json!({"name": "support-bot", "owner": me, "purpose": "support", "ceiling": ceiling(), "jwk": jwk}),
            )
            .await;
        let agent = Agent {
            id: r["agent"]["id"].as_str().unwrap().to_owned(),
            key,
        };
        let gate_key = SigningKey::from_bytes(&[22; 32]);
        let gjwk = PublicJwk::from_seed(&gate_key.to_bytes()).to_json();
        let r = auth
            .post(
                "/v1/gates",
                json!({"name": "crm-gate", "audience": AUD, "jwk": gjwk}),
            )
            .await;
        let gate_id = r["id"].as_str().unwrap().to_owned();
        let r = auth
            .post(
                "/v1/mandates",
                json!({"agent": agent.id, "authorization_details": details, "expires_in": 3600, "purpose": "support"}),
            )
            .await;
        let mandate = r["id"].as_str().unwrap().to_owned();
        let document = r["delegation"].as_str().unwrap().to_owned();
        let upstream = Upstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (_, private) = mandate_core::jwk::private_jwk_from_seed(&gate_key.to_bytes());
        std::fs::write(dir.path().join("gate-key.json"), private.to_string()).unwrap();
        let mut w = Self {
            auth,
            gate_id,
            agent,
            mandate,
            document,
            upstream,
            gate: None,
            dir,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        w.start_gate().await;
        w
    }

    pub fn config_text(&self) -> String {
        format!(
            r#"
listen = "127.0.0.1:0"
issuer = "{issuer}"
audience = "{AUD}"
gate_id = "{gate}"
key_file = "gate-key.json"
spool_dir = "spool"
max_staleness_secs = 30

[[upstream]]
name = "crm"
kind = "http"
url = "http://{up}"

[[upstream]]
name = "tools"
kind = "mcp"
url = "http://{up}/mcp"

[[route]]
upstream = "crm"
method = "GET"
path = "/tickets/{{id}}"
action = "read"
resource = "tickets/{{id}}"

[[route]]
upstream = "crm"
method = "DELETE"
path = "/tickets/{{id}}"
action = "delete"
resource = "tickets/{{id}}"

[[route]]
upstream = "crm"
method = "POST"
path = "/orders/{{id}}/refunds"
action = "write"
resource = "orders/{{id}}"
inputs = {{ amount = "body.amount", currency = "body.currency" }}

[[route]]
upstream = "crm"
method = "GET"
path = "/customers/{{id}}"
action = "read"
resource = "customers/{{id}}"

[[route]]
upstream = "crm"
method = "GET"
path = "/stream"
action = "read"
resource = "tickets/stream"

[[tool]]
name = "read_ticket"
action = "read"
resource = "tickets/{{arguments.ticket_id}}"

[[tool]]
name = "refund_order"
action = "execute"
resource = "orders/{{arguments.order_id}}"
inputs = {{ amount = "arguments.amount", currency = "arguments.currency" }}

[[tool]]
name = "delete_ticket"
action = "delete"
resource = "tickets/{{arguments.ticket_id}}"

[[tool]]
name = "close_account"
action = "write"
resource = "customers/{{arguments.customer_id}}"
"#,
            issuer = self.auth.issuer(),
            gate = self.gate_id,
            up = self.upstream.addr,
        )
    }

    pub fn config(&self) -> GateConfig {
        GateConfig::from_toml(&self.config_text(), self.dir.path()).unwrap()
    }

    pub async fn start_gate(&mut self) {
        let gate = mandate_gate::start(self.config()).await.unwrap();
        self.gate = Some(gate);
    }

    /// Restarts the gate with `extra` appended to its configuration.
    pub async fn restart_gate_with(&mut self, extra: &str) {
        self.stop_gate().await;
        let text = format!("{}\n{extra}\n", self.config_text());
        let config = GateConfig::from_toml(&text, self.dir.path()).unwrap();
        self.gate = Some(mandate_gate::start(config).await.unwrap());
    }

    pub async fn stop_gate(&mut self) {
        if let Some(g) = self.gate.take() {
            g.stop().await;
        }
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    pub fn gate_url(&self) -> String {
        self.gate.as_ref().unwrap().url()
    }

    /// The gate's health document (`GET /.well-known/mandate-gate`): (status, body).
    pub async fn gate_health(&self) -> (u16, Value) {
        let r = reqwest::get(format!("{}/.well-known/mandate-gate", self.gate_url()))
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Waits until the gate's event stream from the authority is connected and a status list
    /// is cached (call it after a first request with a token: that request fetches its list).
    pub async fn wait_events_connected(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = self.gate_health().await;
            if body["events_connected"] == true && body["status_lists_age_ms"].is_u64() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gate's event stream did not connect: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn gate_addr(&self) -> SocketAddr {
        self.gate.as_ref().unwrap().local_addr()
    }

    /// An RFC 7523 client assertion of the agent.
    pub fn assertion(&self) -> String {
        let now = now_secs();
        let kid = PublicJwk::from_seed(&self.agent.key.to_bytes()).thumbprint();
        let claims = json!({"iss": self.agent.id, "sub": self.agent.id, "aud": self.auth.issuer(), "iat": now, "exp": now + 120, "jti": nonce()});
        jose::sign(
            JwtKind::ClientAssertion,
            Some(&kid),
            Algorithm::EdDSA,
            &claims,
            &self.agent.key,
        )
    }

    /// Redeems `document` for a token bound to `dpop`.
    pub async fn token_for(&self, document: &str, dpop: &Dpop) -> String {
        let proof = dpop.proof(
            "POST",
            &format!("{}/oauth2/token", self.auth.issuer()),
            None,
        );
        let assertion = self.assertion();
        let params = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", document),
            ("subject_token_type", "urn:mandate:token-type:delegation"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ];
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let resp = self
            .auth
            .http
            .post(self.auth.url("/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("DPoP", proof)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body:?}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn token(&self, dpop: &Dpop) -> String {
        self.token_for(&self.document, dpop).await
    }

    /// A request to the gate with the token and a fresh proof.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: &str,
        dpop: &Dpop,
    ) -> reqwest::RequestBuilder {
        let htu = format!("{}{}", self.gate_url(), path.split('?').next().unwrap());
        self.http
            .request(method.clone(), format!("{}{path}", self.gate_url()))
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", dpop.proof(method.as_str(), &htu, Some(token)))
    }

    /// An MCP JSON-RPC request through the gate.
    pub async fn mcp(
        &self,
        token: &str,
        dpop: &Dpop,
        message: Value,
        headers: &[(&str, &str)],
    ) -> (u16, HeaderMap, Value) {
        let mut req = self
            .request(Method::POST, "/mcp", token, dpop)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let resp = req.body(message.to_string()).send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if headers
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap().starts_with("text/event-stream"))
        {
            // The JSON-RPC message of the (single) event.
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .collect();
            serde_json::from_str(&data.join("\n")).unwrap_or(Value::String(text))
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, body)
    }

    /// Sends raw bytes as one HTTP/1.1 request to the gate and returns the status code.
    pub async fn raw(
        &self,
        request_line: &str,
        token: &str,
        dpop: &Dpop,
        method: &str,
        path: &str,
    ) -> u16 {
        let htu = format!("{}{path}", self.gate_url());
        let proof = dpop.proof(method, &htu, Some(token));
        let text = format!(
            "{request_line}\r\nHost: {}\r\nAuthorization: DPoP {token}\r\nDPoP: {proof}\r\nConnection: close\r\n\r\n",
            self.gate_addr()
        );
        let mut s = TcpStream::connect(self.gate_addr()).await.unwrap();
        s.write_all(text.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let head = String::from_utf8_lossy(&out);
        head.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"))
    }

    /// Waits until the authority's ledger holds `ids` (gate decisions), each exactly once.
    pub async fn wait_for_decisions(&self, ids: &[String], within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let decisions: Vec<Value> = self
                .auth
                .receipts()
                .await
                .into_iter()
                .filter(|r| r["kind"] == "gate.decision")
                .collect();
            let all = ids
                .iter()
                .all(|id| decisions.iter().any(|d| mentions(d, id)));
            if all || tokio::time::Instant::now() > deadline {
                return decisions;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether a ledger receipt refers to the decision record `id`.
pub fn mentions(receipt: &Value, id: &str) -> bool {
    receipt.to_string().contains(id)
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A small upstream that records every request: HTTP routes and an MCP endpoint at `/mcp`.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<Hit>>>,
    pub release: Arc<Notify>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Self {
            addr,
            hits: Arc::new(Mutex::new(Vec::new())),
            release: Arc::new(Notify::new()),
        };
        let app = axum::Router::new().fallback(record).with_state(up.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        up
    }

    pub fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    pub fn last(&self) -> Hit {
        self.hits.lock().unwrap().last().unwrap().clone()
    }

    /// Tool calls the MCP endpoint executed.
    pub fn tool_calls(&self) -> Vec<String> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.uri == "/mcp")
            .filter_map(|h| serde_json::from_slice::<Value>(&h.body).ok())
            .filter(|m| m["method"] == "tools/call")
            .map(|m| m["params"]["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

async fn record(
    State(up): State<Upstream>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    up.hits.lock().unwrap().push(Hit {
        method: method.to_string(),
        uri: uri.to_string(),
        headers: headers.clone(),
        body: body.clone(),
    });
    if uri.path() == "/mcp" {
        return mcp(&headers, &body);
    }
    if uri.path() == "/stream" {
        let release = up.release.clone();
        let stream = async_stream(release);
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(axum::body::Body::from_stream(stream))
            .unwrap();
    }
    axum::Json(json!({"ok": true, "method": method.to_string(), "uri": uri.to_string()}))
        .into_response()
}

/// Two events; the second only after the test releases it.
fn async_stream(
    release: Arc<Notify>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    futures_util::stream::unfold(0u8, move |n| {
        let release = release.clone();
        async move {
            match n {
                0 => Some((Ok(Bytes::from_static(b"data: first\n\n")), 1)),
                1 => {
                    release.notified().await;
                    Some((Ok(Bytes::from_static(b"data: second\n\n")), 2))
                }
                _ => None,
            }
        }
    })
}

fn mcp(headers: &HeaderMap, body: &[u8]) -> Response {
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, "bad json").into_response();
    };
    let Some(id) = msg.get("id").cloned() else {
        return axum::http::StatusCode::ACCEPTED.into_response();
    };
    let result = match msg["method"].as_str() {
        Some("initialize") => {
            json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "test", "version": "1"}})
        }
        Some("ping") => json!({}),
        Some("tools/list") => json!({"tools": [
            {"name": "read_ticket", "inputSchema": {"type": "object"}},
            {"name": "refund_order", "inputSchema": {"type": "object"}},
            {"name": "delete_ticket", "inputSchema": {"type": "object"}},
            {"name": "close_account", "inputSchema": {"type": "object"}},
            {"name": "unmapped_tool", "inputSchema": {"type": "object"}}
        ]}),
        Some("tools/call") => {
            json!({"content": [{"type": "text", "text": format!("ran {}", msg["params"]["name"])}]})
        }
        _ => {
            let reply = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no such method"}});
            return axum::Json(reply).into_response();
        }
    };
    let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
    if headers.get("x-test-sse").is_some() {
        let text = format!("event: message\nid: 1\ndata: {reply}\n\n");
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(axum::body::Body::from(text))
            .unwrap();
    }
    axum::Json(reply).into_response()
}

/// The decision records in a spool directory.
pub fn spooled(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut names: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    names.sort();
    for p in names {
        if p.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
        }
    }
    out
}
