//! Assets: what gets scanned, and how much it matters.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in the API and the database.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $name::ALL.iter().copied().find(|value| value.as_str() == text).ok_or_else(|| {
                    let names: Vec<_> = $name::ALL.iter().map(|value| value.as_str()).collect();
                    format!("unknown {} {text:?}; expected one of {}", $what, names.join(", "))
                })
            }
        }
    };
}

text_enum!(
    /// What kind of thing an asset is.
    AssetKind {
        Repository => "repository",
        ContainerImage => "container_image",
        Host => "host",
        Domain => "domain",
        Url => "url",
        CloudAccount => "cloud_account",
        SaasApp => "saas_app",
    },
    "asset kind"
);

text_enum!(
    /// How much an asset matters to the business; weighs its findings in the score.
    Criticality {
        Low => "low",
        Medium => "medium",
        High => "high",
        Critical => "critical",
    },
    "criticality"
);

/// Why an asset name or tag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetFieldError {
    #[error("name must be 1 to 500 characters without control characters")]
    InvalidName,
    #[error("tags must be at most 50, each 1 to 100 characters without control characters")]
    InvalidTags,
}

/// An asset's name, unique per tenant and kind (e.g. `github.com/acme/api`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AssetName(String);

impl AssetName {
    /// Parses a name: trimmed, 1–500 characters, no control characters.
    pub fn parse(text: &str) -> Result<Self, AssetFieldError> {
        let trimmed = text.trim();
        if (1..=500).contains(&trimmed.chars().count()) && !trimmed.chars().any(char::is_control) {
            Ok(AssetName(trimmed.to_owned()))
        } else {
            Err(AssetFieldError::InvalidName)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Validates and normalizes tags: trimmed, de-duplicated, sorted.
pub fn parse_tags(tags: &[String]) -> Result<Vec<String>, AssetFieldError> {
    let mut normalized: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim();
        if !(1..=100).contains(&tag.chars().count()) || tag.chars().any(char::is_control) {
            return Err(AssetFieldError::InvalidTags);
        }
        normalized.push(tag.to_owned());
    }
    normalized.sort();
    normalized.dedup();
    if normalized.len() > 50 {
        return Err(AssetFieldError::InvalidTags);
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_criticalities_parse_by_name() {
        assert_eq!(
            "container_image".parse::<AssetKind>().unwrap(),
            AssetKind::ContainerImage
        );
        assert!("vm"
            .parse::<AssetKind>()
            .unwrap_err()
            .contains("repository"));
        assert!(Criticality::Low < Criticality::Critical);
    }

    #[test]
    fn names_and_tags_are_normalized_and_bounded() {
        assert_eq!(
            AssetName::parse(" github.com/acme/api ").unwrap().as_str(),
            "github.com/acme/api"
        );
        assert!(AssetName::parse("").is_err());
        assert!(AssetName::parse(&"x".repeat(501)).is_err());
        assert_eq!(
            parse_tags(&["b".into(), "a".into(), " b ".into()]).unwrap(),
            ["a", "b"]
        );
        assert!(parse_tags(&["".into()]).is_err());
        assert!(parse_tags(&(0..51).map(|i| i.to_string()).collect::<Vec<_>>()).is_err());
    }
}
