//! SARIF 2.1.0: severities, CWE extraction, rule resolution, fingerprints, locations.

use super::{by_rule, parse_err, parse_ok, sarif_log};
use posture_domain::report::{ReportErrorKind, ReportFormat};
use posture_domain::{Location, Severity};

const SARIF: Option<ReportFormat> = Some(ReportFormat::Sarif);

fn result(rule: &str, extra: &str) -> String {
    format!(
        r#"{{"ruleId":"{rule}","message":{{"text":"found {rule}"}},"locations":[{{"physicalLocation":{{"artifactLocation":{{"uri":"src/{rule}.py"}},"region":{{"startLine":3}}}}}}]{extra}}}"#
    )
}

#[test]
fn tool_and_basic_fields() {
    let log = sarif_log(r#"{"id":"R1"}"#, &result("R1", ""));
    let report = parse_ok(&log, SARIF);
    assert_eq!(report.format, ReportFormat::Sarif);
    assert_eq!(report.tool_name, "Scanner");
    assert_eq!(report.tool_version.as_deref(), Some("2.0"));
    let finding = by_rule(&report, "R1");
    assert_eq!(finding.title, "found R1");
    assert_eq!(
        finding.location,
        Some(Location {
            uri: "src/R1.py".into(),
            start_line: Some(3)
        })
    );
    assert_eq!(finding.package, None);
}

#[test]
fn levels_map_to_severities() {
    let rules = r#"{"id":"D","defaultConfiguration":{"level":"error"}}"#;
    let results = [
        result("E", r#","level":"error""#),
        result("W", r#","level":"warning""#),
        result("N", r#","level":"note""#),
        result("X", r#","level":"none""#),
        result("Default", ""),
        result("D", ""),
        result("DOverridden", r#","level":"note","ruleIndex":0"#),
        result("Open", r#","kind":"open""#),
    ]
    .join(",");
    let report = parse_ok(&sarif_log(rules, &results), SARIF);
    let severity = |rule: &str| by_rule(&report, rule).severity;
    assert_eq!(severity("E"), Severity::High);
    assert_eq!(severity("W"), Severity::Medium);
    assert_eq!(severity("N"), Severity::Low);
    assert_eq!(severity("X"), Severity::Info);
    assert_eq!(
        severity("Default"),
        Severity::Medium,
        "no level anywhere: warning"
    );
    assert_eq!(
        severity("D"),
        Severity::High,
        "the rule's defaultConfiguration.level"
    );
    assert_eq!(
        severity("DOverridden"),
        Severity::Low,
        "the result's level wins"
    );
    assert_eq!(
        severity("Open"),
        Severity::Info,
        "a non-fail kind without level is none"
    );
}

#[test]
fn security_severity_overrides_the_level() {
    let rules = r#"{"id":"S","defaultConfiguration":{"level":"note"},"properties":{"security-severity":"9.8"}},
                   {"id":"T","properties":{"security-severity":"not a number"}}"#;
    let results = [
        result("S", ""),
        result("S", r#","properties":{"security-severity":5.0}"#).replace("src/S.py", "src/S2.py"),
        result("T", r#","level":"error""#),
        result(
            "U",
            r#","level":"note","properties":{"security-severity":"7.0"}"#,
        ),
    ]
    .join(",");
    let report = parse_ok(&sarif_log(rules, &results), SARIF);
    assert_eq!(
        report.findings[0].severity,
        Severity::Critical,
        "rule's string score"
    );
    assert_eq!(
        report.findings[1].severity,
        Severity::Medium,
        "result's number score wins"
    );
    assert_eq!(
        report.findings[2].severity,
        Severity::High,
        "unparseable score is ignored"
    );
    assert_eq!(report.findings[3].severity, Severity::High);
}

#[test]
fn cwe_ids_from_tags_relationships_and_taxa() {
    let rules = r#"
        {"id":"Tags","properties":{"tags":["security","external/cwe/cwe-79","CWE-89: SQL Injection","cwe:22","owasp-a1",7]}},
        {"id":"Rel","relationships":[
            {"target":{"id":"502","toolComponent":{"name":"CWE"}},"kinds":["superset"]},
            {"target":{"id":"1","toolComponent":{"name":"OWASP"}}},
            {"target":{"index":1,"toolComponent":{"index":0}}}]}"#;
    let results = [
        result("Tags", ""),
        result("Rel", ""),
        result("Taxa", r#","taxa":[{"id":"CWE-20"},{"id":"611","toolComponent":{"name":"cwe"}},{"index":0,"toolComponent":{"index":0}}]"#),
        result("ResultTags", r#","properties":{"tags":["CWE-352"]}"#),
    ]
    .join(",");
    let log = format!(
        r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"S","rules":[{rules}]}}}},
            "taxonomies":[{{"name":"CWE","taxa":[{{"id":"918"}},{{"id":"94"}}]}}],
            "results":[{results}]}}]}}"#
    );
    let report = parse_ok(&log, SARIF);
    assert_eq!(by_rule(&report, "Tags").cwe_ids, vec![22, 79, 89]);
    assert_eq!(by_rule(&report, "Rel").cwe_ids, vec![94, 502]);
    assert_eq!(by_rule(&report, "Taxa").cwe_ids, vec![20, 611, 918]);
    assert_eq!(by_rule(&report, "ResultTags").cwe_ids, vec![352]);
}

#[test]
fn rules_resolve_by_index_id_and_extension() {
    let log = r#"{"version":"2.1.0","runs":[{"tool":{
        "driver":{"name":"S","rules":[{"id":"A","shortDescription":{"text":"Rule A"}},{"id":"B","defaultConfiguration":{"level":"error"}}]},
        "extensions":[{"name":"pack","rules":[{"id":"X1","defaultConfiguration":{"level":"note"},"properties":{"tags":["CWE-79"]}}]}]},
      "results":[
        {"ruleIndex":1,"message":{"text":"by index only"}},
        {"rule":{"index":0},"message":{}},
        {"ruleId":"X1","message":{"text":"extension rule by id"}},
        {"rule":{"id":"X1","index":0,"toolComponent":{"index":1}},"message":{"text":"extension by index"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"b"}}}]},
        {"ruleId":"B/sub","message":{"text":"hierarchical id"}},
        {"ruleId":"A","ruleIndex":99,"message":{"text":"bad index, good id"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"c"}}}]}
      ]}]}"#;
    let report = parse_ok(log, SARIF);
    let f = &report.findings;
    assert_eq!(
        (f[0].rule_id.as_str(), f[0].severity),
        ("B", Severity::High)
    );
    assert_eq!(
        (f[1].rule_id.as_str(), f[1].title.as_str()),
        ("A", "Rule A")
    );
    assert_eq!(
        (f[2].severity, f[2].cwe_ids.clone()),
        (Severity::Low, vec![79])
    );
    assert_eq!(
        (f[3].rule_id.as_str(), f[3].severity),
        ("X1", Severity::Low)
    );
    assert_eq!(
        (f[4].rule_id.as_str(), f[4].severity),
        ("B/sub", Severity::High)
    );
    assert_eq!(f[5].rule_id, "A");
    assert_eq!(f.len(), 6);
}

