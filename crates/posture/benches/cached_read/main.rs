//! Cached read benchmark: throughput and latency of `GET /v1/posture` with the
//! view cache's in-process layer on (L1 + L2), off (Redis only), and with Redis
//! down (circuit breaker open: every read falls back to L1 and PostgreSQL), all
//! with rate limits off; then L1 + L2 with rate limits on (the limiter's cost:
//! one Redis script call per request), and the 429 path (one free tenant
//! hammered past its limit: every measured answer is a refusal).
//!
//! ```text
//! bash scripts/bench-cached-read.sh                  # setup, release build, run
//! cargo bench -p posture --bench cached_read -- [--seconds N] [--warm-up N]
//!     [--tenants N] [--concurrency N]
//! ```
//!
//! Creates and migrates a database of its own (`posture_bench_<unix time>`,
//! dropped at the end), creates `--tenants` (2,000) Enterprise tenants with one
//! read key each — enough that no tenant reaches its 1,000 requests a minute —
//! and one free tenant, then for each configuration builds a fresh `Application` on that
//! database (in this process, port 0) and drives it with a closed-loop client:
//! `--concurrency` tasks sharing one HTTP client, each looping `GET /v1/posture`
//! with the keys in rotation. Every tenant is read once first (the summary is
//! computed on the first read), then `--warm-up` seconds of load are discarded
//! and `--seconds` seconds are measured.
//!
//! The load generator shares the process and the cores with the server,
//! PostgreSQL and Redis, so absolute numbers are lower than with a separate
//! load generator; compare the rows with each other.
//!
//! Prints a Markdown table and writes JSON to `<target dir>/bench/cached_read.json`.

// Shared with the ingestion benchmark: its own database, created and dropped.
#[path = "../ingest/database.rs"]
mod database;
#[path = "../ingest/machine.rs"]
mod machine;
#[path = "../ingest/output.rs"]
mod output;

use anyhow::{bail, Context};
use database::url;
use posture::auth::{issue_api_key, KeyRequest};
use posture::cache::views::Generation;
use posture::config::{Config, SecretUrl};
use posture::startup::Application;
use posture::state::AppState;
use posture::store::operator::{self, OPERATOR_ACTOR};
use posture::store::{PoolSettings, Store};
use posture_domain::{TenantName, TenantSlug, Tier};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the breaker may take to open in the Redis-down configuration.
const BREAKER_OPEN_DEADLINE: Duration = Duration::from_secs(30);

/// Command-line settings.
#[derive(Debug, Clone, Serialize)]
struct Settings {
    seconds: u64,
    warm_up_seconds: u64,
    tenants: usize,
    concurrency: usize,
}

impl Settings {
    fn parse(args: &[String]) -> anyhow::Result<Settings> {
        let number = |flag: &str, default: u64| -> anyhow::Result<u64> {
            match args.iter().position(|arg| arg == flag) {
                Some(at) => args
                    .get(at + 1)
                    .with_context(|| format!("{flag} N"))?
                    .parse()
                    .with_context(|| format!("{flag} takes a number")),
                None => Ok(default),
            }
        };
        let settings = Settings {
            seconds: number("--seconds", 10)?,
            warm_up_seconds: number("--warm-up", 2)?,
            tenants: usize::try_from(number("--tenants", 2000)?)?,
            concurrency: usize::try_from(number("--concurrency", 64)?)?,
        };
        anyhow::ensure!(
            settings.seconds > 0 && settings.tenants > 0 && settings.concurrency > 0,
            "--seconds, --tenants and --concurrency must be positive"
        );
        Ok(settings)
    }
}

/// One configuration of the server.
struct Variant {
    name: &'static str,
    l1_enabled: bool,
    redis_url: String,
    /// Wait for `/health/ready` to report the breaker open before measuring.
    breaker_open: bool,
    /// Enforce the tiers' rate limits.
    rate_limits: bool,
    /// Hammer one free tenant past its limit (every measured answer is 429)
    /// instead of reading as the enterprise tenants.
    over_the_limit: bool,
}

/// What one configuration measured.
#[derive(Debug, Serialize)]
struct VariantResult {
    configuration: String,
    l1_enabled: bool,
    redis_url: String,
    requests: u64,
    requests_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    /// The first error seen, if any.
    first_error: Option<String>,
    /// The breaker as `/health/ready` reported it before and after the measurement.
    breaker_before: String,
    breaker_after: String,
    /// Seconds of load it took the breaker to open (Redis-down configuration).
    breaker_opened_after_secs: Option<f64>,
    /// View cache counters during the measured window.
    l1_hits: u64,
    l1_misses: u64,
    l2_hits: u64,
    l2_misses: u64,
    database_loads: u64,
}

