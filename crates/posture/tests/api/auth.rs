//! Authentication: API keys in, TenantContext out; every refusal a 401/403 problem.

use crate::support::database::TestDatabase;
use crate::support::proxy::DbProxy;
use crate::support::{assert_problem, test_config, TestApp};
use posture::auth::LastUsedRecorder;
use posture::store::{PoolSettings, Store};
use posture_domain::{ApiKeyId, ApiKeyToken, Tier};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it holds or `limit` passes; returns the time taken.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn a_valid_key_yields_its_tenant() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let response = app.get("/v1/org", &tenant.admin_key).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], tenant.id.to_string());
    assert_eq!(body["slug"], tenant.slug);
    assert_eq!(body["tier"], "basic");
    assert_eq!(body["limits"]["requests_per_minute"], 60);
    assert_eq!(body["limits"]["requests_per_day"], 5000);

    // Older clients send X-API-Key.
    let legacy = app
        .client
        .get(format!("{}/v1/org", app.address))
        .header("x-api-key", &tenant.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), 200);
}

#[tokio::test]
async fn missing_malformed_unknown_and_revoked_keys_get_401_problems() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;

    let missing = app
        .client
        .get(format!("{}/v1/org", app.address))
        .send()
        .await
        .unwrap();
    assert!(missing.headers().contains_key("www-authenticate"));
    assert_problem(missing, 401).await;

    let malformed = assert_problem(app.get("/v1/org", "sp_live_not-a-key").await, 401).await;
    assert_eq!(malformed["detail"], "The API key is malformed.");

    // A well-formed key (valid checksum) that was never issued.
    let other_tenant = posture_domain::TenantId::new_random();
    let unknown =
        posture_domain::ApiKeyToken::generate(other_tenant, &mut rand::rngs::OsRng).expose();
    let body = assert_problem(app.get("/v1/org", &unknown).await, 401).await;
    assert_eq!(body["detail"], "The API key is not valid.");

    // The right key id with a wrong secret is as unknown as anything else.
    let mut wrong_secret = tenant.admin_key.clone().into_bytes();
    wrong_secret[50] = if wrong_secret[50] == b'a' { b'b' } else { b'a' };
    let wrong_secret = fix_checksum(&String::from_utf8(wrong_secret).unwrap());
    assert_problem(app.get("/v1/org", &wrong_secret).await, 401).await;

    let victim = app.issue_key(tenant.id, &["read"]).await;
    assert_eq!(app.get("/v1/org", &victim).await.status(), 200);
    let key_id = format!("key_{}", &victim[30..42]);
    assert_eq!(
        app.delete(&format!("/v1/api-keys/{key_id}"), &tenant.admin_key)
            .await
            .status(),
        204
    );
    // Revocation applies at once on the instance that revoked it, cache or not.
    let body = assert_problem(app.get("/v1/org", &victim).await, 401).await;
    assert_eq!(body["detail"], "The API key has been revoked.");
}

/// Recomputes the trailing CRC32 checksum of a token whose body was edited.
pub(crate) fn fix_checksum(token: &str) -> String {
    let payload = &token[..token.len() - 6];
    let checksum =
        posture_domain::base62::encode_fixed(u128::from(crc32(payload.as_bytes())), 6).unwrap();
    format!("{payload}{checksum}")
}

/// CRC-32 (IEEE), written out so the test does not share the code under test.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn malformed_keys_are_refused_without_touching_the_database() {
    let database = TestDatabase::create().await;
    let mut config = test_config(&database);
    let proxy = DbProxy::in_front_of(&database, &mut config).await;
    let app = TestApp::spawn_on(database, config).await;
    let tenant = app.create_tenant(Tier::Free).await;
    let mut bad_checksum = tenant.admin_key.clone();
    bad_checksum.replace_range(74..80, "000000");

    proxy.stop();
    // With the database gone, a lookup would fail with 503; these never look up.
    for key in ["sp_live_short", "sk_live_whatever", bad_checksum.as_str()] {
        let body = assert_problem(app.get("/v1/org", key).await, 401).await;
        assert_eq!(body["detail"], "The API key is malformed.", "{key}");
    }
    // A well-formed key does need the database: 503, not a false 401.
    let body = assert_problem(app.get("/v1/org", &tenant.admin_key).await, 503).await;
    assert_eq!(body["type"], "/problems/unavailable");
}