#[test]
fn rule_index_out_of_range_without_id_is_invalid() {
    let log = sarif_log(
        r#"{"id":"A"}"#,
        &format!(
            r#"{},{{"ruleIndex":5,"message":{{"text":"x"}}}}"#,
            result("A", "")
        ),
    );
    let error = parse_err(&log, SARIF);
    assert_eq!(error.kind, ReportErrorKind::Invalid);
    assert_eq!(error.pointer, "/runs/0/results/1/ruleIndex");
}

#[test]
fn a_result_without_rule_is_invalid() {
    let error = parse_err(&sarif_log("", r#"{"message":{"text":"x"}}"#), SARIF);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Invalid, "/runs/0/results/0")
    );
}

#[test]
fn titles_and_descriptions() {
    let rules = r#"{"id":"R","name":"RuleName","shortDescription":{"text":"Short"},"fullDescription":{"text":"Full text"}},
                   {"id":"Q","name":"QName"}"#;
    let results = [
        r#"{"ruleId":"R","message":{"text":"One line"}}"#.to_owned(),
        r#"{"ruleId":"R","message":{"text":"First\nand more"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"x"}}}]}"#.to_owned(),
        r#"{"ruleId":"R","message":{"id":"default"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"y"}}}]}"#.to_owned(),
        r#"{"ruleId":"Q","message":{"text":"  "}}"#.to_owned(),
        r#"{"ruleId":"Z"}"#.to_owned(),
    ]
    .join(",");
    let report = parse_ok(&sarif_log(rules, &results), SARIF);
    let f = &report.findings;
    assert_eq!(
        (f[0].title.as_str(), f[0].description.as_deref()),
        ("One line", Some("Full text"))
    );
    assert_eq!(
        (f[1].title.as_str(), f[1].description.as_deref()),
        ("First", Some("First\nand more"))
    );
    assert_eq!(f[2].title, "Short");
    assert_eq!(f[3].title, "QName");
    assert_eq!(f[4].title, "Z");
}

#[test]
fn long_titles_are_cut() {
    let text = "é".repeat(700);
    let log = sarif_log(
        "",
        &format!(r#"{{"ruleId":"R","message":{{"text":"{text}"}}}}"#),
    );
    let finding = &parse_ok(&log, SARIF).findings[0];
    assert_eq!(finding.title.chars().count(), 500);
    assert_eq!(finding.description.as_deref(), Some(text.as_str()));
}

#[test]
fn locations_are_normalized() {
    let results = [
        r#"{"ruleId":"A","message":{"text":"a"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"./src//my%20app.py","uriBaseId":"%SRCROOT%"},"region":{"startLine":10}}}]}"#,
        r#"{"ruleId":"B","message":{"text":"b"},"locations":[{"logicalLocations":[]},{"physicalLocation":{"artifactLocation":{"uri":"file:///C:/work/b.cs"},"region":{"startLine":0}}}]}"#,
        r#"{"ruleId":"C","message":{"text":"c"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"src\\win\\c.cs"}}}]}"#,
        r#"{"ruleId":"D","message":{"text":"d"},"locations":null}"#,
    ]
    .join(",");
    let report = parse_ok(&sarif_log("", &results), SARIF);
    let location = |rule: &str| by_rule(&report, rule).location.clone();
    assert_eq!(
        location("A"),
        Some(Location {
            uri: "src/my app.py".into(),
            start_line: Some(10)
        })
    );
    assert_eq!(
        location("B"),
        Some(Location {
            uri: "C:/work/b.cs".into(),
            start_line: None
        })
    );
    assert_eq!(
        location("C"),
        Some(Location {
            uri: "src/win/c.cs".into(),
            start_line: None
        })
    );
    assert_eq!(location("D"), None);
}

#[test]
fn non_findings_are_skipped() {
    let results = [
        result("Pass", r#","kind":"pass""#),
        result("NA", r#","kind":"notApplicable""#),
        result("Suppressed", r#","suppressions":[{"kind":"inSource"}]"#),
        result(
            "Rejected",
            r#","suppressions":[{"kind":"external","status":"rejected"}]"#,
        ),
        result("Absent", r#","baselineState":"absent""#),
        result("Kept", ""),
    ]
    .join(",");
    let report = parse_ok(&sarif_log("", &results), SARIF);
    let rules: Vec<&str> = report.findings.iter().map(|f| f.rule_id.as_str()).collect();
    assert_eq!(rules, ["Rejected", "Kept"]);
}

#[test]
fn multiple_runs_keep_their_own_tools() {
    let log = r#"{"version":"2.1.0","runs":[
        {"tool":{"driver":{"name":"First","semanticVersion":"1.2.3"}},"results":[{"ruleId":"R","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a"}}}]}]},
        {"tool":{"driver":{"name":"Second"}},"results":[{"ruleId":"R","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a"}}}]}]},
        {"tool":{"driver":{"name":"Third"}},"results":null}]}"#;
    let report = parse_ok(log, SARIF);
    assert_eq!(
        (report.tool_name.as_str(), report.tool_version.as_deref()),
        ("First", Some("1.2.3"))
    );
    assert_eq!(
        report.findings.len(),
        2,
        "same rule and place, different tools: two findings"
    );
    assert_ne!(
        report.findings[0].fingerprint,
        report.findings[1].fingerprint
    );
}

