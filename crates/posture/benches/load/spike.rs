//! Scenario 3, the scan spike: pipelines of many tenants push reports in a
//! burst while the dashboards keep reading.
//!
//! `spike_scans` native reports of `spike_findings` findings each, from the
//! `spike_tenants` tenants with a write key, are submitted with at most
//! `spike_concurrency` in flight, while cached reads (`GET /v1/posture`,
//! keys rotating over every load tenant) go out at a fixed rate
//! ([`crate::open_loop`]). The clock starts at the first submission and stops
//! when PostgreSQL shows every accepted scan `succeeded` or `failed` (polled as
//! the superuser every 50 ms: the harness's database holds no other scans).
//!
//! Each tenant's scans go round its [`ASSETS`] repositories as full scans.
//! A report keeps 80 % of its findings from one scan of the asset to the next
//! and replaces the rest, so after an asset's first scan (all new) each scan
//! brings new findings, leaves most unchanged and resolves the ones it no
//! longer reports — the work a real rescan does.

use crate::open_loop::{self, OpenLoop};
use crate::{database, procstat, settings::Settings, wrk};
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Repositories each spike tenant's scans go round.
const ASSETS: usize = 4;
/// Share of a report's findings that the next scan of the asset reports again.
const KEPT_PERCENT: usize = 80;
const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];
/// The targets.
const TARGET_PROCESSED_S: f64 = 20.0;
const TARGET_READ_P99_MS: f64 = 50.0;
/// Give up waiting for the scans after this long.
const PROCESSING_LIMIT: Duration = Duration::from_secs(600);
const POLL_EVERY: Duration = Duration::from_millis(50);

/// What the spike measured.
#[derive(Debug, Clone, Serialize)]
pub struct SpikeResult {
    pub scans: usize,
    pub tenants: usize,
    pub findings_per_scan: usize,
    pub concurrency: usize,
    /// Cached reads scheduled per second.
    pub read_rate: u32,
    /// Submissions answered 202.
    pub accepted: usize,
    /// Submissions answered otherwise, or not at all: errors.
    pub rejected: usize,
    /// Statuses of the rejected ones (`"error"` for no answer), with counts.
    pub rejected_statuses: BTreeMap<String, usize>,
    /// The first few rejections' bodies or errors.
    pub rejected_examples: Vec<String>,
    /// From the first submission to the last answer.
    pub submit_s: f64,
    /// From the first submission until every accepted scan was processed
    /// (50 ms resolution); the limit if they were not.
    pub processed_s: f64,
    pub all_processed: bool,
    pub succeeded: i64,
    /// Scans that ended `failed`: errors.
    pub failed: i64,
    pub failed_examples: Vec<String>,
    /// Accepted scans per second of `processed_s`.
    pub scans_per_second: f64,
    /// Findings in the accepted reports per second of `processed_s`.
    pub findings_per_second: f64,
    /// Sums over the scans, as the processor counted them.
    pub new: i64,
    pub unchanged: i64,
    pub resolved: i64,
    pub reopened: i64,
    /// The cached reads while the server was idle otherwise (the lead-in).
    pub reads_before: wrk::Summary,
    /// The cached reads scheduled between the first submission and the end of
    /// processing.
    pub reads_during: wrk::Summary,
    /// p99 of the generator's own lateness during the spike (scheduled →
    /// sent, included in the read latency), ms.
    pub read_send_lag_p99_ms: f64,
    /// Cores used from the first submission to the end of processing.
    pub cpu: procstat::CpuUse,
    pub processed_within_target: bool,
    pub read_p99_within_target: bool,
    pub zero_errors: bool,
}

