//! Compliance through the API: `GET /v1/compliance`, a framework's controls, and
//! the drill-down from a control to the findings that fail it, checked against
//! an expectation computed here, independently of the stored view: the tenant's
//! findings as `GET /v1/findings` lists them, run through the built-in
//! catalog's matchers (or, for a custom framework, through the test's own
//! reading of its definition).

use crate::support::{assert_problem, TestApp, TestTenant};
use posture_domain::asset::AssetKind;
use posture_domain::compliance::{self, Control, Framework};
use posture_domain::ids::FrameworkId;
use posture_domain::Tier;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const REPORTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/reports");
const SARIF: &str = "application/sarif+json";
const CYCLONEDX: &str = "application/vnd.cyclonedx+json";

/// The drill-down's page size: small, so failing controls span several pages.
const PAGE: usize = 7;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{REPORTS}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expected_json() -> Value {
    serde_json::from_slice(&fixture("expected.json")).unwrap()
}

/// Submits `report` for the asset named by `query`, waits until it is processed
/// and expects it to have succeeded.
async fn ingest(app: &TestApp, key: &str, query: &str, content_type: &str, report: Vec<u8>) {
    let response = app.submit_scan(key, query, content_type, report).await;
    assert_eq!(
        response.status(),
        202,
        "{query}: {}",
        response.text().await.unwrap_or_default()
    );
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let scan = app.wait_for_scan(key, &location).await;
    assert_eq!(scan["status"], "succeeded", "{query}: {scan}");
}

/// Ingests a committed real-scanner report for a repository named `repository`.
async fn ingest_fixture(app: &TestApp, key: &str, name: &str, repository: &str) {
    let content_type = if name.ends_with(".cdx.json") {
        CYCLONEDX
    } else {
        SARIF
    };
    let query = format!("asset_kind=repository&asset_name={repository}&scope=full");
    ingest(app, key, &query, content_type, fixture(name)).await;
}

/// All four fixtures, as one tenant's repositories would be scanned: application
/// code by Bandit and Semgrep, infrastructure code by Checkov, front-end
/// dependencies by Retire.js.
async fn ingest_all_fixtures(app: &TestApp, tenant: &TestTenant) {
    for (name, repository) in [
        ("bandit.sarif", "github.com/acme/app"),
        ("semgrep.sarif", "github.com/acme/app"),
        ("checkov.sarif", "github.com/acme/infra"),
        ("retire.cdx.json", "github.com/acme/web"),
    ] {
        ingest_fixture(app, &tenant.admin_key, name, repository).await;
    }
    app.wait_for_posture(tenant.id).await;
}

/// A clean SARIF report: the tool ran and found nothing.
fn clean_sarif() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "semgrep"}}, "results": []}]
    }))
    .unwrap()
}

/// Every finding of the tenant, paging `GET /v1/findings` until the cursor runs out.
async fn all_findings(app: &TestApp, key: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = "/v1/findings?limit=100".to_owned();
    for _page in 0..1_000 {
        let response = app.get(&path, key).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let page: Value = response.json().await.unwrap();
        all.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/v1/findings?limit=100&cursor={next}"),
            None => {
                let ids: BTreeSet<&str> = all.iter().map(|f| f["id"].as_str().unwrap()).collect();
                assert_eq!(ids.len(), all.len(), "/v1/findings lists a finding twice");
                return all;
            }
        }
    }
    panic!("/v1/findings: the cursor does not advance");
}

fn is_live(finding: &Value) -> bool {
    matches!(finding["status"].as_str(), Some("open" | "reopened"))
}

fn cwes_of(finding: &Value) -> Vec<u32> {
    finding["cwe_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cwe| u32::try_from(cwe.as_u64().unwrap()).unwrap())
        .collect()
}

/// Whether the (live) finding fails `control`, by the catalog's matcher.
fn fails(control: &Control, finding: &Value) -> bool {
    control.matcher.matches(
        &cwes_of(finding),
        finding["rule_id"].as_str().unwrap(),
        finding["package"]["purl"].is_string(),
    )
}

/// What a control should show.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExpectedControl {
    status: &'static str,
    /// Ids of the live findings that fail it.
    findings: BTreeSet<String>,
}