#[test]
fn results_before_tool_are_buffered_not_lost() {
    let tool_first = sarif_log(
        r#"{"id":"R","properties":{"tags":["CWE-79"]}}"#,
        &result("R", ""),
    );
    let results_first = format!(
        r#"{{"runs":[{{"results":[{}],"tool":{{"driver":{{"name":"Scanner","version":"2.0","rules":[{{"id":"R","properties":{{"tags":["CWE-79"]}}}}]}}}}}}],"version":"2.1.0"}}"#,
        result("R", "")
    );
    assert_eq!(
        parse_ok(&tool_first, SARIF),
        parse_ok(&results_first, SARIF)
    );
    assert_eq!(parse_ok(&results_first, None).findings[0].cwe_ids, vec![79]);
}

#[test]
fn tool_name_falls_back_to_the_hint() {
    let log = r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":" "}},"results":[]}]}"#;
    let parsed = posture_domain::parse_report(log.as_bytes(), SARIF, Some("my-scanner")).unwrap();
    assert_eq!(parsed.tool_name, "my-scanner");
    let error = parse_err(log, SARIF);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Invalid, "/runs/0/tool/driver/name")
    );
    let no_runs = r#"{"version":"2.1.0","runs":[]}"#;
    assert_eq!(
        parse_err(no_runs, SARIF).pointer,
        "/runs/0/tool/driver/name"
    );
}

