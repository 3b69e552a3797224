//! `GET /v1/usage`: the organization's consumption of its tier's limits.

use super::error::ApiError;
use crate::auth::TenantContext;
use crate::limits::Source;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use posture_domain::{Scope, Tier};
use serde::Serialize;
use utoipa::ToSchema;

/// The organization's usage of each limit, this request included.
#[derive(Serialize, ToSchema)]
pub struct Usage {
    #[schema(value_type = String, example = "basic")]
    pub tier: Tier,
    /// `redis` (shared by every server) or `local` (Redis is unavailable: this
    /// server's estimate, with the minute window unknown).
    pub source: &'static str,
    /// `minute`, `day` and `month`, in that order.
    pub policies: Vec<PolicyUsage>,
}

/// One limit's consumption.
#[derive(Serialize, ToSchema)]
pub struct PolicyUsage {
    /// `minute` (a sliding 60-second window), `day` or `month` (UTC calendar).
    pub name: &'static str,
    /// Null when the tier has no such limit (enterprise day and month).
    pub limit: Option<u64>,
    pub used: u64,
    /// Null when unlimited.
    pub remaining: Option<u64>,
    /// The window's length: 60, 86400, or the month's seconds.
    pub window_seconds: u64,
    /// When a request is next freed (minute; null if the window is empty) or
    /// the period ends (day, month).
    pub resets_at: Option<DateTime<Utc>>,
}

/// The organization's usage of its per-minute, daily and monthly limits.
/// Counting this request like any other.
#[utoipa::path(get, path = "/v1/usage", tag = "org", security(("api_key" = [])),
    responses(
        (status = 200, description = "Usage of each limit", body = Usage),
        (status = 429, description = "A limit is used up", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
) -> Result<Json<Usage>, ApiError> {
    context.require(Scope::Read)?;
    let (decision, source) = state
        .limiter
        .peek_tenant(context.tenant_id, context.tier)
        .await;
    let policies = decision
        .states
        .iter()
        .map(|policy| PolicyUsage {
            name: policy.name.as_str(),
            limit: policy.quota,
            used: policy.used,
            remaining: policy.remaining(),
            window_seconds: policy.window_secs,
            resets_at: (policy.reset_secs > 0).then(|| {
                decision.decided_at
                    + Duration::seconds(i64::try_from(policy.reset_secs).unwrap_or(0))
            }),
        })
        .collect();
    Ok(Json(Usage {
        tier: context.tier,
        source: match source {
            Source::Redis => "redis",
            Source::Local => "local",
        },
        policies,
    }))
}
