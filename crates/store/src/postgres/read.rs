//! Reads: row mapping and queries, the same queries as the SQLite engine's. Every query is
//! scoped by tenant.

use mandate_core::id::{AgentId, ApiKeyId, ApprovalId, DelegationId, GateId, HumanId, TenantId};
use mandate_core::jwk::PublicJwk;
use mandate_core::receipt::ReceiptHash;
use tokio_postgres::Row;

use super::Head;
use super::conn::{Conn, col, to_i64, unavailable};
use crate::{
    Agent, AgentFilter, AgentStatus, Approval, ApprovalFilter, ApprovalStatus, Client, Delegation,
    DelegationTree, Delegator, DenialCount, Gate, Human, HumanStatus, KeyRecord, KeyStatus, Page,
    Principal, StoreError, StoredReceipt, Tenant, TokenRecord, TokenView,
};

pub(crate) async fn is_empty(c: &Conn) -> Result<bool, StoreError> {
    let row = c
        .query_opt("SELECT 1 FROM tenants LIMIT 1", &[])
        .await
        .map_err(unavailable)?;
    Ok(row.is_none())
}

pub(crate) async fn chain_head(c: &Conn, tenant: &TenantId) -> Result<Head, StoreError> {
    let row = c
        .query_opt(
            "SELECT seq, hash, at FROM receipts WHERE tenant = $1 ORDER BY seq DESC LIMIT 1",
            &[&tenant.as_str()],
        )
        .await
        .map_err(unavailable)?;
    match row {
        None => Ok(Head {
            seq: 0,
            hash: ReceiptHash::GENESIS,
            at: 0,
        }),
        Some(r) => {
            let seq: i64 = col(&r, 0)?;
            let hash: Vec<u8> = col(&r, 1)?;
            Ok(Head {
                seq: u64::try_from(seq).map_err(|_| corrupt("receipt seq"))?,
                hash: ReceiptHash(hash.try_into().map_err(|_| corrupt("receipt hash"))?),
                at: col(&r, 2)?,
            })
        }
    }
}

/// The head of `tenant`'s chain, or `None` if the tenant does not exist (the writer's read).
pub(crate) async fn writer_head(c: &Conn, tenant: &TenantId) -> Result<Option<Head>, StoreError> {
    let r = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1), h.seq, h.hash, h.at \
             FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT seq, hash, at FROM receipts \
             WHERE tenant = $1 ORDER BY seq DESC LIMIT 1) AS h ON true",
            &[&tenant.as_str()],
        )
        .await
        .map_err(unavailable)?;
    let known: bool = col(&r, 0)?;
    if !known {
        return Ok(None);
    }
    let seq: Option<i64> = col(&r, 1)?;
    let hash: Option<Vec<u8>> = col(&r, 2)?;
    let at: Option<i64> = col(&r, 3)?;
    match (seq, hash, at) {
        (Some(seq), Some(hash), Some(at)) => Ok(Some(Head {
            seq: u64::try_from(seq).map_err(|_| corrupt("receipt seq"))?,
            hash: ReceiptHash(hash.try_into().map_err(|_| corrupt("receipt hash"))?),
            at,
        })),
        _ => Ok(Some(Head {
            seq: 0,
            hash: ReceiptHash::GENESIS,
            at: 0,
        })),
    }
}

/// The head `seq` of every tenant's chain (0 for a tenant without receipts).
pub(crate) async fn all_heads(c: &Conn) -> Result<Vec<(TenantId, u64)>, StoreError> {
    let rows = c
        .query(
            "SELECT t.id, COALESCE((SELECT MAX(r.seq) FROM receipts r WHERE r.tenant = t.id), 0) \
             FROM tenants t",
            &[],
        )
        .await
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = col(&r, 0)?;
        let seq: i64 = col(&r, 1)?;
        out.push((
            TenantId::parse(&id).map_err(|_| corrupt("tenant id"))?,
            u64::try_from(seq).map_err(|_| corrupt("receipt seq"))?,
        ));
    }
    Ok(out)
}

