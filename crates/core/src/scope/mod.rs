//! Scopes: what authority is made of, how it is parsed, decided and attenuated (DESIGN §3).
//!
//! A [`Scope`] is a list of RFC 9396 authorization details of type `mandate`, each granting
//! [`Action`]s at [`Location`]s on [`ResourcePattern`]s under [`Constraints`]. Beside a scope
//! a delegation carries [`Prohibitions`], which always win. [`evaluate`] decides one
//! [`AccessRequest`] and returns a [`Decision`] value; [`DelegationTerms::attenuate`] is the
//! only way to derive narrower terms, and its laws are written down in [`attenuation`].
//!
//! Untrusted input is parsed with [`Scope::parse`] / [`Prohibitions::parse`], which take
//! [`ScopeLimits`] (the action vocabulary and size limits). The serde `Deserialize` impls
//! check every structural invariant but accept any well-formed action name: they are for
//! reading back data that was parsed on the way in.
//!
//! ```
//! use mandate_core::scope::{
//!     evaluate, AccessRequest, Action, Decision, Prohibitions, ResourcePath, Scope, ScopeLimits,
//! };
//! use serde_json::json;
//!
//! let limits = ScopeLimits::default();
//! let scope = Scope::parse(
//!     &json!([{"type": "mandate", "actions": ["read"], "resources": ["customers/42/**"]}]),
//!     &limits,
//! )?;
//! let request = AccessRequest {
//!     action: Action::new("read")?,
//!     location: None,
//!     resource: ResourcePath::parse("/customers/42/orders")?,
//! };
//! assert_eq!(evaluate(&scope, &Prohibitions::none(), &request), Decision::Allow { detail: 0 });
//! # Ok::<(), mandate_core::scope::ScopeError>(())
//! ```

mod action;
pub mod attenuation;
mod constraint;
mod detail;
mod error;
mod evaluate;
mod limits;
mod location;
mod prohibition;
mod resource;

pub use action::{Action, ActionVocabulary, MAX_ACTION_BYTES, MAX_VOCABULARY};
pub use attenuation::{AttenuationRequest, DelegationTerms};
pub use constraint::{
    Amount, Constraints, Currency, DaySet, MAX_AMOUNT, MaxAmount, MinTrust, Rate, TimeOfDay,
    TimeWindow, TimeZoneName, Weekday,
};
pub use detail::{AuthorizationDetail, AuthorizationDetails, DETAIL_TYPE, Scope};
pub use error::ScopeError;
pub use evaluate::{AccessRequest, Decision, DenyReason, evaluate};
pub use limits::{
    MAX_DEPTH_HARD_CAP, MAX_DETAILS, MAX_INHERITED_PROHIBITIONS, MAX_ITEMS, MAX_SEGMENT_BYTES,
    MAX_SEGMENTS, ScopeLimits,
};
pub use location::{Location, MAX_LOCATION_BYTES};
pub use prohibition::{Prohibition, Prohibitions};
pub use resource::{ResourcePath, ResourcePattern};

#[cfg(test)]
mod tests;
