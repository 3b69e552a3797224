//! Tier rate limits and quotas end to end (docs/rate-limits.md), with the
//! clock injected: the exact sliding minute, the UTC day and month, two
//! servers sharing Redis, Redis dying, the headers, and the per-IP limit.
//! Each test runs its own `redis-server`.

use crate::auth::eventually;
use crate::caching::{use_redis, wait_for_breaker};
use crate::support::database::TestDatabase;
use crate::support::proxy::DbProxy;
use crate::support::redis::RedisServer;
use crate::support::{test_config, TestApp, TestTenant};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use posture::limits::clock::{Clock, ManualClock};
use posture_domain::Tier;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// A request's outcome: status, the headers a client reads, and the body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header; status {}", self.status))
            .to_str()
            .unwrap()
    }
}

pub(crate) async fn get(app: &TestApp, path: &str, key: &str) -> Answer {
    let response = app.get(path, key).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// An application on its own database and Redis, its limits on `clock`.
async fn spawn(redis: &RedisServer, clock: &Arc<ManualClock>) -> TestApp {
    spawn_tuned(TestDatabase::create().await, redis, clock, |_| {}).await
}

/// Another server on the same database, Redis and clock.
async fn spawn_second(first: &TestApp, redis: &RedisServer, clock: &Arc<ManualClock>) -> TestApp {
    spawn_tuned(same_database(first), redis, clock, |_| {}).await
}

/// A server whose limits are on, on `database`, with `tune` applied last.
async fn spawn_tuned(
    database: TestDatabase,
    redis: &RedisServer,
    clock: &Arc<ManualClock>,
    tune: fn(&mut posture::config::Config),
) -> TestApp {
    let mut config = test_config(&database);
    use_redis(&mut config, redis);
    config.rate_limits_enabled = true;
    config.usage_flush_interval_ms = 100;
    tune(&mut config);
    TestApp::spawn_on_with_clock(database, config, clock.clone()).await
}

fn same_database(first: &TestApp) -> TestDatabase {
    TestDatabase {
        name: first.database.name.clone(),
    }
}

/// Redis settings for a test about the count servers share, not about Redis
/// failing: on a test machine loaded by the rest of the suite, a fresh
/// server's first calls (connecting, loading the script) can take longer
/// than the usual 50 ms, and a server that falls back counts on its own.
fn patient_redis(config: &mut posture::config::Config) {
    config.redis_command_timeout_ms = 2_000;
    config.redis_connect_timeout_ms = 2_000;
    config.breaker_slow_call_ms = 2_000;
}

/// The tenant's recorded usage of `period` starting `start`, in PostgreSQL.
async fn recorded(app: &TestApp, tenant: &TestTenant, period: &str, start: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(requests), 0)::bigint FROM api_usage
         WHERE tenant_id = $1 AND period = $2 AND period_start = $3::date",
    )
    .bind(tenant.id.as_uuid())
    .bind(period)
    .bind(start)
    .fetch_one(app.owner.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_free_tenant_gets_exactly_ten_requests_per_sliding_minute_with_the_headers() {
    let redis = RedisServer::start().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-23T10:00:00Z")));
    let app = spawn(&redis, &clock).await;
    let tenant = app.create_tenant(Tier::Free).await;
    let key = &tenant.admin_key;

    let first = get(&app, "/v1/org", key).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("ratelimit-policy"),
        "\"minute\";q=10;w=60, \"day\";q=1000;w=86400, \"month\";q=10000;w=2592000"
    );
    assert_eq!(first.header("ratelimit"), "\"minute\";r=9;t=60");
    assert_eq!(first.header("x-ratelimit-limit"), "10");
    assert_eq!(first.header("x-ratelimit-remaining"), "9");
    for _ in 0..5 {
        assert_eq!(get(&app, "/v1/org", key).await.status, 200);
    }
    clock.advance(ChronoDuration::seconds(30));
    // Error responses are limited responses too: the headers are there.
    let missing = get(&app, "/v1/findings/fnd_000000000000", key).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("ratelimit"), "\"minute\";r=3;t=30");
    for _ in 0..3 {
        assert_eq!(get(&app, "/v1/org", key).await.status, 200);
    }

    // The 11th request within 60 s.
    let refused = get(&app, "/v1/org", key).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("content-type"), "application/problem+json");
    assert_eq!(refused.body["type"], "/problems/quota-exceeded");
    assert_eq!(refused.body["policy"], "minute");
    assert_eq!(refused.body["quota"], 10);
    // The six requests of 10:00:00 leave the window at 10:01:00, 30 s from now.
    assert_eq!(refused.header("retry-after"), "30");
    assert_eq!(refused.header("ratelimit"), "\"minute\";r=0;t=30");
    assert_eq!(refused.header("x-ratelimit-remaining"), "0");
    assert_eq!(
        refused.header("x-ratelimit-reset"),
        at("2026-11-23T10:01:00Z").timestamp().to_string()
    );

    clock.set(at("2026-11-23T10:00:59.999Z"));
    assert_eq!(get(&app, "/v1/org", key).await.status, 429);
    // The window slides: six requests leave it, six more are admitted.
    clock.set(at("2026-11-23T10:01:00Z"));
    let statuses = {
        let mut statuses = Vec::new();
        for _ in 0..7 {
            statuses.push(get(&app, "/v1/org", key).await.status);
        }
        statuses
    };
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429]);
    // Refused requests were not counted: the day shows the admitted ones.
    let usage = get(&app, "/v1/usage", key).await;
    assert_eq!(usage.status, 429, "the minute is still full");
    clock.advance(ChronoDuration::seconds(31));
    let usage = get(&app, "/v1/usage", key).await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    assert_eq!(usage.body["source"], "redis");
    assert_eq!(usage.body["policies"][1]["name"], "day");
    assert_eq!(usage.body["policies"][1]["used"], 17, "{}", usage.body);
    assert_eq!(usage.body["policies"][1]["remaining"], 983);
}

