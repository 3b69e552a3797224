//! Shared integration-test support: a real application on port 0 against its own
//! freshly cloned database, connected as the restricted application role.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod database;
pub mod late_reply_proxy;
pub mod proxy;
pub mod receiver;
pub mod redis;

use database::TestDatabase;
use posture::auth::{issue_api_key, KeyRequest};
use posture::config::{Config, SecretUrl};
use posture::limits::clock::{Clock, SystemClock};
use posture::startup::Application;
use posture::store::operator::{self, OPERATOR_ACTOR};
use posture::store::{PoolSettings, Store};
use posture_domain::{TenantId, TenantName, TenantSlug, Tier};
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running application and the handles a test needs.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub client: reqwest::Client,
    pub database: TestDatabase,
    /// Connected as the owner: for arranging data and inspecting it.
    pub owner: Store,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A tenant created for a test, with an admin key.
#[derive(Debug, Clone)]
pub struct TestTenant {
    pub id: TenantId,
    pub slug: String,
    pub admin_key: String,
}

/// A test configuration: port 0, a small pool, the given database.
pub fn test_config(database: &TestDatabase) -> Config {
    Config {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: SecretUrl::new(database.app_url()),
        admin_database_url: SecretUrl::new(database.owner_url()),
        db_pool_min: 0,
        db_pool_max: 4,
        db_acquire_timeout_ms: 1_000,
        db_connect_deadline_secs: 5,
        shutdown_grace_secs: 5,
        // Most tests use free and basic tenants for other reasons and make
        // more than ten requests a minute; the limits have their own tests
        // (rate_limits.rs), which turn them on.
        rate_limits_enabled: false,
        ..Config::default()
    }
}

static SLUG_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestApp {
    /// Spawns the application with the default test configuration.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// Spawns the application on a new database after `adjust` edits the configuration.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let database = TestDatabase::create().await;
        let mut config = test_config(&database);
        adjust(&mut config);
        TestApp::spawn_on(database, config).await
    }

    /// Spawns the application with an explicit database and configuration.
    pub async fn spawn_on(database: TestDatabase, config: Config) -> TestApp {
        TestApp::spawn_on_with_clock(database, config, Arc::new(SystemClock)).await
    }

    /// Spawns the application with rate limits and quotas following `clock`.
    pub async fn spawn_on_with_clock(
        database: TestDatabase,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> TestApp {
        if std::env::var_os("TEST_LOG").is_some() {
            posture::telemetry::init(&config);
        }
        let owner = Store::connect_lazy(&database.owner_url(), &PoolSettings::for_command(&config))
            .expect("owner pool");
        let application = Application::build_with_clock(config, clock)
            .await
            .expect("building the application");
        let address = format!("http://127.0.0.1:{}", application.port());
        let shutdown = application.shutdown_token();
        let server = tokio::spawn(application.run_until_stopped());
        TestApp {
            address,
            client: reqwest::Client::new(),
            database,
            owner,
            shutdown,
            server: Some(server),
        }
    }

    /// Creates a tenant (unique slug) with an admin key, as an operator would.
    pub async fn create_tenant(&self, tier: Tier) -> TestTenant {
        let number = SLUG_COUNTER.fetch_add(1, Ordering::Relaxed);
        let slug = format!(
            "tenant-{number}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let tenant = operator::create_tenant(
            &self.owner,
            &TenantSlug::parse(&slug).unwrap(),
            &TenantName::parse(&format!("Tenant {number}")).unwrap(),
            tier,
        )
        .await
        .expect("creating a tenant");
        let admin_key = self.issue_key(tenant.id, &["admin"]).await;
        TestTenant {
            id: tenant.id,
            slug,
            admin_key,
        }
    }

    /// Issues a key with `scopes` for `tenant_id` and returns the token.
    pub async fn issue_key(&self, tenant_id: TenantId, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let request = KeyRequest::parse("test", &scopes, None, chrono::Utc::now())
            .expect("valid key request");
        let mut tx = self.owner.begin_tenant(tenant_id).await.expect("begin");
        let (_, token) = issue_api_key(&mut tx, &request, OPERATOR_ACTOR, None)
            .await
            .expect("issue key");
        tx.commit().await.expect("commit");
        token.expose()
    }

    /// `GET path` with `key` as bearer token.
    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .delete(format!("{}{path}", self.address))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    /// `POST /v1/scans?{query}` with `report` as `content_type`.
    pub async fn submit_scan(
        &self,
        key: &str,
        query: &str,
        content_type: &str,
        report: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/scans?{query}", self.address))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(report)
            .send()
            .await
            .expect("request")
    }

    /// Polls the scan at `location` until it is processed (succeeded or failed),
    /// at most 15 s; returns it.
    pub async fn wait_for_scan(&self, key: &str, location: &str) -> Value {
        let started = std::time::Instant::now();
        loop {
            let scan: Value = self
                .get(location, key)
                .await
                .json()
                .await
                .expect("scan JSON");
            if matches!(scan["status"].as_str(), Some("succeeded" | "failed")) {
                return scan;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(15),
                "scan not processed in 15 s: {scan}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Waits until the tenant has no posture refresh queued or running, i.e. the
    /// background refresh queued by the last change has stored its view.
    pub async fn wait_for_posture(&self, tenant_id: TenantId) {
        let started = std::time::Instant::now();
        loop {
            let pending: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM jobs
                 WHERE tenant_id = $1 AND kind = 'refresh_posture' AND status IN ('queued', 'running')",
            )
            .bind(tenant_id.as_uuid())
            .fetch_one(self.owner.pool())
            .await
            .expect("pending refreshes");
            if pending == 0 {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(15),
                "posture not refreshed in 15 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Submits a SARIF report for the asset named by `query`, expects 202, and
    /// waits until it is processed; returns the scan.
    pub async fn ingest_sarif(&self, key: &str, query: &str, report: &Value) -> Value {
        let response = self
            .submit_scan(
                key,
                query,
                "application/sarif+json",
                serde_json::to_vec(report).unwrap(),
            )
            .await;
        assert_eq!(response.status(), 202, "submitting a scan");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        self.wait_for_scan(key, &location).await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Asserts `response` is an RFC 9457 problem with `status` and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request_id = response.headers().get("x-request-id").cloned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{body}"
    );
    assert!(body["title"].is_string(), "{body}");
    let header_id = request_id.expect("x-request-id header");
    assert_eq!(body["request_id"], header_id.to_str().unwrap(), "{body}");
    body
}
