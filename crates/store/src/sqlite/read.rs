//! Reads: row mapping and queries. Every query is scoped by tenant.

use mandate_core::id::{AgentId, ApiKeyId, ApprovalId, DelegationId, GateId, HumanId, TenantId};
use mandate_core::jwk::PublicJwk;
use mandate_core::receipt::ReceiptHash;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Head, unavailable};
use crate::{
    Agent, AgentFilter, Approval, ApprovalFilter, ApprovalStatus, Client, Delegation,
    DelegationTree, Delegator, DenialCount, Gate, Human, HumanStatus, KeyRecord, KeyStatus, Page,
    Principal, StoreError, StoredReceipt, Tenant, TokenRecord, TokenView,
};

pub(crate) fn is_empty(c: &Connection) -> Result<bool, StoreError> {
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM tenants", [], |r| r.get(0))
        .map_err(unavailable)?;
    Ok(n == 0)
}

pub(crate) fn chain_head(c: &Connection, tenant: &TenantId) -> Result<Head, StoreError> {
    let row: Option<(i64, Vec<u8>, i64)> = c
        .query_row(
            "SELECT seq, hash, at FROM receipts WHERE tenant = ?1 ORDER BY seq DESC LIMIT 1",
            params![tenant.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(unavailable)?;
    match row {
        None => Ok(Head {
            seq: 0,
            hash: ReceiptHash::GENESIS,
            at: 0,
        }),
        Some((seq, hash, at)) => Ok(Head {
            seq: u64::try_from(seq).map_err(|_| corrupt("receipt seq"))?,
            hash: ReceiptHash(hash.try_into().map_err(|_| corrupt("receipt hash"))?),
            at,
        }),
    }
}

pub(crate) fn principal_by_api_key(
    c: &Connection,
    hash: &[u8; 32],
) -> Result<Option<Principal>, StoreError> {
    let row: Option<(String, String)> = c
        .query_row(
            "SELECT k.id, k.human FROM api_keys k JOIN humans h ON h.id = k.human \
             WHERE k.hash = ?1 AND k.status = 'active' AND h.status = 'active'",
            params![&hash[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(unavailable)?;
    let Some((key, human)) = row else {
        return Ok(None);
    };
    let human_id = HumanId::parse(&human).map_err(|_| corrupt("human id"))?;
    let human: Option<Human> = c
        .query_row(
            &format!("SELECT {HUMAN_COLS} FROM humans WHERE id = ?1"),
            params![human_id.as_str()],
            human_row,
        )
        .optional()
        .map_err(unavailable)?
        .transpose()?;
    let Some(human) = human else {
        return Ok(None);
    };
    let Some(tenant) = tenant(c, &human.tenant)? else {
        return Ok(None);
    };
    Ok(Some(Principal {
        key: ApiKeyId::parse(&key).map_err(|_| corrupt("api key id"))?,
        human,
        tenant,
    }))
}

pub(crate) fn tenant(c: &Connection, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
    c.query_row(
        "SELECT id, name, operator, created_at FROM tenants WHERE id = ?1",
        params![id.as_str()],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )
    .optional()
    .map_err(unavailable)?
    .map(|(id, name, operator, created_at)| {
        Ok(Tenant {
            id: TenantId::parse(&id).map_err(|_| corrupt("tenant id"))?,
            name,
            operator: operator != 0,
            created_at,
        })
    })
    .transpose()
}

pub(crate) const HUMAN_COLS: &str = "id, tenant, name, email, role, status, created_at";

pub(crate) fn human_row(r: &Row<'_>) -> rusqlite::Result<Result<Human, StoreError>> {
    let id: String = r.get(0)?;
    let tenant: String = r.get(1)?;
    let role: String = r.get(4)?;
    let status: String = r.get(5)?;
    let name: String = r.get(2)?;
    let email: String = r.get(3)?;
    let created_at: i64 = r.get(6)?;
    Ok((|| {
        Ok(Human {
            id: HumanId::parse(&id).map_err(|_| corrupt("human id"))?,
            tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant id"))?,
            name,
            email,
            role: enum_from(&role)?,
            status: enum_from::<HumanStatus>(&status)?,
            created_at,
        })
    })())
}

pub(crate) fn human(
    c: &Connection,
    tenant: &TenantId,
    id: &HumanId,
) -> Result<Option<Human>, StoreError> {
    c.query_row(
        &format!("SELECT {HUMAN_COLS} FROM humans WHERE tenant = ?1 AND id = ?2"),
        params![tenant.as_str(), id.as_str()],
        human_row,
    )
    .optional()
    .map_err(unavailable)?
    .transpose()
}

pub(crate) fn humans(
    c: &Connection,
    tenant: &TenantId,
    page: &Page,
) -> Result<Vec<Human>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {HUMAN_COLS} FROM humans WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(
            params![
                tenant.as_str(),
                page.after.as_deref().unwrap_or(""),
                page.limit
            ],
            human_row,
        )
        .map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)?).collect()
}

const AGENT_COLS: &str = "id, tenant, owner, name, purpose, ceiling, commitment, status, trust, \
                          created_at, last_seen_at";

fn agent_row(c: &Connection, r: &Row<'_>) -> Result<Agent, StoreError> {
    let get = |e: rusqlite::Error| unavailable(e);
    let id: String = r.get(0).map_err(get)?;
    let tenant: String = r.get(1).map_err(get)?;
    let owner: String = r.get(2).map_err(get)?;
    let ceiling: String = r.get(5).map_err(get)?;
    let status: String = r.get(7).map_err(get)?;
    let trust: i64 = r.get(8).map_err(get)?;
    Ok(Agent {
        keys: keys(c, &id)?,
        id: AgentId::parse(&id).map_err(|_| corrupt("agent id"))?,
        tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant id"))?,
        owner: HumanId::parse(&owner).map_err(|_| corrupt("owner id"))?,
        name: r.get(3).map_err(get)?,
        purpose: r.get(4).map_err(get)?,
        ceiling: serde_json::from_str(&ceiling).map_err(|_| corrupt("agent ceiling"))?,
        commitment: r.get(6).map_err(get)?,
        status: enum_from(&status)?,
        trust: u8::try_from(trust).map_err(|_| corrupt("agent trust"))?,
        created_at: r.get(9).map_err(get)?,
        last_seen_at: r.get(10).map_err(get)?,
    })
}

pub(crate) fn agent(
    c: &Connection,
    tenant: &TenantId,
    id: &AgentId,
) -> Result<Option<Agent>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {AGENT_COLS} FROM agents WHERE tenant = ?1 AND id = ?2"
        ))
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(params![tenant.as_str(), id.as_str()])
        .map_err(unavailable)?;
    match rows.next().map_err(unavailable)? {
        Some(r) => agent_row(c, r).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn agents(
    c: &Connection,
    tenant: &TenantId,
    filter: &AgentFilter,
    page: &Page,
) -> Result<Vec<Agent>, StoreError> {
    let status = filter.status.map(enum_to);
    let owner = filter.owner.as_ref().map(|o| o.as_str().to_owned());
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {AGENT_COLS} FROM agents WHERE tenant = ?1 AND id > ?2 \
             AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR owner = ?4) ORDER BY id LIMIT ?5"
        ))
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(params![
            tenant.as_str(),
            page.after.as_deref().unwrap_or(""),
            status,
            owner,
            page.limit
        ])
        .map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        out.push(agent_row(c, r)?);
    }
    Ok(out)
}

