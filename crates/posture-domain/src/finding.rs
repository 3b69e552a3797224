//! The normalized finding: what every report format is reduced to.
//!
//! A parser fills a [`FindingDraft`] with what the report says, in the report's
//! own words; [`NormalizedFinding::from_draft`] is the one place that trims,
//! bounds, sorts and fingerprints it. Keeping that in one place is what makes a
//! CVE reported by a CycloneDX scanner and the same CVE from the native format
//! come out byte-for-byte alike.

use crate::fingerprint::{self, Basis, Fingerprint};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest title kept, in characters.
pub const MAX_TITLE_CHARS: usize = 500;
/// Longest description kept, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4_000;
/// Longest rule id, location uri, package name/purl/version or vulnerability id kept, in characters.
pub const MAX_FIELD_CHARS: usize = 1_000;
/// Most CWE ids or vulnerability ids kept on one finding.
pub const MAX_IDS: usize = 64;

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The severity of a vulnerability nobody rated: medium, so that it still
    /// gets an SLA instead of sinking below the fold as "info".
    pub const UNRATED: Severity = Severity::Medium;

    /// The lowercase name used in the API, the database and the native format.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The severity of a CVSS base score, with GitHub's `security-severity`
    /// thresholds: ≥ 9.0 critical, ≥ 7.0 high, ≥ 4.0 medium, > 0 low, else info.
    /// A NaN or negative score is info.
    pub fn from_cvss(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Info
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a severity name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}; expected info, low, medium, high or critical")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|severity| severity.as_str() == text)
            .ok_or_else(|| UnknownSeverity(text.to_owned()))
    }
}

/// Where in the scanned artifact a finding is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The normalized path or uri (see [`normalize_uri`](crate::fingerprint::normalize_uri)).
    pub uri: String,
    /// 1-based line, when the report gives one.
    pub start_line: Option<u32>,
}

/// The dependency a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    /// The package URL as the report gave it (qualifiers included).
    pub purl: Option<String>,
    /// The name, with its group or namespace when the report has one (`@angular/core`).
    pub name: String,
    /// The installed version, when known.
    pub version: Option<String>,
}

/// A tool's own identity for a result, as the report carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolFingerprint {
    /// A complete fingerprint (SARIF `fingerprints`, native `fingerprint`): the
    /// tool promises it is stable and unique on its own.
    Complete { key: String, value: String },
    /// A contribution to a fingerprint (SARIF `partialFingerprints`), e.g.
    /// CodeQL's `primaryLocationLineHash`, which hashes a line's content and so
    /// is only unique together with the rule and the file.
    Partial { key: String, value: String },
}

/// What a parser extracted for one finding, before normalization.
#[derive(Debug, Clone)]
pub struct FindingDraft {
    /// The tool's rule, check or advisory id.
    pub rule_id: String,
    /// Free text; its first non-empty line that is not a Markdown heading
    /// becomes the title (the rule id when there is none).
    pub title: String,
    /// Longer explanation, if any.
    pub description: Option<String>,
    /// The severity as mapped from the report's own scale.
    pub severity: Severity,
    /// CWE numbers in any order, possibly repeated; 0 is dropped.
    pub cwe_ids: Vec<u32>,
    /// CVE-, GHSA- and other advisory ids in any case and order.
    pub vulnerability_ids: Vec<String>,
    /// Where in the scanned artifact, for code and configuration findings.
    pub location: Option<Location>,
    /// The affected dependency, for dependency findings.
    pub package: Option<Package>,
    /// The tool's own identity for the result, if it gave one.
    pub tool_fingerprint: Option<ToolFingerprint>,
}

impl Default for FindingDraft {
    fn default() -> Self {
        FindingDraft {
            rule_id: String::new(),
            title: String::new(),
            description: None,
            severity: Severity::UNRATED,
            cwe_ids: Vec::new(),
            vulnerability_ids: Vec::new(),
            location: None,
            package: None,
            tool_fingerprint: None,
        }
    }
}

