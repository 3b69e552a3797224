//! Scans of the transaction's tenant, their stored reports and their jobs.

use super::TenantTx;
use chrono::{DateTime, Utc};
use posture_domain::ids::{AssetId, ScanId};
use serde_json::Value;
use uuid::Uuid;

/// A scan as stored.
#[derive(Debug, Clone)]
pub struct ScanRecord {
    pub id: ScanId,
    pub asset_id: AssetId,
    pub tool_name: Option<String>,
    pub tool_version: Option<String>,
    pub format: String,
    pub scope: String,
    pub status: String,
    pub report_bytes: i64,
    pub submitted_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: Option<ScanCounts>,
    pub error: Option<Value>,
    pub job: Option<JobState>,
}

/// What processing a scan changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ScanCounts {
    /// Findings in the report (after de-duplication within it).
    pub total: i32,
    /// Findings seen for the first time.
    pub new: i32,
    /// Resolved findings that came back.
    pub reopened: i32,
    /// Findings a full scan no longer reports.
    pub resolved: i32,
    /// Findings seen before and still present.
    pub unchanged: i32,
}

/// The processing job of a scan, as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct JobState {
    /// `queued`, `running`, `succeeded` or `dead` (out of attempts).
    pub status: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When a queued job runs next.
    pub run_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A scan to store with its compressed report and processing job.
#[derive(Debug)]
pub struct NewScan<'a> {
    pub id: ScanId,
    pub asset_id: AssetId,
    pub tool_name: Option<&'a str>,
    pub tool_version: Option<&'a str>,
    pub format: &'a str,
    pub scope: &'a str,
    pub report_bytes: i64,
    pub content_type: &'a str,
    pub compressed_report: &'a [u8],
    pub max_attempts: i32,
}

/// Position after the last scan of a page (newest first).
#[derive(Debug, Clone)]
pub struct ScanPageCursor {
    pub submitted_at: DateTime<Utc>,
    pub id: ScanId,
}

const SCAN_COLUMNS: &str =
    "s.id, s.asset_id, s.tool_name, s.tool_version, s.format, s.scope, s.status,
    s.report_bytes, s.submitted_at, s.started_at, s.finished_at, s.findings_total, s.new_count,
    s.reopened_count, s.resolved_count, s.unchanged_count, s.error,
    j.status AS job_status, j.attempts, j.max_attempts, j.run_at, j.last_error";

#[derive(sqlx::FromRow)]
struct ScanRow {
    id: Uuid,
    asset_id: Uuid,
    tool_name: Option<String>,
    tool_version: Option<String>,
    format: String,
    scope: String,
    status: String,
    report_bytes: i64,
    submitted_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    findings_total: Option<i32>,
    new_count: Option<i32>,
    reopened_count: Option<i32>,
    resolved_count: Option<i32>,
    unchanged_count: Option<i32>,
    error: Option<Value>,
    job_status: Option<String>,
    attempts: Option<i32>,
    max_attempts: Option<i32>,
    run_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

impl From<ScanRow> for ScanRecord {
    fn from(row: ScanRow) -> Self {
        let counts = row.findings_total.map(|total| ScanCounts {
            total,
            new: row.new_count.unwrap_or_default(),
            reopened: row.reopened_count.unwrap_or_default(),
            resolved: row.resolved_count.unwrap_or_default(),
            unchanged: row.unchanged_count.unwrap_or_default(),
        });
        let job = match (row.job_status, row.attempts, row.max_attempts, row.run_at) {
            (Some(status), Some(attempts), Some(max_attempts), Some(run_at)) => Some(JobState {
                status,
                attempts,
                max_attempts,
                run_at,
                last_error: row.last_error,
            }),
            _ => None,
        };
        ScanRecord {
            id: ScanId::from_uuid(row.id),
            asset_id: AssetId::from_uuid(row.asset_id),
            tool_name: row.tool_name,
            tool_version: row.tool_version,
            format: row.format,
            scope: row.scope,
            status: row.status,
            report_bytes: row.report_bytes,
            submitted_at: row.submitted_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            counts,
            error: row.error,
            job,
        }
    }
}

/// Stores the scan, its compressed report and its job — one transaction, so a
/// 202 means all three are committed — and wakes idle workers on commit.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert(tx: &mut TenantTx, scan: &NewScan<'_>) -> Result<ScanRecord, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query(
        "INSERT INTO scans (tenant_id, id, asset_id, tool_name, tool_version, format, scope, report_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant_id)
    .bind(scan.id.as_uuid())
    .bind(scan.asset_id.as_uuid())
    .bind(scan.tool_name)
    .bind(scan.tool_version)
    .bind(scan.format)
    .bind(scan.scope)
    .bind(scan.report_bytes)
    .execute(tx.conn())
    .await?;
    sqlx::query(
        "INSERT INTO scan_reports (tenant_id, scan_id, content_type, encoding, body)
         VALUES ($1, $2, $3, 'gzip', $4)",
    )
    .bind(tenant_id)
    .bind(scan.id.as_uuid())
    .bind(scan.content_type)
    .bind(scan.compressed_report)
    .execute(tx.conn())
    .await?;
    sqlx::query(
        "INSERT INTO jobs (tenant_id, id, kind, scan_id, max_attempts)
         VALUES ($1, $2, 'process_scan', $3, $4)",
    )
    .bind(tenant_id)
    .bind(Uuid::now_v7())
    .bind(scan.id.as_uuid())
    .bind(scan.max_attempts)
    .execute(tx.conn())
    .await?;
    // Delivered at commit, and only if the transaction commits.
    sqlx::query("SELECT pg_notify('posture_jobs', '')")
        .execute(tx.conn())
        .await?;
    get(tx, scan.id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// One scan with its job state.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn get(tx: &mut TenantTx, scan_id: ScanId) -> Result<Option<ScanRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let row: Option<ScanRow> = sqlx::query_as(&format!(
        "SELECT {SCAN_COLUMNS} FROM scans s
         LEFT JOIN jobs j ON j.tenant_id = s.tenant_id AND j.scan_id = s.id
         WHERE s.tenant_id = $1 AND s.id = $2"
    ))
    .bind(tenant_id)
    .bind(scan_id.as_uuid())
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.map(ScanRecord::from))
}