pub(crate) fn keys(c: &Connection, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT kid, x, status, created_at, retired_at, not_after FROM keys WHERE owner = ?1 \
             ORDER BY created_at, kid",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![owner], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let (kid, x, status, created_at, retired_at, not_after) = row.map_err(unavailable)?;
        let bytes: [u8; 32] = x.try_into().map_err(|_| corrupt("key bytes"))?;
        out.push(KeyRecord {
            kid,
            jwk: public_key(&bytes)?,
            status: enum_from::<KeyStatus>(&status)?,
            created_at,
            retired_at,
            not_after,
        });
    }
    Ok(out)
}

const GATE_COLS: &str = "id, tenant, name, audience, created_at";

fn gate_row(c: &Connection, r: &Row<'_>) -> Result<Gate, StoreError> {
    let get = |e: rusqlite::Error| unavailable(e);
    let id: String = r.get(0).map_err(get)?;
    let tenant: String = r.get(1).map_err(get)?;
    Ok(Gate {
        keys: keys(c, &id)?,
        id: GateId::parse(&id).map_err(|_| corrupt("gate id"))?,
        tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant id"))?,
        name: r.get(2).map_err(get)?,
        audience: r.get(3).map_err(get)?,
        created_at: r.get(4).map_err(get)?,
    })
}

