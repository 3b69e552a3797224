//! Fingerprint rules across formats and tools (docs/fingerprints.md).

use super::{parse_ok, sarif_log};
use posture_domain::report::ReportFormat;
use posture_domain::{Fingerprint, NormalizedFinding};

fn cdx(tool: &str, id: &str, references: &str, purl: &str) -> NormalizedFinding {
    let doc = format!(
        r#"{{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{{"tools":{{"components":[{{"name":"{tool}"}}]}}}},
            "components":[{{"bom-ref":"c1","name":"x","purl":"{purl}"}}],
            "vulnerabilities":[{{"id":"{id}","references":[{references}],"affects":[{{"ref":"c1"}}]}}]}}"#
    );
    parse_ok(&doc, None).findings.remove(0)
}

#[test]
fn the_same_cve_in_the_same_package_is_one_finding_whatever_the_tool() {
    let a = cdx("trivy", "CVE-2022-28346", "", "pkg:pypi/django@3.2.0");
    let b = cdx(
        "grype",
        "cve-2022-28346",
        "",
        "pkg:pypi/Django@3.2.0?repository_url=https://pypi.org#sub",
    );
    assert_eq!(a.fingerprint, b.fingerprint);
    // An advisory known by its GHSA id with the CVE as an alias is the same one.
    let c = cdx(
        "osv",
        "GHSA-2gwj-7jmv-h26r",
        r#"{"id":"CVE-2022-28346"}"#,
        "pkg:pypi/django@3.2.0",
    );
    assert_eq!(a.fingerprint, c.fingerprint);
    // The native format agrees too.
    let native = r#"{"format":"posture-native","version":"1","tool":{"name":"in-house"},"findings":[
        {"rule_id":"dep","title":"t","severity":"high","vulnerability_ids":["CVE-2022-28346"],"package":{"purl":"pkg:pypi/django@3.2.0"}}]}"#;
    assert_eq!(
        parse_ok(native, None).findings[0].fingerprint,
        a.fingerprint
    );
}

#[test]
fn dependency_identity_ignores_the_version_but_not_the_package() {
    let a = cdx("t", "CVE-2022-28346", "", "pkg:pypi/django@3.2.0");
    assert_eq!(
        a.fingerprint,
        cdx("t", "CVE-2022-28346", "", "pkg:pypi/django@3.2.13").fingerprint
    );
    assert_ne!(
        a.fingerprint,
        cdx("t", "CVE-2022-28346", "", "pkg:pypi/flask@3.2.0").fingerprint
    );
    assert_ne!(
        a.fingerprint,
        cdx("t", "CVE-2022-28346", "", "pkg:npm/django@3.2.0").fingerprint
    );
    assert_ne!(
        a.fingerprint,
        cdx("t", "CVE-2022-99999", "", "pkg:pypi/django@3.2.0").fingerprint
    );
}

