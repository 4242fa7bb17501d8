//! Domain records as the store keeps them.

use mandate_core::id::{AgentId, ApiKeyId, ApprovalId, DelegationId, GateId, HumanId, TenantId};
use mandate_core::jwk::PublicJwk;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// An organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Unique name.
    pub name: String,
    /// The first tenant, whose owners may create other tenants.
    pub operator: bool,
    /// Unix ms.
    pub created_at: i64,
}

/// A human's role in their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including creating owners.
    Owner,
    /// Everything except creating owners.
    Admin,
    /// Read-only.
    Auditor,
}

/// Lifecycle of a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HumanStatus {
    /// Can act.
    Active,
    /// Offboarded; final.
    Revoked,
}

/// A person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Human {
    /// Id.
    pub id: HumanId,
    /// Tenant.
    pub tenant: TenantId,
    /// Display name.
    pub name: String,
    /// Unique within the tenant.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: HumanStatus,
    /// Unix ms.
    pub created_at: i64,
}

/// Lifecycle of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Can act.
    Active,
    /// Temporarily disabled; can be resumed.
    Suspended,
    /// Disabled for good.
    Revoked,
}

/// Lifecycle of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// No longer usable.
    Retired,
}

/// A public key registered to an agent or gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// The key.
    pub jwk: PublicJwk,
    /// Status.
    pub status: KeyStatus,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, when retired.
    pub retired_at: Option<i64>,
    /// Unix ms after which the key no longer authenticates (end of a rotation overlap).
    pub not_after: Option<i64>,
}

impl KeyRecord {
    /// Whether the key authenticates at `now`.
    pub fn usable(&self, now: i64) -> bool {
        self.status == KeyStatus::Active && self.not_after.is_none_or(|t| t > now)
    }

    /// A new active key.
    pub fn new(jwk: PublicJwk, now: i64) -> Self {
        Self {
            kid: jwk.thumbprint(),
            jwk,
            status: KeyStatus::Active,
            created_at: now,
            retired_at: None,
            not_after: None,
        }
    }
}

/// An agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Id.
    pub id: AgentId,
    /// Tenant.
    pub tenant: TenantId,
    /// The accountable human.
    pub owner: HumanId,
    /// Unique within the tenant.
    pub name: String,
    /// Declared purpose.
    pub purpose: String,
    /// The most it may ever be delegated (validated `authorization_details`).
    pub ceiling: serde_json::Value,
    /// Hex commitment over name, purpose and ceiling.
    pub commitment: String,
    /// Status.
    pub status: AgentStatus,
    /// Trust score 0–100.
    pub trust: u8,
    /// Keys, oldest first.
    pub keys: Vec<KeyRecord>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of last authenticated use.
    pub last_seen_at: Option<i64>,
}

impl Agent {
    /// The status `to` leads to (DESIGN §5): suspend an active agent, resume a suspended one,
    /// revoke either; revocation is final. The same rule for every engine.
    pub(crate) fn next_status(&self, to: AgentTransition) -> Result<AgentStatus, StoreError> {
        let id = &self.id;
        match (self.status, to) {
            (AgentStatus::Revoked, _) => Err(StoreError::Conflict(format!(
                "agent `{id}` is revoked; revocation is final"
            ))),
            (AgentStatus::Active, AgentTransition::Suspend) => Ok(AgentStatus::Suspended),
            (AgentStatus::Suspended, AgentTransition::Resume) => Ok(AgentStatus::Active),
            (_, AgentTransition::Revoke) => Ok(AgentStatus::Revoked),
            (AgentStatus::Suspended, AgentTransition::Suspend) => Err(StoreError::Conflict(
                format!("agent `{id}` is already suspended"),
            )),
            (AgentStatus::Active, AgentTransition::Resume) => Err(StoreError::Conflict(format!(
                "agent `{id}` is not suspended"
            ))),
        }
    }

    /// Whether key `kid` may be retired: it exists, is not retired yet, and is not the last
    /// active key of an agent that is not revoked; returns that key. The same rule for every
    /// engine.
    pub(crate) fn check_retire_key(&self, kid: &str) -> Result<&KeyRecord, StoreError> {
        let Some(key) = self.keys.iter().find(|k| k.kid == kid) else {
            return Err(StoreError::NotFound(format!("key `{kid}`")));
        };
        if key.status == KeyStatus::Retired {
            return Err(StoreError::Conflict(format!(
                "key `{kid}` is already retired"
            )));
        }
        let active = self
            .keys
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .count();
        if active <= 1 && self.status != AgentStatus::Revoked {
            return Err(StoreError::Conflict(format!(
                "key `{kid}` is the last active key of agent `{}`; add another key first or revoke the agent",
                self.id
            )));
        }
        Ok(key)
    }
}

