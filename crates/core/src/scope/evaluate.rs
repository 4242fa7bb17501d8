//! Deciding one access request against a scope and its prohibitions.

use serde::{Deserialize, Serialize};

use super::action::Action;
use super::detail::Scope;
use super::location::Location;
use super::prohibition::Prohibitions;
use super::resource::ResourcePath;

/// One access, as the gate maps it from an HTTP or MCP request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest {
    /// What is done.
    pub action: Action,
    /// Where: the resource server, if known.
    pub location: Option<Location>,
    /// To what.
    pub resource: ResourcePath,
}

/// The outcome of [`evaluate`], with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decision {
    /// Granted by the detail at this index of the scope, whose constraints the gate must
    /// still check (see [`Scope::granting`] for every detail that grants it).
    Allow {
        /// Index of the granting detail.
        detail: usize,
    },
    /// Refused.
    Deny {
        /// Why.
        reason: DenyReason,
    },
}

/// Why a request was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DenyReason {
    /// The prohibition at this index of the sorted prohibitions denies it.
    Prohibited {
        /// Index of the prohibition.
        index: usize,
    },
    /// No detail of the scope grants it.
    NotGranted,
}

impl Decision {
    /// Whether the decision is [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// Decides `request`: prohibitions first, and any match denies whatever the scope grants;
/// otherwise the first detail that grants it (action, location, resource) allows it.
/// Constraints are not evaluated here: they need runtime inputs and are the gate's job.
pub fn evaluate(scope: &Scope, prohibitions: &Prohibitions, request: &AccessRequest) -> Decision {
    if let Some(index) = prohibitions.first_match(&request.action, &request.resource) {
        return Decision::Deny {
            reason: DenyReason::Prohibited { index },
        };
    }
    match scope.granting(request).next() {
        Some(detail) => Decision::Allow { detail },
        None => Decision::Deny {
            reason: DenyReason::NotGranted,
        },
    }
}
