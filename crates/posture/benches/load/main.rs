//! The load harness (issue 8; `bash bench/run.sh`): the release `posture`
//! binary as its own process against a seeded database, the local PostgreSQL
//! and Redis, measured by `wrk` over real HTTP with the same settings a bare
//! axum "hello" (the limit on this machine) is measured with in the same run:
//! once alone before the server starts, and again just before each read
//! scenario, whose ratio to the hello is taken against that adjacent figure.
//!
//! 1. Runs the stack we replace first ([`reference`]: FastAPI on its own
//!    data, with the same wrk settings), unless `--no-reference`.
//! 2. Creates and migrates a database of its own (dropped at the end).
//! 3. Seeds tenants ([`seed`]): enterprise load tenants with about 2,000
//!    findings each on average (a few with 100,000), a free tenant for the
//!    429 path, and tenants of the other tiers; read keys, and write keys for
//!    the scan spike's tenants.
//! 4. Starts `posture serve` (workers on, rate limits on), waits until every
//!    tenant's posture view is computed.
//! 5. Runs each scenario with `wrk` ([`wrk`]), sampling the CPU of the server,
//!    PostgreSQL and Redis over the run, the machine's steal time and the
//!    server's peak RSS ([`procstat`]).
//! 6. Runs the scan spike ([`spike`]) with fixed-rate cached reads beside it
//!    ([`open_loop`]), unless `--spike-scans 0`.
//! 7. Prints Markdown tables ([`table`]), with the ingestion benchmark's rows
//!    when `--ingest-json` names its report ([`ingest_rows`]), and writes the
//!    JSON next to the build (`$CARGO_TARGET_DIR/bench/load.json`, or
//!    `$POSTURE_BENCH_OUT`).

#[path = "../ingest/database.rs"]
mod database;
mod ingest_rows;
#[path = "../ingest/machine.rs"]
mod machine;
mod open_loop;
#[path = "../ingest/output.rs"]
mod output;
mod procstat;
mod reference;
mod seed;
mod server;
mod settings;
mod spike;
mod table;
mod wrk;

use serde::Serialize;
use settings::Settings;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Names of the scenarios the reference is compared with.
const HELLO: &str = "bare axum hello (the limit)";
const CACHED: &str = "cached read: GET /v1/posture";
const DATABASE: &str = "database read: GET /v1/findings?limit=50";
/// The key files wrk's script rotates over.
const LOAD_KEYS: &str = "load-keys.txt";
const FREE_KEY: &str = "free-key.txt";

/// One measured scenario.
#[derive(Debug, Clone, Serialize)]
struct ScenarioResult {
    name: String,
    path: String,
    /// What wrk (or the open-loop generator) measured.
    load: wrk::Summary,
    /// Cores used over the measured run.
    cpu: procstat::CpuUse,
    /// requests/s as a share of the bare axum hello's measured just before
    /// it ([`ScenarioResult::hello_beside`]).
    of_hello: Option<f64>,
    /// requests/s of the bare axum hello measured just before this scenario:
    /// the machine's speed drifts by tens of percent within minutes, so a
    /// ratio to a hello measured minutes earlier says as much about the drift
    /// as about the server.
    hello_beside: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: Option<String>,
    memory_mib: Option<u64>,
    postgres: String,
    wrk: String,
}

#[derive(Debug, Serialize)]
struct Report {
    date: String,
    machine: Machine,
    settings: Settings,
    seeded: seed::Seeded,
    /// The posture server's peak resident memory over every scenario.
    server_peak_rss_mib: Option<f64>,
    scenarios: Vec<ScenarioResult>,
    spike: Option<spike::SpikeResult>,
    ingestion: Option<ingest_rows::Ingestion>,
    reference: Option<reference::ReferenceRun>,
    /// Posture's figures as ratios to the reference's.
    comparisons: Vec<reference::Comparison>,
}

