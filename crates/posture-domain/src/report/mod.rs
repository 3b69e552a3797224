//! Scanner reports in, normalized findings out.
//!
//! [`parse_report`] accepts SARIF 2.1.0, CycloneDX 1.4–1.6 (with
//! `vulnerabilities`) and Posture's native format (`docs/report-formats.md`).
//! It checks the cheap things first (UTF-8, nesting depth), then reads the
//! document once into typed structs that keep only the fields we use, turning
//! results into findings as they stream past. Every refusal is a
//! [`ReportError`] with a JSON pointer; no input makes it panic.

mod cyclonedx;
mod detect;
mod error;
mod ids;
mod json;
mod native;
mod sarif;
mod sarif_model;
mod sarif_result;
pub mod synthetic;

pub use error::{ReportError, ReportErrorKind};
pub use json::MAX_DEPTH;

use crate::finding::{bounded, FindingDraft, NormalizedFinding};
use crate::fingerprint::{Basis, Fingerprint};
use serde::Serialize;
use std::collections::hash_map::{Entry, HashMap};
use std::fmt;

/// Most results (SARIF results, CycloneDX vulnerability × component pairs,
/// native findings) one report may carry by default.
pub const MAX_FINDINGS: usize = 500_000;

/// A report format Posture reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// SARIF 2.1.0 (`application/sarif+json`).
    Sarif,
    /// CycloneDX 1.4–1.6 JSON (`application/vnd.cyclonedx+json`).
    CycloneDx,
    /// Posture's native format (`application/vnd.posture.native+json`).
    Native,
}

impl ReportFormat {
    /// The format a media type declares. `None` for anything else, including
    /// plain `application/json`, which means "detect it from the document".
    /// Parameters (`; charset=utf-8`, `; version=1.5`) and case are ignored.
    pub fn from_media_type(media_type: &str) -> Option<ReportFormat> {
        let essence = media_type.split(';').next().unwrap_or("").trim();
        [
            ("application/sarif+json", ReportFormat::Sarif),
            ("application/vnd.cyclonedx+json", ReportFormat::CycloneDx),
            ("application/vnd.posture.native+json", ReportFormat::Native),
        ]
        .into_iter()
        .find(|(name, _)| essence.eq_ignore_ascii_case(name))
        .map(|(_, format)| format)
    }

