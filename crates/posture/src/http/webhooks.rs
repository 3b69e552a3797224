//! `/v1/webhooks` (admin scope): the organization's endpoints. An endpoint's
//! URL must be `https` (unless configuration allows `http`), name a host, and
//! resolve only to public addresses (SSRF protection, checked again before
//! every delivery). Its signing secret is shown once, when it is created or
//! rotated; during a rotation's overlap both secrets sign.

use super::error::{ApiError, FieldError};
use super::extract::ApiJson;
use super::middleware::RequestId;
use crate::auth::TenantContext;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry};
use crate::store::webhooks::{self, WebhookFields, WebhookRecord};
use crate::store::TenantTx;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Duration, Utc};
use posture_domain::ids::WebhookId;
use posture_domain::webhook::{EventType, WebhookSecret, WebhookUrl};
use posture_domain::{Scope, Severity};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use utoipa::ToSchema;

/// Most endpoints per organization.
pub const MAX_WEBHOOKS_PER_TENANT: i64 = 20;
/// Longest description.
const MAX_DESCRIPTION_CHARS: usize = 500;
/// Longest overlap of a secret rotation: a week.
const MAX_OVERLAP_SECS: i64 = 7 * 86_400;

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://…` with a host name (not an IP address), up to 2,048 characters.
    pub url: String,
    /// The event types to receive (at least one): `scan.completed`,
    /// `scan.failed`, `finding.created`, `finding.reopened`,
    /// `posture.score_changed`, `compliance.control_failed`, `quota.warning`,
    /// `quota.exceeded`, `webhook.disabled`.
    pub event_types: Vec<String>,
    /// Up to 500 characters.
    pub description: Option<String>,
    /// `finding.created` is sent for findings of at least this severity (default `high`).
    pub min_severity: Option<String>,
    /// `posture.score_changed` is sent when the score moves by at least this, 1–100 (default 5).
    pub score_threshold: Option<i32>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Changes to an endpoint: members not sent are kept.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// An empty string removes it.
    pub description: Option<String>,
    pub min_severity: Option<String>,
    pub score_threshold: Option<i32>,
    /// Re-enabling an endpoint the platform disabled clears the reason.
    pub enabled: Option<bool>,
}

/// A secret rotation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the old secret keeps signing alongside the new one, 0–604800
    /// seconds (default 86400: a day to deploy the new secret).
    pub overlap_seconds: Option<i64>,
}

/// An endpoint (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(value_type = String, example = "whk_0Xq3…")]
    pub id: WebhookId,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub min_severity: String,
    pub score_threshold: i32,
    pub enabled: bool,
    /// Why the platform disabled it (`gone`: the endpoint answered 410;
    /// `failing`: deliveries failed for 5 days); null otherwise.
    pub disabled_reason: Option<String>,
    /// When the platform disabled it; null otherwise.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Since when deliveries have been failing; null when the last succeeded.
    pub failing_since: Option<DateTime<Utc>>,
    /// While a rotation's old secret still signs: until when.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<WebhookRecord> for WebhookView {
    fn from(record: WebhookRecord) -> Self {
        let overlap = record
            .previous_secret_expires_at
            .filter(|until| *until > Utc::now());
        WebhookView {
            id: record.webhook_id(),
            url: record.url,
            description: record.description,
            event_types: record.event_types,
            min_severity: record.min_severity,
            score_threshold: record.score_threshold,
            enabled: record.enabled,
            disabled_reason: record.disabled_reason,
            disabled_at: record.disabled_at,
            failing_since: record.failing_since,
            previous_secret_expires_at: overlap,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// An endpoint with its signing secret: only in the answer that created it or
/// rotated the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_…`: verify deliveries with it (docs/webhooks.md). Shown once.
    pub secret: String,
}

/// The organization's endpoints.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub data: Vec<WebhookView>,
}

