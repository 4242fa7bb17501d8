//! Authorization details of type `mandate` (RFC 9396) and scopes, which are lists of them.

use std::collections::BTreeSet;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::action::Action;
use super::constraint::{Constraints, RawConstraints};
use super::error::{ScopeError, shown};
use super::evaluate::AccessRequest;
use super::limits::{Ctx, MAX_DETAILS, ScopeLimits};
use super::location::Location;
use super::resource::ResourcePattern;

/// The only authorization detail `type` Mandate accepts (RFC 9396 §2).
pub const DETAIL_TYPE: &str = "mandate";

/// One RFC 9396 authorization detail of type `mandate`.
///
/// ```json
/// { "type": "mandate", "actions": ["read"], "locations": ["https://crm.example.com"],
///   "resources": ["tickets/*"], "constraints": {"min_trust": 50} }
/// ```
///
/// `actions` and `resources` are non-empty sets. `locations` is optional: absent means any
/// location (the widest), present means a non-empty set. `constraints` is optional and
/// defaults to none. Sets are serialized sorted and without duplicates; empty constraints
/// and absent locations are left out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawDetail")]
pub struct AuthorizationDetail {
    actions: BTreeSet<Action>,
    locations: Option<BTreeSet<Location>>,
    resources: BTreeSet<ResourcePattern>,
    constraints: Constraints,
}

/// A scope: a non-empty list of authorization details (at most [`MAX_DETAILS`]), which
/// grants the union of what its details grant. Order is kept: decisions name a detail by
/// its index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<AuthorizationDetail>")]
pub struct Scope {
    details: Vec<AuthorizationDetail>,
}

/// The RFC 9396 name of a [`Scope`]: `AuthorizationDetails::parse` is [`Scope::parse`].
pub type AuthorizationDetails = Scope;

impl AuthorizationDetail {
    /// Parses one detail from untrusted JSON under `limits`.
    pub fn parse(value: &Value, limits: &ScopeLimits) -> Result<Self, ScopeError> {
        Self::parse_with(value, &Ctx::input(limits))
    }

    /// A detail from parts that are each already valid. `actions` and `resources` must be
    /// non-empty, `locations`, if given, too; each list holds at most 32 items.
    pub fn new(
        actions: BTreeSet<Action>,
        locations: Option<BTreeSet<Location>>,
        resources: BTreeSet<ResourcePattern>,
        constraints: Constraints,
    ) -> Result<Self, ScopeError> {
        let ctx = Ctx::structural();
        Ctx::check_non_empty("actions", actions.len(), ctx.max_items)?;
        if let Some(locations) = &locations {
            Ctx::check_non_empty("locations", locations.len(), ctx.max_items)?;
        }
        Ctx::check_non_empty("resources", resources.len(), ctx.max_items)?;
        Ok(Self {
            actions,
            locations,
            resources,
            constraints,
        })
    }

    /// The granted actions.
    pub fn actions(&self) -> &BTreeSet<Action> {
        &self.actions
    }

    /// The allowed locations; `None` means any location.
    pub fn locations(&self) -> Option<&BTreeSet<Location>> {
        self.locations.as_ref()
    }

    /// The resource patterns.
    pub fn resources(&self) -> &BTreeSet<ResourcePattern> {
        &self.resources
    }

    /// The constraints the gate must check when this detail grants a request.
    pub fn constraints(&self) -> &Constraints {
        &self.constraints
    }

    /// Whether this detail grants `request`, constraints aside: the action is listed, the
    /// location is allowed (no location list, or the request names a listed location), and
    /// some pattern matches the resource.
    pub fn grants(&self, request: &AccessRequest) -> bool {
        let location_ok = match (&self.locations, &request.location) {
            (None, _) => true,
            (Some(allowed), Some(location)) => allowed.contains(location),
            (Some(_), None) => false,
        };
        self.actions.contains(&request.action)
            && location_ok
            && self
                .resources
                .iter()
                .any(|pattern| pattern.matches(&request.resource))
    }

    fn parse_with(value: &Value, ctx: &Ctx<'_>) -> Result<Self, ScopeError> {
        // Check the type first, so a foreign detail is named as such rather than as a shape
        // error about members it legitimately has.
        let Some(object) = value.as_object() else {
            return Err(ScopeError::Malformed {
                what: "authorization detail",
                reason: "expected an object".to_owned(),
            });
        };
        match object.get("type") {
            Some(Value::String(kind)) if kind == DETAIL_TYPE => {}
            Some(Value::String(kind)) => {
                return Err(ScopeError::UnsupportedType { kind: shown(kind) });
            }
            _ => {
                return Err(ScopeError::Malformed {
                    what: "authorization detail",
                    reason: "`type` must be a string".to_owned(),
                });
            }
        }
        let raw = RawDetail::deserialize(value).map_err(|e| ScopeError::Malformed {
            what: "authorization detail",
            reason: e.to_string(),
        })?;
        Self::from_raw(raw, ctx)
    }

