//! Unauthenticated metadata: health, RFC 8414 discovery, JWKS, OpenAPI.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::AppState;

/// The OpenAPI document of the admin API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /healthz`.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414 §2, §3).
///
/// Lists only what this server implements. Ed25519 signatures are accepted under both JOSE
/// names (RFC 9864: `EdDSA` and the fully-specified `Ed25519`).
pub async fn metadata(State(state): State<AppState>) -> Response {
    let issuer = state.issuer.as_ref();
    let body = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "grant_types_supported": [
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "client_credentials"
        ],
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": ["EdDSA", "Ed25519"],
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
        "revocation_endpoint_auth_signing_alg_values_supported": ["EdDSA", "Ed25519"],
        // RFC 8414 §2 makes this member REQUIRED; there is no authorization endpoint, so no
        // response type is supported.
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "Ed25519"],
        "dpop_signing_alg_values_supported": ["EdDSA", "Ed25519"],
        "authorization_details_types_supported": ["mandate"],
        "service_documentation": format!("{issuer}/v1/openapi.json"),
    });
    cacheable(body, 300)
}

/// `GET /jwks.json`: the server's public signing keys.
pub async fn jwks(State(state): State<AppState>) -> Response {
    cacheable(state.keys.jwks(state.now()), 60)
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Response {
    let mut resp = OPENAPI.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn cacheable(body: Value, max_age: u32) -> Response {
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    resp
}
