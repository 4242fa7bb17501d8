//! The request path: canonicalise → authenticate → map → authorize → approve → spool → forward.
//!
//! Cheap checks come first (method spelling, path canonical form), then the token and its
//! DPoP proof, then the mapping and the decision. Nothing reaches the upstream unless the
//! decision was allow and its record is durable in the spool.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use mandate_core::encoding::{b64url, base32_128, hex};
use mandate_verifier::{Caller, Decision, Denial, Operation, RequestProof};
use serde_json::{Value, json};

use crate::Gate;
use crate::authority::{Approval, ApprovalRequest};
use crate::config::UpstreamKind;
use crate::error::{Forbidden, Protocol, Refusal};
use crate::mcp::{self, EventStream, Message};
use crate::path::{CanonicalPath, Query};
use crate::routes::{Mapped, Upstream};
use crate::spool::DecisionRecord;

/// RFC 9728 §3: the well-known path of protected-resource metadata.
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// The gate's own health: how fresh its view of the authority is. 200 while revocation data
/// is fresh enough to accept tokens, 503 otherwise (the gate then refuses every token).
pub(crate) const HEALTH_PATH: &str = "/.well-known/mandate-gate";

/// Request headers never sent upstream: hop-by-hop headers (RFC 9110 §7.6.1), the caller's
/// credentials (SECURITY.md, line 9), and headers the gate sets itself.
const STRIPPED: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "dpop",
    "content-length",
    "expect",
];