/// A gate (resource server) registered as a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Id.
    pub id: GateId,
    /// Tenant.
    pub tenant: TenantId,
    /// Unique within the tenant.
    pub name: String,
    /// The audience (resource identifier) it accepts tokens for.
    pub audience: String,
    /// Keys, oldest first.
    pub keys: Vec<KeyRecord>,
    /// Unix ms.
    pub created_at: i64,
}

/// A new API key: only the SHA-256 of the secret is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// Id.
    pub id: ApiKeyId,
    /// Tenant.
    pub tenant: TenantId,
    /// Holder.
    pub human: HumanId,
    /// SHA-256 of the full key text.
    pub hash: [u8; 32],
    /// Unix ms.
    pub created_at: i64,
}

/// Who an API key authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key record.
    pub key: ApiKeyId,
    /// The human.
    pub human: Human,
    /// Their tenant.
    pub tenant: Tenant,
}

/// A receipt as stored: its canonical text and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    /// Position in the tenant's chain.
    pub seq: u64,
    /// SHA-256 of `body`.
    pub hash: [u8; 32],
    /// The canonical (RFC 8785) JSON text.
    pub body: String,
}

/// Keyset pagination: items after `after` (an id), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Exclusive lower bound (an id).
    pub after: Option<String>,
    /// Maximum items.
    pub limit: u32,
}

/// Filters for listing agents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentFilter {
    /// Only this status.
    pub status: Option<AgentStatus>,
    /// Only agents of this owner.
    pub owner: Option<HumanId>,
}

/// Target status of an agent transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentTransition {
    /// active → suspended.
    Suspend,
    /// suspended → active.
    Resume,
    /// active | suspended → revoked (final).
    Revoke,
}

/// A change to the registry. Each is applied atomically with its receipts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Mutation {
    /// A new tenant with its first owner and that owner's API key.
    CreateTenant {
        /// The tenant.
        tenant: Tenant,
        /// Its first owner.
        owner: Human,
        /// The owner's API key.
        api_key: NewApiKey,
    },
    /// A new human.
    CreateHuman(Human),
    /// A new API key for an active human.
    CreateApiKey(NewApiKey),
    /// Offboard a human: status revoked, API keys disabled, agents they own suspended.
    RevokeHuman {
        /// Tenant.
        tenant: TenantId,
        /// Human.
        id: HumanId,
        /// Unix ms.
        at: i64,
    },
    /// A new agent (with its first key in `keys`); its owner must be an active human.
    CreateAgent(Agent),
    /// Change an agent's status.
    TransitionAgent {
        /// Tenant.
        tenant: TenantId,
        /// Agent.
        id: AgentId,
        /// The transition.
        to: AgentTransition,
        /// Unix ms.
        at: i64,
    },
    /// Add a key to an agent that is not revoked.
    AddAgentKey {
        /// Tenant.
        tenant: TenantId,
        /// Agent.
        agent: AgentId,
        /// The key.
        key: KeyRecord,
        /// Rotation: every other usable key stops authenticating at this time (unix ms).
        retire_others_at: Option<i64>,
    },
    /// Retire an agent's key (never its last active one).
    RetireAgentKey {
        /// Tenant.
        tenant: TenantId,
        /// Agent.
        agent: AgentId,
        /// Key id.
        kid: String,
        /// Unix ms.
        at: i64,
    },
    /// A new gate with its key.
    CreateGate(Gate),
    /// A human's Ed25519 signing key (for signing mandates).
    AddHumanKey {
        /// Tenant.
        tenant: TenantId,
        /// Human.
        human: HumanId,
        /// The key.
        key: KeyRecord,
    },
    /// A new mandate or sub-delegation. The delegate must be an active agent; a parent must be
    /// active and unexpired at commit time.
    CreateDelegation(Delegation),
    /// A token-endpoint outcome: consume single-use ids, and issue `issue` if given — only if
    /// its delegation chain and agent are still active at commit time.
    TokenRequest {
        /// Single-use ids to consume; any already seen fails the whole job with a conflict.
        jtis: Vec<JtiUse>,
        /// The token to record as issued.
        issue: Option<TokenRecord>,
        /// Now, unix ms (for expiry checks at commit time).
        now: i64,
        /// The authenticated agent, whose `last_seen_at` becomes `now`.
        seen: Option<(TenantId, AgentId)>,
    },
    /// A sub-delegation and the token issued under it, atomically: the parent must still be
    /// active at commit time; single-use ids are consumed.
    Delegate {
        /// The new delegation (with its parent).
        delegation: Delegation,
        /// Single-use ids to consume (assertion, actor token, DPoP proof).
        jtis: Vec<JtiUse>,
        /// The token issued to the delegate.
        issue: TokenRecord,
        /// Now, unix ms.
        now: i64,
    },
    /// Revoke one token.
    RevokeToken {
        /// Tenant.
        tenant: TenantId,
        /// `jti`.
        jti: String,
        /// Unix ms.
        at: i64,
    },
    /// Revoke a delegation and, atomically, every descendant delegation and every token under
    /// them.
    RevokeDelegation {
        /// Tenant.
        tenant: TenantId,
        /// Delegation.
        id: DelegationId,
        /// Unix ms.
        at: i64,
    },
    /// Revoke a whole tenant (never the operator tenant): humans, API keys, agents,
    /// delegations and tokens.
    RevokeTenant {
        /// Tenant.
        tenant: TenantId,
        /// Unix ms.
        at: i64,
    },
    /// A new pending approval (DESIGN §7). Refused with a conflict while another approval for
    /// the same tenant, delegation and request hash is open (pending or approved, and unexpired
    /// at `created_at`); open ones past their expiry are closed as expired first.
    CreateApproval(Approval),
    /// A human decides a pending, unexpired approval. An approved one must then be used before
    /// `use_by`.
    DecideApproval {
        /// Tenant.
        tenant: TenantId,
        /// Approval.
        id: ApprovalId,
        /// Approve (else deny).
        approve: bool,
        /// The deciding human.
        by: HumanId,
        /// Unix ms.
        at: i64,
        /// Unix ms: end of the window in which an approved request may be used.
        use_by: i64,
    },
    /// Single use: an approved, unexpired, unconsumed approval becomes consumed; anything else
    /// is a conflict.
    ConsumeApproval {
        /// Tenant.
        tenant: TenantId,
        /// Approval.
        id: ApprovalId,
        /// Unix ms.
        at: i64,
    },
    /// Several mutations, all or none, in order.
    Batch(Vec<Mutation>),
    /// Nothing but the receipts.
    Record,
}

