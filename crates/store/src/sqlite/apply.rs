//! Writes: one function per [`Mutation`], run inside the writer's per-job savepoint.

use mandate_core::id::{AgentId, ApprovalId, DelegationId, HumanId, TenantId};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use super::read::{self, enum_to};
use super::unavailable;
use crate::{
    Agent, AgentStatus, AgentTransition, AppliedValue, Approval, ApprovalStatus, Delegation,
    DelegationStatus, Delegator, Gate, Human, HumanStatus, JtiUse, KeyRecord, KeyStatus, Mutation,
    NewApiKey, StoreError, Tenant, TokenRecord,
};

pub(crate) fn apply(c: &Connection, mutation: Mutation) -> Result<AppliedValue, StoreError> {
    match mutation {
        Mutation::CreateTenant {
            tenant,
            owner,
            api_key,
        } => {
            insert_tenant(c, &tenant)?;
            insert_human(c, &owner)?;
            insert_api_key(c, &api_key)?;
            Ok(AppliedValue::Tenant(tenant, owner))
        }
        Mutation::CreateHuman(h) => {
            insert_human(c, &h)?;
            Ok(AppliedValue::Human(h))
        }
        Mutation::CreateApiKey(k) => {
            let human = active_human(c, &k.tenant, &k.human)?;
            insert_api_key(c, &k)?;
            Ok(AppliedValue::Human(human))
        }
        Mutation::RevokeHuman { tenant, id, at } => revoke_human(c, &tenant, &id, at),
        Mutation::CreateAgent(a) => {
            active_human(c, &a.tenant, &a.owner)?;
            insert_agent(c, &a)?;
            Ok(AppliedValue::Agent(a))
        }
        Mutation::TransitionAgent { tenant, id, to, at } => {
            transition_agent(c, &tenant, &id, to, at)
        }
        Mutation::AddAgentKey {
            tenant,
            agent,
            key,
            retire_others_at,
        } => {
            let a = existing_agent(c, &tenant, &agent)?;
            if a.status == AgentStatus::Revoked {
                return Err(StoreError::Conflict(format!(
                    "agent `{agent}` is revoked; it cannot get new keys"
                )));
            }
            insert_key(c, &tenant, agent.as_str(), &key)?;
            if let Some(at) = retire_others_at {
                c.execute(
                    "UPDATE keys SET not_after = ?4 WHERE tenant = ?1 AND owner = ?2 AND kid != ?3 \
                     AND status = 'active' AND (not_after IS NULL OR not_after > ?4)",
                    params![tenant.as_str(), agent.as_str(), key.kid, at],
                )
                .map_err(unavailable)?;
            }
            Ok(AppliedValue::Key(key))
        }
        Mutation::RetireAgentKey {
            tenant,
            agent,
            kid,
            at,
        } => retire_agent_key(c, &tenant, &agent, &kid, at),
        Mutation::CreateGate(g) => {
            insert_gate(c, &g)?;
            Ok(AppliedValue::Gate(g))
        }
        Mutation::AddHumanKey { tenant, human, key } => {
            active_human(c, &tenant, &human)?;
            insert_key(c, &tenant, human.as_str(), &key)?;
            Ok(AppliedValue::Key(key))
        }
        Mutation::CreateDelegation(d) => {
            insert_delegation(c, &d)?;
            Ok(AppliedValue::Delegation(d))
        }
        Mutation::TokenRequest {
            jtis,
            issue,
            now,
            seen,
        } => {
            for j in &jtis {
                consume_jti(c, j)?;
            }
            if let Some((tenant, agent)) = seen {
                // Last-seen has minute precision: most requests change nothing.
                c.prepare_cached(
                    "UPDATE agents SET last_seen_at = ?3 WHERE tenant = ?1 AND id = ?2 \
                     AND (last_seen_at IS NULL OR last_seen_at < ?3 - 60000)",
                )
                .and_then(|mut st| st.execute(params![tenant.as_str(), agent.as_str(), now]))
                .map_err(unavailable)?;
            }
            if let Some(t) = issue {
                issue_token(c, &t, now)?;
            }
            Ok(AppliedValue::None)
        }
        Mutation::Delegate {
            delegation,
            jtis,
            issue,
            now,
        } => {
            for j in &jtis {
                consume_jti(c, j)?;
            }
            insert_delegation(c, &delegation)?;
            issue_token(c, &issue, now)?;
            Ok(AppliedValue::Delegation(delegation))
        }
        Mutation::RevokeToken { tenant, jti, at } => {
            let n = c
                .execute(
                    "UPDATE tokens SET status = 'revoked', revoked_at = ?3 \
                     WHERE tenant = ?1 AND jti = ?2 AND status = 'active'",
                    params![tenant.as_str(), jti, at],
                )
                .map_err(unavailable)?;
            Ok(AppliedValue::Count(n as u64))
        }
        Mutation::RevokeDelegation { tenant, id, at } => revoke_delegation(c, &tenant, &id, at),
        Mutation::RevokeTenant { tenant, at } => revoke_tenant(c, &tenant, at),
        Mutation::CreateApproval(a) => create_approval(c, a),
        Mutation::DecideApproval {
            tenant,
            id,
            approve,
            by,
            at,
            use_by,
        } => decide_approval(c, &tenant, &id, approve, &by, at, use_by),
        Mutation::ConsumeApproval { tenant, id, at } => consume_approval(c, &tenant, &id, at),
        Mutation::Batch(all) => {
            let mut last = AppliedValue::None;
            for m in all {
                last = apply(c, m)?;
            }
            Ok(last)
        }
        Mutation::Record => Ok(AppliedValue::None),
    }
}

