//! Real scanner reports (fixtures/reports, produced by fixtures/regenerate.sh)
//! through the API: each becomes exactly the findings, severities and CWE ids
//! that fixtures/reports/expected.json — computed independently, in Python —
//! says it contains.

use crate::support::TestApp;
use posture_domain::Tier;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const REPORTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/reports");

fn expected() -> Value {
    let text = std::fs::read_to_string(format!("{REPORTS}/expected.json"))
        .expect("fixtures/reports/expected.json");
    serde_json::from_str(&text).unwrap()
}

async fn all_findings(app: &TestApp, key: &str, asset: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = app
            .get(
                &format!("/v1/findings?asset={asset}&limit=100{cursor}"),
                key,
            )
            .await
            .json()
            .await
            .unwrap();
        all.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return all,
        }
    }
}

/// Distinct dependency findings in a CycloneDX report, counted independently of
/// the parser: one per (advisory, package regardless of version), where the
/// advisory is the first CVE among the id and its references, else the id
/// (docs/fingerprints.md).
fn dependency_identities(report: &[u8]) -> u64 {
    let bom: Value = serde_json::from_slice(report).unwrap();
    let mut identities = BTreeSet::new();
    for vulnerability in bom["vulnerabilities"].as_array().unwrap() {
        let id = vulnerability["id"].as_str().unwrap().to_owned();
        let references = vulnerability["references"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let cve = std::iter::once(id.clone())
            .chain(
                references
                    .iter()
                    .filter_map(|r| r["id"].as_str().map(str::to_owned)),
            )
            .find(|candidate| candidate.starts_with("CVE-"));
        let advisory = cve.unwrap_or(id);
        for affected in vulnerability["affects"].as_array().unwrap() {
            let purl = affected["ref"].as_str().unwrap();
            let package = purl.split('@').next().unwrap().to_owned();
            identities.insert((advisory.clone(), package));
        }
    }
    identities.len() as u64
}

#[tokio::test]
async fn every_fixture_becomes_the_findings_it_contains() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let expected = expected();
    let reports = expected["reports"].as_object().unwrap();
    assert!(reports.len() >= 4, "expected SARIF and CycloneDX fixtures");
    for (name, summary) in reports {
        let body = std::fs::read(format!("{REPORTS}/{name}")).unwrap();
        let content_type = match summary["format"].as_str().unwrap() {
            "sarif" => "application/sarif+json",
            "cyclonedx" => "application/vnd.cyclonedx+json",
            other => panic!("unknown fixture format {other}"),
        };
        let response = app
            .client
            .post(format!(
                "{}/v1/scans?asset_kind=repository&asset_name=fixture/{name}&scope=full",
                app.address
            ))
            .bearer_auth(&tenant.admin_key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            202,
            "{name}: {}",
            response.text().await.unwrap_or_default()
        );
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let started = Instant::now();
        let scan = loop {
            let scan: Value = app
                .get(&location, &tenant.admin_key)
                .await
                .json()
                .await
                .unwrap();
            if matches!(scan["status"].as_str(), Some("succeeded" | "failed")) {
                break scan;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{name} not processed: {scan}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        assert_eq!(scan["status"], "succeeded", "{name}: {scan}");
        let cyclonedx = summary["format"] == "cyclonedx";
        let expected_total = if cyclonedx {
            dependency_identities(&std::fs::read(format!("{REPORTS}/{name}")).unwrap())
        } else {
            summary["findings"]
                .as_u64()
                .or_else(|| summary["findings"].as_array().map(|list| list.len() as u64))
                .unwrap()
        };
        assert_eq!(
            scan["counts"]["total"], expected_total,
            "{name}: finding count"
        );
        assert_eq!(scan["counts"]["new"], expected_total, "{name}: all new");
        assert_eq!(
            scan["tool_name"], summary["tools"][0]["name"],
            "{name}: tool"
        );

        let findings =
            all_findings(&app, &tenant.admin_key, scan["asset_id"].as_str().unwrap()).await;
        assert_eq!(
            findings.len() as u64,
            expected_total,
            "{name}: findings listed"
        );
        let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
        for finding in &findings {
            *by_severity
                .entry(finding["severity"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        // Severity counts are per (vulnerability, component) pair in the manifest; a
        // dependency finding merges the versions of one package, so compare SARIF only.
        for (severity, count) in summary["by_severity"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|_| !cyclonedx)
        {
            let count = count.as_u64().unwrap();
            if ["none", "unknown"].contains(&severity.as_str()) {
                assert_eq!(
                    count, 0,
                    "{name}: fixture has unrated pairs; extend this test"
                );
                continue;
            }
            assert_eq!(
                by_severity.get(severity).copied().unwrap_or(0),
                count,
                "{name}: {severity} findings"
            );
        }
        let cwes: BTreeSet<i64> = findings
            .iter()
            .flat_map(|f| {
                f["cwe_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_i64().unwrap())
            })
            .collect();
        let expected_cwes: BTreeSet<i64> = summary["cwes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c.as_str()
                    .unwrap()
                    .trim_start_matches("CWE-")
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(cwes, expected_cwes, "{name}: CWE ids");
    }
}