/// Everything one run measured, as written to the JSON file.
#[derive(Serialize)]
struct BenchReport {
    date: String,
    machine: Machine,
    settings: Settings,
    note: &'static str,
    results: Vec<VariantResult>,
}

/// Where it ran.
#[derive(Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: Option<String>,
    memory_mib: Option<u64>,
    postgres: String,
}

const NOTE: &str = "The load generator runs in the same process, on the same cores as the \
server, PostgreSQL and Redis: absolute numbers are lower than with a separate load \
generator; compare the rows with each other.";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Unknown arguments (`cargo bench` passes `--bench`) are ignored.
    let settings = Settings::parse(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let database = runtime.block_on(database::create())?;
    eprintln!("bench: database {database} created and migrated");
    let outcome = runtime.block_on(run(&settings, &database));
    let dropped = runtime.block_on(database::drop(&database));
    let (postgres, results) = outcome?;
    dropped?;
    eprintln!("bench: database {database} dropped");

    let report = BenchReport {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: machine::cpu_model(),
            memory_mib: machine::memory_mib(),
            postgres,
        },
        settings,
        note: NOTE,
        results,
    };
    print_markdown(&report);
    let out = output::write_report("cached_read.json", &report)?;
    println!("\nJSON: {}", out.display());
    Ok(())
}

