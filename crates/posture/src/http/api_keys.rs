//! `/v1/api-keys`: create, list, show and revoke the tenant's API keys (admin scope).

use super::error::{ApiError, FieldError};
use super::extract::{ApiJson, ApiQuery};
use super::middleware::RequestId;
use super::pagination::{Cursor, Page, PageQuery};
use crate::auth::{issue_api_key, revoke_api_key, KeyRequest, TenantContext};
use crate::cache::views::Generation;
use crate::state::AppState;
use crate::store::api_keys::{self, ApiKeyRecord, KeyPageCursor};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use posture_domain::{ApiKeyId, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Request body of `POST /v1/api-keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. `ci-pipeline` (1–100 characters).
    pub name: String,
    /// Scopes to grant: any of `read`, `write`, `admin` (admin ⊇ write ⊇ read).
    #[schema(example = json!(["read", "write"]))]
    pub scopes: Vec<String>,
    /// Optional expiry; must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key as listed. The secret is never shown again after creation.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Public id, `key_` + 12 characters; also embedded in the key itself.
    #[schema(value_type = String, example = "key_3kTMd8aZq0Lb")]
    pub id: ApiKeyId,
    pub name: String,
    #[schema(example = json!(["read"]))]
    pub scopes: Vec<&'static str>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A newly created key, with the full key shown exactly once.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKeyView,
    /// The key to send as `Authorization: Bearer …`. Store it now: it cannot be shown again.
    pub key: String,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(record: ApiKeyRecord) -> Self {
        let status = record.status(Utc::now());
        ApiKeyView {
            id: record.key_id,
            name: record.name,
            scopes: record.scopes.names(),
            status,
            created_by: record.created_by,
            created_at: record.created_at,
            expires_at: record.expires_at,
            last_used_at: record.last_used_at,
            revoked_at: record.revoked_at,
        }
    }
}

fn validate(body: CreateApiKey) -> Result<KeyRequest, ApiError> {
    KeyRequest::parse(&body.name, &body.scopes, body.expires_at, Utc::now()).map_err(|errors| {
        ApiError::Validation(
            errors
                .into_iter()
                .map(|(pointer, detail)| FieldError::at(pointer, detail))
                .collect(),
        )
    })
}

/// Create an API key. The response is the only time the key is shown.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", security(("api_key" = [])),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; `Location` names the key", body = CreatedApiKey),
        (status = 403, description = "The key lacks the admin scope", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, with pointers", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> Result<Response, ApiError> {
    context.require(Scope::Admin)?;
    let request = validate(body)?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let (record, token) =
        issue_api_key(&mut tx, &request, &context.actor(), Some(&request_id)).await?;
    tx.commit().await?;
    let location = format!("/v1/api-keys/{}", record.key_id);
    let created = CreatedApiKey {
        api_key: record.into(),
        key: token.expose(),
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    )
        .into_response())
}

/// List the tenant's API keys, newest first, including revoked ones.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("api_key" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of keys", body = ApiKeyPage),
        (status = 422, description = "Bad limit or cursor", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    context: TenantContext,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<ApiKeyView>>, ApiError> {
    context.require(Scope::Admin)?;
    let limit = query.limit()?;
    let after = query.cursor()?.map(decode_cursor).transpose()?;
    // One extra row tells whether another page exists.
    let records = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        api_keys::list(&mut tx, after.as_ref(), limit + 1).await?
    })?;
    Ok(Json(Page::from_rows(
        records,
        limit,
        |last| Cursor::encode_time_and_id(last.created_at, last.key_id.as_str()),
        ApiKeyView::from,
    )))
}

/// A page of API keys (for the OpenAPI document).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ApiKeyPage {
    data: Vec<ApiKeyView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    next_cursor: Option<String>,
}

fn decode_cursor(cursor: Cursor) -> Result<KeyPageCursor, ApiError> {
    let (created_at, key_id) = cursor.time_and_id(ApiKeyId::parse)?;
    Ok(KeyPageCursor { created_at, key_id })
}

/// Show one API key.
#[utoipa::path(get, path = "/v1/api-keys/{id}", tag = "api-keys", security(("api_key" = [])),
    params(("id" = String, Path, description = "Key id, `key_…`")),
    responses(
        (status = 200, description = "The key", body = ApiKeyView),
        (status = 404, description = "No such key in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, ApiError> {
    context.require(Scope::Admin)?;
    let key_id = ApiKeyId::parse(&id).ok_or(ApiError::NotFound)?;
    let record = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        api_keys::get(&mut tx, &key_id).await?
    })?
    .ok_or(ApiError::NotFound)?;
    Ok(Json(record.into()))
}

/// Revoke an API key. It stops working on this instance at once and on every
/// other instance within a second. Revoking a revoked key is a no-op.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("api_key" = [])),
    params(("id" = String, Path, description = "Key id, `key_…`")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    context.require(Scope::Admin)?;
    let key_id = ApiKeyId::parse(&id).ok_or(ApiError::NotFound)?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    revoke_api_key(&mut tx, &key_id, &context.actor(), Some(&request_id))
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    // At once here; other servers drop it on the commit's notification.
    state
        .views
        .invalidate(context.tenant_id, Generation::Account)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
