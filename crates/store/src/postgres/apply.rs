//! Writes: one function per [`Mutation`], run inside the writer's per-job savepoint, inside a
//! batch transaction that holds the ledger's advisory lock (see [`super`]): every check below
//! reads state that no other replica can change until this transaction commits.

use std::future::Future;
use std::pin::Pin;

use mandate_core::id::{AgentId, ApprovalId, DelegationId, HumanId, TenantId};

use super::conn::{Conn, col, is_constraint_violation, to_i64, unavailable};
use super::read::{self, enum_to};
use crate::{
    Agent, AgentStatus, AgentTransition, AppliedValue, Approval, ApprovalStatus, Delegation,
    DelegationStatus, Delegator, Gate, Human, HumanStatus, JtiUse, KeyRecord, KeyStatus, Mutation,
    NewApiKey, StoreError, Tenant, TokenRecord,
};

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Applies one mutation (boxed: a [`Mutation::Batch`] recurses).
pub(crate) fn apply(c: &Conn, mutation: Mutation) -> Boxed<'_, AppliedValue> {
    Box::pin(async move {
        match mutation {
            Mutation::CreateTenant {
                tenant,
                owner,
                api_key,
            } => {
                insert_tenant(c, &tenant).await?;
                insert_human(c, &owner).await?;
                insert_api_key(c, &api_key).await?;
                Ok(AppliedValue::Tenant(tenant, owner))
            }
            Mutation::CreateHuman(h) => {
                insert_human(c, &h).await?;
                Ok(AppliedValue::Human(h))
            }
            Mutation::CreateApiKey(k) => {
                let human = active_human(c, &k.tenant, &k.human).await?;
                insert_api_key(c, &k).await?;
                Ok(AppliedValue::Human(human))
            }
            Mutation::RevokeHuman { tenant, id, at } => revoke_human(c, &tenant, &id, at).await,
            Mutation::CreateAgent(a) => {
                active_human(c, &a.tenant, &a.owner).await?;
                insert_agent(c, &a).await?;
                Ok(AppliedValue::Agent(a))
            }
            Mutation::TransitionAgent { tenant, id, to, at } => {
                transition_agent(c, &tenant, &id, to, at).await
            }
            Mutation::AddAgentKey {
                tenant,
                agent,
                key,
                retire_others_at,
            } => {
                let a = existing_agent(c, &tenant, &agent).await?;
                if a.status == AgentStatus::Revoked {
                    return Err(StoreError::Conflict(format!(
                        "agent `{agent}` is revoked; it cannot get new keys"
                    )));
                }
                insert_key(c, &tenant, agent.as_str(), &key).await?;
                if let Some(at) = retire_others_at {
                    c.execute(
                        "UPDATE keys SET not_after = $4 WHERE tenant = $1 AND owner = $2 \
                         AND kid != $3 AND status = 'active' \
                         AND (not_after IS NULL OR not_after > $4)",
                        &[&tenant.as_str(), &agent.as_str(), &key.kid, &at],
                    )
                    .await
                    .map_err(unavailable)?;
                }
                Ok(AppliedValue::Key(key))
            }
            Mutation::RetireAgentKey {
                tenant,
                agent,
                kid,
                at,
            } => retire_agent_key(c, &tenant, &agent, &kid, at).await,
            Mutation::CreateGate(g) => {
                insert_gate(c, &g).await?;
                Ok(AppliedValue::Gate(g))
            }
            Mutation::AddHumanKey { tenant, human, key } => {
                active_human(c, &tenant, &human).await?;
                insert_key(c, &tenant, human.as_str(), &key).await?;
                Ok(AppliedValue::Key(key))
            }
            Mutation::CreateDelegation(d) => {
                insert_delegation(c, &d).await?;
                Ok(AppliedValue::Delegation(d))
            }
            Mutation::TokenRequest {
                jtis,
                issue,
                now,
                seen,
            } => {
                for j in &jtis {
                    consume_jti(c, j).await?;
                }
                if let Some((tenant, agent)) = seen {
                    // Last-seen has minute precision: most requests change nothing.
                    c.execute(
                        "UPDATE agents SET last_seen_at = $3::BIGINT WHERE tenant = $1 AND id = $2 \
                         AND (last_seen_at IS NULL OR last_seen_at < $3::BIGINT - 60000)",
                        &[&tenant.as_str(), &agent.as_str(), &now],
                    )
                    .await
                    .map_err(unavailable)?;
                }
                if let Some(t) = issue {
                    issue_token(c, &t, now).await?;
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
                    consume_jti(c, j).await?;
                }
                insert_delegation(c, &delegation).await?;
                issue_token(c, &issue, now).await?;
                Ok(AppliedValue::Delegation(delegation))
            }
            Mutation::RevokeToken { tenant, jti, at } => {
                let n = c
                    .execute(
                        "UPDATE tokens SET status = 'revoked', revoked_at = $3 \
                         WHERE tenant = $1 AND jti = $2 AND status = 'active'",
                        &[&tenant.as_str(), &jti, &at],
                    )
                    .await
                    .map_err(unavailable)?;
                Ok(AppliedValue::Count(n))
            }
            Mutation::RevokeDelegation { tenant, id, at } => {
                revoke_delegation(c, &tenant, &id, at).await
            }
            Mutation::RevokeTenant { tenant, at } => revoke_tenant(c, &tenant, at).await,
            Mutation::CreateApproval(a) => create_approval(c, a).await,
            Mutation::DecideApproval {
                tenant,
                id,
                approve,
                by,
                at,
                use_by,
            } => {
                let d = Decision {
                    tenant: &tenant,
                    id: &id,
                    approve,
                    by: &by,
                    at,
                    use_by,
                };
                decide_approval(c, d).await
            }
            Mutation::ConsumeApproval { tenant, id, at } => {
                consume_approval(c, &tenant, &id, at).await
            }
            Mutation::Batch(all) => {
                let mut last = AppliedValue::None;
                for m in all {
                    last = apply(c, m).await?;
                }
                Ok(last)
            }
            Mutation::Record => Ok(AppliedValue::None),
        }
    })
}