pub(crate) async fn principal_by_api_key(
    c: &Conn,
    hash: &[u8; 32],
) -> Result<Option<Principal>, StoreError> {
    let row = c
        .query_opt(
            "SELECT k.id, k.human FROM api_keys k JOIN humans h ON h.id = k.human \
             WHERE k.hash = $1 AND k.status = 'active' AND h.status = 'active'",
            &[&&hash[..]],
        )
        .await
        .map_err(unavailable)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let key: String = col(&row, 0)?;
    let human: String = col(&row, 1)?;
    let human_id = HumanId::parse(&human).map_err(|_| corrupt("human id"))?;
    let human = c
        .query_opt(
            &format!("SELECT {HUMAN_COLS} FROM humans WHERE id = $1"),
            &[&human_id.as_str()],
        )
        .await
        .map_err(unavailable)?
        .map(|r| human_row(&r))
        .transpose()?;
    let Some(human) = human else {
        return Ok(None);
    };
    let Some(tenant) = tenant(c, &human.tenant).await? else {
        return Ok(None);
    };
    Ok(Some(Principal {
        key: ApiKeyId::parse(&key).map_err(|_| corrupt("api key id"))?,
        human,
        tenant,
    }))
}

pub(crate) async fn tenant(c: &Conn, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
    let row = c
        .query_opt(
            "SELECT id, name, operator, created_at FROM tenants WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .map_err(unavailable)?;
    let Some(r) = row else { return Ok(None) };
    let id: String = col(&r, 0)?;
    Ok(Some(Tenant {
        id: TenantId::parse(&id).map_err(|_| corrupt("tenant id"))?,
        name: col(&r, 1)?,
        operator: col(&r, 2)?,
        created_at: col(&r, 3)?,
    }))
}

pub(crate) const HUMAN_COLS: &str = "id, tenant, name, email, role, status, created_at";

pub(crate) fn human_row(r: &Row) -> Result<Human, StoreError> {
    let id: String = col(r, 0)?;
    let tenant: String = col(r, 1)?;
    let role: String = col(r, 4)?;
    let status: String = col(r, 5)?;
    Ok(Human {
        id: HumanId::parse(&id).map_err(|_| corrupt("human id"))?,
        tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant id"))?,
        name: col(r, 2)?,
        email: col(r, 3)?,
        role: enum_from(&role)?,
        status: enum_from::<HumanStatus>(&status)?,
        created_at: col(r, 6)?,
    })
}

pub(crate) async fn human(
    c: &Conn,
    tenant: &TenantId,
    id: &HumanId,
) -> Result<Option<Human>, StoreError> {
    c.query_opt(
        &format!("SELECT {HUMAN_COLS} FROM humans WHERE tenant = $1 AND id = $2"),
        &[&tenant.as_str(), &id.as_str()],
    )
    .await
    .map_err(unavailable)?
    .map(|r| human_row(&r))
    .transpose()
}

pub(crate) async fn humans(
    c: &Conn,
    tenant: &TenantId,
    page: &Page,
) -> Result<Vec<Human>, StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT {HUMAN_COLS} FROM humans WHERE tenant = $1 AND id > $2 ORDER BY id \
                 LIMIT $3"
            ),
            &[
                &tenant.as_str(),
                &page.after.as_deref().unwrap_or(""),
                &i64::from(page.limit),
            ],
        )
        .await
        .map_err(unavailable)?;
    rows.iter().map(human_row).collect()
}

const AGENT_COLS: &str = "id, tenant, owner, name, purpose, ceiling, commitment, status, trust, \
                          created_at, last_seen_at";

