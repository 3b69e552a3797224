//! One size, in one process: a tenant and asset, a warm-up cycle, then the
//! three timed scans.

use crate::database::url;
use crate::measure::{self, SpanClock};
use anyhow::{ensure, Context};
use posture::config::Config;
use posture::ingest::process::{Processed, ScanProcessor};
use posture::ingest::{compress, decompress};
use posture::jobs::queue;
use posture::store::assets::{self, NewAsset};
use posture::store::scans::{self, NewScan, ScanCounts};
use posture::store::{operator, posture as posture_store, PoolSettings, Store};
use posture::summary::refresh::{refresh, Refreshed};
use posture_domain::asset::{AssetKind, AssetName, Criticality};
use posture_domain::ids::{AssetId, ScanId};
use posture_domain::report::{parse_report, synthetic, ReportFormat};
use posture_domain::{TenantId, TenantName, TenantSlug, Tier};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Results of the warm-up cycle that precedes the measured scans.
pub const WARM_UP_RESULTS: usize = 10_000;
/// Rules the synthetic reports spread their results over.
const RULES: usize = 200;
const MIB: f64 = 1024.0 * 1024.0;

/// One size's measurements.
#[derive(Debug, Serialize, Deserialize)]
pub struct SizeResult {
    /// Results in the report of the first ingestion.
    pub size: usize,
    /// Its uncompressed size.
    pub report_bytes: usize,
    /// Its gzip-compressed size, as stored.
    pub stored_bytes: usize,
    /// Cycles measured (each on a fresh asset).
    pub runs: usize,
    /// Per phase: the run with the median time, and the spread over the runs.
    pub phases: Vec<PhaseSummary>,
    /// Every run's measurements.
    pub samples: Vec<PhaseResult>,
    /// Highest peak RSS over the three timed `process` calls (each measured from
    /// a reset of `VmHWM` just before it), MiB.
    pub processing_peak_rss_mib: Option<f64>,
    /// Peak RSS of the whole child process, report generation and warm-up included, MiB.
    pub process_peak_rss_mib: Option<f64>,
    /// Reading the precomputed posture summary once the size's scans are in.
    pub summary_read: Option<SummaryRead>,
}

/// How long `GET /v1/posture`'s database work takes on the size's tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryRead {
    /// Findings of the tenant (all statuses), and how many are live.
    pub findings: i64,
    pub live_findings: i64,
    /// Reads timed (each a whole tenant transaction: begin, set_config, three
    /// primary-key lookups, commit).
    pub reads: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    /// `EXPLAIN (ANALYZE, BUFFERS)` of the summary's row lookup.
    pub plan: String,
}

/// One phase over all runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// The run with the median total time.
    pub median: PhaseResult,
    pub findings_per_sec_min: f64,
    pub findings_per_sec_max: f64,
    /// Highest over the runs, MiB.
    pub peak_rss_mib_max: Option<f64>,
}

/// One timed scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    /// `first`, `rescan` or `10% removed`.
    pub phase: String,
    /// 1-based cycle number.
    pub run: usize,
    /// Results in this scan's report.
    pub findings: usize,
    /// The report's size, and gzip-compressed as stored.
    pub report_bytes: usize,
    pub stored_bytes: usize,
    pub new: i32,
    pub unchanged: i32,
    pub resolved: i32,
    /// Wall time of `ScanProcessor::process`.
    pub total_ms: f64,
    /// Decompressing and parsing the same stored bytes again, outside `process`.
    pub parse_ms: f64,
    /// Time inside `store::findings::apply_scan`.
    pub apply_ms: f64,
    /// `total - parse - apply`: loading, the SLA policy, scan and job updates, commit.
    pub other_ms: f64,
    /// CPU time of this process (all threads) during `process`, 10 ms resolution:
    /// the rest of the total is spent waiting for PostgreSQL.
    pub client_cpu_ms: f64,
    /// `findings / total`.
    pub findings_per_sec: f64,
    /// Peak RSS during `process` (`VmHWM` reset just before), MiB.
    pub peak_rss_mib: Option<f64>,
    /// The posture refresh the scan queued (score, MTTR, compliance over every
    /// finding of the tenant), run right after it: background work, timed apart.
    #[serde(default)]
    pub refresh_ms: f64,
}

