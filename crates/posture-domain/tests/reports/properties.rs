//! Property tests: no input makes a parser panic, and whatever parses obeys
//! the finding invariants.

use super::native::EXAMPLE as NATIVE_EXAMPLE;
use posture_domain::finding::{MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS};
use posture_domain::report::{parse_report, ParsedReport, ReportErrorKind, ReportFormat};
use proptest::prelude::*;
use std::collections::HashSet;

const SARIF_EXAMPLE: &str = r#"{"$schema":"https://json.schemastore.org/sarif-2.1.0.json","version":"2.1.0","runs":[{
  "tool":{"driver":{"name":"CodeQL","semanticVersion":"2.15.0","rules":[
    {"id":"py/sql-injection","shortDescription":{"text":"SQL query built from user-controlled sources"},
     "defaultConfiguration":{"level":"error"},"properties":{"tags":["security","external/cwe/cwe-089"],"security-severity":"8.8"},
     "relationships":[{"target":{"id":"89","toolComponent":{"name":"CWE"}}}]},
    {"id":"py/weak-hash","defaultConfiguration":{"level":"warning"}}]},
   "extensions":[{"name":"pack","rules":[{"id":"X","properties":{"tags":["CWE-79"]}}]}]},
  "taxonomies":[{"name":"CWE","taxa":[{"id":"79"}]}],
  "results":[
    {"ruleId":"py/sql-injection","ruleIndex":0,"message":{"text":"This query depends on a user-provided value."},
     "locations":[{"physicalLocation":{"artifactLocation":{"uri":"app/db.py","uriBaseId":"%SRCROOT%"},"region":{"startLine":42,"startColumn":5}}}],
     "partialFingerprints":{"primaryLocationLineHash":"39fa2ee980eb94b0:1"}},
    {"ruleId":"py/weak-hash","level":"note","message":{"text":"MD5\nis weak"},"fingerprints":{"v1":"abc"},
     "locations":[{"physicalLocation":{"artifactLocation":{"uri":"file:///src/hash.py"},"region":{"startLine":7}}}],
     "taxa":[{"index":0,"toolComponent":{"index":0}}],"properties":{"security-severity":4.0}},
    {"rule":{"id":"X","index":0,"toolComponent":{"index":1}},"kind":"review","message":{"text":"ext"}},
    {"ruleId":"CVE-2021-44228","kind":"pass","message":{"text":"ok"}}]}]}"#;

const CYCLONEDX_EXAMPLE: &str = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,
  "metadata":{"tools":{"components":[{"name":"cyclonedx-lib"},{"name":"pip-audit","version":"2.7.3"}]},
    "component":{"bom-ref":"root","name":"app","components":[{"bom-ref":"nested","name":"inner","version":"0.1"}]}},
  "components":[{"bom-ref":"dj","name":"django","version":"3.2.0","purl":"pkg:pypi/django@3.2.0"}],
  "vulnerabilities":[
    {"id":"PYSEC-2022-190","references":[{"id":"CVE-2022-28346"},{"id":"GHSA-2gwj-7jmv-h26r"}],"cwes":[89],
     "ratings":[{"severity":"high"},{"score":9.8,"method":"CVSSv31"}],"description":"SQL injection\nin QuerySet.annotate()",
     "affects":[{"ref":"dj"},{"ref":"nested"},{"ref":"pkg:pypi/flask@0.12"}]},
    {"id":"CVE-2023-1","analysis":{"state":"not_affected"},"affects":[{"ref":"dj"}]},
    {"id":"CVE-2023-2","detail":"no rating"}]}"#;

const FORMATS: [Option<ReportFormat>; 4] = [
    None,
    Some(ReportFormat::Sarif),
    Some(ReportFormat::CycloneDx),
    Some(ReportFormat::Native),
];

/// Tokens that steer random text into the parsers' deeper paths.
const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"runs\"",
    "\"version\"",
    "\"2.1.0\"",
    "\"bomFormat\"",
    "\"CycloneDX\"",
    "\"specVersion\"",
    "\"1.6\"",
    "\"format\"",
    "\"posture-native\"",
    "\"1\"",
    "\"results\"",
    "\"tool\"",
    "\"driver\"",
    "\"name\"",
    "\"ruleId\"",
    "\"vulnerabilities\"",
    "\"affects\"",
    "\"ref\"",
    "\"findings\"",
    "\"severity\"",
    "\"high\"",
    "1",
    "-7",
    "null",
    "true",
];

