//! The caching layer end to end (docs/caching.md): HTTP caching (`ETag`,
//! `If-None-Match`, `Cache-Control`); Redis dying or hanging under load costs a
//! cold cache, never a failed request, and the circuit breaker opens and closes
//! again; a change reaches another instance within `cache_version_ttl_ms`; and
//! the service runs without Redis at all.
//!
//! Each test runs its own `redis-server` (support/redis.rs), so killing or
//! pausing it touches no other test.

use crate::support::database::TestDatabase;
use crate::support::redis::RedisServer;
use crate::support::{test_config, TestApp, TestTenant};
use posture::config::{Config, SecretUrl};
use posture_domain::Tier;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The command timeout the tests configure.
const COMMAND_TIMEOUT_MS: u64 = 50;

/// Points the application at `redis`, with a breaker quick to open and to
/// probe again, so a test sees both within a second or two.
pub(crate) fn use_redis(config: &mut Config, redis: &RedisServer) {
    config.redis_url = SecretUrl::new(redis.url());
    config.redis_command_timeout_ms = COMMAND_TIMEOUT_MS;
    config.redis_connect_timeout_ms = 100;
    config.redis_health_interval_ms = 100;
    config.breaker_window = 20;
    config.breaker_minimum_calls = 5;
    config.breaker_failure_rate_percent = 50;
    config.breaker_slow_call_ms = 40;
    config.breaker_open_wait_ms = 500;
    config.breaker_half_open_probes = 3;
}

/// A SARIF report with one result per `(rule, level, line)` in `a.py`.
fn sarif(results: &[(&str, &str, u32)]) -> Value {
    let results: Vec<Value> = results
        .iter()
        .map(|(rule, level, line)| {
            json!({"ruleId": rule, "level": level, "message": {"text": rule},
                   "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a.py"},
                                                       "region": {"startLine": line}}}]})
        })
        .collect();
    json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": results}]})
}

/// Ingests a full scan of one repository with `results` and waits until the
/// posture shows it.
async fn scan(app: &TestApp, tenant: &TestTenant, results: &[(&str, &str, u32)]) {
    let scan = app
        .ingest_sarif(
            &tenant.admin_key,
            "asset_kind=repository&asset_name=acme/api&scope=full",
            &sarif(results),
        )
        .await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    app.wait_for_posture(tenant.id).await;
}

/// The three findings most tests start from.
const FINDINGS: &[(&str, &str, u32)] = &[
    ("sqli", "error", 1),
    ("xss", "warning", 2),
    ("style", "note", 3),
];

/// `GET /health/ready`: status and body.
async fn ready(app: &TestApp) -> (u16, Value) {
    let response = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .expect("readiness request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("readiness JSON"))
}

/// The value of the `/metrics` sample `series` (name with its labels, as printed).
pub(crate) async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics request")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|value| value.trim().parse::<f64>().expect("a numeric sample"))
        })
        .unwrap_or_else(|| panic!("no `{series}` in /metrics:\n{text}"))
}

const L2_HITS: &str = "posture_cache_hits_total{views=\"posture\",layer=\"l2\"}";
const REDIS_CALLS: &str = "posture_redis_calls_total";
const REDIS_BYPASSED: &str = "posture_redis_bypassed_total";
const L1_HITS: &str = "posture_cache_hits_total{views=\"posture\",layer=\"l1\"}";

