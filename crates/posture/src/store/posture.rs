//! What the posture view reads: the tenant's live findings with their assets'
//! criticality, and counts by severity and status.

use super::TenantTx;
use uuid::Uuid;

/// A live (open or reopened) finding as the score needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveFinding {
    pub id: Uuid,
    pub asset_id: Uuid,
    pub severity: String,
    pub criticality: String,
    pub title: String,
}

/// Live findings with their asset's criticality, at most `limit` (highest
/// severities first, so a cut-off drops only the cheapest).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn live_findings(tx: &mut TenantTx, limit: i64) -> Result<Vec<LiveFinding>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(
        "SELECT f.id, f.asset_id, f.severity, a.criticality, f.title
         FROM findings f JOIN assets a ON a.tenant_id = f.tenant_id AND a.id = f.asset_id
         WHERE f.tenant_id = $1 AND f.status IN ('open', 'reopened') AND f.severity <> 'info'
         ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low'], f.severity), f.id
         LIMIT $2",
    )
    .bind(tenant_id)
    .bind(limit)
    .fetch_all(tx.conn())
    .await
}

/// How many findings the tenant has.
#[derive(Debug, Clone)]
pub struct FindingCounts {
    /// (status, severity, count).
    pub by_status: Vec<(String, String, i64)>,
    /// Live findings past their SLA due date.
    pub sla_breaches: i64,
}

/// Finding counts by (status, severity), and live findings past their SLA date.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn counts(tx: &mut TenantTx) -> Result<FindingCounts, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let by_status: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT status, severity, count(*) FROM findings WHERE tenant_id = $1 GROUP BY status, severity",
    )
    .bind(tenant_id)
    .fetch_all(tx.conn())
    .await?;
    let breaches: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM findings
         WHERE tenant_id = $1 AND status IN ('open', 'reopened') AND sla_due_at < now()",
    )
    .bind(tenant_id)
    .fetch_one(tx.conn())
    .await?;
    Ok(FindingCounts {
        by_status,
        sla_breaches: breaches,
    })
}
