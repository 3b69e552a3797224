//! `/v1/findings`: the de-duplicated findings, their history, and triage.

use super::error::{ApiError, FieldError};
use super::extract::{ApiJson, ApiQuery};
use super::finding_json;
use super::pagination::{Cursor, PageQuery};
use super::timestamp;
use crate::auth::TenantContext;
use crate::state::AppState;
use crate::store::finding_queries::{self, FindingEvent, FindingFilter, FindingRecord, Triage};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use posture_domain::finding::Severity;
use posture_domain::ids::{AssetId, FindingId, ScanId};
use posture_domain::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Most findings one bulk triage may change.
pub const MAX_TRIAGE_BATCH: usize = 1_000;

const STATUSES: [&str; 5] = [
    "open",
    "resolved",
    "reopened",
    "false_positive",
    "accepted_risk",
];

/// A finding.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingView {
    #[schema(value_type = String, example = "fnd_0Xq3…")]
    pub id: FindingId,
    #[schema(value_type = String)]
    pub asset_id: AssetId,
    /// Versioned de-duplication key (see docs/fingerprints.md).
    pub fingerprint: String,
    /// The tool that first reported it.
    pub tool_name: String,
    pub rule_id: String,
    pub title: String,
    pub description: Option<String>,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    pub cwe_ids: Vec<i32>,
    /// CVE, GHSA and other advisory ids.
    pub vulnerability_ids: Vec<String>,
    pub location: Option<LocationView>,
    pub package: Option<PackageView>,
    /// `open`, `resolved`, `reopened`, `false_positive` or `accepted_risk`.
    pub status: String,
    pub status_reason: Option<String>,
    /// For accepted risk: when it lapses and the finding reopens.
    #[serde(serialize_with = "timestamp::optional")]
    pub accepted_until: Option<DateTime<Utc>>,
    #[serde(serialize_with = "timestamp::serialize")]
    pub first_seen_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp::serialize")]
    pub last_seen_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp::optional")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// First seen + the tenant's SLA days for the severity; none for info.
    #[serde(serialize_with = "timestamp::optional")]
    pub sla_due_at: Option<DateTime<Utc>>,
    /// Still live (open or reopened) past its due date.
    pub sla_breached: bool,
    #[schema(value_type = Option<String>)]
    pub last_scan_id: Option<ScanId>,
}

/// Where in the code.
#[derive(Debug, Serialize, ToSchema)]
pub struct LocationView {
    pub uri: String,
    pub line: Option<i32>,
}

/// Which dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct PackageView {
    pub purl: Option<String>,
    pub name: String,
    pub version: Option<String>,
}

/// One entry of a finding's history.
#[derive(Serialize, ToSchema)]
pub struct FindingEventView {
    pub occurred_at: DateTime<Utc>,
    /// `created`, `reopened`, `resolved`, `severity_changed`, `triaged` or `risk_expired`.
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    #[schema(value_type = Option<String>)]
    pub scan_id: Option<ScanId>,
    /// `scan`, `key:key_…` or `operator`.
    pub actor: String,
    pub reason: Option<String>,
}

/// A finding with its history.
#[derive(Serialize, ToSchema)]
pub struct FindingDetail {
    #[serde(flatten)]
    pub finding: FindingView,
    pub history: Vec<FindingEventView>,
}

/// Whether a finding in `status`, due at `due`, is still live (open or
/// reopened) past its due date at `now`.
pub(super) fn is_sla_breached(
    status: &str,
    due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    matches!(status, "open" | "reopened") && due.is_some_and(|due| due < now)
}

impl From<FindingRecord> for FindingView {
    fn from(record: FindingRecord) -> Self {
        FindingView::from_record(record, Utc::now())
    }
}

