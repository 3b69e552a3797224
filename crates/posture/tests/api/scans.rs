//! Scan ingestion end to end: reports in through the API, findings out, with the
//! lifecycle (new, unchanged, resolved, reopened), triage that survives rescans,
//! cross-tool de-duplication, bad input as 4xx problems, and a crashed worker's
//! job finished by another without duplicates.

use crate::support::{assert_problem, TestApp, TestTenant};
use posture_domain::Tier;
use serde_json::{json, Value};
use sqlx::Connection;
use std::time::{Duration, Instant};

const SARIF: &str = "application/sarif+json";
const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
const NATIVE: &str = "application/vnd.posture.native+json";

/// A SARIF 2.1.0 report of `tool` with one result per (rule, level, line).
fn sarif(tool: &str, results: &[(&str, &str, u32)]) -> Value {
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": {"driver": {"name": tool, "version": "1.2.3", "rules": [
                {"id": "py.sqli", "properties": {"tags": ["security", "external/cwe/cwe-89"]}},
                {"id": "py.rce", "properties": {"tags": ["CWE-78"], "security-severity": "9.8"}},
                {"id": "py.style", "properties": {"tags": []}}
            ]}},
            "results": results.iter().map(|(rule, level, line)| json!({
                "ruleId": rule,
                "level": level,
                "message": {"text": format!("{rule} at line {line}")},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": "src/app.py"},
                    "region": {"startLine": line}
                }}]
            })).collect::<Vec<_>>()
        }]
    })
}

/// Submits `body` as `content_type` with the given query; returns the response.
async fn submit(
    app: &TestApp,
    key: &str,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.submit_scan(key, query, content_type, body).await
}

/// Submits a report, expects 202, and waits (bounded) until it is processed.
async fn ingest(
    app: &TestApp,
    tenant: &TestTenant,
    query: &str,
    content_type: &str,
    report: &Value,
) -> Value {
    let response = submit(
        app,
        &tenant.admin_key,
        query,
        content_type,
        serde_json::to_vec(report).unwrap(),
    )
    .await;
    assert_eq!(
        response.status(),
        202,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/scans/{}", accepted["id"].as_str().unwrap())
    );
    wait_for_scan(app, &tenant.admin_key, &location).await
}

/// Polls a scan until it is processed (at most 15 s).
async fn wait_for_scan(app: &TestApp, key: &str, location: &str) -> Value {
    app.wait_for_scan(key, location).await
}

/// Every finding of the tenant matching `query`, all pages.
async fn findings(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_query = match &cursor {
            Some(cursor) => format!("{query}&limit=2&cursor={cursor}"),
            None => format!("{query}&limit=2"),
        };
        let page: Value = app
            .get(&format!("/v1/findings?{page_query}"), key)
            .await
            .json()
            .await
            .unwrap();
        all.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

fn counts(scan: &Value) -> (i64, i64, i64, i64, i64) {
    let c = &scan["counts"];
    let get = |name: &str| {
        c[name]
            .as_i64()
            .unwrap_or_else(|| panic!("no {name} in {scan}"))
    };
    (
        get("total"),
        get("new"),
        get("reopened"),
        get("resolved"),
        get("unchanged"),
    )
}

const REPO: &str = "asset_kind=repository&asset_name=github.com/acme/api&scope=full";

#[tokio::test]
async fn a_sarif_report_becomes_findings_with_severities_and_cwes() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let report = sarif(
        "semgrep",
        &[
            ("py.sqli", "error", 10),
            ("py.rce", "warning", 20),
            ("py.style", "note", 30),
        ],
    );
    let scan = ingest(&app, &tenant, REPO, SARIF, &report).await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    assert_eq!(counts(&scan), (3, 3, 0, 0, 0));
    assert_eq!(scan["tool_name"], "semgrep");
    assert!(scan["asset_id"].as_str().unwrap().starts_with("ast_"));

    let all = findings(&app, &tenant.admin_key, "status=open").await;
    assert_eq!(all.len(), 3);
    let by_rule = |rule: &str| all.iter().find(|f| f["rule_id"] == rule).unwrap().clone();
    assert_eq!(by_rule("py.sqli")["severity"], "high");
    assert_eq!(by_rule("py.sqli")["cwe_ids"], json!([89]));
    assert_eq!(
        by_rule("py.rce")["severity"],
        "critical",
        "security-severity 9.8 overrides the level"
    );
    assert_eq!(by_rule("py.rce")["cwe_ids"], json!([78]));
    assert_eq!(by_rule("py.style")["severity"], "low");
    assert_eq!(
        by_rule("py.sqli")["location"],
        json!({"uri": "src/app.py", "line": 10})
    );
    assert!(by_rule("py.rce")["sla_due_at"].is_string());

    // Filters.
    assert_eq!(
        findings(&app, &tenant.admin_key, "severity=critical,high")
            .await
            .len(),
        2
    );
    assert_eq!(
        findings(&app, &tenant.admin_key, "cwe=CWE-89").await.len(),
        1
    );
    assert_eq!(findings(&app, &tenant.admin_key, "q=rce").await.len(), 1);
    assert_eq!(
        findings(&app, &tenant.admin_key, "tool=other").await.len(),
        0
    );
}

