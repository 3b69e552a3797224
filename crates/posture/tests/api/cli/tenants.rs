//! Tenant commands (`admin tenant …`), `demo`, and how the CLI fails.

use super::*;

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
    let app = spawn(|config| config.cache_l1_ttl_ms = 500).await;
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
    // The previous run's admin key is revoked, so demo keys do not pile up; the
    // server (another process) refuses it within the auth cache TTL.
    poll_until(
        &app,
        "/v1/org",
        &keys[0],
        Duration::from_secs(6),
        "old demo key revoked",
        |status, _| status == 401,
    )
    .await;
    assert_eq!(app.get("/v1/org", &keys[1]).await.status(), 200);

    // The sample scans, queued once, are processed by the server's workers.
    poll_until(
        &app,
        "/v1/scans",
        &keys[1],
        Duration::from_secs(15),
        "sample scans processed",
        |status, body| {
            status == 200
                && body["data"].as_array().is_some_and(|scans| {
                    scans.len() == 4 && scans.iter().all(|scan| scan["status"] == "succeeded")
                })
        },
    )
    .await;
    let findings: Value = app
        .get("/v1/findings?limit=100", &keys[1])
        .await
        .json()
        .await
        .unwrap();
    assert!(
        findings["data"].as_array().unwrap().len() >= 50,
        "the demo has real findings"
    );

    let mut connection = owner_connection(&app.database).await;
    let (tenants, keys_stored): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE t.slug = 'demo' AND k.revoked_at IS NULL)",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(tenants, 1);
    // The sample CI key and the latest admin key are the live ones.
    assert_eq!(keys_stored, 2);
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
        &[("POSTURE_CACHE_L1_TTL_MS", "9000")],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.failed().contains("cache_l1_ttl_ms"));
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
