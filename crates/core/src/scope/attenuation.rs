//! Attenuation: the ⊑ order on scopes and delegation terms, and the only way to derive terms.
//!
//! # The orders
//!
//! - Patterns: `p ⊇ c` ([`ResourcePattern::contains`]) iff every path `c` matches, `p`
//!   matches. It is decided exactly, segment by segment.
//! - Constraints: `c ≼ p` ([`Constraints::at_least_as_strict_as`]) iff every constraint of
//!   `p` is in `c` and at least as strict: `max_amount` same currency and ≤, `time_window`
//!   same zone with days ⊆ and interval inside, `approval_required_for` ⊇, `rate` max ≤ and
//!   window ≥, `min_trust` ≥.
//! - Details: `p` covers `c` ([`AuthorizationDetail::covers`]) iff actions ⊆; `p` has no
//!   location list, or both have one and `c`'s ⊆ `p`'s; every pattern of `c` is contained in
//!   some pattern of `p`; and `c`'s constraints ≼ `p`'s.
//! - Scopes: `c ⊑ p` ([`Scope::is_within`]) iff every detail of `c` is covered by one single
//!   detail of `p` (never by a combination: constraints belong to a detail).
//! - Prohibitions: `c ⊇ p` ([`Prohibitions::includes`]) iff every prohibition of `p` is
//!   covered by one of `c` (actions ⊇, patterns contained).
//! - Terms: `c ⊑ p` ([`DelegationTerms::is_within`]) iff scope ⊑, prohibitions ⊇,
//!   `c.expires_at ≤ p.expires_at`, `c.depth = p.depth + 1 ≤ c.max_depth ≤ p.max_depth`.
//!
//! # The laws (property-tested in `tests/attenuation_laws.rs`)
//!
//! 1. **Soundness.** If `c ⊑ p` then every request [`evaluate`](super::evaluate) allows under
//!    `c` is allowed under `p` with the same prohibitions (pattern containment, location and
//!    action inclusion all imply inclusion of the matched requests).
//! 2. **Reflexivity.** `s ⊑ s` for every scope.
//! 3. **Transitivity.** `a ⊑ b` and `b ⊑ c` imply `a ⊑ c`.
//! 4. **Only narrowing.** [`Scope::narrow`] and [`DelegationTerms::attenuate`] return the
//!    requested value or an error: they never clamp, never widen. So along any chain of
//!    attenuations each link is ⊑ its parent, and by (1) and (3) no descendant allows a
//!    request its root denies.
//! 5. **Prohibitions are monotone and win.** Attenuated prohibitions are `parent ∪ extra`, so
//!    they can never be dropped, and [`evaluate`](super::evaluate) checks them before any
//!    grant.
//! 6. **Time and depth only shrink.** Along a chain `expires_at` never increases, `depth`
//!    increases by exactly one per hop, and `depth ≤ max_depth ≤` [`MAX_DEPTH_HARD_CAP`];
//!    an expired parent cannot be attenuated.

use serde::{Deserialize, Serialize};

use super::detail::{AuthorizationDetail, Scope};
use super::error::{ScopeError, shown};
use super::limits::{MAX_DEPTH_HARD_CAP, ScopeLimits};
use super::prohibition::Prohibitions;

use super::location::Location;
use super::resource::ResourcePattern;

#[cfg(doc)]
use super::constraint::Constraints;

/// The authority one delegation carries: what (scope), what never (prohibitions), until
/// when (unix ms, exclusive) and how deep in the tree.
///
/// Built only by [`DelegationTerms::mandate`] (a human's root) and
/// [`DelegationTerms::attenuate`] (a hop down); serde re-checks the depth invariants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTerms")]
pub struct DelegationTerms {
    scope: Scope,
    prohibitions: Prohibitions,
    expires_at: i64,
    depth: u8,
    max_depth: u8,
}

