//! `/v1/webhooks`: registering endpoints, the secret shown once and rotated
//! with an overlap, validation with pointers, and SSRF protection at
//! registration (docs/webhooks.md).

use crate::support::{assert_problem, TestApp, TestTenant};
use posture::config::Config;
use posture_domain::webhook::WebhookSecret;
use posture_domain::Tier;
use serde_json::{json, Value};

/// Host names the tests resolve without DNS (`webhook_resolve`).
const RESOLVE: &str = "hooks.example.test=93.184.216.34, loop.test=127.0.0.1, \
     internal.test=10.0.0.1, metadata.test=169.254.169.254, loop6.test=::1, \
     mapped.test=::ffff:10.0.0.1, mixed.test=93.184.216.34, mixed.test=192.168.1.1";

fn resolving(config: &mut Config) {
    config.webhook_resolve = RESOLVE.into();
}

async fn spawn() -> (TestApp, TestTenant) {
    let app = TestApp::spawn_with(resolving).await;
    let tenant = app.create_tenant(Tier::Basic).await;
    (app, tenant)
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method.parse().unwrap(), format!("{}{path}", app.address))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

fn endpoint(url: &str) -> Value {
    json!({"url": url, "event_types": ["scan.completed", "finding.created"]})
}

#[tokio::test]
async fn an_endpoint_is_created_read_changed_and_deleted_and_its_secret_shown_once() {
    let (app, tenant) = spawn().await;
    let key = &tenant.admin_key;
    let created = send(
        &app,
        "POST",
        "/v1/webhooks",
        key,
        Some(&json!({
            "url": "https://hooks.example.test/posture",
            "event_types": ["scan.completed", "finding.created"],
            "description": "  Security channel  ",
        })),
    )
    .await;
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = created.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("whk_"));
    assert_eq!(location, format!("/v1/webhooks/{id}"));
    let secret = body["secret"].as_str().unwrap();
    assert!(WebhookSecret::parse(secret).is_ok(), "{secret}");
    assert_eq!(body["description"], "Security channel");
    assert_eq!(body["min_severity"], "high");
    assert_eq!(body["score_threshold"], 5);
    assert_eq!(body["enabled"], true);
    assert_eq!(body["disabled_reason"], Value::Null);

    // Never again: not in a read, not in the list.
    let read: Value = send(&app, "GET", &location, key, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(read.get("secret").is_none(), "{read}");
    assert_eq!(
        read["event_types"],
        json!(["scan.completed", "finding.created"])
    );
    let list: Value = send(&app, "GET", "/v1/webhooks", key, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0].get("secret").is_none());

    let changed = send(
        &app,
        "PATCH",
        &location,
        key,
        Some(&json!({
            "event_types": ["posture.score_changed"],
            "description": "",
            "score_threshold": 10,
            "enabled": false,
        })),
    )
    .await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["event_types"], json!(["posture.score_changed"]));
    assert_eq!(changed["description"], Value::Null);
    assert_eq!(changed["score_threshold"], 10);
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["url"], "https://hooks.example.test/posture", "kept");

    assert_eq!(
        send(&app, "DELETE", &location, key, None).await.status(),
        204
    );
    assert_eq!(send(&app, "GET", &location, key, None).await.status(), 404);
    assert_eq!(
        send(&app, "DELETE", &location, key, None).await.status(),
        404
    );
}

