//! `/v1/assets`: create, list, show, change and delete the tenant's assets.
//!
//! Reading takes the read scope and changing the write scope; deleting takes
//! admin, since an asset's scans and findings are deleted with it.

use super::error::{ApiError, FieldError, Problem};
use super::extract::{ApiJson, ApiQuery};
use super::middleware::RequestId;
use super::pagination::{Cursor, Page, PageQuery};
use crate::auth::TenantContext;
use crate::state::AppState;
use crate::store::assets::{
    self, AssetChanges, AssetFilters, AssetPageCursor, AssetRecord, AssetWriteError, NewAsset,
};
use crate::store::audit::{self, AuditEntry};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use posture_domain::asset::{parse_tags, AssetKind, AssetName, Criticality};
use posture_domain::ids::AssetId;
use posture_domain::Scope;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// Request body of `POST /v1/assets`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAsset {
    #[schema(value_type = AssetKindName)]
    pub kind: String,
    /// Unique per kind within the organization; 1–500 characters, trimmed.
    #[schema(example = "github.com/acme/api")]
    pub name: String,
    /// Defaults to `medium`.
    #[schema(value_type = Option<CriticalityName>)]
    pub criticality: Option<String>,
    /// Up to 50 tags of 1–100 characters; trimmed, de-duplicated and sorted.
    #[schema(example = json!(["prod", "team-payments"]))]
    pub tags: Option<Vec<String>>,
}

/// Request body of `PATCH /v1/assets/{id}`: the members to change (at least one).
/// Absent members stay as they are; `null` is refused (send `"tags": []` to clear).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAsset {
    #[serde(default, deserialize_with = "non_null")]
    #[schema(value_type = String)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(value_type = CriticalityName)]
    pub criticality: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(value_type = Vec<String>)]
    pub tags: Option<Vec<String>>,
}

/// A present member must hold a value: `null` fails with a pointer to it.
fn non_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// An asset: something that gets scanned.
#[derive(Serialize, ToSchema)]
pub struct AssetView {
    /// `ast_` + 22 characters.
    #[schema(value_type = String, example = "ast_0rCkbHIsxV0nJdRh8lGEqp")]
    pub id: AssetId,
    #[schema(value_type = AssetKindName)]
    pub kind: AssetKind,
    #[schema(example = "github.com/acme/api")]
    pub name: String,
    #[schema(value_type = CriticalityName)]
    pub criticality: Criticality,
    #[schema(example = json!(["prod"]))]
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<AssetRecord> for AssetView {
    fn from(record: AssetRecord) -> Self {
        AssetView {
            id: record.id,
            kind: record.kind,
            name: record.name,
            criticality: record.criticality,
            tags: record.tags,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// A page of assets (for the OpenAPI document).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AssetPage {
    data: Vec<AssetView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// The filters of `GET /v1/assets` (besides `limit` and `cursor`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssetQuery {
    /// Only assets of this kind.
    #[param(value_type = Option<AssetKindName>)]
    kind: Option<String>,
    /// Only assets carrying this tag.
    tag: Option<String>,
}

/// OpenAPI schema of an asset kind, its values taken from [`AssetKind::ALL`].
pub struct AssetKindName;

impl PartialSchema for AssetKindName {
    fn schema() -> RefOr<Schema> {
        text_enum(AssetKind::ALL.iter().map(|kind| kind.as_str()))
    }
}

impl ToSchema for AssetKindName {
    fn name() -> Cow<'static, str> {
        "AssetKind".into()
    }
}

/// OpenAPI schema of a criticality, its values taken from [`Criticality::ALL`].
pub struct CriticalityName;

impl PartialSchema for CriticalityName {
    fn schema() -> RefOr<Schema> {
        text_enum(Criticality::ALL.iter().map(|value| value.as_str()))
    }
}

impl ToSchema for CriticalityName {
    fn name() -> Cow<'static, str> {
        "Criticality".into()
    }
}

fn text_enum(values: impl Iterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}

/// What the asset handlers return on failure: the API's errors, plus a name
/// collision, a 409 whose problem points at `/name`.
#[derive(Debug)]
pub enum AssetError {
    /// Any other refusal or failure.
    Api(ApiError),
    /// Another asset of the kind has the name (409, pointer `/name`).
    NameTaken,
}

impl From<ApiError> for AssetError {
    fn from(error: ApiError) -> Self {
        AssetError::Api(error)
    }
}

impl From<sqlx::Error> for AssetError {
    fn from(error: sqlx::Error) -> Self {
        AssetError::Api(error.into())
    }
}

impl From<AssetWriteError> for AssetError {
    fn from(error: AssetWriteError) -> Self {
        match error {
            AssetWriteError::NameTaken => AssetError::NameTaken,
            AssetWriteError::Database(error) => error.into(),
        }
    }
}

impl IntoResponse for AssetError {
    fn into_response(self) -> Response {
        match self {
            AssetError::Api(error) => error.into_response(),
            AssetError::NameTaken => {
                let status = StatusCode::CONFLICT;
                Problem {
                    errors: vec![FieldError::at(
                        "/name",
                        "another asset of this kind has this name",
                    )],
                    ..Problem::new(status, "conflict", "Conflict")
                        .with_detail("An asset of this kind with this name already exists.")
                }
                .into_response_with(status)
            }
        }
    }
}

/// Most tag errors listed in one response, so a huge array of bad tags gets a
/// small answer.
const MAX_TAG_ERRORS: usize = 10;

/// Collects every invalid member of a body, then refuses them together.
#[derive(Default)]
struct Checks(Vec<FieldError>);

impl Checks {
    fn check<T, E: ToString>(&mut self, pointer: &str, parsed: Result<T, E>) -> Option<T> {
        parsed
            .map_err(|error| self.0.push(FieldError::at(pointer, error.to_string())))
            .ok()
    }