#[tokio::test]
async fn no_sixty_second_window_ever_admits_more_than_the_quota() {
    let redis = RedisServer::start().await;
    let start = at("2026-11-23T10:00:00Z");
    let clock = Arc::new(ManualClock::new(start));
    let app = spawn(&redis, &clock).await;
    let tenant = app.create_tenant(Tier::Free).await;
    // 400 requests at irregular times over about three minutes (a fixed LCG, so the
    // run is reproducible), bursts included.
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut offset_ms: i64 = 0;
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..400 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let gap = i64::try_from((seed >> 33) % 3_000).unwrap() * ((seed >> 20) % 3 == 0) as i64;
        offset_ms += gap;
        clock.set(start + ChronoDuration::milliseconds(offset_ms));
        match get(&app, "/v1/org", &tenant.admin_key).await.status {
            200 => admitted.push(offset_ms),
            429 => refused.push(offset_ms),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(offset_ms > 120_000, "the run spans several windows");
    let in_window_ending = |end: i64| {
        admitted
            .iter()
            .filter(|&&t| t > end - 60_000 && t <= end)
            .count()
    };
    for &t in &admitted {
        assert!(
            in_window_ending(t) <= 10,
            "{} admitted in the minute to {t} ms",
            in_window_ending(t)
        );
    }
    // And nothing was refused that fit: every refusal had a full window.
    for &t in &refused {
        assert_eq!(in_window_ending(t), 10, "refused at {t} ms with room left");
    }
    assert!(admitted.len() >= 30 && !refused.is_empty());
}

#[tokio::test]
async fn the_day_quota_cuts_off_at_1000_and_resets_at_utc_midnight() {
    let redis = RedisServer::start().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-23T22:00:00Z")));
    let app = spawn(&redis, &clock).await;
    let tenant = app.create_tenant(Tier::Free).await;
    let key = &tenant.admin_key;
    for minute in 0..100 {
        for request in 0..10 {
            let answer = get(&app, "/v1/org", key).await;
            assert_eq!(answer.status, 200, "minute {minute}, request {request}");
        }
        clock.advance(ChronoDuration::seconds(60));
    }
    // 23:40: the minute is empty, the day is used up.
    let refused = get(&app, "/v1/org", key).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["policy"], "day");
    assert_eq!(refused.body["quota"], 1000);
    assert_eq!(refused.header("retry-after"), (20 * 60).to_string());
    assert_eq!(refused.header("ratelimit"), "\"day\";r=0;t=1200");
    clock.set(at("2026-11-23T23:59:59.999Z"));
    assert_eq!(get(&app, "/v1/org", key).await.status, 429);
    clock.set(at("2026-11-24T00:00:00Z"));
    let next_day = get(&app, "/v1/org", key).await;
    assert_eq!(next_day.status, 200);
    assert_eq!(next_day.header("ratelimit"), "\"minute\";r=9;t=60");
    // Every admitted request reached PostgreSQL.
    let flushed = eventually(Duration::from_secs(5), || async {
        recorded(&app, &tenant, "day", "2026-11-23").await == 1000
            && recorded(&app, &tenant, "day", "2026-11-24").await == 1
    })
    .await;
    assert!(flushed.is_some(), "usage not flushed to PostgreSQL");
    assert_eq!(recorded(&app, &tenant, "month", "2026-11-01").await, 1001);
}

