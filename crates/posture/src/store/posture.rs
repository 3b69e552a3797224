//! The posture view's data: what a refresh reads (live findings, counts, MTTR,
//! finding groups for compliance, scanned asset kinds), the summary and daily
//! snapshots it writes, and what the API reads back.

use super::TenantTx;
use chrono::{DateTime, NaiveDate, Utc};
use posture_domain::asset::AssetKind;
use posture_domain::compliance::FindingGroup;
use std::collections::BTreeSet;
use uuid::Uuid;

/// The SQL condition for a live finding: open or reopened.
const LIVE: &str = "status IN ('open', 'reopened')";

/// The transaction's start time: the instant a snapshot transaction's data is from.
pub async fn transaction_time(tx: &mut TenantTx) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(tx.conn())
        .await
}

/// A live finding as the score needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveFinding {
    pub id: Uuid,
    pub asset_id: Uuid,
    pub severity: String,
    pub criticality: String,
}

/// Live findings above info with their asset's criticality, at most `limit`
/// (highest severities first, so a cut-off drops only the cheapest).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn live_findings(tx: &mut TenantTx, limit: i64) -> Result<Vec<LiveFinding>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "SELECT f.id, f.asset_id, f.severity, a.criticality
         FROM findings f JOIN assets a ON a.tenant_id = f.tenant_id AND a.id = f.asset_id
         WHERE f.tenant_id = $1 AND f.{LIVE} AND f.severity <> 'info'
         ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low'], f.severity), f.id
         LIMIT $2"
    ))
    .bind(tenant_id)
    .bind(limit)
    .fetch_all(tx.conn())
    .await
}

/// Titles and severities of a few findings (the costliest, for the breakdown).
pub async fn titles(
    tx: &mut TenantTx,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String, String)>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as("SELECT id, title, severity FROM findings WHERE tenant_id = $1 AND id = ANY($2)")
        .bind(tenant_id)
        .bind(ids)
        .fetch_all(tx.conn())
        .await
}

/// How many findings the tenant has.
#[derive(Debug, Clone)]
pub struct FindingCounts {
    /// (status, severity, count).
    pub by_status: Vec<(String, String, i64)>,
    /// Live findings whose SLA due date is before `at`.
    pub sla_breaches: i64,
    /// The earliest SLA due date after `at` of a live finding: when the
    /// breach count next changes by itself.
    pub next_sla_due_at: Option<DateTime<Utc>>,
}

/// Finding counts by (status, severity), and SLA breaches as of `at`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn counts(tx: &mut TenantTx, at: DateTime<Utc>) -> Result<FindingCounts, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let by_status: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT status, severity, count(*) FROM findings WHERE tenant_id = $1 GROUP BY status, severity",
    )
    .bind(tenant_id)
    .fetch_all(tx.conn())
    .await?;
    let (sla_breaches, next_sla_due_at): (i64, Option<DateTime<Utc>>) = sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE sla_due_at < $2), min(sla_due_at) FILTER (WHERE sla_due_at >= $2)
         FROM findings WHERE tenant_id = $1 AND {LIVE}"
    ))
    .bind(tenant_id)
    .bind(at)
    .fetch_one(tx.conn())
    .await?;
    Ok(FindingCounts {
        by_status,
        sla_breaches,
        next_sla_due_at,
    })
}

/// Mean time to remediate for one severity.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Remediation {
    pub severity: String,
    /// Findings resolved in the window.
    pub resolved: i64,
    /// Their mean time from first seen to resolved, in seconds.
    pub mean_seconds: f64,
}

/// MTTR per severity over the findings resolved (by a scan no longer seeing
/// them) in the `window_days` before `at`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn remediation(
    tx: &mut TenantTx,
    at: DateTime<Utc>,
    window_days: i32,
) -> Result<Vec<Remediation>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(
        "SELECT severity, count(*) AS resolved,
                avg(extract(epoch FROM resolved_at - first_seen_at))::float8 AS mean_seconds
         FROM findings
         WHERE tenant_id = $1 AND status = 'resolved'
           AND resolved_at > $2 - make_interval(days => $3) AND resolved_at <= $2
         GROUP BY severity",
    )
    .bind(tenant_id)
    .bind(at)
    .bind(window_days)
    .fetch_all(tx.conn())
    .await
}

