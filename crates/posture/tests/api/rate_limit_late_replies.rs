//! A limit call Redis carried out but whose reply came too late (issue 8):
//! the request was decided without Redis, so the slots Redis counted for it
//! are given back with the tenant's next call. Before, under load, such calls
//! left their slots counted, unused, for a minute, and tenants well inside
//! their quota were refused.

use crate::caching::use_redis;
use crate::rate_limits::{at, get};
use crate::support::database::TestDatabase;
use crate::support::late_reply_proxy::LateReplyProxy;
use crate::support::redis::RedisServer;
use crate::support::{test_config, TestApp};
use posture::limits::clock::ManualClock;
use posture_domain::Tier;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn slots_of_a_call_whose_reply_came_too_late_are_given_back() {
    let redis = RedisServer::start().await;
    let upstream: SocketAddr = format!("127.0.0.1:{}", redis.port()).parse().unwrap();
    let proxy = LateReplyProxy::start(upstream).await;
    let database = TestDatabase::create().await;
    let mut config = test_config(&database);
    use_redis(&mut config, &redis);
    config.redis_url = posture::config::SecretUrl::new(proxy.url());
    // This test is about the slots, not the breaker: it stays closed.
    config.breaker_minimum_calls = 1_000;
    config.breaker_window = 1_000;
    config.rate_limits_enabled = true;
    let clock = Arc::new(ManualClock::new(at("2026-11-23T10:00:00Z")));
    let app = TestApp::spawn_on_with_clock(database, config, clock.clone()).await;
    // Free: ten a minute, one slot per call (no leases).
    let tenant = app.create_tenant(Tier::Free).await;
    let key = &tenant.admin_key;

    for _ in 0..3 {
        assert_eq!(get(&app, "/v1/org", key).await.status, 200);
    }
    // Redis counts the next three, but its replies come after the command
    // timeout: the requests are admitted by the in-process fallback.
    proxy.delay_replies(Duration::from_millis(300));
    for _ in 0..3 {
        assert_eq!(get(&app, "/v1/org", key).await.status, 200);
    }
    proxy.delay_replies(Duration::ZERO);
    proxy.delivered().await;

    // Redis confirmed three of the ten: seven more, then the refusal.
    let mut admitted = 0;
    loop {
        let answer = get(&app, "/v1/org", key).await;
        if answer.status == 429 {
            break;
        }
        assert_eq!(answer.status, 200);
        admitted += 1;
        assert!(admitted <= 10, "never refused");
    }
    assert_eq!(
        admitted, 7,
        "the slots Redis counted for the late calls were not given back"
    );
}