#[tokio::test]
async fn the_month_quota_is_seeded_from_postgres_survives_a_redis_loss_and_resets_on_the_first() {
    let mut redis = RedisServer::start().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-30T12:00:00Z")));
    // Patient with Redis: this test is about what Redis holds across a loss,
    // and a call that outlived the usual 50 ms on a loaded machine would be
    // decided by the in-process fallback instead (whose minute reset differs).
    let first = spawn_tuned(TestDatabase::create().await, &redis, &clock, patient_redis).await;
    let tenant = first.create_tenant(Tier::Free).await;
    let key = &tenant.admin_key;
    // The month so far, as PostgreSQL recorded it (earlier days, other servers).
    sqlx::query(
        "INSERT INTO api_usage (tenant_id, period, period_start, requests)
         VALUES ($1, 'month', '2026-11-01', 9990)",
    )
    .bind(tenant.id.as_uuid())
    .execute(first.owner.pool())
    .await
    .unwrap();
    // A server starting now seeds its counters from it.
    let app = spawn_tuned(same_database(&first), &redis, &clock, patient_redis).await;
    for request in 0..10 {
        assert_eq!(
            get(&app, "/v1/org", key).await.status,
            200,
            "request {request}"
        );
    }
    clock.advance(ChronoDuration::seconds(61));
    let refused = get(&app, "/v1/org", key).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["policy"], "month", "{}", refused.body);
    assert_eq!(refused.body["quota"], 10_000);
    let to_december = (at("2026-12-01T00:00:00Z") - clock.now()).num_seconds();
    assert_eq!(refused.header("retry-after"), to_december.to_string());
    assert_eq!(
        refused.header("ratelimit"),
        format!("\"month\";r=0;t={to_december}")
    );

    // Redis loses everything: the month is not reset, its floor is in PostgreSQL.
    let flushed = eventually(Duration::from_secs(5), || async {
        recorded(&app, &tenant, "month", "2026-11-01").await == 10_000
    })
    .await;
    assert!(
        flushed.is_some(),
        "the admitted requests never reached PostgreSQL"
    );
    redis.restart().await;
    wait_for_breaker(&app, "closed", Duration::from_secs(10)).await;
    clock.advance(ChronoDuration::seconds(61));
    let after_loss = get(&app, "/v1/org", key).await;
    assert_eq!(after_loss.status, 429, "{}", after_loss.body);
    assert_eq!(after_loss.body["policy"], "month");

    // The first of the month: a fresh quota.
    clock.set(at("2026-12-01T00:00:00Z"));
    let december = get(&app, "/v1/org", key).await;
    assert_eq!(december.status, 200);
    assert_eq!(december.header("ratelimit"), "\"minute\";r=9;t=60");
}

