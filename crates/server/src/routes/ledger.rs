//! `GET /v1/receipts`: the tenant's chain, paged, exactly as stored.

use axum::Json;
use axum::extract::State;
use mandate_core::encoding::hex;
use serde::Deserialize;
use serde_json::{Value, json};

use super::StrictQuery;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReceiptQuery {
    /// Items with `seq > cursor`.
    cursor: Option<u64>,
    /// 1..=1000, default 100.
    limit: Option<u32>,
}

/// `GET /v1/receipts?cursor=&limit=`.
///
/// Each item carries the stored hash and the stored receipt, so a verifier recomputes the hash
/// itself. A stored body that is not JSON is returned as a string, so verification names it.
pub async fn list_receipts(
    State(state): State<AppState>,
    caller: Caller,
    StrictQuery(q): StrictQuery<ReceiptQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 1000"));
    }
    let after = q.cursor.unwrap_or(0);
    let mut items = state
        .store
        .receipts(&caller.0.tenant.id, after, limit + 1)
        .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(|r| r.seq)
    } else {
        None
    };
    let items: Vec<Value> = items
        .into_iter()
        .map(|r| {
            let receipt = serde_json::from_str::<Value>(&r.body).unwrap_or(Value::String(r.body));
            json!({"seq": r.seq, "hash": hex(&r.hash), "receipt": receipt})
        })
        .collect();
    Ok(Json(json!({"items": items, "next": next})))
}
