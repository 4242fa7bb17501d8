//! Request extractors that fail in our problem format: strict JSON bodies and API-key auth.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use mandate_store::{Principal, Role};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ProblemKind};
use crate::state::AppState;

/// Deepest accepted JSON nesting.
const MAX_DEPTH: usize = 32;

/// Largest accepted request body.
pub const MAX_BODY: usize = 1 << 20;

/// A JSON body parsed strictly: `Content-Type: application/json`, ≤ 1 MiB, no duplicate
/// members anywhere, no unknown fields (the target types deny them). Keeps the canonical
/// request hash for the ledger.
pub struct StrictJson<T> {
    /// The parsed body.
    pub value: T,
    /// Hex sha256 of the RFC 8785 form of the body.
    pub request_hash: Option<String>,
}

impl<S, T> FromRequest<S> for StrictJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ProblemKind::PayloadTooLarge,
                    format!("request body exceeds {MAX_BODY} bytes"),
                )
            } else {
                ApiError::bad_request("could not read the request body")
            }
        })?;
        // An empty body means "no options" (`T::default()`).
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self {
                value: T::default(),
                request_hash: None,
            });
        }
        let is_json = content_type.as_deref().is_some_and(|ct| {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        });
        if !is_json {
            return Err(ApiError::new(
                ProblemKind::UnsupportedMediaType,
                "send the body as `application/json`",
            ));
        }
        let value = mandate_core::json::parse_strict(&bytes, MAX_DEPTH)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let request_hash = mandate_core::jcs::sha256(&value)
            .ok()
            .map(|h| mandate_core::encoding::hex(&h));
        let value = serde_json::from_value(value)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
        Ok(Self {
            value,
            request_hash,
        })
    }
}

/// The authenticated caller of an admin route (`Authorization: Bearer <api key>`).
pub struct Caller(pub Principal);

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let unauthorized = || {
            ApiError::new(
                ProblemKind::Unauthorized,
                "send a valid API key as `Authorization: Bearer <key>`",
            )
        };
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let (scheme, key) = value.split_once(' ').ok_or_else(unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() || key.len() > 256 {
            return Err(unauthorized());
        }
        // Unknown, revoked and foreign keys look identical to the caller.
        match principal_for_key(&state, key.trim()).await? {
            Some(p) => Ok(Self(p)),
            None => Err(unauthorized()),
        }
    }
}

/// The principal an API key authenticates, if the key and its human are active. Only the
/// SHA-256 of a key is ever stored or compared.
pub async fn principal_for_key(
    state: &AppState,
    key: &str,
) -> Result<Option<Principal>, mandate_store::StoreError> {
    let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    state.store.principal_by_api_key(hash).await
}

impl Caller {
    /// Refuses read-only roles.
    pub fn require_writer(&self) -> Result<(), ApiError> {
        match self.0.human.role {
            Role::Owner | Role::Admin => Ok(()),
            Role::Auditor => Err(ApiError::forbidden("the `auditor` role is read-only")),
        }
    }
}
