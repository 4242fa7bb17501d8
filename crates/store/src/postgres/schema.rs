//! PostgreSQL schema and migrations: an ordered, append-only list, each applied once in its own
//! transaction and recorded in `schema_migrations`, under a session-level advisory lock so that
//! replicas starting at the same time apply each migration exactly once.
//!
//! Identifiers and other keys compared or ordered by the store are `COLLATE "C"` (byte order),
//! the order SQLite uses, so keyset pagination pages identically on both engines.

use super::conn::{Conn, col, unavailable};
use crate::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`. Never edit a released entry.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    operator    BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE humans (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    UNIQUE (tenant, email)
);
CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    human       TEXT COLLATE "C" NOT NULL REFERENCES humans(id),
    hash        BYTEA NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE agents (
    id           TEXT COLLATE "C" PRIMARY KEY,
    tenant       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    owner        TEXT COLLATE "C" NOT NULL REFERENCES humans(id),
    name         TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    ceiling      TEXT NOT NULL,
    commitment   TEXT NOT NULL,
    status       TEXT NOT NULL,
    trust        BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT,
    UNIQUE (tenant, name)
);
CREATE INDEX agents_by_owner ON agents (tenant, owner);
CREATE TABLE gates (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    audience    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant, name),
    UNIQUE (tenant, audience)
);
CREATE TABLE keys (
    tenant      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    owner       TEXT COLLATE "C" NOT NULL,
    kid         TEXT COLLATE "C" NOT NULL,
    x           BYTEA NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT,
    not_after   BIGINT,
    PRIMARY KEY (tenant, kid)
);
CREATE INDEX keys_by_owner ON keys (owner);
-- The ledger: `seq` is part of the primary key, so a second receipt at the same position of a
-- tenant's chain (a fork) cannot be written even if sequencing were ever wrong.
CREATE TABLE receipts (
    tenant      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    seq         BIGINT NOT NULL,
    hash        BYTEA NOT NULL,
    body        TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE TABLE delegations (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant          TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    parent          TEXT COLLATE "C" REFERENCES delegations(id),
    root            TEXT COLLATE "C" NOT NULL,
    delegator_kind  TEXT NOT NULL,
    delegator       TEXT COLLATE "C" NOT NULL,
    delegate        TEXT COLLATE "C" NOT NULL REFERENCES agents(id),
    scope           TEXT NOT NULL,
    prohibitions    TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    task            TEXT,
    depth           BIGINT NOT NULL,
    max_depth       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    status          TEXT NOT NULL,
    revoked_at      BIGINT,
    digest          TEXT NOT NULL,
    human_signature TEXT
);
CREATE INDEX delegations_by_delegate ON delegations (tenant, delegate);
CREATE INDEX delegations_by_delegator ON delegations (tenant, delegator);
CREATE INDEX delegations_by_parent ON delegations (parent);
CREATE TABLE tokens (
    jti         TEXT COLLATE "C" PRIMARY KEY,
    tenant      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    delegation  TEXT COLLATE "C" NOT NULL REFERENCES delegations(id),
    agent       TEXT COLLATE "C" NOT NULL REFERENCES agents(id),
    jkt         TEXT COLLATE "C" NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    status      TEXT NOT NULL,
    revoked_at  BIGINT,
    status_idx  BIGINT UNIQUE
);
CREATE INDEX tokens_by_delegation ON tokens (delegation);
CREATE INDEX tokens_by_jkt ON tokens (tenant, jkt);
-- Single use: a second insert of the same (kind, scope, jti) is refused by the primary key,
-- whichever replica tries it.
CREATE TABLE used_jtis (
    kind        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, scope, jti)
);
CREATE INDEX used_jtis_by_expiry ON used_jtis (expires_at);
CREATE TABLE merkle_nodes (
    tenant      TEXT COLLATE "C" NOT NULL,
    level       BIGINT NOT NULL,
    idx         BIGINT NOT NULL,
    hash        BYTEA NOT NULL,
    PRIMARY KEY (tenant, level, idx)
);
CREATE TABLE merkle_trees (
    tenant      TEXT COLLATE "C" PRIMARY KEY REFERENCES tenants(id),
    size        BIGINT NOT NULL,
    root        BYTEA NOT NULL
);
CREATE TABLE checkpoints (
    tenant      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    size        BIGINT NOT NULL,
    root        BYTEA NOT NULL,
    note        TEXT NOT NULL,
    kid         TEXT NOT NULL,
    signed_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant, size)
);
-- Persistent counters shared by every replica (Token Status List indexes).
CREATE TABLE counters (
    name        TEXT PRIMARY KEY,
    value       BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('status_idx', 0);
"#,
    // Approvals (DESIGN §7) and refusal counts per agent for trust scores (DESIGN §8), as in
    // the SQLite engine. At most one approval per (tenant, delegation, request hash) is open.
    r#"
CREATE TABLE approvals (
    id           TEXT COLLATE "C" PRIMARY KEY,
    tenant       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    gate         TEXT COLLATE "C" NOT NULL REFERENCES gates(id),
    delegation   TEXT COLLATE "C" NOT NULL REFERENCES delegations(id),
    agent        TEXT COLLATE "C" NOT NULL REFERENCES agents(id),
    action       TEXT NOT NULL,
    resource     TEXT NOT NULL,
    summary      TEXT NOT NULL,
    request_hash TEXT COLLATE "C" NOT NULL,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    decided_at   BIGINT,
    decided_by   TEXT,
    consumed_at  BIGINT
);
CREATE INDEX approvals_by_request ON approvals (tenant, delegation, request_hash);
CREATE UNIQUE INDEX approvals_open ON approvals (tenant, delegation, request_hash)
    WHERE status IN ('pending', 'approved');
CREATE INDEX approvals_by_status ON approvals (tenant, status, id);
CREATE TABLE agent_denials (
    tenant      TEXT COLLATE "C" NOT NULL,
    agent       TEXT COLLATE "C" NOT NULL,
    hour        BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (tenant, agent, hour, kind, reason)
);
CREATE INDEX agent_denials_by_hour ON agent_denials (hour);
"#,
];

/// Brings the schema (the first schema of the session's `search_path`) to the newest version.
pub(crate) async fn migrate(c: &Conn) -> Result<(), StoreError> {
    // One lock per schema: deployments in other schemas of the same database do not wait.
    let key: i64 = col(
        &c.query_one(
            "SELECT hashtextextended(current_schema() || '/mandate-migrations', 0)",
            &[],
        )
        .await
        .map_err(unavailable)?,
        0,
    )?;
    c.batch(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .map_err(unavailable)?;
    let result = apply_pending(c).await;
    let unlocked = c.batch(&format!("SELECT pg_advisory_unlock({key})")).await;
    result?;
    unlocked.map_err(unavailable)
}

async fn apply_pending(c: &Conn) -> Result<(), StoreError> {
    c.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version     BIGINT PRIMARY KEY,
            applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(unavailable)?;
    let version: i64 = col(
        &c.query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await
        .map_err(unavailable)?,
        0,
    )?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this binary ({known})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = format!(
            "{sql}; INSERT INTO schema_migrations (version) VALUES ({});",
            i + 1
        );
        c.begin("").await.map_err(unavailable)?;
        let applied = c.batch(&tx).await;
        match applied {
            Ok(()) => c.commit().await.map_err(unavailable)?,
            Err(e) => {
                c.rollback().await;
                return Err(unavailable(e));
            }
        }
    }
    Ok(())
}

/// The highest version this binary knows.
#[cfg(test)]
pub(crate) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}