/// Everything of a tenant: humans and their API keys, agents, delegations, tokens.
fn revoke_tenant(c: &Connection, tenant: &TenantId, at: i64) -> Result<AppliedValue, StoreError> {
    let t = read::tenant(c, tenant)?
        .ok_or_else(|| StoreError::NotFound(format!("tenant `{tenant}`")))?;
    if t.operator {
        return Err(StoreError::Conflict(
            "the operator tenant cannot be revoked".into(),
        ));
    }
    let n = c
        .execute(
            "UPDATE delegations SET status = 'revoked', revoked_at = ?2 WHERE tenant = ?1 \
             AND status = 'active'",
            params![tenant.as_str(), at],
        )
        .map_err(unavailable)?;
    for sql in [
        "UPDATE tokens SET status = 'revoked', revoked_at = ?2 WHERE tenant = ?1 AND status = 'active'",
        "UPDATE agents SET status = 'revoked' WHERE tenant = ?1 AND status != 'revoked' AND ?2 = ?2",
        "UPDATE humans SET status = 'revoked', revoked_at = ?2 WHERE tenant = ?1 AND status = 'active'",
        "UPDATE api_keys SET status = 'revoked' WHERE tenant = ?1 AND ?2 = ?2",
    ] {
        c.execute(sql, params![tenant.as_str(), at])
            .map_err(unavailable)?;
    }
    Ok(AppliedValue::Count(n as u64))
}

