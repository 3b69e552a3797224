//! Scenario 7, the stack we replace: the original system's request path in
//! FastAPI (`/work/shared/reference-stack`, its README and `run.sh`), measured
//! in the same run with the same wrk settings, on its own data (database
//! `compliance_bench`: 100 tenants × 2,000 findings).
//!
//! Its `run.sh` writes next to itself (a Python venv, the keys it seeds), and
//! the `postgres` OS user reads its `setup.sql`: so the harness copies the
//! stack's files, unchanged, into a working directory that user can reach
//! (`/var/tmp/posture-reference-stack`, or `$POSTURE_REFERENCE_WORKDIR`; the
//! venv stays there between runs) and runs it from there with its results in
//! `<target>/bench/reference/`. It runs first, before Posture's database is
//! seeded or its server started, so the two never compete.
//!
//! Knobs passed: `DUR`, `WARM`, `CONNS`, `THREADS` from the harness's
//! settings, `EXTRAS=0` (only the `-c<connections>` runs), `PORT` (a free
//! one), `RES`. `SKIP_SETUP`, `QUIET_WAIT` and `MAX_TRIES` pass through from
//! the environment (the script waits up to `QUIET_WAIT` s for an idle machine
//! before each run, and repeats a run spoiled by foreign load).
//!
//! What the script does to shared services: it flushes Redis before each
//! run, and if PostgreSQL's `max_connections` is below 200 it raises it and
//! restarts PostgreSQL (once; the harness warns first).

use crate::{database, output, server, settings::Settings, wrk};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The reference's endpoint for each of Posture's measured scenarios.
pub const SUMMARY: &str = "summary-100tenants";
pub const FINDINGS: &str = "findings-100tenants";
pub const HELLO: &str = "hello";

/// The runs `run.sh` makes with `EXTRAS=0`: its name (before `-c<conns>`),
/// and what it is.
const RUNS: [(&str, &str, &str); 5] = [
    (HELLO, "hello (FastAPI, no auth/DB/Redis)", "/hello"),
    (SUMMARY, "cached read, 100 tenants", "/v1/findings/summary"),
    (
        "summary-1tenant",
        "cached read, 1 tenant",
        "/v1/findings/summary",
    ),
    (
        FINDINGS,
        "database read, 100 tenants",
        "/v1/findings?limit=50",
    ),
    (
        "findings-1tenant",
        "database read, 1 tenant",
        "/v1/findings?limit=50",
    ),
];

/// Everything the reference's run measured.
#[derive(Debug, Serialize)]
pub struct ReferenceRun {
    /// Where its files came from.
    pub source: PathBuf,
    /// Its `env.txt`: versions of Python, the libraries, PostgreSQL, Redis.
    pub environment: String,
    pub scenarios: Vec<ReferenceScenario>,
}

/// One of its runs.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceScenario {
    /// `run.sh`'s name for it, without `-c<conns>`.
    pub key: String,
    pub name: String,
    pub path: String,
    pub load: wrk::Summary,
    pub cpu: ReferenceCpu,
}

/// Its CPU accounting (`cpustat.py`), in cores over the middle of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReferenceCpu {
    #[serde(default)]
    pub app: f64,
    #[serde(default)]
    pub postgres: f64,
    #[serde(default)]
    pub redis: f64,
    #[serde(default)]
    pub wrk: f64,
    /// Busy cores not accounted for by the above: another session's work.
    /// `run.sh` repeats a run with more than 0.2 of it.
    #[serde(default)]
    pub other: f64,
}

/// Its bench.lua's summary line (`JSON {...}`).
#[derive(Deserialize)]
struct ReferenceWrk {
    requests: u64,
    duration_s: f64,
    rps: f64,
    mean_ms: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    non2xx: u64,
    connect_err: u64,
    read_err: u64,
    write_err: u64,
    timeouts: u64,
}

/// Posture's figure beside the reference's.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub posture: String,
    pub reference: String,
    pub posture_rps: f64,
    pub reference_rps: f64,
    /// Posture's requests per second ÷ the reference's.
    pub throughput_ratio: f64,
    pub posture_p99_ms: f64,
    pub reference_p99_ms: f64,
    /// The reference's p99 ÷ Posture's (how many times shorter Posture's is).
    pub p99_ratio: f64,
    /// Both sides answered every request with a 2xx: otherwise the ratios
    /// compare refusals (429s, say) with answers, and mean nothing.
    pub valid: bool,
}

/// Warns when the reference's script is about to restart PostgreSQL.
pub async fn warn_about_restart() -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(&database::url("postgres", "postgres")).await?;
    let max: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(&mut admin)
        .await?;
    admin.close().await?;
    if max.parse::<u32>().unwrap_or(0) < 200 {
        eprintln!(
            "bench: PostgreSQL has max_connections = {max}: the reference stack's run.sh will raise \
             it to 200 and restart PostgreSQL (once; anything else connected loses its connections)"
        );
    }
    Ok(())
}

