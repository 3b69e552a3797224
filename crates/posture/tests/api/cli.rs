//! The real `posture` binary's operator commands (`admin tenant …`, `admin key …`,
//! `demo`) against a test database, with their effects checked through a running
//! server on the same database and, as the owner, in the tables themselves.
//!
//! The server and the CLI are separate processes, so the CLI cannot clear the
//! server's auth cache: changes to keys and tenants must reach the API within the
//! cache TTL (at most 5 s). Those checks poll with a bounded deadline.

use crate::support::database::TestDatabase;
use crate::support::{assert_problem, test_config, TestApp};
use posture::config::Config;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished `posture` process left behind.
#[derive(Debug)]
struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts the command succeeded and returns its stdout.
    fn ok(self) -> String {
        assert!(
            self.success,
            "posture failed ({:?}):\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts the command failed readably and returns its stderr.
    fn failed(self) -> String {
        assert!(
            !self.success,
            "posture should have failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        let stderr = self.stderr.trim().to_owned();
        assert!(!stderr.is_empty(), "a failure must say why on stderr");
        assert!(
            !stderr.contains("panicked"),
            "a failure must not be a panic: {stderr}"
        );
        assert!(
            !stderr.contains("posture_owner:posture_owner"),
            "stderr leaks a password: {stderr}"
        );
        stderr
    }
}

/// Runs the `posture` binary with `args` against `database` (owner and app URLs),
/// with a 30 s watchdog.
async fn posture(database: &TestDatabase, args: &[&str]) -> Run {
    posture_with(database, args, &[]).await
}

/// [`posture`] with extra environment variables (which override the defaults).
async fn posture_with(database: &TestDatabase, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_posture"));
    command
        .args(args)
        .env("POSTURE_ADMIN_DATABASE_URL", database.owner_url())
        .env("DATABASE_URL", database.app_url())
        .env("POSTURE_DB_CONNECT_DEADLINE_SECS", "5")
        .env("POSTURE_LOG", "warn")
        .env_remove("POSTURE_CONFIG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let label = args.join(" ");
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("starting the posture binary");
        // Drain both pipes on their own threads so a chatty child never blocks.
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for posture") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`posture {label}` did not finish within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            success: status.success(),
            code: status.code(),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    })
    .await
    .expect("the CLI task")
}

/// A server on a fresh database, after `adjust` edits its configuration.
async fn spawn(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let database = TestDatabase::create().await;
    let mut config = test_config(&database);
    adjust(&mut config);
    TestApp::spawn_on(database, config).await
}

/// The token printed on the line starting with `marker`.
fn token_after(stdout: &str, marker: &str) -> String {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(marker))
        .unwrap_or_else(|| panic!("no line starting with {marker:?} in:\n{stdout}"));
    let token = line.rsplit(' ').next().unwrap().trim().to_owned();
    assert!(token.starts_with("sp_live_") && token.len() == 80, "{line}");
    token
}

/// Creates tenant `slug` (basic) and a key with `scopes` through the CLI; returns the key.
async fn tenant_with_key(database: &TestDatabase, slug: &str, scopes: &str) -> String {
    posture(
        database,
        &[
            "admin", "tenant", "create", "--slug", slug, "--name", "Acme", "--tier", "basic",
        ],
    )
    .await
    .ok();
    let stdout = posture(
        database,
        &["admin", "key", "create", slug, "--scopes", scopes],
    )
    .await
    .ok();
    token_after(&stdout, "key (shown only once):")
}