fn insert_delegation(c: &Connection, d: &Delegation) -> Result<(), StoreError> {
    let status = read::agent_status(c, &d.tenant, &d.delegate)?
        .ok_or_else(|| StoreError::NotFound(format!("agent `{}`", d.delegate)))?;
    if status != AgentStatus::Active {
        return Err(StoreError::Conflict(format!(
            "agent `{}` is not active",
            d.delegate
        )));
    }
    let (kind, delegator) = match &d.delegator {
        Delegator::Human(h) => {
            active_human(c, &d.tenant, h)?;
            ("human", h.as_str().to_owned())
        }
        Delegator::Agent(a) => ("agent", a.as_str().to_owned()),
    };
    if let Some(parent) = &d.parent {
        let p: Option<(String, i64)> = c
            .prepare_cached(
                "SELECT status, expires_at FROM delegations WHERE tenant = ?1 AND id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![d.tenant.as_str(), parent.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(unavailable)?;
        let (status, expires_at) =
            p.ok_or_else(|| StoreError::NotFound(format!("delegation `{parent}`")))?;
        if read::enum_from::<DelegationStatus>(&status)? != DelegationStatus::Active
            || expires_at <= d.created_at
        {
            return Err(StoreError::Conflict(format!(
                "delegation `{parent}` is no longer active"
            )));
        }
    }
    let json = |v: &serde_json::Value| {
        serde_json::to_string(v).map_err(|_| StoreError::Corrupt("unserialisable scope".into()))
    };
    c.prepare_cached(
        "INSERT INTO delegations (id, tenant, parent, root, delegator_kind, delegator, delegate, \
         scope, prohibitions, purpose, task, depth, max_depth, expires_at, created_at, status, \
         revoked_at, digest, human_signature) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )
    .and_then(|mut s| {
        s.execute(params![
            d.id.as_str(),
            d.tenant.as_str(),
            d.parent.as_ref().map(|p| p.as_str().to_owned()),
            d.root.as_str(),
            kind,
            delegator,
            d.delegate.as_str(),
            json(&d.scope).unwrap_or_default(),
            json(&d.prohibitions).unwrap_or_default(),
            d.purpose,
            d.task,
            i64::from(d.depth),
            i64::from(d.max_depth),
            d.expires_at,
            d.created_at,
            enum_to(d.status),
            d.revoked_at,
            d.digest,
            d.human_signature
        ])
    })
    .map_err(|e| on_insert(e, || format!("delegation `{}` already exists", d.id)))?;
    Ok(())
}

/// Atomic single use: the primary key refuses a second insert of the same id.
fn consume_jti(c: &Connection, j: &JtiUse) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO used_jtis (kind, scope, jti, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![j.kind, j.scope, j.jti, j.expires_at]))
    .map_err(|e| on_insert(e, || format!("{} `jti` has already been used", j.kind)))?;
    Ok(())
}

/// Records an issued token, re-checking at commit time (serialised with revocations) that its
/// agent and every delegation of its chain are still active and unexpired.
fn issue_token(c: &Connection, t: &TokenRecord, now: i64) -> Result<(), StoreError> {
    let status = read::agent_status(c, &t.tenant, &t.agent)?
        .ok_or_else(|| StoreError::NotFound(format!("agent `{}`", t.agent)))?;
    if status != AgentStatus::Active {
        return Err(StoreError::Conflict(format!(
            "agent `{}` is not active",
            t.agent
        )));
    }
    chain_active(c, &t.tenant, &t.delegation, now)?;
    c.prepare_cached(
        "INSERT INTO tokens (jti, tenant, delegation, agent, jkt, issued_at, expires_at, status, \
         status_idx) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            t.jti,
            t.tenant.as_str(),
            t.delegation.as_str(),
            t.agent.as_str(),
            t.jkt,
            t.issued_at,
            t.expires_at,
            enum_to(t.status),
            t.status_idx.map(|i| i64::try_from(i).unwrap_or(i64::MAX))
        ])
    })
    .map_err(|e| on_insert(e, || "token id collision".to_owned()))?;
    Ok(())
}

