//! `Idempotency-Key` on POSTs: replays, key reuse, keys in flight (held
//! deterministically by a row lock the test owns), tenant and route scoping,
//! expiry, take-over of a dead request's lock, and release after a timeout.

use crate::support::{assert_problem, TestApp, TestTenant};
use posture::http::idempotency::fingerprint;
use posture::store::{idempotency, PoolSettings, Store};
use posture_domain::{TenantId, Tier};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use std::future::Future;
use std::time::{Duration, Instant};

const SARIF: &str = "application/sarif+json";
const SCAN_QUERY: &str = "asset_kind=repository&asset_name=github.com/acme/api&scope=full";

/// `POST path` with a JSON body and, if given, an `Idempotency-Key`.
async fn post(
    app: &TestApp,
    path: &str,
    key: &str,
    idempotency_key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(key)
        .json(body);
    if let Some(idempotency_key) = idempotency_key {
        request = request.header("idempotency-key", idempotency_key);
    }
    request.send().await.expect("request")
}

/// Submits a SARIF report with an `Idempotency-Key`.
async fn submit_scan(
    app: &TestApp,
    key: &str,
    idempotency_key: &str,
    report: &Value,
) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/scans?{SCAN_QUERY}", app.address))
        .bearer_auth(key)
        .header("content-type", SARIF)
        .header("idempotency-key", idempotency_key)
        .body(serde_json::to_vec(report).unwrap())
        .send()
        .await
        .expect("request")
}

fn sarif(rules: &[&str]) -> Value {
    json!({
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "semgrep", "version": "1.0.0"}},
            "results": rules.iter().enumerate().map(|(line, rule)| json!({
                "ruleId": rule,
                "level": "error",
                "message": {"text": format!("{rule} found")},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": "src/app.py"},
                    "region": {"startLine": line + 1}
                }}]
            })).collect::<Vec<_>>()
        }]
    })
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

fn replayed(response: &reqwest::Response) -> bool {
    header(response, "idempotent-replayed") == Some("true")
}

async fn owner_connection(app: &TestApp) -> PgConnection {
    PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap()
}

/// The stored state of `key` for `tenant`: (status, lock still held).
async fn key_row(app: &TestApp, tenant: TenantId, key: &str) -> Option<(String, bool)> {
    let mut owner = owner_connection(app).await;
    sqlx::query_as(
        "SELECT status, coalesce(locked_until > now(), false) FROM idempotency_keys
         WHERE tenant_id = $1 AND key = $2",
    )
    .bind(tenant.as_uuid())
    .bind(key)
    .fetch_optional(&mut owner)
    .await
    .unwrap()
}

/// Polls `condition` every 20 ms until it holds; fails after 10 s.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Holds an uncommitted asset `host`/`name` of `tenant` on an owner connection,
/// so an API request creating the same asset blocks on the unique index until
/// the returned transaction ends: a request held in flight, without sleeps.
async fn block_asset_name<'c>(
    owner: &'c mut PgConnection,
    tenant: &TestTenant,
    name: &str,
) -> sqlx::Transaction<'c, sqlx::Postgres> {
    let mut tx = owner.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO assets (tenant_id, id, kind, name) VALUES ($1, gen_random_uuid(), 'host', $2)",
    )
    .bind(tenant.id.as_uuid())
    .bind(name)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx
}

/// Starts `POST /v1/assets` creating host `name` with `idempotency_key` in the background.
fn spawn_asset_create(
    app: &TestApp,
    tenant: &TestTenant,
    idempotency_key: &str,
    name: &str,
) -> tokio::task::JoinHandle<reqwest::Response> {
    let request = app
        .client
        .post(format!("{}/v1/assets", app.address))
        .bearer_auth(&tenant.admin_key)
        .header("idempotency-key", idempotency_key)
        .json(&json!({"kind": "host", "name": name}));
    tokio::spawn(async move { request.send().await.expect("request") })
}