pub(crate) fn gate(
    c: &Connection,
    tenant: &TenantId,
    id: &GateId,
) -> Result<Option<Gate>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {GATE_COLS} FROM gates WHERE tenant = ?1 AND id = ?2"
        ))
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(params![tenant.as_str(), id.as_str()])
        .map_err(unavailable)?;
    match rows.next().map_err(unavailable)? {
        Some(r) => gate_row(c, r).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn gates(
    c: &Connection,
    tenant: &TenantId,
    page: &Page,
) -> Result<Vec<Gate>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {GATE_COLS} FROM gates WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(params![
            tenant.as_str(),
            page.after.as_deref().unwrap_or(""),
            page.limit
        ])
        .map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        out.push(gate_row(c, r)?);
    }
    Ok(out)
}

pub(crate) fn receipts(
    c: &Connection,
    tenant: &TenantId,
    after: u64,
    limit: u32,
) -> Result<Vec<StoredReceipt>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT seq, hash, body FROM receipts WHERE tenant = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3",
        )
        .map_err(unavailable)?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![tenant.as_str(), after, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, hash, body) = row.map_err(unavailable)?;
        out.push(StoredReceipt {
            seq: u64::try_from(seq).map_err(|_| corrupt("receipt seq"))?,
            // A wrong-length hash is reported as all-zero so that verification, not the
            // store, names the bad record.
            hash: hash.try_into().unwrap_or([0u8; 32]),
            body,
        });
    }
    Ok(out)
}

/// A stored public key, validated once per process: decompressing an Ed25519 point costs a
/// field square root, and the same few keys are read on every token request. The cache maps
/// key bytes to the validated key, so it can never return a different key; it is bounded.
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

const DELEGATION_COLS: &str = "id, tenant, parent, root, delegator_kind, delegator, delegate, \
    scope, prohibitions, purpose, task, depth, max_depth, expires_at, created_at, status, \
    revoked_at, digest, human_signature";

fn delegation_row(r: &Row<'_>) -> Result<Delegation, StoreError> {
    let get = |e: rusqlite::Error| unavailable(e);
    let id: String = r.get(0).map_err(get)?;
    let tenant: String = r.get(1).map_err(get)?;
    let parent: Option<String> = r.get(2).map_err(get)?;
    let root: String = r.get(3).map_err(get)?;
    let kind: String = r.get(4).map_err(get)?;
    let delegator: String = r.get(5).map_err(get)?;
    let delegate: String = r.get(6).map_err(get)?;
    let scope: String = r.get(7).map_err(get)?;
    let prohibitions: String = r.get(8).map_err(get)?;
    let depth: i64 = r.get(11).map_err(get)?;
    let max_depth: i64 = r.get(12).map_err(get)?;
    let status: String = r.get(15).map_err(get)?;
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
        purpose: r.get(9).map_err(get)?,
        task: r.get(10).map_err(get)?,
        depth: u8::try_from(depth).map_err(|_| corrupt("depth"))?,
        max_depth: u8::try_from(max_depth).map_err(|_| corrupt("max depth"))?,
        expires_at: r.get(13).map_err(get)?,
        created_at: r.get(14).map_err(get)?,
        status: enum_from(&status)?,
        revoked_at: r.get(16).map_err(get)?,
        digest: r.get(17).map_err(get)?,
        human_signature: r.get(18).map_err(get)?,
    })
}