/// What a delegator asks for when delegating further.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttenuationRequest {
    /// The scope to delegate; must be within the parent's.
    pub scope: Scope,
    /// Prohibitions to add to the inherited ones.
    #[serde(default)]
    pub extra_prohibitions: Prohibitions,
    /// The expiry (unix ms); `None` keeps the parent's.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl DelegationTerms {
    /// The terms of a mandate (a human's delegation to an agent): depth 1, and
    /// `1 ≤ max_depth ≤` the hard cap of `limits`.
    pub fn mandate(
        scope: Scope,
        prohibitions: Prohibitions,
        expires_at: i64,
        max_depth: u8,
        limits: &ScopeLimits,
    ) -> Result<Self, ScopeError> {
        let cap = limits.depth_cap();
        if !(1..=cap).contains(&max_depth) {
            return Err(ScopeError::InvalidMaxDepth { max_depth, cap });
        }
        Ok(Self {
            scope,
            prohibitions,
            expires_at,
            depth: 1,
            max_depth,
        })
    }

    /// Terms for a delegation one hop below `self`, exactly as requested or an error.
    ///
    /// Refused, in this order, if: `self` has expired at `now` ([`ScopeError::ParentExpired`]);
    /// one more hop would pass `max_depth` ([`ScopeError::DepthExceeded`]); a requested detail
    /// is not covered ([`ScopeError::Widening`]); `strict` and the request is not a proper
    /// subset ([`ScopeError::NotStrict`]); the expiry is later than the parent's
    /// ([`ScopeError::ExpiryExtended`]) or not after `now` ([`ScopeError::AlreadyExpired`]).
    /// The result has the requested scope, the parent's prohibitions plus the extra ones, the
    /// requested (or the parent's) expiry, depth + 1 and the same `max_depth`.
    pub fn attenuate(
        &self,
        request: AttenuationRequest,
        now: i64,
        strict: bool,
    ) -> Result<DelegationTerms, ScopeError> {
        if now >= self.expires_at {
            return Err(ScopeError::ParentExpired {
                expires_at: self.expires_at,
                now,
            });
        }
        let depth = u16::from(self.depth) + 1;
        let Some(depth) = u8::try_from(depth).ok().filter(|d| *d <= self.max_depth) else {
            return Err(ScopeError::DepthExceeded {
                depth,
                max_depth: self.max_depth,
            });
        };
        let scope = self.scope.narrow(request.scope)?;
        if strict && self.scope.is_within(&scope) {
            return Err(ScopeError::NotStrict);
        }
        let expires_at = request.expires_at.unwrap_or(self.expires_at);
        if expires_at > self.expires_at {
            return Err(ScopeError::ExpiryExtended {
                requested: expires_at,
                parent: self.expires_at,
            });
        }
        if expires_at <= now {
            return Err(ScopeError::AlreadyExpired { expires_at, now });
        }
        let prohibitions = self.prohibitions.union(&request.extra_prohibitions)?;
        Ok(Self {
            scope,
            prohibitions,
            expires_at,
            depth,
            max_depth: self.max_depth,
        })
    }

    /// The full ⊑: scope within, prohibitions include the parent's, expiry no later,
    /// exactly one hop deeper, and a max depth no higher than the parent's.
    pub fn is_within(&self, parent: &DelegationTerms) -> bool {
        self.scope.is_within(&parent.scope)
            && self.prohibitions.includes(&parent.prohibitions)
            && self.expires_at <= parent.expires_at
            && u16::from(self.depth) == u16::from(parent.depth) + 1
            && self.depth <= self.max_depth
            && self.max_depth <= parent.max_depth
    }

    /// Whether the terms are still valid at `now` (unix ms).
    pub fn is_active(&self, now: i64) -> bool {
        now < self.expires_at
    }

    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The prohibitions, inherited ones included.
    pub fn prohibitions(&self) -> &Prohibitions {
        &self.prohibitions
    }

    /// The expiry (unix ms, exclusive).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Hops from the human: 1 for a mandate.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The deepest any delegation of this tree may be.
    pub fn max_depth(&self) -> u8 {
        self.max_depth
    }
}

