//! Key commands (`admin key …`) and what a server does with CLI-made changes.

use super::*;

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
async fn a_deleted_tenants_still_cached_key_never_gets_a_5xx() {
    // The longest TTL the configuration allows, so the checks run while the server
    // still trusts its cached verdict for the key.
    let app = spawn(|config| config.cache_l1_ttl_ms = 5_000).await;
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