fn code_finding(tool: &str, uri: &str, line: u32, extra: &str) -> NormalizedFinding {
    let log = sarif_log("", &format!(
        r#"{{"ruleId":"py.sqli","message":{{"text":"m"}},"locations":[{{"physicalLocation":{{"artifactLocation":{{"uri":"{uri}"}},"region":{{"startLine":{line}}}}}}}]{extra}}}"#
    ))
    .replace(r#""name":"Scanner""#, &format!(r#""name":"{tool}""#));
    parse_ok(&log, Some(ReportFormat::Sarif)).findings.remove(0)
}

#[test]
fn code_findings_are_per_tool() {
    let a = code_finding("semgrep", "src/a.py", 3, "");
    assert_ne!(
        a.fingerprint,
        code_finding("bandit", "src/a.py", 3, "").fingerprint
    );
    // Tool names compare case-insensitively.
    assert_eq!(
        a.fingerprint,
        code_finding("Semgrep", "src/a.py", 3, "").fingerprint
    );
}

#[test]
fn location_identity_survives_spelling_but_not_moves() {
    let a = code_finding("t", "src/a.py", 3, "");
    for uri in ["./src/a.py", "src//a.py", "file:src/a.py", "src\\\\a.py"] {
        assert_eq!(
            a.fingerprint,
            code_finding("t", uri, 3, "").fingerprint,
            "{uri}"
        );
    }
    assert_ne!(
        a.fingerprint,
        code_finding("t", "src/a.py", 4, "").fingerprint
    );
    assert_ne!(
        a.fingerprint,
        code_finding("t", "src/b.py", 3, "").fingerprint
    );
}

#[test]
fn tool_fingerprints_survive_line_moves() {
    let complete = r#","fingerprints":{"matchBasedId/v2":"zzz","matchBasedId/v1":"abc"}"#;
    let a = code_finding("t", "src/a.py", 3, complete);
    assert_eq!(
        a.fingerprint,
        code_finding("t", "src/a.py", 90, complete).fingerprint
    );
    assert_eq!(
        a.fingerprint,
        code_finding("t", "src/moved.py", 90, complete).fingerprint,
        "complete: file moves too"
    );
    // The smallest key is the one used, whatever else is added.
    let only_v1 = r#","fingerprints":{"matchBasedId/v1":"abc"}"#;
    assert_eq!(
        a.fingerprint,
        code_finding("t", "src/a.py", 3, only_v1).fingerprint
    );

    let partial = r#","partialFingerprints":{"primaryLocationLineHash":"39fa2ee980eb94b0:1"}"#;
    let p = code_finding("t", "src/a.py", 3, partial);
    assert_eq!(
        p.fingerprint,
        code_finding("t", "src/a.py", 40, partial).fingerprint
    );
    assert_ne!(
        p.fingerprint,
        code_finding("t", "src/b.py", 3, partial).fingerprint,
        "partial: per file"
    );
    assert_ne!(p.fingerprint, a.fingerprint);
}

#[test]
fn a_tool_fingerprint_shared_by_different_places_is_not_trusted() {
    // Semgrep OSS writes this placeholder on every result.
    let placeholder = r#","fingerprints":{"matchBasedId/v1":"requires login"}"#;
    let result = |line: u32| {
        format!(
            r#"{{"ruleId":"py.sqli","message":{{"text":"m"}},"locations":[{{"physicalLocation":{{"artifactLocation":{{"uri":"a.py"}},"region":{{"startLine":{line}}}}}}}]{placeholder}}}"#
        )
    };
    let log = sarif_log("", &[result(1), result(2), result(1)].join(","));
    let report = parse_ok(&log, None);
    assert_eq!(
        report.findings.len(),
        2,
        "lines 1 and 2 stay apart; the repeat of line 1 merges"
    );
    assert_eq!(
        report.findings[0].fingerprint,
        code_finding("Scanner", "a.py", 1, "").fingerprint
    );
}

#[test]
fn fingerprints_are_versioned_text() {
    let finding = code_finding("t", "src/a.py", 3, "");
    let text = finding.fingerprint.to_string();
    assert!(text.starts_with("v1:") && text.len() == 67);
    assert!(text[3..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(Fingerprint::parse(&text), Ok(finding.fingerprint));
    assert_eq!(serde_json::to_value(&finding).unwrap()["fingerprint"], text);
}

#[test]
fn v1_values_never_change() {
    // Stored fingerprints must stay valid: if this fails, the rules changed
    // and need a new version prefix, not an edit of v1. The values were
    // computed independently with the Python recipe in docs/fingerprints.md.
    let dep = cdx("t", "CVE-2022-28346", "", "pkg:pypi/django@3.2.0");
    assert_eq!(
        dep.fingerprint.to_string(),
        "v1:e5f7d18692bf2ce81f597e845c1a29998efd39c5286880f022d89310ebcb312f"
    );
    let loc = code_finding("t", "src/a.py", 3, "");
    assert_eq!(
        loc.fingerprint.to_string(),
        "v1:c26c0c9415cf16ad298f066e114b01e1b07a3532781309f8eee878fe77b96593"
    );
    let tool = code_finding("t", "src/a.py", 3, r#","fingerprints":{"k":"v"}"#);
    assert_eq!(
        tool.fingerprint.to_string(),
        "v1:165d4ee21013181175ea0e596eba74254d2c5350d041abcd69305f4485fc943d"
    );
}
