//! Webhook endpoints of the transaction's tenant.

use super::TenantTx;
use chrono::{DateTime, Utc};
use posture_domain::ids::WebhookId;
use uuid::Uuid;

/// An endpoint as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRecord {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub min_severity: String,
    pub score_threshold: i32,
    /// `whsec_…`: never returned by the API after creation or rotation.
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookRecord {
    /// The typed id.
    pub fn webhook_id(&self) -> WebhookId {
        WebhookId::from_uuid(self.id)
    }
}

/// An endpoint's editable parts, already validated.
#[derive(Debug, Clone)]
pub struct WebhookFields {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub min_severity: String,
    pub score_threshold: i32,
    pub enabled: bool,
}

const COLUMNS: &str = "id, url, description, event_types, min_severity, score_threshold, secret, \
     previous_secret, previous_secret_expires_at, enabled, disabled_reason, disabled_at, failing_since, \
     created_at, updated_at";

/// How many endpoints the tenant has, under the tenant's lock on them (see
/// [`TenantTx::lock_collection`]).
pub async fn lock_and_count(tx: &mut TenantTx) -> Result<i64, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    tx.lock_collection("webhooks").await?;
    sqlx::query_scalar("SELECT count(*) FROM webhooks WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(tx.conn())
        .await
}

/// Creates an endpoint with its first secret.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert(
    tx: &mut TenantTx,
    id: WebhookId,
    fields: &WebhookFields,
    secret: &str,
) -> Result<WebhookRecord, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "INSERT INTO webhooks (tenant_id, id, url, description, event_types, min_severity,
                               score_threshold, enabled, secret)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id.as_uuid())
    .bind(&fields.url)
    .bind(&fields.description)
    .bind(&fields.event_types)
    .bind(&fields.min_severity)
    .bind(fields.score_threshold)
    .bind(fields.enabled)
    .bind(secret)
    .fetch_one(tx.conn())
    .await
}

/// Replaces an endpoint's editable parts; re-enabling clears the reason the
/// platform disabled it and its failure streak. `None` if there is none.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn update(
    tx: &mut TenantTx,
    id: WebhookId,
    fields: &WebhookFields,
) -> Result<Option<WebhookRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "UPDATE webhooks
         SET url = $3, description = $4, event_types = $5, min_severity = $6,
             score_threshold = $7, enabled = $8,
             disabled_reason = CASE WHEN $8 THEN NULL ELSE disabled_reason END,
             disabled_at = CASE WHEN $8 THEN NULL ELSE disabled_at END,
             failing_since = CASE WHEN $8 AND NOT enabled THEN NULL ELSE failing_since END,
             updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id.as_uuid())
    .bind(&fields.url)
    .bind(&fields.description)
    .bind(&fields.event_types)
    .bind(&fields.min_severity)
    .bind(fields.score_threshold)
    .bind(fields.enabled)
    .fetch_optional(tx.conn())
    .await
}

/// Replaces the secret; the old one keeps signing (alongside) until
/// `overlap_until`. `None` if there is no such endpoint.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn rotate_secret(
    tx: &mut TenantTx,
    id: WebhookId,
    secret: &str,
    overlap_until: DateTime<Utc>,
) -> Result<Option<WebhookRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "UPDATE webhooks
         SET previous_secret = secret, previous_secret_expires_at = $4, secret = $3,
             updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id.as_uuid())
    .bind(secret)
    .bind(overlap_until)
    .fetch_optional(tx.conn())
    .await
}

/// One endpoint.
pub async fn get(tx: &mut TenantTx, id: WebhookId) -> Result<Option<WebhookRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id)
    .bind(id.as_uuid())
    .fetch_optional(tx.conn())
    .await
}

/// Every endpoint of the tenant, oldest first (there are at most
/// `MAX_WEBHOOKS_PER_TENANT`).
pub async fn all(tx: &mut TenantTx) -> Result<Vec<WebhookRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE tenant_id = $1 ORDER BY id"
    ))
    .bind(tenant_id)
    .fetch_all(tx.conn())
    .await
}

/// Deletes an endpoint; false if there was none.
pub async fn delete(tx: &mut TenantTx, id: WebhookId) -> Result<bool, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let deleted = sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id.as_uuid())
        .execute(tx.conn())
        .await?
        .rows_affected();
    Ok(deleted == 1)
}