#[tokio::test]
async fn two_servers_sharing_redis_admit_the_limit_together() {
    let redis = RedisServer::start().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-23T10:00:00Z")));
    let first = spawn_tuned(TestDatabase::create().await, &redis, &clock, patient_redis).await;
    let second = spawn_tuned(same_database(&first), &redis, &clock, patient_redis).await;
    let tenant = first.create_tenant(Tier::Free).await;
    let mut requests = JoinSet::new();
    for i in 0..40 {
        let app = if i % 2 == 0 { &first } else { &second };
        let (client, url, key) = (
            app.client.clone(),
            format!("{}/v1/org", app.address),
            tenant.admin_key.clone(),
        );
        requests.spawn(async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = requests.join_next().await {
        statuses.push(status.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 30);
}

/// A busy enterprise tenant is admitted from leased slots: two servers leasing
/// from one Redis never admit more than the minute's quota together, most
/// decisions skip Redis, and what the leases did not use is given back, so
/// the day counts exactly the requests served.
#[tokio::test]
async fn leased_slots_never_exceed_the_quota_and_unused_ones_are_given_back() {
    let redis = RedisServer::start().await;
    let start = at("2026-11-23T10:00:00Z");
    let clock = Arc::new(ManualClock::new(start));
    let first = spawn(&redis, &clock).await;
    let second = spawn_second(&first, &redis, &clock).await;
    let tenant = first.create_tenant(Tier::Enterprise).await;
    // 1,300 requests 10 ms apart (13 s, one minute window): 50 a second on
    // each server, so each leases up to 40 slots (its cap) at a time, and
    // holds at most that lease and its refill.
    let (mut admitted, mut refused) = (0_u64, 0_u64);
    for i in 0..1_300_i64 {
        clock.set(start + ChronoDuration::milliseconds(i * 10));
        let app = if i % 2 == 0 { &first } else { &second };
        match get(app, "/v1/org", &tenant.admin_key).await.status {
            200 => admitted += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(admitted <= 1_000, "{admitted} admitted in one minute");
    assert!(
        admitted >= 1_000 - 2 * 2 * 40,
        "at most a lease and a refill per server may sit unused: {admitted} admitted"
    );
    assert_eq!(admitted + refused, 1_300);
    let mut leased = 0.0;
    for app in [&first, &second] {
        leased += crate::caching::metric(
            app,
            "posture_rate_limit_decisions_without_redis_total{reason=\"leased\"}",
        )
        .await;
    }
    assert!(
        leased >= 800.0,
        "only {leased} of {admitted} admissions came from leases"
    );

    // Once the last leases end, their unused slots are given back: the day
    // counts only the requests served, in Redis and in PostgreSQL.
    clock.advance(ChronoDuration::seconds(2));
    let client = redis::Client::open(redis.url()).unwrap();
    let connection = client.get_multiplexed_async_connection().await.unwrap();
    let day_key = format!(
        "{}:rl:day:20261123",
        posture::limits::window::tenant_tag(tenant.id)
    );
    let counted = || {
        let (mut connection, day_key) = (connection.clone(), day_key.clone());
        async move {
            redis::cmd("GET")
                .arg(&day_key)
                .query_async::<Option<u64>>(&mut connection)
                .await
                .unwrap()
        }
    };
    let settled = eventually(Duration::from_secs(10), || async {
        counted().await == Some(admitted)
    })
    .await;
    assert!(
        settled.is_some(),
        "the day counts {:?}, {admitted} were served",
        counted().await
    );
    let in_postgres = eventually(Duration::from_secs(10), || async {
        recorded(&first, &tenant, "day", "2026-11-23").await == i64::try_from(admitted).unwrap()
    })
    .await;
    assert!(in_postgres.is_some(), "PostgreSQL's usage disagrees");
}

#[tokio::test]
async fn killing_redis_fails_no_request_and_usage_stays_consistent_with_postgres() {
    let mut redis = RedisServer::start().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-23T10:00:00Z")));
    let app = spawn(&redis, &clock).await;
    let tenant = app.create_tenant(Tier::Free).await;
    let key = &tenant.admin_key;
    for _ in 0..4 {
        assert_eq!(get(&app, "/v1/org", key).await.status, 200);
    }
    redis.kill();
    // A new minute, Redis gone: this server's own GCRA admits the tier's
    // per-minute quota and refuses the rest; nothing fails.
    clock.advance(ChronoDuration::seconds(61));
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(get(&app, "/v1/org", key).await.status);
    }
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
    let admitted_locally = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(admitted_locally, 10, "{statuses:?}");
    let usage = get(&app, "/v1/usage", key).await;
    // Still within the GCRA's burst? No: the minute is full, so 429 — but
    // never a 5xx. After the minute the usage reads from the local estimate.
    assert!(usage.status == 429 || usage.status == 200);
    clock.advance(ChronoDuration::seconds(61));
    let local_usage = get(&app, "/v1/usage", key).await;
    assert_eq!(local_usage.status, 200, "{}", local_usage.body);
    assert_eq!(local_usage.body["source"], "local");

    // Redis returns empty; once the flush caught up, Redis, PostgreSQL and
    // /v1/usage agree.
    let admitted_total = 4 + admitted_locally as i64 + 1;
    let flushed = eventually(Duration::from_secs(5), || async {
        recorded(&app, &tenant, "day", "2026-11-23").await == admitted_total
    })
    .await;
    assert!(
        flushed.is_some(),
        "the outage's requests never reached PostgreSQL"
    );
    redis.restart().await;
    wait_for_breaker(&app, "closed", Duration::from_secs(10)).await;
    clock.advance(ChronoDuration::seconds(61));
    let usage = get(&app, "/v1/usage", key).await;
    assert_eq!(usage.status, 200);
    assert_eq!(usage.body["source"], "redis");
    assert_eq!(
        usage.body["policies"][1]["used"].as_i64(),
        Some(admitted_total + 1),
        "{}",
        usage.body
    );
    let consistent = eventually(Duration::from_secs(5), || async {
        recorded(&app, &tenant, "day", "2026-11-23").await == admitted_total + 1
    })
    .await;
    assert!(consistent.is_some());
}

#[tokio::test]
async fn a_refusal_costs_no_database_work() {
    let redis = RedisServer::start().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-23T10:00:00Z")));
    let database = TestDatabase::create().await;
    let mut config = test_config(&database);
    use_redis(&mut config, &redis);
    config.rate_limits_enabled = true;
    let proxy = DbProxy::in_front_of(&database, &mut config).await;
    let app = TestApp::spawn_on_with_clock(database, config, clock.clone()).await;
    let tenant = app.create_tenant(Tier::Free).await;
    let key = &tenant.admin_key;
    for _ in 0..10 {
        assert_eq!(get(&app, "/v1/org", key).await.status, 200);
    }
    // The application's database is unreachable: a request that needs it
    // gets 503, a refused one is answered from Redis alone.
    proxy.stop();
    let refused = get(&app, "/v1/findings", key).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["policy"], "minute");
    clock.advance(ChronoDuration::seconds(61));
    let needs_database = get(&app, "/v1/findings", key).await;
    assert_eq!(needs_database.status, 503);
    proxy.resume().await;
}

#[tokio::test]
async fn an_operators_tier_change_applies_from_the_next_request() {
    let redis = RedisServer::start().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-23T10:00:00Z")));
    let app = spawn(&redis, &clock).await;
    let tenant = app.create_tenant(Tier::Free).await;
    let key = &tenant.admin_key;
    for _ in 0..10 {
        assert_eq!(get(&app, "/v1/org", key).await.status, 200);
    }
    assert_eq!(get(&app, "/v1/org", key).await.status, 429);
    posture::store::operator::set_tier(&app.owner, tenant.id, Tier::Basic)
        .await
        .unwrap();
    let took = eventually(Duration::from_secs(5), || async {
        get(&app, "/v1/org", key).await.status == 200
    })
    .await
    .expect("the new tier's limit never applied");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let answer = get(&app, "/v1/org", key).await;
    assert_eq!(
        answer.header("ratelimit-policy"),
        "\"minute\";q=60;w=60, \"day\";q=5000;w=86400, \"month\";q=50000;w=2592000"
    );
}

/// `GET path` with `key`, as a client at `ip` behind the trusted proxy.
async fn get_from(app: &TestApp, ip: &str, path: &str, key: &str) -> Answer {
    let response = app
        .client
        .get(format!("{}{path}", app.address))
        .bearer_auth(key)
        .header("x-forwarded-for", format!("198.51.100.77, {ip}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn clients_without_a_valid_key_are_limited_per_ip_not_on_a_tenants_quota() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limits_enabled = true;
        config.ip_rate_limit_per_minute = 5;
        config.trust_forwarded_for = true;
    })
    .await;
    let tenant = app.create_tenant(Tier::Free).await;
    let guesser = "203.0.113.5";
    let unknown = posture_domain::ApiKeyToken::generate(
        posture_domain::TenantId::new_random(),
        &mut rand::rngs::OsRng,
    )
    .expose();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(get_from(&app, guesser, "/v1/org", &unknown).await.status);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    let refused = get_from(&app, guesser, "/v1/org", "sp_live_garbage").await;
    assert_eq!(refused.body["policy"], "ip-minute");
    assert!(refused.header("retry-after").parse::<u64>().unwrap() >= 1);
    // Once limited, the client's keys are not even looked up: fresh
    // well-formed keys cost no account load, and even a valid key waits.
    let loads = "posture_cache_loads_total{views=\"account\"}";
    let before = crate::caching::metric(&app, loads).await;
    for _ in 0..3 {
        let guess = posture_domain::ApiKeyToken::generate(
            posture_domain::TenantId::new_random(),
            &mut rand::rngs::OsRng,
        )
        .expose();
        assert_eq!(get_from(&app, guesser, "/v1/org", &guess).await.status, 429);
    }
    assert_eq!(crate::caching::metric(&app, loads).await, before);
    assert_eq!(
        get_from(&app, guesser, "/v1/org", &tenant.admin_key)
            .await
            .status,
        429
    );
    // Public routes share the client's limit.
    let catalog = get_from(&app, guesser, "/v1/catalog/frameworks", "").await;
    assert_eq!(catalog.status, 429);
    // Another address is untouched, and a valid key there is limited by its
    // tenant's quota only, which the guesser's failures did not consume.
    let org = get_from(&app, "203.0.113.6", "/v1/org", &tenant.admin_key).await;
    assert_eq!(org.status, 200);
    assert_eq!(org.header("ratelimit"), "\"minute\";r=9;t=60");
    assert_eq!(
        get_from(&app, "203.0.113.6", "/v1/catalog/frameworks", "")
            .await
            .status,
        200
    );
}

/// Starts three cluster-mode nodes and joins them into a cluster of three
/// masters (`redis-cli --cluster create`), waiting until every node reports
/// `cluster_state:ok`.
async fn three_master_cluster() -> Vec<RedisServer> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(RedisServer::start_cluster_node().await);
    }
    let addresses: Vec<String> = nodes
        .iter()
        .map(|node| format!("127.0.0.1:{}", node.port()))
        .collect();
    let created = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
    })
    .await
    .unwrap()
    .expect("running redis-cli (it comes with redis-server)");
    assert!(
        created.status.success(),
        "redis-cli --cluster create failed: {}",
        String::from_utf8_lossy(&created.stdout)
    );
    for node in &nodes {
        let ready = eventually(Duration::from_secs(10), || async {
            let client = redis::Client::open(node.url()).unwrap();
            let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async::<String>(&mut connection)
                .await
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
        .await;
        assert!(
            ready.is_some(),
            "node {} never reported cluster_state:ok",
            node.port()
        );
    }
    nodes
}

#[tokio::test]
async fn the_limit_script_runs_on_a_three_master_redis_cluster() {
    use posture::limits::window::{self, Limits, Mode, WindowCall};
    let nodes = three_master_cluster().await;
    let client =
        redis::cluster::ClusterClient::new(nodes.iter().map(|node| node.url()).collect::<Vec<_>>())
            .unwrap();
    let mut cluster = client.get_async_connection().await.unwrap();
    let limits = Limits {
        minute: 10,
        day: Some(1_000),
        month: Some(10_000),
        day_floor: 0,
        month_floor: 0,
    };
    let start = at("2026-11-23T10:00:00Z");
    // Tenants whose keys land on different masters: each call's three keys
    // share the tenant's hash tag, so a script touching them is not CROSSSLOT.
    let mut slots = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let tenant = posture_domain::TenantId::new_random();
        let tag = window::tenant_tag(tenant);
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("{tag}:rl:slots"))
            .query_async(&mut cluster)
            .await
            .unwrap();
        slots.insert(slot / (16_384 / 3 + 1));
        let mut outcomes = Vec::new();
        for i in 0..12 {
            let now = start + ChronoDuration::milliseconds(i);
            let call = WindowCall::new(&tag, limits, now, &format!("m{i}"), Mode::Check);
            let raw = match call.evalsha().query_async(&mut cluster).await {
                Err(error) if window::is_no_script(&error) => {
                    call.eval().query_async(&mut cluster).await
                }
                other => other,
            }
            .unwrap_or_else(|error| panic!("the script failed on the cluster: {error}"));
            outcomes.push(window::parse_reply(raw));
        }
        assert!(outcomes[..10].iter().all(|reply| reply.refused.is_none()));
        assert!(outcomes[10..]
            .iter()
            .all(|reply| reply.refused == Some(posture::limits::policy::PolicyName::Minute)));
        assert_eq!(outcomes[9].counts.minute, 10);
        assert_eq!(outcomes[9].counts.day, 10);
        assert_eq!(outcomes[11].counts.month, 10, "refusals are not counted");
    }
    assert!(slots.len() >= 2, "the tenants all landed on one master");
}

