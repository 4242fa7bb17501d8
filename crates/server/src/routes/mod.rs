//! HTTP routes: the admin API (`/v1/…`), the ledger, and public metadata.

pub mod agents;
pub mod approvals;
pub mod events;
pub mod gates;
pub mod humans;
pub mod ledger;
pub mod mandates;
pub mod oauth;
pub mod proofs;
pub mod public;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use mandate_core::receipt::{Actor, Event, EventKind, Outcome};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::extract::Caller;

/// Query parameters parsed strictly into `T` (unknown parameters are refused).
pub struct StrictQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for StrictQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
    }
}

/// `?limit=&cursor=`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1..=1000, default 100.
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The store page (one extra item is fetched to know whether another page follows).
    pub fn page(&self) -> Result<(mandate_store::Page, usize), ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::bad_request("`limit` must be between 1 and 1000"));
        }
        Ok((
            mandate_store::Page {
                after: self.cursor.clone(),
                limit: limit + 1,
            },
            limit as usize,
        ))
    }
}

/// `{"items": [...], "next": …}` from `limit + 1` fetched items.
pub fn list<T>(
    mut items: Vec<T>,
    limit: usize,
    id: impl Fn(&T) -> String,
    view: impl Fn(&T) -> serde_json::Value,
) -> serde_json::Value {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&id)
    } else {
        None
    };
    serde_json::json!({"items": items.iter().map(view).collect::<Vec<_>>(), "next": next})
}

/// A receipt template for a change made by an authenticated human.
pub fn human_event(
    caller: &Caller,
    kind: EventKind,
    action: &str,
    resource: String,
    request_hash: Option<String>,
    reasons: Vec<String>,
) -> Event {
    Event {
        kind,
        actor: Actor {
            agent: None,
            chain: vec![],
            human: Some(caller.0.human.id.to_string()),
        },
        on_behalf_of: None,
        delegation: None,
        token: None,
        action: Some(action.to_owned()),
        resource: Some(resource),
        decision: Outcome::Allow,
        reasons,
        request_hash,
    }
}

/// An optional free-text reason (≤ 256 characters, no control characters).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why.
    pub reason: Option<String>,
}

impl ReasonBody {
    /// The reason as receipt reasons.
    pub fn reasons(&self) -> Result<Vec<String>, ApiError> {
        match &self.reason {
            None => Ok(vec![]),
            Some(r) => Ok(vec![text(r, "reason", 256)?]),
        }
    }
}

/// 404 for the object `kind` named `raw` (quoted, cut to 64 characters). Malformed ids, missing
/// objects and other tenants' objects all answer this, so none can be told apart.
pub fn not_found_id(kind: &str, raw: &str) -> ApiError {
    ApiError::not_found(format!(
        "{kind} `{}`",
        raw.chars().take(64).collect::<String>()
    ))
}

/// Validates display text: 1..=`max` characters, no control characters.
pub fn text(value: &str, field: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    let n = value.chars().count();
    if n == 0 || n > max {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be 1 to {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{field}` must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}
