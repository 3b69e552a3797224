//! `/v1/settings`: SLA days by severity, and their effect on findings' due dates.

use crate::support::{assert_problem, TestApp};
use chrono::{DateTime, Utc};
use posture_domain::Tier;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn sla_days_default_change_and_move_due_dates() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let key = &tenant.admin_key;
    let settings: Value = app.get("/v1/settings", key).await.json().await.unwrap();
    assert_eq!(
        settings["sla_days"],
        json!({"critical": 7, "high": 30, "medium": 90, "low": 180})
    );

    // One high finding, due 30 days after it was first seen.
    let report = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": [
        {"ruleId": "r", "level": "error", "message": {"text": "m"},
         "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a"}, "region": {"startLine": 1}}}]}]}]});
    let submitted = app
        .client
        .post(format!(
            "{}/v1/scans?asset_kind=host&asset_name=h1&scope=full",
            app.address
        ))
        .bearer_auth(key)
        .header("content-type", "application/sarif+json")
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 202);
    let started = Instant::now();
    let finding = loop {
        let page: Value = app.get("/v1/findings", key).await.json().await.unwrap();
        if let Some(finding) = page["data"].as_array().unwrap().first() {
            break finding.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no finding yet"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let days_due = |finding: &Value| {
        let first: DateTime<Utc> = finding["first_seen_at"].as_str().unwrap().parse().unwrap();
        let due: DateTime<Utc> = finding["sla_due_at"].as_str().unwrap().parse().unwrap();
        (due - first).num_days()
    };
    assert_eq!(days_due(&finding), 30);

    let changed = app
        .client
        .patch(format!("{}/v1/settings", app.address))
        .bearer_auth(key)
        .json(&json!({"sla_days": {"high": 10}}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(
        changed["sla_days"],
        json!({"critical": 7, "high": 10, "medium": 90, "low": 180})
    );
    let finding: Value = app
        .get(
            &format!("/v1/findings/{}", finding["id"].as_str().unwrap()),
            key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(days_due(&finding), 10, "due dates follow the policy");

    // Bounds, unknown members and scopes.
    for (body, pointer) in [
        (json!({"sla_days": {"critical": 0}}), "/sla_days/critical"),
        (json!({"sla_days": {"low": 4000}}), "/sla_days/low"),
        (json!({"sla_days": {"urgent": 1}}), "/sla_days"),
    ] {
        let response = app
            .client
            .patch(format!("{}/v1/settings", app.address))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422).await;
        assert!(
            problem["errors"][0]["pointer"]
                .as_str()
                .unwrap()
                .starts_with(pointer),
            "{body}: {problem}"
        );
    }
    let reader = app.issue_key(tenant.id, &["write"]).await;
    let denied = app
        .client
        .patch(format!("{}/v1/settings", app.address))
        .bearer_auth(&reader)
        .json(&json!({"sla_days": {"high": 5}}))
        .send()
        .await
        .unwrap();
    assert_problem(denied, 403).await;
}
