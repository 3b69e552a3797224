//! Ingestion benchmark: a synthetic SARIF report of 10,000 and of 100,000 results
//! processed end to end — decompress, parse, fingerprint, bulk upsert, lifecycle —
//! by the worker's own code (`ScanProcessor::process`) against a real PostgreSQL.
//!
//! ```text
//! bash scripts/bench-ingest.sh                       # setup, release build, run
//! cargo bench -p posture --bench ingest -- --sizes 10000,100000 [--runs N]
//! ```
//!
//! The parent process creates and migrates a database of its own
//! (`posture_bench_<unix time>`, dropped at the end) and runs each size in a
//! fresh child process, so a size's peak memory is not inflated by the one
//! before. A child creates a tenant, warms up (a full 10,000-result cycle on an
//! asset of its own: connections, caches and query plans are warm), then times
//! cycles of three full scans of a fresh asset: the first ingestion (everything
//! new), a rescan of the same report (everything unchanged), and a rescan with
//! the last 10 % of results removed (those are resolved). Each scan is stored
//! and queued like a submission (`store::scans::insert`), claimed with
//! `jobs::queue::claim`, and timed around `ScanProcessor::process`. Small
//! reports run several cycles (the machine may be shared: the median is
//! reported with the spread); the 100,000-result report runs one.
//!
//! Prints a Markdown table and writes JSON (every run) to `$POSTURE_BENCH_OUT`,
//! by default `<target dir>/bench/ingest.json`.

mod database;
mod machine;
mod measure;
mod output;
mod run;

use anyhow::Context;
use run::SizeResult;
use serde::Serialize;
use std::process::{Command, Stdio};

/// Report sizes measured when `--sizes` is not given.
const DEFAULT_SIZES: [usize; 2] = [10_000, 100_000];
/// The throughput target for the 10,000-result report (findings per second).
const TARGET_FINDINGS_PER_SEC: f64 = 20_000.0;
/// The memory target for the 100,000-result report (MiB).
const TARGET_PEAK_RSS_MIB: f64 = 200.0;

/// Cycles measured for a size unless `--runs` says otherwise.
fn default_runs(size: usize) -> usize {
    if size <= 20_000 {
        5
    } else {
        1
    }
}

/// Everything one run measured, as written to the JSON file.
#[derive(Serialize)]
struct BenchReport {
    date: String,
    machine: Machine,
    warm_up: String,
    sizes: Vec<SizeResult>,
}

/// Where it ran.
#[derive(Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: Option<String>,
    memory_mib: Option<u64>,
    postgres: String,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // A child measures one size and prints its result as one JSON line.
    if let Some(at) = args.iter().position(|arg| arg == "--child") {
        let usage = "--child SIZE RUNS DATABASE";
        let size: usize = args.get(at + 1).context(usage)?.parse()?;
        let runs: usize = args.get(at + 2).context(usage)?.parse()?;
        let database = args.get(at + 3).context(usage)?;
        let result = runtime.block_on(run::size(size, runs, database))?;
        println!("{}", serde_json::to_string(&result)?);
        return Ok(());
    }

    let sizes = match args.iter().position(|arg| arg == "--sizes") {
        Some(at) => args
            .get(at + 1)
            .context("--sizes N[,N…]")?
            .split(',')
            .map(|n| n.trim().replace('_', "").parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .context("--sizes takes numbers separated by commas")?,
        None => DEFAULT_SIZES.to_vec(),
    };
    let runs: Option<usize> = match args.iter().position(|arg| arg == "--runs") {
        Some(at) => Some(args.get(at + 1).context("--runs N")?.parse()?),
        None => None,
    };

    let database = runtime.block_on(database::create())?;
    eprintln!("bench: database {database} created and migrated");
    let postgres = runtime.block_on(database::server_version(&database));
    // Children run one after the other (2 cores: anything in parallel would
    // measure contention); the database is dropped whatever happened.
    let results: anyhow::Result<Vec<SizeResult>> = sizes
        .iter()
        .map(|&size| run_child(size, runs.unwrap_or_else(|| default_runs(size)), &database))
        .collect();
    let dropped = runtime.block_on(database::drop(&database));
    let sizes = results?;
    dropped?;
    eprintln!("bench: database {database} dropped");

    let report = BenchReport {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: machine::cpu_model(),
            memory_mib: machine::memory_mib(),
            postgres: postgres?,
        },
        warm_up: format!(
            "one full cycle (first, rescan, 10 % removed) of {} results on another asset before measuring",
            run::WARM_UP_RESULTS
        ),
        sizes,
    };
    print_markdown(&report);
    let out = output::write_report("ingest.json", &report)?;
    println!("\nJSON: {}", out.display());
    Ok(())
}