async fn agent_row(c: &Conn, r: &Row) -> Result<Agent, StoreError> {
    let id: String = col(r, 0)?;
    let tenant: String = col(r, 1)?;
    let owner: String = col(r, 2)?;
    let ceiling: String = col(r, 5)?;
    let status: String = col(r, 7)?;
    let trust: i64 = col(r, 8)?;
    Ok(Agent {
        keys: keys(c, &id).await?,
        id: AgentId::parse(&id).map_err(|_| corrupt("agent id"))?,
        tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant id"))?,
        owner: HumanId::parse(&owner).map_err(|_| corrupt("owner id"))?,
        name: col(r, 3)?,
        purpose: col(r, 4)?,
        ceiling: serde_json::from_str(&ceiling).map_err(|_| corrupt("agent ceiling"))?,
        commitment: col(r, 6)?,
        status: enum_from(&status)?,
        trust: u8::try_from(trust).map_err(|_| corrupt("agent trust"))?,
        created_at: col(r, 9)?,
        last_seen_at: col(r, 10)?,
    })
}

pub(crate) async fn agent(
    c: &Conn,
    tenant: &TenantId,
    id: &AgentId,
) -> Result<Option<Agent>, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {AGENT_COLS} FROM agents WHERE tenant = $1 AND id = $2"),
            &[&tenant.as_str(), &id.as_str()],
        )
        .await
        .map_err(unavailable)?;
    match row {
        Some(r) => agent_row(c, &r).await.map(Some),
        None => Ok(None),
    }
}

pub(crate) async fn agents(
    c: &Conn,
    tenant: &TenantId,
    filter: &AgentFilter,
    page: &Page,
) -> Result<Vec<Agent>, StoreError> {
    let status = filter.status.map(enum_to);
    let owner = filter.owner.as_ref().map(|o| o.as_str().to_owned());
    let rows = c
        .query(
            &format!(
                "SELECT {AGENT_COLS} FROM agents WHERE tenant = $1 AND id > $2 \
                 AND ($3::TEXT IS NULL OR status = $3::TEXT) \
                 AND ($4::TEXT IS NULL OR owner = $4::TEXT) ORDER BY id LIMIT $5"
            ),
            &[
                &tenant.as_str(),
                &page.after.as_deref().unwrap_or(""),
                &status,
                &owner,
                &i64::from(page.limit),
            ],
        )
        .await
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(agent_row(c, r).await?);
    }
    Ok(out)
}

pub(crate) async fn keys(c: &Conn, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
    let rows = c
        .query(
            "SELECT kid, x, status, created_at, retired_at, not_after FROM keys WHERE owner = $1 \
             ORDER BY created_at, kid",
            &[&owner],
        )
        .await
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let x: Vec<u8> = col(&r, 1)?;
        let status: String = col(&r, 2)?;
        let bytes: [u8; 32] = x.try_into().map_err(|_| corrupt("key bytes"))?;
        out.push(KeyRecord {
            kid: col(&r, 0)?,
            jwk: public_key(&bytes)?,
            status: enum_from::<KeyStatus>(&status)?,
            created_at: col(&r, 3)?,
            retired_at: col(&r, 4)?,
            not_after: col(&r, 5)?,
        });
    }
    Ok(out)
}

const GATE_COLS: &str = "id, tenant, name, audience, created_at";

async fn gate_row(c: &Conn, r: &Row) -> Result<Gate, StoreError> {
    let id: String = col(r, 0)?;
    let tenant: String = col(r, 1)?;
    Ok(Gate {
        keys: keys(c, &id).await?,
        id: GateId::parse(&id).map_err(|_| corrupt("gate id"))?,
        tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant id"))?,
        name: col(r, 2)?,
        audience: col(r, 3)?,
        created_at: col(r, 4)?,
    })
}

pub(crate) async fn gate(
    c: &Conn,
    tenant: &TenantId,
    id: &GateId,
) -> Result<Option<Gate>, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {GATE_COLS} FROM gates WHERE tenant = $1 AND id = $2"),
            &[&tenant.as_str(), &id.as_str()],
        )
        .await
        .map_err(unavailable)?;
    match row {
        Some(r) => gate_row(c, &r).await.map(Some),
        None => Ok(None),
    }
}