async fn asset_count(app: &TestApp, key: &str) -> usize {
    let page: Value = app
        .get("/v1/assets?limit=100", key)
        .await
        .json()
        .await
        .unwrap();
    page["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_retried_scan_submission_replays_the_first_response_and_creates_one_scan() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let report = sarif(&["py.sqli", "py.rce"]);

    let first = submit_scan(&app, &tenant.admin_key, "scan-0001", &report).await;
    assert_eq!(first.status(), 202);
    assert!(!replayed(&first));
    let location = header(&first, "location").unwrap().to_owned();
    let content_type = header(&first, "content-type").unwrap().to_owned();
    let first_body = first.bytes().await.unwrap();

    let again = submit_scan(&app, &tenant.admin_key, "scan-0001", &report).await;
    assert_eq!(again.status(), 202);
    assert!(replayed(&again), "a replay says so");
    assert_eq!(header(&again, "location"), Some(location.as_str()));
    assert_eq!(header(&again, "content-type"), Some(content_type.as_str()));
    assert_eq!(
        again.bytes().await.unwrap(),
        first_body,
        "the very same body"
    );
    let scan: Value = serde_json::from_slice(&first_body).unwrap();
    assert_eq!(
        location,
        format!("/v1/scans/{}", scan["id"].as_str().unwrap())
    );

    let scans: Value = app
        .get("/v1/scans", &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        scans["data"].as_array().unwrap().len(),
        1,
        "one scan: {scans}"
    );
    assert_eq!(
        key_row(&app, tenant.id, "scan-0001").await,
        Some(("completed".to_owned(), false))
    );
}

#[tokio::test]
async fn the_same_key_for_another_body_or_query_is_422_and_the_first_stays_replayable() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let first = submit_scan(&app, &tenant.admin_key, "k-1", &sarif(&["py.sqli"])).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();

    let other_body = submit_scan(&app, &tenant.admin_key, "k-1", &sarif(&["py.rce"])).await;
    let problem = assert_problem(other_body, 422).await;
    assert_eq!(
        problem["type"], "/problems/idempotency-key-reused",
        "{problem}"
    );

    let other_query = app
        .client
        .post(format!(
            "{}/v1/scans?{SCAN_QUERY}&tool_version=2",
            app.address
        ))
        .bearer_auth(&tenant.admin_key)
        .header("content-type", SARIF)
        .header("idempotency-key", "k-1")
        .body(serde_json::to_vec(&sarif(&["py.sqli"])).unwrap())
        .send()
        .await
        .unwrap();
    let problem = assert_problem(other_query, 422).await;
    assert_eq!(
        problem["type"], "/problems/idempotency-key-reused",
        "{problem}"
    );

    let replay = submit_scan(&app, &tenant.admin_key, "k-1", &sarif(&["py.sqli"])).await;
    assert!(replayed(&replay));
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], first["id"]);
}

#[tokio::test]
async fn a_key_in_flight_answers_409_with_retry_after_then_replays_the_result() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let mut owner = owner_connection(&app).await;
    let blocker = block_asset_name(&mut owner, &tenant, "slow-host").await;

    let first = spawn_asset_create(&app, &tenant, "in-flight-1", "slow-host");
    eventually("the first request holds the key", || async {
        key_row(&app, tenant.id, "in-flight-1").await == Some(("in_flight".to_owned(), true))
    })
    .await;

    let second = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("in-flight-1"),
        &json!({"kind": "host", "name": "slow-host"}),
    )
    .await;
    let retry_after: u64 = header(&second, "retry-after")
        .expect("Retry-After on 409")
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    let problem = assert_problem(second, 409).await;
    assert_eq!(
        problem["type"], "/problems/idempotency-key-in-flight",
        "{problem}"
    );

    blocker.rollback().await.unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(!replayed(&first));
    let location = header(&first, "location").unwrap().to_owned();
    let created: Value = first.json().await.unwrap();

    let third = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("in-flight-1"),
        &json!({"kind": "host", "name": "slow-host"}),
    )
    .await;
    assert_eq!(third.status(), 201);
    assert!(replayed(&third));
    assert_eq!(header(&third, "location"), Some(location.as_str()));
    let third: Value = third.json().await.unwrap();
    assert_eq!(third["id"], created["id"]);
    assert_eq!(asset_count(&app, &tenant.admin_key).await, 1);
}