impl FindingView {
    /// The view of `record`, its SLA breached or not at `now`.
    pub fn from_record(record: FindingRecord, now: DateTime<Utc>) -> Self {
        let (id, asset_id, last_scan_id) = finding_queries::typed_ids(&record);
        let sla_breached = is_sla_breached(&record.status, record.sla_due_at, now);
        FindingView {
            id,
            asset_id,
            fingerprint: record.fingerprint,
            tool_name: record.tool_name,
            rule_id: record.rule_id,
            title: record.title,
            description: record.description,
            severity: record.severity,
            cwe_ids: record.cwe_ids,
            vulnerability_ids: record.vulnerability_ids,
            location: record.location_uri.map(|uri| LocationView {
                uri,
                line: record.location_line,
            }),
            package: record.package_name.map(|name| PackageView {
                purl: record.package_purl,
                name,
                version: record.package_version,
            }),
            sla_breached,
            status: record.status,
            status_reason: record.status_reason,
            accepted_until: record.accepted_until,
            first_seen_at: record.first_seen_at,
            last_seen_at: record.last_seen_at,
            resolved_at: record.resolved_at,
            sla_due_at: record.sla_due_at,
            last_scan_id,
        }
    }
}

impl From<FindingEvent> for FindingEventView {
    fn from(event: FindingEvent) -> Self {
        FindingEventView {
            occurred_at: event.occurred_at,
            kind: event.kind,
            from_status: event.from_status,
            to_status: event.to_status,
            scan_id: event.scan_id.map(ScanId::from_uuid),
            actor: event.actor,
            reason: event.reason,
        }
    }
}