#[tokio::test]
async fn full_scans_drive_the_lifecycle_and_triage_survives_rescans() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let three = [
        ("py.sqli", "error", 10),
        ("py.rce", "warning", 20),
        ("py.style", "note", 30),
    ];
    let first = ingest(&app, &tenant, REPO, SARIF, &sarif("semgrep", &three)).await;
    assert_eq!(counts(&first), (3, 3, 0, 0, 0));
    let before: Vec<Value> = findings(&app, &tenant.admin_key, "").await;

    // The same full scan again changes nothing but last_seen.
    let again = ingest(&app, &tenant, REPO, SARIF, &sarif("semgrep", &three)).await;
    assert_eq!(counts(&again), (3, 0, 0, 0, 3));
    let after: Vec<Value> = findings(&app, &tenant.admin_key, "").await;
    for finding in &before {
        let same = after
            .iter()
            .find(|f| f["id"] == finding["id"])
            .expect("same finding ids");
        assert_eq!(same["status"], "open");
        assert!(same["last_seen_at"].as_str() > finding["last_seen_at"].as_str());
        assert_eq!(same["first_seen_at"], finding["first_seen_at"]);
    }

    // One result removed: exactly that finding is resolved.
    let two = ingest(&app, &tenant, REPO, SARIF, &sarif("semgrep", &three[..2])).await;
    assert_eq!(counts(&two), (2, 0, 0, 1, 2));
    let resolved = findings(&app, &tenant.admin_key, "status=resolved").await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["rule_id"], "py.style");

    // Put back: reopened.
    let back = ingest(&app, &tenant, REPO, SARIF, &sarif("semgrep", &three)).await;
    assert_eq!(counts(&back), (3, 0, 1, 0, 2));
    let detail: Value = app
        .get(
            &format!("/v1/findings/{}", resolved[0]["id"].as_str().unwrap()),
            &tenant.admin_key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["status"], "reopened");
    let kinds: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "resolved", "reopened"]);

    // A false positive stays one whether the tool drops it or reports it again.
    let sqli = before.iter().find(|f| f["rule_id"] == "py.sqli").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let triaged = app
        .client
        .patch(format!("{}/v1/findings/{sqli}", app.address))
        .bearer_auth(&tenant.admin_key)
        .json(&json!({"status": "false_positive", "reason": "parameterized by the ORM"}))
        .send()
        .await
        .unwrap();
    assert_eq!(triaged.status(), 200);
    let without = ingest(&app, &tenant, REPO, SARIF, &sarif("semgrep", &three[1..])).await;
    assert_eq!(
        counts(&without).3,
        0,
        "a false positive is not resolved: {without}"
    );
    ingest(&app, &tenant, REPO, SARIF, &sarif("semgrep", &three)).await;
    let detail: Value = app
        .get(&format!("/v1/findings/{sqli}"), &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["status"], "false_positive");
    assert_eq!(detail["status_reason"], "parameterized by the ORM");
    assert!(detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "triaged"));

    // A partial scan never resolves anything.
    let partial = ingest(
        &app,
        &tenant,
        "asset_kind=repository&asset_name=github.com/acme/api&scope=partial",
        SARIF,
        &sarif("semgrep", &three[..1]),
    )
    .await;
    assert_eq!(counts(&partial).3, 0);
}

fn cyclonedx(tool: &str) -> Value {
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "metadata": {"tools": {"components": [{"type": "application", "name": tool, "version": "2.0"}]}},
        "components": [
            {"bom-ref": "pkg:pypi/django@2.2.0", "type": "library", "name": "django", "version": "2.2.0", "purl": "pkg:pypi/django@2.2.0"},
            {"bom-ref": "pkg:pypi/pyyaml@5.1", "type": "library", "name": "pyyaml", "version": "5.1", "purl": "pkg:pypi/pyyaml@5.1"}
        ],
        "vulnerabilities": [
            {"id": "CVE-2019-14234", "ratings": [{"severity": "critical"}], "cwes": [89],
             "description": "SQL injection in JSONField", "affects": [{"ref": "pkg:pypi/django@2.2.0"}]},
            {"id": "GHSA-6757-jp84-gxfx", "references": [{"id": "CVE-2020-1747"}], "ratings": [{"score": 9.8, "method": "CVSSv31"}],
             "description": "PyYAML full_load RCE", "affects": [{"ref": "pkg:pypi/pyyaml@5.1"}]}
        ]
    })
}