/// Everything of a tenant: humans and their API keys, agents, delegations, tokens.
async fn revoke_tenant(c: &Conn, tenant: &TenantId, at: i64) -> Result<AppliedValue, StoreError> {
    let t = read::tenant(c, tenant)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("tenant `{tenant}`")))?;
    if t.operator {
        return Err(StoreError::Conflict(
            "the operator tenant cannot be revoked".into(),
        ));
    }
    let t = tenant.as_str();
    let n = c
        .execute(
            "UPDATE delegations SET status = 'revoked', revoked_at = $2 WHERE tenant = $1 \
             AND status = 'active'",
            &[&t, &at],
        )
        .await
        .map_err(unavailable)?;
    c.execute(
        "UPDATE tokens SET status = 'revoked', revoked_at = $2 WHERE tenant = $1 \
         AND status = 'active'",
        &[&t, &at],
    )
    .await
    .map_err(unavailable)?;
    c.execute(
        "UPDATE agents SET status = 'revoked' WHERE tenant = $1 AND status != 'revoked'",
        &[&t],
    )
    .await
    .map_err(unavailable)?;
    c.execute(
        "UPDATE humans SET status = 'revoked', revoked_at = $2 WHERE tenant = $1 \
         AND status = 'active'",
        &[&t, &at],
    )
    .await
    .map_err(unavailable)?;
    c.execute(
        "UPDATE api_keys SET status = 'revoked' WHERE tenant = $1",
        &[&t],
    )
    .await
    .map_err(unavailable)?;
    Ok(AppliedValue::Count(n))
}

