//! Token Status Lists (draft-ietf-oauth-status-list-17): the status claim, effective status,
//! and `GET /statuslists/{n}`.
use super::*;

/// Entries per status list.
pub const STATUS_LIST_SIZE: u64 = 4096;

/// draft-ietf-oauth-status-list-17 §6.1: `"status": {"status_list": {"idx", "uri"}}`.
pub(super) fn status_claim(state: &AppState, idx: u64) -> Value {
    json!({"status_list": {
        "idx": idx,
        "uri": format!("{}/statuslists/{}", state.issuer, idx / STATUS_LIST_SIZE),
    }})
}

/// The status a token has now (§7.1): VALID, SUSPENDED (an agent of its chain is suspended) or
/// INVALID (revoked, expired, or any link of its chain revoked, expired or its agent revoked).
pub fn effective_status(state: &AppState, view: &TokenView) -> Result<u8, TokenError> {
    use mandate_core::status_list::{INVALID, SUSPENDED, VALID};
    let now = state.now();
    if view.token.status != TokenStatus::Active
        || view.token.expires_at <= now
        || view.chain.is_empty()
    {
        return Ok(INVALID);
    }
    if view.delegate_statuses.len() != view.chain.len() {
        return Ok(INVALID);
    }
    let mut status = VALID;
    for (d, agent) in view.chain.iter().zip(&view.delegate_statuses) {
        if d.status != DelegationStatus::Active || d.expires_at <= now {
            return Ok(INVALID);
        }
        match agent {
            AgentStatus::Active => {}
            AgentStatus::Suspended => status = SUSPENDED,
            AgentStatus::Revoked => return Ok(INVALID),
        }
    }
    Ok(status)
}

/// `GET /statuslists/{n}` (draft-ietf-oauth-status-list-17 §5.1): a `statuslist+jwt` with 2-bit
/// statuses, computed at request time so a revocation shows in the very next fetch. `ttl`
/// tells verifiers how long they may cache it.
pub async fn status_list(
    State(state): State<AppState>,
    axum::extract::Path(n): axum::extract::Path<String>,
) -> Response {
    let result: Result<Response, TokenError> = async {
        let n: u64 = n
            .parse()
            .map_err(|_| TokenError::new(Code::InvalidRequest, "unknown status list"))?;
        let lo = n
            .checked_mul(STATUS_LIST_SIZE)
            .ok_or_else(|| TokenError::new(Code::InvalidRequest, "unknown status list"))?;
        if lo >= state.status_indexes.recorded_end().await? {
            return Ok(crate::error::ApiError::not_found("status list").into_response());
        }
        let mut list = mandate_core::status_list::StatusList::new(2, STATUS_LIST_SIZE as usize)
            .map_err(|_| TokenError::new(Code::ServerError, "status list"))?;
        for view in state
            .store
            .tokens_in_status_range(lo, lo + STATUS_LIST_SIZE)
            .await?
        {
            if let Some(idx) = view.token.status_idx {
                let st = effective_status(&state, &view)?;
                list.set(idx - lo, st)
                    .map_err(|_| TokenError::new(Code::ServerError, "status list"))?;
            }
        }
        let now_secs = state.now() / 1000;
        let ttl = state.policy.status_list_ttl_secs;
        let claims = json!({
            "sub": format!("{}/statuslists/{n}", state.issuer),
            "iat": now_secs,
            "exp": now_secs + 24 * 3600,
            "ttl": ttl,
            "status_list": {"bits": 2, "lst": list.encode()},
        });
        let key = state.keys.current();
        let jwt = jose::sign(
            JwtKind::StatusList,
            Some(&key.kid()),
            state.policy.alg,
            &claims,
            key.signing_key(),
        );
        let mut resp = jwt.into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/statuslist+jwt"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("max-age={ttl}")) {
            h.insert(header::CACHE_CONTROL, v);
        }
        Ok(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
