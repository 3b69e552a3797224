//! Custom compliance frameworks of the transaction's tenant.

use super::TenantTx;
use chrono::{DateTime, Utc};
use posture_domain::compliance::custom::{self, CustomControlSpec};
use posture_domain::compliance::Framework;
use posture_domain::ids::FrameworkId;
use sqlx::types::Json;
use uuid::Uuid;

/// A custom framework as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FrameworkRecord {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub controls: Json<Vec<CustomControlSpec>>,
    pub revision: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl FrameworkRecord {
    /// The typed id.
    pub fn framework_id(&self) -> FrameworkId {
        FrameworkId::from_uuid(self.id)
    }

    /// As a framework to evaluate.
    pub fn to_framework(&self) -> Framework {
        custom::framework(
            self.framework_id().to_string(),
            self.name.clone(),
            &self.controls.0,
            self.revision,
        )
    }
}

/// A framework's editable parts, already validated.
#[derive(Debug, Clone)]
pub struct FrameworkFields<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub controls: &'a [CustomControlSpec],
}

const COLUMNS: &str = "id, name, description, controls, revision, created_at, updated_at";

/// How many custom frameworks the tenant has, holding (until the transaction
/// ends) a per-tenant lock that other callers of this function wait for, so
/// concurrent creates cannot all see room under the cap.
pub async fn lock_and_count(tx: &mut TenantTx) -> Result<i64, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    tx.lock_collection("custom_frameworks").await?;
    sqlx::query_scalar("SELECT count(*) FROM custom_frameworks WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(tx.conn())
        .await
}

/// Creates a framework. A duplicate name is a unique violation (`custom_frameworks_tenant_id_name_key`).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert(
    tx: &mut TenantTx,
    id: FrameworkId,
    fields: &FrameworkFields<'_>,
) -> Result<FrameworkRecord, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "INSERT INTO custom_frameworks (tenant_id, id, name, description, controls)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id.as_uuid())
    .bind(fields.name)
    .bind(fields.description)
    .bind(Json(fields.controls))
    .fetch_one(tx.conn())
    .await
}

/// Replaces a framework's definition and bumps its revision; `None` if there is no such framework.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn replace(
    tx: &mut TenantTx,
    id: FrameworkId,
    fields: &FrameworkFields<'_>,
) -> Result<Option<FrameworkRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "UPDATE custom_frameworks
         SET name = $3, description = $4, controls = $5, revision = revision + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id.as_uuid())
    .bind(fields.name)
    .bind(fields.description)
    .bind(Json(fields.controls))
    .fetch_optional(tx.conn())
    .await
}

/// One framework.
pub async fn get(
    tx: &mut TenantTx,
    id: FrameworkId,
) -> Result<Option<FrameworkRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM custom_frameworks WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id)
    .bind(id.as_uuid())
    .fetch_optional(tx.conn())
    .await
}

/// Every custom framework of the tenant, oldest first (there are at most
/// `custom::MAX_FRAMEWORKS_PER_TENANT`).
pub async fn all(tx: &mut TenantTx) -> Result<Vec<FrameworkRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM custom_frameworks WHERE tenant_id = $1 ORDER BY id"
    ))
    .bind(tenant_id)
    .fetch_all(tx.conn())
    .await
}

/// Deletes a framework; false if there was none.
pub async fn delete(tx: &mut TenantTx, id: FrameworkId) -> Result<bool, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let deleted = sqlx::query("DELETE FROM custom_frameworks WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id.as_uuid())
        .execute(tx.conn())
        .await?
        .rows_affected();
    Ok(deleted == 1)
}