async fn insert_delegation(c: &Conn, d: &Delegation) -> Result<(), StoreError> {
    let status = read::agent_status(c, &d.tenant, &d.delegate)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("agent `{}`", d.delegate)))?;
    if status != AgentStatus::Active {
        return Err(StoreError::Conflict(format!(
            "agent `{}` is not active",
            d.delegate
        )));
    }
    let (kind, delegator) = match &d.delegator {
        Delegator::Human(h) => {
            active_human(c, &d.tenant, h).await?;
            ("human", h.as_str().to_owned())
        }
        Delegator::Agent(a) => ("agent", a.as_str().to_owned()),
    };
    if let Some(parent) = &d.parent {
        let p = read::delegation(c, &d.tenant, parent)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("delegation `{parent}`")))?;
        if p.status != DelegationStatus::Active || p.expires_at <= d.created_at {
            return Err(StoreError::Conflict(format!(
                "delegation `{parent}` is no longer active"
            )));
        }
    }
    let json = |v: &serde_json::Value| {
        serde_json::to_string(v).map_err(|_| StoreError::Corrupt("unserialisable scope".into()))
    };
    let scope = json(&d.scope)?;
    let prohibitions = json(&d.prohibitions)?;
    let parent = d.parent.as_ref().map(|p| p.as_str().to_owned());
    c.execute(
        "INSERT INTO delegations (id, tenant, parent, root, delegator_kind, delegator, delegate, \
         scope, prohibitions, purpose, task, depth, max_depth, expires_at, created_at, status, \
         revoked_at, digest, human_signature) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        &[
            &d.id.as_str(),
            &d.tenant.as_str(),
            &parent,
            &d.root.as_str(),
            &kind,
            &delegator,
            &d.delegate.as_str(),
            &scope,
            &prohibitions,
            &d.purpose,
            &d.task,
            &i64::from(d.depth),
            &i64::from(d.max_depth),
            &d.expires_at,
            &d.created_at,
            &enum_to(d.status),
            &d.revoked_at,
            &d.digest,
            &d.human_signature,
        ],
    )
    .await
    .map_err(|e| on_insert(e, || format!("delegation `{}` already exists", d.id)))?;
    Ok(())
}

/// Atomic single use: the primary key refuses a second insert of the same id, from this
/// replica or any other.
async fn consume_jti(c: &Conn, j: &JtiUse) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO used_jtis (kind, scope, jti, expires_at) VALUES ($1, $2, $3, $4)",
        &[&j.kind, &j.scope, &j.jti, &j.expires_at],
    )
    .await
    .map_err(|e| on_insert(e, || format!("{} `jti` has already been used", j.kind)))?;
    Ok(())
}

/// Records an issued token, re-checking at commit time that its agent and every delegation of
/// its chain are still active and unexpired.
///
/// Atomic with respect to revocation from any replica because of **the same lock**, not row
/// locks: these reads run inside the batch transaction that holds the ledger's advisory lock,
/// and every revocation commits inside such a transaction too. So a revocation either committed
/// before this transaction took the lock (and these reads, each taking a fresh READ COMMITTED
/// snapshot after the lock, see it), or it waits for this transaction to commit (and then
/// revokes the token recorded here along with the rest of the subtree).
async fn issue_token(c: &Conn, t: &TokenRecord, now: i64) -> Result<(), StoreError> {
    let status = read::agent_status(c, &t.tenant, &t.agent)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("agent `{}`", t.agent)))?;
    if status != AgentStatus::Active {
        return Err(StoreError::Conflict(format!(
            "agent `{}` is not active",
            t.agent
        )));
    }
    chain_active(c, &t.tenant, &t.delegation, now).await?;
    c.execute(
        "INSERT INTO tokens (jti, tenant, delegation, agent, jkt, issued_at, expires_at, status, \
         status_idx) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &t.jti,
            &t.tenant.as_str(),
            &t.delegation.as_str(),
            &t.agent.as_str(),
            &t.jkt,
            &t.issued_at,
            &t.expires_at,
            &enum_to(t.status),
            &t.status_idx.map(to_i64),
        ],
    )
    .await
    .map_err(|e| on_insert(e, || "token id collision".to_owned()))?;
    Ok(())
}

