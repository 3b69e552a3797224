//! Processing one scan job: load → parse (no transaction open) → apply and
//! complete the job in one tenant transaction.

use super::{decompress, format_from_name};
use crate::jobs::queue::{self, ClaimedJob};
use crate::store::findings::{self, ScanApplication};
use crate::store::{scans, Store};
use crate::webhooks::triggers::{self, ScanFacts};
use anyhow::Context;
use posture_domain::report::parse_report;
use serde_json::json;

/// What a worker needs to process scans.
#[derive(Clone)]
pub struct ScanProcessor {
    pub store: Store,
    /// This worker's identity, recorded as the job's lock holder.
    pub worker_id: String,
    /// Largest report a stored scan may decompress to.
    pub max_report_bytes: usize,
    /// `statement_timeout` of the transaction that applies a scan.
    pub apply_statement_timeout: std::time::Duration,
    /// Cached views to invalidate when a posture refresh stores a new summary
    /// (`None` where nothing caches, e.g. the ingestion benchmark).
    pub views: Option<std::sync::Arc<crate::cache::views::ViewCache>>,
}

/// How a processed job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// Findings applied, scan succeeded, job done.
    Applied,
    /// The report could not be parsed: scan failed (permanently), job done.
    Rejected,
    /// The scan was deleted meanwhile: job done, nothing to apply.
    Gone,
    /// Another worker holds the job now: this attempt's work was rolled back.
    LeaseLost,
}

impl ScanProcessor {
    /// Processes a claimed `process_scan` job. An `Err` is a transient failure
    /// (database, I/O): the caller records it and the job is retried. Applying
    /// the same scan twice leaves the same state as once, because the effects and
    /// the job's completion commit together, and only by the lease holder.
    #[tracing::instrument(skip_all, fields(tenant_id = %job.tenant_id, job_id = %job.job_id, attempt = job.attempt))]
    pub async fn process(&self, job: &ClaimedJob) -> anyhow::Result<Processed> {
        let scan_id = job.scan_id.context("process_scan job without a scan")?;

        // 1. Load, in a short transaction.
        let mut tx = self.store.begin_tenant(job.tenant_id).await?;
        scans::mark_running(&mut tx, scan_id).await?;
        let scan = scans::get(&mut tx, scan_id).await?;
        let stored = scans::report(&mut tx, scan_id).await?;
        tx.commit().await?;
        let (Some(scan), Some((_content_type, stored))) = (scan, stored) else {
            let mut tx = self.store.begin_tenant(job.tenant_id).await?;
            if !queue::complete(&mut tx, job, &self.worker_id).await? {
                return Ok(Processed::LeaseLost);
            }
            tx.commit().await?;
            return Ok(Processed::Gone);
        };

        // 2. Decompress and parse with no transaction open: CPU work, in one
        //    blocking task, so the report's bytes are never copied (a 100,000-
        //    result SARIF log is ~40 MB) and are freed as soon as it is parsed.
        let limit = self.max_report_bytes;
        let declared = format_from_name(&scan.format);
        let tool_hint = scan.tool_name.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let report = decompress(&stored, limit)?;
            drop(stored);
            Ok::<_, std::io::Error>(parse_report(&report, declared, tool_hint.as_deref()))
        })
        .await
        .context("parser task")??;

        // 3. Apply and complete, atomically. A large report's apply takes seconds,
        // longer than the request-path statement timeout; this transaction gets
        // the job's own limit.
        let mut tx = self.store.begin_tenant(job.tenant_id).await?;
        sqlx::query("SELECT set_config('statement_timeout', $1, true)")
            .bind(self.apply_statement_timeout.as_millis().to_string())
            .execute(tx.conn())
            .await?;
        let outcome = match parsed {
            Err(error) => {
                // The report was checked at submission, so this is rare (e.g. a
                // parser change); it will not get better by retrying.
                let reason = json!({ "kind": error.kind.as_str(), "pointer": error.pointer, "message": error.message });
                scans::mark_failed(&mut tx, scan_id, &reason).await?;
                triggers::scan_failed(
                    &mut tx,
                    scan_id,
                    scan.asset_id,
                    error.kind.as_str(),
                    &error.message,
                )
                .await?;
                Processed::Rejected
            }
            Ok(parsed) => {
                let sla = findings::sla_policy(&mut tx).await?;
                let applied = findings::apply_scan(
                    &mut tx,
                    ScanApplication {
                        asset_id: scan.asset_id,
                        scan_id,
                        tool_name: &parsed.tool_name,
                        full: scan.scope == "full",
                        findings: parsed.findings,
                        now: chrono::Utc::now(),
                        sla,
                    },
                )
                .await?;
                let counts = applied.counts;
                scans::mark_succeeded(
                    &mut tx,
                    scan_id,
                    &parsed.tool_name,
                    parsed.tool_version.as_deref(),
                    counts,
                )
                .await?;
                // Announced exactly when the findings commit.
                triggers::scan_applied(
                    &mut tx,
                    ScanFacts {
                        scan_id,
                        asset_id: scan.asset_id,
                        tool: &parsed.tool_name,
                        tool_version: parsed
                            .tool_version
                            .as_deref()
                            .or(scan.tool_version.as_deref()),
                        scope: &scan.scope,
                    },
                    &applied,
                )
                .await?;
                drop(applied);
                // The posture view is recomputed from the new findings after this commits.
                queue::queue_posture_refresh(&mut tx).await?;
                tracing::info!(
                    total = counts.total,
                    new = counts.new,
                    reopened = counts.reopened,
                    resolved = counts.resolved,
                    "scan applied"
                );
                Processed::Applied
            }
        };
        if !queue::complete(&mut tx, job, &self.worker_id).await? {
            // Dropping the transaction rolls this attempt back.
            tracing::warn!("lease lost before commit; another worker owns the job");
            return Ok(Processed::LeaseLost);
        }
        // A big scan grows the connection's buffers to its largest statement
        // (~15 MB for 100,000 findings); hand that back rather than keep it idle
        // in the pool.
        sqlx::Connection::shrink_buffers(tx.conn());
        tx.commit().await?;
        Ok(outcome)
    }
}
