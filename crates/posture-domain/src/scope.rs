//! API key scopes: `read`, `write`, `admin`.
//!
//! Scopes are hierarchical: `admin` grants everything `write` grants, and `write`
//! grants everything `read` grants. A key stores the scopes it was created with;
//! [`Scopes::allows`] applies the hierarchy.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One permission level of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    /// Every scope, weakest first.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    /// The lowercase name used in the API and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Admin => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a scope name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}; expected read, write or admin")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
            .ok_or_else(|| UnknownScope(text.to_owned()))
    }
}

/// A non-empty set of scopes held by one API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

/// A key must hold at least one scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at least one scope is required")]
pub struct EmptyScopes;

impl Scopes {
    /// Builds a set from its members; an empty set is refused.
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Result<Self, EmptyScopes> {
        let bits = scopes.into_iter().fold(0, |bits, scope| bits | scope.bit());
        if bits == 0 {
            Err(EmptyScopes)
        } else {
            Ok(Scopes(bits))
        }
    }

    /// The set holding only `scope`.
    pub const fn only(scope: Scope) -> Self {
        Scopes(scope.bit())
    }

    /// Whether the set grants `required`, applying the hierarchy read < write < admin.
    pub fn allows(self, required: Scope) -> bool {
        self.iter().any(|held| held >= required)
    }

    /// Whether `scope` itself is a member (no hierarchy).
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The members, weakest first.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |scope| self.contains(*scope))
    }

    /// The members as their names, for storage and display.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchy_grants_weaker_scopes_only() {
        let admin = Scopes::only(Scope::Admin);
        assert!(Scope::ALL.iter().all(|scope| admin.allows(*scope)));
        let write = Scopes::only(Scope::Write);
        assert!(write.allows(Scope::Read) && write.allows(Scope::Write));
        assert!(!write.allows(Scope::Admin));
        let read = Scopes::only(Scope::Read);
        assert!(!read.allows(Scope::Write));
    }

    #[test]
    fn empty_set_is_refused_and_names_are_ordered() {
        assert_eq!(Scopes::new([]), Err(EmptyScopes));
        let set = Scopes::new([Scope::Admin, Scope::Read]).unwrap();
        assert_eq!(set.names(), ["read", "admin"]);
        assert!("owner".parse::<Scope>().is_err());
    }
}