/// Up to `limit` scans, newest first, after `cursor`, optionally of one asset.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(
    tx: &mut TenantTx,
    cursor: Option<&ScanPageCursor>,
    asset: Option<AssetId>,
    limit: u32,
) -> Result<Vec<ScanRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let rows: Vec<ScanRow> = sqlx::query_as(&format!(
        "SELECT {SCAN_COLUMNS} FROM scans s
         LEFT JOIN jobs j ON j.tenant_id = s.tenant_id AND j.scan_id = s.id
         WHERE s.tenant_id = $1
           AND (s.submitted_at, s.id) < (COALESCE($2, 'infinity'::timestamptz),
                                         COALESCE($3, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid))
           AND ($4::uuid IS NULL OR s.asset_id = $4)
         ORDER BY s.submitted_at DESC, s.id DESC
         LIMIT $5"
    ))
    .bind(tenant_id)
    .bind(cursor.map(|c| c.submitted_at))
    .bind(cursor.map(|c| c.id.as_uuid()))
    .bind(asset.map(|id| id.as_uuid()))
    .bind(i64::from(limit))
    .fetch_all(tx.conn())
    .await?;
    Ok(rows.into_iter().map(ScanRecord::from).collect())
}

/// The stored report of a scan: (content type, gzip bytes).
pub async fn report(
    tx: &mut TenantTx,
    scan_id: ScanId,
) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(
        "SELECT content_type, body FROM scan_reports WHERE tenant_id = $1 AND scan_id = $2",
    )
    .bind(tenant_id)
    .bind(scan_id.as_uuid())
    .fetch_optional(tx.conn())
    .await
}

/// Marks a scan running (first attempt sets `started_at`).
pub async fn mark_running(tx: &mut TenantTx, scan_id: ScanId) -> Result<(), sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query(
        "UPDATE scans SET status = 'running', started_at = COALESCE(started_at, now())
         WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running')",
    )
    .bind(tenant_id)
    .bind(scan_id.as_uuid())
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Records a successful processing.
pub async fn mark_succeeded(
    tx: &mut TenantTx,
    scan_id: ScanId,
    tool_name: &str,
    tool_version: Option<&str>,
    counts: ScanCounts,
) -> Result<(), sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query(
        "UPDATE scans SET status = 'succeeded', finished_at = now(), error = NULL,
                tool_name = $3, tool_version = COALESCE(tool_version, $4),
                findings_total = $5, new_count = $6, reopened_count = $7,
                resolved_count = $8, unchanged_count = $9
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(scan_id.as_uuid())
    .bind(tool_name)
    .bind(tool_version)
    .bind(counts.total)
    .bind(counts.new)
    .bind(counts.reopened)
    .bind(counts.resolved)
    .bind(counts.unchanged)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Records a failed processing with its reason.
pub async fn mark_failed(
    tx: &mut TenantTx,
    scan_id: ScanId,
    error: &Value,
) -> Result<(), sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query(
        "UPDATE scans SET status = 'failed', finished_at = now(), error = $3
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(scan_id.as_uuid())
    .bind(error)
    .execute(tx.conn())
    .await?;
    Ok(())
}