#[tokio::test]
async fn an_asset_creation_is_replayed_with_its_201_and_location() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let body = json!({"kind": "domain", "name": "acme.example", "criticality": "high"});
    let first = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("asset-1"),
        &body,
    )
    .await;
    assert_eq!(first.status(), 201);
    let location = header(&first, "location").unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/assets/{}", first["id"].as_str().unwrap())
    );

    let again = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("asset-1"),
        &body,
    )
    .await;
    assert_eq!(again.status(), 201, "not a 409 for the existing name");
    assert!(replayed(&again));
    assert_eq!(header(&again, "location"), Some(location.as_str()));
    assert_eq!(header(&again, "content-type"), Some("application/json"));
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(asset_count(&app, &tenant.admin_key).await, 1);

    // Without the key, the same request runs again (and the name is taken).
    let unkeyed = post(&app, "/v1/assets", &tenant.admin_key, None, &body).await;
    assert_problem(unkeyed, 409).await;
}

#[tokio::test]
async fn a_validation_failure_is_replayed_as_the_same_problem() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let body = json!({"kind": "mainframe", "name": "x"});
    let first = post(&app, "/v1/assets", &tenant.admin_key, Some("bad-1"), &body).await;
    assert!(!replayed(&first));
    let first = assert_problem(first, 422).await;
    assert_eq!(first["type"], "/problems/validation-failed");

    let again = post(&app, "/v1/assets", &tenant.admin_key, Some("bad-1"), &body).await;
    assert!(replayed(&again));
    // assert_problem checks request_id against this response's x-request-id.
    let again = assert_problem(again, 422).await;
    assert_ne!(again["request_id"], first["request_id"]);
    for member in ["type", "title", "status", "detail", "errors", "instance"] {
        assert_eq!(again[member], first[member], "{member}: {again} vs {first}");
    }
    assert_eq!(
        key_row(&app, tenant.id, "bad-1").await,
        Some(("completed".to_owned(), false))
    );
}

#[tokio::test]
async fn tenants_do_not_share_keys() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant(Tier::Basic).await;
    let b = app.create_tenant(Tier::Basic).await;
    let body = json!({"kind": "host", "name": "web-1"});
    let from_a = post(&app, "/v1/assets", &a.admin_key, Some("shared-key"), &body).await;
    assert_eq!(from_a.status(), 201);
    let from_a: Value = from_a.json().await.unwrap();

    let from_b = post(&app, "/v1/assets", &b.admin_key, Some("shared-key"), &body).await;
    assert_eq!(from_b.status(), 201);
    assert!(
        !replayed(&from_b),
        "B's request runs: A's response is not B's"
    );
    let from_b: Value = from_b.json().await.unwrap();
    assert_ne!(from_b["id"], from_a["id"]);
    assert_eq!(asset_count(&app, &a.admin_key).await, 1);
    assert_eq!(asset_count(&app, &b.admin_key).await, 1);

    // B's different body under the same key string is B's own business too.
    let scan = submit_scan(&app, &b.admin_key, "shared-key", &sarif(&["py.sqli"])).await;
    assert_eq!(scan.status(), 202, "another route is another entry");
}

#[tokio::test]
async fn the_same_key_on_another_route_is_another_entry() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let asset = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("route-key"),
        &json!({"kind": "host", "name": "h"}),
    )
    .await;
    assert_eq!(asset.status(), 201);
    let api_key = post(
        &app,
        "/v1/api-keys",
        &tenant.admin_key,
        Some("route-key"),
        &json!({"name": "ci", "scopes": ["write"]}),
    )
    .await;
    assert_eq!(api_key.status(), 201);
    assert!(!replayed(&api_key));
}