/// Every delegation from `id` up to its mandate is active and unexpired at `now` (a conflict
/// naming the first, from `id` upward, that is not; a missing link or a chain past the depth
/// hard cap is corrupt data). One recursive query for the whole chain.
async fn chain_active(
    c: &Conn,
    tenant: &TenantId,
    id: &DelegationId,
    now: i64,
) -> Result<(), StoreError> {
    let cap = usize::from(mandate_core::scope::MAX_DEPTH_HARD_CAP);
    let rows = c
        .query(
            "WITH RECURSIVE up(id, parent, status, expires_at, n) AS ( \
               SELECT id, parent, status, expires_at, 1 FROM delegations \
               WHERE tenant = $1 AND id = $2 \
               UNION ALL \
               SELECT d.id, d.parent, d.status, d.expires_at, up.n + 1 FROM delegations d \
               JOIN up ON d.tenant = $1 AND d.id = up.parent WHERE up.n <= $3::INT) \
             SELECT id, parent, status, expires_at FROM up ORDER BY n",
            &[
                &tenant.as_str(),
                &id.as_str(),
                &i32::try_from(cap + 1).unwrap_or(i32::MAX),
            ],
        )
        .await
        .map_err(unavailable)?;
    let mut next = Some(id.as_str().to_owned());
    for (i, r) in rows.iter().enumerate() {
        if i > cap {
            return Err(read::corrupt("delegation chain longer than the hard cap"));
        }
        let link: String = col(r, 0)?;
        let status: String = col(r, 2)?;
        let expires_at: i64 = col(r, 3)?;
        if read::enum_from::<DelegationStatus>(&status)? != DelegationStatus::Active
            || expires_at <= now
        {
            return Err(StoreError::Conflict(format!(
                "delegation `{link}` is no longer active"
            )));
        }
        next = col(r, 1)?;
    }
    if rows.is_empty() || next.is_some() {
        return Err(read::corrupt("delegation chain has a missing link"));
    }
    Ok(())
}

/// Revokes a delegation and its whole subtree, and every token under it, in this transaction.
async fn revoke_delegation(
    c: &Conn,
    tenant: &TenantId,
    id: &DelegationId,
    at: i64,
) -> Result<AppliedValue, StoreError> {
    let d = read::delegation(c, tenant, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("delegation `{id}`")))?;
    if d.status == DelegationStatus::Revoked {
        return Err(StoreError::Conflict(format!(
            "delegation `{id}` is already revoked"
        )));
    }
    let n = revoke_subtrees(
        c,
        tenant,
        "SELECT id FROM delegations WHERE tenant = $1 AND id = $2",
        id.as_str(),
        at,
    )
    .await?;
    Ok(AppliedValue::Count(n))
}

fn on_insert(e: tokio_postgres::Error, conflict: impl FnOnce() -> String) -> StoreError {
    if is_constraint_violation(&e) {
        StoreError::Conflict(conflict())
    } else {
        unavailable(e)
    }
}

async fn insert_tenant(c: &Conn, t: &Tenant) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO tenants (id, name, operator, created_at) VALUES ($1, $2, $3, $4)",
        &[&t.id.as_str(), &t.name, &t.operator, &t.created_at],
    )
    .await
    .map_err(|e| on_insert(e, || format!("a tenant named `{}` already exists", t.name)))?;
    Ok(())
}

async fn insert_human(c: &Conn, h: &Human) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO humans (id, tenant, name, email, role, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &h.id.as_str(),
            &h.tenant.as_str(),
            &h.name,
            &h.email,
            &enum_to(h.role),
            &enum_to(h.status),
            &h.created_at,
        ],
    )
    .await
    .map_err(|e| {
        on_insert(e, || {
            format!("a human with email `{}` already exists", h.email)
        })
    })?;
    Ok(())
}

async fn insert_api_key(c: &Conn, k: &NewApiKey) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO api_keys (id, tenant, human, hash, status, created_at) \
         VALUES ($1, $2, $3, $4, 'active', $5)",
        &[
            &k.id.as_str(),
            &k.tenant.as_str(),
            &k.human.as_str(),
            &&k.hash[..],
            &k.created_at,
        ],
    )
    .await
    .map_err(|e| on_insert(e, || "this API key already exists".to_owned()))?;
    Ok(())
}

async fn active_human(c: &Conn, tenant: &TenantId, id: &HumanId) -> Result<Human, StoreError> {
    let human = read::human(c, tenant, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("human `{id}`")))?;
    if human.status != HumanStatus::Active {
        return Err(StoreError::Conflict(format!("human `{id}` is revoked")));
    }
    Ok(human)
}