/// One finding in the shape the rest of the system stores.
///
/// Invariants (upheld by [`NormalizedFinding::from_draft`], the only
/// constructor the parsers use): strings are trimmed and bounded, `cwe_ids`
/// and `vulnerability_ids` are sorted and de-duplicated, vulnerability ids are
/// uppercase, and `fingerprint` is computed from the other fields by the rules
/// in `docs/fingerprints.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NormalizedFinding {
    /// The finding's identity (`docs/fingerprints.md`).
    pub fingerprint: Fingerprint,
    /// The tool's rule, check or advisory id (at most 1,000 characters).
    pub rule_id: String,
    /// One line, at most 500 characters, never empty.
    pub title: String,
    /// At most 4,000 characters.
    pub description: Option<String>,
    pub severity: Severity,
    /// CWE numbers, sorted, distinct, at most 64.
    pub cwe_ids: Vec<u32>,
    /// Uppercase advisory ids (`CVE-…`, `GHSA-…`, others), sorted, distinct, at most 64.
    pub vulnerability_ids: Vec<String>,
    /// Where, for code and configuration findings.
    pub location: Option<Location>,
    /// Which dependency, for dependency findings.
    pub package: Option<Package>,
}

impl NormalizedFinding {
    /// Normalizes a draft reported by `tool` and computes its fingerprint.
    pub fn from_draft(tool: &str, draft: FindingDraft) -> NormalizedFinding {
        NormalizedFinding::from_draft_with_basis(tool, draft).0
    }

    /// [`from_draft`](Self::from_draft), also telling which rule made the fingerprint.
    pub(crate) fn from_draft_with_basis(
        tool: &str,
        draft: FindingDraft,
    ) -> (NormalizedFinding, Basis) {
        let rule_id = bounded(draft.rule_id.trim(), MAX_FIELD_CHARS);
        let title = match title_line(&draft.title) {
            Some(line) => bounded(line, MAX_TITLE_CHARS),
            None => bounded(&rule_id, MAX_TITLE_CHARS),
        };
        let description = draft
            .description
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| bounded(d, MAX_DESCRIPTION_CHARS));
        let mut cwe_ids = draft.cwe_ids;
        cwe_ids.retain(|&id| id != 0);
        sort_bounded(&mut cwe_ids);
        let vulnerability_ids = normalize_vulnerability_ids(draft.vulnerability_ids);
        let location = draft.location.and_then(|loc| {
            let uri = bounded(&fingerprint::normalize_uri(&loc.uri), MAX_FIELD_CHARS);
            (!uri.is_empty()).then_some(Location {
                uri,
                start_line: loc.start_line.filter(|&line| line > 0),
            })
        });
        let package = draft.package.and_then(normalize_package);
        let (fingerprint, basis) = Fingerprint::for_finding(
            tool,
            &rule_id,
            &title,
            &vulnerability_ids,
            location.as_ref(),
            package.as_ref(),
            draft.tool_fingerprint.as_ref(),
        );
        let finding = NormalizedFinding {
            fingerprint,
            rule_id,
            title,
            description,
            severity: draft.severity,
            cwe_ids,
            vulnerability_ids,
            location,
            package,
        };
        (finding, basis)
    }

    /// The fingerprint this finding gets by the location rule, whatever rule
    /// gave it its own; for tool fingerprints that turn out not to be unique.
    pub(crate) fn location_fingerprint(&self, tool: &str) -> Fingerprint {
        Fingerprint::location(tool, &self.rule_id, self.location.as_ref(), &self.title)
    }

    /// Folds a duplicate (same fingerprint) into this finding: the higher
    /// severity wins and the id lists are united; everything else stays as first seen.
    pub fn merge(&mut self, other: NormalizedFinding) {
        debug_assert_eq!(self.fingerprint, other.fingerprint);
        self.severity = self.severity.max(other.severity);
        self.cwe_ids.extend(other.cwe_ids);
        sort_bounded(&mut self.cwe_ids);
        self.vulnerability_ids.extend(other.vulnerability_ids);
        sort_bounded(&mut self.vulnerability_ids);
    }
}

/// The line of free text that makes the best title: the first non-empty one
/// that is not a Markdown heading (advisories often open with `### Impact`),
/// else the first heading's text.
fn title_line(text: &str) -> Option<&str> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.clone().next()?;
    let heading = |line: &str| line.starts_with('#');
    match lines.find(|l| !heading(l)) {
        Some(line) => Some(line),
        None => Some(first.trim_start_matches('#').trim()).filter(|l| !l.is_empty()),
    }
}

/// Trims, uppercases, bounds, sorts and de-duplicates advisory ids.
pub fn normalize_vulnerability_ids(ids: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = ids
        .into_iter()
        .map(|id| bounded(id.trim(), MAX_FIELD_CHARS / 8).to_uppercase())
        .filter(|id| !id.is_empty())
        .collect();
    sort_bounded(&mut out);
    out
}