#[tokio::test]
async fn every_post_route_honours_keys() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let report = sarif(&["py.sqli"]);
    let routes = [
        ("/v1/assets", json!({"kind": "host", "name": "every"})),
        ("/v1/api-keys", json!({"name": "every", "scopes": ["read"]})),
        ("/v1/findings/triage", json!({"ids": [], "status": "open"})),
    ];
    for (path, body) in &routes {
        let first = post(&app, path, &tenant.admin_key, Some("every-route"), body).await;
        let status = first.status();
        let again = post(&app, path, &tenant.admin_key, Some("every-route"), body).await;
        assert_eq!(again.status(), status, "{path}");
        assert!(replayed(&again), "{path} is not covered");
    }
    let first = submit_scan(&app, &tenant.admin_key, "every-route", &report).await;
    assert_eq!(first.status(), 202);
    let again = submit_scan(&app, &tenant.admin_key, "every-route", &report).await;
    assert!(replayed(&again), "/v1/scans is not covered");

    // Other methods ignore the header (even a malformed one).
    let listed = app
        .client
        .get(format!("{}/v1/assets", app.address))
        .bearer_auth(&tenant.admin_key)
        .header("idempotency-key", "not valid")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn a_replayed_api_key_creation_neither_stores_nor_shows_the_secret_again() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let body = json!({"name": "pipeline", "scopes": ["write"]});
    let first = post(
        &app,
        "/v1/api-keys",
        &tenant.admin_key,
        Some("new-key"),
        &body,
    )
    .await;
    assert_eq!(first.status(), 201);
    let location = header(&first, "location").unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    let token = first["key"].as_str().expect("the secret, once").to_owned();

    let again = post(
        &app,
        "/v1/api-keys",
        &tenant.admin_key,
        Some("new-key"),
        &body,
    )
    .await;
    assert_eq!(again.status(), 201);
    assert!(replayed(&again));
    assert_eq!(header(&again, "location"), Some(location.as_str()));
    let again: Value = again.json().await.unwrap();
    assert!(
        again.get("key").is_none(),
        "the secret is shown once: {again}"
    );
    assert_eq!(again["id"], first["id"]);

    let mut owner = owner_connection(&app).await;
    let stored: Vec<u8> = sqlx::query_scalar(
        "SELECT response_body FROM idempotency_keys WHERE tenant_id = $1 AND key = 'new-key'",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(&mut owner)
    .await
    .unwrap();
    let stored = String::from_utf8(stored).unwrap();
    // sp_live_ <tenant: 22> <key id: 12> <secret: 32> <checksum: 6>
    assert!(
        !stored.contains(&token[42..74]),
        "the secret was stored: {stored}"
    );
    let keys: Value = app
        .get("/v1/api-keys", &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        keys["data"].as_array().unwrap().len(),
        2,
        "admin + one: {keys}"
    );
}

#[tokio::test]
async fn malformed_keys_are_422_problems_naming_the_header() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let body = json!({"kind": "host", "name": "never"});
    let too_long = "k".repeat(256);
    for bad in ["", "two words", "tab\there", too_long.as_str()] {
        let response = post(&app, "/v1/assets", &tenant.admin_key, Some(bad), &body).await;
        let problem = assert_problem(response, 422).await;
        assert_eq!(problem["type"], "/problems/validation-failed", "{bad:?}");
        assert_eq!(
            problem["errors"][0]["parameter"], "Idempotency-Key",
            "{problem}"
        );
    }
    let twice = app
        .client
        .post(format!("{}/v1/assets", app.address))
        .bearer_auth(&tenant.admin_key)
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(twice, 422).await;
    assert_eq!(problem["errors"][0]["parameter"], "Idempotency-Key");
    assert_eq!(asset_count(&app, &tenant.admin_key).await, 0);

    // 255 visible characters, and the IETF draft's quoted form, are fine.
    let longest = "k".repeat(255);
    let ok = post(&app, "/v1/assets", &tenant.admin_key, Some(&longest), &body).await;
    assert_eq!(ok.status(), 201);
    let quoted = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some(&format!("\"{longest}\"")),
        &body,
    )
    .await;
    assert!(replayed(&quoted), "\"k…\" is the key k…");
}

