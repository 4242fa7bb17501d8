//! `GET /v1/ledger/…`: the caller's tenant log as a transparency log — signed checkpoints,
//! inclusion and consistency proofs, and the note verifier key.
//!
//! Leaf `i` of a tenant's tree is receipt `seq = i + 1`; the leaf data is the 32-byte receipt
//! hash, so `leaf_hash = SHA-256(0x00 ‖ receipt hash)` (RFC 9162 §2.1.1). Hashes are lowercase
//! hex in JSON (the root inside a checkpoint note is base64, as C2SP tlog-checkpoint requires).
//!
//! The checkpoint and the verifier key are served as `text/plain` — what transparency-log
//! tooling reads — unless the request's `Accept` names `application/json`, which gets a JSON
//! object holding the same text plus its parsed fields.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mandate_store::StoredCheckpoint;
use serde::Deserialize;
use serde_json::{Value, json};

use super::StrictQuery;
use crate::checkpoints::{Ledger, ledger_error};
use crate::error::{ApiError, ProblemKind};
use crate::extract::Caller;

/// `?size=`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CheckpointQuery {
    /// A tree size at most the current one; default the current one.
    size: Option<u64>,
}

/// `?index=&size=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    /// Leaf index (`seq - 1`).
    index: u64,
    /// Tree size; default the current one.
    size: Option<u64>,
}

/// `?from=&to=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The older tree size.
    from: u64,
    /// The newer tree size; default the current one.
    to: Option<u64>,
}

fn ledger(ext: Option<Extension<Ledger>>) -> Result<Ledger, ApiError> {
    ext.map(|Extension(l)| l).ok_or_else(|| {
        ApiError::new(
            ProblemKind::Unavailable,
            "the ledger proofs are not running on this server",
        )
    })
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

fn text(body: String) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /v1/ledger/checkpoint?size=`: the signed checkpoint of the caller's tenant log — of the
/// whole log (integrated first, so it covers every receipt acknowledged before the request), or
/// of the log at `size` leaves, signed on demand.
pub async fn checkpoint(
    ext: Option<Extension<Ledger>>,
    caller: Caller,
    headers: HeaderMap,
    StrictQuery(q): StrictQuery<CheckpointQuery>,
) -> Result<Response, ApiError> {
    let ledger = ledger(ext)?;
    let tenant = &caller.0.tenant.id;
    let cp = match q.size {
        None => ledger.latest(tenant).await?,
        Some(size) => ledger.at(tenant, size).await?,
    };
    if wants_json(&headers) {
        return Ok(Json(checkpoint_json(&ledger.origin(tenant), &cp)).into_response());
    }
    Ok(text(cp.note))
}

fn checkpoint_json(origin: &str, cp: &StoredCheckpoint) -> Value {
    json!({
        "origin": origin,
        "size": cp.size,
        "root": cp.root.to_hex(),
        "note": cp.note,
        "kid": cp.kid,
        "signed_at": cp.signed_at,
    })
}

/// `GET /v1/ledger/proof/inclusion?index=&size=`: the RFC 9162 §2.1.3 inclusion proof of
/// receipt `index + 1` in the tree of `size` leaves.
pub async fn inclusion(
    ext: Option<Extension<Ledger>>,
    caller: Caller,
    StrictQuery(q): StrictQuery<InclusionQuery>,
) -> Result<Json<Value>, ApiError> {
    let ledger = ledger(ext)?;
    let tenant = &caller.0.tenant.id;
    let size = match q.size {
        Some(size) => {
            ledger.head_at_least(tenant, size).await?;
            size
        }
        None => ledger.integrate(tenant).await?.size,
    };
    let p = ledger
        .store()
        .inclusion_proof(tenant, q.index, size)
        .await
        .map_err(ledger_error)?;
    Ok(Json(json!({
        "index": p.index,
        "size": p.size,
        "seq": p.index + 1,
        "receipt_hash": mandate_core::encoding::hex(&p.receipt_hash),
        "leaf_hash": p.leaf_hash.to_hex(),
        "proof": p.proof.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
        "root": p.root.to_hex(),
    })))
}

/// `GET /v1/ledger/proof/consistency?from=&to=`: the RFC 9162 §2.1.4 consistency proof between
/// the trees of `from` and `to` leaves.
pub async fn consistency(
    ext: Option<Extension<Ledger>>,
    caller: Caller,
    StrictQuery(q): StrictQuery<ConsistencyQuery>,
) -> Result<Json<Value>, ApiError> {
    let ledger = ledger(ext)?;
    let tenant = &caller.0.tenant.id;
    let to = match q.to {
        Some(to) => {
            ledger.head_at_least(tenant, to).await?;
            to
        }
        None => ledger.integrate(tenant).await?.size,
    };
    let p = ledger
        .store()
        .consistency_proof(tenant, q.from, to)
        .await
        .map_err(ledger_error)?;
    Ok(Json(json!({
        "from": p.from,
        "to": p.to,
        "proof": p.proof.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
        "from_root": p.from_root.to_hex(),
        "to_root": p.to_root.to_hex(),
    })))
}

/// `GET /v1/ledger/verifier-key`: the note verifier key (`<origin>+<key id>+<base64 key>`)
/// that checks the caller's tenant checkpoints under the server's current key.
pub async fn verifier_key(
    ext: Option<Extension<Ledger>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ledger = ledger(ext)?;
    let tenant = &caller.0.tenant.id;
    let (verifier, kid) = ledger.verifier_key(tenant)?;
    let vkey = verifier.to_string();
    if wants_json(&headers) {
        return Ok(Json(json!({
            "verifier_key": vkey,
            "origin": ledger.origin(tenant),
            "kid": kid,
        }))
        .into_response());
    }
    Ok(text(format!("{vkey}\n")))
}
