//! The one mapping from errors to HTTP responses: RFC 9457 problem details for the admin API.
//!
//! Nothing else in the server builds an error response. Conversions have no side effects; the
//! error is logged once by the trace layer (status) and here only for server-side faults, never
//! with secrets.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_store::StoreError;
use serde_json::json;

/// An admin API error, rendered as `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    kind: ProblemKind,
    detail: String,
}

/// The problem types of the admin API (`urn:mandate:problem:<slug>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// 400: malformed input.
    BadRequest,
    /// 401: no or bad credentials.
    Unauthorized,
    /// 403: authenticated but not allowed.
    Forbidden,
    /// 404: no such object in this tenant.
    NotFound,
    /// 405: the route exists with other methods.
    MethodNotAllowed,
    /// 409: conflicts with current state.
    Conflict,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 415: body is not JSON.
    UnsupportedMediaType,
    /// 422: well-formed but semantically invalid (bad key, unknown action…).
    Unprocessable,
    /// 503: storage or ledger unavailable; nothing changed.
    Unavailable,
    /// 500: a fault on our side.
    Internal,
}

impl ProblemKind {
    /// Every kind, for exhaustive tests.
    pub const ALL: [ProblemKind; 11] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::Unprocessable,
        Self::Unavailable,
        Self::Internal,
    ];

    /// HTTP status, slug and title.
    pub fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::Conflict => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::Unprocessable => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "Unprocessable request",
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl ApiError {
    /// An error of `kind` with a message for the caller.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::BadRequest, detail)
    }

    /// 404 for `what`.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ProblemKind::NotFound, format!("{what} not found"))
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Forbidden, detail)
    }

    /// 422.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Unprocessable, detail)
    }

    /// The kind.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Conflict(detail) => Self::new(ProblemKind::Conflict, detail),
            StoreError::Unavailable(detail) => Self::new(
                ProblemKind::Unavailable,
                format!("{detail}; nothing was changed, retry later"),
            ),
            other => {
                tracing::error!(error = %other, "store fault");
                Self::new(ProblemKind::Internal, "an internal error occurred")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.kind.parts();
        let body = json!({
            "type": format!("urn:mandate:problem:{slug}"),
            "title": title,
            "status": status.as_u16(),
            "detail": self.detail,
        });
        let mut resp = (status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self.kind {
            ProblemKind::Unauthorized => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"mandate\""),
                );
            }
            ProblemKind::Unavailable => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_kind_renders_a_problem_document() {
        for kind in ProblemKind::ALL {
            let (status, slug, _) = kind.parts();
            let resp = ApiError::new(kind, "x `y`").into_response();
            assert_eq!(resp.status(), status);
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
            assert_eq!(
                resp.headers().contains_key(header::WWW_AUTHENTICATE),
                kind == ProblemKind::Unauthorized
            );
            assert_eq!(
                resp.headers().contains_key(header::RETRY_AFTER),
                kind == ProblemKind::Unavailable
            );
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["type"], format!("urn:mandate:problem:{slug}"));
            assert_eq!(v["status"], status.as_u16());
            assert_eq!(v["detail"], "x `y`");
        }
    }
}

/// RFC 6749 §5.2 (+ RFC 8693, RFC 8707, RFC 9449 §5/§8) error codes of the token endpoint.
/// SECURITY.md rule for bad subject/actor tokens and expired or revoked delegations:
/// `invalid_grant` (RFC 6749), never `invalid_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenErrorCode {
    /// Malformed request.
    InvalidRequest,
    /// Client authentication failed (unknown client, wrong key, disabled client look alike).
    InvalidClient,
    /// Bad grant: delegation expired, revoked, of another agent; bad subject token.
    InvalidGrant,
    /// The client may not use this grant.
    UnauthorizedClient,
    /// Unknown grant type.
    UnsupportedGrantType,
    /// Wider than allowed (never clamped).
    InvalidScope,
    /// Bad `resource` (RFC 8707 §2).
    InvalidTarget,
    /// Bad DPoP proof (RFC 9449 §5).
    InvalidDpopProof,
    /// The server requires a DPoP nonce (RFC 9449 §8).
    UseDpopNonce,
    /// Storage or ledger unavailable; nothing was issued.
    TemporarilyUnavailable,
    /// Unexpected fault.
    ServerError,
}

impl TokenErrorCode {
    /// Every code, for exhaustive tests.
    pub const ALL: [TokenErrorCode; 11] = [
        Self::InvalidRequest,
        Self::InvalidClient,
        Self::InvalidGrant,
        Self::UnauthorizedClient,
        Self::UnsupportedGrantType,
        Self::InvalidScope,
        Self::InvalidTarget,
        Self::InvalidDpopProof,
        Self::UseDpopNonce,
        Self::TemporarilyUnavailable,
        Self::ServerError,
    ];

    /// The `error` string and HTTP status.
    pub fn parts(self) -> (&'static str, StatusCode) {
        match self {
            Self::InvalidRequest => ("invalid_request", StatusCode::BAD_REQUEST),
            Self::InvalidClient => ("invalid_client", StatusCode::UNAUTHORIZED),
            Self::InvalidGrant => ("invalid_grant", StatusCode::BAD_REQUEST),
            Self::UnauthorizedClient => ("unauthorized_client", StatusCode::BAD_REQUEST),
            Self::UnsupportedGrantType => ("unsupported_grant_type", StatusCode::BAD_REQUEST),
            Self::InvalidScope => ("invalid_scope", StatusCode::BAD_REQUEST),
            Self::InvalidTarget => ("invalid_target", StatusCode::BAD_REQUEST),
            Self::InvalidDpopProof => ("invalid_dpop_proof", StatusCode::BAD_REQUEST),
            Self::UseDpopNonce => ("use_dpop_nonce", StatusCode::BAD_REQUEST),
            Self::TemporarilyUnavailable => {
                ("temporarily_unavailable", StatusCode::SERVICE_UNAVAILABLE)
            }
            Self::ServerError => ("server_error", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

/// An error of the token, introspection or revocation endpoint (OAuth JSON error shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// The code.
    pub code: TokenErrorCode,
    /// A clear description (never secrets).
    pub description: String,
    /// The client tried HTTP authentication: `invalid_client` then carries `WWW-Authenticate`.
    pub used_authorization_header: bool,
}

impl TokenError {
    /// An error with a description.
    pub fn new(code: TokenErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            used_authorization_header: false,
        }
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::new(
                TokenErrorCode::TemporarilyUnavailable,
                "the authority cannot record this right now; nothing was issued, retry later",
            ),
            other => {
                tracing::error!(error = %other, "store fault at the token endpoint");
                Self::new(TokenErrorCode::ServerError, "an internal error occurred")
            }
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let (code, status) = self.code.parts();
        let body = json!({"error": code, "error_description": self.description});
        let mut resp = (status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        match self.code {
            // RFC 6749 §5.2: WWW-Authenticate is mandatory when the client used the
            // Authorization header.
            TokenErrorCode::InvalidClient if self.used_authorization_header => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"mandate\", error=\"invalid_client\""),
                );
            }
            TokenErrorCode::TemporarilyUnavailable => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}