impl AuthorizationDetail {
    /// Whether `self` (a parent detail) covers `child` on its own (see the module docs).
    pub fn covers(&self, child: &AuthorizationDetail) -> bool {
        let locations_ok = match (self.locations(), child.locations()) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(parent), Some(locations)) => locations.is_subset(parent),
        };
        child.actions().is_subset(self.actions())
            && locations_ok
            && child
                .resources()
                .iter()
                .all(|c| self.resources().iter().any(|p| p.contains(c)))
            && child
                .constraints()
                .at_least_as_strict_as(self.constraints())
    }

    /// Why no single detail of `parent` covers `self`. Narrows the parent details dimension
    /// by dimension (actions, locations, resources, constraints) and names the first
    /// requested part that none of the remaining ones grants.
    fn widening_reason(&self, parent: &Scope) -> String {
        let details = parent.details();
        if let Some(action) = self
            .actions()
            .iter()
            .find(|a| !details.iter().any(|d| d.actions().contains(*a)))
        {
            return format!("action `{action}` not granted by any parent detail");
        }
        let candidates: Vec<_> = details
            .iter()
            .filter(|d| d.actions().is_superset(self.actions()))
            .collect();
        if candidates.is_empty() {
            return "no single parent detail grants all the requested actions".to_owned();
        }
        let location_ok =
            |d: &AuthorizationDetail, l: &Location| d.locations().is_none_or(|ls| ls.contains(l));
        match self.locations() {
            None => {
                if candidates.iter().all(|d| d.locations().is_some()) {
                    return "any location requested but the parent details that grant these \
                            actions name their locations"
                        .to_owned();
                }
            }
            Some(locations) => {
                if let Some(location) = locations
                    .iter()
                    .find(|l| !candidates.iter().any(|d| location_ok(d, l)))
                {
                    return format!(
                        "location `{}` not granted with these actions by any parent detail",
                        shown(location.as_str())
                    );
                }
            }
        }
        let candidates: Vec<_> = candidates
            .into_iter()
            .filter(|d| match self.locations() {
                None => d.locations().is_none(),
                Some(locations) => locations.iter().all(|l| location_ok(d, l)),
            })
            .collect();
        if candidates.is_empty() {
            return "no single parent detail grants the requested actions at all the requested \
                    locations"
                .to_owned();
        }
        let contained = |d: &AuthorizationDetail, c: &ResourcePattern| {
            d.resources().iter().any(|p| p.contains(c))
        };
        if let Some(pattern) = self
            .resources()
            .iter()
            .find(|c| !candidates.iter().any(|d| contained(d, c)))
        {
            return format!(
                "resource `{}` not covered with these actions and locations by any parent detail",
                shown(&pattern.to_string())
            );
        }
        let candidates: Vec<_> = candidates
            .into_iter()
            .filter(|d| self.resources().iter().all(|c| contained(d, c)))
            .collect();
        let Some(first) = candidates.first() else {
            return "no single parent detail grants all the requested resources".to_owned();
        };
        match self.constraints().first_looser_than(first.constraints()) {
            Some(name) => format!("constraint `{name}` is missing or looser than the parent's"),
            None => "no single parent detail covers it".to_owned(),
        }
    }
}

impl Scope {
    /// The ⊑ relation: every detail of `self` is covered by some single detail of `parent`.
    pub fn is_within(&self, parent: &Scope) -> bool {
        self.details()
            .iter()
            .all(|child| parent.details().iter().any(|p| p.covers(child)))
    }

    /// Returns `requested` if it is within `self`, else [`ScopeError::Widening`] naming the
    /// first requested detail that is not covered and why. Never clamps.
    pub fn narrow(&self, requested: Scope) -> Result<Scope, ScopeError> {
        for (index, child) in requested.details().iter().enumerate() {
            if !self.details().iter().any(|p| p.covers(child)) {
                return Err(ScopeError::Widening {
                    detail: index,
                    reason: child.widening_reason(self),
                });
            }
        }
        Ok(requested)
    }
}

impl TryFrom<RawTerms> for DelegationTerms {
    type Error = ScopeError;

    fn try_from(raw: RawTerms) -> Result<Self, Self::Error> {
        if !(1..=MAX_DEPTH_HARD_CAP).contains(&raw.max_depth) {
            return Err(ScopeError::InvalidMaxDepth {
                max_depth: raw.max_depth,
                cap: MAX_DEPTH_HARD_CAP,
            });
        }
        if !(1..=raw.max_depth).contains(&raw.depth) {
            return Err(ScopeError::InvalidDepth {
                depth: raw.depth,
                max_depth: raw.max_depth,
            });
        }
        Ok(Self {
            scope: raw.scope,
            prohibitions: raw.prohibitions,
            expires_at: raw.expires_at,
            depth: raw.depth,
            max_depth: raw.max_depth,
        })
    }
}

/// The JSON shape of [`DelegationTerms`], before the depth checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerms {
    scope: Scope,
    prohibitions: Prohibitions,
    expires_at: i64,
    depth: u8,
    max_depth: u8,
}