async fn revoke_human(
    c: &Conn,
    tenant: &TenantId,
    id: &HumanId,
    at: i64,
) -> Result<AppliedValue, StoreError> {
    let mut human = active_human(c, tenant, id).await?;
    c.execute(
        "UPDATE humans SET status = 'revoked', revoked_at = $3 WHERE tenant = $1 AND id = $2",
        &[&tenant.as_str(), &id.as_str(), &at],
    )
    .await
    .map_err(unavailable)?;
    c.execute(
        "UPDATE api_keys SET status = 'revoked' WHERE tenant = $1 AND human = $2",
        &[&tenant.as_str(), &id.as_str()],
    )
    .await
    .map_err(unavailable)?;
    c.execute(
        "UPDATE agents SET status = 'suspended' WHERE tenant = $1 AND owner = $2 \
         AND status = 'active'",
        &[&tenant.as_str(), &id.as_str()],
    )
    .await
    .map_err(unavailable)?;
    // DESIGN §5: every mandate the human made, and everything below it.
    revoke_subtrees(
        c,
        tenant,
        "SELECT id FROM delegations WHERE tenant = $1 AND delegator_kind = 'human' \
         AND delegator = $2",
        id.as_str(),
        at,
    )
    .await?;
    human.status = HumanStatus::Revoked;
    Ok(AppliedValue::Human(human))
}

/// Revokes every delegation selected by `roots` (SQL selecting ids, with `$1` = tenant and
/// `$2` = one parameter) and all their descendants, and every token under them, in one
/// statement: one recursive walk of the subtree, and both updates read its ids. Returns how many
/// delegations changed.
async fn revoke_subtrees(
    c: &Conn,
    tenant: &TenantId,
    roots: &str,
    param: &str,
    at: i64,
) -> Result<u64, StoreError> {
    let row = c
        .query_one(
            &format!(
                "WITH RECURSIVE sub(id) AS ({roots} UNION \
                 SELECT d.id FROM delegations d JOIN sub ON d.parent = sub.id), \
                 revoked AS (UPDATE delegations SET status = 'revoked', revoked_at = $3 \
                   WHERE id IN (SELECT id FROM sub) AND status = 'active' RETURNING 1), \
                 tokens_revoked AS (UPDATE tokens SET status = 'revoked', revoked_at = $3 \
                   WHERE delegation IN (SELECT id FROM sub) AND status = 'active' RETURNING 1) \
                 SELECT (SELECT COUNT(*) FROM revoked), (SELECT COUNT(*) FROM tokens_revoked)"
            ),
            &[&tenant.as_str(), &param, &at],
        )
        .await
        .map_err(unavailable)?;
    let n: i64 = col(&row, 0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

async fn insert_agent(c: &Conn, a: &Agent) -> Result<(), StoreError> {
    let ceiling = serde_json::to_string(&a.ceiling)
        .map_err(|_| StoreError::Corrupt("ceiling is not serialisable".into()))?;
    c.execute(
        "INSERT INTO agents (id, tenant, owner, name, purpose, ceiling, commitment, status, \
         trust, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &a.id.as_str(),
            &a.tenant.as_str(),
            &a.owner.as_str(),
            &a.name,
            &a.purpose,
            &ceiling,
            &a.commitment,
            &enum_to(a.status),
            &i64::from(a.trust),
            &a.created_at,
            &a.last_seen_at,
        ],
    )
    .await
    .map_err(|e| on_insert(e, || format!("an agent named `{}` already exists", a.name)))?;
    for key in &a.keys {
        insert_key(c, &a.tenant, a.id.as_str(), key).await?;
    }
    Ok(())
}

async fn insert_key(
    c: &Conn,
    tenant: &TenantId,
    owner: &str,
    k: &KeyRecord,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO keys (tenant, owner, kid, x, status, created_at, retired_at, not_after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &tenant.as_str(),
            &owner,
            &k.kid,
            &&k.jwk.bytes()[..],
            &enum_to(k.status),
            &k.created_at,
            &k.retired_at,
            &k.not_after,
        ],
    )
    .await
    .map_err(|e| {
        on_insert(e, || {
            format!("the key `{}` is already registered in this tenant", k.kid)
        })
    })?;
    Ok(())
}

async fn existing_agent(c: &Conn, tenant: &TenantId, id: &AgentId) -> Result<Agent, StoreError> {
    read::agent(c, tenant, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("agent `{id}`")))
}