#[tokio::test]
async fn keys_are_handled_after_authentication() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let body = json!({"kind": "host", "name": "h"});
    let anonymous = app
        .client
        .post(format!("{}/v1/assets", app.address))
        .header("idempotency-key", "anon-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401).await;
    let mut owner = owner_connection(&app).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(rows, 0);

    // A key without the scope: not stored (the outcome depends on the credential),
    // so the same key then works with a key that has it.
    let reader = app.issue_key(tenant.id, &["read"]).await;
    let refused = post(&app, "/v1/assets", &reader, Some("scoped-1"), &body).await;
    assert_problem(refused, 403).await;
    assert_eq!(key_row(&app, tenant.id, "scoped-1").await, None);
    let created = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("scoped-1"),
        &body,
    )
    .await;
    assert_eq!(created.status(), 201);
    assert!(!replayed(&created));
}

#[tokio::test]
async fn an_expired_key_may_be_used_for_a_new_request() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let first = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("old-key"),
        &json!({"kind": "host", "name": "first"}),
    )
    .await;
    assert_eq!(first.status(), 201);
    let mut owner = owner_connection(&app).await;
    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        .execute(&mut owner)
        .await
        .unwrap();

    let second = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("old-key"),
        &json!({"kind": "host", "name": "second"}),
    )
    .await;
    assert_eq!(second.status(), 201, "a new request, not 422");
    assert!(!replayed(&second));
    assert_eq!(asset_count(&app, &tenant.admin_key).await, 2);
}

#[tokio::test]
async fn a_lock_left_by_a_dead_request_is_taken_over() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let body = serde_json::to_vec(&json!({"kind": "host", "name": "orphan"})).unwrap();
    let caller = format!("key:key_{}", &tenant.admin_key[30..42]);
    let hash = fingerprint(
        &caller,
        "POST",
        "/v1/assets",
        "",
        b"application/json",
        &body,
    );
    let mut owner = owner_connection(&app).await;
    // What a process that died mid-request leaves: an in-flight key, and a live one.
    for (key, lock) in [("dead-1", "-1 second"), ("live-1", "1 minute")] {
        sqlx::query(
            "INSERT INTO idempotency_keys
                 (tenant_id, key, method, path, request_hash, status, lock_token, locked_until, expires_at)
             VALUES ($1, $2, 'POST', '/v1/assets', $3, 'in_flight', gen_random_uuid(),
                     now() + $4::interval, now() + interval '1 day')",
        )
        .bind(tenant.id.as_uuid())
        .bind(key)
        .bind(&hash[..])
        .bind(lock)
        .execute(&mut owner)
        .await
        .unwrap();
    }
    let send = |key: &'static str| {
        app.client
            .post(format!("{}/v1/assets", app.address))
            .bearer_auth(&tenant.admin_key)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.clone())
            .send()
    };
    let live = send("live-1").await.unwrap();
    assert_problem(live, 409).await;
    let taken_over = send("dead-1").await.unwrap();
    assert_eq!(taken_over.status(), 201);
    assert_eq!(
        key_row(&app, tenant.id, "dead-1").await,
        Some(("completed".to_owned(), false))
    );
    assert!(replayed(&send("dead-1").await.unwrap()));
}

#[tokio::test]
async fn a_timed_out_request_releases_its_key_for_the_retry() {
    let app = TestApp::spawn_with(|config| config.request_timeout_ms = 500).await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let mut owner = owner_connection(&app).await;
    let blocker = block_asset_name(&mut owner, &tenant, "stuck").await;

    let first = spawn_asset_create(&app, &tenant, "timeout-1", "stuck")
        .await
        .unwrap();
    assert_problem(first, 503).await;
    eventually("the abandoned key is released", || async {
        key_row(&app, tenant.id, "timeout-1").await.is_none()
    })
    .await;

    blocker.rollback().await.unwrap();
    let retry = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("timeout-1"),
        &json!({"kind": "host", "name": "stuck"}),
    )
    .await;
    assert_eq!(retry.status(), 201);
    assert!(!replayed(&retry));
}

