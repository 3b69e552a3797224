//! Compliance: per-framework status (`GET /v1/compliance`), a framework's
//! controls (`GET /v1/compliance/{framework}`), and the drill-down from a
//! control to the findings that fail it
//! (`GET /v1/compliance/{framework}/controls/{control}`).
//!
//! The first two read the precomputed view (see `summary::refresh`); the
//! drill-down queries the live findings through the control's mapping.

use super::error::ApiError;
use super::extract::ApiQuery;
use super::findings::{after_finding, finding_cursor, FindingView};
use super::pagination::{Page, PageQuery};
use crate::auth::TenantContext;
use crate::cache::http::{cached_json, respond, IfNoneMatch};
use crate::cache::views::Generation;
use crate::state::AppState;
use crate::store::finding_queries::{self, ControlFilter};
use crate::store::{frameworks, posture as posture_store, TenantTx};
use crate::summary::refresh;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use posture_domain::compliance::{
    self, ComplianceResult, Control, ControlStatus, Framework, FrameworkResult,
};
use posture_domain::ids::FrameworkId;
use posture_domain::{Scope, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Compliance across frameworks.
#[derive(Serialize, ToSchema)]
pub struct ComplianceOverview {
    /// When the view was computed.
    pub computed_at: DateTime<Utc>,
    /// Controls passed / (passed + failed) over the built-in frameworks, in %.
    pub compliance_percent: Option<f64>,
    /// Open findings no built-in control maps (unknown CWE and rule).
    pub unmapped_findings: u64,
    pub frameworks: Vec<FrameworkSummary>,
}

/// One framework's counts.
#[derive(Serialize, ToSchema)]
pub struct FrameworkSummary {
    /// `soc2`, `iso27001`, `nist-800-53`, `pci-dss`, `cis-v8`, or a custom `cfw_…` id.
    pub id: String,
    pub name: String,
    pub version: String,
    pub custom: bool,
    pub passed: u32,
    pub failed: u32,
    pub not_assessed: u32,
    /// passed / (passed + failed) × 100, one decimal; null when nothing was assessed.
    pub percent: Option<f64>,
}

impl From<&FrameworkResult> for FrameworkSummary {
    fn from(result: &FrameworkResult) -> Self {
        FrameworkSummary {
            id: result.id.clone(),
            name: result.name.clone(),
            version: result.version.clone(),
            custom: result.custom,
            passed: result.passed,
            failed: result.failed,
            not_assessed: result.not_assessed,
            percent: result.percent,
        }
    }
}

/// A framework with every control's status.
#[derive(Serialize, ToSchema)]
pub struct FrameworkDetail {
    #[serde(flatten)]
    pub framework: FrameworkSummary,
    pub computed_at: DateTime<Utc>,
    pub controls: Vec<ControlView>,
}

/// One control's status.
#[derive(Serialize, ToSchema)]
pub struct ControlView {
    pub id: String,
    pub title: String,
    /// `passed`, `failed` or `not_assessed`.
    #[schema(value_type = String)]
    pub status: ControlStatus,
    /// Open findings that map to it.
    pub failing_findings: u64,
}

/// A control, what maps to it, and one page of the findings that fail it.
#[derive(Serialize, ToSchema)]
pub struct ControlDetail {
    pub framework: FrameworkSummary,
    pub control: ControlView,
    pub mapping: MappingView,
    /// Live findings that fail the control, newest first.
    pub findings: Page<FindingView>,
}

/// What makes a finding fail the control.
#[derive(Serialize, ToSchema)]
pub struct MappingView {
    /// Weakness classes the control was mapped from (built-in frameworks; see docs/compliance.md).
    pub classes: Vec<String>,
    pub cwes: Vec<u32>,
    /// Rule ids, exact or `prefix*`.
    pub rules: Vec<String>,
    /// Whether dependency (package) findings fail it.
    pub dependencies: bool,
    /// Asset kinds it applies to (empty: any); it is assessed once one of them was scanned.
    pub asset_kinds: Vec<String>,
}

impl From<&Control> for MappingView {
    fn from(control: &Control) -> Self {
        MappingView {
            classes: control.classes.clone(),
            cwes: control.matcher.cwes.iter().copied().collect(),
            rules: control
                .matcher
                .rules
                .iter()
                .map(ToString::to_string)
                .collect(),
            dependencies: control.matcher.dependencies,
            asset_kinds: control
                .asset_kinds
                .iter()
                .map(|kind| kind.as_str().to_owned())
                .collect(),
        }
    }
}

/// The stored compliance view; computed now if the tenant has none yet.
async fn stored_view(
    state: &AppState,
    tenant_id: TenantId,
) -> Result<(DateTime<Utc>, ComplianceResult), ApiError> {
    let read = || async {
        crate::tenant_read!(state.store, tenant_id, |tx| {
            posture_store::stored_compliance(&mut tx).await?
        })
    };
    let stored = match read().await? {
        Some(stored) => stored,
        None => {
            refresh::refresh(&state.store, tenant_id, None, Some(&state.views)).await?;
            read().await?.ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!(
                    "compliance view missing right after it was stored"
                ))
            })?
        }
    };
    let result = serde_json::from_value(stored.1).map_err(|error| {
        ApiError::Internal(anyhow::Error::new(error).context("stored compliance"))
    })?;
    Ok((stored.0, result))
}