/// Checks every field; all problems are reported, each with its pointer.
async fn validated(state: &AppState, fields: WebhookFields) -> Result<WebhookFields, ApiError> {
    let mut problems = Vec::new();
    let policy = state.config.webhook_policy();
    match WebhookUrl::parse(&fields.url, policy.allow_http) {
        Ok(url) => {
            if let Err(refused) = policy.vet(&url).await {
                problems.push(FieldError::at("/url", refused.to_string()));
            }
        }
        Err(error) => problems.push(FieldError::at("/url", format!("The URL {error}."))),
    }
    if fields.event_types.is_empty() {
        problems.push(FieldError::at(
            "/event_types",
            "Name at least one event type.",
        ));
    }
    let mut seen = BTreeSet::new();
    for (index, name) in fields.event_types.iter().enumerate() {
        if name.parse::<EventType>().is_err() {
            problems.push(FieldError::at(
                format!("/event_types/{index}"),
                format!("Unknown event type {name:?}."),
            ));
        } else if !seen.insert(name.as_str()) {
            problems.push(FieldError::at(
                format!("/event_types/{index}"),
                format!("{name} is listed twice."),
            ));
        }
    }
    if fields
        .description
        .as_ref()
        .is_some_and(|text| text.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        problems.push(FieldError::at(
            "/description",
            format!("At most {MAX_DESCRIPTION_CHARS} characters."),
        ));
    }
    if fields.min_severity.parse::<Severity>().is_err() {
        problems.push(FieldError::at(
            "/min_severity",
            "One of info, low, medium, high, critical.",
        ));
    }
    if !(1..=100).contains(&fields.score_threshold) {
        problems.push(FieldError::at("/score_threshold", "Between 1 and 100."));
    }
    if problems.is_empty() {
        Ok(fields)
    } else {
        Err(ApiError::Validation(problems))
    }
}

fn description(text: Option<String>) -> Option<String> {
    text.map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// Records an audit entry about `target` (an endpoint, or one of its deliveries).
pub(super) async fn audited(
    tx: &mut TenantTx,
    context: &TenantContext,
    request_id: &str,
    action: &str,
    target: impl std::fmt::Display,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    audit::record(
        tx,
        AuditEntry {
            actor: &context.actor(),
            action,
            target: Some(&target.to_string()),
            details,
            request_id: Some(request_id),
        },
    )
    .await?;
    Ok(())
}

/// Register an endpoint (admin scope). The answer holds its signing secret,
/// shown this once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("api_key" = [])),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; `Location` names it", body = WebhookWithSecret),
        (status = 409, description = "The organization has 20 endpoints", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a URL that resolves to a non-public address", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<Response, ApiError> {
    context.require(Scope::Admin)?;
    let fields = validated(
        &state,
        WebhookFields {
            url: body.url.trim().to_owned(),
            description: description(body.description),
            event_types: body.event_types,
            min_severity: body.min_severity.unwrap_or_else(|| "high".into()),
            score_threshold: body.score_threshold.unwrap_or(5),
            enabled: body.enabled.unwrap_or(true),
        },
    )
    .await?;
    let secret = WebhookSecret::generate(&mut rand::rngs::OsRng);
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    if webhooks::lock_and_count(&mut tx).await? >= MAX_WEBHOOKS_PER_TENANT {
        return Err(ApiError::Conflict(format!(
            "An organization may have at most {MAX_WEBHOOKS_PER_TENANT} webhooks; delete one first."
        )));
    }
    let record = webhooks::insert(&mut tx, WebhookId::new(), &fields, &secret.expose()).await?;
    let id = record.webhook_id();
    audited(
        &mut tx,
        &context,
        &request_id,
        "webhook.created",
        id,
        json!({ "url": record.url, "event_types": record.event_types }),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/webhooks/{id}"))],
        Json(WebhookWithSecret {
            webhook: record.into(),
            secret: secret.expose(),
        }),
    )
        .into_response())
}

/// The organization's endpoints, oldest first (at most 20; admin scope).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("api_key" = [])),
    responses((status = 200, description = "Endpoints", body = WebhookList)))]
