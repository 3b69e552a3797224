//! Operator actions across tenants: create, list, change tier or status, delete.
//!
//! These run on a pool connected as the schema owner (`POSTURE_ADMIN_DATABASE_URL`),
//! the role that may see every tenant. The server's application role cannot run
//! them: it may only read its own tenant row. Changes to one tenant still run in
//! that tenant's transaction, so the audit entry is written under the same policy
//! as everything else.

use super::audit::{self, AuditEntry};
use super::tenants::{TenantRecord, TenantRow, TENANT_COLUMNS};
use super::{notifications, Store};
use posture_domain::{TenantId, TenantName, TenantSlug, TenantStatus, Tier};
use serde_json::json;

/// The actor name operator actions are audited under.
pub const OPERATOR_ACTOR: &str = "operator";

/// Why a tenant could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTenantError {
    #[error("a tenant with slug {0:?} already exists")]
    SlugTaken(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates an active tenant.
#[tracing::instrument(skip(store))]
pub async fn create_tenant(
    store: &Store,
    slug: &TenantSlug,
    name: &TenantName,
    tier: Tier,
) -> Result<TenantRecord, CreateTenantError> {
    let tenant_id = TenantId::new_random();
    let mut tx = store.begin_tenant(tenant_id).await?;
    let inserted: Result<TenantRow, sqlx::Error> = sqlx::query_as(&format!(
        "INSERT INTO tenants (id, slug, name, tier) VALUES ($1, $2, $3, $4) RETURNING {TENANT_COLUMNS}"
    ))
    .bind(tenant_id.as_uuid())
    .bind(slug.as_str())
    .bind(name.as_str())
    .bind(tier.as_str())
    .fetch_one(tx.conn())
    .await;
    let row = match inserted {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            return Err(CreateTenantError::SlugTaken(slug.to_string()))
        }
        other => other?,
    };
    audit::record(
        &mut tx,
        AuditEntry {
            actor: OPERATOR_ACTOR,
            action: "tenant.created",
            target: Some(slug.as_str()),
            details: json!({ "tier": tier }),
            request_id: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row.try_into()?)
}

/// Every tenant, oldest first.
pub async fn list_tenants(store: &Store) -> Result<Vec<TenantRecord>, sqlx::Error> {
    let mut tx = store.begin().await?;
    let rows: Vec<TenantRow> = sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY created_at, slug"
    ))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.into_iter().map(TenantRecord::try_from).collect()
}

/// Finds a tenant by its UUID or its slug.
pub async fn find_tenant(
    store: &Store,
    id_or_slug: &str,
) -> Result<Option<TenantRecord>, sqlx::Error> {
    // A UUID names an id and nothing else: a slug may look like a UUID, and an
    // operator command must never pick one of two matching tenants at random.
    let by_id = uuid::Uuid::parse_str(id_or_slug).ok();
    let by_slug = by_id.is_none().then_some(id_or_slug);
    let mut tx = store.begin().await?;
    let row: Option<TenantRow> = sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1 OR slug = $2"
    ))
    .bind(by_id)
    .bind(by_slug)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(TenantRecord::try_from).transpose()
}

/// Changes a tenant's tier; returns the updated tenant.
#[tracing::instrument(skip(store))]
pub async fn set_tier(
    store: &Store,
    tenant_id: TenantId,
    tier: Tier,
) -> Result<TenantRecord, sqlx::Error> {
    update_tenant(
        store,
        tenant_id,
        "tier",
        tier.as_str(),
        "tenant.tier_changed",
    )
    .await
}

/// Suspends or re-activates a tenant; returns the updated tenant.
#[tracing::instrument(skip(store))]
pub async fn set_status(
    store: &Store,
    tenant_id: TenantId,
    status: TenantStatus,
) -> Result<TenantRecord, sqlx::Error> {
    let action = match status {
        TenantStatus::Active => "tenant.activated",
        TenantStatus::Suspended => "tenant.suspended",
    };
    update_tenant(store, tenant_id, "status", status.as_str(), action).await
}

/// Sets one column (`tier` or `status`, fixed by the callers above) and audits it.
async fn update_tenant(
    store: &Store,
    tenant_id: TenantId,
    column: &'static str,
    value: &str,
    action: &str,
) -> Result<TenantRecord, sqlx::Error> {
    let mut tx = store.begin_tenant(tenant_id).await?;
    // `column` is one of two compile-time constants, never user input.
    let row: TenantRow = sqlx::query_as(&format!(
        "UPDATE tenants SET {column} = $2, updated_at = now() WHERE id = $1 RETURNING {TENANT_COLUMNS}"
    ))
    .bind(tenant_id.as_uuid())
    .bind(value)
    .fetch_one(tx.conn())
    .await?;
    audit::record(
        &mut tx,
        AuditEntry {
            actor: OPERATOR_ACTOR,
            action,
            target: None,
            details: json!({ column: value }),
            request_id: None,
        },
    )
    .await?;
    notifications::account_changed(tx.conn(), tenant_id).await?;
    tx.commit().await?;
    row.try_into()
}

/// Deletes a tenant and, through cascading foreign keys, every row it owns.
/// Returns whether the tenant existed.
#[tracing::instrument(skip(store))]
pub async fn delete_tenant(store: &Store, tenant_id: TenantId) -> Result<bool, sqlx::Error> {
    let mut tx = store.begin_tenant(tenant_id).await?;
    let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1")
        .bind(tenant_id.as_uuid())
        .execute(tx.conn())
        .await?
        .rows_affected();
    notifications::account_changed(tx.conn(), tenant_id).await?;
    tx.commit().await?;
    if deleted == 1 {
        // The tenant's own audit log went with it; this line is the record.
        tracing::info!(%tenant_id, actor = OPERATOR_ACTOR, "tenant deleted with all of its data");
    }
    Ok(deleted == 1)
}
