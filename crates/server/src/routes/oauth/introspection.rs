//! Introspection (RFC 7662) and revocation (RFC 7009) of access tokens.
use super::*;

/// Verifies one of our access tokens (signature with our keys, claims) without consulting
/// revocation state.
pub(super) fn verify_access_token(state: &AppState, token: &str) -> Option<AccessTokenClaims> {
    let unverified = Unverified::parse(token, &JoseLimits::default()).ok()?;
    let key = state.keys.find(unverified.kid()?, state.now())?;
    let verified = unverified.verify(JwtKind::AccessToken, key.public()).ok()?;
    AccessTokenClaims::from_verified(
        &verified,
        &AccessTokenExpectation::new(&state.issuer, None, state.now() / 1000),
    )
    .ok()
}

/// Whether a stored token is usable now: token active and unexpired, every delegation of its
/// chain active and unexpired, every delegate agent of the chain active.
pub(super) async fn is_active(state: &AppState, view: &TokenView) -> Result<bool, TokenError> {
    Ok(effective_status(state, view)? == mandate_core::status_list::VALID)
}

pub(super) fn inactive() -> Response {
    no_store(json!({"active": false}))
}

pub(super) fn no_store(body: Value) -> Response {
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `POST /oauth2/introspect` (RFC 7662) for authenticated gates: the claims and the chain, or
/// exactly `{"active": false}` for anything invalid, unknown, expired, revoked or foreign.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result: Result<Response, TokenError> = async {
        let form = Form::parse(&headers, &body)?;
        let auth = authenticate(&state, &headers, &form).await?;
        let Client::Gate(gate) = &auth.client else {
            return Err(TokenError::new(
                Code::UnauthorizedClient,
                "only gates may introspect tokens",
            ));
        };
        // The assertion is single-use here too.
        state
            .store
            .commit(
                Mutation::TokenRequest {
                    jtis: auth.jtis.clone(),
                    issue: None,
                    now: state.now(),
                    seen: None,
                },
                vec![],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => conflict_error(&m),
                other => other.into(),
            })?;
        let token = form
            .get("token")
            .ok_or_else(|| bad("`token` is required"))?;
        let Some(claims) = verify_access_token(&state, token) else {
            return Ok(inactive());
        };
        let Some(view) = state.store.token(&claims.jti).await? else {
            return Ok(inactive());
        };
        if view.token.tenant != gate.tenant || !is_active(&state, &view).await? {
            return Ok(inactive());
        }
        // DESIGN §8: the acting agent's trust score, for gates enforcing `min_trust`.
        let trust = crate::trust::of(&state, &view.agent).await?;
        let mut out = claims.to_value();
        if let Some(o) = out.as_object_mut() {
            o.insert("active".into(), json!(true));
            o.insert("token_type".into(), json!("DPoP"));
            o.insert("trust".into(), json!(trust.score));
            o.insert(
                "delegation_chain".into(),
                Value::Array(view.chain.iter().map(crate::views::delegation).collect()),
            );
        }
        Ok(no_store(out))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /oauth2/revoke` (RFC 7009): the holder revokes its own token. Unknown or invalid
/// tokens answer 200 (RFC 7009 §2.2).
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result: Result<Response, TokenError> = async {
        let form = Form::parse(&headers, &body)?;
        let auth = authenticate(&state, &headers, &form).await?;
        let token = form
            .get("token")
            .ok_or_else(|| bad("`token` is required"))?;
        let target = verify_access_token(&state, token);
        let (tenant, mutation, event) = match (&auth.client, target) {
            (Client::Agent(agent), Some(claims)) if claims.client_id == agent.id.as_str() => {
                let ev = agent_event(
                    agent,
                    EventKind::TokenRevoked,
                    None,
                    Some(&claims.sub),
                    Outcome::Allow,
                    vec!["revoked by its holder".into()],
                    Some(claims.jti.clone()),
                );
                let mut ev = ev;
                ev.delegation = Some(claims.del.clone());
                ev.action = Some("revoke".into());
                ev.resource = Some("oauth2/revoke".into());
                (
                    Some(agent.tenant.clone()),
                    Mutation::RevokeToken {
                        tenant: agent.tenant.clone(),
                        jti: claims.jti.clone(),
                        at: state.now(),
                    },
                    Some(ev),
                )
            }
            _ => (
                None,
                Mutation::TokenRequest {
                    jtis: vec![],
                    issue: None,
                    now: state.now(),
                    seen: None,
                },
                None,
            ),
        };
        let receipts = match (tenant, event) {
            (Some(t), Some(e)) => vec![(t, e)],
            _ => vec![],
        };
        // One commit: the assertion is consumed and the token revoked together, or neither.
        let consume = Mutation::TokenRequest {
            jtis: auth.jtis.clone(),
            issue: None,
            now: state.now(),
            seen: None,
        };
        state
            .store
            .commit(Mutation::Batch(vec![consume, mutation]), receipts)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(msg) => conflict_error(&msg),
                other => other.into(),
            })?;
        Ok(no_store(json!({})))
    }
    .await;
    match result {
        Ok(_) => {
            let mut r = axum::http::StatusCode::OK.into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => e.into_response(),
    }
}
