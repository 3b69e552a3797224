//! Custom compliance frameworks (premium and above): a tenant's own controls,
//! each mapped to CWE ids and rule patterns. Creating and replacing one needs
//! the premium tier; reading and deleting do not, so an organization that moves
//! to a lower tier keeps sight of its frameworks and can remove them.

use super::error::{ApiError, FieldError};
use super::extract::ApiJson;
use super::middleware::RequestId;
use crate::auth::{Premium, RequireTier, TenantContext};
use crate::jobs::queue::queue_posture_refresh;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry};
use crate::store::frameworks::{self, FrameworkFields, FrameworkRecord};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use posture_domain::compliance::custom::{
    self, check_text, CustomControlSpec, MAX_DESCRIPTION_CHARS, MAX_FRAMEWORKS_PER_TENANT,
    MAX_TITLE_CHARS,
};
use posture_domain::ids::FrameworkId;
use posture_domain::Scope;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// A custom framework's definition (create and replace).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FrameworkBody {
    /// Unique among the organization's frameworks, 1–200 characters.
    pub name: String,
    /// Up to 2,000 characters.
    pub description: Option<String>,
    /// 1–500 controls.
    #[schema(value_type = Vec<ControlSpecSchema>)]
    pub controls: Vec<CustomControlSpec>,
}

/// One control of a custom framework (for the OpenAPI document).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ControlSpecSchema {
    /// Unique in the framework; 1–64 characters: letters, digits and `. - _ : ( )`, not only dots (e.g. `SEC-01`).
    id: String,
    /// 1–200 characters.
    title: String,
    /// CWE ids whose open findings fail the control (up to 100).
    cwes: Vec<u32>,
    /// Rule ids, exact or a prefix ending in `*`, whose open findings fail it (up to 100).
    rules: Vec<String>,
}

/// A custom framework.
#[derive(Debug, Serialize, ToSchema)]
pub struct FrameworkView {
    #[schema(value_type = String, example = "cfw_0Xq3…")]
    pub id: FrameworkId,
    pub name: String,
    pub description: Option<String>,
    /// Increases with every replacement.
    pub revision: i32,
    #[schema(value_type = Vec<ControlSpecSchema>)]
    pub controls: Vec<CustomControlSpec>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<FrameworkRecord> for FrameworkView {
    fn from(record: FrameworkRecord) -> Self {
        FrameworkView {
            id: record.framework_id(),
            name: record.name,
            description: record.description,
            revision: record.revision,
            controls: record.controls.0,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// The organization's custom frameworks.
#[derive(Serialize, ToSchema)]
pub struct FrameworkList {
    pub data: Vec<FrameworkView>,
}

/// Checks a definition; every problem is reported with its pointer.
fn validate(body: &FrameworkBody) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    check_text("/name", &body.name, MAX_TITLE_CHARS, &mut problems);
    if let Some(description) = &body.description {
        check_text(
            "/description",
            description,
            MAX_DESCRIPTION_CHARS,
            &mut problems,
        );
    }
    if let Err(control_problems) = custom::parse_controls(&body.controls) {
        problems.extend(control_problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(
            problems
                .into_iter()
                .take(50)
                .map(|problem| FieldError::at(problem.pointer, problem.message))
                .collect(),
        ))
    }
}

fn fields(body: &FrameworkBody) -> FrameworkFields<'_> {
    FrameworkFields {
        name: body.name.trim(),
        description: body.description.as_deref().map(str::trim),
        controls: &body.controls,
    }
}

/// A taken name is a 409 pointing at `/name`.
fn name_conflict(error: sqlx::Error) -> ApiError {
    match &error {
        sqlx::Error::Database(db)
            if db.constraint() == Some("custom_frameworks_tenant_id_name_key") =>
        {
            ApiError::ConflictAt {
                pointer: "/name".into(),
                detail: "Another custom framework has this name.".into(),
            }
        }
        _ => error.into(),
    }
}

/// Create a custom framework (premium tier and above; write scope).
#[utoipa::path(post, path = "/v1/frameworks", tag = "compliance", security(("api_key" = [])),
    request_body = FrameworkBody,
    responses(
        (status = 201, description = "Created; `Location` names it", body = FrameworkView),
        (status = 403, description = "The key lacks the write scope, or the tier is below premium (`tier-required`)", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken, or the organization has 20 custom frameworks", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid definition, with pointers", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    RequireTier { context, .. }: RequireTier<Premium>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ApiJson(body): ApiJson<FrameworkBody>,
) -> Result<Response, ApiError> {
    context.require(Scope::Write)?;
    validate(&body)?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    if frameworks::lock_and_count(&mut tx).await? >= MAX_FRAMEWORKS_PER_TENANT {
        return Err(ApiError::Conflict(format!(
            "An organization may have at most {MAX_FRAMEWORKS_PER_TENANT} custom frameworks; delete one first."
        )));
    }
    let record = frameworks::insert(&mut tx, FrameworkId::new(), &fields(&body))
        .await
        .map_err(name_conflict)?;
    let id = record.framework_id().to_string();
    audit::record(
        &mut tx,
        AuditEntry {
            actor: &context.actor(),
            action: "framework.created",
            target: Some(&id),
            details: json!({ "name": record.name, "controls": record.controls.0.len() }),
            request_id: Some(&request_id),
        },
    )
    .await?;
    queue_posture_refresh(&mut tx).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/frameworks/{id}"))],
        Json(FrameworkView::from(record)),
    )
        .into_response())
}

/// List the organization's custom frameworks, oldest first (at most 20).
#[utoipa::path(get, path = "/v1/frameworks", tag = "compliance", security(("api_key" = [])),
    responses((status = 200, description = "Custom frameworks", body = FrameworkList)))]