/// Filters of `GET /v1/findings`. Lists are comma-separated.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListFindingsQuery {
    /// e.g. `high,critical`.
    severity: Option<String>,
    /// e.g. `open,reopened`.
    status: Option<String>,
    /// An asset id (`ast_…`).
    asset: Option<String>,
    /// A tool name.
    tool: Option<String>,
    /// A CWE id, e.g. `79` or `CWE-79`.
    cwe: Option<String>,
    /// A vulnerability id, e.g. `CVE-2021-44228`.
    cve: Option<String>,
    /// Text in the title, rule id or location.
    q: Option<String>,
    /// Items per page, 1–100 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn parse_filter(query: &ListFindingsQuery) -> Result<FindingFilter, ApiError> {
    let mut errors = Vec::new();
    let list = |text: &Option<String>| -> Vec<String> {
        text.as_deref()
            .map(|t| {
                t.split(',')
                    .map(|p| p.trim().to_ascii_lowercase())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let severities = list(&query.severity);
    if let Some(bad) = severities.iter().find(|s| s.parse::<Severity>().is_err()) {
        errors.push(FieldError::parameter(
            "severity",
            format!("unknown severity {bad:?}"),
        ));
    }
    let statuses = list(&query.status);
    if let Some(bad) = statuses.iter().find(|s| !STATUSES.contains(&s.as_str())) {
        errors.push(FieldError::parameter(
            "status",
            format!("unknown status {bad:?}"),
        ));
    }
    let asset_id = query.asset.as_deref().and_then(|text| {
        let parsed = AssetId::parse(text);
        if parsed.is_none() {
            errors.push(FieldError::parameter("asset", "is not an asset id (ast_…)"));
        }
        parsed
    });
    let cwe_id = query.cwe.as_deref().and_then(|text| {
        let digits = text
            .trim()
            .trim_start_matches("CWE-")
            .trim_start_matches("cwe-");
        let parsed = digits.parse::<i32>().ok().filter(|id| *id > 0);
        if parsed.is_none() {
            errors.push(FieldError::parameter(
                "cwe",
                "must be a CWE number, e.g. 79 or CWE-79",
            ));
        }
        parsed
    });
    let short = |name: &str, value: &Option<String>, errors: &mut Vec<FieldError>| {
        let value = value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        if value.as_ref().is_some_and(|v| v.chars().count() > 200) {
            errors.push(FieldError::parameter(
                name,
                "must be at most 200 characters",
            ));
        }
        value
    };
    let tool_name = short("tool", &query.tool, &mut errors);
    let vulnerability_id = short("cve", &query.cve, &mut errors).map(|id| id.to_ascii_uppercase());
    let text = short("q", &query.q, &mut errors);
    if errors.is_empty() {
        Ok(FindingFilter {
            severities,
            statuses,
            asset_id,
            tool_name,
            cwe_id,
            vulnerability_id,
            text,
        })
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// List findings, newest first, with filters.
#[utoipa::path(get, path = "/v1/findings", tag = "findings", security(("api_key" = [])),
    params(ListFindingsQuery),
    responses(
        (status = 200, description = "A page of findings", body = FindingPage),
        (status = 422, description = "A bad filter", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    context: TenantContext,
    ApiQuery(query): ApiQuery<ListFindingsQuery>,
) -> Result<Response, ApiError> {
    context.require(Scope::Read)?;
    let filter = parse_filter(&query)?;
    let page = PageQuery::new(query.limit, query.cursor);
    let limit = page.limit()?;
    let after = after_finding(&page)?;
    let rows = if filter.is_empty() {
        finding_queries::page(&state.store, context.tenant_id, after, limit + 1).await?
    } else {
        crate::tenant_read!(state.store, context.tenant_id, |tx| {
            finding_queries::list(&mut tx, &filter, after, limit + 1).await?
        })?
    };
    // Written straight from the rows (`finding_json`): the same text as a
    // `Page<FindingView>` through serde, without copying every string first.
    let findings = rows.decode()?;
    let body = finding_json::write_page(&findings, limit as usize, Utc::now());
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// The finding a page of findings (newest first) continues after, from the cursor.
pub(super) fn after_finding(page: &PageQuery) -> Result<Option<FindingId>, ApiError> {
    page.cursor()?
        .map(|cursor| {
            cursor
                .parts::<1>()
                .and_then(|[id]| FindingId::parse(&id))
                .ok_or_else(|| {
                    ApiError::invalid_parameter("cursor", "is not a cursor this endpoint returned")
                })
        })
        .transpose()
}

/// The cursor of a page of findings that ends with `last`.
pub(super) fn finding_cursor(last: &finding_queries::FindingRecord) -> String {
    cursor_after(last.id)
}

/// The cursor of a page of findings that ends with the finding `id`.
pub(super) fn cursor_after(id: uuid::Uuid) -> String {
    Cursor::encode(&[&FindingId::from_uuid(id).to_string()])
}

/// A page of findings (for the OpenAPI document).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FindingPage {
    data: Vec<FindingView>,
    next_cursor: Option<String>,
}

/// One finding with its full history.
#[utoipa::path(get, path = "/v1/findings/{id}", tag = "findings", security(("api_key" = [])),
    params(("id" = String, Path, description = "Finding id, `fnd_…`")),
    responses(
        (status = 200, description = "The finding", body = FindingDetail),
        (status = 404, description = "No such finding in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
    Path(id): Path<String>,
) -> Result<Json<FindingDetail>, ApiError> {
    context.require(Scope::Read)?;
    let finding_id = FindingId::parse(&id).ok_or(ApiError::NotFound)?;
    let found = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        let record = finding_queries::get(&mut tx, finding_id).await?;
        let history = match record {
            Some(_) => finding_queries::history(&mut tx, finding_id).await?,
            None => Vec::new(),
        };
        record.map(|record| (record, history))
    })?;
    let (record, history) = found.ok_or(ApiError::NotFound)?;
    Ok(Json(FindingDetail {
        finding: record.into(),
        history: history.into_iter().map(FindingEventView::from).collect(),
    }))
}

/// A triage decision.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriageRequest {
    /// `false_positive`, `accepted_risk`, or `open` to reopen.
    pub status: String,
    /// Why (kept in the history); required for false_positive and accepted_risk.
    pub reason: Option<String>,
    /// Required for accepted_risk: when the acceptance lapses and the finding reopens.
    pub accepted_until: Option<DateTime<Utc>>,
}

/// Bulk triage: the same decision for many findings.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkTriageRequest {
    /// Up to 1,000 finding ids.
    #[schema(value_type = Vec<String>)]
    pub ids: Vec<String>,
    /// As in [`TriageRequest`].
    pub status: String,
    pub reason: Option<String>,
    pub accepted_until: Option<DateTime<Utc>>,
}

/// Result of a bulk triage.
#[derive(Serialize, ToSchema)]
pub struct BulkTriageResult {
    /// How many findings changed.
    pub updated: usize,
}

fn parse_triage(
    request: TriageRequest,
    actor: String,
    pointer_prefix: &str,
) -> Result<Triage, ApiError> {
    let mut errors = Vec::new();
    let at = |field: &str| format!("{pointer_prefix}/{field}");
    let status = match request.status.as_str() {
        "false_positive" => "false_positive",
        "accepted_risk" => "accepted_risk",
        "open" => "open",
        _ => {
            errors.push(FieldError::at(
                at("status"),
                "must be false_positive, accepted_risk or open",
            ));
            "open"
        }
    };
    let reason = request
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 2_000) {
        errors.push(FieldError::at(
            at("reason"),
            "must be at most 2,000 characters",
        ));
    }
    if status != "open" && reason.is_none() {
        errors.push(FieldError::at(
            at("reason"),
            "is required for this decision",
        ));
    }
    match (status, request.accepted_until) {
        ("accepted_risk", None) => errors.push(FieldError::at(
            at("accepted_until"),
            "is required for accepted_risk",
        )),
        ("accepted_risk", Some(until)) if until <= Utc::now() => errors.push(FieldError::at(
            at("accepted_until"),
            "must be in the future",
        )),
        ("accepted_risk", _) => {}
        (_, Some(_)) => errors.push(FieldError::at(
            at("accepted_until"),
            "is only for accepted_risk",
        )),
        _ => {}
    }
    if errors.is_empty() {
        Ok(Triage {
            status,
            reason,
            accepted_until: request.accepted_until,
            actor,
        })
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Triage one finding: mark it a false positive, accept its risk until a date,
/// or reopen it. Decisions survive rescans and are recorded in the history.
#[utoipa::path(patch, path = "/v1/findings/{id}", tag = "findings", security(("api_key" = [])),
    params(("id" = String, Path, description = "Finding id, `fnd_…`")),
    request_body = TriageRequest,
    responses(
        (status = 200, description = "The finding after the decision", body = FindingDetail),
        (status = 404, description = "No such finding in this organization", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid decision", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn triage(
    State(state): State<AppState>,
    context: TenantContext,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<TriageRequest>,
) -> Result<Json<FindingDetail>, ApiError> {
    context.require(Scope::Write)?;
    let finding_id = FindingId::parse(&id).ok_or(ApiError::NotFound)?;
    let decision = parse_triage(request, context.actor(), "")?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let changed = finding_queries::triage(&mut tx, &[finding_id], &decision).await?;
    if changed.is_empty() {
        return Err(ApiError::NotFound);
    }
    let record = finding_queries::get(&mut tx, finding_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let history = finding_queries::history(&mut tx, finding_id).await?;
    crate::jobs::queue::queue_posture_refresh(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(FindingDetail {
        finding: record.into(),
        history: history.into_iter().map(FindingEventView::from).collect(),
    }))
}

/// Triage many findings at once (ids of other organizations are ignored).
#[utoipa::path(post, path = "/v1/findings/triage", tag = "findings", security(("api_key" = [])),
    request_body = BulkTriageRequest,
    responses(
        (status = 200, description = "How many findings changed", body = BulkTriageResult),
        (status = 422, description = "Invalid decision or ids", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn bulk_triage(
    State(state): State<AppState>,
    context: TenantContext,
    ApiJson(request): ApiJson<BulkTriageRequest>,
) -> Result<Json<BulkTriageResult>, ApiError> {
    context.require(Scope::Write)?;
    if request.ids.is_empty() || request.ids.len() > MAX_TRIAGE_BATCH {
        return Err(ApiError::invalid(
            "/ids",
            format!("give 1 to {MAX_TRIAGE_BATCH} finding ids"),
        ));
    }
    let mut ids = Vec::with_capacity(request.ids.len());
    for (index, text) in request.ids.iter().enumerate() {
        ids.push(
            FindingId::parse(text).ok_or_else(|| {
                ApiError::invalid(&format!("/ids/{index}"), "is not a finding id")
            })?,
        );
    }
    let decision = TriageRequest {
        status: request.status,
        reason: request.reason,
        accepted_until: request.accepted_until,
    };
    let decision = parse_triage(decision, context.actor(), "")?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let changed = finding_queries::triage(&mut tx, &ids, &decision).await?;
    if !changed.is_empty() {
        crate::jobs::queue::queue_posture_refresh(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(Json(BulkTriageResult {
        updated: changed.len(),
    }))
}
