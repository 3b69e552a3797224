//! `GET /v1/org`: the caller's organization, cached under the tenant's account
//! generation (bumped by tier and status changes).

use super::error::ApiError;
use crate::auth::TenantContext;
use crate::cache::http::{cached_json, respond, IfNoneMatch};
use crate::cache::views::Generation;
use crate::state::AppState;
use crate::store::tenants;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use posture_domain::{Scope, TenantId, TenantStatus, Tier};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The caller's organization and what its tier allows.
#[derive(Serialize, ToSchema)]
pub struct Org {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    #[schema(value_type = String, example = "premium")]
    pub tier: Tier,
    #[schema(value_type = String, example = "active")]
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
    pub limits: Limits,
}

/// Request limits of the tier; `null` means unlimited.
#[derive(Serialize, ToSchema)]
pub struct Limits {
    pub requests_per_minute: u32,
    pub requests_per_day: Option<u32>,
    pub requests_per_month: Option<u32>,
    pub advanced_scans: bool,
}

/// The organization the API key belongs to. Cached (L1 → Redis → PostgreSQL)
/// until its tier or status changes; `ETag` and `If-None-Match` work as usual.
#[utoipa::path(get, path = "/v1/org", tag = "org", security(("api_key" = [])),
    responses(
        (status = 200, description = "The caller's organization", body = Org),
        (status = 304, description = "Not modified (`If-None-Match` named the current `ETag`)"),
        (status = 401, description = "Missing or invalid API key", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_org(
    State(state): State<AppState>,
    context: TenantContext,
    IfNoneMatch(headers): IfNoneMatch,
) -> Result<Response, ApiError> {
    context.require(Scope::Read)?;
    let view = cached_json(
        &state,
        context.tenant_id,
        Generation::Account,
        "org",
        |state, tenant_id| async move { build(&state, tenant_id).await },
    )
    .await?;
    Ok(respond(
        &headers,
        &view,
        state.config.http_cache_max_age_secs,
    ))
}

/// The organization from the database.
async fn build(state: &AppState, tenant_id: TenantId) -> Result<Org, ApiError> {
    let tenant = crate::tenant_read!(state.store, tenant_id, |tx| {
        tenants::current(&mut tx).await?
    })?
    // The key was verified moments ago; a missing tenant was deleted since.
    .ok_or(ApiError::NotFound)?;
    let limits = tenant.tier.limits();
    Ok(Org {
        id: tenant.id.as_uuid(),
        slug: tenant.slug,
        name: tenant.name,
        tier: tenant.tier,
        status: tenant.status,
        created_at: tenant.created_at,
        limits: Limits {
            requests_per_minute: limits.per_minute,
            requests_per_day: limits.per_day,
            requests_per_month: limits.per_month,
            advanced_scans: limits.advanced_scans,
        },
    })
}