/// What a committed mutation produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AppliedValue {
    /// Nothing beyond the receipts.
    None,
    /// A tenant (with its owner).
    Tenant(Tenant, Human),
    /// A human.
    Human(Human),
    /// An agent.
    Agent(Agent),
    /// A key.
    Key(KeyRecord),
    /// A gate.
    Gate(Gate),
    /// A delegation.
    Delegation(Delegation),
    /// A count of objects changed (revocations).
    Count(u64),
    /// An approval, as it is after the change.
    Approval(Approval),
}

/// A committed mutation and where its receipts landed.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The resulting object.
    pub value: AppliedValue,
    /// `(tenant, seq, hash)` of each receipt, in order.
    pub receipts: Vec<(TenantId, u64, [u8; 32])>,
}

/// Who delegated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delegator {
    /// A human: the delegation is a mandate, the root of a tree.
    Human(HumanId),
    /// An agent: a sub-delegation with a parent.
    Agent(AgentId),
}

/// Lifecycle of a delegation. A revoked delegation is never revived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DelegationStatus {
    /// In force until it expires.
    Active,
    /// Revoked; final.
    Revoked,
}

/// One edge of authority (DESIGN §1).
#[derive(Debug, Clone, PartialEq)]
pub struct Delegation {
    /// Id.
    pub id: DelegationId,
    /// Tenant.
    pub tenant: TenantId,
    /// The delegation this one narrows (`None` for a mandate).
    pub parent: Option<DelegationId>,
    /// The mandate at the root of the tree (itself for a mandate).
    pub root: DelegationId,
    /// Who delegated.
    pub delegator: Delegator,
    /// The agent receiving the authority.
    pub delegate: AgentId,
    /// Validated `authorization_details`.
    pub scope: serde_json::Value,
    /// Validated prohibitions (inherited ones included).
    pub prohibitions: serde_json::Value,
    /// Declared purpose.
    pub purpose: String,
    /// Task id, if given.
    pub task: Option<String>,
    /// Hops from the human (a mandate is 1).
    pub depth: u8,
    /// Bound on depth for the whole tree.
    pub max_depth: u8,
    /// Unix ms.
    pub expires_at: i64,
    /// Unix ms.
    pub created_at: i64,
    /// Status.
    pub status: DelegationStatus,
    /// Unix ms, when revoked.
    pub revoked_at: Option<i64>,
    /// Hex SHA-256 of the canonical authorization object.
    pub digest: String,
    /// The human's detached signature over the canonical authorization object, if any.
    pub human_signature: Option<String>,
}

/// Lifecycle of an issued access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    /// Usable until it expires.
    Active,
    /// Revoked.
    Revoked,
}