/// Each control of `framework` as the tenant's `findings` and the asset kinds it
/// has scanned make it: failed when a live finding maps to it (whatever the asset
/// kind), passed when its matcher is not empty and a kind in its scope (any kind
/// if it names none) was scanned, not assessed otherwise.
fn expected_controls(
    framework: &Framework,
    findings: &[Value],
    scanned: &BTreeSet<AssetKind>,
) -> BTreeMap<String, ExpectedControl> {
    framework
        .controls
        .iter()
        .map(|control| {
            let failing: BTreeSet<String> = findings
                .iter()
                .filter(|finding| is_live(finding) && fails(control, finding))
                .map(|finding| finding["id"].as_str().unwrap().to_owned())
                .collect();
            let in_scope = if control.asset_kinds.is_empty() {
                !scanned.is_empty()
            } else {
                !control.asset_kinds.is_disjoint(scanned)
            };
            let status = if !failing.is_empty() {
                "failed"
            } else if in_scope && !control.matcher.is_empty() {
                "passed"
            } else {
                "not_assessed"
            };
            let expected = ExpectedControl {
                status,
                findings: failing,
            };
            (control.id.clone(), expected)
        })
        .collect()
}

/// `round(passed / (passed + failed) × 100, 1)`, in exact integer arithmetic
/// (half up); `None` when nothing was assessed.
fn percent(passed: u64, failed: u64) -> Option<f64> {
    let total = passed + failed;
    (total > 0).then(|| ((2_000 * passed + total) / (2 * total)) as f64 / 10.0)
}

fn tally(expected: &BTreeMap<String, ExpectedControl>, status: &str) -> u64 {
    expected.values().filter(|c| c.status == status).count() as u64
}

/// The framework summary members (overview entry, detail, drill-down's `framework`).
fn summary_of(value: &Value) -> Value {
    let mut summary = serde_json::Map::new();
    for member in [
        "id",
        "name",
        "version",
        "custom",
        "passed",
        "failed",
        "not_assessed",
        "percent",
    ] {
        assert!(value.get(member).is_some(), "no {member}: {value}");
        summary.insert(member.to_owned(), value[member].clone());
    }
    Value::Object(summary)
}

/// The mapping the drill-down should show for a control.
fn mapping_of(control: &Control) -> Value {
    json!({
        "classes": control.classes,
        "cwes": control.matcher.cwes.iter().collect::<Vec<_>>(),
        "rules": control.matcher.rules.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "dependencies": control.matcher.dependencies,
        "asset_kinds": control.asset_kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
    })
}

/// What every page of one control's drill-down must show.
struct DrillDown<'a> {
    framework_id: &'a str,
    control_id: &'a str,
    /// The framework summary (as `GET /v1/compliance/{framework}` shows it).
    summary: &'a Value,
    expected: &'a ExpectedControl,
    /// The control's mapping, when the test knows it.
    mapping: Option<&'a Value>,
}

/// Pages through a control's drill-down with `limit` and checks every page:
/// the control's live status and count, the framework summary, the mapping.
/// Returns the union of the finding ids listed, refusing duplicates.
async fn drill_down(
    app: &TestApp,
    key: &str,
    check: &DrillDown<'_>,
    limit: usize,
) -> BTreeSet<String> {
    let DrillDown {
        framework_id,
        control_id,
        summary,
        expected,
        mapping,
    } = *check;
    let base = format!("/v1/compliance/{framework_id}/controls/{control_id}?limit={limit}");
    let mut path = base.clone();
    let mut ids = BTreeSet::new();
    let mut previous: Option<String> = None;
    for _page in 0..1_000 {
        let response = app.get(&path, key).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let detail: Value = response.json().await.unwrap();
        assert_eq!(&summary_of(&detail["framework"]), summary, "GET {path}");
        assert_eq!(detail["control"]["id"], control_id, "GET {path}");
        assert_eq!(
            detail["control"]["status"], expected.status,
            "GET {path}: live status"
        );
        assert_eq!(
            detail["control"]["failing_findings"],
            expected.findings.len(),
            "GET {path}: live count"
        );
        if let Some(mapping) = mapping {
            assert_eq!(&detail["mapping"], mapping, "GET {path}");
        }
        let data = detail["findings"]["data"].as_array().unwrap();
        assert!(data.len() <= limit, "GET {path} ignored the limit");
        for finding in data {
            let id = finding["id"].as_str().unwrap().to_owned();
            // Newest first: ids strictly decrease across pages.
            if let Some(previous) = &previous {
                assert!(id < *previous, "GET {path}: {id} after {previous}");
            }
            assert!(is_live(finding), "GET {path} lists {finding}");
            previous = Some(id.clone());
            assert!(ids.insert(id.clone()), "GET {path}: {id} listed twice");
        }
        match detail["findings"]["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(data.len(), limit, "GET {path}: a short page with a cursor");
                path = format!("{base}&cursor={next}");
            }
            None => return ids,
        }
    }
    panic!("{base}: the cursor does not advance");
}