async fn transition_agent(
    c: &Conn,
    tenant: &TenantId,
    id: &AgentId,
    to: AgentTransition,
    at: i64,
) -> Result<AppliedValue, StoreError> {
    let mut agent = existing_agent(c, tenant, id).await?;
    let next = agent.next_status(to)?;
    if next == AgentStatus::Active && owner_is_revoked(c, &agent).await? {
        return Err(StoreError::Conflict(format!(
            "the owner of agent `{id}` is revoked; assign a new owner before resuming"
        )));
    }
    c.execute(
        "UPDATE agents SET status = $3 WHERE tenant = $1 AND id = $2",
        &[&tenant.as_str(), &id.as_str(), &enum_to(next)],
    )
    .await
    .map_err(unavailable)?;
    if next == AgentStatus::Revoked {
        // DESIGN §5: every delegation to the agent, and everything below it.
        revoke_subtrees(
            c,
            tenant,
            "SELECT id FROM delegations WHERE tenant = $1 AND delegate = $2",
            id.as_str(),
            at,
        )
        .await?;
    }
    agent.status = next;
    Ok(AppliedValue::Agent(agent))
}

async fn owner_is_revoked(c: &Conn, agent: &Agent) -> Result<bool, StoreError> {
    let row = c
        .query_opt(
            "SELECT status FROM humans WHERE tenant = $1 AND id = $2",
            &[&agent.tenant.as_str(), &agent.owner.as_str()],
        )
        .await
        .map_err(unavailable)?;
    let status: Option<String> = row.map(|r| col(&r, 0)).transpose()?;
    Ok(status.as_deref() != Some("active"))
}

async fn retire_agent_key(
    c: &Conn,
    tenant: &TenantId,
    agent: &AgentId,
    kid: &str,
    at: i64,
) -> Result<AppliedValue, StoreError> {
    let a = existing_agent(c, tenant, agent).await?;
    let key = a.check_retire_key(kid)?;
    c.execute(
        "UPDATE keys SET status = 'retired', retired_at = $4 WHERE tenant = $1 AND owner = $2 \
         AND kid = $3",
        &[&tenant.as_str(), &agent.as_str(), &kid, &at],
    )
    .await
    .map_err(unavailable)?;
    // DESIGN §5: tokens bound to the key stop working with it.
    c.execute(
        "UPDATE tokens SET status = 'revoked', revoked_at = $3 WHERE tenant = $1 AND jkt = $2 \
         AND status = 'active'",
        &[&tenant.as_str(), &kid, &at],
    )
    .await
    .map_err(unavailable)?;
    let mut key = key.clone();
    key.status = KeyStatus::Retired;
    key.retired_at = Some(at);
    Ok(AppliedValue::Key(key))
}

async fn insert_gate(c: &Conn, g: &Gate) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO gates (id, tenant, name, audience, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            &g.id.as_str(),
            &g.tenant.as_str(),
            &g.name,
            &g.audience,
            &g.created_at,
        ],
    )
    .await
    .map_err(|e| {
        on_insert(e, || {
            format!(
                "a gate named `{}` or for audience `{}` already exists",
                g.name, g.audience
            )
        })
    })?;
    for key in &g.keys {
        insert_key(c, &g.tenant, g.id.as_str(), key).await?;
    }
    Ok(())
}

/// DESIGN §7: a new pending approval; at most one open approval per request.
async fn create_approval(c: &Conn, a: Approval) -> Result<AppliedValue, StoreError> {
    let d = read::delegation(c, &a.tenant, &a.delegation)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("delegation `{}`", a.delegation)))?;
    if d.delegate != a.agent {
        return Err(StoreError::Conflict(format!(
            "delegation `{}` is not held by agent `{}`",
            a.delegation, a.agent
        )));
    }
    // Open approvals past their expiry are closed first, so that they do not block this one.
    c.execute(
        "UPDATE approvals SET status = 'expired' WHERE tenant = $1 AND delegation = $2 \
         AND request_hash = $3 AND status IN ('pending', 'approved') AND expires_at <= $4",
        &[
            &a.tenant.as_str(),
            &a.delegation.as_str(),
            &a.request_hash,
            &a.created_at,
        ],
    )
    .await
    .map_err(unavailable)?;
    let decided_by = a.decided_by.as_ref().map(|h| h.as_str().to_owned());
    c.execute(
        "INSERT INTO approvals (id, tenant, gate, delegation, agent, action, resource, summary, \
         request_hash, status, created_at, expires_at, decided_at, decided_by, consumed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            &a.id.as_str(),
            &a.tenant.as_str(),
            &a.gate.as_str(),
            &a.delegation.as_str(),
            &a.agent.as_str(),
            &a.action,
            &a.resource,
            &a.summary,
            &a.request_hash,
            &enum_to(a.status),
            &a.created_at,
            &a.expires_at,
            &a.decided_at,
            &decided_by,
            &a.consumed_at,
        ],
    )
    .await
    .map_err(|e| {
        on_insert(e, || {
            "an approval for this request is already open".to_owned()
        })
    })?;
    Ok(AppliedValue::Approval(a))
}