/// Copies the stack from `source` and runs its `run.sh` with the harness's
/// wrk settings.
pub fn run(settings: &Settings, source: &Path) -> anyhow::Result<ReferenceRun> {
    anyhow::ensure!(
        source.join("run.sh").is_file(),
        "no reference stack at {} (--reference-dir PATH, or --no-reference)",
        source.display()
    );
    let workdir = std::env::var_os("POSTURE_REFERENCE_WORKDIR").map_or_else(
        || PathBuf::from("/var/tmp/posture-reference-stack"),
        PathBuf::from,
    );
    copy_files(source, &workdir)?;
    let results = output::bench_dir().join("reference");
    if results.exists() {
        std::fs::remove_dir_all(&results)?;
    }
    std::fs::create_dir_all(&results)?;
    eprintln!(
        "bench: the reference stack, from {} (run in {}, results in {})",
        source.display(),
        workdir.display(),
        results.display()
    );
    let status = Command::new("bash")
        .arg(workdir.join("run.sh"))
        .current_dir(&workdir)
        .env("DUR", format!("{}s", settings.seconds))
        .env("WARM", format!("{}s", settings.warm_up.max(1)))
        .env("CONNS", settings.connections.to_string())
        .env("THREADS", settings.threads.to_string())
        .env("EXTRAS", "0")
        .env("PORT", server::free_port()?.to_string())
        .env("RES", &results)
        // Its progress goes with the harness's, to stderr; stdout is the table's.
        .stdout(Stdio::from(std::io::stderr()))
        .status()?;
    anyhow::ensure!(
        status.success(),
        "the reference stack's run.sh failed ({status})"
    );

    let mut scenarios = Vec::new();
    for (key, name, path) in RUNS {
        let file = format!("{key}-c{}", settings.connections);
        let text = std::fs::read_to_string(results.join(format!("{file}.wrk.txt")))?;
        let line = text
            .lines()
            .filter_map(|line| line.strip_prefix("JSON "))
            .next_back()
            .ok_or_else(|| anyhow::anyhow!("no result in {file}.wrk.txt: {text}"))?;
        let measured: ReferenceWrk = serde_json::from_str(line)?;
        let cpu = std::fs::read_to_string(results.join(format!("{file}.cpu.json")))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        scenarios.push(ReferenceScenario {
            key: key.to_owned(),
            name: format!("reference: {name}"),
            path: path.to_owned(),
            load: wrk::Summary {
                requests: measured.requests,
                duration_s: measured.duration_s,
                requests_per_second: measured.rps,
                mean_ms: measured.mean_ms,
                p50_ms: measured.p50_ms,
                p90_ms: measured.p90_ms,
                p99_ms: measured.p99_ms,
                max_ms: measured.max_ms,
                non_2xx: measured.non2xx,
                socket_errors: measured.connect_err
                    + measured.read_err
                    + measured.write_err
                    + measured.timeouts,
            },
            cpu,
        });
    }
    Ok(ReferenceRun {
        source: source.to_owned(),
        environment: std::fs::read_to_string(results.join("env.txt")).unwrap_or_default(),
        scenarios,
    })
}

/// Every request answered, and with a 2xx.
fn clean(load: &wrk::Summary) -> bool {
    load.non_2xx == 0 && load.socket_errors == 0
}

/// Copies the regular files of `source` (not its subdirectories) into
/// `workdir`, replacing older copies and leaving what the script made there.
fn copy_files(source: &Path, workdir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(workdir)?;
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let to = workdir.join(entry.file_name());
        // The originals are read-only, and so are their copies.
        if to.exists() {
            std::fs::remove_file(&to)?;
        }
        std::fs::copy(entry.path(), &to)?;
    }
    Ok(())
}

impl ReferenceRun {
    /// The reference's run called `key`.
    pub fn scenario(&self, key: &str) -> Option<&ReferenceScenario> {
        self.scenarios.iter().find(|scenario| scenario.key == key)
    }

    /// Posture's `measured` beside the reference's run `key`.
    pub fn compare(&self, name: &str, measured: &wrk::Summary, key: &str) -> Option<Comparison> {
        let reference = self.scenario(key)?;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Some(Comparison {
            posture: name.to_owned(),
            reference: reference.name.clone(),
            posture_rps: measured.requests_per_second,
            reference_rps: reference.load.requests_per_second,
            throughput_ratio: ratio(
                measured.requests_per_second,
                reference.load.requests_per_second,
            ),
            posture_p99_ms: measured.p99_ms,
            reference_p99_ms: reference.load.p99_ms,
            p99_ratio: ratio(reference.load.p99_ms, measured.p99_ms),
            valid: clean(measured) && clean(&reference.load),
        })
    }
}