/// Compliance per framework: controls passed, failed and not assessed, and the
/// %. Cached like `/v1/posture` (`ETag`, `If-None-Match`).
#[utoipa::path(get, path = "/v1/compliance", tag = "compliance", security(("api_key" = [])),
    responses(
        (status = 200, description = "Every framework's status", body = ComplianceOverview),
        (status = 304, description = "Not modified (`If-None-Match` named the current `ETag`)"),
    ))]
pub async fn overview(
    State(state): State<AppState>,
    context: TenantContext,
    IfNoneMatch(headers): IfNoneMatch,
) -> Result<Response, ApiError> {
    context.require(Scope::Read)?;
    let view = cached_json(
        &state,
        context.tenant_id,
        Generation::Posture,
        "compliance",
        |state, tenant_id| async move { build_overview(&state, tenant_id).await },
    )
    .await?;
    Ok(respond(
        &headers,
        &view,
        state.config.http_cache_max_age_secs,
    ))
}

async fn build_overview(
    state: &AppState,
    tenant_id: TenantId,
) -> Result<ComplianceOverview, ApiError> {
    let (computed_at, result) = stored_view(state, tenant_id).await?;
    Ok(ComplianceOverview {
        computed_at,
        compliance_percent: result.builtin_percent(),
        unmapped_findings: result.unmapped_findings,
        frameworks: result
            .frameworks
            .iter()
            .map(FrameworkSummary::from)
            .collect(),
    })
}

/// A framework as this tenant sees it: built in, or one of its own (`cfw_…`);
/// 404 for anything else, including another tenant's framework.
async fn find_framework(tx: &mut TenantTx, id: &str) -> Result<Framework, ApiError> {
    if let Some(framework) = compliance::builtin().framework(id) {
        return Ok(framework.clone());
    }
    let id = FrameworkId::parse(id).ok_or(ApiError::NotFound)?;
    Ok(frameworks::get(tx, id)
        .await?
        .ok_or(ApiError::NotFound)?
        .to_framework())
}

/// Query of `GET /v1/compliance/{framework}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FrameworkQuery {
    /// Only controls with this status: `passed`, `failed` or `not_assessed`.
    pub status: Option<String>,
}