    /// The media type of the format.
    pub const fn media_type(self) -> &'static str {
        match self {
            ReportFormat::Sarif => "application/sarif+json",
            ReportFormat::CycloneDx => "application/vnd.cyclonedx+json",
            ReportFormat::Native => "application/vnd.posture.native+json",
        }
    }

    /// A stable lowercase name: `sarif`, `cyclonedx`, `native`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Sarif => "sarif",
            ReportFormat::CycloneDx => "cyclonedx",
            ReportFormat::Native => "native",
        }
    }

    /// The name people use for it, for messages.
    pub(crate) const fn display_name(self) -> &'static str {
        match self {
            ReportFormat::Sarif => "a SARIF log",
            ReportFormat::CycloneDx => "a CycloneDX BOM",
            ReportFormat::Native => "a native Posture report",
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A report read and normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParsedReport {
    /// The format read (declared or detected).
    pub format: ReportFormat,
    /// The tool named by the report (for SARIF, the first run's driver),
    /// else the hint given to [`parse_report`].
    pub tool_name: String,
    /// The tool's version as the report gives it.
    pub tool_version: Option<String>,
    /// Findings with distinct fingerprints, in report order. Results that
    /// share a fingerprint are merged (see [`NormalizedFinding::merge`]).
    pub findings: Vec<NormalizedFinding>,
}

/// Longest tool name or version kept (longer ones are cut).
pub const MAX_TOOL_CHARS: usize = 200;

/// Parses a report with the default limit of [`MAX_FINDINGS`].
///
/// `declared` is the format from the media type (`None`: detect it);
/// `tool_hint` names the tool when the report does not.
///
/// ```
/// use posture_domain::report::{parse_report, ReportErrorKind, ReportFormat};
/// use posture_domain::Severity;
///
/// let sarif = br#"{"version": "2.1.0", "runs": [{
///     "tool": {"driver": {"name": "bandit", "rules": [
///         {"id": "B608", "properties": {"tags": ["external/cwe/cwe-89"]}}]}},
///     "results": [{"ruleId": "B608", "level": "error",
///         "message": {"text": "Possible SQL injection"},
///         "locations": [{"physicalLocation": {
///             "artifactLocation": {"uri": "./app/db.py"}, "region": {"startLine": 17}}}]}]}]}"#;
/// let media_type = ReportFormat::from_media_type("application/json"); // None: detect
/// let report = parse_report(sarif, media_type, None).unwrap();
/// assert_eq!((report.format, report.tool_name.as_str()), (ReportFormat::Sarif, "bandit"));
/// let finding = &report.findings[0];
/// assert_eq!((finding.severity, finding.cwe_ids.as_slice()), (Severity::High, &[89][..]));
/// assert_eq!(finding.location.as_ref().unwrap().uri, "app/db.py");
///
/// let error = parse_report(br#"{"version": "2.1.0", "runs": {}}"#, None, None).unwrap_err();
/// assert_eq!((error.kind, error.pointer.as_str()), (ReportErrorKind::Invalid, "/runs"));
/// ```
pub fn parse_report(
    bytes: &[u8],
    declared: Option<ReportFormat>,
    tool_hint: Option<&str>,
) -> Result<ParsedReport, ReportError> {
    parse_report_with_limit(bytes, declared, tool_hint, MAX_FINDINGS)
}

/// [`parse_report`] with an explicit limit on the number of results.
pub fn parse_report_with_limit(
    bytes: &[u8],
    declared: Option<ReportFormat>,
    tool_hint: Option<&str>,
    max_findings: usize,
) -> Result<ParsedReport, ReportError> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let at = error.valid_up_to();
        // The valid prefix is text, so the scanner can say where we were.
        let prefix = std::str::from_utf8(&bytes[..at]).unwrap_or("");
        ReportError::new(
            ReportErrorKind::InvalidUtf8,
            json::pointer_at(prefix, at),
            format!("the document is not UTF-8: invalid byte at offset {at}"),
        )
    })?;
    // Windows tools like to start files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(at) = json::excess_depth(text.as_bytes(), MAX_DEPTH) {
        return Err(ReportError::new(
            ReportErrorKind::TooDeep,
            json::pointer_at(text, at),
            format!("arrays and objects nest deeper than {MAX_DEPTH} levels"),
        ));
    }
    let format = match declared {
        Some(format) => format,
        None => detect::detect(text)?,
    };
    let hint = tool_hint.map(str::trim).filter(|hint| !hint.is_empty());
    let mut sink = Sink::new(max_findings);
    let parsed = match format {
        ReportFormat::Sarif => sarif::parse(text, hint, &mut sink),
        ReportFormat::CycloneDx => cyclonedx::parse(text, hint, &mut sink),
        ReportFormat::Native => native::parse(text, hint, &mut sink),
    };
    let (tool_name, tool_version) =
        parsed.map_err(|error| explain_wrong_format(error, format, text))?;
    // Tool names and versions key sightings and are shown: bounded and without
    // control characters (a NUL cannot be stored in a text column at all).
    let clean = |text: &str| -> String {
        bounded(text.trim(), MAX_TOOL_CHARS)
            .chars()
            .filter(|c| !c.is_control())
            .collect()
    };
    Ok(ParsedReport {
        format,
        tool_name: clean(&tool_name),
        tool_version: tool_version.map(|version| clean(&version)),
        findings: sink.finish(),
    })
}

/// Adds to a WrongFormat refusal what the document looks like instead, when
/// that is recognisable: a SARIF file sent as CycloneDX is a common slip.
fn explain_wrong_format(mut error: ReportError, tried: ReportFormat, text: &str) -> ReportError {
    if error.kind == ReportErrorKind::WrongFormat {
        if let Ok(actual) = detect::detect(text) {
            if actual != tried {
                error.message = format!(
                    "{}; it looks like {}, whose media type is {}",
                    error.message,
                    actual.display_name(),
                    actual.media_type()
                );
            }
        }
    }
    error
}

