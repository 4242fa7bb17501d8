//! Starts a server with a temporary data directory and a preset bootstrap key.

use mandate_server::{RunningServer, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const ADMIN_KEY: &str = "mnd_test_bootstrap_key_0123456789abcdef";

pub struct Server {
    pub clock: std::sync::Arc<mandate_core::clock::FixedClock>,
    pub running: RunningServer,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub async fn start() -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.bootstrap_key = Some(ADMIN_KEY.into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = std::sync::Arc::new(mandate_core::clock::FixedClock::new(now));
    config.clock = Some(clock.clone());
    let running = mandate_server::start(config).await.expect("start");
    Server {
        clock,
        running,
        dir,
        http: reqwest::Client::new(),
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        Self::read(resp).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let resp = self
            .http
            .request(method, self.url(path))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("send");
        Self::read(resp).await
    }

    async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    /// Creates a human and returns (id, their new API key).
    pub async fn human(&self, key: &str, name: &str, role: &str) -> (String, String) {
        let r = self
            .post(
                "/v1/humans",
                key,
                json!({"name": name, "email": format!("{name}@example.com"), "role": role}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let k = self
            .post(&format!("/v1/humans/{id}/api-keys"), key, json!({}))
            .await;
        assert_eq!(k.status, 201, "{:?}", k.body);
        (id, k.body["api_key"].as_str().unwrap().to_owned())
    }

    pub async fn agent(&self, key: &str, owner: &str, name: &str) -> Value {
        let r = self
            .post("/v1/agents", key, json!({"name": name, "owner": owner, "purpose": "triage support tickets", "ceiling": ceiling()}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body
    }

    /// All receipts of the caller's tenant, checked with the chain verifier.
    pub async fn receipts(&self, key: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = 0u64;
        let mut verifier = mandate_core::receipt::ChainVerifier::new();
        loop {
            let r = self
                .get(&format!("/v1/receipts?cursor={cursor}&limit=1000"), key)
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            for item in r.body["items"].as_array().unwrap() {
                verifier
                    .push(
                        item["seq"].as_u64().unwrap(),
                        item["hash"].as_str().unwrap(),
                        &item["receipt"],
                    )
                    .expect("chain verifies");
                out.push(item["receipt"].clone());
            }
            match r.body["next"].as_u64() {
                Some(n) => cursor = n,
                None => break,
            }
        }
        out
    }
}

pub fn ceiling() -> Value {
    json!([{"type": "mandate", "actions": ["read", "write"], "locations": ["https://crm.example.com"], "resources": ["tickets/*", "customers/42/**"], "constraints": {"max_amount": {"value": 100, "currency": "USD"}}}])
}

/// A fresh valid public JWK.
pub fn public_jwk(seed: u8) -> Value {
    let (public, _) = mandate_core::jwk::private_jwk_from_seed(&[seed; 32]);
    public.to_json()
}
