//! An endpoint's delivery log, a test ping, and manual retries (admin scope):
//! `/v1/webhooks/{id}/deliveries[/{delivery}[/retry]]` and
//! `/v1/webhooks/{id}/test`. Sending is the dispatcher's: these routes only
//! read the log or queue a delivery, due at once.

use super::error::ApiError;
use super::extract::ApiQuery;
use super::middleware::RequestId;
use super::pagination::{Cursor, Page, PageQuery};
use super::webhooks::audited;
use crate::auth::TenantContext;
use crate::state::AppState;
use crate::store::deliveries::{self, AttemptRow, DeliveryRow, Retried};
use crate::store::{outbox, webhooks};
use crate::webhooks::events::{self, Emitted, EventData, PingData};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use posture_domain::ids::{DeliveryId, EventId, WebhookId};
use posture_domain::Scope;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// `GET /v1/webhooks/{id}/deliveries` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListDeliveriesQuery {
    /// Only deliveries in this state: `pending`, `sending`, `succeeded` or `failed`.
    status: Option<String>,
    /// Items per page, 1–100 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One event's delivery to the endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    #[schema(example = "dlv_…")]
    pub id: String,
    /// The event, and the `webhook-id` header of every attempt.
    #[schema(example = "msg_…")]
    pub event_id: String,
    pub event_type: String,
    /// `pending` (waiting for `next_attempt_at`), `sending`, `succeeded` or
    /// `failed` (out of attempts, or the endpoint was disabled).
    pub status: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due; null unless pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last answer; null if there was none.
    pub last_response_status: Option<i32>,
    pub last_latency_ms: Option<i32>,
    /// Why the last attempt got no answer (refused destination, DNS,
    /// connection, timeout), or why the delivery stopped.
    pub last_error: Option<String>,
    /// When an attempt last succeeded (kept if a later manual retry fails).
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(row: DeliveryRow) -> Self {
        DeliveryView {
            id: DeliveryId::from_uuid(row.id).to_string(),
            event_id: EventId::from_uuid(row.event_id).to_string(),
            event_type: row.event_type,
            // While sending, the stored time is the lease's end, not a retry.
            next_attempt_at: row.next_attempt_at.filter(|_| row.status == "pending"),
            status: row.status,
            attempts: row.attempts,
            last_response_status: row.last_status_code,
            last_latency_ms: row.last_latency_ms,
            last_error: row.last_error,
            delivered_at: row.delivered_at,
            created_at: row.created_at,
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1 for the first.
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status; null when there was no answer.
    pub response_status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    /// The first 1 KiB of the answer's body.
    pub response_excerpt: Option<String>,
}

impl From<AttemptRow> for AttemptView {
    fn from(row: AttemptRow) -> Self {
        AttemptView {
            attempt: row.attempt,
            attempted_at: row.attempted_at,
            response_status: row.status_code,
            latency_ms: row.latency_ms,
            error: row.error,
            response_excerpt: row.response_excerpt,
        }
    }
}

/// A delivery with the message it sends and every attempt so far.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    /// The body sent (signed as is).
    #[schema(value_type = crate::webhooks::events::WebhookMessage)]
    pub payload: serde_json::Value,
    pub attempts_log: Vec<AttemptView>,
}

/// A page of deliveries (for the OpenAPI document).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeliveryPage {
    data: Vec<DeliveryView>,
    next_cursor: Option<String>,
}

const STATUSES: [&str; 4] = ["pending", "sending", "succeeded", "failed"];

/// 409 for a disabled endpoint: nothing is sent to it until it is enabled.
fn require_enabled(record: &webhooks::WebhookRecord, doing: &str) -> Result<(), ApiError> {
    if record.enabled {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "The endpoint is disabled; enable it (PATCH enabled: true) before {doing}."
    )))
}

/// The endpoint `id` of the tenant, or 404.
async fn endpoint(
    state: &AppState,
    context: &TenantContext,
    id: &str,
) -> Result<webhooks::WebhookRecord, ApiError> {
    let id = WebhookId::parse(id).ok_or(ApiError::NotFound)?;
    let record = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        webhooks::get(&mut tx, id).await?
    })?;
    record.ok_or(ApiError::NotFound)
}