/// Every delegation from `id` up to its mandate is active and unexpired at `now` (a conflict
/// naming the first that is not). Reads only the columns it checks, link by link, bounded by
/// the depth hard cap like `read::chain`.
fn chain_active(
    c: &Connection,
    tenant: &TenantId,
    id: &DelegationId,
    now: i64,
) -> Result<(), StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT parent, status, expires_at FROM delegations WHERE tenant = ?1 AND id = ?2",
        )
        .map_err(unavailable)?;
    let mut next = Some(id.as_str().to_owned());
    let mut links = 0usize;
    while let Some(id) = next {
        if links > usize::from(mandate_core::scope::MAX_DEPTH_HARD_CAP) {
            return Err(read::corrupt("delegation chain longer than the hard cap"));
        }
        links += 1;
        let (parent, status, expires_at): (Option<String>, String, i64) = stmt
            .query_row(params![tenant.as_str(), id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(unavailable)?
            .ok_or_else(|| read::corrupt("delegation chain has a missing link"))?;
        if read::enum_from::<DelegationStatus>(&status)? != DelegationStatus::Active
            || expires_at <= now
        {
            return Err(StoreError::Conflict(format!(
                "delegation `{id}` is no longer active"
            )));
        }
        next = parent;
    }
    Ok(())
}

/// Revokes a delegation and its whole subtree, and every token under it, in this transaction.
fn revoke_delegation(
    c: &Connection,
    tenant: &TenantId,
    id: &DelegationId,
    at: i64,
) -> Result<AppliedValue, StoreError> {
    let d = read::delegation(c, tenant, id)?
        .ok_or_else(|| StoreError::NotFound(format!("delegation `{id}`")))?;
    if d.status == DelegationStatus::Revoked {
        return Err(StoreError::Conflict(format!(
            "delegation `{id}` is already revoked"
        )));
    }
    let n = revoke_subtrees(
        c,
        tenant,
        "SELECT id FROM delegations WHERE tenant = ?1 AND id = ?2",
        id.as_str(),
        at,
    )?;
    Ok(AppliedValue::Count(n))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

fn on_insert(e: rusqlite::Error, conflict: impl FnOnce() -> String) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(conflict())
    } else {
        unavailable(e)
    }
}

fn insert_tenant(c: &Connection, t: &Tenant) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO tenants (id, name, operator, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            t.id.as_str(),
            t.name,
            i64::from(t.operator),
            t.created_at
        ])
    })
    .map_err(|e| on_insert(e, || format!("a tenant named `{}` already exists", t.name)))?;
    Ok(())
}

fn insert_human(c: &Connection, h: &Human) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO humans (id, tenant, name, email, role, status, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            h.id.as_str(),
            h.tenant.as_str(),
            h.name,
            h.email,
            enum_to(h.role),
            enum_to(h.status),
            h.created_at
        ])
    })
    .map_err(|e| {
        on_insert(e, || {
            format!("a human with email `{}` already exists", h.email)
        })
    })?;
    Ok(())
}

fn insert_api_key(c: &Connection, k: &NewApiKey) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO api_keys (id, tenant, human, hash, status, created_at) \
         VALUES (?1, ?2, ?3, ?4, 'active', ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            k.id.as_str(),
            k.tenant.as_str(),
            k.human.as_str(),
            &k.hash[..],
            k.created_at
        ])
    })
    .map_err(|e| on_insert(e, || "this API key already exists".to_owned()))?;
    Ok(())
}

fn active_human(c: &Connection, tenant: &TenantId, id: &HumanId) -> Result<Human, StoreError> {
    let human =
        read::human(c, tenant, id)?.ok_or_else(|| StoreError::NotFound(format!("human `{id}`")))?;
    if human.status != HumanStatus::Active {
        return Err(StoreError::Conflict(format!("human `{id}` is revoked")));
    }
    Ok(human)
}

fn revoke_human(
    c: &Connection,
    tenant: &TenantId,
    id: &HumanId,
    at: i64,
) -> Result<AppliedValue, StoreError> {
    let mut human = active_human(c, tenant, id)?;
    c.execute(
        "UPDATE humans SET status = 'revoked', revoked_at = ?3 WHERE tenant = ?1 AND id = ?2",
        params![tenant.as_str(), id.as_str(), at],
    )
    .map_err(unavailable)?;
    c.execute(
        "UPDATE api_keys SET status = 'revoked' WHERE tenant = ?1 AND human = ?2",
        params![tenant.as_str(), id.as_str()],
    )
    .map_err(unavailable)?;
    c.execute(
        "UPDATE agents SET status = 'suspended' WHERE tenant = ?1 AND owner = ?2 \
         AND status = 'active'",
        params![tenant.as_str(), id.as_str()],
    )
    .map_err(unavailable)?;
    // DESIGN §5: every mandate the human made, and everything below it.
    revoke_subtrees(
        c,
        tenant,
        "SELECT id FROM delegations WHERE tenant = ?1 AND delegator_kind = 'human' \
         AND delegator = ?2",
        id.as_str(),
        at,
    )?;
    human.status = HumanStatus::Revoked;
    Ok(AppliedValue::Human(human))
}