/// What every successfully parsed report must satisfy.
fn check_invariants(report: &ParsedReport) {
    let mut seen = HashSet::new();
    assert!(!report.tool_name.trim().is_empty());
    for finding in &report.findings {
        assert!(
            seen.insert(finding.fingerprint),
            "duplicate fingerprint {}",
            finding.fingerprint
        );
        assert!(!finding.title.is_empty() && finding.title.chars().count() <= MAX_TITLE_CHARS);
        assert!(finding
            .description
            .as_ref()
            .is_none_or(|d| d.chars().count() <= MAX_DESCRIPTION_CHARS));
        assert!(finding.cwe_ids.windows(2).all(|w| w[0] < w[1]) && !finding.cwe_ids.contains(&0));
        assert!(finding.vulnerability_ids.windows(2).all(|w| w[0] < w[1]));
        assert!(finding
            .vulnerability_ids
            .iter()
            .all(|id| !id.is_empty() && *id == id.to_uppercase()));
        assert!(finding
            .location
            .as_ref()
            .is_none_or(|l| !l.uri.is_empty() && l.start_line != Some(0)));
        let text = finding.fingerprint.to_string();
        assert_eq!(
            posture_domain::Fingerprint::parse(&text),
            Ok(finding.fingerprint)
        );
    }
}

fn parse_everyhow(bytes: &[u8]) {
    for declared in FORMATS {
        if let Ok(report) = parse_report(bytes, declared, Some("hint")) {
            check_invariants(&report);
        }
    }
}

/// A change to a valid document; positions are taken modulo its length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        Just(b"\"".to_vec()),
        Just(b"{".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"}".to_vec()),
        Just(b",".to_vec()),
        Just(b":".to_vec()),
        Just(b"null".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"1e999".to_vec()),
        Just(b"\"\\ud800\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just("é".as_bytes().to_vec()),
        Just(b"{\"a\":[1,{}]}".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), token).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), 1..40usize).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<usize>(), 1..200usize).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
    ]
}

fn apply(document: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = document.as_bytes().to_vec();
    for change in mutations {
        let len = bytes.len().max(1);
        match change {
            Mutation::Flip(at, byte) => {
                if !bytes.is_empty() {
                    bytes[at % len] = *byte;
                }
            }
            Mutation::Truncate(at) => bytes.truncate(at % len),
            Mutation::Insert(at, new) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Delete(at, count) => {
                let start = at % len;
                let end = (start + count).min(bytes.len());
                bytes.drain(start.min(end)..end);
            }
            Mutation::Duplicate(at, count) => {
                let start = at % len;
                let end = (start + count).min(bytes.len());
                let copy = bytes[start.min(end)..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    bytes
}

#[test]
fn the_examples_parse() {
    for example in [SARIF_EXAMPLE, CYCLONEDX_EXAMPLE, NATIVE_EXAMPLE] {
        let report = parse_report(example.as_bytes(), None, None).unwrap();
        assert!(!report.findings.is_empty());
        check_invariants(&report);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        parse_everyhow(&bytes);
    }

    #[test]
    fn json_like_text_never_panics(tokens in proptest::collection::vec(proptest::sample::select(JSON_TOKENS), 0..80)) {
        parse_everyhow(tokens.concat().as_bytes());
    }

    #[test]
    fn mutated_sarif_never_panics(changes in proptest::collection::vec(mutation(), 1..6)) {
        parse_everyhow(&apply(SARIF_EXAMPLE, &changes));
    }

    #[test]
    fn mutated_cyclonedx_never_panics(changes in proptest::collection::vec(mutation(), 1..6)) {
        parse_everyhow(&apply(CYCLONEDX_EXAMPLE, &changes));
    }

    #[test]
    fn mutated_native_never_panics(changes in proptest::collection::vec(mutation(), 1..6)) {
        parse_everyhow(&apply(NATIVE_EXAMPLE, &changes));
    }

    #[test]
    fn deep_nesting_is_too_deep(depth in 101..3_000usize, shape in any::<u64>(), enveloped in any::<bool>()) {
        // Arrays and objects mixed by the bits of `shape`.
        let body: String = (0..depth).map(|i| if shape >> (i % 64) & 1 == 1 { "[" } else { "{\"k\":" }).collect();
        let text = if enveloped {
            format!(r#"{{"version":"2.1.0","runs":[{{"properties":{body}"#)
        } else {
            body
        };
        for declared in FORMATS {
            let error = parse_report(text.as_bytes(), declared, None).unwrap_err();
            prop_assert_eq!(error.kind, ReportErrorKind::TooDeep);
        }
    }
}
