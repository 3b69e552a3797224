//! Per-tenant settings: SLA days by severity.

use super::findings::SlaPolicy;
use super::TenantTx;

/// Stores the tenant's SLA policy and recomputes the due dates of its findings,
/// so the dashboard's breaches follow the policy in force.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn save_sla_policy(tx: &mut TenantTx, policy: SlaPolicy) -> Result<u64, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query(
        "INSERT INTO tenant_settings (tenant_id, sla_critical_days, sla_high_days, sla_medium_days, sla_low_days)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id) DO UPDATE
         SET sla_critical_days = EXCLUDED.sla_critical_days, sla_high_days = EXCLUDED.sla_high_days,
             sla_medium_days = EXCLUDED.sla_medium_days, sla_low_days = EXCLUDED.sla_low_days,
             updated_at = now()",
    )
    .bind(tenant_id)
    .bind(policy.critical_days)
    .bind(policy.high_days)
    .bind(policy.medium_days)
    .bind(policy.low_days)
    .execute(tx.conn())
    .await?;
    let updated = sqlx::query(
        "UPDATE findings SET sla_due_at = first_seen_at + make_interval(days => CASE severity
                 WHEN 'critical' THEN $2 WHEN 'high' THEN $3 WHEN 'medium' THEN $4 ELSE $5 END)
         WHERE tenant_id = $1 AND severity <> 'info'",
    )
    .bind(tenant_id)
    .bind(policy.critical_days)
    .bind(policy.high_days)
    .bind(policy.medium_days)
    .bind(policy.low_days)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(updated)
}