    /// Normalized tags; a bad one is reported at `/tags/<index>`.
    fn tags(&mut self, tags: &[String]) -> Option<Vec<String>> {
        let bad: Vec<FieldError> = tags
            .iter()
            .enumerate()
            .filter(|(_, tag)| parse_tags(std::slice::from_ref(tag)).is_err())
            .take(MAX_TAG_ERRORS)
            .map(|(index, _)| {
                FieldError::at(
                    format!("/tags/{index}"),
                    "a tag must be 1 to 100 characters without control characters",
                )
            })
            .collect();
        if !bad.is_empty() {
            self.0.extend(bad);
            return None;
        }
        self.check(
            "/tags",
            parse_tags(tags).map_err(|_| "at most 50 distinct tags are allowed"),
        )
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// A create request that passed validation.
struct ValidAsset {
    kind: AssetKind,
    name: AssetName,
    criticality: Criticality,
    tags: Vec<String>,
}

fn validate_create(body: &CreateAsset) -> Result<ValidAsset, ApiError> {
    let mut checks = Checks::default();
    let kind = checks.check("/kind", body.kind.parse::<AssetKind>());
    let name = checks.check("/name", AssetName::parse(&body.name));
    let criticality = match &body.criticality {
        Some(text) => checks.check("/criticality", text.parse::<Criticality>()),
        None => Some(Criticality::Medium),
    };
    let tags = checks.tags(body.tags.as_deref().unwrap_or_default());
    // A member is `None` only when its error was recorded.
    match (kind, name, criticality, tags) {
        (Some(kind), Some(name), Some(criticality), Some(tags)) if checks.0.is_empty() => {
            Ok(ValidAsset {
                kind,
                name,
                criticality,
                tags,
            })
        }
        _ => Err(ApiError::Validation(checks.0)),
    }
}

fn validate_update(body: &UpdateAsset) -> Result<AssetChanges, ApiError> {
    if body.name.is_none() && body.criticality.is_none() && body.tags.is_none() {
        return Err(ApiError::invalid(
            "",
            "the patch changes nothing; send at least one of name, criticality, tags",
        ));
    }
    let mut checks = Checks::default();
    let changes = AssetChanges {
        name: body
            .name
            .as_deref()
            .and_then(|name| checks.check("/name", AssetName::parse(name))),
        criticality: body
            .criticality
            .as_deref()
            .and_then(|text| checks.check("/criticality", text.parse::<Criticality>())),
        tags: body.tags.as_deref().and_then(|tags| checks.tags(tags)),
    };
    checks.finish()?;
    Ok(changes)
}

fn location(id: AssetId) -> String {
    format!("/v1/assets/{id}")
}

/// Create an asset. Its name must be new among the organization's assets of its kind.
#[utoipa::path(post, path = "/v1/assets", tag = "assets", security(("api_key" = [])),
    request_body = CreateAsset,
    responses(
        (status = 201, description = "Created; `Location` names the asset", body = AssetView),
        (status = 403, description = "The key lacks the write scope", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "An asset of this kind has this name (pointer `/name`)", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, with pointers", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ApiJson(body): ApiJson<CreateAsset>,
) -> Result<Response, AssetError> {
    context.require(Scope::Write)?;
    let valid = validate_create(&body)?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let record = assets::insert(
        &mut tx,
        &NewAsset {
            kind: valid.kind,
            name: &valid.name,
            criticality: valid.criticality,
            tags: &valid.tags,
        },
    )
    .await?;
    audit::record(
        &mut tx,
        AuditEntry {
            actor: &context.actor(),
            action: "asset.created",
            target: Some(&record.id.to_string()),
            details: json!({
                "kind": record.kind,
                "name": record.name,
                "criticality": record.criticality,
                "tags": record.tags,
            }),
            request_id: Some(&request_id),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location(record.id))],
        Json(AssetView::from(record)),
    )
        .into_response())
}

/// List the organization's assets, newest first.
#[utoipa::path(get, path = "/v1/assets", tag = "assets", security(("api_key" = [])),
    params(PageQuery, AssetQuery),
    responses(
        (status = 200, description = "A page of assets", body = AssetPage),
        (status = 422, description = "Bad limit, cursor, kind or tag (the parameter is named)", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    context: TenantContext,
    ApiQuery(page): ApiQuery<PageQuery>,
    ApiQuery(query): ApiQuery<AssetQuery>,
) -> Result<Json<Page<AssetView>>, ApiError> {
    context.require(Scope::Read)?;
    let limit = page.limit()?;
    let after = page.cursor()?.map(decode_cursor).transpose()?;
    let filters = AssetFilters {
        kind: query
            .kind
            .as_deref()
            .map(|text| text.parse::<AssetKind>())
            .transpose()
            .map_err(|error| ApiError::invalid_parameter("kind", error))?,
        tag: query
            .tag
            .as_deref()
            .map(|tag| parse_tags(&[tag.to_owned()]))
            .transpose()
            .map_err(|_| {
                ApiError::invalid_parameter(
                    "tag",
                    "must be 1 to 100 characters without control characters",
                )
            })?
            .and_then(|tags| tags.into_iter().next()),
    };
    // One extra row tells whether another page exists.
    let records = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        assets::list(&mut tx, after.as_ref(), limit + 1, &filters).await?
    })?;
    Ok(Json(Page::from_rows(
        records,
        limit,
        |last| Cursor::encode_time_and_id(last.created_at, &last.id.to_string()),
        AssetView::from,
    )))
}

fn decode_cursor(cursor: Cursor) -> Result<AssetPageCursor, ApiError> {
    let (created_at, id) = cursor.time_and_id(AssetId::parse)?;
    Ok(AssetPageCursor { created_at, id })
}

/// Show one asset.
#[utoipa::path(get, path = "/v1/assets/{id}", tag = "assets", security(("api_key" = [])),
    params(("id" = String, Path, description = "Asset id, `ast_…`")),
    responses(
        (status = 200, description = "The asset", body = AssetView),
        (status = 404, description = "No such asset in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
    Path(id): Path<String>,
) -> Result<Json<AssetView>, ApiError> {
    context.require(Scope::Read)?;
    let id = AssetId::parse(&id).ok_or(ApiError::NotFound)?;
    let record = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        assets::get(&mut tx, id).await?
    })?
    .ok_or(ApiError::NotFound)?;
    Ok(Json(record.into()))
}