/// Revokes every delegation selected by `roots` (SQL selecting ids, with `?1` = tenant and `?2`
/// = one parameter) and all their descendants, and every token under them. Returns how many
/// delegations changed.
///
/// The subtree is computed once into a temporary table (ids are unique, and parent links never
/// cross tenants), then rows are updated by primary key — one pass over the tree, no scan of the
/// tenant's other delegations.
fn revoke_subtrees(
    c: &Connection,
    tenant: &TenantId,
    roots: &str,
    param: &str,
    at: i64,
) -> Result<u64, StoreError> {
    c.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS revoking (id TEXT PRIMARY KEY) WITHOUT ROWID; \
         DELETE FROM temp.revoking;",
    )
    .map_err(unavailable)?;
    c.execute(
        &format!(
            "INSERT OR IGNORE INTO temp.revoking (id) WITH RECURSIVE sub(id) AS ({roots} UNION ALL \
             SELECT d.id FROM delegations d JOIN sub ON d.parent = sub.id) SELECT id FROM sub"
        ),
        params![tenant.as_str(), param],
    )
    .map_err(unavailable)?;
    let n = c
        .execute(
            "UPDATE delegations SET status = 'revoked', revoked_at = ?1 \
             WHERE id IN (SELECT id FROM temp.revoking) AND status = 'active'",
            params![at],
        )
        .map_err(unavailable)?;
    c.execute(
        "UPDATE tokens SET status = 'revoked', revoked_at = ?1 \
         WHERE delegation IN (SELECT id FROM temp.revoking) AND status = 'active'",
        params![at],
    )
    .map_err(unavailable)?;
    c.execute_batch("DELETE FROM temp.revoking;")
        .map_err(unavailable)?;
    Ok(n as u64)
}

fn insert_agent(c: &Connection, a: &Agent) -> Result<(), StoreError> {
    let ceiling = serde_json::to_string(&a.ceiling)
        .map_err(|_| StoreError::Corrupt("ceiling is not serialisable".into()))?;
    c.prepare_cached(
        "INSERT INTO agents (id, tenant, owner, name, purpose, ceiling, commitment, status, \
         trust, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut s| {
        s.execute(params![
            a.id.as_str(),
            a.tenant.as_str(),
            a.owner.as_str(),
            a.name,
            a.purpose,
            ceiling,
            a.commitment,
            enum_to(a.status),
            i64::from(a.trust),
            a.created_at,
            a.last_seen_at
        ])
    })
    .map_err(|e| on_insert(e, || format!("an agent named `{}` already exists", a.name)))?;
    for key in &a.keys {
        insert_key(c, &a.tenant, a.id.as_str(), key)?;
    }
    Ok(())
}

fn insert_key(
    c: &Connection,
    tenant: &TenantId,
    owner: &str,
    k: &KeyRecord,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO keys (tenant, owner, kid, x, status, created_at, retired_at, not_after) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            tenant.as_str(),
            owner,
            k.kid,
            &k.jwk.bytes()[..],
            enum_to(k.status),
            k.created_at,
            k.retired_at,
            k.not_after
        ])
    })
    .map_err(|e| {
        on_insert(e, || {
            format!("the key `{}` is already registered in this tenant", k.kid)
        })
    })?;
    Ok(())
}

fn existing_agent(c: &Connection, tenant: &TenantId, id: &AgentId) -> Result<Agent, StoreError> {
    read::agent(c, tenant, id)?.ok_or_else(|| StoreError::NotFound(format!("agent `{id}`")))
}