fn normalize_package(package: Package) -> Option<Package> {
    let purl = package
        .purl
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| bounded(p, MAX_FIELD_CHARS));
    let version = package
        .version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| bounded(v, MAX_FIELD_CHARS));
    let name = bounded(package.name.trim(), MAX_FIELD_CHARS);
    // A package needs something to be identified by.
    (!name.is_empty() || purl.is_some()).then_some(Package {
        purl,
        name,
        version,
    })
}

fn sort_bounded<T: Ord>(items: &mut Vec<T>) {
    items.sort_unstable();
    items.dedup();
    items.truncate(MAX_IDS);
}

/// `text` cut to at most `max_chars` characters, on a character boundary.
pub fn bounded(text: &str, max_chars: usize) -> String {
    // NUL is valid in JSON strings but cannot be stored in a Postgres text
    // column: it is dropped here, where every stored string passes.
    if text.contains('\0') {
        return bounded(&text.replace('\0', ""), max_chars);
    }
    // A string of at most `max_chars` bytes has at most that many characters.
    if text.len() <= max_chars {
        return text.to_owned();
    }
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_thresholds_follow_github() {
        let cases = [
            (10.0, Severity::Critical),
            (9.0, Severity::Critical),
            (8.9, Severity::High),
            (7.0, Severity::High),
            (6.9, Severity::Medium),
            (4.0, Severity::Medium),
            (3.9, Severity::Low),
            (0.1, Severity::Low),
            (0.0, Severity::Info),
            (-1.0, Severity::Info),
            (f64::NAN, Severity::Info),
        ];
        for (score, expected) in cases {
            assert_eq!(Severity::from_cvss(score), expected, "{score}");
        }
    }

    #[test]
    fn severity_names_round_trip_and_order() {
        for severity in Severity::ALL {
            assert_eq!(severity.as_str().parse::<Severity>(), Ok(severity));
            let json = serde_json::to_string(&severity).unwrap();
            assert_eq!(json, format!("\"{severity}\""));
        }
        assert!(Severity::Info < Severity::Low && Severity::High < Severity::Critical);
        assert!("severe".parse::<Severity>().is_err());
        assert!("HIGH".parse::<Severity>().is_err());
    }

    #[test]
    fn bounded_cuts_on_char_boundaries() {
        assert_eq!(bounded("héllo", 2), "hé");
        assert_eq!(bounded("héllo", 5), "héllo");
        assert_eq!(bounded("日本語", 1), "日");
        let long = "é".repeat(600);
        assert_eq!(bounded(&long, MAX_TITLE_CHARS).chars().count(), 500);
    }

    #[test]
    fn draft_is_trimmed_sorted_and_bounded() {
        let finding = NormalizedFinding::from_draft(
            "Tool",
            FindingDraft {
                rule_id: " r1 ".into(),
                title: "\n  first line \nsecond".into(),
                description: Some(format!("  {}  ", "d".repeat(5_000))),
                severity: Severity::High,
                cwe_ids: vec![89, 79, 0, 89],
                vulnerability_ids: vec![
                    "ghsa-abcd-efgh-ijkl".into(),
                    "cve-2021-1".into(),
                    "".into(),
                ],
                ..FindingDraft::default()
            },
        );
        assert_eq!(finding.rule_id, "r1");
        assert_eq!(finding.title, "first line");
        assert_eq!(finding.description.unwrap().len(), MAX_DESCRIPTION_CHARS);
        assert_eq!(finding.cwe_ids, vec![79, 89]);
        assert_eq!(
            finding.vulnerability_ids,
            vec!["CVE-2021-1", "GHSA-ABCD-EFGH-IJKL"]
        );
    }

    #[test]
    fn titles_skip_markdown_headings() {
        assert_eq!(
            title_line("### Impact\n\nlodash is vulnerable"),
            Some("lodash is vulnerable")
        );
        assert_eq!(title_line("## Only a heading"), Some("Only a heading"));
        assert_eq!(title_line("###"), None);
        assert_eq!(title_line("plain"), Some("plain"));
    }

    #[test]
    fn empty_title_falls_back_to_rule_id() {
        let draft = FindingDraft {
            rule_id: "rule".into(),
            title: "  \n ".into(),
            ..FindingDraft::default()
        };
        assert_eq!(NormalizedFinding::from_draft("t", draft).title, "rule");
    }
}
