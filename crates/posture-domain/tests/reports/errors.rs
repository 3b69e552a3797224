//! Media types, detection, and every error kind with its pointer.

use super::{parse_err, parse_ok, sarif_log};
use posture_domain::report::{parse_report_with_limit, ReportErrorKind, ReportFormat, MAX_DEPTH};

#[test]
fn media_types() {
    let cases = [
        ("application/sarif+json", Some(ReportFormat::Sarif)),
        (
            "Application/SARIF+JSON; charset=utf-8",
            Some(ReportFormat::Sarif),
        ),
        (
            "application/vnd.cyclonedx+json",
            Some(ReportFormat::CycloneDx),
        ),
        (
            "application/vnd.cyclonedx+json; version=1.6",
            Some(ReportFormat::CycloneDx),
        ),
        (
            "application/vnd.posture.native+json",
            Some(ReportFormat::Native),
        ),
        ("application/json", None),
        ("text/plain", None),
        ("", None),
    ];
    for (media_type, expected) in cases {
        assert_eq!(
            ReportFormat::from_media_type(media_type),
            expected,
            "{media_type}"
        );
    }
    for format in [
        ReportFormat::Sarif,
        ReportFormat::CycloneDx,
        ReportFormat::Native,
    ] {
        assert_eq!(
            ReportFormat::from_media_type(format.media_type()),
            Some(format)
        );
    }
}

#[test]
fn detection() {
    let sarif = sarif_log("", "");
    assert_eq!(parse_ok(&sarif, None).format, ReportFormat::Sarif);
    let runs_first = r#"{"runs":[{"tool":{"driver":{"name":"t"}}}],"version":"2.1.0"}"#;
    assert_eq!(parse_ok(runs_first, None).format, ReportFormat::Sarif);
    let schema_only = r#"{"$schema":"https://raw.githubusercontent.com/oasis-tcs/sarif-spec/master/Schemata/sarif-schema-2.1.0.json","runs":[{"tool":{"driver":{"name":"t"}}}]}"#;
    // Detected by its schema; then refused for lacking `version`.
    assert_eq!(parse_err(schema_only, None).pointer, "/version");
    let cdx =
        r#"{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{"tools":[{"name":"t"}]}}"#;
    assert_eq!(parse_ok(cdx, None).format, ReportFormat::CycloneDx);
    let native = r#"{"format":"posture-native","version":"1","tool":{"name":"t"},"findings":[]}"#;
    assert_eq!(parse_ok(native, None).format, ReportFormat::Native);
}

#[test]
fn unrecognised_documents_are_the_wrong_format() {
    for text in [
        r#"{"hello":"world"}"#,
        r#"[1,2,3]"#,
        r#""sarif""#,
        "42",
        r#"{"runs":[]}"#,
        r#"{"bomFormat":"SPDX"}"#,
    ] {
        let error = parse_err(text, None);
        assert_eq!(
            (error.kind, error.pointer.as_str()),
            (ReportErrorKind::WrongFormat, ""),
            "{text}"
        );
    }
    for format in [
        ReportFormat::Sarif,
        ReportFormat::CycloneDx,
        ReportFormat::Native,
    ] {
        let error = parse_err("[]", Some(format));
        assert_eq!(error.kind, ReportErrorKind::WrongFormat, "{format}");
    }
}

#[test]
fn a_declared_format_that_does_not_match_says_what_it_looks_like() {
    let cdx = r#"{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,"metadata":{"tools":[{"name":"t"}]}}"#;
    let error = parse_err(cdx, Some(ReportFormat::Sarif));
    assert_eq!(error.kind, ReportErrorKind::WrongFormat);
    assert!(
        error.message.contains("CycloneDX")
            && error.message.contains("application/vnd.cyclonedx+json"),
        "{}",
        error.message
    );
    let error = parse_err(&sarif_log("", ""), Some(ReportFormat::CycloneDx));
    assert_eq!(error.kind, ReportErrorKind::WrongFormat);
    assert!(error.message.contains("SARIF"), "{}", error.message);
    let error = parse_err(&sarif_log("", ""), Some(ReportFormat::Native));
    assert_eq!(error.kind, ReportErrorKind::WrongFormat);
}

#[test]
fn invalid_utf8_points_at_the_value() {
    let mut bytes = br#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"caf"#.to_vec();
    bytes.extend([0xE9, b'"', b'}', b'}', b'}', b']', b'}']);
    let error = posture_domain::parse_report(&bytes, None, None).unwrap_err();
    assert_eq!(error.kind, ReportErrorKind::InvalidUtf8);
    assert_eq!(error.pointer, "/runs/0/tool/driver/name");
    assert!(error.message.contains("offset 57"), "{}", error.message);
}

