//! The native format: the documented example, and strictness with pointers.

use super::{parse_err, parse_ok};
use posture_domain::report::{ReportErrorKind, ReportFormat};
use posture_domain::{Location, Package, Severity};

const NATIVE: Option<ReportFormat> = Some(ReportFormat::Native);

/// The example in docs/report-formats.md.
pub const EXAMPLE: &str = r#"{
  "format": "posture-native",
  "version": "1",
  "tool": { "name": "acme-scanner", "version": "4.2.0" },
  "findings": [
    {
      "rule_id": "acme.python.sql-injection",
      "title": "SQL built from request data",
      "severity": "high",
      "description": "The query in get_user() concatenates the request's `name` parameter.",
      "cwe": [89],
      "location": { "path": "src/app/db.py", "line": 42 },
      "fingerprint": "3f9a1c0e"
    },
    {
      "rule_id": "acme.deps.vulnerable-package",
      "title": "Django 3.2.0 has a SQL injection (CVE-2022-28346)",
      "severity": "critical",
      "cwe": [89],
      "vulnerability_ids": ["CVE-2022-28346", "GHSA-2gwj-7jmv-h26r"],
      "package": { "purl": "pkg:pypi/django@3.2.0", "name": "django", "version": "3.2.0" }
    }
  ]
}"#;

fn with_finding(finding: &str) -> String {
    format!(
        r#"{{"format":"posture-native","version":"1","tool":{{"name":"t"}},"findings":[{finding}]}}"#
    )
}

const MINIMAL: &str = r#"{"rule_id":"r","title":"t","severity":"low"}"#;

#[test]
fn the_documented_example() {
    let report = parse_ok(EXAMPLE, NATIVE);
    assert_eq!(report.format, ReportFormat::Native);
    assert_eq!(
        (report.tool_name.as_str(), report.tool_version.as_deref()),
        ("acme-scanner", Some("4.2.0"))
    );
    let [code, dependency] = &report.findings[..] else {
        panic!("{report:?}")
    };
    assert_eq!(code.severity, Severity::High);
    assert_eq!(code.cwe_ids, vec![89]);
    assert_eq!(
        code.location,
        Some(Location {
            uri: "src/app/db.py".into(),
            start_line: Some(42)
        })
    );
    assert!(code.description.as_deref().unwrap().contains("get_user"));
    assert_eq!(dependency.severity, Severity::Critical);
    assert_eq!(
        dependency.vulnerability_ids,
        ["CVE-2022-28346", "GHSA-2GWJ-7JMV-H26R"]
    );
    assert_eq!(
        dependency.package,
        Some(Package {
            purl: Some("pkg:pypi/django@3.2.0".into()),
            name: "django".into(),
            version: Some("3.2.0".into())
        })
    );
}

#[test]
fn package_name_and_version_can_come_from_the_purl() {
    let report = parse_ok(
        &with_finding(
            r#"{"rule_id":"r","title":"t","severity":"low","vulnerability_ids":["CVE-2020-1"],"package":{"purl":"pkg:npm/lodash@4.17.4"}}"#,
        ),
        NATIVE,
    );
    let package = report.findings[0].package.clone().unwrap();
    assert_eq!(
        (package.name.as_str(), package.version.as_deref()),
        ("lodash", Some("4.17.4"))
    );
}

#[test]
fn the_tool_may_come_after_the_findings_or_from_the_hint() {
    let late = format!(
        r#"{{"findings":[{MINIMAL}],"tool":{{"name":"late"}},"version":"1","format":"posture-native"}}"#
    );
    let report = parse_ok(&late, NATIVE);
    assert_eq!(
        (report.tool_name.as_str(), report.findings.len()),
        ("late", 1)
    );
    let anonymous =
        format!(r#"{{"format":"posture-native","version":"1","findings":[{MINIMAL}]}}"#);
    let error = parse_err(&anonymous, NATIVE);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Invalid, "/tool/name")
    );
    let hinted = posture_domain::parse_report(anonymous.as_bytes(), NATIVE, Some("ci")).unwrap();
    assert_eq!(hinted.tool_name, "ci");
}