pub(crate) fn delegation(
    c: &Connection,
    tenant: &TenantId,
    id: &DelegationId,
) -> Result<Option<Delegation>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {DELEGATION_COLS} FROM delegations WHERE tenant = ?1 AND id = ?2"
        ))
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(params![tenant.as_str(), id.as_str()])
        .map_err(unavailable)?;
    match rows.next().map_err(unavailable)? {
        Some(r) => delegation_row(r).map(Some),
        None => Ok(None),
    }
}

/// The chain from the mandate down to `id` (root first). Bounded by the depth hard cap.
pub(crate) fn chain(
    c: &Connection,
    tenant: &TenantId,
    id: &DelegationId,
) -> Result<Vec<Delegation>, StoreError> {
    let mut out = Vec::new();
    let mut next = Some(id.clone());
    while let Some(id) = next {
        if out.len() > usize::from(mandate_core::scope::MAX_DEPTH_HARD_CAP) {
            return Err(corrupt("delegation chain longer than the hard cap"));
        }
        let d = delegation(c, tenant, &id)?
            .ok_or_else(|| corrupt("delegation chain has a missing link"))?;
        next = d.parent.clone();
        out.push(d);
    }
    out.reverse();
    Ok(out)
}

/// Active, unexpired mandates (delegations from humans) whose delegate is `agent`.
pub(crate) fn active_mandates(
    c: &Connection,
    tenant: &TenantId,
    agent: &AgentId,
    now: i64,
) -> Result<Vec<Delegation>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {DELEGATION_COLS} FROM delegations WHERE tenant = ?1 AND delegate = ?2 \
             AND status = 'active' AND parent IS NULL AND expires_at > ?3 ORDER BY id LIMIT 101"
        ))
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(params![tenant.as_str(), agent.as_str(), now])
        .map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        out.push(delegation_row(r)?);
    }
    Ok(out)
}

/// An agent or gate by id, in whichever tenant it lives (client authentication).
pub(crate) fn client(c: &Connection, id: &str) -> Result<Option<Client>, StoreError> {
    if let Ok(aid) = AgentId::parse(id) {
        let tenant: Option<String> = c
            .prepare_cached("SELECT tenant FROM agents WHERE id = ?1")
            .and_then(|mut s| s.query_row(params![aid.as_str()], |r| r.get(0)).optional())
            .map_err(unavailable)?;
        let Some(t) = tenant else { return Ok(None) };
        let t = TenantId::parse(&t).map_err(|_| corrupt("tenant id"))?;
        return Ok(agent(c, &t, &aid)?.map(Client::Agent));
    }
    if let Ok(gid) = GateId::parse(id) {
        let tenant: Option<String> = c
            .prepare_cached("SELECT tenant FROM gates WHERE id = ?1")
            .and_then(|mut s| s.query_row(params![gid.as_str()], |r| r.get(0)).optional())
            .map_err(unavailable)?;
        let Some(t) = tenant else { return Ok(None) };
        let t = TenantId::parse(&t).map_err(|_| corrupt("tenant id"))?;
        return Ok(gate(c, &t, &gid)?.map(Client::Gate));
    }
    Ok(None)
}