/// Live findings grouped by what compliance mappings look at.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn finding_groups(tx: &mut TenantTx) -> Result<Vec<FindingGroup>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let rows: Vec<(Vec<i32>, String, bool, i64)> = sqlx::query_as(&format!(
        "SELECT cwe_ids, rule_id, package_purl IS NOT NULL, count(*)
         FROM findings WHERE tenant_id = $1 AND {LIVE}
         GROUP BY 1, 2, 3"
    ))
    .bind(tenant_id)
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(cwes, rule_id, dependency, count)| FindingGroup {
            cwe_ids: cwes
                .into_iter()
                .filter_map(|cwe| u32::try_from(cwe).ok())
                .collect(),
            rule_id,
            dependency,
            count: u64::try_from(count).unwrap_or(0),
        })
        .collect())
}

/// Kinds of the assets that at least one scan has succeeded on.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn scanned_asset_kinds(tx: &mut TenantTx) -> Result<BTreeSet<AssetKind>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT a.kind FROM assets a
         WHERE a.tenant_id = $1 AND EXISTS (
             SELECT 1 FROM scans s
             WHERE s.tenant_id = a.tenant_id AND s.asset_id = a.id AND s.status = 'succeeded')",
    )
    .bind(tenant_id)
    .fetch_all(tx.conn())
    .await?;
    Ok(kinds.iter().filter_map(|kind| kind.parse().ok()).collect())
}

/// A computed view, ready to store.
#[derive(Debug, Clone)]
pub struct SummaryRecord {
    pub computed_at: DateTime<Utc>,
    pub score: i16,
    pub grade: String,
    pub posture: serde_json::Value,
    pub compliance: serde_json::Value,
    pub refresh_due_at: DateTime<Utc>,
}

/// Stores the view unless a newer one is already there; true if stored.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn save_summary(tx: &mut TenantTx, record: &SummaryRecord) -> Result<bool, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let stored = sqlx::query(
        "INSERT INTO posture_summaries (tenant_id, computed_at, score, grade, posture, compliance, refresh_due_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id) DO UPDATE
         SET computed_at = EXCLUDED.computed_at, score = EXCLUDED.score, grade = EXCLUDED.grade,
             posture = EXCLUDED.posture, compliance = EXCLUDED.compliance,
             refresh_due_at = EXCLUDED.refresh_due_at
         WHERE posture_summaries.computed_at <= EXCLUDED.computed_at",
    )
    .bind(tenant_id)
    .bind(record.computed_at)
    .bind(record.score)
    .bind(&record.grade)
    .bind(&record.posture)
    .bind(&record.compliance)
    .bind(record.refresh_due_at)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(stored == 1)
}

/// Serializes the storing step of a tenant's refreshes until the transaction ends.
pub async fn lock_refresh(tx: &mut TenantTx) -> Result<(), sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('posture-refresh/' || $1::text, 0))",
    )
    .bind(tenant_id)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The stored summary's score and (if `with_compliance`) compliance, locked
/// until the transaction ends: a concurrent refresh waits, then compares with
/// what this one stores. `None` before the tenant's first summary.
pub async fn previous_locked(
    tx: &mut TenantTx,
    with_compliance: bool,
) -> Result<Option<(i16, Option<serde_json::Value>)>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(
        "SELECT score, CASE WHEN $2 THEN compliance END
         FROM posture_summaries WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(tenant_id)
    .bind(with_compliance)
    .fetch_optional(tx.conn())
    .await
}

