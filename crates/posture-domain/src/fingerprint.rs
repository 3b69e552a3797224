//! The versioned identity of a finding: `v1:<64 hex sha256>`.
//!
//! Two reports describe the same finding exactly when they yield the same
//! fingerprint; the store de-duplicates on `(tenant, asset, fingerprint)`. The
//! rules, and why they are what they are, are in `docs/fingerprints.md`. They
//! are part of the stored data: changing any of them means a new version
//! prefix and a migration, never an edit of `v1`.

use crate::finding::{Location, Package, ToolFingerprint};
use crate::purl::Purl;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

const VERSION_PREFIX: &str = "v1:";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A finding's identity. Compact (32 bytes, `Copy`) so that hash maps of a
/// 100,000-finding report stay small; shown and stored as `v1:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

/// The text is not a fingerprint this version of Posture wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a fingerprint; expected v1: followed by 64 lowercase hex digits")]
pub struct FingerprintParseError;

impl Fingerprint {
    /// Parses a stored `v1:<64 lowercase hex>` value.
    pub fn parse(text: &str) -> Result<Fingerprint, FingerprintParseError> {
        let hex = text
            .strip_prefix(VERSION_PREFIX)
            .filter(|hex| hex.len() == 64)
            .ok_or(FingerprintParseError)?;
        let mut digest = [0u8; 32];
        for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let nibble = |c: u8| {
                HEX.iter()
                    .position(|&h| h == c)
                    .ok_or(FingerprintParseError)
            };
            *byte = (nibble(pair[0])? << 4 | nibble(pair[1])?) as u8;
        }
        Ok(Fingerprint(digest))
    }

    /// The raw SHA-256 digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hashes length-prefixed parts, so `("ab","c")` and `("a","bc")` differ.
    fn of(parts: &[&str]) -> Fingerprint {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        Fingerprint(hasher.finalize().into())
    }

    /// A dependency finding: the advisory and the package, whoever reported it.
    /// The version is deliberately left out (see `docs/fingerprints.md`).
    pub fn dependency(vulnerability_ids: &[String], package: &Package) -> Fingerprint {
        let id = primary_vulnerability_id(vulnerability_ids).unwrap_or_default();
        Fingerprint::of(&["dep", id, &package_identity(package)])
    }

    /// A finding identified by the tool's own fingerprint.
    pub fn tool(
        tool: &str,
        rule_id: &str,
        uri: Option<&str>,
        print: &ToolFingerprint,
    ) -> Fingerprint {
        let tool = tool.trim().to_lowercase();
        match print {
            ToolFingerprint::Complete { key, value } => {
                Fingerprint::of(&["tool", &tool, rule_id, key, value])
            }
            // A partial fingerprint is only unique within a file.
            ToolFingerprint::Partial { key, value } => Fingerprint::of(&[
                "tool-partial",
                &tool,
                rule_id,
                uri.unwrap_or(""),
                key,
                value,
            ]),
        }
    }

    /// A finding identified by where it is. Without a location, the title
    /// stands in, so that different location-less findings of one rule stay apart.
    pub fn location(
        tool: &str,
        rule_id: &str,
        location: Option<&Location>,
        title: &str,
    ) -> Fingerprint {
        let tool = tool.trim().to_lowercase();
        match location {
            Some(loc) => {
                let line = loc.start_line.map(|l| l.to_string()).unwrap_or_default();
                Fingerprint::of(&["loc", &tool, rule_id, &loc.uri, &line, ""])
            }
            None => Fingerprint::of(&["loc", &tool, rule_id, "", "", title]),
        }
    }

    /// Applies the rules in order: dependency, tool fingerprint, location.
    /// Expects normalized inputs (as [`NormalizedFinding::from_draft`](crate::NormalizedFinding::from_draft) passes them).
    pub(crate) fn for_finding(
        tool: &str,
        rule_id: &str,
        title: &str,
        vulnerability_ids: &[String],
        location: Option<&Location>,
        package: Option<&Package>,
        tool_print: Option<&ToolFingerprint>,
    ) -> (Fingerprint, Basis) {
        match (package, tool_print) {
            (Some(package), _) if !vulnerability_ids.is_empty() => (
                Fingerprint::dependency(vulnerability_ids, package),
                Basis::Dependency,
            ),
            (_, Some(print)) => {
                let uri = location.map(|l| l.uri.as_str());
                (Fingerprint::tool(tool, rule_id, uri, print), Basis::Tool)
            }
            _ => (
                Fingerprint::location(tool, rule_id, location, title),
                Basis::Location,
            ),
        }
    }
}

/// Which rule produced a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Basis {
    Dependency,
    Tool,
    Location,
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 64];
        for (pair, byte) in text.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        f.write_str(VERSION_PREFIX)?;
        // The buffer holds only ASCII hex digits.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Fingerprint::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The advisory id that names a dependency finding: the first CVE, else the
