//! Synthetic reports of any size, for benchmarks and load tests.
//!
//! Deterministic: the same arguments give the same bytes, and every result
//! has a distinct fingerprint, so `results` in means `results` findings out.

use std::fmt::Write as _;

/// A SARIF 2.1.0 log from the tool `synthetic` with `results` results spread
/// over `rules` rules (at least one). Rules carry CWE tags and, for every
/// third rule, a `security-severity`; results carry partial fingerprints, a
/// location and a two-line message, like CodeQL's output.
pub fn sarif(results: usize, rules: usize) -> String {
    let rules = rules.max(1);
    let mut out = String::with_capacity(1_024 + rules * 300 + results * 420);
    out.push_str(
        r#"{"$schema":"https://json.schemastore.org/sarif-2.1.0.json","version":"2.1.0","runs":[{"tool":{"driver":{"name":"synthetic","version":"1.0.0","rules":["#,
    );
    for r in 0..rules {
        if r > 0 {
            out.push(',');
        }
        let severity = match r % 3 {
            0 => format!(r#","security-severity":"{}.{}""#, 4 + r % 6, r % 10),
            _ => String::new(),
        };
        let _ = write!(
            out,
            r#"{{"id":"SYN{r:04}","name":"SyntheticRule{r}","shortDescription":{{"text":"Synthetic rule {r}"}},"fullDescription":{{"text":"A rule that exists to be benchmarked."}},"defaultConfiguration":{{"level":"{}"}},"properties":{{"tags":["security","external/cwe/cwe-{}"]{severity}}}}}"#,
            ["error", "warning", "note"][r % 3],
            [79, 89, 22, 78, 502][r % 5],
        );
    }
    out.push_str(r#"]}},"results":["#);
    for i in 0..results {
        if i > 0 {
            out.push(',');
        }
        let rule = i % rules;
        let _ = write!(
            out,
            r#"{{"ruleId":"SYN{rule:04}","ruleIndex":{rule},"message":{{"text":"Synthetic finding {i} in module {}\nData flows from a request parameter to a sink."}},"locations":[{{"physicalLocation":{{"artifactLocation":{{"uri":"src/module_{}/file_{}.py","uriBaseId":"%SRCROOT%"}},"region":{{"startLine":{},"startColumn":5}}}}}}],"partialFingerprints":{{"primaryLocationLineHash":"{i:016x}:1"}}}}"#,
            i / 100,
            i / 100,
            i % 100,
            i % 500 + 1,
        );
    }
    out.push_str("]}]}");
    out
}
