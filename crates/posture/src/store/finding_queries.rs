//! Reading and triaging findings of the transaction's tenant.

use super::finding_rows::FINDING_COLUMNS;
pub use super::finding_rows::{FindingRecord, FindingRow, FindingRows};
use super::retry::retry_read;
use super::{Store, TenantTx};
use chrono::{DateTime, Utc};
use posture_domain::ids::{AssetId, FindingId, ScanId};
use posture_domain::TenantId;
use uuid::Uuid;

/// One entry of a finding's history.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FindingEvent {
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub scan_id: Option<Uuid>,
    pub actor: String,
    pub reason: Option<String>,
}

/// Filters of the findings list; empty means "any".
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    pub severities: Vec<String>,
    pub statuses: Vec<String>,
    pub asset_id: Option<AssetId>,
    pub tool_name: Option<String>,
    pub cwe_id: Option<i32>,
    pub vulnerability_id: Option<String>,
    /// Case-insensitive substring of the title, rule id or location.
    pub text: Option<String>,
}

impl FindingFilter {
    /// Whether no filter is in use (the list's most frequent form, which
    /// [`page`] reads in one statement).
    pub fn is_empty(&self) -> bool {
        let FindingFilter {
            severities,
            statuses,
            asset_id,
            tool_name,
            cwe_id,
            vulnerability_id,
            text,
        } = self;
        severities.is_empty()
            && statuses.is_empty()
            && asset_id.is_none()
            && tool_name.is_none()
            && cwe_id.is_none()
            && vulnerability_id.is_none()
            && text.is_none()
    }
}

/// Up to `limit` of `tenant_id`'s findings, newest first, after the finding
/// `after`, with no filter: what [`list`] returns for an empty filter, in one
/// statement and one round trip where a tenant transaction takes three.
///
/// The statement calls the function `findings_page`, which binds the tenant
/// for the statement's own transaction — row-level security confines it as
/// in a [`TenantTx`] — and reads the page in it (see its migration,
/// `20261204000014_findings_page.sql`). Nothing stays bound to the connection
/// afterwards: the transaction ends with the statement. Retried as a whole
/// on transient errors, like every tenant read.
#[tracing::instrument(level = "debug", skip(store))]
pub async fn page(
    store: &Store,
    tenant_id: TenantId,
    after: Option<FindingId>,
    limit: u32,
) -> Result<FindingRows, sqlx::Error> {
    let statement = page_statement();
    let page_size = i32::try_from(limit).unwrap_or(i32::MAX);
    retry_read(|| async {
        let mut connection = store.acquire().await?;
        let rows = sqlx::query(statement)
            .bind(tenant_id.as_uuid())
            .bind(after.map(|id| id.as_uuid()))
            .bind(page_size)
            .fetch_all(&mut *connection)
            .await?;
        FindingRows::checked(rows)
    })
    .await
}

/// The statement of [`page`], built once from [`FINDING_COLUMNS`].
fn page_statement() -> &'static str {
    static STATEMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STATEMENT.get_or_init(|| format!("SELECT {FINDING_COLUMNS} FROM findings_page($1, $2, $3)"))
}

