//! `GET /v1/posture`: the score with its working, per tenant.

use crate::support::{TestApp, TestTenant};
use posture_domain::Tier;
use serde_json::{json, Value};

async fn scan(app: &TestApp, tenant: &TestTenant, results: &[(&str, &str, u32)]) {
    let results: Vec<Value> = results
        .iter()
        .map(|(rule, level, line)| {
            json!({"ruleId": rule, "level": level, "message": {"text": rule},
                   "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a.py"}, "region": {"startLine": line}}}]})
        })
        .collect();
    let report = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": results}]});
    let scan = app
        .ingest_sarif(
            &tenant.admin_key,
            "asset_kind=repository&asset_name=acme/api&scope=full",
            &report,
        )
        .await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    app.wait_for_posture(tenant.id).await;
}

#[tokio::test]
async fn the_score_follows_open_findings_and_shows_its_working() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant(Tier::Premium).await;
    let b = app.create_tenant(Tier::Premium).await;
    let reader = app.issue_key(a.id, &["read"]).await;

    let clean: Value = app.get("/v1/posture", &reader).await.json().await.unwrap();
    assert_eq!(
        (clean["score"].as_u64(), clean["grade"].as_str()),
        (Some(100), Some("A")),
        "{clean}"
    );
    assert_eq!(clean["factors"].as_array().unwrap().len(), 5);

    scan(
        &app,
        &a,
        &[
            ("sqli", "error", 1),
            ("xss", "warning", 2),
            ("style", "note", 3),
        ],
    )
    .await;
    let posture: Value = app.get("/v1/posture", &reader).await.json().await.unwrap();
    let score = posture["score"].as_u64().unwrap();
    assert!(score < 100, "{posture}");
    assert_eq!(
        posture["open_by_severity"],
        json!({"high": 1, "low": 1, "medium": 1})
    );
    assert_eq!(posture["by_status"], json!({"open": 3}));
    let top = posture["top_findings"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert_eq!(top[0]["severity"], "high", "the costliest first: {posture}");
    let lost: f64 = posture["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["points_lost"].as_f64().unwrap())
        .sum();
    assert!(
        (100.0 - lost - score as f64).abs() < 1.0,
        "factors explain the score: {posture}"
    );

    // Triaging the costliest as a false positive never lowers the score.
    let id = top[0]["id"].as_str().unwrap();
    let patched = app
        .client
        .patch(format!("{}/v1/findings/{id}", app.address))
        .bearer_auth(&a.admin_key)
        .json(&json!({"status": "false_positive", "reason": "test fixture"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    app.wait_for_posture(a.id).await;
    let after: Value = app.get("/v1/posture", &reader).await.json().await.unwrap();
    assert!(after["score"].as_u64().unwrap() > score, "{after}");
    assert_eq!(after["by_status"], json!({"open": 2, "false_positive": 1}));

    // Another tenant's findings are not its own.
    let other: Value = app
        .get("/v1/posture", &b.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["score"], 100, "{other}");
    assert_eq!(other["top_findings"], json!([]));
}