fn transition_agent(
    c: &Connection,
    tenant: &TenantId,
    id: &AgentId,
    to: AgentTransition,
    at: i64,
) -> Result<AppliedValue, StoreError> {
    let mut agent = existing_agent(c, tenant, id)?;
    let next = agent.next_status(to)?;
    if agent.owner_is_revoked(c)? && next == AgentStatus::Active {
        return Err(StoreError::Conflict(format!(
            "the owner of agent `{id}` is revoked; assign a new owner before resuming"
        )));
    }
    c.execute(
        "UPDATE agents SET status = ?3 WHERE tenant = ?1 AND id = ?2",
        params![tenant.as_str(), id.as_str(), enum_to(next)],
    )
    .map_err(unavailable)?;
    if next == AgentStatus::Revoked {
        // DESIGN §5: every delegation to the agent, and everything below it.
        revoke_subtrees(
            c,
            tenant,
            "SELECT id FROM delegations WHERE tenant = ?1 AND delegate = ?2",
            id.as_str(),
            at,
        )?;
    }
    agent.status = next;
    Ok(AppliedValue::Agent(agent))
}

trait OwnerCheck {
    fn owner_is_revoked(&self, c: &Connection) -> Result<bool, StoreError>;
}

impl OwnerCheck for Agent {
    fn owner_is_revoked(&self, c: &Connection) -> Result<bool, StoreError> {
        let status: Option<String> = c
            .query_row(
                "SELECT status FROM humans WHERE tenant = ?1 AND id = ?2",
                params![self.tenant.as_str(), self.owner.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)?;
        Ok(status.as_deref() != Some("active"))
    }
}

fn retire_agent_key(
    c: &Connection,
    tenant: &TenantId,
    agent: &AgentId,
    kid: &str,
    at: i64,
) -> Result<AppliedValue, StoreError> {
    let a = existing_agent(c, tenant, agent)?;
    let key = a.check_retire_key(kid)?;
    c.execute(
        "UPDATE keys SET status = 'retired', retired_at = ?4 WHERE tenant = ?1 AND owner = ?2 \
         AND kid = ?3",
        params![tenant.as_str(), agent.as_str(), kid, at],
    )
    .map_err(unavailable)?;
    // DESIGN §5: tokens bound to the key stop working with it.
    c.execute(
        "UPDATE tokens SET status = 'revoked', revoked_at = ?3 WHERE tenant = ?1 AND jkt = ?2 \
         AND status = 'active'",
        params![tenant.as_str(), kid, at],
    )
    .map_err(unavailable)?;
    let mut key = key.clone();
    key.status = KeyStatus::Retired;
    key.retired_at = Some(at);
    Ok(AppliedValue::Key(key))
}

fn insert_gate(c: &Connection, g: &Gate) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO gates (id, tenant, name, audience, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            g.id.as_str(),
            g.tenant.as_str(),
            g.name,
            g.audience,
            g.created_at
        ])
    })
    .map_err(|e| {
        on_insert(e, || {
            format!(
                "a gate named `{}` or for audience `{}` already exists",
                g.name, g.audience
            )
        })
    })?;
    for key in &g.keys {
        insert_key(c, &g.tenant, g.id.as_str(), key)?;
    }
    Ok(())
}

