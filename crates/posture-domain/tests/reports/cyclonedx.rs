//! CycloneDX 1.4–1.6: affected components, ratings, ids, tools, versions.

use super::{by_rule, parse_err, parse_ok};
use posture_domain::report::{ReportErrorKind, ReportFormat};
use posture_domain::{Package, Severity};

const CDX: Option<ReportFormat> = Some(ReportFormat::CycloneDx);

/// A 1.5 BOM with the tool "scanner", the given components and vulnerabilities.
fn bom(components: &str, vulnerabilities: &str) -> String {
    format!(
        r#"{{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,
            "metadata":{{"tools":{{"components":[{{"type":"application","name":"scanner","version":"0.9"}}]}}}},
            "components":[{components}],"vulnerabilities":[{vulnerabilities}]}}"#
    )
}

const DJANGO: &str =
    r#"{"bom-ref":"dj","name":"Django","version":"3.2.0","purl":"pkg:pypi/django@3.2.0"}"#;

#[test]
fn one_finding_per_affected_component() {
    let components = format!(
        r#"{DJANGO},{{"bom-ref":"app","name":"app","components":[{{"bom-ref":"deep","name":"inner","components":[{{"bom-ref":"deeper","group":"org.acme","name":"lib","version":"1.0"}}]}}]}}"#
    );
    let vulnerabilities = r#"{"id":"CVE-2023-1","affects":[{"ref":"dj"},{"ref":"deeper"}]}"#;
    let report = parse_ok(&bom(&components, vulnerabilities), CDX);
    assert_eq!(report.format, ReportFormat::CycloneDx);
    assert_eq!(
        (report.tool_name.as_str(), report.tool_version.as_deref()),
        ("scanner", Some("0.9"))
    );
    assert_eq!(report.findings.len(), 2);
    assert_eq!(
        report.findings[0].package,
        Some(Package {
            purl: Some("pkg:pypi/django@3.2.0".into()),
            name: "Django".into(),
            version: Some("3.2.0".into())
        })
    );
    assert_eq!(
        report.findings[1].package,
        Some(Package {
            purl: None,
            name: "org.acme/lib".into(),
            version: Some("1.0".into())
        })
    );
}

#[test]
fn refs_may_be_purls_or_bom_links() {
    let vulnerabilities = r#"{"id":"CVE-2023-2","affects":[
        {"ref":"pkg:npm/%40scope/left-pad@1.0.0"},
        {"ref":"urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#dj"}]}"#;
    let report = parse_ok(&bom(DJANGO, vulnerabilities), CDX);
    let package = |i: usize| report.findings[i].package.clone().unwrap();
    assert_eq!(
        (package(0).name, package(0).version),
        ("@scope/left-pad".into(), Some("1.0.0".into()))
    );
    assert_eq!(package(1).name, "Django");
}

#[test]
fn an_unknown_ref_is_invalid() {
    let vulnerabilities =
        r#"{"id":"CVE-1"},{"id":"CVE-2","affects":[{"ref":"dj"},{"ref":"nowhere"}]}"#;
    let error = parse_err(&bom(DJANGO, vulnerabilities), CDX);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Invalid, "/vulnerabilities/1/affects/1/ref")
    );
}

#[test]
fn severity_is_the_highest_rating() {
    let vulnerabilities = r#"
        {"id":"A","ratings":[{"severity":"low"},{"severity":"critical","method":"CVSSv31"},{"severity":"medium"}],"affects":[{"ref":"dj"}]},
        {"id":"B","ratings":[{"score":7.5,"method":"CVSSv31"},{"score":3.1}],"affects":[{"ref":"dj"}]},
        {"id":"C","ratings":[{"severity":"unknown"}],"affects":[{"ref":"dj"}]},
        {"id":"D","affects":[{"ref":"dj"}]},
        {"id":"E","ratings":[{"severity":"none"}],"affects":[{"ref":"dj"}]},
        {"id":"F","ratings":[{"severity":"info","score":9.9}],"affects":[{"ref":"dj"}]}"#;
    let report = parse_ok(&bom(DJANGO, vulnerabilities), CDX);
    let severity = |id: &str| by_rule(&report, id).severity;
    assert_eq!(severity("A"), Severity::Critical);
    assert_eq!(severity("B"), Severity::High, "score 7.5 via CVSS");
    assert_eq!(severity("C"), Severity::Medium, "unrated is medium");
    assert_eq!(severity("D"), Severity::Medium);
    assert_eq!(severity("E"), Severity::Info);
    assert_eq!(
        severity("F"),
        Severity::Info,
        "a named severity wins over its score"
    );
}

#[test]
fn an_unknown_rating_severity_is_invalid() {
    let vulnerabilities = r#"{"id":"A","ratings":[{"severity":"high"},{"severity":"severe"}]}"#;
    let error = parse_err(&bom(DJANGO, vulnerabilities), CDX);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (
            ReportErrorKind::Invalid,
            "/vulnerabilities/0/ratings/1/severity"
        )
    );
}

