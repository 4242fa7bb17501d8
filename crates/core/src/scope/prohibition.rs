//! Prohibitions: explicit denials that are inherited by every descendant and beat any grant.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::action::Action;
use super::error::ScopeError;
use super::limits::{Ctx, MAX_INHERITED_PROHIBITIONS, ScopeLimits};
use super::resource::{ResourcePath, ResourcePattern};

/// One denial: `{"actions": ["delete"], "resources": ["**"]}`. Both lists are non-empty
/// sets. It applies at every location.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawProhibition")]
pub struct Prohibition {
    actions: BTreeSet<Action>,
    resources: BTreeSet<ResourcePattern>,
}

/// The prohibitions of a delegation: a set, kept sorted (so an index names one stably),
/// possibly empty. Input lists hold at most `max_items` (32); inherited sets may grow to
/// [`MAX_INHERITED_PROHIBITIONS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<Prohibition>")]
pub struct Prohibitions {
    items: Vec<Prohibition>,
}

impl Prohibition {
    /// Parses one prohibition from untrusted JSON under `limits`.
    pub fn parse(value: &Value, limits: &ScopeLimits) -> Result<Self, ScopeError> {
        let raw = RawProhibition::deserialize(value).map_err(|e| ScopeError::Malformed {
            what: "prohibition",
            reason: e.to_string(),
        })?;
        Self::from_raw(raw, &Ctx::input(limits))
    }

    /// A prohibition from already valid parts; both sets non-empty, at most 32 items each.
    pub fn new(
        actions: BTreeSet<Action>,
        resources: BTreeSet<ResourcePattern>,
    ) -> Result<Self, ScopeError> {
        let ctx = Ctx::structural();
        Ctx::check_non_empty("actions", actions.len(), ctx.max_items)?;
        Ctx::check_non_empty("resources", resources.len(), ctx.max_items)?;
        Ok(Self { actions, resources })
    }

    /// The denied actions.
    pub fn actions(&self) -> &BTreeSet<Action> {
        &self.actions
    }

    /// The patterns of the denied resources.
    pub fn resources(&self) -> &BTreeSet<ResourcePattern> {
        &self.resources
    }

    /// Whether this prohibition denies `action` on `resource`.
    pub fn matches(&self, action: &Action, resource: &ResourcePath) -> bool {
        self.actions.contains(action) && self.resources.iter().any(|p| p.matches(resource))
    }

    /// Whether this prohibition denies at least everything `other` denies: its actions are a
    /// superset and each of `other`'s patterns is contained in one of its patterns.
    pub fn covers(&self, other: &Prohibition) -> bool {
        self.actions.is_superset(&other.actions)
            && other
                .resources
                .iter()
                .all(|c| self.resources.iter().any(|p| p.contains(c)))
    }

    fn from_raw(raw: RawProhibition, ctx: &Ctx<'_>) -> Result<Self, ScopeError> {
        Ctx::check_non_empty("actions", raw.actions.len(), ctx.max_items)?;
        Ctx::check_non_empty("resources", raw.resources.len(), ctx.max_items)?;
        let actions = raw
            .actions
            .iter()
            .map(|name| ctx.action(name))
            .collect::<Result<_, _>>()?;
        let resources = raw
            .resources
            .iter()
            .map(|r| {
                let pattern = ResourcePattern::parse(r)?;
                ctx.check_segments(&pattern)?;
                Ok(pattern)
            })
            .collect::<Result<_, ScopeError>>()?;
        Ok(Self { actions, resources })
    }
}

impl Prohibitions {
    /// No prohibitions.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses a JSON array of prohibitions from untrusted input under `limits` (at most
    /// `max_items`).
    pub fn parse(value: &Value, limits: &ScopeLimits) -> Result<Self, ScopeError> {
        let ctx = Ctx::input(limits);
        let Some(items) = value.as_array() else {
            return Err(ScopeError::Malformed {
                what: "prohibitions",
                reason: "expected an array".to_owned(),
            });
        };
        Ctx::check_len("prohibitions", items.len(), ctx.max_prohibitions)?;
        let items = items
            .iter()
            .map(|item| {
                let raw = RawProhibition::deserialize(item).map_err(|e| ScopeError::Malformed {
                    what: "prohibition",
                    reason: e.to_string(),
                })?;
                Prohibition::from_raw(raw, &ctx)
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Self {
            items: items.into_iter().collect(),
        })
    }

    /// A set of already valid prohibitions (at most [`MAX_INHERITED_PROHIBITIONS`]).
    pub fn new(items: impl IntoIterator<Item = Prohibition>) -> Result<Self, ScopeError> {
        let items: BTreeSet<_> = items.into_iter().collect();
        Ctx::check_len("prohibitions", items.len(), MAX_INHERITED_PROHIBITIONS)?;
        Ok(Self {
            items: items.into_iter().collect(),
        })
    }

    /// The prohibitions, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Prohibition> {
        self.items.iter()
    }

    /// The prohibition at `index`, e.g. the one a denial names.
    pub fn get(&self, index: usize) -> Option<&Prohibition> {
        self.items.get(index)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The index of the first prohibition that denies `action` on `resource`.
    pub fn first_match(&self, action: &Action, resource: &ResourcePath) -> Option<usize> {
        self.items.iter().position(|p| p.matches(action, resource))
    }

    /// Whether `self` denies at least what `other` denies, judged item by item: every
    /// prohibition of `other` is present here, or covered by one at least as broad.
    pub fn includes(&self, other: &Prohibitions) -> bool {
        other
            .items
            .iter()
            .all(|o| self.items.iter().any(|s| s.covers(o)))
    }

    /// `self` ∪ `other`. Items of `other` already covered by one of `self` are not added, so
    /// the result includes both. Errors if it would exceed [`MAX_INHERITED_PROHIBITIONS`].
    pub fn union(&self, other: &Prohibitions) -> Result<Prohibitions, ScopeError> {
        let mut items: BTreeSet<Prohibition> = self.items.iter().cloned().collect();
        for o in &other.items {
            if !self.items.iter().any(|s| s.covers(o)) {
                items.insert(o.clone());
            }
        }
        Self::new(items)
    }
}

impl Serialize for Prohibitions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.items.serialize(serializer)
    }
}

impl TryFrom<Vec<Prohibition>> for Prohibitions {
    type Error = ScopeError;

    fn try_from(items: Vec<Prohibition>) -> Result<Self, Self::Error> {
        Self::new(items)
    }
}

impl TryFrom<RawProhibition> for Prohibition {
    type Error = ScopeError;

    fn try_from(raw: RawProhibition) -> Result<Self, Self::Error> {
        Self::from_raw(raw, &Ctx::structural())
    }
}

/// The JSON shape of a [`Prohibition`], before any checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProhibition {
    actions: Vec<String>,
    resources: Vec<String>,
}
