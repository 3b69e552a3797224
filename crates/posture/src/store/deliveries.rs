//! Webhook deliveries and their attempts: what the dispatcher claims and
//! records, and what `/v1/webhooks/{id}/deliveries` shows.
//!
//! A delivery is claimed across tenants only through
//! `claim_webhook_deliveries()`, which counts the attempt and leases the row;
//! everything after runs in the tenant's transaction and checks the lease is
//! still held (same worker, same attempt), so an attempt is recorded once
//! even if a slow dispatcher and its replacement both send it.

use super::{Store, TenantTx};
use chrono::{DateTime, Utc};
use posture_domain::ids::{DeliveryId, WebhookId};
use posture_domain::TenantId;
use std::time::Duration;
use uuid::Uuid;

/// A delivery a dispatcher has claimed.
#[derive(Debug, Clone, Copy)]
pub struct ClaimedDelivery {
    pub tenant_id: TenantId,
    pub delivery_id: DeliveryId,
    /// 1 on the first attempt.
    pub attempt: i32,
}

/// How a claim picks deliveries.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRules {
    /// Most deliveries claimed at once.
    pub max: i32,
    /// How long the claim holds.
    pub lease: Duration,
    /// Most deliveries of one endpoint in flight at once (fairness).
    pub per_endpoint: i32,
    /// Attempts a delivery gets unless a manual retry set its own limit.
    pub automatic_attempts: i32,
}

/// Claims due deliveries of any tenant for `worker`.
pub async fn claim(
    store: &Store,
    worker: &str,
    rules: ClaimRules,
) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
    let rows: Vec<(Uuid, Uuid, i32)> = sqlx::query_as(
        "SELECT tenant_id, delivery_id, attempt
         FROM claim_webhook_deliveries($1, $2, make_interval(secs => $3), $4, $5)",
    )
    .bind(worker)
    .bind(rules.max)
    .bind(rules.lease.as_secs_f64())
    .bind(rules.per_endpoint)
    .bind(rules.automatic_attempts)
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, delivery_id, attempt)| ClaimedDelivery {
            tenant_id: TenantId::from_uuid(tenant_id),
            delivery_id: DeliveryId::from_uuid(delivery_id),
            attempt,
        })
        .collect())
}

/// What sending a claimed delivery needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryWork {
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub max_attempts: Option<i32>,
    pub url: String,
    pub enabled: bool,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// The SQL condition for "this worker still holds this delivery's attempt",
/// with the tenant, delivery, worker and attempt bound as `$1`–`$4`.
const HELD: &str =
    "tenant_id = $1 AND id = $2 AND status = 'sending' AND locked_by = $3 AND attempts = $4";

/// The claimed delivery with its event and endpoint; `None` if this worker no
/// longer holds it (or it was deleted with its endpoint).
pub async fn work(
    tx: &mut TenantTx,
    claimed: &ClaimedDelivery,
    worker: &str,
) -> Result<Option<DeliveryWork>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.webhook_id, d.event_id, e.event_type, e.payload, d.max_attempts,
                w.url, w.enabled, w.secret, w.previous_secret, w.previous_secret_expires_at
         FROM webhook_deliveries d
         JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
         JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.id = d.webhook_id
         WHERE d.tenant_id = $1 AND d.id = $2 AND d.status = 'sending' AND d.locked_by = $3
           AND d.attempts = $4",
    )
    .bind(claimed.tenant_id.as_uuid())
    .bind(claimed.delivery_id.as_uuid())
    .bind(worker)
    .bind(claimed.attempt)
    .fetch_optional(tx.conn())
    .await
}

/// One attempt, for the log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub response_excerpt: String,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Failed,
}