#[test]
fn malformed_json_gives_line_and_column() {
    let text = "{\n  \"version\": \"2.1.0\",\n  \"runs\": [,]\n}";
    let error = parse_err(text, Some(ReportFormat::Sarif));
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::Malformed, "")
    );
    assert!(error.message.contains("line 3 column"), "{}", error.message);
    for text in [
        "",
        "   ",
        "{",
        r#"{"runs": [}"#,
        "{} trailing",
        "nul",
        "{\"a\":1,}",
    ] {
        for declared in [
            None,
            Some(ReportFormat::Sarif),
            Some(ReportFormat::CycloneDx),
            Some(ReportFormat::Native),
        ] {
            assert_eq!(
                parse_err(text, declared).kind,
                ReportErrorKind::Malformed,
                "{text:?} as {declared:?}"
            );
        }
    }
}

#[test]
fn a_byte_order_mark_is_tolerated() {
    let with_bom = format!("\u{feff}{}", sarif_log("", ""));
    assert_eq!(parse_ok(&with_bom, None).format, ReportFormat::Sarif);
}

#[test]
fn deep_nesting_is_refused_without_recursion() {
    let deep = "[".repeat(100_000);
    for declared in [
        None,
        Some(ReportFormat::Sarif),
        Some(ReportFormat::CycloneDx),
        Some(ReportFormat::Native),
    ] {
        let error = parse_err(&deep, declared);
        assert_eq!(error.kind, ReportErrorKind::TooDeep);
        assert_eq!(error.pointer, "/0".repeat(MAX_DEPTH - 1));
    }
    // Deep inside a property bag we never read is still refused.
    let bag = format!(
        r#"{{"version":"2.1.0","runs":[{{"properties":{{"x":{}{}}}}}]}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let error = parse_err(&bag, None);
    assert_eq!(error.kind, ReportErrorKind::TooDeep);
    assert!(
        error.pointer.starts_with("/runs/0/properties/x/0/0"),
        "{}",
        error.pointer
    );
}

#[test]
fn nesting_up_to_the_limit_parses_on_a_small_stack() {
    // Nested components are the one place our structs recurse: 48 levels
    // (96 JSON levels plus the envelope) must parse on a test thread's 2 MiB.
    fn nested(levels: usize) -> String {
        let open = r#"{"name":"c","components":["#.repeat(levels);
        let close = "]}".repeat(levels);
        format!(
            r#"{{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{{"tools":[{{"name":"t"}}]}},"components":[{open}{{"bom-ref":"leaf","name":"leaf"}}{close}],"vulnerabilities":[{{"id":"CVE-1","affects":[{{"ref":"leaf"}}]}}]}}"#
        )
    }
    let report = parse_ok(&nested(48), Some(ReportFormat::CycloneDx));
    assert_eq!(report.findings[0].package.as_ref().unwrap().name, "leaf");
    assert_eq!(
        parse_err(&nested(60), Some(ReportFormat::CycloneDx)).kind,
        ReportErrorKind::TooDeep
    );
}

#[test]
fn too_many_findings_stops_at_the_limit() {
    let result = r#"{"ruleId":"R","message":{"text":"x"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a"},"region":{"startLine":LINE}}}]}"#;
    let results: Vec<String> = (1..=3)
        .map(|line| result.replace("LINE", &line.to_string()))
        .collect();
    let log = sarif_log("", &results.join(","));
    let parsed = parse_report_with_limit(log.as_bytes(), None, None, 3).unwrap();
    assert_eq!(parsed.findings.len(), 3);
    let error = parse_report_with_limit(log.as_bytes(), None, None, 2).unwrap_err();
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::TooManyFindings, "/runs/0/results/2")
    );

    let cdx = r#"{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{"tools":[{"name":"t"}]},
        "vulnerabilities":[{"id":"A","affects":[{"ref":"pkg:npm/a@1"},{"ref":"pkg:npm/b@1"}]}]}"#;
    let error = parse_report_with_limit(cdx.as_bytes(), None, None, 1).unwrap_err();
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (
            ReportErrorKind::TooManyFindings,
            "/vulnerabilities/0/affects/1"
        )
    );

    let native = r#"{"format":"posture-native","version":"1","tool":{"name":"t"},"findings":[
        {"rule_id":"a","title":"a","severity":"low"},{"rule_id":"b","title":"b","severity":"low"}]}"#;
    let error = parse_report_with_limit(native.as_bytes(), None, None, 1).unwrap_err();
    assert_eq!(
        (error.kind, error.pointer.as_str()),
        (ReportErrorKind::TooManyFindings, "/findings/1")
    );
}

#[test]
fn errors_display_their_message_and_serialize() {
    let error = parse_err("[", None);
    assert_eq!(error.to_string(), error.message);
    let json = serde_json::to_value(&error).unwrap();
    assert_eq!(json["kind"], "malformed");
    assert_eq!(
        ReportErrorKind::TooManyFindings.as_str(),
        "too_many_findings"
    );
}