/// A token with its chain and agent, in whichever tenant it lives.
pub(crate) fn token_view(c: &Connection, jti: &str) -> Result<Option<TokenView>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT tenant, delegation, agent, jkt, issued_at, expires_at, status, status_idx \
             FROM tokens WHERE jti = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![jti], |r| {
                Ok(TokenRow {
                    tenant: r.get(0)?,
                    delegation: r.get(1)?,
                    agent: r.get(2)?,
                    jkt: r.get(3)?,
                    issued_at: r.get(4)?,
                    expires_at: r.get(5)?,
                    status: r.get(6)?,
                    status_idx: r.get(7)?,
                })
            })
            .optional()
        })
        .map_err(unavailable)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let tenant = TenantId::parse(&row.tenant).map_err(|_| corrupt("tenant id"))?;
    let delegation = DelegationId::parse(&row.delegation).map_err(|_| corrupt("delegation id"))?;
    let agent_id = AgentId::parse(&row.agent).map_err(|_| corrupt("agent id"))?;
    let Some(a) = agent(c, &tenant, &agent_id)? else {
        return Err(corrupt("token of a missing agent"));
    };
    let chain = chain(c, &tenant, &delegation)?;
    let mut delegate_statuses = Vec::with_capacity(chain.len());
    for d in &chain {
        delegate_statuses.push(
            agent_status(c, &tenant, &d.delegate)?
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
            jkt: row.jkt,
            issued_at: row.issued_at,
            expires_at: row.expires_at,
            status: enum_from(&row.status)?,
            status_idx: row.status_idx.and_then(|i| u64::try_from(i).ok()),
        },
        agent: a,
    }))
}

struct TokenRow {
    tenant: String,
    delegation: String,
    agent: String,
    jkt: String,
    issued_at: i64,
    expires_at: i64,
    status: String,
    status_idx: Option<i64>,
}

/// Agent statuses by id (for checking every delegate of a chain).
pub(crate) fn agent_status(
    c: &Connection,
    tenant: &TenantId,
    id: &AgentId,
) -> Result<Option<crate::AgentStatus>, StoreError> {
    let s: Option<String> = c
        .prepare_cached("SELECT status FROM agents WHERE tenant = ?1 AND id = ?2")
        .and_then(|mut s| {
            s.query_row(params![tenant.as_str(), id.as_str()], |r| r.get(0))
                .optional()
        })
        .map_err(unavailable)?;
    s.as_deref().map(enum_from).transpose()
}

/// A delegation and its whole subtree (bounded by the depth hard cap per path).
pub(crate) fn tree(
    c: &Connection,
    tenant: &TenantId,
    id: &DelegationId,
) -> Result<Option<DelegationTree>, StoreError> {
    let Some(root) = delegation(c, tenant, id)? else {
        return Ok(None);
    };
    let mut stmt = c
        .prepare_cached(&format!(
            "WITH RECURSIVE sub(id) AS (SELECT ?2 UNION ALL \
             SELECT d.id FROM delegations d JOIN sub ON d.parent = sub.id) \
             SELECT {DELEGATION_COLS} FROM delegations WHERE tenant = ?1 \
             AND id IN (SELECT id FROM sub) AND id != ?2 ORDER BY id"
        ))
        .map_err(unavailable)?;
    let mut rows = stmt
        .query(params![tenant.as_str(), id.as_str()])
        .map_err(unavailable)?;
    let mut all = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        all.push(delegation_row(r)?);
    }
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
pub(crate) fn agent_delegations(
    c: &Connection,
    tenant: &TenantId,
    agent: &AgentId,
) -> Result<(Vec<Delegation>, Vec<Delegation>), StoreError> {
    let list = |sql: &str| -> Result<Vec<Delegation>, StoreError> {
        let mut stmt = c.prepare_cached(sql).map_err(unavailable)?;
        let mut rows = stmt
            .query(params![tenant.as_str(), agent.as_str()])
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(unavailable)? {
            out.push(delegation_row(r)?);
        }
        Ok(out)
    };
    let incoming = list(&format!(
        "SELECT {DELEGATION_COLS} FROM delegations WHERE tenant = ?1 AND delegate = ?2 \
         ORDER BY id DESC LIMIT 500"
    ))?;
    let outgoing = list(&format!(
        "SELECT {DELEGATION_COLS} FROM delegations WHERE tenant = ?1 AND delegator_kind = 'agent' \
         AND delegator = ?2 ORDER BY id DESC LIMIT 500"
    ))?;
    Ok((incoming, outgoing))
}

