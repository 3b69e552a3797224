//! Report parser tests: one module per format, plus errors, fingerprints,
//! property tests and the real-scanner fixtures. One test binary, so the
//! crate is linked once.

mod cyclonedx;
mod errors;
mod fingerprints;
mod fixtures;
mod native;
mod properties;
mod sarif;

use posture_domain::report::{parse_report, ParsedReport, ReportError, ReportFormat};
use posture_domain::NormalizedFinding;

/// Parses `text` as `format`, failing the test on an error.
pub fn parse_ok(text: &str, format: Option<ReportFormat>) -> ParsedReport {
    parse_report(text.as_bytes(), format, None).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// Parses `text` as `format`, failing the test if it parses.
pub fn parse_err(text: &str, format: Option<ReportFormat>) -> ReportError {
    match parse_report(text.as_bytes(), format, None) {
        Ok(parsed) => panic!("expected an error, got {parsed:?}"),
        Err(error) => error,
    }
}

/// The finding with rule `rule_id` (the first, if several).
pub fn by_rule<'a>(report: &'a ParsedReport, rule_id: &str) -> &'a NormalizedFinding {
    report
        .findings
        .iter()
        .find(|f| f.rule_id == rule_id)
        .unwrap_or_else(|| panic!("no finding for {rule_id} in {report:#?}"))
}

/// A SARIF log with one run of tool "Scanner" with `rules` and `results`
/// (JSON array bodies, without brackets).
pub fn sarif_log(rules: &str, results: &str) -> String {
    format!(
        r#"{{"version":"2.1.0","$schema":"https://json.schemastore.org/sarif-2.1.0.json","runs":[{{"tool":{{"driver":{{"name":"Scanner","version":"2.0","rules":[{rules}]}}}},"results":[{results}]}}]}}"#
    )
}