/// An issued access token (never the token itself: its id and binding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// `jti`.
    pub jti: String,
    /// Tenant.
    pub tenant: TenantId,
    /// The delegation it was issued under.
    pub delegation: DelegationId,
    /// The agent it was issued to.
    pub agent: AgentId,
    /// RFC 7638 thumbprint of the key it is bound to (`cnf.jkt`).
    pub jkt: String,
    /// Unix ms.
    pub issued_at: i64,
    /// Unix ms.
    pub expires_at: i64,
    /// Status.
    pub status: TokenStatus,
    /// Index in the Token Status List (never reused).
    pub status_idx: Option<u64>,
}

/// A single-use identifier to consume (client assertion `jti`, DPoP proof `jti`, approval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JtiUse {
    /// What kind of artefact (`assertion`, `dpop`, …).
    pub kind: &'static str,
    /// Whose namespace (client id, or key thumbprint).
    pub scope: String,
    /// The identifier.
    pub jti: String,
    /// Unix ms after which the artefact is expired anyway (the row may be purged then).
    pub expires_at: i64,
}

/// A client of the token endpoint: an agent or a gate, with its tenant and keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Client {
    /// An agent.
    Agent(Agent),
    /// A gate.
    Gate(Gate),
}

/// A delegation with its descendants (for tree views).
#[derive(Debug, Clone, PartialEq)]
pub struct DelegationTree {
    /// The node.
    pub delegation: Delegation,
    /// Its children, oldest first.
    pub children: Vec<DelegationTree>,
}

/// Everything introspection needs about a token: the record and its chain, root first.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenView {
    /// The token record.
    pub token: TokenRecord,
    /// Delegations from the mandate down to the token's own.
    pub chain: Vec<Delegation>,
    /// The agent the token was issued to.
    pub agent: Agent,
    /// Status of the delegate agent of each delegation of `chain`, in the same order.
    pub delegate_statuses: Vec<AgentStatus>,
}

/// A receipt that has just become durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedReceipt {
    /// Its tenant's chain.
    pub tenant: TenantId,
    /// Position in the chain.
    pub seq: u64,
    /// Kind.
    pub kind: mandate_core::receipt::EventKind,
    /// The canonical receipt text.
    pub body: std::sync::Arc<str>,
}

/// Lifecycle of an approval (DESIGN §7). `Expired` is stored lazily: a pending or approved
/// approval past its `expires_at` is expired whatever its stored status ([`Approval::status_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Waiting for a human until `expires_at`.
    Pending,
    /// Approved; usable once until `expires_at`.
    Approved,
    /// Denied; final.
    Denied,
    /// Used by the gate for its request; final.
    Consumed,
    /// Not decided, or not used, in time; final.
    Expired,
}

/// A human-in-the-loop approval of one exact request (method, target and arguments, by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Id.
    pub id: ApprovalId,
    /// Tenant.
    pub tenant: TenantId,
    /// The gate that asked.
    pub gate: GateId,
    /// The delegation the request was made under.
    pub delegation: DelegationId,
    /// The agent that made the request.
    pub agent: AgentId,
    /// The requested action.
    pub action: String,
    /// The requested resource.
    pub resource: String,
    /// Short human-readable description from the gate.
    pub summary: String,
    /// base64url SHA-256 of the canonical request, as the gate computed it.
    pub request_hash: String,
    /// Stored status (see [`Approval::status_at`]).
    pub status: ApprovalStatus,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms: the decision deadline while pending; the use-by time once approved.
    pub expires_at: i64,
    /// Unix ms, when decided.
    pub decided_at: Option<i64>,
    /// Who decided.
    pub decided_by: Option<HumanId>,
    /// Unix ms, when used.
    pub consumed_at: Option<i64>,
}

impl Approval {
    /// The status at `now`: pending or approved past `expires_at` is expired.
    pub fn status_at(&self, now: i64) -> ApprovalStatus {
        match self.status {
            ApprovalStatus::Pending | ApprovalStatus::Approved if self.expires_at <= now => {
                ApprovalStatus::Expired
            }
            s => s,
        }
    }
}

/// Filters for listing approvals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApprovalFilter {
    /// Only approvals with this status at the listing time.
    pub status: Option<ApprovalStatus>,
}

/// Refusals attributed to an agent in a time window: receipts with `decision: deny` whose
/// `actor.agent` is the agent, counted by receipt kind and first reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialCount {
    /// The agent.
    pub agent: AgentId,
    /// Receipt kind (`token.refused`, `gate.decision`, …).
    pub kind: String,
    /// First reason code of the receipts (cut to 64 characters), or empty.
    pub reason: String,
    /// How many.
    pub count: u64,
}