/// Measures one size on `database`, `runs` times.
pub async fn size(size: usize, runs: usize, database: &str) -> anyhow::Result<SizeResult> {
    let clock = SpanClock::install("apply_scan");
    let config = Config::default();
    // The worker's pool settings (statement timeout included: a scan that needs
    // longer than production allows fails here too), with fewer idle connections.
    let settings = PoolSettings {
        min_connections: 1,
        max_connections: 4,
        ..PoolSettings::from_config(&config)
    };
    let store = Store::connect_lazy(&url("posture_app", database), &settings)?;
    let tenant = create_tenant(database, size).await?;
    let bench = Bench {
        processor: ScanProcessor {
            store: store.clone(),
            worker_id: format!("bench-{}", std::process::id()),
            max_report_bytes: config.scan_max_bytes_any(),
            apply_statement_timeout: Duration::from_millis(config.job_statement_timeout_ms),
            views: None,
        },
        store,
        tenant,
        lease: Duration::from_secs(config.job_lease_secs),
        max_attempts: config.job_max_attempts,
        clock,
    };

    let warm_up = bench.asset("bench/warm-up").await?;
    for (phase, results) in phases(WARM_UP_RESULTS) {
        bench.scan(warm_up, WARM_UP_RESULTS, phase, results).await?;
    }
    eprintln!("bench {size}: warmed up ({WARM_UP_RESULTS}-result cycle)");

    let mut process_peak = measure::peak_rss();
    let mut samples = Vec::new();
    for run in 1..=runs.max(1) {
        let asset = bench.asset(&format!("bench/measured-{run}")).await?;
        for (phase, results) in phases(size) {
            let (mut result, peak_before) = bench.scan(asset, size, phase, results).await?;
            result.run = run;
            process_peak = process_peak.max(peak_before);
            eprintln!(
                "bench {size}: run {run}: {phase}: {results} findings in {:.0} ms ({:.0}/s)",
                result.total_ms, result.findings_per_sec
            );
            samples.push(result);
        }
    }
    let summary_read = Some(bench.summary_read().await?);
    let phases = phases(size)
        .iter()
        .map(|(phase, _)| summarize(samples.iter().filter(|s| s.phase == *phase).collect()))
        .collect::<Vec<_>>();
    Ok(SizeResult {
        size,
        report_bytes: samples[0].report_bytes,
        stored_bytes: samples[0].stored_bytes,
        runs: runs.max(1),
        processing_peak_rss_mib: samples
            .iter()
            .filter_map(|phase| phase.peak_rss_mib)
            .reduce(f64::max),
        process_peak_rss_mib: process_peak
            .max(measure::peak_rss())
            .map(|bytes| bytes as f64 / MIB),
        phases,
        samples,
        summary_read,
    })
}

/// The median run of one phase (by total time) and the spread.
fn summarize(mut runs: Vec<&PhaseResult>) -> PhaseSummary {
    runs.sort_by(|a, b| a.total_ms.total_cmp(&b.total_ms));
    let rates = runs.iter().map(|run| run.findings_per_sec);
    PhaseSummary {
        median: runs[runs.len() / 2].clone(),
        findings_per_sec_min: rates.clone().fold(f64::INFINITY, f64::min),
        findings_per_sec_max: rates.fold(0.0, f64::max),
        peak_rss_mib_max: runs
            .iter()
            .filter_map(|run| run.peak_rss_mib)
            .reduce(f64::max),
    }
}