/// Up to `limit` findings matching `filter`, newest first, after the finding `after`.
///
/// The statement names only the filters in use. A catch-all statement
/// (`$n IS NULL OR …` for every filter) is one prepared statement, and after
/// five runs PostgreSQL may keep a generic plan for it that cannot assume the
/// filters are off: measured on 2 million findings, a bitmap scan of the
/// tenant's every finding and a sort (2.7 ms) instead of reading 51 entries of
/// `findings_by_page` (0.2 ms). Each combination of filters in use is its own
/// statement, whose generic plan is the right one.
///
/// The page size is written into the statement, not bound: with `LIMIT $n`
/// the generic plan is costed for an unknown limit (a tenth of the rows) and
/// never beats the custom plans, so PostgreSQL planned every execution anew —
/// 0.11 ms of planning for 0.05 ms of execution, the largest part of its work
/// for a page. `limit` is a number the handler bounded (at most 101), so a
/// few statements per filter combination at most.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(
    tx: &mut TenantTx,
    filter: &FindingFilter,
    after: Option<FindingId>,
    limit: u32,
) -> Result<FindingRows, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
        "SELECT {FINDING_COLUMNS} FROM findings WHERE tenant_id = "
    ));
    query.push_bind(tenant_id);
    if let Some(after) = after {
        query.push(" AND id < ").push_bind(after.as_uuid());
    }
    if !filter.severities.is_empty() {
        query
            .push(" AND severity = ANY(")
            .push_bind(&filter.severities)
            .push(")");
    }
    if !filter.statuses.is_empty() {
        query
            .push(" AND status = ANY(")
            .push_bind(&filter.statuses)
            .push(")");
    }
    if let Some(asset_id) = filter.asset_id {
        query.push(" AND asset_id = ").push_bind(asset_id.as_uuid());
    }
    if let Some(tool) = filter.tool_name.as_deref() {
        // The tool that first reported it, or any tool that still does.
        let tool = tool.trim().to_lowercase();
        query
            .push(" AND (lower(tool_name) = ")
            .push_bind(tool.clone())
            .push(
                " OR EXISTS (SELECT 1 FROM finding_sightings s
                             WHERE s.tenant_id = findings.tenant_id AND s.finding_id = findings.id
                               AND s.tool_name = ",
            )
            .push_bind(tool)
            .push("))");
    }
    if let Some(cwe) = filter.cwe_id {
        query
            .push(" AND cwe_ids @> ARRAY[")
            .push_bind(cwe)
            .push("]::integer[]");
    }
    if let Some(vulnerability) = filter.vulnerability_id.as_deref() {
        query
            .push(" AND vulnerability_ids @> ARRAY[")
            .push_bind(vulnerability)
            .push("]::text[]");
    }
    if let Some(pattern) = filter.text.as_deref().map(like_pattern) {
        query
            .push(" AND (title ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR rule_id ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR location_uri ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    query.push(format_args!(" ORDER BY id DESC LIMIT {limit}"));
    let rows = query.build().fetch_all(tx.conn()).await?;
    FindingRows::checked(rows)
}

/// The SQL condition for a live finding that fails a control, with the
/// [`ControlFilter`] bound as `$2` (CWEs), `$3` (rule LIKEs), `$4` (dependencies).
const FAILS_CONTROL: &str = "status IN ('open', 'reopened')
    AND (cwe_ids && $2 OR rule_id LIKE ANY ($3) OR ($4 AND package_purl IS NOT NULL))";

/// What makes a live finding fail a compliance control (a control's matcher,
/// in SQL terms).
#[derive(Debug, Clone, Default)]
pub struct ControlFilter {
    pub cwes: Vec<i32>,
    /// `LIKE` patterns escaped with `\` (see `RulePattern::to_sql_like`).
    pub rule_likes: Vec<String>,
    /// Findings about a package match.
    pub dependencies: bool,
}

/// Up to `limit` live findings that fail a control, newest first, after the finding `after`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn failing_control(
    tx: &mut TenantTx,
    filter: &ControlFilter,
    after: Option<FindingId>,
    limit: u32,
) -> Result<Vec<FindingRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let rows = sqlx::query(&format!(
        "SELECT {FINDING_COLUMNS} FROM findings
         WHERE tenant_id = $1 AND {FAILS_CONTROL}
           AND id < COALESCE($5, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)
         ORDER BY id DESC
         LIMIT $6"
    ))
    .bind(tenant_id)
    .bind(&filter.cwes)
    .bind(&filter.rule_likes)
    .bind(filter.dependencies)
    .bind(after.map(|id| id.as_uuid()))
    .bind(i64::from(limit))
    .fetch_all(tx.conn())
    .await?;
    FindingRows::checked(rows)?.into_records()
}

/// How many live findings fail a control.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn count_failing_control(
    tx: &mut TenantTx,
    filter: &ControlFilter,
) -> Result<i64, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM findings WHERE tenant_id = $1 AND {FAILS_CONTROL}"
    ))
    .bind(tenant_id)
    .bind(&filter.cwes)
    .bind(&filter.rule_likes)
    .bind(filter.dependencies)
    .fetch_one(tx.conn())
    .await
}