/// The highest status-list index ever recorded (allocation continues above it).
pub(crate) fn max_status_idx(c: &Connection) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = c
        .query_row("SELECT MAX(status_idx) FROM tokens", [], |r| r.get(0))
        .map_err(unavailable)?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

/// The tokens whose status index lies in `[lo, hi)`, with their chains.
pub(crate) fn tokens_in_status_range(
    c: &Connection,
    lo: u64,
    hi: u64,
) -> Result<Vec<TokenView>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT jti FROM tokens WHERE status_idx >= ?1 AND status_idx < ?2 ORDER BY status_idx",
        )
        .map_err(unavailable)?;
    let lo = i64::try_from(lo).unwrap_or(i64::MAX);
    let hi = i64::try_from(hi).unwrap_or(i64::MAX);
    let jtis: Vec<String> = stmt
        .query_map(params![lo, hi], |r| r.get(0))
        .map_err(unavailable)?
        .collect::<Result<_, _>>()
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(jtis.len());
    for jti in jtis {
        if let Some(v) = token_view(c, &jti)? {
            out.push(v);
        }
    }
    Ok(out)
}

const APPROVAL_COLS: &str = "id, tenant, gate, delegation, agent, action, resource, summary, \
    request_hash, status, created_at, expires_at, decided_at, decided_by, consumed_at";

fn approval_row(r: &Row<'_>) -> Result<Approval, StoreError> {
    let get = |e: rusqlite::Error| unavailable(e);
    let id: String = r.get(0).map_err(get)?;
    let tenant: String = r.get(1).map_err(get)?;
    let gate: String = r.get(2).map_err(get)?;
    let delegation: String = r.get(3).map_err(get)?;
    let agent: String = r.get(4).map_err(get)?;
    let status: String = r.get(9).map_err(get)?;
    let decided_by: Option<String> = r.get(13).map_err(get)?;
    Ok(Approval {
        id: ApprovalId::parse(&id).map_err(|_| corrupt("approval id"))?,
        tenant: TenantId::parse(&tenant).map_err(|_| corrupt("tenant id"))?,
        gate: GateId::parse(&gate).map_err(|_| corrupt("gate id"))?,
        delegation: DelegationId::parse(&delegation).map_err(|_| corrupt("delegation id"))?,
        agent: AgentId::parse(&agent).map_err(|_| corrupt("agent id"))?,
        action: r.get(5).map_err(get)?,
        resource: r.get(6).map_err(get)?,
        summary: r.get(7).map_err(get)?,
        request_hash: r.get(8).map_err(get)?,
        status: enum_from(&status)?,
        created_at: r.get(10).map_err(get)?,
        expires_at: r.get(11).map_err(get)?,
        decided_at: r.get(12).map_err(get)?,
        decided_by: decided_by
            .as_deref()
            .map(HumanId::parse)
            .transpose()
            .map_err(|_| corrupt("human id"))?,
        consumed_at: r.get(14).map_err(get)?,
    })
}

fn approvals_of(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<Approval>, StoreError> {
    let mut stmt = c.prepare_cached(sql).map_err(unavailable)?;
    let mut rows = stmt.query(p).map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        out.push(approval_row(r)?);
    }
    Ok(out)
}

pub(crate) fn approval(
    c: &Connection,
    tenant: &TenantId,
    id: &ApprovalId,
) -> Result<Option<Approval>, StoreError> {
    Ok(approvals_of(
        c,
        &format!("SELECT {APPROVAL_COLS} FROM approvals WHERE tenant = ?1 AND id = ?2"),
        params![tenant.as_str(), id.as_str()],
    )?
    .pop())
}