#[test]
fn strictness_with_pointers() {
    let cases = [
        (
            r#"{"rule_id":"r","title":"t","severity":"severe"}"#,
            "/findings/1/severity",
        ),
        (
            r#"{"rule_id":"r","title":"t","severity":"High"}"#,
            "/findings/1/severity",
        ),
        (r#"{"rule_id":"r","title":"t"}"#, "/findings/1"),
        (
            r#"{"rule_id":"r","title":"t","severity":"low","cwe":[79,"89"]}"#,
            "/findings/1/cwe/1",
        ),
        (
            r#"{"rule_id":"r","title":"t","severity":"low","sevrity":"low"}"#,
            "/findings/1/sevrity",
        ),
        (
            r#"{"rule_id":" ","title":"t","severity":"low"}"#,
            "/findings/1/rule_id",
        ),
        (
            r#"{"rule_id":"r","title":"","severity":"low"}"#,
            "/findings/1/title",
        ),
        (
            r#"{"rule_id":"r","title":"t","severity":"low","cwe":[0]}"#,
            "/findings/1/cwe/0",
        ),
        (
            r#"{"rule_id":"r","title":"t","severity":"low","vulnerability_ids":["CVE-1",""]}"#,
            "/findings/1/vulnerability_ids/1",
        ),
        (
            r#"{"rule_id":"r","title":"t","severity":"low","location":{"path":"a","line":0}}"#,
            "/findings/1/location/line",
        ),
        (
            r#"{"rule_id":"r","title":"t","severity":"low","location":{"path":"a","line":-3}}"#,
            "/findings/1/location/line",
        ),
        (
            r#"{"rule_id":"r","title":"t","severity":"low","location":{"path":"a","column":2}}"#,
            "/findings/1/location/column",
        ),
        (
            r#"{"rule_id":"r","title":"t","severity":"low","package":{"version":"1"}}"#,
            "/findings/1/package",
        ),
        (
            r#"{"rule_id":"r","title":"t","severity":"low","package":{"purl":"django"}}"#,
            "/findings/1/package/purl",
        ),
        (
            r#"{"rule_id":"r","title":"t","severity":"low","fingerprint":""}"#,
            "/findings/1/fingerprint",
        ),
    ];
    for (finding, pointer) in cases {
        let error = parse_err(&with_finding(&format!("{MINIMAL},{finding}")), NATIVE);
        assert_eq!(
            (error.kind, error.pointer.as_str()),
            (ReportErrorKind::Invalid, pointer),
            "{finding}: {error:?}"
        );
    }
}

#[test]
fn envelope_checks() {
    let error = parse_err(
        r#"{"format":"posture-native","version":"2","findings":[]}"#,
        NATIVE,
    );
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::UnsupportedVersion, "/version")
    );
    let error = parse_err(
        r#"{"format":"posture-native","version":1,"findings":[]}"#,
        NATIVE,
    );
    assert_eq!(error.kind, ReportErrorKind::UnsupportedVersion);
    let error = parse_err(r#"{"format":"other","version":"1"}"#, NATIVE);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::WrongFormat, "/format")
    );
    let error = parse_err(r#"{"version":"1","findings":[]}"#, NATIVE);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::WrongFormat, "")
    );
    let error = parse_err(
        r#"{"format":"posture-native","version":"1","tool":{"name":"t"},"findings":[],"extra/x":1}"#,
        NATIVE,
    );
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Invalid, "/extra~1x")
    );
    let error = parse_err(r#"{"format":"posture-native","tool":{"name":"t"}}"#, NATIVE);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Invalid, "/version")
    );
    let error = parse_err(
        r#"{"format":"posture-native","version":"1","tool":{"name":"t","vendor":"x"}}"#,
        NATIVE,
    );
    assert_eq!(error.pointer, "/tool/vendor");
}

#[test]
fn no_findings_is_fine() {
    let report = parse_ok(
        r#"{"format":"posture-native","version":"1","tool":{"name":"t"},"findings":[]}"#,
        NATIVE,
    );
    assert!(report.findings.is_empty());
    let absent = parse_ok(
        r#"{"format":"posture-native","version":"1","tool":{"name":"t"}}"#,
        NATIVE,
    );
    assert!(absent.findings.is_empty());
}

#[test]
fn the_example_in_the_docs_is_this_example() {
    let docs = include_str!("../../../../docs/report-formats.md");
    let start = docs.find("```json\n").expect("a json block") + "```json\n".len();
    let block = &docs[start..start + docs[start..].find("```").unwrap()];
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(parse(block), parse(EXAMPLE));
    assert_eq!(parse_ok(block, None), parse_ok(EXAMPLE, NATIVE));
}