/// `%text%` with LIKE's wildcards in `text` escaped.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// One finding.
pub async fn get(tx: &mut TenantTx, id: FindingId) -> Result<Option<FindingRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "SELECT {FINDING_COLUMNS} FROM findings WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id)
    .bind(id.as_uuid())
    .fetch_optional(tx.conn())
    .await
}

/// A finding's history, oldest first (at most the latest 1,000 entries).
pub async fn history(tx: &mut TenantTx, id: FindingId) -> Result<Vec<FindingEvent>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let mut events: Vec<FindingEvent> = sqlx::query_as(
        "SELECT occurred_at, kind, from_status, to_status, scan_id, actor, reason FROM finding_events
         WHERE tenant_id = $1 AND finding_id = $2 ORDER BY occurred_at DESC, id DESC LIMIT 1000",
    )
    .bind(tenant_id)
    .bind(id.as_uuid())
    .fetch_all(tx.conn())
    .await?;
    events.reverse();
    Ok(events)
}

/// A triage decision.
#[derive(Debug, Clone)]
pub struct Triage {
    /// `false_positive`, `accepted_risk` or `open` (reopen).
    pub status: &'static str,
    pub reason: Option<String>,
    /// For accepted risk: when the acceptance lapses and the finding reopens.
    pub accepted_until: Option<DateTime<Utc>>,
    pub actor: String,
}

/// Applies a triage decision to the given findings; returns the ids changed
/// (unknown ids, including other tenants', are skipped).
#[tracing::instrument(level = "debug", skip_all, fields(findings = ids.len()))]
pub async fn triage(
    tx: &mut TenantTx,
    ids: &[FindingId],
    triage: &Triage,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let ids: Vec<Uuid> = ids.iter().map(FindingId::as_uuid).collect();
    // Reopening makes the finding live again: "reopened" if it had been resolved
    // before, else "open".
    let changed: Vec<(Uuid, String, String)> = sqlx::query_as(
        "WITH target AS (
             SELECT id, status AS old_status FROM findings
             WHERE tenant_id = $1 AND id = ANY($2) FOR UPDATE
         )
         UPDATE findings f
         SET status = CASE WHEN $3 = 'open' AND f.resolved_at IS NOT NULL THEN 'reopened' ELSE $3 END,
             status_reason = $4,
             accepted_until = CASE WHEN $3 = 'accepted_risk' THEN $5 ELSE NULL END,
             resolved_at = CASE WHEN $3 = 'open' THEN NULL ELSE f.resolved_at END
         FROM target t
         WHERE f.tenant_id = $1 AND f.id = t.id
         RETURNING f.id, t.old_status, f.status",
    )
    .bind(tenant_id)
    .bind(&ids)
    .bind(triage.status)
    .bind(triage.reason.as_deref())
    .bind(triage.accepted_until)
    .fetch_all(tx.conn())
    .await?;
    let finding_ids: Vec<Uuid> = changed.iter().map(|(id, _, _)| *id).collect();
    let event_ids: Vec<Uuid> = changed.iter().map(|_| Uuid::now_v7()).collect();
    let from: Vec<&str> = changed.iter().map(|(_, old, _)| old.as_str()).collect();
    let to: Vec<&str> = changed.iter().map(|(_, _, new)| new.as_str()).collect();
    sqlx::query(
        "INSERT INTO finding_events (tenant_id, id, finding_id, kind, from_status, to_status, actor, reason)
         SELECT $1, u.id, u.finding_id, 'triaged', u.from_status, u.to_status, $2, $3
         FROM UNNEST($4::uuid[], $5::uuid[], $6::text[], $7::text[]) AS u(id, finding_id, from_status, to_status)",
    )
    .bind(tenant_id)
    .bind(&triage.actor)
    .bind(triage.reason.as_deref())
    .bind(&event_ids)
    .bind(&finding_ids)
    .bind(&from)
    .bind(&to)
    .execute(tx.conn())
    .await?;
    Ok(finding_ids)
}

/// Converts stored UUIDs back to typed ids for the API.
pub fn typed_ids(record: &FindingRecord) -> (FindingId, AssetId, Option<ScanId>) {
    (
        FindingId::from_uuid(record.id),
        AssetId::from_uuid(record.asset_id),
        record.last_scan_id.map(ScanId::from_uuid),
    )
}