/// Checks `GET /v1/compliance/{id}` (every control, in the framework's order, and
/// each `?status=`), then every control's drill-down, against `expected`;
/// `mappings` are the controls' expected mappings. Returns the framework summary.
async fn assert_framework(
    app: &TestApp,
    key: &str,
    framework: &Framework,
    expected: &BTreeMap<String, ExpectedControl>,
    mappings: &BTreeMap<String, Value>,
) -> Value {
    let id = &framework.id;
    let response = app.get(&format!("/v1/compliance/{id}"), key).await;
    assert_eq!(response.status(), 200, "GET /v1/compliance/{id}");
    let detail: Value = response.json().await.unwrap();
    let summary = summary_of(&detail);
    let (passed, failed, not_assessed) = (
        tally(expected, "passed"),
        tally(expected, "failed"),
        tally(expected, "not_assessed"),
    );
    assert_eq!(
        summary,
        json!({
            "id": id,
            "name": framework.name,
            "version": framework.version,
            "custom": framework.custom,
            "passed": passed,
            "failed": failed,
            "not_assessed": not_assessed,
            "percent": percent(passed, failed),
        }),
        "{id}"
    );
    let controls = detail["controls"].as_array().unwrap();
    let listed: Vec<&str> = controls.iter().map(|c| c["id"].as_str().unwrap()).collect();
    let catalog: Vec<&str> = framework.controls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(listed, catalog, "{id}: every control, in order");
    for (control, view) in framework.controls.iter().zip(controls) {
        let want = &expected[&control.id];
        assert_eq!(
            view,
            &json!({
                "id": control.id,
                "title": control.title,
                "status": want.status,
                "failing_findings": want.findings.len(),
            }),
            "{id} {}: expected {:?}",
            control.id,
            want.findings
        );
    }
    for status in ["passed", "failed", "not_assessed"] {
        let filtered: Value = app
            .get(&format!("/v1/compliance/{id}?status={status}"), key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(summary_of(&filtered), summary, "{id}?status={status}");
        let ids: Vec<&str> = filtered["controls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = framework
            .controls
            .iter()
            .filter(|c| expected[&c.id].status == status)
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(ids, want, "{id}?status={status}");
    }
    for control in &framework.controls {
        let want = &expected[&control.id];
        let check = DrillDown {
            framework_id: id,
            control_id: &control.id,
            summary: &summary,
            expected: want,
            mapping: mappings.get(&control.id),
        };
        let listed = drill_down(app, key, &check, PAGE).await;
        assert_eq!(
            listed, want.findings,
            "{id} {}: the drill-down lists exactly the failing findings",
            control.id
        );
    }
    summary
}

/// The built-in controls' mappings as the catalog defines them.
fn builtin_mappings(framework: &Framework) -> BTreeMap<String, Value> {
    framework
        .controls
        .iter()
        .map(|control| (control.id.clone(), mapping_of(control)))
        .collect()
}

/// Checks every built-in framework and the overview against `findings`; returns
/// the expectation per framework id.
async fn assert_compliance(
    app: &TestApp,
    key: &str,
    findings: &[Value],
    scanned: &BTreeSet<AssetKind>,
) -> BTreeMap<String, BTreeMap<String, ExpectedControl>> {
    let catalog = compliance::builtin();
    let overview: Value = app.get("/v1/compliance", key).await.json().await.unwrap();
    let mut all = BTreeMap::new();
    let (mut passed, mut failed) = (0, 0);
    for framework in &catalog.frameworks {
        let expected = expected_controls(framework, findings, scanned);
        let summary =
            assert_framework(app, key, framework, &expected, &builtin_mappings(framework)).await;
        let entry = overview["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["id"] == framework.id.as_str())
            .unwrap_or_else(|| panic!("{} missing from the overview: {overview}", framework.id));
        assert_eq!(
            summary_of(entry),
            summary,
            "the overview's {} equals its detail",
            framework.id
        );
        passed += tally(&expected, "passed");
        failed += tally(&expected, "failed");
        all.insert(framework.id.clone(), expected);
    }
    let builtin_ids: Vec<&str> = overview["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["custom"] == false)
        .map(|entry| entry["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        builtin_ids,
        ["soc2", "iso27001", "nist-800-53", "pci-dss", "cis-v8"]
    );
    assert_eq!(
        overview["compliance_percent"],
        json!(percent(passed, failed)),
        "{overview}"
    );
    let unmapped = findings
        .iter()
        .filter(|finding| is_live(finding))
        .filter(|finding| {
            !catalog
                .frameworks
                .iter()
                .flat_map(|framework| &framework.controls)
                .any(|control| fails(control, finding))
        })
        .count();
    assert_eq!(overview["unmapped_findings"], unmapped, "{overview}");
    all
}

fn repository_only() -> BTreeSet<AssetKind> {
    BTreeSet::from([AssetKind::Repository])
}

/// The "done when" test: the four real-scanner reports, and every built-in
/// framework's failed controls, counts and drill-downs exactly as the catalog's
/// matchers applied to the listed findings say.
#[tokio::test]
async fn real_reports_fail_exactly_the_controls_their_findings_map_to() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    ingest_all_fixtures(&app, &tenant).await;

    let findings = all_findings(&app, &tenant.admin_key).await;
    let live: Vec<&Value> = findings.iter().filter(|f| is_live(f)).collect();
    assert!(live.len() >= 40, "the fixtures hold dozens of findings");
    assert!(
        live.iter().any(|f| f["package"]["purl"].is_string()),
        "dependency findings from the CycloneDX report"
    );
    let expected = assert_compliance(&app, &tenant.admin_key, &findings, &repository_only()).await;

    let catalog = compliance::builtin();
    for framework in &catalog.frameworks {
        let controls = &expected[&framework.id];
        assert!(
            controls.values().any(|c| c.status == "failed"),
            "{}: something fails",
            framework.id
        );
        // Only repositories were scanned: a control passes only with repository in scope.
        for control in &framework.controls {
            if controls[&control.id].status == "passed" {
                assert!(
                    control.asset_kinds.is_empty()
                        || control.asset_kinds.contains(&AssetKind::Repository),
                    "{} {}",
                    framework.id,
                    control.id
                );
            }
        }
        // A drill-down's failing set spans several pages somewhere.
        assert!(
            controls.values().any(|c| c.findings.len() > PAGE),
            "{}: no control spans two pages",
            framework.id
        );
    }

    // Cross-check against fixtures/reports/expected.json (computed in Python): every
    // CWE the reports carry, and every rule of the reports without CWEs (checkov),
    // reaches a failed control in every framework.
    let reports = expected_json();
    let mut cwes = BTreeSet::new();
    let mut cweless_rules = BTreeSet::new();
    for (name, report) in reports["reports"].as_object().unwrap() {
        let report_cwes = report["cwes"].as_array().unwrap();
        for cwe in report_cwes {
            let cwe = cwe.as_str().unwrap().trim_start_matches("CWE-");
            cwes.insert(cwe.parse::<u32>().unwrap());
        }
        if report_cwes.is_empty() {
            let rules = report["rule_ids"].as_array().unwrap();
            assert!(!rules.is_empty(), "{name}: neither CWEs nor rules");
            cweless_rules.extend(rules.iter().map(|r| r.as_str().unwrap().to_owned()));
        }
    }
    assert!(cwes.len() >= 20 && cweless_rules.len() >= 10);
    for framework in &catalog.frameworks {
        let failed = |matches: &dyn Fn(&Control) -> bool| {
            framework
                .controls
                .iter()
                .any(|c| matches(c) && expected[&framework.id][&c.id].status == "failed")
        };
        for cwe in &cwes {
            assert!(
                failed(&|c: &Control| c.matcher.cwes.contains(cwe)),
                "{}: CWE-{cwe} reaches no failed control",
                framework.id
            );
        }
        for rule in &cweless_rules {
            assert!(
                failed(&|c: &Control| c.matcher.matches(&[], rule, false)),
                "{}: {rule} reaches no failed control",
                framework.id
            );
        }
        assert!(
            failed(&|c: &Control| c.matcher.dependencies),
            "{}: dependency findings reach no failed control",
            framework.id
        );
    }
}

#[tokio::test]
async fn nothing_is_assessed_until_a_scan_and_a_clean_scan_passes_what_is_in_scope() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let reader = app.issue_key(tenant.id, &["read"]).await;
    let catalog = compliance::builtin();

    // Nothing scanned: nothing assessed, no percentages.
    let overview: Value = app
        .get("/v1/compliance", &reader)
        .await
        .json()
        .await
        .unwrap();
    assert!(overview["compliance_percent"].is_null(), "{overview}");
    assert_eq!(overview["unmapped_findings"], 0);
    let expected = assert_compliance(&app, &reader, &[], &BTreeSet::new()).await;
    for framework in &catalog.frameworks {
        let entry = overview["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["id"] == framework.id.as_str())
            .unwrap();
        assert_eq!(
            (&entry["passed"], &entry["failed"], &entry["percent"]),
            (&json!(0), &json!(0), &Value::Null),
            "{entry}"
        );
        assert_eq!(entry["not_assessed"], framework.controls.len());
        assert!(expected[&framework.id]
            .values()
            .all(|c| c.status == "not_assessed"));
    }

    // A clean scan of a repository: what has repository in scope passes; the rest
    // (controls nothing maps to, controls scoped to other kinds only) stays unassessed.
    ingest(
        &app,
        &tenant.admin_key,
        "asset_kind=repository&asset_name=github.com/acme/api&scope=full",
        SARIF,
        clean_sarif(),
    )
    .await;
    app.wait_for_posture(tenant.id).await;
    let expected = assert_compliance(&app, &reader, &[], &repository_only()).await;
    for framework in &catalog.frameworks {
        for control in &framework.controls {
            let status = expected[&framework.id][&control.id].status;
            let repository_in_scope = control.asset_kinds.is_empty()
                || control.asset_kinds.contains(&AssetKind::Repository);
            let want = if !control.matcher.is_empty() && repository_in_scope {
                "passed"
            } else {
                "not_assessed"
            };
            assert_eq!(status, want, "{} {}", framework.id, control.id);
        }
        let summary: Value = app
            .get(&format!("/v1/compliance/{}", framework.id), &reader)
            .await
            .json()
            .await
            .unwrap();
        assert!(summary["passed"].as_u64().unwrap() > 0, "{summary}");
        assert_eq!(summary["failed"], 0);
        assert_eq!(summary["percent"], 100.0, "{summary}");
    }
    let overview: Value = app
        .get("/v1/compliance", &reader)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(overview["compliance_percent"], 100.0, "{overview}");

    // Scope is real: a tenant that scanned only a cloud account has the controls
    // whose classes never apply to cloud accounts unassessed, and the others passed.
    let cloud = app.create_tenant(Tier::Basic).await;
    ingest(
        &app,
        &cloud.admin_key,
        "asset_kind=cloud_account&asset_name=aws/123456789012&scope=full",
        SARIF,
        clean_sarif(),
    )
    .await;
    app.wait_for_posture(cloud.id).await;
    let scanned = BTreeSet::from([AssetKind::CloudAccount]);
    let expected = assert_compliance(&app, &cloud.admin_key, &[], &scanned).await;
    let mut out_of_scope = 0;
    for framework in &catalog.frameworks {
        for control in &framework.controls {
            let status = expected[&framework.id][&control.id].status;
            if control.matcher.is_empty() {
                assert_eq!(status, "not_assessed");
            } else if control.asset_kinds.contains(&AssetKind::CloudAccount) {
                assert_eq!(status, "passed", "{} {}", framework.id, control.id);
            } else {
                out_of_scope += 1;
                assert_eq!(status, "not_assessed", "{} {}", framework.id, control.id);
            }
        }
    }
    assert!(
        out_of_scope > 0,
        "some mapped control should not apply to cloud accounts"
    );
}

/// Triages one finding (`PATCH /v1/findings/{id}`), expecting 200.
async fn patch(app: &TestApp, key: &str, id: &str, body: Value) {
    let response = app
        .client
        .patch(format!("{}/v1/findings/{id}", app.address))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "PATCH {id}: {}",
        response.text().await.unwrap_or_default()
    );
}

#[tokio::test]
async fn triaged_findings_leave_their_controls() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let key = &tenant.admin_key;
    ingest_fixture(&app, key, "bandit.sarif", "github.com/acme/app").await;
    app.wait_for_posture(tenant.id).await;
    let findings = all_findings(&app, key).await;
    let before = assert_compliance(&app, key, &findings, &repository_only()).await;

    // The SOC 2 control with the fewest failing findings, at least two: triage them
    // all, the first as a false positive, the others as accepted risks.
    let soc2 = compliance::builtin().framework("soc2").unwrap();
    let (control_id, target) = before["soc2"]
        .iter()
        .filter(|(_, c)| c.findings.len() >= 2)
        .min_by_key(|(_, c)| c.findings.len())
        .map(|(id, c)| (id.clone(), c.findings.clone()))
        .expect("a SOC 2 control failed by two findings or more");
    let triaged: Vec<String> = target.iter().cloned().collect();
    patch(
        &app,
        key,
        &triaged[0],
        json!({"status": "false_positive", "reason": "test code only"}),
    )
    .await;
    let until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    for id in &triaged[1..] {
        patch(
            &app,
            key,
            id,
            json!({"status": "accepted_risk", "reason": "compensating control", "accepted_until": until}),
        )
        .await;
    }
    app.wait_for_posture(tenant.id).await;

    let findings = all_findings(&app, key).await;
    for finding in &findings {
        let id = finding["id"].as_str().unwrap();
        if target.contains(id) {
            assert!(!is_live(finding), "{finding}");
        }
    }
    let after = assert_compliance(&app, key, &findings, &repository_only()).await;
    // The control passes now (bandit scanned a repository, in its scope) and lists nothing...
    let control = soc2.control(&control_id).unwrap();
    assert_eq!(
        after["soc2"][&control_id],
        ExpectedControl {
            status: "passed",
            findings: BTreeSet::new()
        }
    );
    let page: Value = app
        .get(&format!("/v1/compliance/soc2/controls/{control_id}"), key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["control"]["status"], "passed", "{page}");
    assert_eq!(page["findings"]["data"], json!([]), "{page}");
    assert_eq!(page["mapping"], mapping_of(control));
    // ...and no control of any framework counts or lists a triaged finding any more,
    // while every other finding still counts where it did.
    for (framework_id, controls) in &after {
        for (id, now) in controls {
            let was = &before[framework_id][id];
            assert!(now.findings.is_disjoint(&target), "{framework_id} {id}");
            let kept: BTreeSet<String> = was.findings.difference(&target).cloned().collect();
            assert_eq!(now.findings, kept, "{framework_id} {id}");
        }
    }

    // Reopening the false positive makes it fail the control again.
    patch(&app, key, &triaged[0], json!({"status": "open"})).await;
    app.wait_for_posture(tenant.id).await;
    let findings = all_findings(&app, key).await;
    let reopened = assert_compliance(&app, key, &findings, &repository_only()).await;
    assert_eq!(
        reopened["soc2"][&control_id].findings,
        BTreeSet::from([triaged[0].clone()])
    );
    assert_eq!(reopened["soc2"][&control_id].status, "failed");
}

#[tokio::test]
async fn unknown_frameworks_and_controls_are_not_found_and_bad_queries_refused() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let reader = app.issue_key(tenant.id, &["read"]).await;
    ingest_fixture(
        &app,
        &tenant.admin_key,
        "bandit.sarif",
        "github.com/acme/app",
    )
    .await;
    app.wait_for_posture(tenant.id).await;

    // Read scope suffices for all three.
    for path in [
        "/v1/compliance",
        "/v1/compliance/soc2",
        "/v1/compliance/soc2?status=failed",
        "/v1/compliance/iso27001/controls/A.8.28",
        "/v1/compliance/nist-800-53/controls/SI-10?limit=1",
    ] {
        let response = app.get(path, &reader).await;
        assert_eq!(response.status(), 200, "GET {path}");
    }

    let unknown_cfw = FrameworkId::new().to_string();
    let not_found = [
        "/v1/compliance/nope".to_owned(),
        "/v1/compliance/SOC2".to_owned(),
        "/v1/compliance/nope/controls/CC6.1".to_owned(),
        "/v1/compliance/soc2/controls/NOPE-1".to_owned(),
        "/v1/compliance/soc2/controls/cc6.1".to_owned(),
        // A control of another framework.
        "/v1/compliance/soc2/controls/A.8.28".to_owned(),
        // Malformed custom framework ids.
        "/v1/compliance/cfw_".to_owned(),
        "/v1/compliance/cfw_notanid".to_owned(),
        format!("/v1/compliance/cfw_{}", "z".repeat(22)),
        "/v1/compliance/ast_0000000000000000000000".to_owned(),
        "/v1/compliance/cfw_notanid/controls/SEC-01".to_owned(),
        "/v1/compliance/cfw_notanid?status=failed".to_owned(),
        // Well-formed, but no such framework.
        format!("/v1/compliance/{unknown_cfw}"),
        format!("/v1/compliance/{unknown_cfw}/controls/SEC-01"),
    ];
    for path in &not_found {
        let problem = assert_problem(app.get(path, &reader).await, 404).await;
        assert_eq!(problem["type"], "/problems/not-found", "GET {path}");
    }

    for (path, parameter) in [
        ("/v1/compliance/soc2?status=bogus", "status"),
        ("/v1/compliance/soc2?status=FAILED", "status"),
        ("/v1/compliance/soc2?status=", "status"),
        ("/v1/compliance/soc2/controls/CC7.1?cursor=bogus", "cursor"),
        ("/v1/compliance/soc2/controls/CC7.1?limit=0", "limit"),
        ("/v1/compliance/soc2/controls/CC7.1?limit=ten", "limit"),
    ] {
        let problem = assert_problem(app.get(path, &reader).await, 422).await;
        assert_eq!(
            problem["errors"][0]["parameter"], parameter,
            "GET {path}: {problem}"
        );
    }
    // A cursor of another endpoint (an API key's, not a finding's) is refused too.
    let keys: Value = app
        .get("/v1/api-keys?limit=1", &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    let cursor = keys["next_cursor"].as_str().expect("two keys, two pages");
    let path = format!("/v1/compliance/soc2/controls/CC7.1?cursor={cursor}");
    let problem = assert_problem(app.get(&path, &reader).await, 422).await;
    assert_eq!(problem["errors"][0]["parameter"], "cursor", "{problem}");

    // No key, no compliance.
    for path in [
        "/v1/compliance",
        "/v1/compliance/soc2",
        "/v1/compliance/soc2/controls/CC7.1",
    ] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_problem(response, 401).await;
    }
}

/// Creates a custom framework through the API; returns its view.
async fn create_framework(app: &TestApp, key: &str, body: &Value) -> Value {
    let response = app.post_json("/v1/frameworks", key, body).await;
    assert_eq!(
        response.status(),
        201,
        "POST /v1/frameworks: {}",
        response.text().await.unwrap_or_default()
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_custom_framework_fails_on_exactly_its_mapped_findings() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    let created = create_framework(
        &app,
        key,
        &json!({
            "name": "Acme secure coding",
            "controls": [
                {"id": "SEC-01", "title": "No SQL or shell injection", "cwes": [89], "rules": ["B6*"]},
                {"id": "SEC.02", "title": "No cross-site scripting", "cwes": [79]},
            ]
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cfw_"), "{created}");

    // The test's own reading of the definition: CWE-89, or a rule starting with B6.
    let sec01 = |finding: &Value| {
        cwes_of(finding).contains(&89) || finding["rule_id"].as_str().unwrap().starts_with("B6")
    };
    let sec02 = |finding: &Value| cwes_of(finding).contains(&79);
    let expect = |findings: &[Value], scanned: bool| {
        let control = |matches: &dyn Fn(&Value) -> bool| {
            let failing: BTreeSet<String> = findings
                .iter()
                .filter(|f| is_live(f) && matches(f))
                .map(|f| f["id"].as_str().unwrap().to_owned())
                .collect();
            let status = match (failing.is_empty(), scanned) {
                (false, _) => "failed",
                (true, true) => "passed",
                (true, false) => "not_assessed",
            };
            ExpectedControl {
                status,
                findings: failing,
            }
        };
        BTreeMap::from([
            ("SEC-01".to_owned(), control(&sec01)),
            ("SEC.02".to_owned(), control(&sec02)),
        ])
    };
    // The framework's shape (ids, titles, order) for `assert_framework`; what
    // fails its controls is `expect` above, not these empty matchers.
    let mut framework = Framework {
        id: id.clone(),
        name: "Acme secure coding".into(),
        version: "revision 1".into(),
        custom: true,
        controls: Vec::new(),
    };
    for (control_id, title) in [
        ("SEC-01", "No SQL or shell injection"),
        ("SEC.02", "No cross-site scripting"),
    ] {
        framework.controls.push(Control {
            id: control_id.into(),
            title: title.into(),
            matcher: Default::default(),
            asset_kinds: BTreeSet::new(),
            classes: Vec::new(),
        });
    }
    let mappings = BTreeMap::from([
        (
            "SEC-01".to_owned(),
            json!({"classes": [], "cwes": [89], "rules": ["B6*"], "dependencies": false, "asset_kinds": []}),
        ),
        (
            "SEC.02".to_owned(),
            json!({"classes": [], "cwes": [79], "rules": [], "dependencies": false, "asset_kinds": []}),
        ),
    ]);

    // Right after creation, before any scan, whether or not the refresh has run yet.
    assert_framework(&app, key, &framework, &expect(&[], false), &mappings).await;

    ingest_fixture(&app, key, "bandit.sarif", "github.com/acme/app").await;
    app.wait_for_posture(tenant.id).await;
    let findings = all_findings(&app, key).await;
    let expected = expect(&findings, true);
    let failing = &expected["SEC-01"].findings;
    // Both routes in: a finding by its CWE (B608) and one by its rule alone (B602).
    let rule_of = |id: &String| {
        findings
            .iter()
            .find(|f| f["id"] == id.as_str())
            .map(|f| f["rule_id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let rules: BTreeSet<String> = failing.iter().map(rule_of).collect();
    assert!(
        rules.contains("B608") && rules.contains("B602"),
        "{rules:?}"
    );
    assert!(findings
        .iter()
        .any(|f| f["rule_id"] == "B602" && !cwes_of(f).contains(&89)));
    assert_eq!(expected["SEC.02"].status, "passed");
    let summary = assert_framework(&app, key, &framework, &expected, &mappings).await;
    assert_eq!(summary["percent"], 50.0, "{summary}");
    // Page by one too: every failing finding exactly once.
    let check = DrillDown {
        framework_id: &id,
        control_id: "SEC-01",
        summary: &summary,
        expected: &expected["SEC-01"],
        mapping: Some(&mappings["SEC-01"]),
    };
    let listed = drill_down(&app, key, &check, 1).await;
    assert_eq!(&listed, failing);

    // The overview lists it after the built-ins, and its % stays out of the
    // organization's (built-in only) compliance %.
    let overview: Value = app.get("/v1/compliance", key).await.json().await.unwrap();
    let entries = overview["frameworks"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "{overview}");
    assert_eq!(summary_of(&entries[5]), summary);
    assert_eq!(entries[5]["custom"], true);
    let builtin = assert_compliance(&app, key, &findings, &repository_only()).await;
    let (passed, failed) = builtin.values().fold((0, 0), |(p, f), controls| {
        (p + tally(controls, "passed"), f + tally(controls, "failed"))
    });
    assert_eq!(
        overview["compliance_percent"],
        json!(percent(passed, failed))
    );
}
