//! Bounds on the work and size of scope input, with safe defaults.

use serde::{Deserialize, Serialize};

use super::action::{Action, ActionVocabulary};
use super::error::{ScopeError, shown};

/// Most authorization details in one scope; also the default of [`ScopeLimits::max_details`].
pub const MAX_DETAILS: usize = 16;
/// Most actions, locations or resources in one detail or prohibition, and most prohibitions in
/// one input list; also the default of [`ScopeLimits::max_items`].
pub const MAX_ITEMS: usize = 32;
/// Most segments in a resource; also the default of [`ScopeLimits::max_segments`].
pub const MAX_SEGMENTS: usize = 32;
/// Most bytes in one resource segment (after decoding and NFC).
pub const MAX_SEGMENT_BYTES: usize = 255;
/// The hard cap on delegation depth; also the default of [`ScopeLimits::max_depth_hard_cap`].
pub const MAX_DEPTH_HARD_CAP: u8 = 10;
/// Most prohibitions a delegation can carry once inherited ones are added:
/// [`MAX_ITEMS`] per hop over [`MAX_DEPTH_HARD_CAP`] hops.
pub const MAX_INHERITED_PROHIBITIONS: usize = MAX_ITEMS * MAX_DEPTH_HARD_CAP as usize;

/// The configuration every scope parser takes (STYLE §2, "Bounded work").
///
/// Each number can only lower the matching hard constant ([`MAX_DETAILS`], [`MAX_ITEMS`],
/// [`MAX_SEGMENTS`], [`MAX_DEPTH_HARD_CAP`]); a larger value is treated as the constant, so
/// anything parsed under some limits can also be read back by serde, which applies the
/// constants. As configuration, every member is optional and defaults as below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeLimits {
    /// The actions this deployment knows.
    pub vocabulary: ActionVocabulary,
    /// Most authorization details in a scope.
    pub max_details: usize,
    /// Most actions, locations, resources or prohibitions in one list.
    pub max_items: usize,
    /// Most segments in a resource pattern.
    pub max_segments: usize,
    /// The highest `max_depth` a mandate may set.
    pub max_depth_hard_cap: u8,
}

impl ScopeLimits {
    /// `max_depth_hard_cap`, lowered to [`MAX_DEPTH_HARD_CAP`] if needed.
    pub fn depth_cap(&self) -> u8 {
        self.max_depth_hard_cap.min(MAX_DEPTH_HARD_CAP)
    }
}

impl Default for ScopeLimits {
    fn default() -> Self {
        Self {
            vocabulary: ActionVocabulary::default(),
            max_details: MAX_DETAILS,
            max_items: MAX_ITEMS,
            max_segments: MAX_SEGMENTS,
            max_depth_hard_cap: MAX_DEPTH_HARD_CAP,
        }
    }
}

/// The effective limits of one parse: input (vocabulary and configured limits) or
/// structural (serde: hard constants, any well-formed action).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) vocabulary: Option<&'a ActionVocabulary>,
    pub(crate) max_details: usize,
    pub(crate) max_items: usize,
    pub(crate) max_segments: usize,
    pub(crate) max_prohibitions: usize,
}

impl<'a> Ctx<'a> {
    /// Limits for untrusted input.
    pub(crate) fn input(limits: &'a ScopeLimits) -> Self {
        Self {
            vocabulary: Some(&limits.vocabulary),
            max_details: limits.max_details.min(MAX_DETAILS),
            max_items: limits.max_items.min(MAX_ITEMS),
            max_segments: limits.max_segments.min(MAX_SEGMENTS),
            max_prohibitions: limits.max_items.min(MAX_ITEMS),
        }
    }

    /// Limits for serde: data that was validated on the way in (e.g. read back from storage).
    pub(crate) fn structural() -> Ctx<'static> {
        Ctx {
            vocabulary: None,
            max_details: MAX_DETAILS,
            max_items: MAX_ITEMS,
            max_segments: MAX_SEGMENTS,
            max_prohibitions: MAX_INHERITED_PROHIBITIONS,
        }
    }

    /// Parses an action, checking the vocabulary when there is one.
    pub(crate) fn action(&self, name: &str) -> Result<Action, ScopeError> {
        match self.vocabulary {
            Some(vocabulary) => vocabulary.action(name),
            None => Action::new(name),
        }
    }

    /// Refuses a list longer than `max`.
    pub(crate) fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), ScopeError> {
        if len > max {
            Err(ScopeError::TooMany { field, max })
        } else {
            Ok(())
        }
    }

    /// Refuses an empty list or one longer than `max`.
    pub(crate) fn check_non_empty(
        field: &'static str,
        len: usize,
        max: usize,
    ) -> Result<(), ScopeError> {
        if len == 0 {
            return Err(ScopeError::Empty { field });
        }
        Self::check_len(field, len, max)
    }

    /// Refuses a pattern with more segments than allowed here.
    pub(crate) fn check_segments(
        &self,
        pattern: &super::resource::ResourcePattern,
    ) -> Result<(), ScopeError> {
        if pattern.segment_count() > self.max_segments {
            Err(ScopeError::TooManySegments {
                resource: shown(&pattern.to_string()),
                max: self.max_segments,
            })
        } else {
            Ok(())
        }
    }
}
