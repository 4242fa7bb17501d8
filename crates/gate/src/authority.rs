//! Calls from the gate to the authority: approval checks and receipt shipping, each
//! authenticated with a fresh client assertion.
//!
//! RFC 7523 §2.2 / §3 with draft-ietf-oauth-rfc7523bis: the assertion is a JWT signed with the
//! gate's registered Ed25519 key, `iss` = `sub` = the gate's client id, `aud` = the issuer
//! identifier (one value), a short `exp` and a unique `jti` (the authority consumes it once).
//! It travels as `Authorization: Bearer <JWT>` on the gate endpoints of the admin API.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mandate_core::clock::Clock;
use mandate_core::encoding::b64url;
use mandate_core::jose::{self, Algorithm, JwtKind};
use serde::Deserialize;
use serde_json::{Value, json};

/// Lifetime of one client assertion, in seconds.
const ASSERTION_LIFETIME: i64 = 60;

/// The authority as the gate's client.
pub(crate) struct Authority {
    http: reqwest::Client,
    /// The issuer identifier without a trailing `/`.
    base: String,
    issuer: String,
    gate_id: String,
    key: SigningKey,
    kid: String,
    clock: Arc<dyn Clock>,
}

/// The authority's answer to an approval check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Approval {
    /// Approved and now consumed: this request may go on, once.
    Approved(String),
    /// Waiting for a human.
    Pending(String),
    /// A human said no.
    Denied(String),
}

/// Why shipping failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ShipError {
    /// Worth retrying (network, authentication, conflicts, the authority's errors).
    #[error("{0}")]
    Transient(String),
    /// The authority refuses the content; retrying the same batch cannot succeed.
    #[error("{0}")]
    Rejected(String),
}

/// What an approval check is about.
#[derive(Debug, Clone)]
pub(crate) struct ApprovalRequest<'a> {
    pub(crate) request_hash: &'a str,
    pub(crate) delegation: &'a str,
    pub(crate) agent: &'a str,
    pub(crate) action: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) summary: &'a str,
}

#[derive(Deserialize)]
struct ApprovalAnswer {
    status: String,
    id: String,
}

impl Authority {
    pub(crate) fn new(
        http: reqwest::Client,
        issuer: &str,
        gate_id: &str,
        key: SigningKey,
        kid: String,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            http,
            base: issuer.trim_end_matches('/').to_owned(),
            issuer: issuer.to_owned(),
            gate_id: gate_id.to_owned(),
            key,
            kid,
            clock,
        }
    }

    /// `POST /v1/approvals/check`: is there a usable approval for exactly this request? An
    /// approved answer consumes it.
    pub(crate) async fn check_approval(
        &self,
        req: &ApprovalRequest<'_>,
    ) -> Result<Approval, String> {
        let body = json!({
            "request_hash": req.request_hash,
            "delegation": req.delegation,
            "agent": req.agent,
            "action": req.action,
            "resource": req.resource,
            "summary": req.summary,
        });
        let answer = self.post("/v1/approvals/check", &body).await?;
        let answer: ApprovalAnswer = serde_json::from_value(answer)
            .map_err(|e| format!("unexpected approval answer: {e}"))?;
        match answer.status.as_str() {
            "approved" => Ok(Approval::Approved(answer.id)),
            "pending" => Ok(Approval::Pending(answer.id)),
            "denied" => Ok(Approval::Denied(answer.id)),
            other => Err(format!("unexpected approval status `{other}`")),
        }
    }

    /// `POST /v1/gates/receipts`: ships decision records (idempotent by id).
    pub(crate) async fn ship(&self, receipts: &[Value]) -> Result<(), ShipError> {
        match self
            .post_status("/v1/gates/receipts", &json!({ "receipts": receipts }))
            .await
        {
            Ok(_) => Ok(()),
            // The authority read the request and refuses its content: sending it again cannot
            // help. Authentication, conflicts and rate limits may pass on a retry.
            Err((Some(status), e))
                if (400..500).contains(&status) && ![401, 408, 409, 429].contains(&status) =>
            {
                Err(ShipError::Rejected(e))
            }
            Err((_, e)) => Err(ShipError::Transient(e)),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.post_status(path, body).await.map_err(|(_, e)| e)
    }

    async fn post_status(&self, path: &str, body: &Value) -> Result<Value, (Option<u16>, String)> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.assertion())
            .json(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| (None, format!("{path}: {}", without_url(&e))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| (None, format!("{path}: {}", without_url(&e))))?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            return Err((
                Some(status.as_u16()),
                format!("{path}: HTTP {status} {detail}"),
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| (None, format!("{path}: malformed answer: {e}")))
    }

    /// A fresh RFC 7523 client assertion.
    fn assertion(&self) -> String {
        let now = self.clock.now_ms() / 1000;
        let mut jti = [0u8; 16];
        if getrandom::fill(&mut jti).is_err() {
            // Without randomness the jti could repeat; the authority refuses a reused one, so
            // the call fails closed. Use the clock as a last resort to keep it unique per ms.
            jti[..8].copy_from_slice(&self.clock.now_ms().to_be_bytes());
        }
        let claims = json!({
            "iss": self.gate_id,
            "sub": self.gate_id,
            "aud": self.issuer,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": b64url(&jti),
        });
        jose::sign(
            JwtKind::ClientAssertion,
            Some(&self.kid),
            Algorithm::EdDSA,
            &claims,
            &self.key,
        )
    }
}

/// A reqwest error's text without the URL (which holds nothing secret here, but keeps logs short).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