#[tokio::test]
async fn the_usage_functions_take_no_more_than_they_must_from_the_app_role() {
    use sqlx::{Connection, PgConnection};
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let mut connection = PgConnection::connect(&app.database.app_url())
        .await
        .unwrap();
    let add = |count: i64| {
        sqlx::query("SELECT add_api_usage($1, $2, $3, $4)")
            .bind(vec![tenant.id.as_uuid()])
            .bind(vec!["month"])
            .bind(vec![chrono::Utc::now().date_naive()])
            .bind(vec![count])
    };
    assert!(add(100_000_000).execute(&mut connection).await.is_err());
    assert!(add(-1).execute(&mut connection).await.is_err());
    add(5).execute(&mut connection).await.unwrap();
    // Old rows go, current ones stay, whatever the caller would like.
    sqlx::query(
        "INSERT INTO api_usage (tenant_id, period, period_start, requests)
         VALUES ($1, 'day', current_date - 30, 7), ($1, 'month', current_date - 800, 7),
                ($1, 'day', current_date, 3)",
    )
    .bind(tenant.id.as_uuid())
    .execute(app.owner.pool())
    .await
    .unwrap();
    let pruned: i64 = sqlx::query_scalar("SELECT prune_api_usage()")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM api_usage WHERE tenant_id = $1")
        .bind(tenant.id.as_uuid())
        .fetch_one(app.owner.pool())
        .await
        .unwrap();
    assert_eq!(left, 2, "the current day and month remain");
}
