//! SQLite schema and migrations (ordered, applied once each, tracked in `user_version`).

use rusqlite::Connection;

use super::unavailable;
use crate::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`. Never edit a released entry.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    operator    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE humans (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    UNIQUE (tenant, email)
);
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL REFERENCES tenants(id),
    human       TEXT NOT NULL REFERENCES humans(id),
    hash        BLOB NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE agents (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL REFERENCES tenants(id),
    owner        TEXT NOT NULL REFERENCES humans(id),
    name         TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    ceiling      TEXT NOT NULL,
    commitment   TEXT NOT NULL,
    status       TEXT NOT NULL,
    trust        INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER,
    UNIQUE (tenant, name)
);
CREATE INDEX agents_by_owner ON agents (tenant, owner);
CREATE TABLE gates (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    audience    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant, name),
    UNIQUE (tenant, audience)
);
CREATE TABLE keys (
    tenant      TEXT NOT NULL REFERENCES tenants(id),
    owner       TEXT NOT NULL,
    kid         TEXT NOT NULL,
    x           BLOB NOT NULL,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER,
    PRIMARY KEY (tenant, kid)
);
CREATE INDEX keys_by_owner ON keys (owner);
CREATE TABLE receipts (
    tenant      TEXT NOT NULL REFERENCES tenants(id),
    seq         INTEGER NOT NULL,
    hash        BLOB NOT NULL,
    body        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (tenant, seq)
);
"#,
    r#"
CREATE TABLE delegations (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL REFERENCES tenants(id),
    parent          TEXT REFERENCES delegations(id),
    root            TEXT NOT NULL,
    delegator_kind  TEXT NOT NULL,
    delegator       TEXT NOT NULL,
    delegate        TEXT NOT NULL REFERENCES agents(id),
    scope           TEXT NOT NULL,
    prohibitions    TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    task            TEXT,
    depth           INTEGER NOT NULL,
    max_depth       INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT NOT NULL,
    revoked_at      INTEGER,
    digest          TEXT NOT NULL,
    human_signature TEXT
);
CREATE INDEX delegations_by_delegate ON delegations (tenant, delegate, status);
CREATE INDEX delegations_by_parent ON delegations (parent);
CREATE TABLE tokens (
    jti         TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL REFERENCES tenants(id),
    delegation  TEXT NOT NULL REFERENCES delegations(id),
    agent       TEXT NOT NULL REFERENCES agents(id),
    jkt         TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    status      TEXT NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX tokens_by_delegation ON tokens (delegation);
CREATE TABLE used_jtis (
    kind        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, scope, jti)
) WITHOUT ROWID;
CREATE INDEX used_jtis_by_expiry ON used_jtis (expires_at);
"#,
    r#"
ALTER TABLE keys ADD COLUMN not_after INTEGER;
"#,
    r#"
ALTER TABLE tokens ADD COLUMN status_idx INTEGER;
CREATE UNIQUE INDEX tokens_by_status_idx ON tokens (status_idx);
"#,
    // Ledger proofs (issue 5): the per-tenant Merkle trees and signed checkpoints.
    r#"
CREATE TABLE merkle_nodes (
    tenant      TEXT NOT NULL,
    level       INTEGER NOT NULL,
    idx         INTEGER NOT NULL,
    hash        BLOB NOT NULL,
    PRIMARY KEY (tenant, level, idx)
) WITHOUT ROWID;
CREATE TABLE merkle_trees (
    tenant      TEXT PRIMARY KEY REFERENCES tenants(id),
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL
);
CREATE TABLE checkpoints (
    tenant      TEXT NOT NULL REFERENCES tenants(id),
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    note        TEXT NOT NULL,
    kid         TEXT NOT NULL,
    signed_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant, size)
);
"#,
    // Revoking a subtree updates `status`; keeping it out of this index keeps cascades cheap.
    r#"
DROP INDEX delegations_by_delegate;
CREATE INDEX delegations_by_delegate ON delegations (tenant, delegate);
"#,
    // Approvals (DESIGN §7) and refusal counts per agent for trust scores (DESIGN §8).
    // At most one approval per (tenant, delegation, request hash) is open at a time; open ones
    // past their expiry are marked `expired` before a new one is inserted.
    r#"
CREATE TABLE approvals (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL REFERENCES tenants(id),
    gate         TEXT NOT NULL REFERENCES gates(id),
    delegation   TEXT NOT NULL REFERENCES delegations(id),
    agent        TEXT NOT NULL REFERENCES agents(id),
    action       TEXT NOT NULL,
    resource     TEXT NOT NULL,
    summary      TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    decided_at   INTEGER,
    decided_by   TEXT,
    consumed_at  INTEGER
);
CREATE INDEX approvals_by_request ON approvals (tenant, delegation, request_hash);
CREATE UNIQUE INDEX approvals_open ON approvals (tenant, delegation, request_hash)
    WHERE status IN ('pending', 'approved');
CREATE INDEX approvals_by_status ON approvals (tenant, status, id);
CREATE TABLE agent_denials (
    tenant      TEXT NOT NULL,
    agent       TEXT NOT NULL,
    hour        INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (tenant, agent, hour, kind, reason)
) WITHOUT ROWID;
CREATE INDEX agent_denials_by_hour ON agent_denials (hour);
"#,
    // Token Status List indexes are reserved in blocks from a persistent counter, continuing
    // above every index ever recorded.
    r#"
CREATE TABLE counters (
    name        TEXT PRIMARY KEY,
    value       INTEGER NOT NULL
);
INSERT INTO counters (name, value)
    SELECT 'status_idx', COALESCE(MAX(status_idx) + 1, 0) FROM tokens;
"#,
];

/// Brings the database to the newest schema.
pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(unavailable)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this binary ({known})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        );
        if let Err(e) = conn.execute_batch(&tx) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(unavailable(e));
        }
    }
    Ok(())
}