/// What the run against the seeded database measured.
struct Measured {
    postgres: String,
    seeded: seed::Seeded,
    server_peak_rss_mib: Option<f64>,
    scenarios: Vec<ScenarioResult>,
    spike: Option<spike::SpikeResult>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The same binary serves the bare hello when re-run with `--hello`.
    if let Some(port) = args.iter().position(|a| a == "--hello") {
        let port: u16 = args
            .get(port + 1)
            .ok_or_else(|| anyhow::anyhow!("--hello needs a port"))?
            .parse()?;
        return server::hello(port);
    }
    let settings = Settings::parse(&args)?;
    let wrk_version = wrk::version()?;
    // Read first, so a wrong path fails before the long run.
    let ingestion = settings
        .ingest_json
        .as_deref()
        .map(ingest_rows::read)
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The reference first, alone on the machine (its script may restart
    // PostgreSQL, which must not happen under Posture's run).
    let reference = match &settings.reference_dir {
        Some(dir) => {
            runtime.block_on(reference::warn_about_restart())?;
            Some(reference::run(&settings, dir)?)
        }
        None => None,
    };
    let database = runtime.block_on(database::create())?;
    eprintln!("bench: database {database} created and migrated");
    let outcome = runtime.block_on(run(&settings, &database));
    if settings.keep_database {
        eprintln!("bench: database {database} kept (drop it by hand)");
    } else {
        runtime.block_on(database::drop(&database))?;
        eprintln!("bench: database {database} dropped");
    }
    let measured = outcome?;
    let comparisons = reference
        .as_ref()
        .map(|reference| {
            [
                (CACHED, reference::SUMMARY),
                (DATABASE, reference::FINDINGS),
                (HELLO, reference::HELLO),
            ]
            .iter()
            .filter_map(|(name, key)| {
                let ours = measured.scenarios.iter().find(|s| s.name == *name)?;
                reference.compare(name, &ours.load, key)
            })
            .collect()
        })
        .unwrap_or_default();
    let report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: machine::cpu_model(),
            memory_mib: machine::memory_mib(),
            postgres: measured.postgres,
            wrk: wrk_version,
        },
        settings,
        seeded: measured.seeded,
        server_peak_rss_mib: measured.server_peak_rss_mib,
        scenarios: measured.scenarios,
        spike: measured.spike,
        ingestion,
        reference,
        comparisons,
    };
    table::print_markdown(&report);
    let out = output::write_report("load.json", &report)?;
    println!("\nJSON: {}", out.display());
    Ok(())
}