/// Logs the attempt and moves the delivery on, if this worker still holds it
/// (false otherwise: the caller must roll back).
pub async fn record_attempt(
    tx: &mut TenantTx,
    claimed: &ClaimedDelivery,
    worker: &str,
    attempt: &AttemptRecord,
    next: NextStep,
) -> Result<bool, sqlx::Error> {
    let (status, next_attempt_at) = match next {
        NextStep::Succeeded => ("succeeded", None),
        NextStep::RetryAt(at) => ("pending", Some(at)),
        NextStep::Failed => ("failed", None),
    };
    let updated = sqlx::query(&format!(
        "UPDATE webhook_deliveries
         SET status = $5, next_attempt_at = $6, locked_by = NULL, locked_until = NULL,
             last_status_code = $7, last_latency_ms = $8, last_error = $9,
             delivered_at = CASE WHEN $5 = 'succeeded' THEN $10 ELSE delivered_at END,
             updated_at = now()
         WHERE {HELD}"
    ))
    .bind(claimed.tenant_id.as_uuid())
    .bind(claimed.delivery_id.as_uuid())
    .bind(worker)
    .bind(claimed.attempt)
    .bind(status)
    .bind(next_attempt_at)
    .bind(attempt.status_code)
    .bind(attempt.latency_ms)
    .bind(&attempt.error)
    .bind(attempt.attempted_at)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if updated != 1 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt, attempted_at, status_code,
                                       latency_ms, error, response_excerpt)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, delivery_id, attempt) DO NOTHING",
    )
    .bind(claimed.tenant_id.as_uuid())
    .bind(claimed.delivery_id.as_uuid())
    .bind(claimed.attempt)
    .bind(attempt.attempted_at)
    .bind(attempt.status_code)
    .bind(attempt.latency_ms)
    .bind(&attempt.error)
    .bind(&attempt.response_excerpt)
    .execute(tx.conn())
    .await?;
    Ok(true)
}

/// A delivery to a disabled endpoint ends without being sent.
pub async fn fail_unsent(
    tx: &mut TenantTx,
    claimed: &ClaimedDelivery,
    worker: &str,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(&format!(
        "UPDATE webhook_deliveries
         SET status = 'failed', next_attempt_at = NULL, locked_by = NULL, locked_until = NULL,
             attempts = attempts - 1, last_error = $5, updated_at = now()
         WHERE {HELD}"
    ))
    .bind(claimed.tenant_id.as_uuid())
    .bind(claimed.delivery_id.as_uuid())
    .bind(worker)
    .bind(claimed.attempt)
    .bind(reason)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// A delivery succeeded: the endpoint's failure streak ends.
pub async fn endpoint_succeeded(tx: &mut TenantTx, webhook_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhooks SET failing_since = NULL
         WHERE tenant_id = $1 AND id = $2 AND failing_since IS NOT NULL",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(webhook_id)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// A delivery failed: the endpoint's failure streak starts (at `at`) or goes
/// on. Returns when it started.
pub async fn endpoint_failed(
    tx: &mut TenantTx,
    webhook_id: Uuid,
    at: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE webhooks SET failing_since = COALESCE(failing_since, $3)
         WHERE tenant_id = $1 AND id = $2 RETURNING failing_since",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(webhook_id)
    .bind(at)
    .fetch_optional(tx.conn())
    .await
    .map(Option::flatten)
}

/// The endpoint the platform disabled.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DisabledEndpoint {
    pub url: String,
    pub failing_since: Option<DateTime<Utc>>,
}

/// Disables an enabled endpoint for `reason` and fails its unsent
/// deliveries; `None` if it was not enabled (someone else disabled it).
pub async fn disable_endpoint(
    tx: &mut TenantTx,
    webhook_id: Uuid,
    reason: &str,
) -> Result<Option<DisabledEndpoint>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let disabled: Option<DisabledEndpoint> = sqlx::query_as(
        "UPDATE webhooks
         SET enabled = false, disabled_reason = $3, disabled_at = now(), updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND enabled
         RETURNING url, failing_since",
    )
    .bind(tenant_id)
    .bind(webhook_id)
    .bind(reason)
    .fetch_optional(tx.conn())
    .await?;
    if disabled.is_some() {
        // Deliveries in flight (`sending`) finish their attempt and then stop.
        sqlx::query(
            "UPDATE webhook_deliveries
             SET status = 'failed', next_attempt_at = NULL, last_error = 'endpoint disabled',
                 updated_at = now()
             WHERE tenant_id = $1 AND webhook_id = $2 AND status = 'pending'",
        )
        .bind(tenant_id)
        .bind(webhook_id)
        .execute(tx.conn())
        .await?;
    }
    Ok(disabled)
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_latency_ms: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const DELIVERY_COLUMNS: &str = "d.id, d.event_id, e.event_type, d.status, d.attempts, \
     d.next_attempt_at, d.last_status_code, d.last_latency_ms, d.last_error, d.delivered_at, \
     d.created_at";

/// A page of the endpoint's deliveries, newest first, after `after`,
/// optionally of one status.
pub async fn page(
    tx: &mut TenantTx,
    webhook_id: WebhookId,
    status: Option<&str>,
    after: Option<DeliveryId>,
    limit: u32,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS}
         FROM webhook_deliveries d
         JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
         WHERE d.tenant_id = $1 AND d.webhook_id = $2
           AND ($3::text IS NULL OR d.status = $3)
           AND ($4::uuid IS NULL OR d.id < $4)
         ORDER BY d.id DESC
         LIMIT $5"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(webhook_id.as_uuid())
    .bind(status)
    .bind(after.map(|id| id.as_uuid()))
    .bind(i64::from(limit))
    .fetch_all(tx.conn())
    .await
}