pub(crate) async fn gates(
    c: &Conn,
    tenant: &TenantId,
    page: &Page,
) -> Result<Vec<Gate>, StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT {GATE_COLS} FROM gates WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3"
            ),
            &[
                &tenant.as_str(),
                &page.after.as_deref().unwrap_or(""),
                &i64::from(page.limit),
            ],
        )
        .await
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(gate_row(c, r).await?);
    }
    Ok(out)
}

pub(crate) async fn receipts(
    c: &Conn,
    tenant: &TenantId,
    after: u64,
    limit: u32,
) -> Result<Vec<StoredReceipt>, StoreError> {
    let rows = c
        .query(
            "SELECT seq, hash, body FROM receipts WHERE tenant = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
            &[&tenant.as_str(), &to_i64(after), &i64::from(limit)],
        )
        .await
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = col(&r, 0)?;
        let hash: Vec<u8> = col(&r, 1)?;
        out.push(StoredReceipt {
            seq: u64::try_from(seq).map_err(|_| corrupt("receipt seq"))?,
            // A wrong-length hash is reported as all-zero so that verification, not the
            // store, names the bad record.
            hash: hash.try_into().unwrap_or([0u8; 32]),
            body: col(&r, 2)?,
        });
    }
    Ok(out)
}

/// A stored public key, validated once per process (see the SQLite engine's twin).
fn public_key(bytes: &[u8; 32]) -> Result<PublicJwk, StoreError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    const MAX: usize = 4096;
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], PublicJwk>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(k) = cache.lock().ok().and_then(|c| c.get(bytes).cloned()) {
        return Ok(k);
    }
    let key = PublicJwk::from_bytes(bytes).map_err(|_| corrupt("key bytes"))?;
    if let Ok(mut c) = cache.lock() {
        if c.len() >= MAX {
            c.clear();
        }
        c.insert(*bytes, key.clone());
    }
    Ok(key)
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("invalid {what}"))
}

pub(crate) fn enum_from<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("unknown value `{s}`")))
}