/// Change an asset's name, criticality or tags (merge semantics: members not
/// sent are kept; `tags` replaces the whole list).
#[utoipa::path(patch, path = "/v1/assets/{id}", tag = "assets", security(("api_key" = [])),
    params(("id" = String, Path, description = "Asset id, `ast_…`")),
    request_body(content = UpdateAsset, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The changed asset", body = AssetView),
        (status = 403, description = "The key lacks the write scope", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such asset in this organization", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The new name is taken within the kind (pointer `/name`)", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or no fields, with pointers", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateAsset>,
) -> Result<Json<AssetView>, AssetError> {
    context.require(Scope::Write)?;
    let id = AssetId::parse(&id).ok_or(ApiError::NotFound)?;
    let changes = validate_update(&body)?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let record = assets::update(&mut tx, id, &changes)
        .await?
        .ok_or(ApiError::NotFound)?;
    // Only the members sent, with their new (normalized) values.
    let mut changed = serde_json::Map::new();
    if changes.name.is_some() {
        changed.insert("name".into(), json!(record.name));
    }
    if changes.criticality.is_some() {
        changed.insert("criticality".into(), json!(record.criticality));
        // Criticality weighs the asset's findings in the score.
        crate::jobs::queue::queue_posture_refresh(&mut tx).await?;
    }
    if changes.tags.is_some() {
        changed.insert("tags".into(), json!(record.tags));
    }
    audit::record(
        &mut tx,
        AuditEntry {
            actor: &context.actor(),
            action: "asset.updated",
            target: Some(&record.id.to_string()),
            details: json!({ "kind": record.kind, "changes": changed }),
            request_id: Some(&request_id),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(record.into()))
}

/// Delete an asset with all its scans and findings (admin scope).
#[utoipa::path(delete, path = "/v1/assets/{id}", tag = "assets", security(("api_key" = [])),
    params(("id" = String, Path, description = "Asset id, `ast_…`")),
    responses(
        (status = 204, description = "Deleted, with its scans and findings"),
        (status = 403, description = "The key lacks the admin scope", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such asset in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    context.require(Scope::Admin)?;
    let id = AssetId::parse(&id).ok_or(ApiError::NotFound)?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    // Read first so the audit entry can say what was deleted.
    let record = assets::get(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    if !assets::delete(&mut tx, id).await? {
        // Deleted by a concurrent request since the read.
        return Err(ApiError::NotFound);
    }
    audit::record(
        &mut tx,
        AuditEntry {
            actor: &context.actor(),
            action: "asset.deleted",
            target: Some(&record.id.to_string()),
            details: json!({ "kind": record.kind, "name": record.name }),
            request_id: Some(&request_id),
        },
    )
    .await?;
    // Its findings went with it.
    crate::jobs::queue::queue_posture_refresh(&mut tx).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