/// One delivery of the endpoint, with its event's payload.
pub async fn get(
    tx: &mut TenantTx,
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
) -> Result<Option<(DeliveryRow, serde_json::Value)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        delivery: DeliveryRow,
        payload: serde_json::Value,
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS}, e.payload
         FROM webhook_deliveries d
         JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
         WHERE d.tenant_id = $1 AND d.webhook_id = $2 AND d.id = $3"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(webhook_id.as_uuid())
    .bind(delivery_id.as_uuid())
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.map(|row| (row.delivery, row.payload)))
}

/// One attempt as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// The delivery's attempts, first first.
pub async fn attempts(
    tx: &mut TenantTx,
    delivery_id: DeliveryId,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT attempt, attempted_at, status_code, latency_ms, error, response_excerpt
         FROM webhook_attempts WHERE tenant_id = $1 AND delivery_id = $2 ORDER BY attempt",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(delivery_id.as_uuid())
    .fetch_all(tx.conn())
    .await
}

/// What a manual retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// Due now; for a finished delivery, with exactly one more attempt allowed.
    Scheduled,
    /// An attempt is in flight; nothing changed.
    InFlight,
    /// No such delivery of this endpoint.
    NotFound,
}

/// Makes the delivery due now. A pending one keeps its remaining automatic
/// retries; a finished one (succeeded or failed) gets one more attempt.
pub async fn retry_now(
    tx: &mut TenantTx,
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
) -> Result<Retried, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM webhook_deliveries
         WHERE tenant_id = $1 AND webhook_id = $2 AND id = $3 FOR UPDATE",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(webhook_id.as_uuid())
    .bind(delivery_id.as_uuid())
    .fetch_optional(tx.conn())
    .await?;
    let Some(status) = status else {
        return Ok(Retried::NotFound);
    };
    if status == "sending" {
        return Ok(Retried::InFlight);
    }
    sqlx::query(
        "UPDATE webhook_deliveries
         SET status = 'pending', next_attempt_at = now(), updated_at = now(),
             max_attempts = CASE WHEN status = 'pending' THEN max_attempts
                                 ELSE least(attempts + 1, 1000) END
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(delivery_id.as_uuid())
    .execute(tx.conn())
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(super::outbox::WEBHOOKS_CHANNEL)
        .execute(tx.conn())
        .await?;
    Ok(Retried::Scheduled)
}

/// Deletes events older than `keep_days` whose deliveries are all finished
/// (with their deliveries and attempts); at most `max_events`. Returns how many.
pub async fn prune(store: &Store, keep_days: i32, max_events: i32) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT prune_webhook_events($1, $2)")
        .bind(keep_days)
        .bind(max_events)
        .fetch_one(store.pool())
        .await
}