/// The three scans of a cycle: (phase, results in the report). The last drops
/// the last 10 % of results (synthetic reports of fewer results are prefixes).
fn phases(size: usize) -> [(&'static str, usize); 3] {
    [
        ("first", size),
        ("rescan", size),
        ("10% removed", size - size / 10),
    ]
}

async fn create_tenant(database: &str, size: usize) -> anyhow::Result<TenantId> {
    let owner = Store::connect_lazy(
        &url("posture_owner", database),
        &PoolSettings::for_command(&Config::default()),
    )?;
    let tenant = operator::create_tenant(
        &owner,
        &TenantSlug::parse(&format!("bench-{size}"))?,
        &TenantName::parse(&format!("Benchmark {size}"))?,
        Tier::Enterprise,
    )
    .await?;
    owner.close().await;
    Ok(tenant.id)
}

struct Bench {
    processor: ScanProcessor,
    store: Store,
    tenant: TenantId,
    lease: Duration,
    max_attempts: i32,
    clock: SpanClock,
}

impl Bench {
    async fn asset(&self, name: &str) -> anyhow::Result<AssetId> {
        let mut tx = self.store.begin_tenant(self.tenant).await?;
        let asset = assets::insert(
            &mut tx,
            &NewAsset {
                kind: AssetKind::Repository,
                name: &AssetName::parse(name)?,
                criticality: Criticality::High,
                tags: &[],
            },
        )
        .await?;
        tx.commit().await?;
        Ok(asset.id)
    }

    /// Stores, queues, claims and processes one full scan of `results` results
    /// on `asset`, whose previous scan (if any) had `size`. Returns the
    /// measurements and the process's peak RSS before the reset for this scan.
    async fn scan(
        &self,
        asset: AssetId,
        size: usize,
        phase: &str,
        results: usize,
    ) -> anyhow::Result<(PhaseResult, Option<u64>)> {
        // Submission, as `POST /v1/scans` stores it (the report text is dropped
        // before processing, as it lives in another process in production).
        let (scan_id, stored, report_bytes) = {
            let report = synthetic::sarif(results, RULES);
            let mut stored = compress(report.as_bytes());
            // Kept to time the parse again below; its spare capacity would
            // otherwise count against the peak RSS of processing.
            stored.shrink_to_fit();
            let scan_id = ScanId::new();
            let mut tx = self.store.begin_tenant(self.tenant).await?;
            scans::insert(
                &mut tx,
                &NewScan {
                    id: scan_id,
                    asset_id: asset,
                    tool_name: Some("synthetic"),
                    tool_version: Some("1.0.0"),
                    format: "sarif",
                    scope: "full",
                    report_bytes: i64::try_from(report.len())?,
                    content_type: ReportFormat::Sarif.media_type(),
                    compressed_report: &stored,
                    max_attempts: self.max_attempts,
                },
            )
            .await?;
            tx.commit().await?;
            (scan_id, stored, report.len())
        };
        let job = queue::claim(&self.store, &self.processor.worker_id, 1, self.lease)
            .await?
            .into_iter()
            .next()
            .context("the scan's job was not claimable")?;
        ensure!(job.scan_id == Some(scan_id), "claimed another scan's job");

        let peak_before = measure::peak_rss();
        let reset = measure::reset_peak_rss();
        self.clock.take();
        let cpu_before = measure::cpu_time();
        let started = Instant::now();
        let outcome = self.processor.process(&job).await?;
        let total = started.elapsed();
        let cpu = measure::cpu_time()
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        let peak = measure::peak_rss().filter(|_| reset);
        let apply = self.clock.take();
        ensure!(outcome == Processed::Applied, "scan ended {outcome:?}");

        // The posture refresh the scan queued, as a worker would run it next.
        let refresh_job = queue::claim(&self.store, &self.processor.worker_id, 1, self.lease)
            .await?
            .into_iter()
            .next()
            .context("the scan queued no posture refresh")?;
        ensure!(
            refresh_job.kind == "refresh_posture",
            "claimed {}",
            refresh_job.kind
        );
        let refresh_started = Instant::now();
        let refreshed = refresh(
            &self.store,
            self.tenant,
            Some((&refresh_job, self.processor.worker_id.as_str())),
            None,
        )
        .await?;
        let refresh_time = refresh_started.elapsed();
        ensure!(
            refreshed == Refreshed::Stored,
            "refresh ended {refreshed:?}"
        );

        let counts = self.counts(scan_id).await?;
        let expected = match phase {
            "first" => (size as i32, 0, 0),
            "rescan" => (0, size as i32, 0),
            _ => (0, results as i32, (size - results) as i32),
        };
        ensure!(
            (counts.new, counts.unchanged, counts.resolved) == expected && counts.reopened == 0,
            "{phase}: unexpected counts {counts:?}"
        );

        // The CPU part again, on the same stored bytes, to split the total.
        let parse_started = Instant::now();
        let report = decompress(&stored, self.processor.max_report_bytes)?;
        let parsed = parse_report(&report, Some(ReportFormat::Sarif), None)
            .map_err(|error| anyhow::anyhow!("parsing: {}", error.message))?;
        let parse = parse_started.elapsed();
        ensure!(parsed.findings.len() == results);
        drop((parsed, report));

        let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
        Ok((
            PhaseResult {
                phase: phase.to_owned(),
                run: 0,
                findings: results,
                report_bytes,
                stored_bytes: stored.len(),
                new: counts.new,
                unchanged: counts.unchanged,
                resolved: counts.resolved,
                total_ms: ms(total),
                parse_ms: ms(parse),
                apply_ms: ms(apply),
                other_ms: ms(total.saturating_sub(parse).saturating_sub(apply)),
                client_cpu_ms: cpu.map_or(f64::NAN, ms),
                findings_per_sec: results as f64 / total.as_secs_f64(),
                peak_rss_mib: peak.map(|bytes| bytes as f64 / MIB),
                refresh_ms: ms(refresh_time),
            },
            peak_before,
        ))
    }

    /// Times the summary read `GET /v1/posture` does, and explains its lookup.
    async fn summary_read(&self) -> anyhow::Result<SummaryRead> {
        const READS: usize = 500;
        let mut tx = self.store.begin_tenant(self.tenant).await?;
        let (findings, live_findings): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE status IN ('open', 'reopened')) FROM findings",
        )
        .fetch_one(tx.conn())
        .await?;
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
             SELECT computed_at, posture FROM posture_summaries WHERE tenant_id = $1",
        )
        .bind(self.tenant.as_uuid())
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        let mut times = Vec::with_capacity(READS);
        for _ in 0..READS {
            let started = Instant::now();
            let mut tx = self.store.begin_tenant(self.tenant).await?;
            let stored = posture_store::stored(&mut tx).await?;
            tx.commit().await?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            ensure!(stored.is_some(), "no stored summary");
        }
        times.sort_by(f64::total_cmp);
        Ok(SummaryRead {
            findings,
            live_findings,
            reads: READS,
            median_ms: times[READS / 2],
            p99_ms: times[READS * 99 / 100],
            plan: plan.join("\n"),
        })
    }

    async fn counts(&self, scan_id: ScanId) -> anyhow::Result<ScanCounts> {
        let mut tx = self.store.begin_tenant(self.tenant).await?;
        let scan = scans::get(&mut tx, scan_id).await?.context("scan gone")?;
        tx.commit().await?;
        scan.counts.context("scan without counts")
    }
}