pub async fn list(
    State(state): State<AppState>,
    context: TenantContext,
) -> Result<Json<FrameworkList>, ApiError> {
    context.require(Scope::Read)?;
    let records = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        frameworks::all(&mut tx).await?
    })?;
    Ok(Json(FrameworkList {
        data: records.into_iter().map(FrameworkView::from).collect(),
    }))
}

/// One custom framework.
#[utoipa::path(get, path = "/v1/frameworks/{id}", tag = "compliance", security(("api_key" = [])),
    params(("id" = String, Path, description = "Framework id, `cfw_…`")),
    responses(
        (status = 200, description = "The framework", body = FrameworkView),
        (status = 404, description = "No such framework in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
    Path(id): Path<String>,
) -> Result<Json<FrameworkView>, ApiError> {
    context.require(Scope::Read)?;
    let id = FrameworkId::parse(&id).ok_or(ApiError::NotFound)?;
    let record = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        frameworks::get(&mut tx, id).await?
    })?;
    Ok(Json(record.ok_or(ApiError::NotFound)?.into()))
}

/// Replace a custom framework's definition (premium tier and above; write scope).
#[utoipa::path(put, path = "/v1/frameworks/{id}", tag = "compliance", security(("api_key" = [])),
    params(("id" = String, Path, description = "Framework id, `cfw_…`")),
    request_body = FrameworkBody,
    responses(
        (status = 200, description = "Replaced; the revision increased", body = FrameworkView),
        (status = 403, description = "The key lacks the write scope, or the tier is below premium", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such framework in this organization", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid definition, with pointers", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn replace(
    State(state): State<AppState>,
    RequireTier { context, .. }: RequireTier<Premium>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FrameworkBody>,
) -> Result<Json<FrameworkView>, ApiError> {
    context.require(Scope::Write)?;
    let id = FrameworkId::parse(&id).ok_or(ApiError::NotFound)?;
    validate(&body)?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let record = frameworks::replace(&mut tx, id, &fields(&body))
        .await
        .map_err(name_conflict)?
        .ok_or(ApiError::NotFound)?;
    audit::record(
        &mut tx,
        AuditEntry {
            actor: &context.actor(),
            action: "framework.replaced",
            target: Some(&id.to_string()),
            details: json!({ "name": record.name, "revision": record.revision, "controls": record.controls.0.len() }),
            request_id: Some(&request_id),
        },
    )
    .await?;
    queue_posture_refresh(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(record.into()))
}

/// Delete a custom framework (write scope; any tier).
#[utoipa::path(delete, path = "/v1/frameworks/{id}", tag = "compliance", security(("api_key" = [])),
    params(("id" = String, Path, description = "Framework id, `cfw_…`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such framework in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    context.require(Scope::Write)?;
    let id = FrameworkId::parse(&id).ok_or(ApiError::NotFound)?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    if !frameworks::delete(&mut tx, id).await? {
        return Err(ApiError::NotFound);
    }
    audit::record(
        &mut tx,
        AuditEntry {
            actor: &context.actor(),
            action: "framework.deleted",
            target: Some(&id.to_string()),
            details: json!({}),
            request_id: Some(&request_id),
        },
    )
    .await?;
    queue_posture_refresh(&mut tx).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