/// Response headers never passed back (hop-by-hop).
const STRIPPED_RESPONSE: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Every request that is not metadata.
fn health(gate: &Gate) -> Response {
    let f = gate.verifier.freshness();
    let ms = |d: Option<std::time::Duration>| {
        d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    let body = serde_json::json!({
        "status": if f.revocation_fresh { "ok" } else { "stale" },
        "revocation_fresh": f.revocation_fresh,
        "events_connected": f.events_connected,
        "events_age_ms": ms(f.events_age),
        "last_event_id": f.last_event_id,
        "status_lists_age_ms": ms(f.status_lists_age),
        "jwks_age_ms": ms(f.jwks_age),
    });
    let status = if f.revocation_fresh {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    axum::response::IntoResponse::into_response((
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    ))
}

pub(crate) async fn handle(State(gate): State<Arc<Gate>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_owned();
    if parts.method == Method::GET
        && let Some(doc) = gate.metadata_for(&raw_path)
    {
        return doc;
    }
    if parts.method == Method::GET && raw_path == HEALTH_PATH {
        return health(&gate);
    }
    let metadata_url = gate.metadata_url(None);
    // RFC 9110 §9.1: methods are case-sensitive; only the uppercase spellings are routed, and
    // any other spelling is refused rather than guessed at.
    if !parts
        .method
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_uppercase())
    {
        return Refusal::BadRequest("the method must be an uppercase HTTP method".into())
            .render(&Protocol::Http, &metadata_url);
    }
    let path = match CanonicalPath::parse(&raw_path) {
        Ok(p) => p,
        Err(e) => return Refusal::BadRequest(e.to_string()).render(&Protocol::Http, &metadata_url),
    };
    let found = gate.routes.upstream_for(&path);
    let (protocol, metadata_url) = match found {
        Some((u, _)) if u.kind == UpstreamKind::Mcp => (
            Protocol::Mcp { id: Value::Null },
            gate.metadata_url(Some(&u.mount)),
        ),
        _ => (Protocol::Http, metadata_url),
    };
    let caller = match authenticate(&gate, &parts, &raw_path).await {
        Ok(c) => c,
        Err(r) => return r.render(&protocol, &metadata_url),
    };
    let ctx = Ctx {
        gate: &gate,
        caller: &caller,
        parts: &parts,
        path: &path,
        metadata_url: &metadata_url,
    };
    match found {
        None => {
            let target = path.encoded();
            ctx.deny_unmapped(parts.method.as_str(), &target, &Protocol::Http)
                .await
        }
        Some((upstream, rel)) => match upstream.kind {
            UpstreamKind::Http => ctx.http(upstream, &rel, body).await,
            UpstreamKind::Mcp => ctx.mcp(upstream, body).await,
        },
    }
}

/// Verifies the token, its DPoP proof and revocation (DESIGN §7, in that order).
async fn authenticate(gate: &Gate, parts: &Parts, raw_path: &str) -> Result<Caller, Refusal> {
    let mut authorizations = parts.headers.get_all(header::AUTHORIZATION).iter();
    let authorization = authorizations.next();
    if authorizations.next().is_some() {
        return Err(Refusal::BadRequest(
            "only one `Authorization` header is allowed".into(),
        ));
    }
    let Some(authorization) = authorization else {
        return Err(Refusal::Unauthenticated {
            error: None,
            description: "a DPoP-bound access token is required".into(),
        });
    };
    let authorization = authorization
        .to_str()
        .map_err(|_| Refusal::Unauthenticated {
            error: Some("invalid_token"),
            description: "the `Authorization` header is malformed".into(),
        })?;
    // RFC 9449 §4.3 (1): "there is not more than one DPoP HTTP request header field".
    let mut proofs = parts.headers.get_all("dpop").iter();
    let dpop = proofs.next();
    if proofs.next().is_some() {
        return Err(Refusal::Unauthenticated {
            error: Some("invalid_dpop_proof"),
            description: "more than one `DPoP` header".into(),
        });
    }
    let dpop = match dpop {
        Some(v) => Some(v.to_str().map_err(|_| Refusal::Unauthenticated {
            error: Some("invalid_dpop_proof"),
            description: "the `DPoP` header is malformed".into(),
        })?),
        None => None,
    };
    // RFC 9449 §4.3 (9): `htu` is compared with the URI the client addressed, which is the
    // gate's public base URL and the request path as received.
    let url = format!("{}{raw_path}", gate.public_url);
    let proof = RequestProof {
        method: parts.method.as_str(),
        url: &url,
        authorization: Some(authorization),
        dpop,
    };
    gate.verifier
        .authenticate(&proof)
        .await
        .map_err(|d| denial_refusal(&d, None))
}

/// The state of one authenticated request.
struct Ctx<'a> {
    gate: &'a Gate,
    caller: &'a Caller,
    parts: &'a Parts,
    path: &'a CanonicalPath,
    metadata_url: &'a str,
}

/// What the upstream will receive as the body.
enum Payload {
    /// Read and checked by the gate.
    Buffered(Bytes),
    /// Passed through as it arrives (the route takes nothing from it).
    Streamed(Body),
}

/// What a request asks for, in the terms of a decision record and an approval.
struct Subject<'a> {
    method: &'a str,
    target: String,
    arguments: Value,
}

impl Subject<'_> {
    /// Base64url SHA-256 of the JCS form of `{method, target, arguments}` (RFC 8785): what an
    /// approval is bound to.
    fn hash(&self) -> Result<String, Refusal> {
        let value =
            json!({"method": self.method, "target": self.target, "arguments": self.arguments});
        mandate_core::jcs::sha256(&value)
            .map(|h| b64url(&h))
            .map_err(|e| Refusal::BadRequest(format!("the request cannot be hashed: {e}")))
    }
}

