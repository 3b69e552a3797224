//! Tenants (organizations): identifier, slug, display name and status.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The identity of a tenant. It reaches a request only from a verified credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(Uuid);

impl TenantId {
    /// A new random tenant id.
    pub fn new_random() -> Self {
        TenantId(Uuid::new_v4())
    }

    /// Wraps a UUID read from a trusted source (the database or a verified key).
    pub const fn from_uuid(id: Uuid) -> Self {
        TenantId(id)
    }

    /// The underlying UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a slug or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantFieldError {
    #[error("slug must be 3 to 63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'")]
    InvalidSlug,
    #[error("name must be 1 to 200 characters without control characters")]
    InvalidName,
}

/// A tenant's URL-safe unique handle, e.g. `acme-security`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantSlug(String);

impl TenantSlug {
    /// Parses a slug: 3–63 of `a-z0-9-`, a leading letter, no trailing or doubled `-`.
    pub fn parse(text: &str) -> Result<Self, TenantFieldError> {
        let bytes = text.as_bytes();
        let well_formed = (3..=63).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes[bytes.len() - 1] != b'-'
            && !text.contains("--")
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if well_formed {
            Ok(TenantSlug(text.to_owned()))
        } else {
            Err(TenantFieldError::InvalidSlug)
        }
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's display name, trimmed, 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TenantName(String);

impl TenantName {
    /// Parses a display name; surrounding white space is trimmed first.
    pub fn parse(text: &str) -> Result<Self, TenantFieldError> {
        let trimmed = text.trim();
        let length = trimmed.chars().count();
        if (1..=200).contains(&length) && !trimmed.chars().any(char::is_control) {
            Ok(TenantName(trimmed.to_owned()))
        } else {
            Err(TenantFieldError::InvalidName)
        }
    }

    /// The name text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a tenant may use the API. A suspended tenant's keys are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    /// The lowercase name used in the API and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }
}

/// The text was not a tenant status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tenant status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for TenantStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "active" => Ok(TenantStatus::Active),
            "suspended" => Ok(TenantStatus::Suspended),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_rules() {
        for good in [
            "acme",
            "acme-security",
            "a12",
            &format!("a{}", "b".repeat(62)),
        ] {
            assert!(TenantSlug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            "1acme",
            "Acme",
            "acme-",
            "ac--me",
            "acme_x",
            "acmé",
            &"a".repeat(64),
        ] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            TenantName::parse("  Acme Corp ").unwrap().as_str(),
            "Acme Corp"
        );
        assert!(TenantName::parse("   ").is_err());
        assert!(TenantName::parse("bad\u{0}name").is_err());
        assert!(TenantName::parse(&"x".repeat(201)).is_err());
        assert!(TenantName::parse(&"é".repeat(200)).is_ok());
    }
}
