//! Errors of the gate: start-up failures, and the one mapping from refusals to HTTP and
//! JSON-RPC responses (STYLE §4: one mapping per protocol, in one file).
//!
//! | refusal | HTTP route | MCP endpoint |
//! |---|---|---|
//! | malformed request, path trick | 400 `invalid_request` | 400, JSON-RPC `-32600` (`-32700` unparsable) |
//! | `Mcp-Method`/`Mcp-Name` disagree with the body | — | 400, JSON-RPC `-32001` (header mismatch) |
//! | tool arguments that cannot be mapped (missing input, value that is not one segment) | 400 `invalid_request` | 200, JSON-RPC `-32602` |
//! | bad or missing token | 401 `WWW-Authenticate: DPoP error="invalid_token"` | the same 401, JSON-RPC `-32000` body |
//! | bad DPoP proof | 401 `… error="invalid_dpop_proof"` | the same 401, JSON-RPC `-32000` body |
//! | not allowed, unmapped, approval pending or denied | 403 `… error="insufficient_scope"` | 200, JSON-RPC `-32003` |
//! | rate exhausted | 429 `… error="insufficient_scope"` | 200, JSON-RPC `-32003` |
//! | spool, authority or revocation data unavailable | 503 `temporarily_unavailable` + `Retry-After` | the same 503, JSON-RPC `-32603` body |
//! | body too large | 413 `invalid_request` | 413, JSON-RPC `-32600` |
//! | upstream unreachable, `tools/list` answer unreadable | 502 `temporarily_unavailable` | 502, JSON-RPC `-32603` |
//!
//! Authorization refusals of MCP requests are JSON-RPC errors in a 200 response: the request
//! reached a JSON-RPC peer and was answered, and MCP clients hand a JSON-RPC error to the caller
//! as is, while they replace the body of any 4xx by a generic transport error. `data.error` is
//! always the OAuth error code, `data.reason` the precise reason (`max_amount`, `prohibited`,
//! `approval_pending`, …).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Why a gate could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The configuration is not usable.
    #[error("invalid gate configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on `{0}`: {1}")]
    Bind(String, std::io::Error),
    /// The spool directory could not be opened.
    #[error("cannot open the spool: {0}")]
    Spool(String),
    /// The verifier could not start (authority unreachable, bad metadata).
    #[error("cannot start the verifier: {0}")]
    Verifier(String),
}

/// The algorithms the gate accepts for DPoP proofs (RFC 9864 names both).
pub(crate) const DPOP_ALGS: [&str; 2] = ["EdDSA", "Ed25519"];

/// A refusal, before it is rendered for its protocol.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// Malformed request.
    BadRequest(String),
    /// MCP: the body is not JSON.
    ParseError(String),
    /// MCP: the tool's arguments cannot be mapped (a JSON-RPC answer: HTTP 200, `-32602`).
    InvalidParams(String),
    /// MCP: a standard header disagrees with the body (SEP-2243).
    HeaderMismatch(String),
    /// Authentication failed (`error` is `invalid_token` or `invalid_dpop_proof`); `None`
    /// when no credentials were sent at all (RFC 6750 §3.1: no error code then).
    Unauthenticated {
        error: Option<&'static str>,
        description: String,
    },
    /// Not allowed.
    Forbidden(Forbidden),
    /// A dependency is unavailable: fail closed.
    Unavailable(String),
    /// A method the endpoint does not serve.
    MethodNotAllowed,
    /// The body is larger than the gate reads.
    TooLarge,
    /// The upstream could not be reached, or its answer cannot be checked.
    BadGateway(String),
}

/// The details of an authorization refusal.
#[derive(Debug, Clone)]
pub(crate) struct Forbidden {
    /// The precise reason code (`insufficient_scope`, `max_amount`, `approval_pending`, …).
    pub(crate) reason: String,
    /// Words for the caller.
    pub(crate) description: String,
    /// 403, or 429 for an exhausted rate.
    pub(crate) status: StatusCode,
    /// The approval to wait for, when one was asked.
    pub(crate) approval_id: Option<String>,
    /// The spooled decision record.
    pub(crate) receipt: Option<String>,
}

/// Where the refusal is rendered.
#[derive(Debug, Clone)]
pub(crate) enum Protocol {
    /// A plain HTTP route.
    Http,
    /// An MCP endpoint; `id` is the JSON-RPC request id when known.
    Mcp { id: Value },
}