async fn existing_approval(
    c: &Conn,
    tenant: &TenantId,
    id: &ApprovalId,
) -> Result<Approval, StoreError> {
    read::approval(c, tenant, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("approval `{id}`")))
}

fn closed(id: &ApprovalId, status: ApprovalStatus) -> StoreError {
    StoreError::Conflict(match status {
        ApprovalStatus::Expired => format!("approval `{id}` has expired"),
        other => format!("approval `{id}` is already {}", enum_to(other)),
    })
}

struct Decision<'a> {
    tenant: &'a TenantId,
    id: &'a ApprovalId,
    approve: bool,
    by: &'a HumanId,
    at: i64,
    use_by: i64,
}

async fn decide_approval(c: &Conn, d: Decision<'_>) -> Result<AppliedValue, StoreError> {
    let mut a = existing_approval(c, d.tenant, d.id).await?;
    let now = a.status_at(d.at);
    if now != ApprovalStatus::Pending {
        return Err(closed(d.id, now));
    }
    let (status, expires_at) = if d.approve {
        (ApprovalStatus::Approved, d.use_by)
    } else {
        (ApprovalStatus::Denied, a.expires_at)
    };
    c.execute(
        "UPDATE approvals SET status = $3, decided_at = $4, decided_by = $5, expires_at = $6 \
         WHERE tenant = $1 AND id = $2 AND status = 'pending'",
        &[
            &d.tenant.as_str(),
            &d.id.as_str(),
            &enum_to(status),
            &d.at,
            &d.by.as_str(),
            &expires_at,
        ],
    )
    .await
    .map_err(unavailable)?;
    a.status = status;
    a.decided_at = Some(d.at);
    a.decided_by = Some(d.by.clone());
    a.expires_at = expires_at;
    Ok(AppliedValue::Approval(a))
}

async fn consume_approval(
    c: &Conn,
    tenant: &TenantId,
    id: &ApprovalId,
    at: i64,
) -> Result<AppliedValue, StoreError> {
    let mut a = existing_approval(c, tenant, id).await?;
    let now = a.status_at(at);
    if now != ApprovalStatus::Approved {
        return Err(closed(id, now));
    }
    c.execute(
        "UPDATE approvals SET status = 'consumed', consumed_at = $3 \
         WHERE tenant = $1 AND id = $2 AND status = 'approved'",
        &[&tenant.as_str(), &id.as_str(), &at],
    )
    .await
    .map_err(unavailable)?;
    a.status = ApprovalStatus::Consumed;
    a.consumed_at = Some(at);
    Ok(AppliedValue::Approval(a))
}

/// Refusals per agent, hour, receipt kind and first reason (for trust scores, DESIGN §8),
/// counted in the transaction that appends the receipt.
pub(crate) async fn count_denial(
    c: &Conn,
    tenant: &TenantId,
    agent: &str,
    at: i64,
    kind: &str,
    reason: &str,
) -> Result<(), StoreError> {
    let reason: String = reason.chars().take(64).collect();
    c.execute(
        "INSERT INTO agent_denials (tenant, agent, hour, kind, reason, n) \
         VALUES ($1, $2, $3, $4, $5, 1) \
         ON CONFLICT (tenant, agent, hour, kind, reason) DO UPDATE SET n = agent_denials.n + 1",
        &[
            &tenant.as_str(),
            &agent,
            &at.div_euclid(3_600_000),
            &kind,
            &reason,
        ],
    )
    .await
    .map_err(unavailable)?;
    Ok(())
}