pub(crate) fn enum_to<T: serde::Serialize>(v: T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

pub(crate) const DELEGATION_COLS: &str = "id, tenant, parent, root, delegator_kind, delegator, \
    delegate, scope, prohibitions, purpose, task, depth, max_depth, expires_at, created_at, \
    status, revoked_at, digest, human_signature";

pub(crate) fn delegation_row(r: &Row) -> Result<Delegation, StoreError> {
    let id: String = col(r, 0)?;
    let tenant: String = col(r, 1)?;
    let parent: Option<String> = col(r, 2)?;
    let root: String = col(r, 3)?;
    let kind: String = col(r, 4)?;
    let delegator: String = col(r, 5)?;
    let delegate: String = col(r, 6)?;
    let scope: String = col(r, 7)?;
    let prohibitions: String = col(r, 8)?;
    let depth: i64 = col(r, 11)?;
    let max_depth: i64 = col(r, 12)?;
    let status: String = col(r, 15)?;
    let did = |s: &str| DelegationId::parse(s).map_err(|_| corrupt("delegation id"));
    Ok(Delegation {
        id: did(&id)?,
        tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant id"))?,
        parent: parent.as_deref().map(did).transpose()?,
        root: did(&root)?,
        delegator: match kind.as_str() {
            "human" => {
                Delegator::Human(HumanId::parse(&delegator).map_err(|_| corrupt("delegator"))?)
            }
            "agent" => {
                Delegator::Agent(AgentId::parse(&delegator).map_err(|_| corrupt("delegator"))?)
            }
            _ => return Err(corrupt("delegator kind")),
        },
        delegate: AgentId::parse(&delegate).map_err(|_| corrupt("delegate"))?,
        scope: serde_json::from_str(&scope).map_err(|_| corrupt("scope"))?,
        prohibitions: serde_json::from_str(&prohibitions).map_err(|_| corrupt("prohibitions"))?,
        purpose: col(r, 9)?,
        task: col(r, 10)?,
        depth: u8::try_from(depth).map_err(|_| corrupt("depth"))?,
        max_depth: u8::try_from(max_depth).map_err(|_| corrupt("max depth"))?,
        expires_at: col(r, 13)?,
        created_at: col(r, 14)?,
        status: enum_from(&status)?,
        revoked_at: col(r, 16)?,
        digest: col(r, 17)?,
        human_signature: col(r, 18)?,
    })
}

pub(crate) async fn delegation(
    c: &Conn,
    tenant: &TenantId,
    id: &DelegationId,
) -> Result<Option<Delegation>, StoreError> {
    c.query_opt(
        &format!("SELECT {DELEGATION_COLS} FROM delegations WHERE tenant = $1 AND id = $2"),
        &[&tenant.as_str(), &id.as_str()],
    )
    .await
    .map_err(unavailable)?
    .map(|r| delegation_row(&r))
    .transpose()
}

/// The chain from the mandate down to `id` (root first). Bounded by the depth hard cap.
pub(crate) async fn chain(
    c: &Conn,
    tenant: &TenantId,
    id: &DelegationId,
) -> Result<Vec<Delegation>, StoreError> {
    let mut out = Vec::new();
    let mut next = Some(id.clone());
    while let Some(id) = next {
        if out.len() > usize::from(mandate_core::scope::MAX_DEPTH_HARD_CAP) {
            return Err(corrupt("delegation chain longer than the hard cap"));
        }
        let d = delegation(c, tenant, &id)
            .await?
            .ok_or_else(|| corrupt("delegation chain has a missing link"))?;
        next = d.parent.clone();
        out.push(d);
    }
    out.reverse();
    Ok(out)
}

/// Active, unexpired mandates (delegations from humans) whose delegate is `agent`.
pub(crate) async fn active_mandates(
    c: &Conn,
    tenant: &TenantId,
    agent: &AgentId,
    now: i64,
) -> Result<Vec<Delegation>, StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT {DELEGATION_COLS} FROM delegations WHERE tenant = $1 AND delegate = $2 \
                 AND status = 'active' AND parent IS NULL AND expires_at > $3 ORDER BY id \
                 LIMIT 101"
            ),
            &[&tenant.as_str(), &agent.as_str(), &now],
        )
        .await
        .map_err(unavailable)?;
    rows.iter().map(delegation_row).collect()
}

/// An agent or gate by id, in whichever tenant it lives (client authentication).
pub(crate) async fn client(c: &Conn, id: &str) -> Result<Option<Client>, StoreError> {
    if let Ok(aid) = AgentId::parse(id) {
        let row = c
            .query_opt("SELECT tenant FROM agents WHERE id = $1", &[&aid.as_str()])
            .await
            .map_err(unavailable)?;
        let Some(r) = row else { return Ok(None) };
        let t: String = col(&r, 0)?;
        let t = TenantId::parse(&t).map_err(|_| corrupt("tenant id"))?;
        return Ok(agent(c, &t, &aid).await?.map(Client::Agent));
    }
    if let Ok(gid) = GateId::parse(id) {
        let row = c
            .query_opt("SELECT tenant FROM gates WHERE id = $1", &[&gid.as_str()])
            .await
            .map_err(unavailable)?;
        let Some(r) = row else { return Ok(None) };
        let t: String = col(&r, 0)?;
        let t = TenantId::parse(&t).map_err(|_| corrupt("tenant id"))?;
        return Ok(gate(c, &t, &gid).await?.map(Client::Gate));
    }
    Ok(None)
}

