//! Subscription tiers and the limits each one grants (PRODUCT.md, "Tiers").

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A tenant's subscription tier. Ordered: a higher tier includes everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Basic,
    Premium,
    Enterprise,
}

/// The request limits and features of one tier. `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TierLimits {
    /// Requests admitted in any sliding 60-second window.
    pub per_minute: u32,
    /// Requests per UTC calendar day.
    pub per_day: Option<u32>,
    /// Requests per UTC calendar month.
    pub per_month: Option<u32>,
    /// Whether the tier may run advanced (platform-run) scans.
    pub advanced_scans: bool,
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 4] = [Tier::Free, Tier::Basic, Tier::Premium, Tier::Enterprise];

    /// The exact limits of this tier; the table in PRODUCT.md is the source.
    pub const fn limits(self) -> TierLimits {
        match self {
            Tier::Free => TierLimits {
                per_minute: 10,
                per_day: Some(1_000),
                per_month: Some(10_000),
                advanced_scans: false,
            },
            Tier::Basic => TierLimits {
                per_minute: 60,
                per_day: Some(5_000),
                per_month: Some(50_000),
                advanced_scans: false,
            },
            Tier::Premium => TierLimits {
                per_minute: 120,
                per_day: Some(20_000),
                per_month: Some(200_000),
                advanced_scans: true,
            },
            Tier::Enterprise => TierLimits {
                per_minute: 1_000,
                per_day: None,
                per_month: None,
                advanced_scans: true,
            },
        }
    }

    /// The lowercase name used in the API, the database and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Basic => "basic",
            Tier::Premium => "premium",
            Tier::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the tier names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier {0:?}; expected one of free, basic, premium, enterprise")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|tier| tier.as_str() == text)
            .ok_or_else(|| UnknownTier(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_match_the_product_table() {
        let rows: Vec<_> = Tier::ALL.iter().map(|tier| tier.limits()).collect();
        assert_eq!(
            rows.iter().map(|l| l.per_minute).collect::<Vec<_>>(),
            [10, 60, 120, 1_000]
        );
        assert_eq!(
            rows.iter().map(|l| l.per_day).collect::<Vec<_>>(),
            [Some(1_000), Some(5_000), Some(20_000), None]
        );
        assert_eq!(
            rows.iter().map(|l| l.per_month).collect::<Vec<_>>(),
            [Some(10_000), Some(50_000), Some(200_000), None]
        );
        assert_eq!(
            rows.iter().map(|l| l.advanced_scans).collect::<Vec<_>>(),
            [false, false, true, true]
        );
    }

    #[test]
    fn names_round_trip_and_unknown_names_fail() {
        for tier in Tier::ALL {
            assert_eq!(tier.as_str().parse::<Tier>().unwrap(), tier);
        }
        assert!("Gold".parse::<Tier>().is_err());
        assert!(Tier::Free < Tier::Enterprise);
    }
}