/// Runs the spike against the server at `base` (process `server_pid`).
pub async fn run(
    settings: &Settings,
    database: &str,
    base: &str,
    server_pid: u32,
    read_keys: &[String],
    write_keys: &[String],
) -> anyhow::Result<SpikeResult> {
    anyhow::ensure!(!write_keys.is_empty(), "no spike tenants were seeded");
    let bodies = reports(
        settings.spike_scans,
        write_keys.len(),
        settings.spike_findings,
    );
    let mut admin = PgConnection::connect(&database::url("postgres", database)).await?;

    // The reads start first, and run alone for the warm-up: their figures
    // before the spike are the baseline.
    let reads = OpenLoop::start(
        format!("{base}/v1/posture"),
        read_keys.to_vec(),
        settings.spike_read_rate,
    )?;
    let reads_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(settings.warm_up.max(1))).await;

    let before = procstat::sample(server_pid);
    let started = Instant::now();
    let mut submitting = tokio::spawn(submit_all(
        base.to_owned(),
        write_keys.to_vec(),
        bodies,
        settings.spike_concurrency,
        started,
    ));
    let mut submitted: Option<Submitted> = None;
    let (processed, all_processed) = loop {
        tokio::time::sleep(POLL_EVERY).await;
        if submitted.is_none() && submitting.is_finished() {
            submitted = Some((&mut submitting).await??);
        }
        let processed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM scans WHERE status IN ('succeeded', 'failed')",
        )
        .fetch_one(&mut admin)
        .await?;
        if let Some(done) = &submitted {
            if processed >= i64::try_from(done.accepted)? {
                break (started.elapsed(), true);
            }
        }
        if started.elapsed() >= PROCESSING_LIMIT {
            break (started.elapsed(), false);
        }
    };
    let ended = Instant::now();
    let cpu = procstat::sample(server_pid).since(&before, ended - started);
    let samples = reads.stop()?;
    let submitted = match submitted {
        Some(done) => done,
        None => submitting.await??,
    };

    let (succeeded, failed, findings, new, unchanged, resolved, reopened): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'succeeded'),
                count(*) FILTER (WHERE status = 'failed'),
                coalesce(sum(findings_total), 0)::bigint, coalesce(sum(new_count), 0)::bigint,
                coalesce(sum(unchanged_count), 0)::bigint, coalesce(sum(resolved_count), 0)::bigint,
                coalesce(sum(reopened_count), 0)::bigint
         FROM scans",
    )
    .fetch_one(&mut admin)
    .await?;
    let failed_examples: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(error::text, '') FROM scans WHERE status = 'failed' LIMIT 3",
    )
    .fetch_all(&mut admin)
    .await?;
    admin.close().await?;
    eprintln!(
        "bench: spike: {} accepted, {} rejected in {:.1?}; processed in {:.1?} ({succeeded} succeeded, {failed} failed, {findings} findings)",
        submitted.accepted, submitted.rejected, submitted.took, processed
    );

    let reads_before = open_loop::summarize(&samples, reads_started, started);
    let reads_during = open_loop::summarize(&samples, started, ended);
    let read_send_lag_p99_ms = open_loop::lag_p99_ms(&samples, started, ended);
    let seconds = processed.as_secs_f64();
    let read_errors = reads_during.non_2xx + reads_during.socket_errors;
    Ok(SpikeResult {
        scans: settings.spike_scans,
        tenants: write_keys.len(),
        findings_per_scan: settings.spike_findings,
        concurrency: settings.spike_concurrency,
        read_rate: settings.spike_read_rate,
        accepted: submitted.accepted,
        rejected: submitted.rejected,
        rejected_statuses: submitted.statuses,
        rejected_examples: submitted.examples,
        submit_s: submitted.took.as_secs_f64(),
        processed_s: seconds,
        all_processed,
        succeeded,
        failed,
        failed_examples,
        scans_per_second: submitted.accepted as f64 / seconds,
        findings_per_second: (submitted.accepted * settings.spike_findings) as f64 / seconds,
        new,
        unchanged,
        resolved,
        reopened,
        // "All 1,000 processed": a rejected submission was never processed.
        processed_within_target: all_processed
            && submitted.accepted == settings.spike_scans
            && seconds <= TARGET_PROCESSED_S,
        read_p99_within_target: reads_during.p99_ms <= TARGET_READ_P99_MS,
        zero_errors: submitted.rejected == 0 && failed == 0 && read_errors == 0 && all_processed,
        reads_before,
        reads_during,
        read_send_lag_p99_ms,
        cpu,
    })
}

