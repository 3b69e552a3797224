//! Parses reports and prints what came out, with timings.
//!
//! ```text
//! cargo run --release -p posture-domain --example parse_report -- fixtures/reports/bandit.sarif
//! cargo run --release -p posture-domain --example parse_report -- --synthetic 100000
//! ```
//!
//! `--synthetic N` parses a generated N-result SARIF log (see
//! `posture_domain::report::synthetic`), the quickest way to check that
//! parsing stays linear in the number of results.

use posture_domain::report::{parse_report, synthetic};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--synthetic") {
        let results: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
        let text = synthetic::sarif(results, 200);
        report("synthetic", text.as_bytes());
        return;
    }
    for path in &args {
        match std::fs::read(path) {
            Ok(bytes) => report(path, &bytes),
            Err(error) => eprintln!("{path}: {error}"),
        }
    }
}

fn report(name: &str, bytes: &[u8]) {
    let started = Instant::now();
    match parse_report(bytes, None, None) {
        Ok(parsed) => {
            let elapsed = started.elapsed();
            println!(
                "{name}: {} {} {:?}: {} findings from {} bytes in {:.1} ms ({:.0} findings/s)",
                parsed.format,
                parsed.tool_name,
                parsed.tool_version,
                parsed.findings.len(),
                bytes.len(),
                elapsed.as_secs_f64() * 1e3,
                parsed.findings.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            );
            for finding in parsed
                .findings
                .iter()
                .take(if std::env::var_os("VERBOSE").is_some() {
                    usize::MAX
                } else {
                    0
                })
            {
                println!(
                    "  {} {} {:?} {:?} {}",
                    finding.severity,
                    finding.rule_id,
                    finding.cwe_ids,
                    finding.vulnerability_ids,
                    finding.title
                );
            }
        }
        Err(error) => println!(
            "{name}: {} at {:?}: {}",
            error.kind, error.pointer, error.message
        ),
    }
}
