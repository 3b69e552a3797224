//! The append-only audit log of security-relevant changes.

use super::TenantTx;
use serde_json::Value;

/// One audit entry, written in the same transaction as the change it records.
#[derive(Debug)]
pub struct AuditEntry<'a> {
    /// Who acted: `key:<key id>` or `operator`.
    pub actor: &'a str,
    /// What happened, e.g. `api_key.created`.
    pub action: &'a str,
    /// The object acted on, e.g. `key_Ab12…`.
    pub target: Option<&'a str>,
    /// Small structured details (never secrets).
    pub details: Value,
    /// The request that caused it, if any.
    pub request_id: Option<&'a str>,
}

/// Appends `entry` to the tenant's audit log.
#[tracing::instrument(level = "debug", skip_all, fields(action = entry.action))]
pub async fn record(tx: &mut TenantTx, entry: AuditEntry<'_>) -> Result<(), sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, id, actor, action, target, details, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant_id)
    .bind(uuid::Uuid::now_v7())
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.details)
    .bind(entry.request_id)
    .execute(tx.conn())
    .await?;
    Ok(())
}