/// A framework's controls with their status.
#[utoipa::path(get, path = "/v1/compliance/{framework}", tag = "compliance", security(("api_key" = [])),
    params(("framework" = String, Path, description = "`soc2`, `iso27001`, `nist-800-53`, `pci-dss`, `cis-v8` or a custom `cfw_…` id"), FrameworkQuery),
    responses(
        (status = 200, description = "The framework's controls", body = FrameworkDetail),
        (status = 404, description = "No such framework", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown status filter", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn framework(
    State(state): State<AppState>,
    context: TenantContext,
    Path(framework_id): Path<String>,
    ApiQuery(query): ApiQuery<FrameworkQuery>,
) -> Result<Json<FrameworkDetail>, ApiError> {
    context.require(Scope::Read)?;
    let status_filter = query
        .status
        .as_deref()
        .map(|text| {
            serde_json::from_value::<ControlStatus>(serde_json::Value::from(text)).map_err(|_| {
                ApiError::invalid_parameter("status", "must be passed, failed or not_assessed")
            })
        })
        .transpose()?;
    let (computed_at, result) = framework_result(&state, context.tenant_id, &framework_id).await?;
    Ok(Json(FrameworkDetail {
        framework: FrameworkSummary::from(&result),
        computed_at,
        controls: result
            .controls
            .into_iter()
            .filter(|control| status_filter.is_none_or(|status| control.status == status))
            .map(|control| ControlView {
                id: control.id,
                title: control.title,
                status: control.status,
                failing_findings: control.failing_findings,
            })
            .collect(),
    }))
}

/// One framework's stored result. A custom framework created or changed since
/// the view was computed is evaluated now (the background refresh catches up
/// within moments).
async fn framework_result(
    state: &AppState,
    tenant_id: TenantId,
    framework_id: &str,
) -> Result<(DateTime<Utc>, FrameworkResult), ApiError> {
    let is_builtin = compliance::builtin().framework(framework_id).is_some();
    let custom = if is_builtin {
        None
    } else {
        let id = framework_id.to_owned();
        let framework = crate::tenant_read!(state.store, tenant_id, |tx| {
            match FrameworkId::parse(&id) {
                Some(parsed) => frameworks::get(&mut tx, parsed).await?,
                None => None,
            }
        })?;
        Some(framework.ok_or(ApiError::NotFound)?)
    };
    let (computed_at, view) = stored_view(state, tenant_id).await?;
    let stored = view.framework(framework_id);
    match (stored, custom) {
        (Some(result), None) => Ok((computed_at, result.clone())),
        // The stored result is of the framework's current revision.
        (Some(result), Some(record)) if result.version == record.to_framework().version => {
            Ok((computed_at, result.clone()))
        }
        (_, Some(record)) => {
            let framework = record.to_framework();
            let (at, groups, kinds) = crate::tenant_read!(state.store, tenant_id, |tx| {
                (
                    posture_store::transaction_time(&mut tx).await?,
                    posture_store::finding_groups(&mut tx).await?,
                    posture_store::scanned_asset_kinds(&mut tx).await?,
                )
            })?;
            let mut evaluated = compliance::evaluate(&[&framework], &groups, &kinds);
            Ok((at, evaluated.frameworks.remove(0)))
        }
        (None, None) => Err(ApiError::Internal(anyhow::anyhow!(
            "built-in framework {framework_id} missing from the stored view"
        ))),
    }
}

/// Query of the drill-down.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ControlQuery {
    /// Findings per page, 1–100 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A control with the findings that fail it: from requirement to evidence.
#[utoipa::path(get, path = "/v1/compliance/{framework}/controls/{control}", tag = "compliance", security(("api_key" = [])),
    params(
        ("framework" = String, Path, description = "Framework id"),
        ("control" = String, Path, description = "Control id, e.g. `CC7.1`, `A.8.28`, `SI-10`"),
        ControlQuery,
    ),
    responses(
        (status = 200, description = "The control and a page of its failing findings", body = ControlDetail),
        (status = 404, description = "No such framework or control", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn control(
    State(state): State<AppState>,
    context: TenantContext,
    Path((framework_id, control_id)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<ControlQuery>,
) -> Result<Json<ControlDetail>, ApiError> {
    context.require(Scope::Read)?;
    let page = PageQuery::new(query.limit, query.cursor);
    let limit = page.limit()?;
    let after = after_finding(&page)?;
    let framework_key = framework_id.clone();
    let control_key = control_id.clone();
    let (framework, control, records, failing_count, scanned_kinds) =
        crate::tenant_read!(state.store, context.tenant_id, |tx| {
            let framework = match find_framework(&mut tx, &framework_key).await {
                Ok(framework) => Some(framework),
                Err(ApiError::NotFound) => None,
                Err(other) => return Ok(Err(other)),
            };
            match framework.and_then(|f| f.control(&control_key).cloned().map(|c| (f, c))) {
                None => Err(ApiError::NotFound),
                Some((framework, control)) => {
                    let filter = ControlFilter {
                        cwes: control
                            .matcher
                            .cwes
                            .iter()
                            .filter_map(|cwe| i32::try_from(*cwe).ok())
                            .collect(),
                        rule_likes: control
                            .matcher
                            .rules
                            .iter()
                            .map(|r| r.to_sql_like())
                            .collect(),
                        dependencies: control.matcher.dependencies,
                    };
                    let records =
                        finding_queries::failing_control(&mut tx, &filter, after, limit + 1)
                            .await?;
                    let count = finding_queries::count_failing_control(&mut tx, &filter).await?;
                    let kinds = posture_store::scanned_asset_kinds(&mut tx).await?;
                    Ok((framework, control, records, count, kinds))
                }
            }
        })??;
    let failing_findings = u64::try_from(failing_count).unwrap_or(0);
    let status = control.status(failing_findings, &scanned_kinds);
    let (_, stored) = framework_result(&state, context.tenant_id, &framework.id).await?;
    Ok(Json(ControlDetail {
        framework: FrameworkSummary::from(&stored),
        control: ControlView {
            id: control.id.clone(),
            title: control.title.clone(),
            status,
            failing_findings,
        },
        mapping: MappingView::from(&control),
        findings: Page::from_rows(records, limit, finding_cursor, FindingView::from),
    }))
}