#[tokio::test]
async fn scopes_are_enforced_with_403() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let read = app.issue_key(tenant.id, &["read"]).await;
    let write = app.issue_key(tenant.id, &["write"]).await;
    assert_eq!(app.get("/v1/org", &read).await.status(), 200);
    assert_eq!(
        app.get("/v1/org", &write).await.status(),
        200,
        "write includes read"
    );
    for key in [&read, &write] {
        let body = assert_problem(app.get("/v1/api-keys", key).await, 403).await;
        assert_eq!(body["type"], "/problems/forbidden");
        let create = app
            .post_json(
                "/v1/api-keys",
                key,
                &json!({"name": "x", "scopes": ["admin"]}),
            )
            .await;
        assert_problem(create, 403).await;
    }
}

#[tokio::test]
async fn expired_keys_and_suspended_tenants_are_refused() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let key = app.issue_key(tenant.id, &["read"]).await;
    let mut owner = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND key_id = $2")
        .bind(tenant.id.as_uuid())
        .bind(&key[30..42])
        .execute(&mut owner)
        .await
        .unwrap();
    let body = assert_problem(app.get("/v1/org", &key).await, 401).await;
    assert_eq!(body["detail"], "The API key has expired.");

    posture::store::operator::set_status(
        &app.owner,
        tenant.id,
        posture_domain::TenantStatus::Suspended,
    )
    .await
    .unwrap();
    let body = assert_problem(app.get("/v1/org", &tenant.admin_key).await, 403).await;
    assert_eq!(body["type"], "/problems/tenant-suspended");
}

#[tokio::test]
async fn revocation_reaches_another_instance_within_a_second() {
    let first = TestApp::spawn().await;
    let tenant = first.create_tenant(Tier::Enterprise).await;
    let shared = TestDatabase {
        name: first.database.name.clone(),
    };
    let config = test_config(&shared);
    let second = TestApp::spawn_on(shared, config).await;

    let key = first.issue_key(tenant.id, &["read"]).await;
    // The second instance verifies and caches the key.
    assert_eq!(second.get("/v1/org", &key).await.status(), 200);
    let key_id = format!("key_{}", &key[30..42]);
    assert_eq!(
        first
            .delete(&format!("/v1/api-keys/{key_id}"), &tenant.admin_key)
            .await
            .status(),
        204
    );

    // The revoking transaction notifies every server, and the key's cached
    // credentials are under the tenant's account generation, which it bumps.
    let took = eventually(Duration::from_secs(6), || async {
        second.get("/v1/org", &key).await.status() == 401
    })
    .await
    .expect("the revoked key still worked on the second instance after 6 s");
    assert!(took <= Duration::from_secs(1), "revocation took {took:?}");
}