/// A token with its chain and agent, in whichever tenant it lives.
pub(crate) async fn token_view(c: &Conn, jti: &str) -> Result<Option<TokenView>, StoreError> {
    let row = c
        .query_opt(
            "SELECT tenant, delegation, agent, jkt, issued_at, expires_at, status, status_idx \
             FROM tokens WHERE jti = $1",
            &[&jti],
        )
        .await
        .map_err(unavailable)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let tenant: String = col(&row, 0)?;
    let delegation: String = col(&row, 1)?;
    let agent_id: String = col(&row, 2)?;
    let status: String = col(&row, 6)?;
    let status_idx: Option<i64> = col(&row, 7)?;
    let tenant = TenantId::parse(&tenant).map_err(|_| corrupt("tenant id"))?;
    let delegation = DelegationId::parse(&delegation).map_err(|_| corrupt("delegation id"))?;
    let agent_id = AgentId::parse(&agent_id).map_err(|_| corrupt("agent id"))?;
    let Some(a) = agent(c, &tenant, &agent_id).await? else {
        return Err(corrupt("token of a missing agent"));
    };
    let chain = chain(c, &tenant, &delegation).await?;
    let mut delegate_statuses = Vec::with_capacity(chain.len());
    for d in &chain {
        delegate_statuses.push(
            agent_status(c, &tenant, &d.delegate)
                .await?
                .ok_or_else(|| corrupt("delegation to a missing agent"))?,
        );
    }
    Ok(Some(TokenView {
        delegate_statuses,
        chain,
        token: TokenRecord {
            jti: jti.to_owned(),
            tenant,
            delegation,
            agent: agent_id,
            jkt: col(&row, 3)?,
            issued_at: col(&row, 4)?,
            expires_at: col(&row, 5)?,
            status: enum_from(&status)?,
            status_idx: status_idx.and_then(|i| u64::try_from(i).ok()),
        },
        agent: a,
    }))
}

/// Status of an agent.
pub(crate) async fn agent_status(
    c: &Conn,
    tenant: &TenantId,
    id: &AgentId,
) -> Result<Option<AgentStatus>, StoreError> {
    let row = c
        .query_opt(
            "SELECT status FROM agents WHERE tenant = $1 AND id = $2",
            &[&tenant.as_str(), &id.as_str()],
        )
        .await
        .map_err(unavailable)?;
    match row {
        Some(r) => {
            let s: String = col(&r, 0)?;
            enum_from(&s).map(Some)
        }
        None => Ok(None),
    }
}

/// A delegation and its whole subtree.
pub(crate) async fn tree(
    c: &Conn,
    tenant: &TenantId,
    id: &DelegationId,
) -> Result<Option<DelegationTree>, StoreError> {
    let Some(root) = delegation(c, tenant, id).await? else {
        return Ok(None);
    };
    let rows = c
        .query(
            &format!(
                "WITH RECURSIVE sub(id) AS (SELECT $2::TEXT COLLATE \"C\" UNION ALL \
                 SELECT d.id FROM delegations d JOIN sub ON d.parent = sub.id) \
                 SELECT {DELEGATION_COLS} FROM delegations WHERE tenant = $1 \
                 AND id IN (SELECT id FROM sub) AND id != $2 ORDER BY id"
            ),
            &[&tenant.as_str(), &id.as_str()],
        )
        .await
        .map_err(unavailable)?;
    let all = rows
        .iter()
        .map(delegation_row)
        .collect::<Result<Vec<_>, _>>()?;
    fn build(node: Delegation, all: &[Delegation]) -> DelegationTree {
        let children = all
            .iter()
            .filter(|d| d.parent.as_ref() == Some(&node.id))
            .map(|d| build(d.clone(), all))
            .collect();
        DelegationTree {
            delegation: node,
            children,
        }
    }
    Ok(Some(build(root, &all)))
}