/// One day's posture.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Snapshot {
    pub day: NaiveDate,
    pub computed_at: DateTime<Utc>,
    pub score: i16,
    pub grade: String,
    pub open_total: i32,
    pub open_by_severity: serde_json::Value,
    pub sla_breaches: i32,
    pub compliance_percent: Option<f64>,
    pub frameworks: serde_json::Value,
}

/// Writes the day's snapshot; a later computation of the same day replaces it,
/// so each day keeps its last view.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn save_snapshot(tx: &mut TenantTx, snapshot: &Snapshot) -> Result<(), sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query(
        "INSERT INTO posture_snapshots (tenant_id, day, computed_at, score, grade, open_total,
                                        open_by_severity, sla_breaches, compliance_percent, frameworks)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (tenant_id, day) DO UPDATE
         SET computed_at = EXCLUDED.computed_at, score = EXCLUDED.score, grade = EXCLUDED.grade,
             open_total = EXCLUDED.open_total, open_by_severity = EXCLUDED.open_by_severity,
             sla_breaches = EXCLUDED.sla_breaches, compliance_percent = EXCLUDED.compliance_percent,
             frameworks = EXCLUDED.frameworks
         WHERE posture_snapshots.computed_at <= EXCLUDED.computed_at",
    )
    .bind(tenant_id)
    .bind(snapshot.day)
    .bind(snapshot.computed_at)
    .bind(snapshot.score)
    .bind(&snapshot.grade)
    .bind(snapshot.open_total)
    .bind(&snapshot.open_by_severity)
    .bind(snapshot.sla_breaches)
    .bind(snapshot.compliance_percent)
    .bind(&snapshot.frameworks)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The stored posture view with the snapshots it is compared with.
#[derive(Debug, Clone)]
pub struct StoredPosture {
    pub computed_at: DateTime<Utc>,
    pub posture: serde_json::Value,
    /// The latest snapshot from before today (UTC), if any.
    pub yesterday: Option<Snapshot>,
    /// The latest snapshot from 30 or more days ago, if any.
    pub month_ago: Option<Snapshot>,
}

const SNAPSHOT_COLUMNS: &str = "day, computed_at, score, grade, open_total, open_by_severity, \
                                sla_breaches, compliance_percent, frameworks";

/// The stored view and the snapshots of yesterday and 30 days ago: three
/// primary-key lookups.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn stored(tx: &mut TenantTx) -> Result<Option<StoredPosture>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let row: Option<(DateTime<Utc>, serde_json::Value)> =
        sqlx::query_as("SELECT computed_at, posture FROM posture_summaries WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(tx.conn())
            .await?;
    let Some((computed_at, posture)) = row else {
        return Ok(None);
    };
    let today = computed_at.date_naive();
    let yesterday = snapshot_on_or_before(tx, today.pred_opt().unwrap_or(today)).await?;
    let month_ago = snapshot_on_or_before(tx, today - chrono::Days::new(30)).await?;
    Ok(Some(StoredPosture {
        computed_at,
        posture,
        yesterday,
        month_ago,
    }))
}

async fn snapshot_on_or_before(
    tx: &mut TenantTx,
    day: NaiveDate,
) -> Result<Option<Snapshot>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM posture_snapshots
         WHERE tenant_id = $1 AND day <= $2 ORDER BY day DESC LIMIT 1"
    ))
    .bind(tenant_id)
    .bind(day)
    .fetch_optional(tx.conn())
    .await
}

/// The stored compliance view.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn stored_compliance(
    tx: &mut TenantTx,
) -> Result<Option<(DateTime<Utc>, serde_json::Value)>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as("SELECT computed_at, compliance FROM posture_summaries WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_optional(tx.conn())
        .await
}

/// Snapshots from `since` on, oldest first.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn history(tx: &mut TenantTx, since: NaiveDate) -> Result<Vec<Snapshot>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM posture_snapshots
         WHERE tenant_id = $1 AND day >= $2 ORDER BY day"
    ))
    .bind(tenant_id)
    .bind(since)
    .fetch_all(tx.conn())
    .await
}
