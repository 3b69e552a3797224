//! Health, readiness, metrics, the OpenAPI document and graceful shutdown.

use crate::support::database::TestDatabase;
use crate::support::proxy::DbProxy;
use crate::support::{assert_problem, test_config, TestApp};
use posture_domain::Tier;
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test]
async fn live_and_ready_report_the_pool() {
    let app = TestApp::spawn_with(|config| config.db_pool_min = 3).await;
    let live = app
        .client
        .get(format!("{}/health/live", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["database"]["status"], "up");
    assert!(body["database"]["latency_ms"].as_f64().unwrap() >= 0.0);
    for field in ["size", "idle", "in_use", "waiting", "max"] {
        assert!(body["pool"][field].is_u64(), "pool.{field} missing: {body}");
    }
    assert_eq!(body["pool"]["max"], 4);
    // The pool opened its minimum at start-up, not on demand.
    assert!(body["pool"]["size"].as_u64().unwrap() >= 3, "{body}");
}

#[tokio::test]
async fn readiness_is_503_while_the_database_is_down_and_recovers_within_5_s() {
    let database = TestDatabase::create().await;
    let mut config = test_config(&database);
    let proxy = DbProxy::in_front_of(&database, &mut config).await;
    let app = TestApp::spawn_on(database, config).await;
    let ready = || async {
        app.client
            .get(format!("{}/health/ready", app.address))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(ready().await.status(), 200);

    proxy.stop();
    let body = assert_problem(ready().await, 503).await;
    assert_eq!(body["type"], "/problems/not-ready");
    assert_eq!(body["database"]["status"], "down");
    assert!(body["pool"]["max"].is_u64());

    proxy.resume().await;
    let returned = Instant::now();
    loop {
        if ready().await.status() == 200 {
            break;
        }
        assert!(
            returned.elapsed() < Duration::from_secs(5),
            "still not ready 5 s after the database returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_show_the_pool() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    for _ in 0..3 {
        assert_eq!(app.get("/v1/org", &tenant.admin_key).await.status(), 200);
    }
    assert_eq!(app.get("/v1/org", "sp_live_nope").await.status(), 401);
    assert_eq!(app.get("/no/such/path", "x").await.status(), 404);
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"posture_http_requests_total{method="GET",route="/v1/org",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"posture_http_requests_total{method="GET",route="/v1/org",status="401"} 1"#
        ),
        "{text}"
    );
    // Unmatched paths share one label value, so scanners cannot blow up the series count.
    assert!(
        text.contains(r#"route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"posture_http_request_duration_seconds_bucket{method="GET",route="/v1/org",status="200",le="+Inf"} 3"#));
    for gauge in [
        "posture_db_pool_connections",
        "posture_db_pool_idle",
        "posture_db_pool_in_use",
        "posture_db_pool_waiting",
        "posture_db_pool_max 4",
    ] {
        assert!(text.contains(gauge), "{gauge} missing");
    }
}

/// The OpenAPI document is part of the contract: a change shows in the diff of
/// `docs/openapi.json`. Regenerate with `UPDATE_SNAPSHOTS=1`.
#[tokio::test]
async fn openapi_document_matches_the_committed_snapshot() {
    let app = TestApp::spawn().await;
    let served: Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rendered = serde_json::to_string_pretty(&served).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/openapi.json is out of date; run the tests with UPDATE_SNAPSHOTS=1 and review the diff"
    );
    for route in [
        "/v1/org",
        "/v1/api-keys",
        "/v1/api-keys/{id}",
        "/health/ready",
    ] {
        assert!(
            served["paths"][route].is_object(),
            "{route} missing from the OpenAPI document"
        );
    }
    let docs = app
        .client
        .get(format!("{}/docs/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger-ui"));
}

#[tokio::test]
async fn graceful_shutdown_stops_accepting_and_returns_cleanly() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    assert_eq!(app.get("/v1/org", &tenant.admin_key).await.status(), 200);
    let address = app.address.clone();
    app.stop().await;
    let after = reqwest::Client::new()
        .get(format!("{address}/health/live"))
        .send()
        .await;
    assert!(after.is_err(), "the server still answered after shutdown");
}