/// One report to submit.
struct Report {
    key_index: usize,
    asset: String,
    body: Vec<u8>,
}

/// Builds every report before the clock starts. Scan `n` comes from tenant
/// `n % tenants`; that tenant's scans go round its assets.
fn reports(scans: usize, tenants: usize, findings: usize) -> Vec<Report> {
    let kept = findings * KEPT_PERCENT / 100;
    (0..scans)
        .map(|n| {
            let key_index = n % tenants;
            let round = n / tenants;
            let asset = round % ASSETS;
            // How many scans of this asset came before this one.
            let generation = round / ASSETS;
            let findings: Vec<serde_json::Value> = (0..findings)
                .map(|k| {
                    // The first `kept` findings stay; the rest are this scan's own.
                    let identity = if k < kept {
                        format!("{asset}-{k}")
                    } else {
                        format!("{asset}-{generation}-{k}")
                    };
                    let severity = SEVERITIES[k % SEVERITIES.len()];
                    let cwe: &[u32] = match k {
                        k if k % 7 == 0 => &[89],
                        k if k % 11 == 0 => &[79],
                        _ => &[],
                    };
                    serde_json::json!({
                        "rule_id": format!("spike.rule-{}", k % 25),
                        "title": format!("Spike finding {identity}"),
                        "severity": severity,
                        "cwe": cwe,
                        "location": { "path": format!("src/module_{}.rs", k % 40), "line": k + 1 },
                        "fingerprint": format!("spike:{identity}"),
                    })
                })
                .collect();
            let report = serde_json::json!({
                "format": "posture-native",
                "version": "1",
                "tool": { "name": "bench-spike", "version": "1" },
                "findings": findings,
            });
            Report {
                key_index,
                asset: format!("github.com/bench/spike-{asset}"),
                body: serde_json::to_vec(&report).unwrap_or_default(),
            }
        })
        .collect()
}

/// How the submissions went.
struct Submitted {
    accepted: usize,
    rejected: usize,
    statuses: BTreeMap<String, usize>,
    examples: Vec<String>,
    took: Duration,
}

/// Submits every report, `concurrency` at a time, each with an
/// `Idempotency-Key` as a pipeline that retries safely sends it.
async fn submit_all(
    base: String,
    keys: Vec<String>,
    reports: Vec<Report>,
    concurrency: usize,
    started: Instant,
) -> anyhow::Result<Submitted> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for report in reports {
        let permit = permits.clone().acquire_owned().await?;
        let request = client
            .post(format!("{base}/v1/scans"))
            .query(&[
                ("asset_kind", "repository"),
                ("asset_name", report.asset.as_str()),
                ("scope", "full"),
            ])
            .bearer_auth(&keys[report.key_index])
            .header("Content-Type", "application/vnd.posture.native+json")
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .body(report.body);
        tasks.spawn(async move {
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    (
                        status == reqwest::StatusCode::ACCEPTED,
                        status.as_u16().to_string(),
                        body,
                    )
                }
                Err(error) => (false, "error".to_owned(), error.to_string()),
            };
            drop(permit);
            outcome
        });
    }
    let mut submitted = Submitted {
        accepted: 0,
        rejected: 0,
        statuses: BTreeMap::new(),
        examples: Vec::new(),
        took: Duration::ZERO,
    };
    while let Some(done) = tasks.join_next().await {
        let (accepted, status, body) = done?;
        if accepted {
            submitted.accepted += 1;
        } else {
            submitted.rejected += 1;
            *submitted.statuses.entry(status.clone()).or_default() += 1;
            if submitted.examples.len() < 3 {
                submitted.examples.push(format!(
                    "{status}: {}",
                    body.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    submitted.took = started.elapsed();
    Ok(submitted)
}