/// Polls `GET path` with `key` until `done` holds for (status, body), for at most
/// `within`; returns how long it took. No fixed sleeps: 100 ms between attempts.
async fn poll_until(
    app: &TestApp,
    path: &str,
    key: &str,
    within: Duration,
    what: &str,
    done: impl Fn(u16, &Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let response = app.get(path, key).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if done(status, &body) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; last answer {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn owner_connection(database: &TestDatabase) -> PgConnection {
    PgConnection::connect(&database.owner_url())
        .await
        .expect("owner connection")
}

#[tokio::test]
async fn tenant_create_then_list_shows_it() {
    let app = spawn(|_| {}).await;
    let database = &app.database;
    let stdout = posture(
        database,
        &[
            "admin", "tenant", "create", "--slug", "acme", "--name", "Acme", "--tier", "basic",
        ],
    )
    .await
    .ok();
    assert!(stdout.contains("created tenant acme"), "{stdout}");

    let listed = posture(database, &["admin", "tenant", "list"]).await.ok();
    let row = listed
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some("acme"))
        .unwrap_or_else(|| panic!("acme not listed:\n{listed}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[1..], ["acme", "basic", "active", "Acme"], "{row}");
    uuid::Uuid::parse_str(columns[0]).expect("the first column is the tenant id");
    assert!(listed.contains("1 tenant(s)"), "{listed}");

    // The slug is unique.
    let stderr = posture(
        database,
        &[
            "admin", "tenant", "create", "--slug", "acme", "--name", "Again",
        ],
    )
    .await
    .failed();
    assert!(stderr.contains("already exists"), "{stderr}");
    let listed = posture(database, &["admin", "tenant", "list"]).await.ok();
    assert!(listed.contains("1 tenant(s)"), "{listed}");
}

#[tokio::test]
async fn set_tier_reaches_the_api() {
    let app = spawn(|_| {}).await;
    let key = tenant_with_key(&app.database, "acme", "read").await;
    let org: Value = app.get("/v1/org", &key).await.json().await.unwrap();
    assert_eq!(
        (org["slug"].as_str(), org["tier"].as_str()),
        (Some("acme"), Some("basic")),
        "{org}"
    );
    assert_eq!(org["limits"]["requests_per_minute"], 60);

    let stdout = posture(
        &app.database,
        &["admin", "tenant", "set-tier", "acme", "premium"],
    )
    .await
    .ok();
    assert!(stdout.contains("basic -> premium"), "{stdout}");
    poll_until(
        &app,
        "/v1/org",
        &key,
        Duration::from_secs(6),
        "tier premium",
        |status, org| {
            status == 200 && org["tier"] == "premium" && org["limits"]["requests_per_minute"] == 120
        },
    )
    .await;
    let org: Value = app.get("/v1/org", &key).await.json().await.unwrap();
    assert_eq!(org["limits"]["advanced_scans"], true, "{org}");

    // By id as well as by slug.
    let id = org["id"].as_str().unwrap().to_owned();
    posture(
        &app.database,
        &["admin", "tenant", "set-tier", &id, "enterprise"],
    )
    .await
    .ok();
    poll_until(
        &app,
        "/v1/org",
        &key,
        Duration::from_secs(6),
        "tier enterprise",
        |status, org| {
            status == 200
                && org["tier"] == "enterprise"
                && org["limits"]["requests_per_day"].is_null()
        },
    )
    .await;
}

#[tokio::test]
async fn cli_keys_carry_their_scopes_and_revocation_reaches_the_api_within_5_s() {
    // The default configuration: revocation by another process is bounded by the TTL.
    let app = spawn(|_| {}).await;
    let database = &app.database;
    let key = tenant_with_key(database, "acme", "read").await;

    let org: Value = app.get("/v1/org", &key).await.json().await.unwrap();
    assert_eq!(org["slug"], "acme");
    let problem = assert_problem(app.get("/v1/api-keys", &key).await, 403).await;
    assert_eq!(problem["type"], "/problems/forbidden");

    let listed = posture(database, &["admin", "key", "list", "acme"])
        .await
        .ok();
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .filter(|row: &Vec<&str>| row.len() >= 5)
        .collect();
    assert_eq!(rows.len(), 1, "{listed}");
    let key_id = rows[0][0].to_owned();
    assert!(key_id.starts_with("key_") && key_id.len() == 16, "{listed}");
    assert_eq!(&rows[0][1..4], ["admin-cli", "read", "active"], "{listed}");
    assert!(listed.contains("1 key(s)"), "{listed}");
    // The key id is the one embedded in the key.
    assert_eq!(&key[30..42], &key_id[4..]);

    let stdout = posture(database, &["admin", "key", "revoke", "acme", &key_id])
        .await
        .ok();
    assert!(stdout.contains(&format!("revoked {key_id}")), "{stdout}");
    let took = poll_until(
        &app,
        "/v1/org",
        &key,
        Duration::from_secs(5),
        "revoked key refused",
        |status, _| status == 401,
    )
    .await;
    assert!(took <= Duration::from_secs(5), "{took:?}");
    let problem = assert_problem(app.get("/v1/org", &key).await, 401).await;
    assert_eq!(problem["type"], "/problems/unauthenticated");

    let listed = posture(database, &["admin", "key", "list", "acme"])
        .await
        .ok();
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with(&key_id) && line.contains("revoked")),
        "{listed}"
    );

    // Unknown and malformed key ids, and unknown tenants, are refused readably.
    let stderr = posture(
        database,
        &["admin", "key", "revoke", "acme", "key_000000000000"],
    )
    .await
    .failed();
    assert!(stderr.contains("no key"), "{stderr}");
    let stderr = posture(database, &["admin", "key", "revoke", "acme", "not-a-key"])
        .await
        .failed();
    assert!(stderr.contains("key_"), "{stderr}");
    let stderr = posture(database, &["admin", "key", "list", "nobody"])
        .await
        .failed();
    assert!(stderr.contains("nobody"), "{stderr}");
    let stderr = posture(
        database,
        &["admin", "key", "create", "acme", "--scopes", "read,root"],
    )
    .await
    .failed();
    assert!(
        stderr.contains("root") || stderr.contains("scope"),
        "{stderr}"
    );

    // A key with every scope (the default) can manage keys.
    let stdout = posture(
        database,
        &["admin", "key", "create", "acme", "--name", "ops"],
    )
    .await
    .ok();
    let admin = token_after(&stdout, "key (shown only once):");
    assert_eq!(app.get("/v1/api-keys", &admin).await.status(), 200);
}

#[tokio::test]
async fn suspend_refuses_the_tenants_keys_and_activate_restores_them() {
    let app = spawn(|_| {}).await;
    let key = tenant_with_key(&app.database, "acme", "read").await;
    assert_eq!(app.get("/v1/org", &key).await.status(), 200);

    let stdout = posture(&app.database, &["admin", "tenant", "suspend", "acme"])
        .await
        .ok();
    assert!(stdout.contains("suspended"), "{stdout}");
    poll_until(
        &app,
        "/v1/org",
        &key,
        Duration::from_secs(6),
        "suspension",
        |status, body| status == 403 && body["type"] == "/problems/tenant-suspended",
    )
    .await;
    assert_problem(app.get("/v1/org", &key).await, 403).await;
    let listed = posture(&app.database, &["admin", "tenant", "list"])
        .await
        .ok();
    assert!(
        listed
            .lines()
            .any(|line| line.contains("acme") && line.contains("suspended")),
        "{listed}"
    );

    let stdout = posture(&app.database, &["admin", "tenant", "activate", "acme"])
        .await
        .ok();
    assert!(stdout.contains("active"), "{stdout}");
    poll_until(
        &app,
        "/v1/org",
        &key,
        Duration::from_secs(6),
        "re-activation",
        |status, body| status == 200 && body["status"] == "active",
    )
    .await;
}

/// Rows of `tenant_id` in every table that holds tenant data.
async fn rows_of(connection: &mut PgConnection, tenant_id: &str) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND EXISTS (
             SELECT 1 FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
         ORDER BY 1",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap();
    let id = uuid::Uuid::parse_str(tenant_id).unwrap();
    let mut counts = vec![(
        "tenants".to_owned(),
        sqlx::query_scalar("SELECT count(*) FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *connection)
            .await
            .unwrap(),
    )];
    for table in tables {
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE tenant_id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *connection)
        .await
        .unwrap();
        counts.push((table, count));
    }
    counts
}

#[tokio::test]
async fn delete_needs_yes_and_then_removes_every_row_of_the_tenant_only() {
    let app = spawn(|config| config.auth_cache_ttl_ms = 500).await;
    let database = &app.database;
    let key = tenant_with_key(database, "acme", "read,write,admin").await;
    let other_key = tenant_with_key(database, "other", "read").await;
    // Some API activity, so the tenant owns rows in several tables.
    let created = app
        .post_json(
            "/v1/api-keys",
            &key,
            &serde_json::json!({ "name": "ci", "scopes": ["write"] }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let acme: Value = app.get("/v1/org", &key).await.json().await.unwrap();
    let other: Value = app.get("/v1/org", &other_key).await.json().await.unwrap();
    let (acme_id, other_id) = (acme["id"].as_str().unwrap(), other["id"].as_str().unwrap());

    let mut connection = owner_connection(database).await;
    let before = rows_of(&mut connection, acme_id).await;
    for table in ["tenants", "api_keys", "audit_log"] {
        assert!(
            before.iter().any(|(t, n)| t == table && *n > 0),
            "acme should own {table} rows: {before:?}"
        );
    }
    let other_before = rows_of(&mut connection, other_id).await;

    let stderr = posture(database, &["admin", "tenant", "delete", "acme"])
        .await
        .failed();
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(
        rows_of(&mut connection, acme_id).await,
        before,
        "a refused delete changed rows"
    );
    assert_eq!(app.get("/v1/org", &key).await.status(), 200);

    let stdout = posture(database, &["admin", "tenant", "delete", "acme", "--yes"])
        .await
        .ok();
    assert!(stdout.contains("deleted tenant acme"), "{stdout}");
    let after = rows_of(&mut connection, acme_id).await;
    assert!(
        after.iter().all(|(_, n)| *n == 0),
        "rows of the deleted tenant remain: {after:?}"
    );
    assert_eq!(
        rows_of(&mut connection, other_id).await,
        other_before,
        "another tenant's rows changed"
    );

    poll_until(
        &app,
        "/v1/org",
        &key,
        Duration::from_secs(6),
        "deleted tenant's key refused",
        |status, _| status == 401,
    )
    .await;
    assert_eq!(app.get("/v1/org", &other_key).await.status(), 200);
    let listed = posture(database, &["admin", "tenant", "list"]).await.ok();
    assert!(
        !listed.contains("acme") && listed.contains("1 tenant(s)"),
        "{listed}"
    );
    let stderr = posture(database, &["admin", "tenant", "delete", "acme", "--yes"])
        .await
        .failed();
    assert!(stderr.contains("acme"), "{stderr}");
}

#[tokio::test]
async fn demo_prints_a_working_key_and_reuses_its_tenant() {
    let app = spawn(|_| {}).await;
    let mut keys = Vec::new();
    let mut tenant_ids = Vec::new();
    for _run in 0..2 {
        let stdout = posture(&app.database, &["demo"]).await.ok();
        let key = token_after(&stdout, "api key (");
        let org = app.get("/v1/org", &key).await;
        assert_eq!(org.status(), 200, "{stdout}");
        let org: Value = org.json().await.unwrap();
        assert_eq!(org["slug"], "demo", "{org}");
        assert_eq!(org["tier"], "premium", "{org}");
        // The key is an admin key, as printed.
        assert_eq!(app.get("/v1/api-keys", &key).await.status(), 200);
        assert!(stdout.contains(org["id"].as_str().unwrap()), "{stdout}");
        keys.push(key);
        tenant_ids.push(org["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        tenant_ids[0], tenant_ids[1],
        "the second run must reuse the demo tenant"
    );
    assert_ne!(keys[0], keys[1], "each run issues a fresh key");
    // Both keys stay valid.
    assert_eq!(app.get("/v1/org", &keys[0]).await.status(), 200);

    let mut connection = owner_connection(&app.database).await;
    let (tenants, keys_stored): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE t.slug = 'demo')",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(tenants, 1);
    // The sample CI key once, plus one admin key per run.
    assert_eq!(keys_stored, 3);
}

#[tokio::test]
async fn invalid_input_fails_with_a_readable_message() {
    let app = spawn(|_| {}).await;
    let database = &app.database;
    let stderr = posture(
        database,
        &[
            "admin", "tenant", "create", "--slug", "Bad Slug", "--name", "Bad", "--tier", "basic",
        ],
    )
    .await
    .failed();
    assert!(stderr.contains("slug"), "{stderr}");
    let stderr = posture(
        database,
        &[
            "admin", "tenant", "create", "--slug", "acme", "--name", "Acme", "--tier", "gold",
        ],
    )
    .await
    .failed();
    assert!(
        stderr.contains("tier") && stderr.contains("gold"),
        "{stderr}"
    );
    let stderr = posture(
        database,
        &["admin", "tenant", "create", "--slug", "acme", "--name", " "],
    )
    .await
    .failed();
    assert!(stderr.contains("name"), "{stderr}");
    // Nothing was created by the refused commands.
    let listed = posture(database, &["admin", "tenant", "list"]).await.ok();
    assert!(listed.contains("0 tenant(s)"), "{listed}");

    posture(
        database,
        &[
            "admin", "tenant", "create", "--slug", "acme", "--name", "Acme",
        ],
    )
    .await
    .ok();
    let stderr = posture(database, &["admin", "tenant", "set-tier", "acme", "gold"])
        .await
        .failed();
    assert!(stderr.contains("gold"), "{stderr}");
    let stderr = posture(
        database,
        &["admin", "tenant", "set-tier", "nobody", "basic"],
    )
    .await
    .failed();
    assert!(stderr.contains("nobody"), "{stderr}");
    let stderr = posture(database, &["admin", "tenant", "suspend", "nobody"])
        .await
        .failed();
    assert!(stderr.contains("nobody"), "{stderr}");
    let listed = posture(database, &["admin", "tenant", "list"]).await.ok();
    assert!(
        listed
            .lines()
            .any(|line| line.contains("acme") && line.contains("free") && line.contains("active")),
        "{listed}"
    );

    // Usage errors: clap's exit code 2 with a usage message.
    let run = posture(
        database,
        &["admin", "tenant", "create", "--name", "No Slug"],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.failed().contains("--slug"));
    let run = posture(database, &["admin", "tenant", "frobnicate"]).await;
    assert_eq!(run.code, Some(2), "{run:?}");
}

#[tokio::test]
async fn a_deleted_tenants_still_cached_key_never_gets_a_5xx() {
    // The longest TTL the configuration allows, so the checks run while the server
    // still trusts its cached verdict for the key.
    let app = spawn(|config| config.auth_cache_ttl_ms = 5_000).await;
    let key = tenant_with_key(&app.database, "acme", "read,write,admin").await;
    assert_eq!(
        app.get("/v1/org", &key).await.status(),
        200,
        "caches the verdict"
    );
    posture(
        &app.database,
        &["admin", "tenant", "delete", "acme", "--yes"],
    )
    .await
    .ok();

    let body = serde_json::json!({ "name": "after-delete", "scopes": ["read"] });
    let answers = [
        ("GET /v1/org", app.get("/v1/org", &key).await),
        ("GET /v1/api-keys", app.get("/v1/api-keys", &key).await),
        (
            "POST /v1/api-keys",
            app.post_json("/v1/api-keys", &key, &body).await,
        ),
        (
            "DELETE /v1/api-keys/key_000000000000",
            app.delete("/v1/api-keys/key_000000000000", &key).await,
        ),
    ];
    let mut server_errors = Vec::new();
    for (route, response) in answers {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if status >= 500 {
            server_errors.push(format!("{route}: {status} {text}"));
        }
    }
    // Within the auth cache TTL after `admin tenant delete` the server may still
    // trust the deleted tenant's key (the CLI is another process and cannot clear
    // the cache); writes then hit a missing tenant and must get a 4xx (409), never 5xx.
    assert!(
        server_errors.is_empty(),
        "a deleted tenant's key got server errors:\n{}",
        server_errors.join("\n")
    );

    poll_until(
        &app,
        "/v1/org",
        &key,
        Duration::from_secs(6),
        "deleted tenant's key refused",
        |status, _| status == 401,
    )
    .await;
}

#[tokio::test]
async fn key_list_reports_expired_keys_as_the_api_does() {
    let app = spawn(|_| {}).await;
    let database = &app.database;
    let key = tenant_with_key(database, "acme", "read").await;
    let key_id = &key[30..42];
    let stdout = posture(
        database,
        &[
            "admin",
            "key",
            "create",
            "acme",
            "--name",
            "ops",
            "--expires-in-days",
            "30",
        ],
    )
    .await
    .ok();
    let admin = token_after(&stdout, "key (shown only once):");

    // Expire the read key (as the owner: time passing, without waiting for it).
    let mut connection = owner_connection(database).await;
    let expired =
        sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 hour' WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut connection)
            .await
            .unwrap();
    assert_eq!(expired.rows_affected(), 1);

    let shown: Value = app
        .get(&format!("/v1/api-keys/key_{key_id}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "expired", "{shown}");

    let listed = posture(database, &["admin", "key", "list", "acme"])
        .await
        .ok();
    let status_of = |id: &str| {
        let line = listed
            .lines()
            .find(|line| line.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{listed}"));
        line.split_whitespace().nth(3).unwrap().to_owned()
    };
    let admin_id = format!("key_{}", &admin[30..42]);
    assert_eq!(
        status_of(&admin_id),
        "active",
        "a key expiring in 30 days is active:\n{listed}"
    );
    // The CLI reports a key's status exactly as the API does.
    assert_eq!(
        status_of(&format!("key_{key_id}")),
        "expired",
        "an expired key is listed as usable:\n{listed}"
    );
}

#[tokio::test]
async fn configuration_and_connection_problems_fail_readably_without_leaking_secrets() {
    let database = TestDatabase::create().await;
    // An unreachable database: a bounded wait, then a message that names no password.
    let unreachable = [
        (
            "POSTURE_ADMIN_DATABASE_URL",
            "postgres://posture_owner:s3cr3t-pw@127.0.0.1:1/posture",
        ),
        ("POSTURE_DB_CONNECT_DEADLINE_SECS", "1"),
    ];
    let started = Instant::now();
    let stderr = posture_with(&database, &["admin", "tenant", "list"], &unreachable)
        .await
        .failed();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "gave up only after {:?}",
        started.elapsed()
    );
    assert!(
        !stderr.contains("s3cr3t-pw"),
        "stderr leaks the password: {stderr}"
    );
    // A bad setting is a configuration error (exit code 2) that names the setting.
    let run = posture_with(
        &database,
        &["admin", "tenant", "list"],
        &[("POSTURE_AUTH_CACHE_TTL_MS", "9000")],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.failed().contains("auth_cache_ttl_ms"));
    let run = posture_with(
        &database,
        &["admin", "tenant", "list"],
        &[("POSTURE_DB_POOL_MAX", "many")],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.failed().contains("POSTURE_DB_POOL_MAX"));
    // A key that would expire at once is refused.
    posture(
        &database,
        &[
            "admin", "tenant", "create", "--slug", "acme", "--name", "Acme",
        ],
    )
    .await
    .ok();
    let stderr = posture(
        &database,
        &["admin", "key", "create", "acme", "--expires-in-days", "0"],
    )
    .await
    .failed();
    assert!(stderr.contains("expires_at"), "{stderr}");
    let stdout = posture(&database, &["admin", "key", "list", "acme"])
        .await
        .ok();
    assert!(stdout.contains("0 key(s)"), "{stdout}");
}
