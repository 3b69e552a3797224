//! Prefixed identifiers: `ast_…`, `scn_…`, `fnd_…`, `cfw_…`, `whk_…`, `msg_…`, `dlv_…`.
//!
//! Each is a UUIDv7 (time ordered, so indexes stay append-mostly) shown as a
//! prefix and 22 base62 characters. Distinct types make it impossible to pass a
//! scan id where a finding id is expected, and the prefix makes a pasted id say
//! what it is.

use crate::base62;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use uuid::Uuid;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// The prefix shown before the base62 part.
            pub const PREFIX: &'static str = concat!($prefix, "_");

            /// A new time-ordered id.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }

            /// Wraps a UUID read from the database.
            pub const fn from_uuid(id: Uuid) -> Self {
                $name(id)
            }

            /// The UUID, for the database.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the prefixed form; `None` for anything else (the caller
            /// answers 404 for a malformed id in a path).
            pub fn parse(text: &str) -> Option<Self> {
                let body = text.strip_prefix(Self::PREFIX)?;
                if body.len() != base62::U128_WIDTH {
                    return None;
                }
                base62::decode(body).map(|value| $name(Uuid::from_u128(value)))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl $name {
            /// The prefixed form as ASCII bytes, on the stack: ids are shown
            /// for every row of every page, and this skips `fmt` (which, with
            /// serde's `collect_str`, cost more than the encoding itself).
            pub fn to_ascii(&self) -> [u8; $prefix.len() + 1 + base62::U128_WIDTH] {
                let mut text = [0u8; $prefix.len() + 1 + base62::U128_WIDTH];
                let (prefix, body) = text.split_at_mut(Self::PREFIX.len());
                prefix.copy_from_slice(Self::PREFIX.as_bytes());
                let fits = base62::encode_into(self.0.as_u128(), body);
                debug_assert!(fits, "a u128 fits 22 base62 characters");
                text
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Prefix and alphabet are ASCII.
                f.write_str(std::str::from_utf8(&self.to_ascii()).map_err(|_| fmt::Error)?)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let text = self.to_ascii();
                // Prefix and alphabet are ASCII.
                let text = std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?;
                serializer.serialize_str(text)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(concat!("not a ", $prefix, "_ id"))
                })
            }
        }
    };
}

prefixed_id!(
    /// An asset: something that gets scanned.
    AssetId,
    "ast"
);
prefixed_id!(
    /// A submitted scan report.
    ScanId,
    "scn"
);
prefixed_id!(
    /// A de-duplicated finding.
    FindingId,
    "fnd"
);
prefixed_id!(
    /// A tenant's custom compliance framework.
    FrameworkId,
    "cfw"
);
prefixed_id!(
    /// A webhook endpoint.
    WebhookId,
    "whk"
);
prefixed_id!(
    /// An event to deliver; also the `webhook-id` of its deliveries (the
    /// Standard Webhooks message id, the same on every retry).
    EventId,
    "msg"
);
prefixed_id!(
    /// One event's delivery to one endpoint, with its attempts.
    DeliveryId,
    "dlv"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_keep_their_kind() {
        let asset = AssetId::new();
        let text = asset.to_string();
        assert!(text.starts_with("ast_") && text.len() == 26, "{text}");
        assert_eq!(AssetId::parse(&text), Some(asset));
        assert_eq!(ScanId::parse(&text), None, "an asset id is not a scan id");
        assert_eq!(AssetId::parse("ast_short"), None);
        assert_eq!(
            AssetId::parse(&format!("ast_{}", "z".repeat(22))),
            None,
            "overflow"
        );
        assert!(FindingId::parse(&FindingId::new().to_string()).is_some());
    }

    #[test]
    fn ids_serialize_as_they_display() {
        let finding = FindingId::from_uuid(Uuid::from_u128(u128::MAX));
        let text = finding.to_string();
        assert_eq!(text, format!("fnd_{}", "7n42DGM5Tflk9n8mt7Fhc7"));
        assert_eq!(
            serde_json::to_string(&finding).unwrap(),
            format!("\"{text}\"")
        );
        let asset = AssetId::from_uuid(Uuid::nil());
        assert_eq!(asset.to_string(), format!("ast_{}", "0".repeat(22)));
        assert_eq!(
            serde_json::to_string(&asset).unwrap(),
            format!("\"ast_{}\"", "0".repeat(22))
        );
    }

    #[test]
    fn ids_are_time_ordered() {
        let first = ScanId::new();
        let second = ScanId::new();
        assert!(first.as_uuid() < second.as_uuid());
    }
}