/// The error for a report that names no tool when no hint was given.
fn no_tool_name(pointer: &str) -> ReportError {
    ReportError::invalid(
        pointer,
        format!(
            "the report does not name its tool; set {pointer} or give the tool name with the request"
        ),
    )
}

/// Collects findings: enforces the limit on the way in, and on the way out
/// distrusts tool fingerprints that are not unique and merges duplicates.
pub(crate) struct Sink {
    findings: Vec<NormalizedFinding>,
    /// Parallel to `findings`: the index into `tools` of the tool whose own
    /// fingerprint the finding carries, if it carries one.
    tool_basis: Vec<Option<u32>>,
    tools: Vec<String>,
    admitted: usize,
    max: usize,
}

impl Sink {
    fn new(max: usize) -> Sink {
        Sink {
            findings: Vec::new(),
            tool_basis: Vec::new(),
            tools: Vec::new(),
            admitted: 0,
            max,
        }
    }

    /// Counts one more result against the limit; `pointer` locates it.
    pub(crate) fn admit(&mut self, pointer: impl FnOnce() -> String) -> Result<(), ReportError> {
        if self.admitted >= self.max {
            return Err(ReportError::new(
                ReportErrorKind::TooManyFindings,
                pointer(),
                format!("the report has more than {} results", self.max),
            ));
        }
        self.admitted += 1;
        Ok(())
    }

    /// Normalizes a draft from `tool` and keeps it.
    pub(crate) fn push(&mut self, tool: &str, draft: FindingDraft) {
        let (finding, basis) = NormalizedFinding::from_draft_with_basis(tool, draft);
        let tool_basis = (basis == Basis::Tool).then(|| {
            let position = self
                .tools
                .iter()
                .position(|t| t == tool)
                .unwrap_or_else(|| {
                    self.tools.push(tool.to_owned());
                    self.tools.len() - 1
                });
            // There is one tool per SARIF run; u32 is plenty.
            position as u32
        });
        self.findings.push(finding);
        self.tool_basis.push(tool_basis);
    }

    /// The distinct findings, in report order, de-duplicated in place (a
    /// second copy of 100,000 findings would double the peak memory).
    ///
    /// A tool fingerprint is trusted only if it is unique: when one value
    /// appears at two different locations in the same report (Semgrep OSS
    /// writes `"matchBasedId/v1": "requires login"` on every result), the
    /// findings carrying it fall back to the location rule instead of
    /// collapsing into one.
    fn finish(self) -> Vec<NormalizedFinding> {
        let Sink {
            mut findings,
            tool_basis,
            tools,
            ..
        } = self;
        let mut first_at: HashMap<Fingerprint, (usize, bool)> = HashMap::new();
        for (i, finding) in findings.iter().enumerate() {
            if tool_basis[i].is_some() {
                let first = first_at.entry(finding.fingerprint).or_insert((i, false));
                first.1 |= findings[first.0].location != finding.location;
            }
        }
        for (finding, basis) in findings.iter_mut().zip(&tool_basis) {
            if let Some(tool) = basis {
                if first_at
                    .get(&finding.fingerprint)
                    .is_some_and(|&(_, shared)| shared)
                {
                    finding.fingerprint = finding.location_fingerprint(&tools[*tool as usize]);
                }
            }
        }
        let mut positions: HashMap<Fingerprint, usize> = HashMap::with_capacity(findings.len());
        let mut kept = 0;
        for read in 0..findings.len() {
            match positions.entry(findings[read].fingerprint) {
                Entry::Occupied(first) => {
                    // Duplicates are rare; cloning one to merge it is fine.
                    let duplicate = findings[read].clone();
                    findings[*first.get()].merge(duplicate);
                }
                Entry::Vacant(slot) => {
                    slot.insert(kept);
                    findings.swap(kept, read);
                    kept += 1;
                }
            }
        }
        findings.truncate(kept);
        findings
    }
}