async fn run(settings: &Settings, database: &str) -> anyhow::Result<Measured> {
    let postgres = database::server_version(database).await?;
    let started = Instant::now();
    let seeded = seed::seed(database, settings).await?;
    eprintln!(
        "bench: seeded {} tenants, {} findings in {:.1?}",
        seeded.tenants,
        seeded.findings,
        started.elapsed()
    );
    // Key files for wrk's script.
    let dir = std::env::temp_dir().join(format!("posture-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(LOAD_KEYS), seeded.load_keys.join("\n"))?;
    std::fs::write(dir.join(FREE_KEY), &seeded.free_key)?;

    // The bare hello first, alone on the machine.
    let hello_result = hello(settings, HELLO).await;
    let mut scenarios = vec![hello_result?];

    let port = server::free_port()?;
    let mut server = server::start_posture(database, port)?;
    let base = format!("http://127.0.0.1:{port}");
    // Whatever happens, the server is stopped before returning.
    let measured = measure(
        settings,
        database,
        &base,
        server.id(),
        &seeded,
        &dir,
        &mut scenarios,
    )
    .await;
    let rss = procstat::peak_rss_mib(server.id());
    server::stop(&mut server);
    if settings.keep_database {
        // With the database, for profiling by hand: the keys are shown once.
        eprintln!(
            "bench: key files kept in {} ({LOAD_KEYS}: the load tenants' read keys, {FREE_KEY})",
            dir.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let spike = measured?;
    Ok(Measured {
        postgres,
        seeded,
        server_peak_rss_mib: rss,
        scenarios,
        spike,
    })
}

/// Everything measured against the running server: the wrk scenarios (added
/// to `scenarios`; their key files are in `key_dir`), then the scan spike,
/// whose reads also get a row.
async fn measure(
    settings: &Settings,
    database: &str,
    base: &str,
    server_pid: u32,
    seeded: &seed::Seeded,
    key_dir: &Path,
    scenarios: &mut Vec<ScenarioResult>,
) -> anyhow::Result<Option<spike::SpikeResult>> {
    server::wait_for(&format!("{base}/health/live")).await?;
    seed::wait_for_posture(database, seeded.tenants, Duration::from_secs(600)).await?;
    // The 429 path's free tenant is not a load tenant: it runs while the load
    // tenants' windows clear after the cached read.
    let plan = [
        (CACHED, "/v1/posture", LOAD_KEYS),
        (
            "429 path: one free tenant over its limit",
            "/v1/posture",
            FREE_KEY,
        ),
        (DATABASE, "/v1/findings?limit=50", LOAD_KEYS),
    ];
    let mut windows = LoadWindows::default();
    for (name, path, keys) in plan {
        let loads_tenants = keys == LOAD_KEYS;
        if loads_tenants {
            windows.wait_until_clear().await;
        }
        let keys = key_dir.join(keys);
        let beside = hello(settings, &format!("bare axum hello, before {name}"))
            .await?
            .load
            .requests_per_second;
        let mut result = scenario(settings, name, base, path, Some(&keys), server_pid)?;
        result.hello_beside = Some(beside);
        result.of_hello = (beside > 0.0).then(|| result.load.requests_per_second / beside);
        if loads_tenants {
            windows.used(&result, settings);
        }
        scenarios.push(result);
    }
    if settings.spike_scans == 0 {
        return Ok(None);
    }
    windows.wait_until_clear().await;
    eprintln!(
        "bench: scan spike: {} scans from {} tenants, cached reads at {}/s",
        settings.spike_scans, settings.spike_tenants, settings.spike_read_rate
    );
    let spike = spike::run(
        settings,
        database,
        base,
        server_pid,
        &seeded.load_keys,
        &seeded.spike_keys,
    )
    .await?;
    scenarios.push(ScenarioResult {
        name: format!(
            "cached read during the scan spike (open loop, {}/s)",
            settings.spike_read_rate
        ),
        path: "/v1/posture".to_owned(),
        load: spike.reads_during.clone(),
        cpu: spike.cpu,
        of_hello: None,
        hello_beside: None,
    });
    Ok(Some(spike))
}

/// The load tenants' per-minute windows between scenarios. An enterprise
/// tenant may make 1,000 requests a minute; a cached read at 60,000 req/s over
/// 1,000 tenants makes about 720 per tenant in a 12 s scenario, so the next
/// scenario to load the same tenants would start with most of their minute
/// used and measure 429s. Such a scenario waits until the windows are clear:
/// 60 s after the last request, plus the 2 s a lease refill's slots are dated
/// ahead (`rate_limit_lease_ms` × 2), plus a second of margin.
#[derive(Default)]
struct LoadWindows {
    clear_at: Option<Instant>,
}

impl LoadWindows {
    /// A tenant's share of its minute quota below which the next scenario
    /// does not wait (a database read makes about 60 each).
    const NEGLIGIBLE_PER_TENANT: f64 = 100.0;
    const CLEAR_AFTER: Duration = Duration::from_secs(63);

    /// Records a scenario that loaded the tenants, warm-up included.
    fn used(&mut self, result: &ScenarioResult, settings: &Settings) {
        let seconds = (settings.warm_up + settings.seconds) as f64;
        let per_tenant = result.load.requests_per_second * seconds / settings.tenants as f64;
        if per_tenant > Self::NEGLIGIBLE_PER_TENANT {
            self.clear_at = Some(Instant::now() + Self::CLEAR_AFTER);
        }
    }

    async fn wait_until_clear(&mut self) {
        if let Some(clear_at) = self.clear_at.take() {
            let wait = clear_at.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                eprintln!(
                    "bench: waiting {:.0?} for the load tenants' minute windows to clear",
                    wait
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Warms up, then measures one scenario while sampling CPU.
fn scenario(
    settings: &Settings,
    name: &str,
    base: &str,
    path: &str,
    keys: Option<&Path>,
    server_pid: u32,
) -> anyhow::Result<ScenarioResult> {
    eprintln!("bench: {name}");
    let run = |seconds: u64| wrk::Run {
        url: format!("{base}{path}"),
        keys: keys.map(Path::to_path_buf),
        seconds,
        connections: settings.connections,
        threads: settings.threads,
    };
    run(settings.warm_up).execute()?;
    let before = procstat::sample(server_pid);
    let started = Instant::now();
    let load = run(settings.seconds).execute()?;
    let cpu = procstat::sample(server_pid).since(&before, started.elapsed());
    Ok(ScenarioResult {
        name: name.to_owned(),
        path: path.to_owned(),
        load,
        cpu,
        of_hello: None,
        hello_beside: None,
    })
}

/// Measures the bare axum hello (this binary re-run with `--hello`) as the
/// scenario `name`, with the posture server, if one runs, idle beside it.
async fn hello(settings: &Settings, name: &str) -> anyhow::Result<ScenarioResult> {
    let port = server::free_port()?;
    let mut process = Command::new(std::env::current_exe()?)
        .args(["--hello", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()?;
    let result = async {
        server::wait_for(&format!("http://127.0.0.1:{port}/hello")).await?;
        scenario(
            settings,
            name,
            &format!("http://127.0.0.1:{port}"),
            "/hello",
            None,
            process.id(),
        )
    }
    .await;
    server::stop(&mut process);
    result
}