/// Runs one size in a fresh process of this same binary.
fn run_child(size: usize, runs: usize, database: &str) -> anyhow::Result<SizeResult> {
    let output = Command::new(std::env::current_exe()?)
        .args(["--child", &size.to_string(), &runs.to_string(), database])
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "the {size}-result run failed ({})",
        output.status
    );
    let line = String::from_utf8(output.stdout)?;
    serde_json::from_str(line.trim()).context("reading the child's result")
}

fn print_markdown(report: &BenchReport) {
    let machine = &report.machine;
    println!(
        "\n{} · {} CPUs ({}) · {} MiB RAM · PostgreSQL {}",
        report.date,
        machine.cpus,
        machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        machine.memory_mib.unwrap_or(0),
        machine.postgres
    );
    println!("Warm-up: {}.\n", report.warm_up);
    println!("| report | phase | runs | new | unchanged | resolved | total ms | parse ms | apply ms | other ms | client CPU ms | findings/s (median) | min–max | peak RSS MiB | posture refresh ms |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in &report.sizes {
        for summary in &size.phases {
            let phase = &summary.median;
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | **{:.0}** | {:.0}–{:.0} | {} | {:.0} |",
                size.size,
                phase.phase,
                size.runs,
                phase.new,
                phase.unchanged,
                phase.resolved,
                phase.total_ms,
                phase.parse_ms,
                phase.apply_ms,
                phase.other_ms,
                phase.client_cpu_ms,
                phase.findings_per_sec,
                summary.findings_per_sec_min,
                summary.findings_per_sec_max,
                summary
                    .peak_rss_mib_max
                    .map_or_else(|| "n/a".into(), |mib| format!("{mib:.0}")),
                phase.refresh_ms,
            );
        }
    }
    println!(
        "\nThe run with the median total per phase. parse = decompress + parse + fingerprint \
         (timed again on the same bytes); apply = store::findings::apply_scan; other = load, \
         SLA policy, scan and job updates, commit; client CPU = this process's CPU time \
         during the scan (the rest is waiting for PostgreSQL). findings/s = findings in \
         the report / total. posture refresh = the background recomputation of the \
         tenant's posture summary (score, MTTR, compliance) the scan queued, run after it."
    );
    for size in &report.sizes {
        let slowest = size
            .phases
            .iter()
            .map(|summary| summary.median.findings_per_sec)
            .fold(f64::INFINITY, f64::min);
        let peak = size.processing_peak_rss_mib.unwrap_or(f64::NAN);
        println!(
            "{}: slowest phase (median) {slowest:.0} findings/s; peak RSS while processing {peak:.0} MiB \
             (whole process, report generation included: {} MiB); report {:.1} MB, stored {:.1} MB",
            size.size,
            size.process_peak_rss_mib
                .map_or_else(|| "n/a".into(), |mib| format!("{mib:.0}")),
            size.report_bytes as f64 / 1e6,
            size.stored_bytes as f64 / 1e6,
        );
        if let Some(read) = &size.summary_read {
            println!(
                "  GET /v1/posture's database work on this tenant ({} findings, {} live): \
                 median {:.3} ms, p99 {:.3} ms over {} reads (tenant transaction with three \
                 primary-key lookups); summary lookup plan:\n    {}",
                read.findings,
                read.live_findings,
                read.median_ms,
                read.p99_ms,
                read.reads,
                read.plan.replace('\n', "\n    "),
            );
        }
        if size.size == 10_000 {
            let verdict = if slowest >= TARGET_FINDINGS_PER_SEC {
                "met"
            } else {
                "MISSED"
            };
            println!("  target ≥ {TARGET_FINDINGS_PER_SEC:.0} findings/s: {verdict}");
        }
        if size.size == 100_000 {
            let verdict = if peak < TARGET_PEAK_RSS_MIB {
                "met"
            } else {
                "MISSED"
            };
            println!("  target peak RSS < {TARGET_PEAK_RSS_MIB:.0} MiB: {verdict}");
        }
    }
}
