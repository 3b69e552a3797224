//! Scenario 5, ingestion: the findings/s of 10,000- and 100,000-result
//! reports, from the ingestion benchmark (`cargo bench -p posture --bench
//! ingest`, which `bench/run.sh` runs just before this harness) — read from
//! the `ingest.json` it wrote, passed with `--ingest-json`.
//!
//! Only the fields shown are read, so the two benchmarks' reports can grow
//! apart without breaking this.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The ingestion benchmark's targets (issue 8, as in its own report).
const TARGET_FINDINGS_PER_SEC: f64 = 20_000.0;
const TARGET_PEAK_RSS_MIB: f64 = 200.0;

/// The ingestion figures, as the load report carries them.
#[derive(Debug, Clone, Serialize)]
pub struct Ingestion {
    /// When the ingestion benchmark ran.
    pub date: String,
    pub rows: Vec<IngestRow>,
    /// Verdicts, where the sizes the targets are about were measured.
    pub findings_per_sec_10k_met: Option<bool>,
    pub peak_rss_100k_met: Option<bool>,
}

/// One report size and phase: the median run.
#[derive(Debug, Clone, Serialize)]
pub struct IngestRow {
    pub report: usize,
    pub phase: String,
    pub runs: usize,
    pub new: i64,
    pub unchanged: i64,
    pub resolved: i64,
    pub total_ms: f64,
    pub findings_per_second: f64,
    pub findings_per_second_min: f64,
    pub findings_per_second_max: f64,
    pub peak_rss_mib: Option<f64>,
}

#[derive(Deserialize)]
struct File {
    date: String,
    sizes: Vec<Size>,
}

#[derive(Deserialize)]
struct Size {
    size: usize,
    runs: usize,
    phases: Vec<Phase>,
    processing_peak_rss_mib: Option<f64>,
}

#[derive(Deserialize)]
struct Phase {
    median: Median,
    findings_per_sec_min: f64,
    findings_per_sec_max: f64,
    peak_rss_mib_max: Option<f64>,
}

#[derive(Deserialize)]
struct Median {
    phase: String,
    new: i64,
    unchanged: i64,
    resolved: i64,
    total_ms: f64,
    findings_per_sec: f64,
}

/// Reads `path` (the ingestion benchmark's JSON).
pub fn read(path: &Path) -> anyhow::Result<Ingestion> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
    let file: File = serde_json::from_str(&text)?;
    let mut rows = Vec::new();
    let mut findings_per_sec_10k_met = None;
    let mut peak_rss_100k_met = None;
    for size in &file.sizes {
        for phase in &size.phases {
            rows.push(IngestRow {
                report: size.size,
                phase: phase.median.phase.clone(),
                runs: size.runs,
                new: phase.median.new,
                unchanged: phase.median.unchanged,
                resolved: phase.median.resolved,
                total_ms: phase.median.total_ms,
                findings_per_second: phase.median.findings_per_sec,
                findings_per_second_min: phase.findings_per_sec_min,
                findings_per_second_max: phase.findings_per_sec_max,
                peak_rss_mib: phase.peak_rss_mib_max,
            });
        }
        if size.size == 10_000 {
            // Every phase's median, as the ingestion benchmark judges it.
            findings_per_sec_10k_met = Some(
                size.phases
                    .iter()
                    .all(|phase| phase.median.findings_per_sec >= TARGET_FINDINGS_PER_SEC),
            );
        }
        if size.size == 100_000 {
            peak_rss_100k_met = size
                .processing_peak_rss_mib
                .map(|mib| mib < TARGET_PEAK_RSS_MIB);
        }
    }
    Ok(Ingestion {
        date: file.date,
        rows,
        findings_per_sec_10k_met,
        peak_rss_100k_met,
    })
}

/// Prints the ingestion table and its verdicts.
pub fn print_markdown(ingestion: &Ingestion) {
    println!(
        "\n**Ingestion** (`cargo bench -p posture --bench ingest`, run just before, {}; a synthetic SARIF report through the worker's own path, median run):\n",
        ingestion.date
    );
    println!("| report | phase | runs | new | unchanged | resolved | total ms | findings/s (median) | min–max | peak RSS MiB |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &ingestion.rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | **{:.0}** | {:.0}–{:.0} | {} |",
            row.report,
            row.phase,
            row.runs,
            row.new,
            row.unchanged,
            row.resolved,
            row.total_ms,
            row.findings_per_second,
            row.findings_per_second_min,
            row.findings_per_second_max,
            row.peak_rss_mib
                .map_or_else(|| "n/a".into(), |mib| format!("{mib:.0}")),
        );
    }
    let verdict = |met: Option<bool>| match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    println!(
        "\nTargets: ≥ {TARGET_FINDINGS_PER_SEC:.0} findings/s for the 10,000-result report (every phase): {}; \
         peak RSS < {TARGET_PEAK_RSS_MIB:.0} MiB for the 100,000-result report: {}.",
        verdict(ingestion.findings_per_sec_10k_met),
        verdict(ingestion.peak_rss_100k_met),
    );
}