/// Polls `/health/ready` until `redis.breaker` is `state` (every poll must be
/// 200: Redis is never required for readiness); returns how long it took.
pub(crate) async fn wait_for_breaker(app: &TestApp, state: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = ready(app).await;
        assert_eq!(status, 200, "readiness depends on Redis: {body}");
        if body["redis"]["breaker"] == state {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the breaker is not {state} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One request of the load.
#[derive(Debug, Clone, Copy)]
struct Sample {
    started: Instant,
    latency: Duration,
    /// The HTTP status, or 0 when no response came.
    status: u16,
}

/// `GET /v1/posture` in a loop on `loops` concurrent connections, and a watch
/// on `/health/ready`, until [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    requests: JoinSet<Vec<Sample>>,
    /// (readiness status, breaker) of every poll.
    health: tokio::task::JoinHandle<Vec<(u16, String)>>,
}

impl Load {
    fn start(app: &TestApp, key: &str, loops: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        // A generous timeout: a hung request shows up as a failure, not a hung test.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut requests = JoinSet::new();
        for _ in 0..loops {
            let (client, stop) = (client.clone(), stop.clone());
            let url = format!("{}/v1/posture", app.address);
            let key = key.to_owned();
            requests.spawn(async move {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let status = match client.get(&url).bearer_auth(&key).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            match response.bytes().await {
                                Ok(body) if status != 200 || !body.is_empty() => status,
                                _ => 0,
                            }
                        }
                        Err(_) => 0,
                    };
                    samples.push(Sample {
                        started,
                        latency: started.elapsed(),
                        status,
                    });
                }
                samples
            });
        }
        let (health_client, health_stop) = (client, stop.clone());
        let ready_url = format!("{}/health/ready", app.address);
        let health = tokio::spawn(async move {
            let mut seen = Vec::new();
            while !health_stop.load(Ordering::Relaxed) {
                let observed = match health_client.get(&ready_url).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        let breaker = body["redis"]["breaker"].as_str().unwrap_or("?");
                        (status, breaker.to_owned())
                    }
                    Err(error) => (0, error.to_string()),
                };
                seen.push(observed);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            seen
        });
        Load {
            stop,
            requests,
            health,
        }
    }

    /// Stops the load; returns every request (by start time) and every health poll.
    async fn finish(mut self) -> (Vec<Sample>, Vec<(u16, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        while let Some(done) = self.requests.join_next().await {
            samples.extend(done.expect("load task"));
        }
        samples.sort_by_key(|sample| sample.started);
        (samples, self.health.await.expect("health task"))
    }
}

/// Requests started in one phase of a test, summarised.
#[derive(Debug)]
struct PhaseStats {
    requests: usize,
    failed: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Requests started in `[from, to)`.
fn phase(samples: &[Sample], from: Instant, to: Instant) -> PhaseStats {
    stats(
        samples
            .iter()
            .filter(|sample| sample.started >= from && sample.started < to),
    )
}

/// Requests in flight at some time in `[from, to)` — started there, or
/// started before and still running at `from`.
fn overlapping(samples: &[Sample], from: Instant, to: Instant) -> PhaseStats {
    stats(
        samples
            .iter()
            .filter(|sample| sample.started < to && sample.started + sample.latency > from),
    )
}

fn stats<'a>(samples: impl Iterator<Item = &'a Sample>) -> PhaseStats {
    let mut failed = 0;
    let mut latencies: Vec<Duration> = samples
        .inspect(|sample| failed += usize::from(sample.status != 200))
        .map(|sample| sample.latency)
        .collect();
    latencies.sort();
    let at = |quantile: f64| {
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = (quantile * latencies.len() as f64).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1]
    };
    PhaseStats {
        requests: latencies.len(),
        failed,
        p50: at(0.50),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    }
}

fn report(test: &str, name: &str, stats: &PhaseStats, span: Duration) {
    eprintln!(
        "[{test}] {name:<22} {span:>7.0?}: {:>5} requests, {} failed, p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        stats.requests, stats.failed, stats.p50, stats.p99, stats.max
    );
}

/// A second application on `app`'s database (the database outlives both; test
/// databases are dropped by scripts/drop-test-databases.sh, never by a test).
pub(crate) async fn spawn_beside(app: &TestApp, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let shared = TestDatabase {
        name: app.database.name.clone(),
    };
    let mut config = test_config(&shared);
    adjust(&mut config);
    TestApp::spawn_on(shared, config).await
}

pub(crate) fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("an ASCII header")
}