pub async fn list(
    State(state): State<AppState>,
    context: TenantContext,
) -> Result<Json<WebhookList>, ApiError> {
    context.require(Scope::Admin)?;
    let records = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        webhooks::all(&mut tx).await?
    })?;
    Ok(Json(WebhookList {
        data: records.into_iter().map(WebhookView::from).collect(),
    }))
}

/// One endpoint (admin scope).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "Webhook id, `whk_…`")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookView),
        (status = 404, description = "No such endpoint in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    context.require(Scope::Admin)?;
    let id = WebhookId::parse(&id).ok_or(ApiError::NotFound)?;
    let record = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        webhooks::get(&mut tx, id).await?
    })?;
    Ok(Json(record.ok_or(ApiError::NotFound)?.into()))
}

/// Change an endpoint (admin scope); members not sent are kept.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "Webhook id, `whk_…`")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, description = "Changed", body = WebhookView),
        (status = 404, description = "No such endpoint in this organization", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> Result<Json<WebhookView>, ApiError> {
    context.require(Scope::Admin)?;
    let id = WebhookId::parse(&id).ok_or(ApiError::NotFound)?;
    let current = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        webhooks::get(&mut tx, id).await?
    })?
    .ok_or(ApiError::NotFound)?;
    // Vetted (DNS included) outside any transaction.
    let fields = validated(
        &state,
        WebhookFields {
            url: body.url.map_or(current.url, |url| url.trim().to_owned()),
            description: match body.description {
                Some(text) => description(Some(text)),
                None => current.description,
            },
            event_types: body.event_types.unwrap_or(current.event_types),
            min_severity: body.min_severity.unwrap_or(current.min_severity),
            score_threshold: body.score_threshold.unwrap_or(current.score_threshold),
            enabled: body.enabled.unwrap_or(current.enabled),
        },
    )
    .await?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let record = webhooks::update(&mut tx, id, &fields)
        .await?
        .ok_or(ApiError::NotFound)?;
    audited(
        &mut tx,
        &context,
        &request_id,
        "webhook.updated",
        id,
        json!({ "url": record.url, "event_types": record.event_types, "enabled": record.enabled }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(record.into()))
}

/// Delete an endpoint (admin scope).
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "Webhook id, `whk_…`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    context.require(Scope::Admin)?;
    let id = WebhookId::parse(&id).ok_or(ApiError::NotFound)?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    if !webhooks::delete(&mut tx, id).await? {
        return Err(ApiError::NotFound);
    }
    audited(
        &mut tx,
        &context,
        &request_id,
        "webhook.deleted",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate an endpoint's signing secret (admin scope). The new secret is in
/// the answer, shown this once; the old one keeps signing alongside it for
/// `overlap_seconds`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", security(("api_key" = [])),
    params(("id" = String, Path, description = "Webhook id, `whk_…`")),
    request_body = RotateSecret,
    responses(
        (status = 200, description = "Rotated", body = WebhookWithSecret),
        (status = 404, description = "No such endpoint in this organization", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid overlap", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RotateSecret>,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    context.require(Scope::Admin)?;
    let id = WebhookId::parse(&id).ok_or(ApiError::NotFound)?;
    let overlap = body.overlap_seconds.unwrap_or(86_400);
    if !(0..=MAX_OVERLAP_SECS).contains(&overlap) {
        return Err(ApiError::invalid(
            "/overlap_seconds",
            format!("Between 0 and {MAX_OVERLAP_SECS}."),
        ));
    }
    let secret = WebhookSecret::generate(&mut rand::rngs::OsRng);
    let until = Utc::now() + Duration::seconds(overlap);
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let record = webhooks::rotate_secret(&mut tx, id, &secret.expose(), until)
        .await?
        .ok_or(ApiError::NotFound)?;
    audited(
        &mut tx,
        &context,
        &request_id,
        "webhook.secret_rotated",
        id,
        json!({ "overlap_seconds": overlap }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(WebhookWithSecret {
        webhook: record.into(),
        secret: secret.expose(),
    }))
}