/// DESIGN §7: a new pending approval; at most one open approval per request.
fn create_approval(c: &Connection, a: Approval) -> Result<AppliedValue, StoreError> {
    let d = read::delegation(c, &a.tenant, &a.delegation)?
        .ok_or_else(|| StoreError::NotFound(format!("delegation `{}`", a.delegation)))?;
    if d.delegate != a.agent {
        return Err(StoreError::Conflict(format!(
            "delegation `{}` is not held by agent `{}`",
            a.delegation, a.agent
        )));
    }
    // Open approvals past their expiry are closed first, so that they do not block this one.
    c.prepare_cached(
        "UPDATE approvals SET status = 'expired' WHERE tenant = ?1 AND delegation = ?2 \
         AND request_hash = ?3 AND status IN ('pending', 'approved') AND expires_at <= ?4",
    )
    .and_then(|mut st| {
        st.execute(params![
            a.tenant.as_str(),
            a.delegation.as_str(),
            a.request_hash,
            a.created_at
        ])
    })
    .map_err(unavailable)?;
    c.prepare_cached(
        "INSERT INTO approvals (id, tenant, gate, delegation, agent, action, resource, summary, \
         request_hash, status, created_at, expires_at, decided_at, decided_by, consumed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )
    .and_then(|mut st| {
        st.execute(params![
            a.id.as_str(),
            a.tenant.as_str(),
            a.gate.as_str(),
            a.delegation.as_str(),
            a.agent.as_str(),
            a.action,
            a.resource,
            a.summary,
            a.request_hash,
            enum_to(a.status),
            a.created_at,
            a.expires_at,
            a.decided_at,
            a.decided_by.as_ref().map(|h| h.as_str().to_owned()),
            a.consumed_at
        ])
    })
    .map_err(|e| {
        on_insert(e, || {
            "an approval for this request is already open".to_owned()
        })
    })?;
    Ok(AppliedValue::Approval(a))
}

fn existing_approval(
    c: &Connection,
    tenant: &TenantId,
    id: &ApprovalId,
) -> Result<Approval, StoreError> {
    read::approval(c, tenant, id)?.ok_or_else(|| StoreError::NotFound(format!("approval `{id}`")))
}

fn closed(id: &ApprovalId, status: ApprovalStatus) -> StoreError {
    StoreError::Conflict(match status {
        ApprovalStatus::Expired => format!("approval `{id}` has expired"),
        other => format!("approval `{id}` is already {}", enum_to(other)),
    })
}

fn decide_approval(
    c: &Connection,
    tenant: &TenantId,
    id: &ApprovalId,
    approve: bool,
    by: &HumanId,
    at: i64,
    use_by: i64,
) -> Result<AppliedValue, StoreError> {
    let mut a = existing_approval(c, tenant, id)?;
    let now = a.status_at(at);
    if now != ApprovalStatus::Pending {
        return Err(closed(id, now));
    }
    let (status, expires_at) = if approve {
        (ApprovalStatus::Approved, use_by)
    } else {
        (ApprovalStatus::Denied, a.expires_at)
    };
    c.execute(
        "UPDATE approvals SET status = ?3, decided_at = ?4, decided_by = ?5, expires_at = ?6 \
         WHERE tenant = ?1 AND id = ?2 AND status = 'pending'",
        params![
            tenant.as_str(),
            id.as_str(),
            enum_to(status),
            at,
            by.as_str(),
            expires_at
        ],
    )
    .map_err(unavailable)?;
    a.status = status;
    a.decided_at = Some(at);
    a.decided_by = Some(by.clone());
    a.expires_at = expires_at;
    Ok(AppliedValue::Approval(a))
}

fn consume_approval(
    c: &Connection,
    tenant: &TenantId,
    id: &ApprovalId,
    at: i64,
) -> Result<AppliedValue, StoreError> {
    let mut a = existing_approval(c, tenant, id)?;
    let now = a.status_at(at);
    if now != ApprovalStatus::Approved {
        return Err(closed(id, now));
    }
    c.execute(
        "UPDATE approvals SET status = 'consumed', consumed_at = ?3 \
         WHERE tenant = ?1 AND id = ?2 AND status = 'approved'",
        params![tenant.as_str(), id.as_str(), at],
    )
    .map_err(unavailable)?;
    a.status = ApprovalStatus::Consumed;
    a.consumed_at = Some(at);
    Ok(AppliedValue::Approval(a))
}

/// Refusals per agent, hour, receipt kind and first reason (for trust scores, DESIGN §8),
/// counted in the transaction that appends the receipt.
pub(crate) fn count_denial(
    c: &Connection,
    tenant: &TenantId,
    agent: &str,
    at: i64,
    kind: &str,
    reason: &str,
) -> Result<(), StoreError> {
    let reason: String = reason.chars().take(64).collect();
    c.prepare_cached(
        "INSERT INTO agent_denials (tenant, agent, hour, kind, reason, n) \
         VALUES (?1, ?2, ?3, ?4, ?5, 1) \
         ON CONFLICT (tenant, agent, hour, kind, reason) DO UPDATE SET n = n + 1",
    )
    .and_then(|mut st| {
        st.execute(params![
            tenant.as_str(),
            agent,
            at.div_euclid(3_600_000),
            kind,
            reason
        ])
    })
    .map_err(unavailable)?;
    Ok(())
}