fn native(tool: &str, cve: &str, purl: &str) -> Value {
    json!({
        "format": "posture-native",
        "version": "1",
        "tool": {"name": tool, "version": "0.9"},
        "findings": [{
            "rule_id": cve,
            "title": "SQL injection in JSONField",
            "severity": "critical",
            "cwe": [89],
            "vulnerability_ids": [cve],
            "package": {"purl": purl, "name": "django", "version": "2.2.0"}
        }]
    })
}

#[tokio::test]
async fn the_same_vulnerability_from_two_scanners_is_one_finding() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let image = "asset_kind=container_image&asset_name=registry.acme.io/api:1.0&scope=full";
    let cdx = ingest(&app, &tenant, image, CYCLONEDX, &cyclonedx("pip-audit")).await;
    assert_eq!(cdx["status"], "succeeded", "{cdx}");
    assert_eq!(counts(&cdx), (2, 2, 0, 0, 0));
    let all = findings(&app, &tenant.admin_key, "").await;
    let yaml = all
        .iter()
        .find(|f| f["package"]["name"] == "pyyaml")
        .expect("pyyaml finding");
    assert_eq!(yaml["severity"], "critical", "score 9.8 maps to critical");
    assert!(yaml["vulnerability_ids"]
        .as_array()
        .unwrap()
        .contains(&json!("CVE-2020-1747")));
    // The filter by vulnerability id (any case) finds it and only it.
    let by_cve = findings(&app, &tenant.admin_key, "cve=cve-2020-1747").await;
    assert_eq!(by_cve.len(), 1);
    assert_eq!(by_cve[0]["package"]["name"], "pyyaml");

    // Another tool (native format, detected from plain JSON) reports the Django CVE.
    let other = ingest(
        &app,
        &tenant,
        image,
        "application/json",
        &native("trivy", "CVE-2019-14234", "pkg:pypi/django@2.2.0"),
    )
    .await;
    assert_eq!(other["format"], "native");
    assert_eq!(
        counts(&other),
        (1, 0, 0, 0, 1),
        "de-duplicated across tools: {other}"
    );
    assert_eq!(
        findings(&app, &tenant.admin_key, "cve=CVE-2019-14234")
            .await
            .len(),
        1
    );

    // pip-audit stops reporting it, trivy still does: it stays open.
    let mut only_yaml = cyclonedx("pip-audit");
    only_yaml["vulnerabilities"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let rescan = ingest(&app, &tenant, image, CYCLONEDX, &only_yaml).await;
    assert_eq!(
        counts(&rescan).3,
        0,
        "still reported by another tool: {rescan}"
    );
    // trivy's full scan without it: now no tool reports it, so it is resolved.
    let mut empty = native("trivy", "CVE-2019-14234", "pkg:pypi/django@2.2.0");
    empty["findings"] = json!([]);
    let trivy = ingest(&app, &tenant, image, NATIVE, &empty).await;
    assert_eq!(counts(&trivy), (0, 0, 0, 1, 0));
}