#[tokio::test]
async fn a_sweep_deletes_only_the_tenants_expired_keys() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant(Tier::Basic).await;
    let b = app.create_tenant(Tier::Basic).await;
    for (tenant, count) in [(&a, 3), (&b, 2)] {
        for n in 0..count {
            let response = post(
                &app,
                "/v1/assets",
                &tenant.admin_key,
                Some(&format!("sweep-{n}")),
                &json!({"kind": "host", "name": format!("h{n}")}),
            )
            .await;
            assert_eq!(response.status(), 201);
        }
    }
    let mut owner = owner_connection(&app).await;
    sqlx::query(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 minute'
         WHERE key IN ('sweep-0', 'sweep-1')",
    )
    .execute(&mut owner)
    .await
    .unwrap();

    // As the application role: bound to tenant A, under row-level security.
    let config = crate::support::test_config(&app.database);
    let store =
        Store::connect_lazy(&app.database.app_url(), &PoolSettings::for_command(&config)).unwrap();
    let mut tx = store.begin_tenant(a.id).await.unwrap();
    assert_eq!(
        idempotency::sweep_expired(&mut tx, 1).await.unwrap(),
        1,
        "bounded"
    );
    assert_eq!(idempotency::sweep_expired(&mut tx, 100).await.unwrap(), 1);
    tx.commit().await.unwrap();

    let remaining: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT tenant_id, key FROM idempotency_keys ORDER BY tenant_id = $1 DESC, key",
    )
    .bind(a.id.as_uuid())
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let of = |tenant: &TestTenant| {
        remaining
            .iter()
            .filter(|(id, _)| *id == tenant.id.as_uuid())
            .map(|(_, key)| key.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(of(&a), ["sweep-2"]);
    assert_eq!(
        of(&b),
        ["sweep-0", "sweep-1"],
        "B's expired keys are B's to sweep"
    );
}

#[tokio::test]
async fn a_body_over_every_limit_is_413_and_claims_nothing() {
    let app = TestApp::spawn_with(|config| {
        config.max_body_bytes = 1024;
        config.scan_max_bytes_basic = 2048;
    })
    .await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let big = json!({"kind": "host", "name": "x".repeat(4096)});
    let response = post(&app, "/v1/assets", &tenant.admin_key, Some("big-1"), &big).await;
    assert_problem(response, 413).await;
    assert_eq!(key_row(&app, tenant.id, "big-1").await, None);

    // Between the two limits the middleware passes the body on, and the route's
    // own limit answers (a 4xx: stored and replayed like any other).
    let medium = json!({"kind": "host", "name": "x".repeat(1500)});
    let first = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("big-2"),
        &medium,
    )
    .await;
    assert_problem(first, 413).await;
    let again = post(
        &app,
        "/v1/assets",
        &tenant.admin_key,
        Some("big-2"),
        &medium,
    )
    .await;
    assert!(replayed(&again));
    assert_problem(again, 413).await;
}

#[tokio::test]
async fn a_replay_is_only_for_the_key_that_made_the_request() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let body = serde_json::json!({"name": "ci", "scopes": ["read"]});
    let post = |key: String| {
        let request = app
            .client
            .post(format!("{}/v1/api-keys", app.address))
            .bearer_auth(key)
            .header("idempotency-key", "one-key-only")
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(post(tenant.admin_key.clone()).await.status(), 201);
    // A read-only key sending the same key and body must not receive the admin's
    // result: it is a different request (422), and the handler's 403 never ran.
    let reader = app.issue_key(tenant.id, &["read"]).await;
    let response = post(reader).await;
    assert!(response.headers().get("idempotent-replayed").is_none());
    assert_eq!(response.status(), 422);
}
