//! Actions and the configurable vocabulary they are drawn from.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{ScopeError, shown};

/// Most bytes in an action name.
pub const MAX_ACTION_BYTES: usize = 32;

/// Most actions in a vocabulary.
pub const MAX_VOCABULARY: usize = 64;

/// One action name such as `read`: `[a-z][a-z0-9_.-]{0,31}`.
///
/// An `Action` proves only that the name is well-formed. Whether the deployment knows it is
/// checked against an [`ActionVocabulary`] when input is parsed (`Scope::parse`), because
/// "unknown actions are rejected at input" (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Action(String);

impl Action {
    /// Parses a well-formed action name (not checked against any vocabulary).
    pub fn new(name: &str) -> Result<Self, ScopeError> {
        let bytes = name.as_bytes();
        let ok = bytes.first().is_some_and(u8::is_ascii_lowercase)
            && bytes.len() <= MAX_ACTION_BYTES
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(ScopeError::InvalidActionName { name: shown(name) })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Action {
    type Error = ScopeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl FromStr for Action {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl From<Action> for String {
    fn from(value: Action) -> Self {
        value.0
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The actions a deployment knows. Defaults to `read`, `write`, `delete`, `execute`.
///
/// Serialized as a sorted JSON array of names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct ActionVocabulary {
    actions: BTreeSet<Action>,
}

impl ActionVocabulary {
    /// A vocabulary of the given names (duplicates are merged). At least one, at most
    /// [`MAX_VOCABULARY`].
    pub fn new<I>(names: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut actions = BTreeSet::new();
        for name in names {
            actions.insert(Action::new(name.as_ref())?);
            if actions.len() > MAX_VOCABULARY {
                return Err(ScopeError::TooMany {
                    field: "vocabulary",
                    max: MAX_VOCABULARY,
                });
            }
        }
        if actions.is_empty() {
            return Err(ScopeError::EmptyVocabulary);
        }
        Ok(Self { actions })
    }

    /// Whether the vocabulary knows `action`.
    pub fn contains(&self, action: &Action) -> bool {
        self.actions.contains(action)
    }

    /// Parses `name` and checks that the vocabulary knows it.
    pub fn action(&self, name: &str) -> Result<Action, ScopeError> {
        let action = Action::new(name)?;
        if self.contains(&action) {
            Ok(action)
        } else {
            Err(ScopeError::UnknownAction { name: shown(name) })
        }
    }

    /// The actions, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter()
    }
}

impl Default for ActionVocabulary {
    /// The four actions of the Delegation Receipt Protocol.
    fn default() -> Self {
        let actions = ["read", "write", "delete", "execute"]
            .into_iter()
            .map(|name| Action(name.to_owned()))
            .collect();
        Self { actions }
    }
}

impl TryFrom<Vec<String>> for ActionVocabulary {
    type Error = ScopeError;

    fn try_from(value: Vec<String>) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ActionVocabulary> for Vec<String> {
    fn from(value: ActionVocabulary) -> Self {
        value.actions.into_iter().map(String::from).collect()
    }
}