/// Delegations to `agent` (in) and from `agent` (out), newest first, at most 500 each.
pub(crate) async fn agent_delegations(
    c: &Conn,
    tenant: &TenantId,
    agent: &AgentId,
) -> Result<(Vec<Delegation>, Vec<Delegation>), StoreError> {
    let incoming = c
        .query(
            &format!(
                "SELECT {DELEGATION_COLS} FROM delegations WHERE tenant = $1 AND delegate = $2 \
                 ORDER BY id DESC LIMIT 500"
            ),
            &[&tenant.as_str(), &agent.as_str()],
        )
        .await
        .map_err(unavailable)?;
    let outgoing = c
        .query(
            &format!(
                "SELECT {DELEGATION_COLS} FROM delegations WHERE tenant = $1 \
                 AND delegator_kind = 'agent' AND delegator = $2 ORDER BY id DESC LIMIT 500"
            ),
            &[&tenant.as_str(), &agent.as_str()],
        )
        .await
        .map_err(unavailable)?;
    Ok((
        incoming
            .iter()
            .map(delegation_row)
            .collect::<Result<_, _>>()?,
        outgoing
            .iter()
            .map(delegation_row)
            .collect::<Result<_, _>>()?,
    ))
}

/// The highest status-list index ever recorded.
pub(crate) async fn max_status_idx(c: &Conn) -> Result<Option<u64>, StoreError> {
    let row = c
        .query_one("SELECT MAX(status_idx) FROM tokens", &[])
        .await
        .map_err(unavailable)?;
    let v: Option<i64> = col(&row, 0)?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

/// The tokens whose status index lies in `[lo, hi)`, with their chains.
pub(crate) async fn tokens_in_status_range(
    c: &Conn,
    lo: u64,
    hi: u64,
) -> Result<Vec<TokenView>, StoreError> {
    let rows = c
        .query(
            "SELECT jti FROM tokens WHERE status_idx >= $1 AND status_idx < $2 \
             ORDER BY status_idx",
            &[&to_i64(lo), &to_i64(hi)],
        )
        .await
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let jti: String = col(&r, 0)?;
        if let Some(v) = token_view(c, &jti).await? {
            out.push(v);
        }
    }
    Ok(out)
}

const APPROVAL_COLS: &str = "id, tenant, gate, delegation, agent, action, resource, summary, \
    request_hash, status, created_at, expires_at, decided_at, decided_by, consumed_at";

fn approval_row(r: &Row) -> Result<Approval, StoreError> {
    let id: String = col(r, 0)?;
    let tenant: String = col(r, 1)?;
    let gate: String = col(r, 2)?;
    let delegation: String = col(r, 3)?;
    let agent: String = col(r, 4)?;
    let status: String = col(r, 9)?;
    let decided_by: Option<String> = col(r, 13)?;
    Ok(Approval {
        id: ApprovalId::parse(&id).map_err(|_| corrupt("approval id"))?,
        tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant id"))?,
        gate: GateId::parse(&gate).map_err(|_| corrupt("gate id"))?,
        delegation: DelegationId::parse(&delegation).map_err(|_| corrupt("delegation id"))?,
        agent: AgentId::parse(&agent).map_err(|_| corrupt("agent id"))?,
        action: col(r, 5)?,
        resource: col(r, 6)?,
        summary: col(r, 7)?,
        request_hash: col(r, 8)?,
        status: enum_from(&status)?,
        created_at: col(r, 10)?,
        expires_at: col(r, 11)?,
        decided_at: col(r, 12)?,
        decided_by: decided_by
            .as_deref()
            .map(HumanId::parse)
            .transpose()
            .map_err(|_| corrupt("human id"))?,
        consumed_at: col(r, 14)?,
    })
}

pub(crate) async fn approval(
    c: &Conn,
    tenant: &TenantId,
    id: &ApprovalId,
) -> Result<Option<Approval>, StoreError> {
    c.query_opt(
        &format!("SELECT {APPROVAL_COLS} FROM approvals WHERE tenant = $1 AND id = $2"),
        &[&tenant.as_str(), &id.as_str()],
    )
    .await
    .map_err(unavailable)?
    .map(|r| approval_row(&r))
    .transpose()
}