impl Ctx<'_> {
    /// A plain HTTP route.
    async fn http(&self, upstream: &Upstream, rel: &CanonicalPath, body: Body) -> Response {
        let protocol = Protocol::Http;
        let method = self.parts.method.as_str();
        let query = match Query::parse(self.parts.uri.query()) {
            Ok(q) => q,
            Err(e) => return self.refuse(Refusal::BadRequest(e.to_string()), &protocol),
        };
        let mut target = self.path.encoded();
        let canonical_query = query.encoded();
        if !canonical_query.is_empty() {
            target.push('?');
            target.push_str(&canonical_query);
        }
        let Some(needs_body) = upstream.needs_body(method, rel) else {
            return self.deny_unmapped(method, &target, &protocol).await;
        };
        let mut payload = Payload::Streamed(body);
        let mut json_body = None;
        if needs_body {
            let bytes = match self.read_body(payload).await {
                Ok(b) => b,
                Err(r) => return self.refuse(r, &protocol),
            };
            if !bytes.is_empty() {
                if !is_json(&self.parts.headers) {
                    return self.refuse(
                        Refusal::BadRequest("this route takes a JSON body".into()),
                        &protocol,
                    );
                }
                match mandate_core::json::parse_strict(&bytes, mcp::MAX_JSON_DEPTH) {
                    Ok(v) => json_body = Some(v),
                    Err(e) => return self.refuse(Refusal::BadRequest(e.to_string()), &protocol),
                }
            }
            payload = Payload::Buffered(bytes);
        }
        let mapped = match upstream.map_http(method, rel, &query, json_body.as_ref()) {
            Some(Ok(m)) => m,
            Some(Err(e)) => return self.refuse(Refusal::BadRequest(e.to_string()), &protocol),
            None => return self.deny_unmapped(method, &target, &protocol).await,
        };
        let mut subject = Subject {
            method,
            target: target.clone(),
            arguments: json_body.clone().unwrap_or(Value::Null),
        };
        let decision = self.authorize(&mapped).await;
        // An approval binds the exact request: read the body now if it was not read yet.
        if matches!(
            decision,
            Decision::Allow {
                approval_required: true,
                ..
            }
        ) {
            if let Payload::Streamed(_) = payload {
                let bytes = match self.read_body(payload).await {
                    Ok(b) => b,
                    Err(r) => return self.refuse(r, &protocol),
                };
                payload = Payload::Buffered(bytes);
            }
            if let (Payload::Buffered(bytes), None) = (&payload, &json_body)
                && !bytes.is_empty()
            {
                subject.arguments = json!({"body_sha256": hex(&sha256(bytes))});
            }
        }
        let receipt = match self.decide(&mapped, &subject, decision, &protocol).await {
            Ok(r) => r,
            Err(response) => return response,
        };
        let mut url = format!("{}{}", upstream.url, rel.encoded());
        if !canonical_query.is_empty() {
            url.push('?');
            url.push_str(&canonical_query);
        }
        match self.forward(&url, payload, &receipt).await {
            Ok(resp) => passthrough(resp),
            Err(r) => self.refuse(r, &protocol),
        }
    }

    /// An MCP endpoint.
    async fn mcp(&self, upstream: &Upstream, body: Body) -> Response {
        let mut protocol = Protocol::Mcp { id: Value::Null };
        match self.parts.method {
            // The server-to-client stream and session termination carry no tool call.
            Method::GET | Method::DELETE => {
                return match self
                    .forward(&upstream.url, Payload::Streamed(body), "")
                    .await
                {
                    Ok(resp) => passthrough(resp),
                    Err(r) => self.refuse(r, &protocol),
                };
            }
            Method::POST => {}
            _ => return self.refuse(Refusal::MethodNotAllowed, &protocol),
        }
        if !is_json(&self.parts.headers) {
            return self.refuse(
                Refusal::BadRequest("an MCP message must be sent as `application/json`".into()),
                &protocol,
            );
        }
        let bytes = match self.read_body(Payload::Streamed(body)).await {
            Ok(b) => b,
            Err(r) => return self.refuse(r, &protocol),
        };
        let message = match Message::parse(&bytes) {
            Ok(m) => m,
            Err(r) => return self.refuse(r, &protocol),
        };
        protocol = Protocol::Mcp { id: message.id() };
        if let Err(r) = mcp::check_headers(&self.parts.headers, &message) {
            return self.refuse(r, &protocol);
        }
        let (method, params) = match &message {
            Message::Response => return self.relay(upstream, bytes, "", &protocol).await,
            Message::Notification { method } if method.starts_with("notifications/") => {
                return self.relay(upstream, bytes, "", &protocol).await;
            }
            Message::Notification { method } => {
                return self.deny_unmapped(method, "", &protocol).await;
            }
            Message::Request { method, params, .. } => (method.as_str(), params.as_ref()),
        };
        match method {
            "initialize" | "ping" => self.relay(upstream, bytes, "", &protocol).await,
            "tools/list" => self.tools_list(upstream, bytes, &protocol).await,
            "tools/call" => {
                let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
                let Some(name) = name else {
                    return self.refuse(
                        Refusal::BadRequest("`tools/call` needs `params.name`".into()),
                        &protocol,
                    );
                };
                let arguments = params.and_then(|p| p.get("arguments"));
                let Some(tool) = upstream.tool(name) else {
                    return self.deny_unmapped(method, name, &protocol).await;
                };
                let mapped = match tool.map(arguments) {
                    Ok(m) => m,
                    Err(e) => return self.refuse(Refusal::InvalidParams(e.to_string()), &protocol),
                };
                let subject = Subject {
                    method,
                    target: name.to_owned(),
                    arguments: arguments.cloned().unwrap_or(Value::Null),
                };
                let decision = self.authorize(&mapped).await;
                let receipt = match self.decide(&mapped, &subject, decision, &protocol).await {
                    Ok(r) => r,
                    Err(response) => return response,
                };
                self.relay(upstream, bytes, &receipt, &protocol).await
            }
            other => {
                let target = params
                    .and_then(|p| p.get("name").or_else(|| p.get("uri")))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.deny_unmapped(other, target, &protocol).await
            }
        }
    }

    /// Forwards a `tools/list` and removes the tools the caller may not call.
    async fn tools_list(&self, upstream: &Upstream, bytes: Bytes, protocol: &Protocol) -> Response {
        let resp = match self
            .forward(&upstream.url, Payload::Buffered(bytes), "")
            .await
        {
            Ok(r) => r,
            Err(r) => return self.refuse(r, protocol),
        };
        if !resp.status().is_success() {
            return passthrough(resp);
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let cannot_filter = |why: &str| {
            tracing::warn!(
                reason = why,
                "cannot filter a tools/list answer; refusing it"
            );
            Refusal::BadGateway("the tool list cannot be filtered".into())
        };
        let body = match read_limited(resp, mcp::MAX_LIST_BYTES).await {
            Ok(b) => b,
            Err(why) => return self.refuse(cannot_filter(&why), protocol),
        };
        let filtered = if content_type.starts_with("application/json") {
            let Ok(mut message) = serde_json::from_slice::<Value>(&body) else {
                return self.refuse(cannot_filter("not JSON"), protocol);
            };
            let keep = self.callable(upstream, &mcp::listed_tools(&message));
            mcp::retain_tools(&mut message, &|n| keep.iter().any(|k| k == n));
            message.to_string().into_bytes()
        } else if content_type.starts_with("text/event-stream") {
            let Ok(text) = std::str::from_utf8(&body) else {
                return self.refuse(cannot_filter("not UTF-8"), protocol);
            };
            let mut stream = EventStream::parse(text);
            for (index, mut message) in stream.messages() {
                let keep = self.callable(upstream, &mcp::listed_tools(&message));
                mcp::retain_tools(&mut message, &|n| keep.iter().any(|k| k == n));
                stream.replace(index, &message);
            }
            stream.to_text().into_bytes()
        } else {
            return self.refuse(cannot_filter("unexpected content type"), protocol);
        };
        let mut response = Response::new(Body::from(filtered));
        *response.status_mut() = status;
        copy_response_headers(&headers, response.headers_mut());
        response.headers_mut().remove(header::CONTENT_LENGTH);
        response
    }

    /// The listed tools that are mapped and that the caller's scope lets it call (see
    /// `ToolRoute::listable`).
    fn callable(&self, upstream: &Upstream, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter(|name| {
                upstream.tool(name).is_some_and(|tool| {
                    tool.listable(
                        self.caller.scope(),
                        self.caller.prohibitions(),
                        self.gate.location.as_ref(),
                    )
                })
            })
            .cloned()
            .collect()
    }

    async fn authorize(&self, mapped: &Mapped) -> Decision {
        let op = Operation {
            action: mapped.action.clone(),
            resource: mapped.resource.clone(),
            inputs: mapped.inputs.clone(),
        };
        self.gate.verifier.authorize(self.caller, &op).await
    }

    /// Turns a decision into either a durable allow record (its id) or a refusal response
    /// (after a durable deny record). Runs the approval round trip when one is required.
    async fn decide(
        &self,
        mapped: &Mapped,
        subject: &Subject<'_>,
        decision: Decision,
        protocol: &Protocol,
    ) -> Result<String, Response> {
        let request_hash = subject.hash().map_err(|r| self.refuse(r, protocol))?;
        let record = |decision: &str, reason: &str| DecisionRecord {
            id: self.gate.new_record_id(),
            decision: decision.to_owned(),
            reason: reason.to_owned(),
            agent: self.caller.agent().to_owned(),
            sub: self.caller.human().to_owned(),
            delegation: self.caller.delegation().to_owned(),
            action: Some(mapped.action.clone()),
            resource: Some(mapped.resource.clone()),
            method: subject.method.to_owned(),
            target: record_target(&subject.target),
            request_hash: request_hash.clone(),
            at: self.gate.clock.now_ms(),
        };
        let (reason, approval_required) = match decision {
            Decision::Allow {
                approval_required, ..
            } => ("granted", approval_required),
            Decision::Deny(denial) => {
                let r = record("deny", denial.code.as_str());
                let id = self.spool_denial(&r).await;
                return Err(self.refuse(denial_refusal(&denial, id), protocol));
            }
        };
        let mut reason = reason.to_owned();
        if approval_required {
            let summary = summary(subject);
            let check = ApprovalRequest {
                request_hash: &request_hash,
                delegation: self.caller.delegation(),
                agent: self.caller.agent(),
                action: &mapped.action,
                resource: &mapped.resource,
                summary: &summary,
            };
            let answer = match self.gate.authority.check_approval(&check).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "approval check failed; refusing");
                    return Err(self.refuse(
                        Refusal::Unavailable("the approval service is unavailable".into()),
                        protocol,
                    ));
                }
            };
            let (code, approval_id, description) = match answer {
                Approval::Approved(id) => {
                    reason = "approved".to_owned();
                    (None, id, String::new())
                }
                Approval::Pending(id) => (
                    Some("approval_pending"),
                    id,
                    "this action needs a human's approval; retry once it is approved".to_owned(),
                ),
                Approval::Denied(id) => (
                    Some("approval_denied"),
                    id,
                    "a human denied this action".to_owned(),
                ),
            };
            if let Some(code) = code {
                let r = record("deny", code);
                let receipt = self.spool_denial(&r).await;
                return Err(self.refuse(
                    Refusal::Forbidden(Forbidden {
                        reason: code.to_owned(),
                        description,
                        status: StatusCode::FORBIDDEN,
                        approval_id: Some(approval_id),
                        receipt,
                    }),
                    protocol,
                ));
            }
        }
        let r = record("allow", &reason);
        match self.gate.spool.append(&r).await {
            Ok(()) => Ok(r.id),
            Err(e) => {
                tracing::error!(error = %e, "refusing a request whose decision cannot be recorded");
                Err(self.refuse(
                    Refusal::Unavailable("the decision cannot be recorded".into()),
                    protocol,
                ))
            }
        }
    }

    /// Denies a request that maps to no route or tool; the denial is recorded.
    async fn deny_unmapped(&self, method: &str, target: &str, protocol: &Protocol) -> Response {
        // The ledger keeps method names of 1 to 32 letters, digits, `/`, `_` and `-`; anything
        // else a client invented is recorded as `other`.
        let plain = |c: char| c.is_ascii_alphanumeric() || "/_-".contains(c);
        let method = if !method.is_empty() && method.len() <= 32 && method.chars().all(plain) {
            method
        } else {
            "other"
        };
        let subject = Subject {
            method,
            target: target.to_owned(),
            arguments: Value::Null,
        };
        let request_hash = subject.hash().unwrap_or_default();
        let r = DecisionRecord {
            id: self.gate.new_record_id(),
            decision: "deny".into(),
            reason: "unmapped".into(),
            agent: self.caller.agent().to_owned(),
            sub: self.caller.human().to_owned(),
            delegation: self.caller.delegation().to_owned(),
            action: None,
            resource: None,
            method: method.to_owned(),
            target: record_target(target),
            request_hash,
            at: self.gate.clock.now_ms(),
        };
        let receipt = self.spool_denial(&r).await;
        self.refuse(
            Refusal::Forbidden(Forbidden {
                reason: "unmapped".into(),
                description: "this request is not mapped to any action of the gate".into(),
                status: StatusCode::FORBIDDEN,
                approval_id: None,
                receipt,
            }),
            protocol,
        )
    }

    /// Records a denial; the request is refused whether or not that succeeds.
    async fn spool_denial(&self, record: &DecisionRecord) -> Option<String> {
        match self.gate.spool.append(record).await {
            Ok(()) => Some(record.id.clone()),
            Err(e) => {
                tracing::error!(error = %e, "a denial could not be recorded");
                None
            }
        }
    }

    /// Forwards an MCP message.
    async fn relay(
        &self,
        upstream: &Upstream,
        bytes: Bytes,
        receipt: &str,
        protocol: &Protocol,
    ) -> Response {
        match self
            .forward(&upstream.url, Payload::Buffered(bytes), receipt)
            .await
        {
            Ok(resp) => passthrough(resp),
            Err(r) => self.refuse(r, protocol),
        }
    }

    /// Sends the request upstream without the caller's credentials and with the identity
    /// headers.
    async fn forward(
        &self,
        url: &str,
        payload: Payload,
        receipt: &str,
    ) -> Result<reqwest::Response, Refusal> {
        let mut headers = reqwest::header::HeaderMap::new();
        let connection_listed: Vec<String> = self
            .parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        for (name, value) in &self.parts.headers {
            let n = name.as_str();
            if STRIPPED.contains(&n)
                || n.starts_with("x-mandate-")
                || connection_listed.iter().any(|c| c == n)
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        let identity = [
            ("x-mandate-agent", self.caller.agent()),
            ("x-mandate-on-behalf-of", self.caller.human()),
            ("x-mandate-delegation", self.caller.delegation()),
            ("x-mandate-receipt", receipt),
        ];
        for (name, value) in identity {
            if value.is_empty() {
                continue;
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| Refusal::Unavailable("an identity header cannot be built".into()))?;
            headers.insert(HeaderName::from_static(name), value);
        }
        let body = match payload {
            // No body at all (a GET, most DELETEs): none is sent, so no framing is invented.
            Payload::Buffered(b) if b.is_empty() && self.parts.method != Method::POST => None,
            Payload::Streamed(b) if http_body::Body::is_end_stream(&b) => None,
            Payload::Buffered(b) => Some(reqwest::Body::from(b)),
            Payload::Streamed(b) => {
                if let Some(len) = self.parts.headers.get(header::CONTENT_LENGTH) {
                    headers.insert(header::CONTENT_LENGTH, len.clone());
                }
                Some(reqwest::Body::wrap(SyncBody(
                    sync_wrapper::SyncWrapper::new(b),
                )))
            }
        };
        let mut request = self
            .gate
            .upstream_http
            .request(self.parts.method.clone(), url)
            .headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        request.send().await.map_err(|e| {
            tracing::warn!(error = %e, "upstream request failed");
            Refusal::BadGateway("the upstream is unavailable".into())
        })
    }

    /// Reads the whole body, at most the configured size.
    async fn read_body(&self, payload: Payload) -> Result<Bytes, Refusal> {
        let body = match payload {
            Payload::Buffered(b) => return Ok(b),
            Payload::Streamed(b) => b,
        };
        let limit = self.gate.max_body;
        if let Some(len) = self
            .parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            && len > limit
        {
            return Err(Refusal::TooLarge);
        }
        match http_body_util::Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::TooLarge),
            Err(_) => Err(Refusal::BadRequest(
                "the request body could not be read".into(),
            )),
        }
    }

    fn refuse(&self, refusal: Refusal, protocol: &Protocol) -> Response {
        refusal.render(protocol, self.metadata_url)
    }
}