/// Approvals whose status at `now` matches the filter (expiry is applied here, not stored).
pub(crate) fn approvals(
    c: &Connection,
    tenant: &TenantId,
    filter: &ApprovalFilter,
    page: &Page,
    now: i64,
) -> Result<Vec<Approval>, StoreError> {
    let condition = match filter.status {
        None => "?4 = ?4",
        Some(ApprovalStatus::Pending) => "status = 'pending' AND expires_at > ?4",
        Some(ApprovalStatus::Approved) => "status = 'approved' AND expires_at > ?4",
        Some(ApprovalStatus::Denied) => "status = 'denied' AND ?4 = ?4",
        Some(ApprovalStatus::Consumed) => "status = 'consumed' AND ?4 = ?4",
        Some(ApprovalStatus::Expired) => {
            "(status = 'expired' OR (status IN ('pending', 'approved') AND expires_at <= ?4))"
        }
    };
    approvals_of(
        c,
        &format!(
            "SELECT {APPROVAL_COLS} FROM approvals WHERE tenant = ?1 AND id > ?2 AND {condition} \
             ORDER BY id LIMIT ?3"
        ),
        params![
            tenant.as_str(),
            page.after.as_deref().unwrap_or(""),
            page.limit,
            now
        ],
    )
}

/// The newest approval for one request under one delegation.
pub(crate) fn approval_for_request(
    c: &Connection,
    tenant: &TenantId,
    delegation: &DelegationId,
    request_hash: &str,
) -> Result<Option<Approval>, StoreError> {
    Ok(approvals_of(
        c,
        &format!(
            "SELECT {APPROVAL_COLS} FROM approvals WHERE tenant = ?1 AND delegation = ?2 \
             AND request_hash = ?3 ORDER BY id DESC LIMIT 1"
        ),
        params![tenant.as_str(), delegation.as_str(), request_hash],
    )?
    .pop())
}

/// The ids among `jtis` already recorded as used (`kind`, `scope`).
pub(crate) fn used_jtis(
    c: &Connection,
    kind: &str,
    scope: &str,
    jtis: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut stmt = c
        .prepare_cached("SELECT 1 FROM used_jtis WHERE kind = ?1 AND scope = ?2 AND jti = ?3")
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for jti in jtis {
        if stmt
            .exists(params![kind, scope, jti])
            .map_err(unavailable)?
        {
            out.push(jti.clone());
        }
    }
    Ok(out)
}

/// Refusal counts of `agents` from the hour of `since` on.
pub(crate) fn agent_denials(
    c: &Connection,
    tenant: &TenantId,
    agents: &[AgentId],
    since: i64,
) -> Result<Vec<DenialCount>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT kind, reason, SUM(n) FROM agent_denials WHERE tenant = ?1 AND agent = ?2 \
             AND hour >= ?3 GROUP BY kind, reason ORDER BY kind, reason",
        )
        .map_err(unavailable)?;
    let hour = since.div_euclid(3_600_000);
    let mut out = Vec::new();
    for agent in agents {
        let rows = stmt
            .query_map(params![tenant.as_str(), agent.as_str(), hour], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(unavailable)?;
        for row in rows {
            let (kind, reason, n) = row.map_err(unavailable)?;
            out.push(DenialCount {
                agent: agent.clone(),
                kind,
                reason,
                count: u64::try_from(n).unwrap_or(0),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentStatus, Role};

    #[test]
    fn enums_round_trip_through_text() {
        assert_eq!(enum_to(AgentStatus::Suspended), "suspended");
        assert_eq!(enum_from::<Role>("auditor").unwrap(), Role::Auditor);
        assert!(enum_from::<Role>("root").is_err());
    }
}
