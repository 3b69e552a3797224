//! The current tenant's own row, read inside its transaction.

use super::TenantTx;
use chrono::{DateTime, Utc};
use posture_domain::{TenantId, TenantStatus, Tier};

/// A tenant as stored.
#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub tier: Tier,
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
}

/// The column list every tenant query selects, in [`TenantRecord`] order.
pub(crate) const TENANT_COLUMNS: &str = "id, slug, name, tier, status, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: uuid::Uuid,
    slug: String,
    name: String,
    tier: String,
    status: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for TenantRecord {
    type Error = sqlx::Error;

    fn try_from(row: TenantRow) -> Result<Self, Self::Error> {
        Ok(TenantRecord {
            id: TenantId::from_uuid(row.id),
            slug: row.slug,
            name: row.name,
            tier: row
                .tier
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            status: row
                .status
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            created_at: row.created_at,
        })
    }
}

/// The transaction's own tenant; `None` if it has been deleted.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn current(tx: &mut TenantTx) -> Result<Option<TenantRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let row: Option<TenantRow> = sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
    ))
    .bind(tenant_id)
    .fetch_optional(tx.conn())
    .await?;
    row.map(TenantRecord::try_from).transpose()
}