#[test]
fn advisory_rule_ids_become_vulnerability_ids() {
    let results = [
        result("CVE-2021-44228", ""),
        result("B101", r#","properties":{"tags":["ghsa-jfh8-c2jp-5v3q"]}"#),
    ]
    .join(",");
    let report = parse_ok(&sarif_log("", &results), SARIF);
    assert_eq!(report.findings[0].vulnerability_ids, ["CVE-2021-44228"]);
    assert_eq!(
        report.findings[1].vulnerability_ids,
        ["GHSA-JFH8-C2JP-5V3Q"]
    );
}

#[test]
fn field_errors_point_at_the_field() {
    let bad_level = sarif_log(
        "",
        &[result("A", ""), result("B", r#","level":"critical""#)].join(","),
    );
    let error = parse_err(&bad_level, SARIF);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Invalid, "/runs/0/results/1/level")
    );
    assert!(error.message.contains("critical"), "{}", error.message);

    let bad_line = sarif_log(
        "",
        &result("A", "").replace(r#""startLine":3"#, r#""startLine":"3""#),
    );
    assert_eq!(
        parse_err(&bad_line, SARIF).pointer,
        "/runs/0/results/0/locations/0/physicalLocation/region/startLine"
    );

    let runs_object = r#"{"version":"2.1.0","runs":{"tool":{}}}"#;
    let error = parse_err(runs_object, SARIF);
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Invalid, "/runs")
    );

    let bad_rule_level = sarif_log(
        r#"{"id":"A"},{"id":"B","defaultConfiguration":{"level":"fatal"}}"#,
        "",
    );
    assert_eq!(
        parse_err(&bad_rule_level, SARIF).pointer,
        "/runs/0/tool/driver/rules/1/defaultConfiguration/level"
    );
}

#[test]
fn versions_other_than_2_1_0_are_refused() {
    for version in [r#""2.0.0""#, r#""2.1.1""#] {
        let log = format!(r#"{{"version":{version},"runs":[{{"results":{{}}}}]}}"#);
        let error = parse_err(&log, SARIF);
        assert_eq!(
            (error.kind, error.pointer.as_str()),
            (ReportErrorKind::UnsupportedVersion, "/version")
        );
    }
    let after_runs = r#"{"runs":[],"version":"1.0"}"#;
    assert_eq!(
        parse_err(after_runs, SARIF).kind,
        ReportErrorKind::UnsupportedVersion
    );
    let numeric = r#"{"version":2.1,"runs":[]}"#;
    assert_eq!(parse_err(numeric, SARIF).pointer, "/version");
    let missing = r#"{"runs":[]}"#;
    assert_eq!(parse_err(missing, SARIF).pointer, "/version");
}