#[tokio::test]
async fn created_keys_are_shown_once_stored_hashed_and_audited() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let created = app
        .post_json(
            "/v1/api-keys",
            &tenant.admin_key,
            &json!({"name": " ci pipeline ", "scopes": ["read", "write"]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let request_id = created.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = created.json().await.unwrap();
    let token = body["key"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sp_live_") && token.len() == 80);
    assert_eq!(body["name"], "ci pipeline");
    assert_eq!(body["scopes"], json!(["read", "write"]));
    assert_eq!(
        location,
        format!("/v1/api-keys/{}", body["id"].as_str().unwrap())
    );

    // The new key works, and is never shown again.
    assert_eq!(app.get("/v1/org", &token).await.status(), 200);
    let shown: Value = app
        .get(&location, &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert!(shown.get("key").is_none(), "{shown}");
    assert_eq!(shown["status"], "active");

    let mut owner = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT secret_hash FROM api_keys WHERE tenant_id = $1 AND key_id = $2")
            .bind(tenant.id.as_uuid())
            .bind(&token[30..42])
            .fetch_one(&mut owner)
            .await
            .unwrap();
    use sha2::Digest;
    assert_eq!(
        stored,
        sha2::Sha256::digest(&token.as_bytes()[42..74]).to_vec()
    );
    let audited: (String, Option<String>) = sqlx::query_as(
        "SELECT actor, request_id FROM audit_log WHERE tenant_id = $1 AND action = 'api_key.created' AND target = $2",
    )
    .bind(tenant.id.as_uuid())
    .bind(body["id"].as_str().unwrap())
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(audited.0, format!("key:key_{}", &tenant.admin_key[30..42]));
    assert_eq!(audited.1.as_deref(), Some(request_id.as_str()));
}

#[tokio::test]
async fn last_used_at_is_recorded_off_the_request_path() {
    let app = TestApp::spawn_with(|config| config.last_used_flush_secs = 1).await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let key = app.issue_key(tenant.id, &["read"]).await;
    let key_id = key[30..42].to_owned();
    let mut owner = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    assert!(read_last_used(&mut owner, &tenant.id, &key_id)
        .await
        .is_none());
    for _ in 0..5 {
        assert_eq!(app.get("/v1/org", &key).await.status(), 200);
    }
    let started = Instant::now();
    let mut recorded = None;
    while started.elapsed() < Duration::from_secs(5) && recorded.is_none() {
        recorded = read_last_used(&mut owner, &tenant.id, &key_id).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recorded = recorded.expect("last_used_at was not written within 5 s");
    assert!((chrono::Utc::now() - recorded).num_seconds() < 10);
}

/// One flush writes the keys of every tenant it saw in one statement, as the
/// application role; a key id is only ever matched within the tenant it was
/// verified for, and a key written within the last minute is left alone.
#[tokio::test]
async fn one_flush_records_the_keys_of_every_tenant_and_no_one_elses() {
    let app = TestApp::spawn().await;
    let first = app.create_tenant(Tier::Basic).await;
    let second = app.create_tenant(Tier::Enterprise).await;
    let first_key = key_id_of(&app.issue_key(first.id, &["read"]).await);
    let second_key = key_id_of(&app.issue_key(second.id, &["read"]).await);
    let as_app = Store::connect_lazy(
        &app.database.app_url(),
        &PoolSettings::for_command(&test_config(&app.database)),
    )
    .unwrap();
    let mut owner = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();

    // The second tenant's key id under the first tenant matches nothing.
    let misattributed = LastUsedRecorder::default();
    misattributed.record(first.id, &second_key);
    misattributed.flush(&as_app).await;
    assert_eq!(misattributed.pending_count(), 0);
    assert!(read_last_used(&mut owner, &second.id, second_key.as_str())
        .await
        .is_none());

    let recorder = LastUsedRecorder::default();
    recorder.record(first.id, &first_key);
    recorder.record(second.id, &second_key);
    assert_eq!(recorder.pending_count(), 2);
    recorder.flush(&as_app).await;
    let first_used = read_last_used(&mut owner, &first.id, first_key.as_str()).await;
    let second_used = read_last_used(&mut owner, &second.id, second_key.as_str()).await;
    let first_used = first_used.expect("the first tenant's key was not recorded");
    assert!(
        second_used.is_some(),
        "the second tenant's key was not recorded"
    );
    assert!((chrono::Utc::now() - first_used).num_seconds() < 10);

    // Another server reporting the same key a moment later writes nothing.
    let another_server = LastUsedRecorder::default();
    another_server.record(first.id, &first_key);
    another_server.flush(&as_app).await;
    assert_eq!(
        read_last_used(&mut owner, &first.id, first_key.as_str()).await,
        Some(first_used)
    );
}

/// The key id inside a full `sp_live_…` token.
fn key_id_of(token: &str) -> ApiKeyId {
    ApiKeyToken::parse(token)
        .expect("a well-formed token")
        .key_id()
        .clone()
}

async fn read_last_used(
    owner: &mut PgConnection,
    tenant_id: &posture_domain::TenantId,
    key_id: &str,
) -> Option<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar("SELECT last_used_at FROM api_keys WHERE tenant_id = $1 AND key_id = $2")
        .bind(tenant_id.as_uuid())
        .bind(key_id)
        .fetch_one(owner)
        .await
        .unwrap()
}
