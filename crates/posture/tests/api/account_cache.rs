//! API keys' credentials and `GET /v1/org` through the view cache, under the
//! tenant's account generation (docs/caching.md): concurrent misses load once,
//! instances share lookups through Redis, and revocations and tier changes
//! apply on the next request everywhere — while Redis is down too, through the
//! servers' PostgreSQL notifications.

use crate::auth::{eventually, fix_checksum};
use crate::caching::{get_if_none_match, header, metric, spawn_beside, use_redis};
use crate::support::redis::RedisServer;
use crate::support::TestApp;
use posture_domain::Tier;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinSet;

const ACCOUNT_LOADS: &str = "posture_cache_loads_total{views=\"account\"}";
const ACCOUNT_L2_HITS: &str = "posture_cache_hits_total{views=\"account\",layer=\"l2\"}";
const ACCOUNT_L1_HITS: &str = "posture_cache_hits_total{views=\"account\",layer=\"l1\"}";

/// `GET /v1/org`'s status and, when 200, its tier.
async fn org_tier(app: &TestApp, key: &str) -> (u16, Option<String>) {
    let response = app.get("/v1/org", key).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["tier"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn concurrent_first_uses_of_a_key_load_it_once_and_other_instances_get_it_from_redis() {
    let redis = RedisServer::start().await;
    let first = TestApp::spawn_with(|config| use_redis(config, &redis)).await;
    let second = spawn_beside(&first, |config| use_redis(config, &redis)).await;
    let tenant = first.create_tenant(Tier::Enterprise).await;

    // 32 requests at once with a key neither instance has seen. /v1/settings
    // is not cached itself, so every account load counted is the key's.
    let mut requests = JoinSet::new();
    for _ in 0..32 {
        let (client, url, key) = (
            first.client.clone(),
            format!("{}/v1/settings", first.address),
            tenant.admin_key.clone(),
        );
        requests.spawn(async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .map(|response| response.status().as_u16())
        });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap().unwrap(), 200);
    }
    assert_eq!(
        metric(&first, ACCOUNT_LOADS).await,
        1.0,
        "single flight: one PostgreSQL lookup for 32 concurrent misses"
    );
    // The other instance finds the credentials in Redis.
    assert_eq!(
        second.get("/v1/settings", &tenant.admin_key).await.status(),
        200
    );
    assert_eq!(metric(&second, ACCOUNT_LOADS).await, 0.0);
    assert_eq!(metric(&second, ACCOUNT_L2_HITS).await, 1.0);
    assert_eq!(
        second.get("/v1/settings", &tenant.admin_key).await.status(),
        200
    );
    assert_eq!(metric(&second, ACCOUNT_L1_HITS).await, 1.0);

    // The cached credentials hold the secret's hash, not a verdict: the right
    // key id with a wrong secret is refused, without another lookup.
    let mut wrong_secret = tenant.admin_key.clone().into_bytes();
    wrong_secret[50] = if wrong_secret[50] == b'a' { b'b' } else { b'a' };
    let wrong_secret = fix_checksum(&String::from_utf8(wrong_secret).unwrap());
    assert_eq!(
        second.get("/v1/settings", &wrong_secret).await.status(),
        401
    );
    assert_eq!(metric(&second, ACCOUNT_LOADS).await, 0.0);
}

#[tokio::test]
async fn a_revocation_reaches_another_instance_at_once_while_redis_is_down() {
    let mut redis = RedisServer::start().await;
    let first = TestApp::spawn_with(|config| use_redis(config, &redis)).await;
    let second = spawn_beside(&first, |config| use_redis(config, &redis)).await;
    let tenant = first.create_tenant(Tier::Enterprise).await;
    let key = first.issue_key(tenant.id, &["read"]).await;
    // Both instances hold the key's credentials in L1 (for 5 s by default).
    assert_eq!(first.get("/v1/org", &key).await.status(), 200);
    assert_eq!(second.get("/v1/org", &key).await.status(), 200);

    redis.kill();
    let key_id = format!("key_{}", &key[30..42]);
    let revoked = first
        .delete(&format!("/v1/api-keys/{key_id}"), &tenant.admin_key)
        .await;
    assert_eq!(revoked.status(), 204);
    // No generation bump can reach Redis: the notification does it.
    assert_eq!(first.get("/v1/org", &key).await.status(), 401);
    let took = eventually(Duration::from_secs(6), || async {
        second.get("/v1/org", &key).await.status() == 401
    })
    .await
    .expect("the revoked key still worked on the second instance after 6 s");
    assert!(
        took < Duration::from_secs(1),
        "the second instance accepted the revoked key for {took:?}"
    );
    // The admin key of the same tenant still works on both.
    assert_eq!(second.get("/v1/org", &tenant.admin_key).await.status(), 200);
    assert_eq!(first.get("/v1/org", &tenant.admin_key).await.status(), 200);
}

