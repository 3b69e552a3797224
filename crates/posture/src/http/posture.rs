//! `GET /v1/posture` (the precomputed summary, compared with yesterday and 30
//! days ago) and `GET /v1/posture/history` (daily snapshots).

use super::error::ApiError;
use super::extract::ApiQuery;
use crate::auth::TenantContext;
use crate::cache::http::{cached_json, respond, IfNoneMatch};
use crate::cache::views::{CachedView, Generation};
use crate::state::AppState;
use crate::store::posture::{self as posture_store, Snapshot, StoredPosture};
use crate::summary::refresh;
use crate::summary::PostureSummary;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Days, NaiveDate, Utc};
use posture_domain::{Scope, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The posture summary with its changes over time.
#[derive(Serialize, ToSchema)]
pub struct Posture {
    #[serde(flatten)]
    pub summary: PostureSummary,
    /// When the summary was computed (it is recomputed in the background after
    /// every change to findings, and at least daily).
    pub computed_at: DateTime<Utc>,
    /// Compared with the last snapshot before today (UTC); null without one.
    pub change_since_yesterday: Option<Change>,
    /// Compared with the last snapshot from 30 or more days ago; null without one.
    pub change_since_30_days: Option<Change>,
}

/// The difference between now and an earlier daily snapshot.
#[derive(Serialize, ToSchema)]
pub struct Change {
    /// The snapshot's day.
    pub since: NaiveDate,
    pub score_before: u8,
    /// Now minus then (positive: better).
    pub score_delta: i32,
    pub open_before: i64,
    /// Now minus then (negative: better).
    pub open_delta: i64,
    pub compliance_percent_before: Option<f64>,
    /// Now minus then, percentage points; null unless both are known.
    pub compliance_percent_delta: Option<f64>,
}

/// The organization's posture: score with its working, counts, SLA breaches,
/// MTTR, compliance %, and how they moved. Cached (L1 → Redis → PostgreSQL);
/// `ETag` and `If-None-Match` work as usual.
#[utoipa::path(get, path = "/v1/posture", tag = "posture", security(("api_key" = [])),
    responses(
        (status = 200, description = "Posture", body = Posture),
        (status = 304, description = "Not modified (`If-None-Match` named the current `ETag`)"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
    IfNoneMatch(headers): IfNoneMatch,
) -> Result<Response, ApiError> {
    context.require(Scope::Read)?;
    let view = cached(&state, context.tenant_id).await?;
    Ok(respond(
        &headers,
        &view,
        state.config.http_cache_max_age_secs,
    ))
}

/// The tenant's posture body through the view cache (also used to warm it).
pub async fn cached(state: &AppState, tenant_id: TenantId) -> Result<Arc<CachedView>, ApiError> {
    cached_json(
        state,
        tenant_id,
        Generation::Posture,
        "posture",
        |state, tenant_id| async move { build(&state, tenant_id).await },
    )
    .await
}

/// The posture view from the database: the stored summary and the snapshots it
/// is compared with.
async fn build(state: &AppState, tenant_id: TenantId) -> Result<Posture, ApiError> {
    let stored = load_or_compute(state, tenant_id).await?;
    let summary: PostureSummary = serde_json::from_value(stored.posture)
        .map_err(|error| ApiError::Internal(anyhow::Error::new(error).context("stored posture")))?;
    let open_now: i64 = summary.open_by_severity.values().sum();
    let change = |snapshot: &Snapshot| Change {
        since: snapshot.day,
        score_before: u8::try_from(snapshot.score).unwrap_or(0),
        score_delta: i32::from(summary.score) - i32::from(snapshot.score),
        open_before: i64::from(snapshot.open_total),
        open_delta: open_now - i64::from(snapshot.open_total),
        compliance_percent_before: snapshot.compliance_percent,
        compliance_percent_delta: summary
            .compliance_percent
            .zip(snapshot.compliance_percent)
            .map(|(now, then)| ((now - then) * 10.0).round() / 10.0),
    };
    Ok(Posture {
        change_since_yesterday: stored.yesterday.as_ref().map(change),
        change_since_30_days: stored.month_ago.as_ref().map(change),
        computed_at: stored.computed_at,
        summary,
    })
}

/// The stored summary; a tenant that has none yet (new, or from before
/// summaries existed) gets one computed now.
async fn load_or_compute(state: &AppState, tenant_id: TenantId) -> Result<StoredPosture, ApiError> {
    let read = || async {
        crate::tenant_read!(state.store, tenant_id, |tx| {
            posture_store::stored(&mut tx).await?
        })
    };
    if let Some(stored) = read().await? {
        return Ok(stored);
    }
    refresh::refresh(&state.store, tenant_id, None, Some(&state.views)).await?;
    read().await?.ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "posture summary missing right after it was stored"
        ))
    })
}

/// Query of `GET /v1/posture/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Days back from today, 1–365 (default 90).
    pub days: Option<u32>,
}

/// Most days of history one request returns.
const MAX_HISTORY_DAYS: u32 = 365;

/// Daily posture snapshots.
#[derive(Serialize, ToSchema)]
pub struct PostureHistory {
    pub days: u32,
    /// Oldest first; a day with no snapshot (before the organization existed)
    /// is absent.
    pub snapshots: Vec<SnapshotView>,
}

/// One day's posture, as last computed that day.
#[derive(Serialize, ToSchema)]
pub struct SnapshotView {
    pub day: NaiveDate,
    pub score: u8,
    pub grade: String,
    pub open_total: i64,
    #[schema(value_type = Object)]
    pub open_by_severity: BTreeMap<String, i64>,
    pub sla_breaches: i64,
    pub compliance_percent: Option<f64>,
    /// Framework id → compliance % (null when nothing was assessed).
    #[schema(value_type = Object)]
    pub frameworks: BTreeMap<String, Option<f64>>,
}

impl From<Snapshot> for SnapshotView {
    fn from(snapshot: Snapshot) -> Self {
        SnapshotView {
            day: snapshot.day,
            score: u8::try_from(snapshot.score).unwrap_or(0),
            grade: snapshot.grade,
            open_total: i64::from(snapshot.open_total),
            open_by_severity: serde_json::from_value(snapshot.open_by_severity).unwrap_or_default(),
            sla_breaches: i64::from(snapshot.sla_breaches),
            compliance_percent: snapshot.compliance_percent,
            frameworks: serde_json::from_value(snapshot.frameworks).unwrap_or_default(),
        }
    }
}

/// Daily snapshots of score, counts and compliance % for trends.
#[utoipa::path(get, path = "/v1/posture/history", tag = "posture", security(("api_key" = [])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "Snapshots, oldest first", body = PostureHistory),
        (status = 422, description = "Invalid `days`", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(
    State(state): State<AppState>,
    context: TenantContext,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<PostureHistory>, ApiError> {
    context.require(Scope::Read)?;
    let days = query.days.unwrap_or(90);
    if !(1..=MAX_HISTORY_DAYS).contains(&days) {
        return Err(ApiError::invalid_parameter(
            "days",
            format!("must be 1 to {MAX_HISTORY_DAYS}"),
        ));
    }
    // Today counts as one of the days.
    let since = Utc::now().date_naive() - Days::new(u64::from(days - 1));
    let snapshots = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        posture_store::history(&mut tx, since).await?
    })?;
    Ok(Json(PostureHistory {
        days,
        snapshots: snapshots.into_iter().map(SnapshotView::from).collect(),
    }))
}