/// The endpoint's deliveries, newest first (admin scope).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "Webhook id, `whk_…`"), ListDeliveriesQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 404, description = "No such endpoint in this organization", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad status, limit or cursor", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    context: TenantContext,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ListDeliveriesQuery>,
) -> Result<Json<Page<DeliveryView>>, ApiError> {
    context.require(Scope::Admin)?;
    let id = WebhookId::parse(&id).ok_or(ApiError::NotFound)?;
    if let Some(status) = &query.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(ApiError::invalid_parameter(
                "status",
                "must be pending, sending, succeeded or failed",
            ));
        }
    }
    let page = PageQuery::new(query.limit, query.cursor);
    let limit = page.limit()?;
    let after = page
        .cursor()?
        .map(|cursor| {
            cursor
                .parts::<1>()
                .and_then(|[id]| DeliveryId::parse(&id))
                .ok_or_else(|| {
                    ApiError::invalid_parameter("cursor", "is not a cursor this endpoint returned")
                })
        })
        .transpose()?;
    let rows = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        if webhooks::get(&mut tx, id).await?.is_none() {
            None
        } else {
            Some(deliveries::page(&mut tx, id, query.status.as_deref(), after, limit + 1).await?)
        }
    })?
    .ok_or(ApiError::NotFound)?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |last| Cursor::encode(&[&DeliveryId::from_uuid(last.id).to_string()]),
        DeliveryView::from,
    )))
}

/// One delivery with its message and attempts: the delivery log (admin scope).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries/{delivery}", tag = "webhooks", security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "Webhook id, `whk_…`"),
        ("delivery" = String, Path, description = "Delivery id, `dlv_…`"),
    ),
    responses(
        (status = 200, description = "The delivery", body = DeliveryDetail),
        (status = 404, description = "No such delivery of this endpoint in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    context.require(Scope::Admin)?;
    let id = WebhookId::parse(&id).ok_or(ApiError::NotFound)?;
    let delivery = DeliveryId::parse(&delivery).ok_or(ApiError::NotFound)?;
    let found = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        match deliveries::get(&mut tx, id, delivery).await? {
            Some((row, payload)) => {
                let attempts = deliveries::attempts(&mut tx, delivery).await?;
                Some((row, payload, attempts))
            }
            None => None,
        }
    })?;
    let (row, payload, attempts) = found.ok_or(ApiError::NotFound)?;
    Ok(Json(DeliveryDetail {
        delivery: row.into(),
        payload,
        attempts_log: attempts.into_iter().map(AttemptView::from).collect(),
    }))
}

/// Send a `ping` to the endpoint now, whatever it subscribes to (admin
/// scope). The answer is the queued delivery; follow it in the log.
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "Webhook id, `whk_…`")),
    responses(
        (status = 202, description = "Queued; `Location` names the delivery", body = DeliveryView),
        (status = 404, description = "No such endpoint in this organization", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled; enable it first", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn test(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    context.require(Scope::Admin)?;
    let id = WebhookId::parse(&id).ok_or(ApiError::NotFound)?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let record = webhooks::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    require_enabled(&record, "testing it")?;
    let data = EventData::Ping(PingData {
        webhook_id: id,
        message: "A test message from Posture: the endpoint and its signature check work."
            .to_owned(),
    });
    let written = outbox::emit(
        &mut tx,
        vec![Emitted {
            event_type: events::PING,
            data,
            targets: vec![id.as_uuid()],
            dedupe_key: None,
        }],
    )
    .await?;
    let delivery = written
        .first()
        .map(|id| DeliveryId::from_uuid(*id))
        .ok_or(ApiError::NotFound)?;
    let (row, _) = deliveries::get(&mut tx, id, delivery)
        .await?
        .ok_or(ApiError::NotFound)?;
    audited(
        &mut tx,
        &context,
        &request_id,
        "webhook.tested",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    let view = DeliveryView::from(row);
    Ok((
        StatusCode::ACCEPTED,
        [(
            header::LOCATION,
            format!("/v1/webhooks/{id}/deliveries/{}", view.id),
        )],
        Json(view),
    )
        .into_response())
}

/// Send a delivery again now (admin scope). A pending one keeps its
/// remaining automatic retries; a succeeded or failed one gets one more
/// attempt.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery}/retry", tag = "webhooks", security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "Webhook id, `whk_…`"),
        ("delivery" = String, Path, description = "Delivery id, `dlv_…`"),
    ),
    responses(
        (status = 202, description = "Due now", body = DeliveryView),
        (status = 404, description = "No such delivery of this endpoint in this organization", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "An attempt is in flight, or the endpoint is disabled", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    context.require(Scope::Admin)?;
    let record = endpoint(&state, &context, &id).await?;
    let id = record.webhook_id();
    let delivery = DeliveryId::parse(&delivery).ok_or(ApiError::NotFound)?;
    require_enabled(&record, "retrying its deliveries")?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    match deliveries::retry_now(&mut tx, id, delivery).await? {
        Retried::NotFound => return Err(ApiError::NotFound),
        Retried::InFlight => {
            return Err(ApiError::Conflict(
                "An attempt of this delivery is in flight; retry once it is recorded.".to_owned(),
            ))
        }
        Retried::Scheduled => {}
    }
    let (row, _) = deliveries::get(&mut tx, id, delivery)
        .await?
        .ok_or(ApiError::NotFound)?;
    audited(
        &mut tx,
        &context,
        &request_id,
        "webhook.delivery_retried",
        delivery,
        json!({ "webhook": id.to_string() }),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(row))).into_response())
}