/// The refusal for a verifier denial; `receipt` is its spooled record.
fn denial_refusal(denial: &Denial, receipt: Option<String>) -> Refusal {
    match denial.code.http_status() {
        401 => Refusal::Unauthenticated {
            error: Some(denial.code.oauth_error()),
            description: denial.reason.clone(),
        },
        503 => Refusal::Unavailable(denial.reason.clone()),
        status => Refusal::Forbidden(Forbidden {
            reason: denial.code.as_str().to_owned(),
            description: denial.reason.clone(),
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
            approval_id: None,
            receipt,
        }),
    }
}

/// The upstream's answer, streamed back (SSE included) without hop-by-hop headers.
fn passthrough(resp: reqwest::Response) -> Response {
    let status = resp.status();
    let headers = resp.headers().clone();
    let http: axum::http::Response<reqwest::Body> = resp.into();
    let mut response = Response::new(Body::new(http.into_body()));
    *response.status_mut() = status;
    copy_response_headers(&headers, response.headers_mut());
    response
}

fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !STRIPPED_RESPONSE.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Bytes, String> {
    let http: axum::http::Response<reqwest::Body> = resp.into();
    let read = http_body_util::Limited::new(http.into_body(), limit).collect();
    match tokio::time::timeout(std::time::Duration::from_secs(30), read).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// The target as recorded: at most 2048 characters (the ledger's bound), `None` when empty.
/// The request hash binds the full target.
fn record_target(target: &str) -> Option<String> {
    (!target.is_empty()).then(|| target.chars().take(2048).collect())
}

/// A short human-readable summary of the request for the approver.
fn summary(subject: &Subject<'_>) -> String {
    let mut text = format!("{} {}", subject.method, subject.target);
    if !subject.arguments.is_null() {
        text.push(' ');
        text.push_str(&subject.arguments.to_string());
    }
    if text.len() > 500 {
        let mut end = 497;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// A new record id: `gdr_` and 26 base32 characters of 6 bytes of unix milliseconds and 10
/// random bytes (the layout of `mandate_core::id`). Should the system's randomness fail, a
/// process-wide counter keeps ids unique.
pub(crate) fn record_id(now_ms: i64) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let ms = u64::try_from(now_ms).unwrap_or(0).to_be_bytes();
    let mut random = [0u8; 10];
    if getrandom::fill(&mut random).is_err() {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        random[..8].copy_from_slice(&n.to_be_bytes());
    }
    let mut raw = [0u8; 16];
    raw[..6].copy_from_slice(&ms[2..]);
    raw[6..].copy_from_slice(&random);
    format!("gdr_{}", base32_128(&raw))
}

/// An axum body made `Sync` for reqwest (it is only ever polled through `&mut`).
struct SyncBody(sync_wrapper::SyncWrapper<Body>);

impl http_body::Body for SyncBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(self.get_mut().0.get_mut()).poll_frame(cx)
    }
}