impl Refusal {
    /// Renders the refusal. `metadata` is the RFC 9728 metadata URL for `WWW-Authenticate`.
    pub(crate) fn render(&self, protocol: &Protocol, metadata: &str) -> Response {
        let (status, oauth_error, description, rpc_code, mut data) = self.parts();
        let www = self.www_authenticate(metadata);
        let mut response = match protocol {
            Protocol::Http => {
                let mut body = json!({"error": oauth_error, "error_description": description});
                if let Refusal::Forbidden(f) = self {
                    body["reason"] = json!(f.reason);
                    if let Some(a) = &f.approval_id {
                        body["approval_id"] = json!(a);
                    }
                    if let Some(r) = &f.receipt {
                        body["receipt"] = json!(r);
                    }
                }
                (status, axum::Json(body)).into_response()
            }
            Protocol::Mcp { id } => {
                data["error"] = json!(oauth_error);
                let message = match self {
                    Refusal::Forbidden(f) => match &f.approval_id {
                        Some(a) => format!("{}: {} (approval `{a}`)", f.reason, f.description),
                        None => format!("{}: {}", f.reason, f.description),
                    },
                    _ => description.clone(),
                };
                let body = json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {"code": rpc_code, "message": message, "data": data},
                });
                // Authorization refusals are answers of the JSON-RPC peer (see the module docs).
                let status = match self {
                    Refusal::Forbidden(_) | Refusal::InvalidParams(_) => StatusCode::OK,
                    _ => status,
                };
                (status, axum::Json(body)).into_response()
            }
        };
        let headers = response.headers_mut();
        if let Some(www) = www
            && let Ok(v) = HeaderValue::from_str(&www)
        {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        if matches!(self, Refusal::Unavailable(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// (status, OAuth error, description, JSON-RPC code, JSON-RPC data).
    fn parts(&self) -> (StatusCode, &'static str, String, i64, Value) {
        match self {
            Refusal::BadRequest(d) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                d.clone(),
                -32600,
                json!({}),
            ),
            Refusal::InvalidParams(d) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                d.clone(),
                -32602,
                json!({}),
            ),
            Refusal::ParseError(d) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                d.clone(),
                -32700,
                json!({}),
            ),
            Refusal::HeaderMismatch(d) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                d.clone(),
                -32001,
                json!({}),
            ),
            Refusal::Unauthenticated { error, description } => (
                StatusCode::UNAUTHORIZED,
                error.unwrap_or("invalid_token"),
                description.clone(),
                -32000,
                json!({}),
            ),
            Refusal::Forbidden(f) => {
                let mut data = json!({"reason": f.reason});
                if let Some(a) = &f.approval_id {
                    data["approval_id"] = json!(a);
                }
                if let Some(r) = &f.receipt {
                    data["receipt"] = json!(r);
                }
                (
                    f.status,
                    "insufficient_scope",
                    f.description.clone(),
                    -32003,
                    data,
                )
            }
            Refusal::Unavailable(d) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                d.clone(),
                -32603,
                json!({}),
            ),
            Refusal::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large".to_owned(),
                -32600,
                json!({}),
            ),
            Refusal::BadGateway(d) => (
                StatusCode::BAD_GATEWAY,
                "temporarily_unavailable",
                d.clone(),
                -32603,
                json!({}),
            ),
            Refusal::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "method not allowed on this endpoint".to_owned(),
                -32600,
                json!({}),
            ),
        }
    }

    /// RFC 9449 §7.1 / RFC 6750 §3 challenge, with RFC 9728 §5.1 `resource_metadata`.
    fn www_authenticate(&self, metadata: &str) -> Option<String> {
        let algs = DPOP_ALGS.join(" ");
        match self {
            Refusal::Unauthenticated { error, description } => Some(match error {
                // RFC 6750 §3.1: "If the request lacks any authentication information … the
                // resource server SHOULD NOT include an error code".
                None => format!(r#"DPoP algs="{algs}", resource_metadata="{metadata}""#),
                Some(e) => format!(
                    r#"DPoP error="{e}", error_description="{}", algs="{algs}", resource_metadata="{metadata}""#,
                    quotable(description)
                ),
            }),
            Refusal::Forbidden(f) => Some(format!(
                r#"DPoP error="insufficient_scope", error_description="{}", algs="{algs}", resource_metadata="{metadata}""#,
                quotable(&f.description)
            )),
            _ => None,
        }
    }
}

/// RFC 6750 §3: `error_description` is limited to %x20-21 / %x23-5B / %x5D-7E.
fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if (' '..='~').contains(&c) => c,
            _ => '?',
        })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn challenges() {
        let r = Refusal::Unauthenticated {
            error: Some("invalid_dpop_proof"),
            description: "bad \"htu\"".into(),
        };
        let resp = r.render(
            &Protocol::Http,
            "http://g/.well-known/oauth-protected-resource",
        );
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            r#"DPoP error="invalid_dpop_proof", error_description="bad 'htu'", algs="EdDSA Ed25519", resource_metadata="http://g/.well-known/oauth-protected-resource""#
        );
        let r = Refusal::Unauthenticated {
            error: None,
            description: "no token".into(),
        };
        let resp = r.render(&Protocol::Mcp { id: json!(1) }, "m");
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            r#"DPoP algs="EdDSA Ed25519", resource_metadata="m""#
        );
        let f = Refusal::Forbidden(Forbidden {
            reason: "approval_pending".into(),
            description: "a human must approve".into(),
            status: StatusCode::FORBIDDEN,
            approval_id: Some("apr_1".into()),
            receipt: None,
        });
        assert_eq!(f.render(&Protocol::Http, "m").status(), 403);
        assert_eq!(f.render(&Protocol::Mcp { id: json!(1) }, "m").status(), 200);
        let u = Refusal::Unavailable("spool".into()).render(&Protocol::Http, "m");
        assert_eq!(u.status(), 503);
        assert_eq!(u.headers()[header::RETRY_AFTER], "1");
    }
}