    fn from_raw(raw: RawDetail, ctx: &Ctx<'_>) -> Result<Self, ScopeError> {
        if raw.kind != DETAIL_TYPE {
            return Err(ScopeError::UnsupportedType {
                kind: shown(&raw.kind),
            });
        }
        Ctx::check_non_empty("actions", raw.actions.len(), ctx.max_items)?;
        let actions = raw
            .actions
            .iter()
            .map(|name| ctx.action(name))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let locations = match raw.locations {
            None => None,
            Some(locations) => {
                Ctx::check_non_empty("locations", locations.len(), ctx.max_items)?;
                Some(
                    locations
                        .iter()
                        .map(|l| Location::parse(l))
                        .collect::<Result<BTreeSet<_>, _>>()?,
                )
            }
        };
        Ctx::check_non_empty("resources", raw.resources.len(), ctx.max_items)?;
        let resources = raw
            .resources
            .iter()
            .map(|r| {
                let pattern = ResourcePattern::parse(r)?;
                ctx.check_segments(&pattern)?;
                Ok(pattern)
            })
            .collect::<Result<BTreeSet<_>, ScopeError>>()?;
        let constraints = match raw.constraints {
            None => Constraints::none(),
            Some(raw) => Constraints::from_raw(raw, ctx)?,
        };
        Ok(Self {
            actions,
            locations,
            resources,
            constraints,
        })
    }
}

impl Scope {
    /// Parses an `authorization_details` array from untrusted JSON under `limits`: the way
    /// client input becomes a scope. Unknown actions, unknown members and anything past the
    /// limits are refused.
    pub fn parse(value: &Value, limits: &ScopeLimits) -> Result<Self, ScopeError> {
        let ctx = Ctx::input(limits);
        let Some(items) = value.as_array() else {
            return Err(ScopeError::Malformed {
                what: "authorization details",
                reason: "expected an array".to_owned(),
            });
        };
        Ctx::check_non_empty("authorization_details", items.len(), ctx.max_details)?;
        let details = items
            .iter()
            .map(|item| AuthorizationDetail::parse_with(item, &ctx))
            .collect::<Result<_, _>>()?;
        Ok(Self { details })
    }

    /// A scope of already valid details: at least one, at most [`MAX_DETAILS`].
    pub fn new(details: Vec<AuthorizationDetail>) -> Result<Self, ScopeError> {
        Ctx::check_non_empty("authorization_details", details.len(), MAX_DETAILS)?;
        Ok(Self { details })
    }

    /// The details, in order.
    pub fn details(&self) -> &[AuthorizationDetail] {
        &self.details
    }

    /// The detail at `index`, e.g. the one a [`Decision::Allow`](super::Decision::Allow) names.
    pub fn detail(&self, index: usize) -> Option<&AuthorizationDetail> {
        self.details.get(index)
    }

    /// The indexes of every detail that grants `request`, constraints aside, in order. The
    /// gate allows the request if the constraints of any one of them are met.
    pub fn granting<'a>(&'a self, request: &'a AccessRequest) -> impl Iterator<Item = usize> + 'a {
        self.details
            .iter()
            .enumerate()
            .filter(|(_, detail)| detail.grants(request))
            .map(|(index, _)| index)
    }
}

impl Serialize for AuthorizationDetail {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len =
            3 + usize::from(self.locations.is_some()) + usize::from(!self.constraints.is_empty());
        let mut out = serializer.serialize_struct("AuthorizationDetail", len)?;
        out.serialize_field("type", DETAIL_TYPE)?;
        out.serialize_field("actions", &self.actions)?;
        if let Some(locations) = &self.locations {
            out.serialize_field("locations", locations)?;
        }
        out.serialize_field("resources", &self.resources)?;
        if !self.constraints.is_empty() {
            out.serialize_field("constraints", &self.constraints)?;
        }
        out.end()
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.details.serialize(serializer)
    }
}

impl TryFrom<RawDetail> for AuthorizationDetail {
    type Error = ScopeError;

    fn try_from(raw: RawDetail) -> Result<Self, Self::Error> {
        Self::from_raw(raw, &Ctx::structural())
    }
}

impl TryFrom<Vec<AuthorizationDetail>> for Scope {
    type Error = ScopeError;

    fn try_from(details: Vec<AuthorizationDetail>) -> Result<Self, Self::Error> {
        Self::new(details)
    }
}

/// The JSON shape of an [`AuthorizationDetail`], before any checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDetail {
    #[serde(rename = "type")]
    kind: String,
    actions: Vec<String>,
    #[serde(default)]
    locations: Option<Vec<String>>,
    resources: Vec<String>,
    #[serde(default)]
    constraints: Option<RawConstraints>,
}