#[tokio::test]
async fn rotating_the_secret_keeps_the_old_one_signing_for_the_overlap() {
    let (app, tenant) = spawn().await;
    let key = &tenant.admin_key;
    let created: Value = send(
        &app,
        "POST",
        "/v1/webhooks",
        key,
        Some(&endpoint("https://hooks.example.test/h")),
    )
    .await
    .json()
    .await
    .unwrap();
    let path = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());
    let first = created["secret"].as_str().unwrap().to_owned();

    let rotated = send(
        &app,
        "POST",
        &format!("{path}/rotate-secret"),
        key,
        Some(&json!({"overlap_seconds": 3600})),
    )
    .await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let until: chrono::DateTime<chrono::Utc> = rotated["previous_secret_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let in_an_hour = chrono::Utc::now() + chrono::Duration::seconds(3600);
    assert!((until - in_an_hour).num_seconds().abs() < 60, "{until}");
    let stored: (String, Option<String>) =
        sqlx::query_as("SELECT secret, previous_secret FROM webhooks WHERE tenant_id = $1")
            .bind(tenant.id.as_uuid())
            .fetch_one(app.owner.pool())
            .await
            .unwrap();
    assert_eq!(stored, (second.clone(), Some(first)));

    // No overlap: the old secret stops at once.
    let immediate: Value = send(
        &app,
        "POST",
        &format!("{path}/rotate-secret"),
        key,
        Some(&json!({"overlap_seconds": 0})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(immediate["previous_secret_expires_at"], Value::Null);
    assert_ne!(immediate["secret"].as_str().unwrap(), second);

    let problem = assert_problem(
        send(
            &app,
            "POST",
            &format!("{path}/rotate-secret"),
            key,
            Some(&json!({"overlap_seconds": 700000})),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/overlap_seconds");
}

#[tokio::test]
async fn invalid_fields_are_all_reported_with_pointers() {
    let (app, tenant) = spawn().await;
    let problem = assert_problem(
        send(
            &app,
            "POST",
            "/v1/webhooks",
            &tenant.admin_key,
            Some(&json!({
                "url": "http://hooks.example.test/h",
                "event_types": ["scan.completed", "scan.exploded", "scan.completed"],
                "description": "x".repeat(501),
                "min_severity": "dire",
                "score_threshold": 0,
            })),
        )
        .await,
        422,
    )
    .await;
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        [
            "/url",
            "/event_types/1",
            "/event_types/2",
            "/description",
            "/min_severity",
            "/score_threshold"
        ],
        "{problem}"
    );
    assert!(problem["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("https"));
    let empty = assert_problem(
        send(
            &app,
            "POST",
            "/v1/webhooks",
            &tenant.admin_key,
            Some(&json!({"url": "https://hooks.example.test/h", "event_types": []})),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(empty["errors"][0]["pointer"], "/event_types");
    // Nothing was created.
    let list: Value = send(&app, "GET", "/v1/webhooks", &tenant.admin_key, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn urls_reaching_internal_addresses_are_refused_at_registration() {
    let (app, tenant) = spawn().await;
    let key = &tenant.admin_key;
    for (url, expected) in [
        ("https://loop.test/h", "127.0.0.1"),
        ("https://internal.test/h", "10.0.0.1"),
        ("https://metadata.test/latest/meta-data", "169.254.169.254"),
        ("https://loop6.test/h", "::1"),
        ("https://mapped.test/h", "::ffff:10.0.0.1"),
        // One public and one private answer: refused.
        ("https://mixed.test/h", "192.168.1.1"),
        // Real DNS.
        ("https://localhost/h", ""),
    ] {
        let problem = assert_problem(
            send(&app, "POST", "/v1/webhooks", key, Some(&endpoint(url))).await,
            422,
        )
        .await;
        assert_eq!(problem["errors"][0]["pointer"], "/url", "{url}: {problem}");
        let detail = problem["errors"][0]["detail"].as_str().unwrap();
        assert!(
            detail.contains("not public") && detail.contains(expected),
            "{url}: {detail}"
        );
    }
    for url in [
        "https://127.0.0.1/h",
        "https://[::1]/h",
        "https://[::ffff:10.0.0.1]/h",
        "https://2130706433/h",
    ] {
        let problem = assert_problem(
            send(&app, "POST", "/v1/webhooks", key, Some(&endpoint(url))).await,
            422,
        )
        .await;
        assert!(
            problem["errors"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("IP address"),
            "{url}: {problem}"
        );
    }
    // Changing a good endpoint to a bad URL is refused the same way.
    let created: Value = send(
        &app,
        "POST",
        "/v1/webhooks",
        key,
        Some(&endpoint("https://hooks.example.test/h")),
    )
    .await
    .json()
    .await
    .unwrap();
    let path = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());
    let problem = assert_problem(
        send(
            &app,
            "PATCH",
            &path,
            key,
            Some(&json!({"url": "https://internal.test/h"})),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/url");
    let unchanged: Value = send(&app, "GET", &path, key, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged["url"], "https://hooks.example.test/h");
}

#[tokio::test]
async fn the_allowlist_and_http_are_configuration_only() {
    let app = TestApp::spawn_with(|config| {
        resolving(config);
        config.webhook_allowed_hosts = "loop.test".into();
        config.webhook_allow_http = true;
    })
    .await;
    let tenant = app.create_tenant(Tier::Free).await;
    let created = send(
        &app,
        "POST",
        "/v1/webhooks",
        &tenant.admin_key,
        Some(&endpoint("http://loop.test:8080/h")),
    )
    .await;
    assert_eq!(created.status(), 201);
    // Other internal hosts stay refused.
    assert_problem(
        send(
            &app,
            "POST",
            "/v1/webhooks",
            &tenant.admin_key,
            Some(&endpoint("http://internal.test/h")),
        )
        .await,
        422,
    )
    .await;
}

#[tokio::test]
async fn webhooks_need_the_admin_scope_and_are_capped_at_twenty() {
    let (app, tenant) = spawn().await;
    let writer = app.issue_key(tenant.id, &["read", "write"]).await;
    assert_problem(
        send(
            &app,
            "POST",
            "/v1/webhooks",
            &writer,
            Some(&endpoint("https://hooks.example.test/h")),
        )
        .await,
        403,
    )
    .await;
    assert_problem(send(&app, "GET", "/v1/webhooks", &writer, None).await, 403).await;
    for number in 0..20 {
        let created = send(
            &app,
            "POST",
            "/v1/webhooks",
            &tenant.admin_key,
            Some(&endpoint(&format!("https://hooks.example.test/{number}"))),
        )
        .await;
        assert_eq!(created.status(), 201);
    }
    let problem = assert_problem(
        send(
            &app,
            "POST",
            "/v1/webhooks",
            &tenant.admin_key,
            Some(&endpoint("https://hooks.example.test/21")),
        )
        .await,
        409,
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("20"));
}