#[test]
fn ids_cwes_and_titles() {
    let vulnerabilities = r####"
        {"id":"GHSA-abcd-efgh-ijkl","cwes":[89,79,89],"description":"SQL injection in QuerySet\nMore text",
         "references":[{"id":"cve-2022-28346","source":{"name":"NVD"}},{"id":"SNYK-PY-1"}],"affects":[{"ref":"dj"}]},
        {"id":"PYSEC-2022-1","detail":"### Impact\n\nDetail only","affects":[{"ref":"dj"}]},
        {"id":"OSV-1","affects":[{"ref":"dj"}]}"####;
    let report = parse_ok(&bom(DJANGO, vulnerabilities), CDX);
    let first = &report.findings[0];
    assert_eq!(first.rule_id, "GHSA-abcd-efgh-ijkl");
    assert_eq!(
        first.vulnerability_ids,
        ["CVE-2022-28346", "GHSA-ABCD-EFGH-IJKL"]
    );
    assert_eq!(first.cwe_ids, vec![79, 89]);
    assert_eq!(first.title, "SQL injection in QuerySet");
    assert_eq!(
        first.description.as_deref(),
        Some("SQL injection in QuerySet\nMore text")
    );
    assert_eq!(report.findings[1].title, "Detail only");
    assert_eq!(report.findings[2].title, "OSV-1");
}

#[test]
fn both_tools_forms_and_library_tools() {
    let legacy = r#"{"bomFormat":"CycloneDX","specVersion":"1.4","metadata":{"tools":[{"vendor":"acme","name":"old-scanner","version":"1"}]}}"#;
    assert_eq!(parse_ok(legacy, CDX).tool_name, "old-scanner");
    let library_first = r#"{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{"tools":{"components":[
        {"name":"cyclonedx-python-lib","version":"7"},{"name":"pip-audit","version":"2.7"}]}}}"#;
    let parsed = parse_ok(library_first, CDX);
    assert_eq!(
        (parsed.tool_name.as_str(), parsed.tool_version.as_deref()),
        ("pip-audit", Some("2.7"))
    );
    let services = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{"tools":{"services":[{"name":"scan-api"}]}}}"#;
    assert_eq!(parse_ok(services, CDX).tool_name, "scan-api");
    let none = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{}}"#;
    let error = parse_err(none, CDX);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Invalid, "/metadata/tools")
    );
    let hinted = posture_domain::parse_report(none.as_bytes(), CDX, Some("hinted")).unwrap();
    assert_eq!(hinted.tool_name, "hinted");
}

#[test]
fn a_bom_without_vulnerabilities_has_no_findings() {
    let sbom = format!(
        r#"{{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{{"tools":[{{"name":"syft"}}]}},"components":[{DJANGO}]}}"#
    );
    assert!(parse_ok(&sbom, CDX).findings.is_empty());
}

#[test]
fn vex_states_that_clear_a_vulnerability_skip_it() {
    let vulnerabilities = r#"{"id":"A","analysis":{"state":"not_affected"},"affects":[{"ref":"dj"}]},
                             {"id":"B","analysis":{"state":"exploitable"},"affects":[{"ref":"dj"}]}"#;
    let report = parse_ok(&bom(DJANGO, vulnerabilities), CDX);
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].rule_id, "B");
}

#[test]
fn no_affects_means_the_bom_subject() {
    let doc = r#"{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{"tools":[{"name":"t"}],
        "component":{"bom-ref":"root","name":"my-app","version":"2.0","components":[{"bom-ref":"sub","name":"sub-lib"}]}},
        "vulnerabilities":[{"id":"CVE-1"},{"id":"CVE-2","affects":[{"ref":"sub"}]}]}"#;
    let report = parse_ok(doc, CDX);
    assert_eq!(report.findings[0].package.as_ref().unwrap().name, "my-app");
    assert_eq!(report.findings[1].package.as_ref().unwrap().name, "sub-lib");
}

#[test]
fn the_same_advisory_in_two_versions_is_one_finding() {
    let components = r#"{"bom-ref":"a","name":"jquery","version":"1.12.4","purl":"pkg:npm/jquery@1.12.4"},
                        {"bom-ref":"b","name":"jquery","version":"2.2.4","purl":"pkg:npm/jquery@2.2.4"}"#;
    let vulnerabilities = r#"{"id":"CVE-2020-11022","ratings":[{"severity":"medium"}],"affects":[{"ref":"a"},{"ref":"b"}]}"#;
    let report = parse_ok(&bom(components, vulnerabilities), CDX);
    assert_eq!(
        report.findings.len(),
        1,
        "identity is versionless (docs/fingerprints.md)"
    );
    assert_eq!(
        report.findings[0]
            .package
            .as_ref()
            .unwrap()
            .version
            .as_deref(),
        Some("1.12.4")
    );
}

#[test]
fn spec_versions_and_format_checks() {
    for version in ["1.4", "1.5", "1.6"] {
        let doc = format!(
            r#"{{"bomFormat":"CycloneDX","specVersion":"{version}","metadata":{{"tools":[{{"name":"t"}}]}}}}"#
        );
        parse_ok(&doc, CDX);
    }
    for version in ["1.3", "2.0"] {
        let doc = format!(r#"{{"bomFormat":"CycloneDX","specVersion":"{version}"}}"#);
        let error = parse_err(&doc, CDX);
        assert_eq!(
            (error.kind, error.pointer.as_str()),
            (ReportErrorKind::UnsupportedVersion, "/specVersion")
        );
    }
    let missing = r#"{"bomFormat":"CycloneDX"}"#;
    assert_eq!(parse_err(missing, CDX).pointer, "/specVersion");
    let spdx = r#"{"bomFormat":"SPDX","specVersion":"1.5"}"#;
    let error = parse_err(spdx, CDX);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::WrongFormat, "/bomFormat")
    );
}

#[test]
fn field_errors_point_at_the_field() {
    let error = parse_err(&bom(DJANGO, r#"{"id":"A","cwes":["CWE-79"]}"#), CDX);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Invalid, "/vulnerabilities/0/cwes/0")
    );
    let error = parse_err(&bom(r#"{"name":"x","components":{}}"#, ""), CDX);
    assert_eq!(error.pointer, "/components/0/components");
}