/// Seeds the database and measures every configuration on it.
async fn run(settings: &Settings, database: &str) -> anyhow::Result<(String, Vec<VariantResult>)> {
    let postgres = database::server_version(database).await?;
    let keys = seed(database, settings.tenants, Tier::Enterprise).await?;
    let free_key = seed(database, 1, Tier::Free).await?;
    eprintln!("bench: {} tenants with a read key each", keys.len());
    let redis_host = std::env::var("POSTURE_REDIS_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let redis_port = std::env::var("POSTURE_REDIS_PORT").unwrap_or_else(|_| "6379".into());
    let redis_url = format!("redis://{redis_host}:{redis_port}");
    let variant = |name, l1_enabled, redis_url: &str, rate_limits, over_the_limit| Variant {
        name,
        l1_enabled,
        redis_url: redis_url.to_owned(),
        // Nothing listens on port 1: every call fails at once.
        breaker_open: redis_url.ends_with(":1"),
        rate_limits,
        over_the_limit,
    };
    let variants = [
        variant("L1 + L2", true, &redis_url, false, false),
        variant("L2 only (L1 off)", false, &redis_url, false, false),
        variant(
            "Redis down (breaker open)",
            true,
            "redis://127.0.0.1:1",
            false,
            false,
        ),
        variant("L1 + L2, rate limits on", true, &redis_url, true, false),
        variant(
            "429 path: one free tenant over its limit",
            true,
            &redis_url,
            true,
            true,
        ),
    ];
    let keys = Arc::new(keys);
    let free_key = Arc::new(free_key);
    let mut results = Vec::new();
    for variant in &variants {
        eprintln!("bench: {}", variant.name);
        let keys = if variant.over_the_limit {
            &free_key
        } else {
            &keys
        };
        results.push(measure(settings, database, variant, keys.clone()).await?);
    }
    Ok((postgres, results))
}

/// Creates `count` tenants on `tier` with one `read` key each; returns the keys.
async fn seed(database: &str, count: usize, tier: Tier) -> anyhow::Result<Vec<String>> {
    let owner = Store::connect_lazy(
        &url("posture_owner", database),
        &PoolSettings::for_command(&Config::default()),
    )?;
    let mut keys = Vec::with_capacity(count);
    for number in 0..count {
        let tenant = operator::create_tenant(
            &owner,
            &TenantSlug::parse(&format!("bench-{tier}-{number}"))?,
            &TenantName::parse(&format!("Benchmark {tier} {number}"))?,
            tier,
        )
        .await?;
        let request = KeyRequest::parse("bench", &["read".into()], None, chrono::Utc::now())
            .map_err(|errors| anyhow::anyhow!("{errors:?}"))?;
        let mut tx = owner.begin_tenant(tenant.id).await?;
        let (_, token) = issue_api_key(&mut tx, &request, OPERATOR_ACTOR, None).await?;
        tx.commit().await?;
        keys.push(token.expose());
    }
    owner.close().await;
    Ok(keys)
}

/// The server's configuration for `variant`.
fn config(database: &str, variant: &Variant) -> Config {
    Config {
        listen_addr: "127.0.0.1:0".parse().expect("valid address"),
        database_url: SecretUrl::new(url("posture_app", database)),
        admin_database_url: SecretUrl::new(url("posture_owner", database)),
        workers: 0,
        db_pool_min: 10,
        db_pool_max: 20,
        log_filter: "warn".into(),
        cache_warm_tenants: 0,
        shutdown_grace_secs: 5,
        cache_l1_enabled: variant.l1_enabled,
        rate_limits_enabled: variant.rate_limits,
        redis_url: SecretUrl::new(variant.redis_url.clone()),
        ..Config::default()
    }
}

/// Starts a fresh application for `variant`, warms it and measures it.
async fn measure(
    settings: &Settings,
    database: &str,
    variant: &Variant,
    keys: Arc<Vec<String>>,
) -> anyhow::Result<VariantResult> {
    let application = Application::build(config(database, variant)).await?;
    let address = format!("http://127.0.0.1:{}", application.port());
    let state = application.state().clone();
    let shutdown = application.shutdown_token();
    let server = tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;

    let result = async {
        let expected = if variant.over_the_limit {
            reqwest::StatusCode::TOO_MANY_REQUESTS
        } else {
            reqwest::StatusCode::OK
        };
        // Every tenant once: computes and caches its summary.
        let warm = load(
            &client,
            &address,
            &keys,
            settings.concurrency,
            None,
            keys.len(),
            expected,
        )
        .await;
        // Over the limit, the first ten are admitted and the rest refused.
        if warm.errors > 0 && !variant.over_the_limit {
            bail!(
                "{} of {} warming reads failed: {}",
                warm.errors,
                keys.len(),
                warm.first_error.unwrap_or_default()
            );
        }
        let mut breaker_opened_after_secs = None;
        if variant.breaker_open {
            let started = Instant::now();
            loop {
                if breaker(&client, &address).await? == "open" {
                    breaker_opened_after_secs = Some(started.elapsed().as_secs_f64());
                    break;
                }
                if started.elapsed() > BREAKER_OPEN_DEADLINE {
                    bail!("the breaker did not open within {BREAKER_OPEN_DEADLINE:?}");
                }
                load(
                    &client,
                    &address,
                    &keys,
                    settings.concurrency,
                    Some(Duration::from_millis(200)),
                    0,
                    expected,
                )
                .await;
            }
        }
        load(
            &client,
            &address,
            &keys,
            settings.concurrency,
            Some(Duration::from_secs(settings.warm_up_seconds)),
            0,
            expected,
        )
        .await;

        let breaker_before = breaker(&client, &address).await?;
        let before = Counters::read(&state);
        let measured = load(
            &client,
            &address,
            &keys,
            settings.concurrency,
            Some(Duration::from_secs(settings.seconds)),
            0,
            expected,
        )
        .await;
        let after = Counters::read(&state);
        let breaker_after = breaker(&client, &address).await?;
        Ok(summarize(
            variant,
            measured,
            breaker_before,
            breaker_after,
            breaker_opened_after_secs,
            after.minus(&before),
        ))
    }
    .await;

    drop(client);
    shutdown.cancel();
    server.await??;
    result
}

/// The view cache's counters.
struct Counters {
    l1_hits: u64,
    l1_misses: u64,
    l2_hits: u64,
    l2_misses: u64,
    loads: u64,
}

impl Counters {
    fn read(state: &AppState) -> Counters {
        let metrics = state.views.metrics(Generation::Posture);
        Counters {
            l1_hits: metrics.l1_hits.load(Ordering::Relaxed),
            l1_misses: metrics.l1_misses.load(Ordering::Relaxed),
            l2_hits: metrics.l2_hits.load(Ordering::Relaxed),
            l2_misses: metrics.l2_misses.load(Ordering::Relaxed),
            loads: metrics.loads.load(Ordering::Relaxed),
        }
    }

    fn minus(&self, before: &Counters) -> Counters {
        Counters {
            l1_hits: self.l1_hits - before.l1_hits,
            l1_misses: self.l1_misses - before.l1_misses,
            l2_hits: self.l2_hits - before.l2_hits,
            l2_misses: self.l2_misses - before.l2_misses,
            loads: self.loads - before.loads,
        }
    }
}

/// The breaker's state as `/health/ready` reports it.
async fn breaker(client: &reqwest::Client, address: &str) -> anyhow::Result<String> {
    let ready: serde_json::Value = client
        .get(format!("{address}/health/ready"))
        .send()
        .await?
        .json()
        .await?;
    let state = ready
        .pointer("/redis/breaker")
        .or_else(|| ready.pointer("/checks/redis/breaker"))
        .and_then(|state| state.as_str())
        .with_context(|| format!("no redis.breaker in /health/ready: {ready}"))?;
    Ok(state.to_owned())
}

/// What a load run saw.
#[derive(Default)]
struct Load {
    /// Latency of every request, µs.
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

/// Closed loop: `concurrency` tasks each sending `GET /v1/posture` (keys in
/// rotation) until `duration` has passed, or, without one, `count` requests in all.
async fn load(
    client: &reqwest::Client,
    address: &str,
    keys: &Arc<Vec<String>>,
    concurrency: usize,
    duration: Option<Duration>,
    count: usize,
    expected: reqwest::StatusCode,
) -> Load {
    let started = Instant::now();
    let deadline = duration.map(|duration| started + duration);
    let url = Arc::new(format!("{address}/v1/posture"));
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let client = client.clone();
            let keys = keys.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut seen = Load::default();
                let mut next = task;
                loop {
                    match deadline {
                        Some(deadline) if Instant::now() >= deadline => break,
                        None if next >= count => break,
                        _ => {}
                    }
                    let key = &keys[next % keys.len()];
                    next += concurrency;
                    let sent = Instant::now();
                    let outcome = match client.get(url.as_str()).bearer_auth(key).send().await {
                        Ok(response) => {
                            let status = response.status();
                            match response.bytes().await {
                                Ok(_) if status == expected => Ok(()),
                                Ok(body) => Err(format!(
                                    "{status}: {}",
                                    String::from_utf8_lossy(&body[..body.len().min(300)])
                                )),
                                Err(error) => Err(error.to_string()),
                            }
                        }
                        Err(error) => Err(error.to_string()),
                    };
                    let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                    seen.latencies.push(micros);
                    if let Err(error) = outcome {
                        seen.errors += 1;
                        seen.first_error.get_or_insert(error);
                    }
                }
                seen
            })
        })
        .collect();
    let mut total = Load::default();
    for task in tasks {
        match task.await {
            Ok(seen) => {
                total.latencies.extend(seen.latencies);
                total.errors += seen.errors;
                if total.first_error.is_none() {
                    total.first_error = seen.first_error;
                }
            }
            Err(error) => {
                total.errors += 1;
                total.first_error.get_or_insert(error.to_string());
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}

fn summarize(
    variant: &Variant,
    mut load: Load,
    breaker_before: String,
    breaker_after: String,
    breaker_opened_after_secs: Option<f64>,
    counters: Counters,
) -> VariantResult {
    load.latencies.sort_unstable();
    let percentile = |q: f64| -> f64 {
        if load.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = (q * load.latencies.len() as f64).ceil() as usize;
        f64::from(load.latencies[rank.clamp(1, load.latencies.len()) - 1]) / 1e3
    };
    let requests = load.latencies.len() as u64;
    VariantResult {
        configuration: variant.name.to_owned(),
        l1_enabled: variant.l1_enabled,
        redis_url: variant.redis_url.clone(),
        requests,
        requests_per_sec: requests as f64 / load.elapsed.as_secs_f64(),
        p50_ms: percentile(0.50),
        p90_ms: percentile(0.90),
        p99_ms: percentile(0.99),
        max_ms: percentile(1.0),
        errors: load.errors,
        first_error: load.first_error,
        breaker_before,
        breaker_after,
        breaker_opened_after_secs,
        l1_hits: counters.l1_hits,
        l1_misses: counters.l1_misses,
        l2_hits: counters.l2_hits,
        l2_misses: counters.l2_misses,
        database_loads: counters.loads,
    }
}

fn print_markdown(report: &BenchReport) {
    let machine = &report.machine;
    let settings = &report.settings;
    println!(
        "\n{} · {} CPUs ({}) · {} MiB RAM · PostgreSQL {}",
        report.date,
        machine.cpus,
        machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        machine.memory_mib.unwrap_or(0),
        machine.postgres
    );
    println!(
        "GET /v1/posture, {} tenants (keys in rotation), {} concurrent requests \
         (closed loop), {} s measured after {} s of warm-up.\n",
        settings.tenants, settings.concurrency, settings.seconds, settings.warm_up_seconds
    );
    println!("| configuration | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for result in &report.results {
        println!(
            "| {} | {} | **{:.0}** | {:.2} | {:.2} | **{:.2}** | {:.2} | {} |",
            result.configuration,
            result.requests,
            result.requests_per_sec,
            result.p50_ms,
            result.p90_ms,
            result.p99_ms,
            result.max_ms,
            result.errors,
        );
    }
    println!("\n{}", report.note);
    println!("\nView cache during the measurement (breaker before → after):");
    for result in &report.results {
        println!(
            "- {}: L1 {} hits / {} misses, L2 {} hits / {} misses, {} PostgreSQL loads; breaker {} → {}{}",
            result.configuration,
            result.l1_hits,
            result.l1_misses,
            result.l2_hits,
            result.l2_misses,
            result.database_loads,
            result.breaker_before,
            result.breaker_after,
            result
                .breaker_opened_after_secs
                .map_or_else(String::new, |secs| format!(
                    " (opened after {secs:.1} s of load)"
                )),
        );
        if let Some(error) = &result.first_error {
            println!("  first error: {error}");
        }
    }
}