#[tokio::test]
async fn an_operators_tier_change_applies_to_cached_keys_and_org_on_every_instance() {
    let redis = RedisServer::start().await;
    let first = TestApp::spawn_with(|config| use_redis(config, &redis)).await;
    let second = spawn_beside(&first, |config| use_redis(config, &redis)).await;
    let tenant = first.create_tenant(Tier::Basic).await;
    let key = &tenant.admin_key;
    let framework =
        json!({"name": "Ours", "controls": [{"id": "C1", "title": "One", "cwes": [89]}]});
    for app in [&first, &second] {
        assert_eq!(org_tier(app, key).await, (200, Some("basic".into())));
        let refused = app.post_json("/v1/frameworks", key, &framework).await;
        assert_eq!(refused.status(), 403, "basic cannot create frameworks");
    }

    posture::store::operator::set_tier(&first.owner, tenant.id, Tier::Premium)
        .await
        .unwrap();
    for app in [&first, &second] {
        let took = eventually(Duration::from_secs(5), || async {
            org_tier(app, key).await == (200, Some("premium".into()))
        })
        .await
        .expect("the tier change never showed in /v1/org");
        assert!(took < Duration::from_secs(1), "it took {took:?}");
    }
    // The key's cached tier moved with it: premium may create frameworks.
    let created = second.post_json("/v1/frameworks", key, &framework).await;
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());

    // Suspension applies the same way.
    posture::store::operator::set_status(
        &first.owner,
        tenant.id,
        posture_domain::TenantStatus::Suspended,
    )
    .await
    .unwrap();
    for app in [&first, &second] {
        let took = eventually(Duration::from_secs(5), || async {
            app.get("/v1/org", key).await.status() == 403
        })
        .await
        .expect("the suspended tenant's key still worked");
        assert!(took < Duration::from_secs(1), "it took {took:?}");
    }
}

#[tokio::test]
async fn the_org_carries_an_etag_and_answers_304_until_the_tier_changes() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let key = &tenant.admin_key;
    let response = app.get("/v1/org", key).await;
    assert_eq!(response.status(), 200);
    let etag = header(&response, "etag").to_owned();
    assert!(header(&response, "cache-control").starts_with("private, max-age="));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tier"], "free");
    assert_eq!(body["limits"]["requests_per_minute"], 10);

    let unchanged = get_if_none_match(&app, "/v1/org", key, &etag).await;
    assert_eq!(unchanged.status(), 304);
    assert_eq!(header(&unchanged, "etag"), etag);
    assert!(unchanged.bytes().await.unwrap().is_empty());

    posture::store::operator::set_tier(&app.owner, tenant.id, Tier::Enterprise)
        .await
        .unwrap();
    let took = eventually(Duration::from_secs(5), || async {
        get_if_none_match(&app, "/v1/org", key, &etag)
            .await
            .status()
            == 200
    })
    .await
    .expect("the old ETag still matched after the tier change");
    assert!(took < Duration::from_secs(1), "it took {took:?}");
    let changed: Value = app.get("/v1/org", key).await.json().await.unwrap();
    assert_eq!(changed["tier"], "enterprise");
    assert_eq!(changed["limits"]["requests_per_day"], Value::Null);
}

#[tokio::test]
async fn credentials_forged_in_redis_are_not_trusted() {
    let redis = RedisServer::start().await;
    let app = TestApp::spawn_with(|config| use_redis(config, &redis)).await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    // An attacker who can write to Redis (but not PostgreSQL) picks a secret
    // for a key's id and plants credentials granting it admin: as they are,
    // and behind a made-up MAC. A fresh key for each, never used before, so
    // the server's first lookup finds the planted entry.
    for with_made_up_mac in [false, true] {
        let key = app.issue_key(tenant.id, &["read"]).await;
        let mut forged = key.clone().into_bytes();
        forged[50] = if forged[50] == b'a' { b'b' } else { b'a' };
        let forged = fix_checksum(&String::from_utf8(forged).unwrap());
        let token = posture_domain::ApiKeyToken::parse(&forged).unwrap();
        let planted = serde_json::to_vec(&json!({
            "secret_hash": token.secret_hash().as_bytes().to_vec(),
            "scopes": ["admin"],
            "expires_at": null,
            "revoked": false,
            "tier": "enterprise",
            "tenant_status": "active",
        }))
        .unwrap();
        let body = if with_made_up_mac {
            [vec![0u8; 32], planted].concat()
        } else {
            planted
        };
        let entry = format!(
            "{{t:{tenant}}}:view:{tenant}:acct:key:{key_id}:e0a0",
            tenant = tenant.id,
            key_id = token.key_id()
        );
        redis::cmd("SET")
            .arg(&entry)
            .arg(body)
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
        assert_eq!(app.get("/v1/api-keys", &forged).await.status(), 401);
        assert_eq!(
            metric(&app, ACCOUNT_L2_HITS).await,
            if with_made_up_mac { 2.0 } else { 1.0 },
            "the planted entry was read"
        );
        // The real key still works: its credentials come from PostgreSQL.
        assert_eq!(app.get("/v1/org", &key).await.status(), 200);
    }
}