/// Approvals whose status at `now` matches the filter (expiry is applied here, not stored).
pub(crate) async fn approvals(
    c: &Conn,
    tenant: &TenantId,
    filter: &ApprovalFilter,
    page: &Page,
    now: i64,
) -> Result<Vec<Approval>, StoreError> {
    let condition = match filter.status {
        None => "$4::BIGINT IS NOT NULL",
        Some(ApprovalStatus::Pending) => "status = 'pending' AND expires_at > $4",
        Some(ApprovalStatus::Approved) => "status = 'approved' AND expires_at > $4",
        Some(ApprovalStatus::Denied) => "status = 'denied' AND $4::BIGINT IS NOT NULL",
        Some(ApprovalStatus::Consumed) => "status = 'consumed' AND $4::BIGINT IS NOT NULL",
        Some(ApprovalStatus::Expired) => {
            "(status = 'expired' OR (status IN ('pending', 'approved') AND expires_at <= $4))"
        }
    };
    let rows = c
        .query(
            &format!(
                "SELECT {APPROVAL_COLS} FROM approvals WHERE tenant = $1 AND id > $2 \
                 AND {condition} ORDER BY id LIMIT $3"
            ),
            &[
                &tenant.as_str(),
                &page.after.as_deref().unwrap_or(""),
                &i64::from(page.limit),
                &now,
            ],
        )
        .await
        .map_err(unavailable)?;
    rows.iter().map(approval_row).collect()
}

/// The newest approval for one request under one delegation.
pub(crate) async fn approval_for_request(
    c: &Conn,
    tenant: &TenantId,
    delegation: &DelegationId,
    request_hash: &str,
) -> Result<Option<Approval>, StoreError> {
    c.query_opt(
        &format!(
            "SELECT {APPROVAL_COLS} FROM approvals WHERE tenant = $1 AND delegation = $2 \
             AND request_hash = $3 ORDER BY id DESC LIMIT 1"
        ),
        &[&tenant.as_str(), &delegation.as_str(), &request_hash],
    )
    .await
    .map_err(unavailable)?
    .map(|r| approval_row(&r))
    .transpose()
}

/// The ids among `jtis` already recorded as used (`kind`, `scope`), in the order given.
pub(crate) async fn used_jtis(
    c: &Conn,
    kind: &str,
    scope: &str,
    jtis: &[String],
) -> Result<Vec<String>, StoreError> {
    if jtis.is_empty() {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            "SELECT jti FROM used_jtis WHERE kind = $1 AND scope = $2 AND jti = ANY($3)",
            &[&kind, &scope, &jtis],
        )
        .await
        .map_err(unavailable)?;
    let mut found = std::collections::HashSet::with_capacity(rows.len());
    for r in rows {
        found.insert(col::<String>(&r, 0)?);
    }
    Ok(jtis
        .iter()
        .filter(|j| found.contains(*j))
        .cloned()
        .collect())
}

/// Refusal counts of `agents` from the hour of `since` on.
pub(crate) async fn agent_denials(
    c: &Conn,
    tenant: &TenantId,
    agents: &[AgentId],
    since: i64,
) -> Result<Vec<DenialCount>, StoreError> {
    let hour = since.div_euclid(3_600_000);
    let mut out = Vec::new();
    for agent in agents {
        let rows = c
            .query(
                "SELECT kind, reason, SUM(n)::BIGINT FROM agent_denials WHERE tenant = $1 \
                 AND agent = $2 AND hour >= $3 GROUP BY kind, reason ORDER BY kind, reason",
                &[&tenant.as_str(), &agent.as_str(), &hour],
            )
            .await
            .map_err(unavailable)?;
        for r in rows {
            let n: i64 = col(&r, 2)?;
            out.push(DenialCount {
                agent: agent.clone(),
                kind: col(&r, 0)?,
                reason: col(&r, 1)?,
                count: u64::try_from(n).unwrap_or(0),
            });
        }
    }
    Ok(out)
}