#[tokio::test]
async fn bad_reports_are_4xx_problems_that_say_where() {
    let app = TestApp::spawn_with(|config| config.scan_max_bytes_free = 64 * 1024).await;
    let tenant = app.create_tenant(Tier::Free).await;
    let key = &tenant.admin_key;
    let valid = serde_json::to_vec(&sarif("semgrep", &[("py.sqli", "error", 1)])).unwrap();

    let malformed = assert_problem(
        submit(
            &app,
            key,
            REPO,
            SARIF,
            b"{\"version\": \"2.1.0\", ".to_vec(),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(malformed["report_error"], "malformed");

    let invalid_utf8 = assert_problem(
        submit(
            &app,
            key,
            REPO,
            SARIF,
            b"{\"version\": \"\xff\xfe\"}".to_vec(),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(invalid_utf8["report_error"], "invalid_utf8");

    let not_sarif = serde_json::to_vec(&cyclonedx("x")).unwrap();
    let wrong = assert_problem(submit(&app, key, REPO, SARIF, not_sarif).await, 422).await;
    assert_eq!(wrong["report_error"], "wrong_format");

    let mut v3 = sarif("semgrep", &[("py.sqli", "error", 1)]);
    v3["version"] = json!("3.0.0");
    let version = assert_problem(
        submit(&app, key, REPO, SARIF, serde_json::to_vec(&v3).unwrap()).await,
        422,
    )
    .await;
    assert_eq!(version["report_error"], "unsupported_version");
    assert_eq!(version["errors"][0]["pointer"], "/version");

    let mut bad_level = sarif(
        "semgrep",
        &[("py.sqli", "error", 1), ("py.rce", "severe", 2)],
    );
    bad_level["runs"][0]["results"][1]["level"] = json!("severe");
    let level = assert_problem(
        submit(
            &app,
            key,
            REPO,
            SARIF,
            serde_json::to_vec(&bad_level).unwrap(),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(
        level["errors"][0]["pointer"], "/runs/0/results/1/level",
        "{level}"
    );

    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let nested = submit(&app, key, REPO, "application/json", deep.into_bytes()).await;
    assert!(nested.status().is_client_error(), "{}", nested.status());
    assert_problem(nested, 422).await;

    let unknown = assert_problem(
        submit(
            &app,
            key,
            REPO,
            "application/json",
            b"{\"hello\": 1}".to_vec(),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(unknown["report_error"], "wrong_format");

    assert_problem(
        submit(&app, key, REPO, "text/csv", valid.clone()).await,
        415,
    )
    .await;
    let huge = vec![b' '; 65 * 1024];
    assert_problem(submit(&app, key, REPO, SARIF, huge).await, 413).await;
    let missing_asset = assert_problem(
        submit(&app, key, "scope=full", SARIF, valid.clone()).await,
        422,
    )
    .await;
    assert_eq!(missing_asset["errors"][0]["parameter"], "asset");
    assert_problem(
        submit(
            &app,
            key,
            &format!("{REPO}&asset_kind=vm"),
            SARIF,
            valid.clone(),
        )
        .await,
        422,
    )
    .await;
    let scope = assert_problem(
        submit(
            &app,
            key,
            "asset_kind=host&asset_name=db1&scope=everything",
            SARIF,
            valid.clone(),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(scope["errors"][0]["parameter"], "scope");

    // A read-only key cannot submit.
    let reader = app.issue_key(tenant.id, &["read"]).await;
    assert_problem(submit(&app, &reader, REPO, SARIF, valid).await, 403).await;

    // Nothing was accepted.
    let scans: Value = app.get("/v1/scans", key).await.json().await.unwrap();
    assert_eq!(scans["data"].as_array().unwrap().len(), 0, "{scans}");
}

#[tokio::test]
async fn an_expired_risk_acceptance_reopens_without_a_rescan() {
    let app = TestApp::spawn_with(|config| config.maintenance_interval_secs = 1).await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    ingest(
        &app,
        &tenant,
        REPO,
        SARIF,
        &sarif("semgrep", &[("py.sqli", "error", 10)]),
    )
    .await;
    let finding = findings(&app, &tenant.admin_key, "").await.remove(0);
    let id = finding["id"].as_str().unwrap();
    let until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let accepted = app
        .client
        .patch(format!("{}/v1/findings/{id}", app.address))
        .bearer_auth(&tenant.admin_key)
        .json(&json!({"status": "accepted_risk", "reason": "compensating WAF rule", "accepted_until": until}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    let body: Value = accepted.json().await.unwrap();
    assert_eq!(body["status"], "accepted_risk");

    // Time passes (the acceptance is moved into the past, as the owner).
    let mut owner = sqlx::PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE findings SET accepted_until = now() - interval '1 minute' WHERE tenant_id = $1",
    )
    .bind(tenant.id.as_uuid())
    .execute(&mut owner)
    .await
    .unwrap();

    // The workers' upkeep reopens it, with the reason in its history.
    let started = Instant::now();
    let detail = loop {
        let detail: Value = app
            .get(&format!("/v1/findings/{id}"), &tenant.admin_key)
            .await
            .json()
            .await
            .unwrap();
        if detail["status"] == "reopened" {
            break detail;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not reopened: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(detail["accepted_until"].is_null());
    let last = detail["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "risk_expired", "{detail}");
    assert_eq!(last["to_status"], "reopened");
}

#[tokio::test]
async fn triage_validates_its_decision() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    ingest(
        &app,
        &tenant,
        REPO,
        SARIF,
        &sarif("semgrep", &[("py.sqli", "error", 10)]),
    )
    .await;
    let id = findings(&app, &tenant.admin_key, "").await.remove(0)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = |body: Value| {
        let request = app
            .client
            .patch(format!("{}/v1/findings/{id}", app.address))
            .bearer_auth(&tenant.admin_key)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let past = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    for (body, pointer) in [
        (json!({"status": "fixed"}), "/status"),
        (json!({"status": "false_positive"}), "/reason"),
        (
            json!({"status": "accepted_risk", "reason": "x"}),
            "/accepted_until",
        ),
        (
            json!({"status": "accepted_risk", "reason": "x", "accepted_until": past}),
            "/accepted_until",
        ),
        (
            json!({"status": "open", "accepted_until": past}),
            "/accepted_until",
        ),
    ] {
        let problem = assert_problem(patch(body.clone()).await, 422).await;
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert!(pointers.contains(&pointer), "{body}: {problem}");
    }
    let bulk = app
        .post_json(
            "/v1/findings/triage",
            &tenant.admin_key,
            &json!({"ids": [], "status": "open"}),
        )
        .await;
    assert_problem(bulk, 422).await;
    let bulk = app
        .post_json(
            "/v1/findings/triage",
            &tenant.admin_key,
            &json!({"ids": ["fnd_nope"], "status": "open"}),
        )
        .await;
    assert_eq!(
        assert_problem(bulk, 422).await["errors"][0]["pointer"],
        "/ids/0"
    );
    let reader = app.issue_key(tenant.id, &["read"]).await;
    let denied = app
        .client
        .patch(format!("{}/v1/findings/{id}", app.address))
        .bearer_auth(&reader)
        .json(&json!({"status": "false_positive", "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(denied, 403).await;
}

#[tokio::test]
async fn lifecycle_edge_cases_tool_names_nul_bytes_orphans_and_severity_changes() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let key = &tenant.admin_key;

    // A NUL in a message cannot be stored; it is dropped, and the scan succeeds.
    let mut with_nul = sarif(
        "Semgrep",
        &[("py.sqli", "error", 10), ("py.rce", "warning", 20)],
    );
    with_nul["runs"][0]["results"][0]["message"]["text"] = json!("bad\u{0}title");
    let first = ingest(&app, &tenant, REPO, SARIF, &with_nul).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let titles: Vec<String> = findings(&app, key, "")
        .await
        .iter()
        .map(|f| f["title"].as_str().unwrap().to_owned())
        .collect();
    assert!(titles.contains(&"badtitle".to_owned()), "{titles:?}");

    // The same tool spelled differently is the same tool: its full scan resolves
    // what it no longer reports, and the filter finds its findings either way.
    let second = ingest(
        &app,
        &tenant,
        REPO,
        SARIF,
        &sarif("semgrep", &[("py.sqli", "error", 10)]),
    )
    .await;
    assert_eq!(counts(&second), (1, 0, 0, 1, 1), "{second}");
    assert_eq!(
        findings(&app, key, "tool=SEMGREP&status=open").await.len(),
        1
    );

    // Reopening by triage a finding no tool reports any more: the next full scan
    // resolves it again instead of leaving it open for ever.
    let orphan = findings(&app, key, "status=resolved").await.remove(0);
    let id = orphan["id"].as_str().unwrap();
    let reopened = app
        .client
        .patch(format!("{}/v1/findings/{id}", app.address))
        .bearer_auth(key)
        .json(&json!({"status": "open", "reason": "double-checking"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reopened.status(), 200);
    let third = ingest(
        &app,
        &tenant,
        REPO,
        SARIF,
        &sarif("semgrep", &[("py.sqli", "error", 10)]),
    )
    .await;
    assert_eq!(counts(&third).3, 1, "the orphan is resolved again: {third}");

    // A severity change moves the SLA due date to the new severity's.
    let mut critical = sarif("semgrep", &[("py.sqli", "error", 10)]);
    critical["runs"][0]["results"][0]["properties"] = json!({"security-severity": "9.5"});
    ingest(&app, &tenant, REPO, SARIF, &critical).await;
    let sqli = findings(&app, key, "q=py.sqli&status=open").await.remove(0);
    assert_eq!(sqli["severity"], "critical");
    let first_seen: chrono::DateTime<chrono::Utc> =
        sqli["first_seen_at"].as_str().unwrap().parse().unwrap();
    let due: chrono::DateTime<chrono::Utc> = sqli["sla_due_at"].as_str().unwrap().parse().unwrap();
    assert_eq!((due - first_seen).num_days(), 7, "{sqli}");
}