/// first GHSA, else the first id, of a sorted, uppercased list. CVE first
/// because it is the id every scanner knows; a GHSA usually aliases one.
pub fn primary_vulnerability_id(sorted_ids: &[String]) -> Option<&str> {
    let first_with = |prefix: &str| sorted_ids.iter().find(|id| id.starts_with(prefix));
    first_with("CVE-")
        .or_else(|| first_with("GHSA-"))
        .or(sorted_ids.first())
        .map(String::as_str)
}

/// A package's versionless identity: its canonical purl (see [`Purl::identity`]),
/// else `name:<lowercased name>`.
pub fn package_identity(package: &Package) -> String {
    match package.purl.as_deref().and_then(Purl::parse) {
        Some(purl) => purl.identity(),
        None if !package.name.is_empty() => format!("name:{}", package.name.to_lowercase()),
        None => format!("purl:{}", package.purl.as_deref().unwrap_or("")),
    }
}

/// Normalizes a location so tools that spell the same file differently agree:
/// strips `file://` (and `file:`), turns `\` into `/`, drops empty and `.`
/// segments (so `//` collapses and a leading `./` goes). Absolute paths stay
/// absolute; `..` is kept, not resolved. Other schemes (`https://…`) are kept as given.
pub fn normalize_uri(raw: &str) -> String {
    let text = raw.trim();
    let (text, from_file_uri) = match strip_prefix_ignore_case(text, "file://") {
        Some(rest) => (rest, true),
        None => match strip_prefix_ignore_case(text, "file:") {
            Some(rest) => (rest, true),
            None if has_scheme(text) => return text.to_owned(),
            None => (text, false),
        },
    };
    let text = text.replace('\\', "/");
    let segments: Vec<&str> = text
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    // `file:///C:/src` names a Windows drive, not a directory "C:" under /.
    let drive = from_file_uri
        && segments.first().is_some_and(|s| {
            s.len() == 2 && s.as_bytes()[0].is_ascii_alphabetic() && s.ends_with(':')
        });
    let joined = segments.join("/");
    if text.starts_with('/') && !drive {
        format!("/{joined}")
    } else {
        joined
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `scheme://…` with a scheme of two or more characters (so `C://` is a path).
fn has_scheme(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        scheme.len() >= 2
            && scheme.as_bytes()[0].is_ascii_alphabetic()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let print = Fingerprint::of(&["x"]);
        let text = print.to_string();
        assert!(text.starts_with("v1:") && text.len() == 67, "{text}");
        assert_eq!(Fingerprint::parse(&text), Ok(print));
        let json = serde_json::to_string(&print).unwrap();
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), print);
    }

    #[test]
    fn parse_rejects_other_text() {
        let good = Fingerprint::of(&["x"]).to_string();
        for bad in [
            "".to_owned(),
            good[3..].to_owned(),
            good.replace("v1:", "v2:"),
            good.to_uppercase().replace("V1:", "v1:"),
            format!("{good}0"),
            good[..66].to_owned(),
            good.replacen(|c: char| c.is_ascii_digit(), "g", 1),
        ] {
            assert_eq!(
                Fingerprint::parse(&bad),
                Err(FingerprintParseError),
                "{bad}"
            );
        }
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(Fingerprint::of(&["ab", "c"]), Fingerprint::of(&["a", "bc"]));
    }

    #[test]
    fn uris_normalize() {
        let cases = [
            ("file:///home/u/src/a.py", "/home/u/src/a.py"),
            ("FILE:///C:/src/a.py", "C:/src/a.py"),
            ("file:src/a.py", "src/a.py"),
            ("./src//a.py", "src/a.py"),
            ("././src/./a.py", "src/a.py"),
            (".\\src\\a.py", "src/a.py"),
            ("src/../a.py", "src/../a.py"),
            ("  /abs//x  ", "/abs/x"),
            ("https://example.com//x", "https://example.com//x"),
            ("C://x", "C:/x"),
            ("", ""),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalize_uri(raw), expected, "{raw}");
        }
    }

    #[test]
    fn primary_id_prefers_cve_then_ghsa() {
        let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            primary_vulnerability_id(&ids(&["ALAS-1", "CVE-2", "GHSA-1"])),
            Some("CVE-2")
        );
        assert_eq!(
            primary_vulnerability_id(&ids(&["ALAS-1", "GHSA-1", "PYSEC-1"])),
            Some("GHSA-1")
        );
        assert_eq!(
            primary_vulnerability_id(&ids(&["PYSEC-1", "RUSTSEC-1"])),
            Some("PYSEC-1")
        );
        assert_eq!(primary_vulnerability_id(&[]), None);
    }
}