/// `GET path` with `If-None-Match: tag`.
pub(crate) async fn get_if_none_match(
    app: &TestApp,
    path: &str,
    key: &str,
    tag: &str,
) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.address))
        .bearer_auth(key)
        .header("if-none-match", tag)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn cached_reads_carry_an_etag_answer_304_and_change_tag_with_the_data() {
    let redis = RedisServer::start().await;
    let app = TestApp::spawn_with(|config| use_redis(config, &redis)).await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    scan(&app, &tenant, FINDINGS).await;

    let mut tags = Vec::new();
    for path in ["/v1/posture", "/v1/compliance"] {
        let first = app.get(path, key).await;
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(
            header(&first, "cache-control"),
            "private, max-age=5",
            "{path}"
        );
        assert_eq!(header(&first, "content-type"), "application/json", "{path}");
        let etag = header(&first, "etag").to_owned();
        assert!(
            etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
            "{path}: a strong tag, quoted: {etag}"
        );
        let body: Value = first.json().await.expect("JSON");
        assert!(body.is_object(), "{path}: {body}");

        // The same tag again: the body is the same.
        let again = app.get(path, key).await;
        assert_eq!(header(&again, "etag"), etag, "{path}: a stable tag");

        // The client has it: 304, no body, the same tag and caching headers.
        let not_modified = get_if_none_match(&app, path, key, &etag).await;
        assert_eq!(not_modified.status(), 304, "{path}");
        assert_eq!(header(&not_modified, "etag"), etag, "{path}");
        assert_eq!(
            header(&not_modified, "cache-control"),
            "private, max-age=5",
            "{path}"
        );
        assert!(
            not_modified.bytes().await.unwrap().is_empty(),
            "{path}: a 304 has no body"
        );
        // Weak comparison, a list, and `*` match too; another tag does not.
        for matching in [format!("W/{etag}"), format!("\"nope\", {etag}"), "*".into()] {
            let response = get_if_none_match(&app, path, key, &matching).await;
            assert_eq!(response.status(), 304, "{path}: If-None-Match: {matching}");
        }
        let other = get_if_none_match(&app, path, key, "\"0123456789abcdef\"").await;
        assert_eq!(other.status(), 200, "{path}");
        assert_eq!(header(&other, "etag"), etag, "{path}");
        tags.push((path, etag, body));
    }

    // A change: one more finding. Once its refresh is stored, the old tags get
    // the new bodies (200) with new tags.
    scan(
        &app,
        &tenant,
        &[
            ("sqli", "error", 1),
            ("xss", "warning", 2),
            ("style", "note", 3),
            ("cmdi", "error", 4),
        ],
    )
    .await;
    let refreshed = Instant::now();
    for (path, old_tag, old_body) in tags {
        // The refresh deletes its job when it commits and bumps the cache
        // generation just after, so allow that instant (and nothing like the
        // cache's TTLs) before the change shows.
        let response = loop {
            let response = get_if_none_match(&app, path, key, &old_tag).await;
            if response.status() != 304 || refreshed.elapsed() > Duration::from_millis(500) {
                break response;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let took = refreshed.elapsed();
        assert_eq!(
            response.status(),
            200,
            "{path}: the old tag still matched {took:?} after the refresh"
        );
        eprintln!("[http] {path}: the old tag got 200 {took:?} after the refresh");
        let new_tag = header(&response, "etag").to_owned();
        assert_ne!(new_tag, old_tag, "{path}");
        assert_eq!(header(&response, "cache-control"), "private, max-age=5");
        let body: Value = response.json().await.unwrap();
        assert_ne!(body, old_body, "{path}");
        if path == "/v1/posture" {
            assert_eq!(body["open_by_severity"]["high"], 2, "{body}");
            assert!(
                body["score"].as_u64() < old_body["score"].as_u64(),
                "{body}"
            );
        }
        let current = get_if_none_match(&app, path, key, &new_tag).await;
        assert_eq!(current.status(), 304, "{path}: the new tag is current");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_under_load_fails_no_request_and_the_breaker_recovers() {
    const TEST: &str = "redis-killed";
    let mut redis = RedisServer::start().await;
    // Without L1 every read goes to Redis, so its death is felt at once.
    let app = TestApp::spawn_with(|config| {
        use_redis(config, &redis);
        config.cache_l1_enabled = false;
        config.db_pool_max = 8;
    })
    .await;
    let tenant = app.create_tenant(Tier::Premium).await;
    scan(&app, &tenant, FINDINGS).await;
    wait_for_breaker(&app, "closed", Duration::from_secs(5)).await;

    let load = Load::start(&app, &tenant.admin_key, 4);
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up under load
    let l2_before = metric(&app, L2_HITS).await;
    assert!(
        l2_before > 0.0,
        "reads were served from Redis before it died"
    );

    let killed = Instant::now();
    redis.kill();
    let to_open = wait_for_breaker(&app, "open", Duration::from_secs(5)).await;
    let opened = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await; // Redis dead, breaker open
    let l2_dead = metric(&app, L2_HITS).await;

    let restarted = Instant::now();
    redis.restart().await;
    let to_close = wait_for_breaker(&app, "closed", Duration::from_secs(10)).await;
    let closed = Instant::now();
    let l2_recovered = metric(&app, L2_HITS).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // recovered
    let l2_after = metric(&app, L2_HITS).await;
    let ended = Instant::now();
    let (samples, health) = load.finish().await;

    let before = phase(&samples, began, killed);
    let dead = phase(&samples, killed, restarted);
    let after = phase(&samples, restarted, ended);
    let total = phase(&samples, began, ended);
    report(TEST, "before", &before, killed - began);
    report(TEST, "redis dead", &dead, restarted - killed);
    report(
        TEST,
        "  of which open",
        &phase(&samples, opened, restarted),
        restarted - opened,
    );
    report(TEST, "after restart", &after, ended - restarted);
    report(
        TEST,
        "  of which closed",
        &phase(&samples, closed, ended),
        ended - closed,
    );
    let transitions = metric(&app, "posture_redis_breaker_transitions_total").await;
    eprintln!(
        "[{TEST}] breaker open {to_open:?} after the kill, closed {to_close:?} after the \
         restart; {transitions} transitions; {} health polls; L2 hits: {l2_before} before the \
         kill, {l2_dead} at the restart, {l2_recovered} once closed, {l2_after} at the end",
        health.len()
    );

    let failures: Vec<&Sample> = samples.iter().filter(|s| s.status != 200).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        samples.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(total.failed, 0);
    for (name, stats) in [("before", &before), ("dead", &dead), ("after", &after)] {
        assert!(stats.requests > 0, "no requests in phase {name}");
    }
    assert!(!health.is_empty());
    let unready: Vec<_> = health.iter().filter(|(status, _)| *status != 200).collect();
    assert!(
        unready.is_empty(),
        "readiness was not 200 throughout: {unready:?}"
    );
    assert!(
        transitions >= 3.0,
        "closed → open → half-open → … → closed: {transitions} transitions"
    );
    assert!(
        l2_after > l2_dead,
        "L2 served reads again after Redis returned ({l2_dead} → {l2_after})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_at_most_the_command_timeout_until_the_breaker_opens() {
    const TEST: &str = "redis-paused";
    let redis = RedisServer::start().await;
    let app = TestApp::spawn_with(|config| {
        use_redis(config, &redis);
        config.cache_l1_enabled = false;
        config.db_pool_max = 8;
        // Open longer than the open phase below, so that phase has no
        // half-open probes (each of which may wait out a command timeout).
        config.breaker_open_wait_ms = 1_500;
    })
    .await;
    let tenant = app.create_tenant(Tier::Premium).await;
    scan(&app, &tenant, FINDINGS).await;
    wait_for_breaker(&app, "closed", Duration::from_secs(5)).await;

    let load = Load::start(&app, &tenant.admin_key, 4);
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up under load
    assert!(metric(&app, L2_HITS).await > 0.0, "reads went to Redis");

    let paused = Instant::now();
    redis.pause();
    let to_open = wait_for_breaker(&app, "open", Duration::from_secs(5)).await;
    let opened = Instant::now();
    let calls_when_opened = metric(&app, REDIS_CALLS).await;
    let bypassed_when_opened = metric(&app, REDIS_BYPASSED).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // hung, breaker open
    let calls_when_resumed = metric(&app, REDIS_CALLS).await;
    let bypassed_when_resumed = metric(&app, REDIS_BYPASSED).await;
    let resumed = Instant::now();
    redis.resume();
    let to_close = wait_for_breaker(&app, "closed", Duration::from_secs(10)).await;
    let closed = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await; // recovered
    let ended = Instant::now();
    let (samples, health) = load.finish().await;

    // Requests caught by the hang while the breaker was closed include those
    // already running when Redis stopped; the open phase's started after it opened.
    let before = phase(&samples, began, paused);
    let hung_closed = overlapping(&samples, paused, opened);
    let hung_open = phase(&samples, opened, resumed);
    let after = phase(&samples, resumed, ended);
    report(TEST, "before", &before, paused - began);
    report(TEST, "hung, breaker closed", &hung_closed, opened - paused);
    report(TEST, "hung, breaker open", &hung_open, resumed - opened);
    report(TEST, "after resume", &after, ended - resumed);
    eprintln!(
        "[{TEST}] breaker open {to_open:?} after the pause, closed {to_close:?} after the \
         resume ({:?} closed at the end); {} transitions; while open: Redis calls \
         {calls_when_opened} → {calls_when_resumed}, bypassed {bypassed_when_opened} → \
         {bypassed_when_resumed}",
        ended - closed,
        metric(&app, "posture_redis_breaker_transitions_total").await
    );

    let failures: Vec<&Sample> = samples.iter().filter(|s| s.status != 200).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        samples.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        health.iter().all(|(status, _)| *status == 200),
        "readiness was not 200 throughout: {health:?}"
    );
    assert!(hung_closed.requests > 0 && hung_open.requests > 0);
    // A hung Redis costs a request a few command timeouts at most (version,
    // GET, SET), never a hang: bounded generously for a loaded 2-core box.
    let bound = Duration::from_millis(COMMAND_TIMEOUT_MS) + Duration::from_millis(450);
    assert!(
        hung_closed.p99 < bound,
        "p99 {:?} while the breaker was still closed (bound {bound:?})",
        hung_closed.p99
    );
    // Once open, Redis is not called at all (the open wait outlasts the
    // phase, so not even a half-open probe) ...
    assert_eq!(
        calls_when_resumed, calls_when_opened,
        "Redis was called while the breaker was open"
    );
    assert!(
        bypassed_when_resumed > bypassed_when_opened,
        "reads bypassed Redis while the breaker was open"
    );
    // ... so no request waits out a command timeout: the typical one is well
    // under it, and the tail is below the closed phase's (whose requests
    // waited one or two timeouts each). Only PostgreSQL and this loaded box's
    // scheduling are left in it, so it is not held to a fixed bound.
    assert!(
        hung_open.p50 < Duration::from_millis(COMMAND_TIMEOUT_MS),
        "the open breaker did not cut latency: p50 {:?} open vs {:?} closed",
        hung_open.p50,
        hung_closed.p50
    );
    assert!(
        hung_open.p99 < Duration::from_millis(COMMAND_TIMEOUT_MS)
            || hung_open.p99 < hung_closed.p99,
        "the open breaker did not cut tail latency: p99 {:?} open vs {:?} closed",
        hung_open.p99,
        hung_closed.p99
    );
}

#[tokio::test]
async fn a_change_reaches_another_instance_within_the_version_ttl() {
    let redis = RedisServer::start().await;
    // A runs the refresh (B has no workers), so B learns of the change only
    // through Redis.
    let a = TestApp::spawn_with(|config| use_redis(config, &redis)).await;
    let b = spawn_beside(&a, |config| {
        use_redis(config, &redis);
        config.workers = 0;
    })
    .await;
    let tenant = a.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    scan(&a, &tenant, FINDINGS).await;

    // Both warm their L1 (B's second read is an L1 hit).
    let on_a: Value = a.get("/v1/posture", key).await.json().await.unwrap();
    let on_b: Value = b.get("/v1/posture", key).await.json().await.unwrap();
    assert_eq!(on_a, on_b);
    let score = on_a["score"].as_u64().unwrap();
    let again: Value = b.get("/v1/posture", key).await.json().await.unwrap();
    assert_eq!(again, on_b);
    assert!(metric(&b, L1_HITS).await >= 1.0, "B serves from its L1");

    // Through A: the costliest finding is a false positive.
    let costliest = on_a["top_findings"][0]["id"].as_str().unwrap().to_owned();
    let patched = a
        .client
        .patch(format!("{}/v1/findings/{costliest}", a.address))
        .bearer_auth(key)
        .json(&json!({"status": "false_positive", "reason": "test fixture"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    a.wait_for_posture(tenant.id).await;
    let refreshed = Instant::now();

    let mut stale_reads = 0;
    let fresh = loop {
        let response = b.get("/v1/posture", key).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        if body["score"].as_u64() != Some(score) {
            break body;
        }
        stale_reads += 1;
        assert!(
            refreshed.elapsed() < Duration::from_secs(3),
            "B still serves the old posture 3 s after the refresh"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = refreshed.elapsed();
    eprintln!("[staleness] B served the new posture {took:?} after the refresh ({stale_reads} stale reads first)");
    assert!(
        took < Duration::from_millis(1_500),
        "B served the old posture for {took:?} (version TTL 1 s)"
    );
    assert!(fresh["score"].as_u64().unwrap() > score, "{fresh}");
    assert_eq!(fresh["by_status"], json!({"open": 2, "false_positive": 1}));
    let on_a: Value = a.get("/v1/posture", key).await.json().await.unwrap();
    assert_eq!(on_a, fresh, "both instances serve the same posture");
}

#[tokio::test]
async fn without_redis_reads_work_and_readiness_says_disabled() {
    let app = TestApp::spawn_with(|config| config.redis_url = SecretUrl::new("")).await;
    let tenant = app.create_tenant(Tier::Premium).await;
    scan(&app, &tenant, FINDINGS).await;

    for path in ["/v1/posture", "/v1/compliance"] {
        let response = app.get(path, &tenant.admin_key).await;
        assert_eq!(response.status(), 200, "{path}");
        let etag = header(&response, "etag").to_owned();
        let body: Value = response.json().await.unwrap();
        assert!(body.is_object(), "{path}: {body}");
        let again = get_if_none_match(&app, path, &tenant.admin_key, &etag).await;
        assert_eq!(again.status(), 304, "{path}");
    }
    let posture: Value = app
        .get("/v1/posture", &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(posture["open_by_severity"]["high"], 1, "{posture}");

    let (status, body) = ready(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redis"]["status"], "disabled", "{body}");
    assert_eq!(body["redis"]["breaker"], "closed", "{body}");
    // L1 still works; Redis is never called.
    assert!(metric(&app, L1_HITS).await >= 1.0);
    assert_eq!(metric(&app, REDIS_CALLS).await, 0.0);
    assert_eq!(metric(&app, "posture_redis_failures_total").await, 0.0);
}
// Repros for the epoch-debt bugs (append to crates/posture/tests/api/caching.rs;
// they use its helpers). Each prints the score served after Redis returns: the
// pre-outage score (86) is stale; the score served during the outage (93) is current.

async fn triage_costliest(app: &TestApp, key: &str) -> u64 {
    let posture: Value = app.get("/v1/posture", key).await.json().await.unwrap();
    let id = posture["top_findings"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patched = app
        .client
        .patch(format!("{}/v1/findings/{id}", app.address))
        .bearer_auth(key)
        .json(&json!({"status": "false_positive", "reason": "test fixture"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    posture["score"].as_u64().unwrap()
}

/// Regression: an invalidation that could not reach Redis is owed as an epoch
/// bump; the instance that pays it must read its version after the bump, not
/// serve the abandoned L2 entry for another `cache_version_ttl_ms`.
#[tokio::test]
async fn after_an_outage_the_reader_that_bumps_the_epoch_serves_no_stale_view() {
    let redis = RedisServer::start().await;
    let app = TestApp::spawn_with(|config| {
        use_redis(config, &redis);
        config.cache_l1_enabled = false;
    })
    .await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    scan(&app, &tenant, FINDINGS).await;
    let _: Value = app.get("/v1/posture", key).await.json().await.unwrap(); // fills L2
    redis.pause();
    wait_for_breaker(&app, "open", Duration::from_secs(5)).await;
    let old = triage_costliest(&app, key).await;
    app.wait_for_posture(tenant.id).await; // INCR bypassed: epoch debt owed
    let during: Value = app.get("/v1/posture", key).await.json().await.unwrap();
    assert_ne!(during["score"].as_u64(), Some(old));
    redis.resume();
    wait_for_breaker(&app, "closed", Duration::from_secs(10)).await;
    let body: Value = app.get("/v1/posture", key).await.json().await.unwrap();
    assert_ne!(
        body["score"].as_u64(),
        Some(old),
        "stale pre-outage view served after recovery"
    );
}

/// Regression: a process that runs refreshes but serves no reads (`posture
/// worker`) pays its epoch debt from the health loop once Redis answers, so
/// the readers do not serve the pre-outage L2 entry until its TTL runs out.
#[tokio::test]
async fn a_worker_process_pays_its_epoch_debt_when_redis_returns() {
    let redis = RedisServer::start().await;
    let w = TestApp::spawn_with(|config| use_redis(config, &redis)).await;
    let r = spawn_beside(&w, |config| {
        use_redis(config, &redis);
        config.workers = 0;
        config.cache_l1_enabled = false;
    })
    .await;
    let tenant = w.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    scan(&w, &tenant, FINDINGS).await;
    let _: Value = r.get("/v1/posture", key).await.json().await.unwrap(); // fills L2
    redis.pause();
    wait_for_breaker(&w, "open", Duration::from_secs(5)).await;
    wait_for_breaker(&r, "open", Duration::from_secs(5)).await;
    let old = triage_costliest(&r, key).await; // W's worker runs the refresh
    w.wait_for_posture(tenant.id).await;
    redis.resume();
    wait_for_breaker(&w, "closed", Duration::from_secs(10)).await;
    wait_for_breaker(&r, "closed", Duration::from_secs(10)).await;
    let resumed = Instant::now();
    while resumed.elapsed() < Duration::from_secs(4) {
        let body: Value = r.get("/v1/posture", key).await.json().await.unwrap();
        if body["score"].as_u64() != Some(old) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("R served the pre-outage view for 4 s after Redis returned");
}

/// A starting server loads the posture views of recently active tenants before
/// it accepts requests: the first read of a warmed tenant is an L1 hit, with no
/// PostgreSQL load.
#[tokio::test]
async fn a_starting_server_warms_the_views_of_recently_active_tenants() {
    let app = TestApp::spawn_with(|config| config.redis_url = SecretUrl::new("")).await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    // The first read computes and stores the tenant's summary (it is now "active").
    let first = app.get("/v1/posture", &tenant.admin_key).await;
    assert_eq!(first.status(), 200);

    let warmed = spawn_beside(&app, |config| {
        config.redis_url = SecretUrl::new("");
        config.cache_warm_tenants = 10;
    })
    .await;
    assert_eq!(
        metric(&warmed, "posture_cache_loads_total{views=\"posture\"}").await,
        1.0
    );
    let read = warmed.get("/v1/posture", &tenant.admin_key).await;
    assert_eq!(read.status(), 200);
    assert_eq!(
        metric(&warmed, "posture_cache_loads_total{views=\"posture\"}").await,
        1.0,
        "the first read after start was served from the warmed cache"
    );
    assert_eq!(
        metric(
            &warmed,
            "posture_cache_hits_total{views=\"posture\",layer=\"l1\"}"
        )
        .await,
        1.0
    );

    // Warming off: nothing is loaded before the first request.
    let cold = spawn_beside(&app, |config| {
        config.redis_url = SecretUrl::new("");
        config.cache_warm_tenants = 0;
    })
    .await;
    assert_eq!(
        metric(&cold, "posture_cache_loads_total{views=\"posture\"}").await,
        0.0
    );
}

/// Tenant-independent resources are cacheable by a CDN.
#[tokio::test]
async fn the_openapi_document_is_publicly_cacheable() {
    let app = TestApp::spawn_with(|config| config.redis_url = SecretUrl::new("")).await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "public, max-age=3600");
}
