//! `/v1/scans`: submit a scanner report (202, processed by a worker) and follow it.

use super::error::{ApiError, FieldError};
use super::extract::ApiQuery;
use super::pagination::{Cursor, Page, PageQuery};
use crate::auth::TenantContext;
use crate::ingest::{compress, format_name, parse_off_thread};
use crate::state::AppState;
use crate::store::assets::{self, AssetRecord};
use crate::store::scans::{self, JobState, NewScan, ScanCounts, ScanPageCursor, ScanRecord};
use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use posture_domain::asset::{AssetKind, AssetName};
use posture_domain::ids::{AssetId, ScanId};
use posture_domain::report::ReportFormat;
use posture_domain::Scope;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Query parameters of `POST /v1/scans`: which asset, which tool, what scope.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitScanQuery {
    /// The asset's id (`ast_…`); or give `asset_kind` and `asset_name`.
    asset: Option<String>,
    /// With `asset_name`: the asset is found, or created on first use.
    asset_kind: Option<String>,
    /// With `asset_kind`, e.g. `github.com/acme/api`.
    asset_name: Option<String>,
    /// The tool's name when the report does not carry one (native reports do; SARIF and CycloneDX usually do).
    tool: Option<String>,
    /// The tool's version, if the report does not say.
    tool_version: Option<String>,
    /// `full`: everything the tool found on the asset (findings it no longer reports are resolved);
    /// `partial` (default): only some of it (nothing is resolved).
    scope: Option<String>,
}

/// A submitted scan and its processing.
#[derive(Serialize, ToSchema)]
pub struct ScanView {
    #[schema(value_type = String, example = "scn_0Xq3…")]
    pub id: ScanId,
    #[schema(value_type = String, example = "ast_0Xq3…")]
    pub asset_id: AssetId,
    pub tool_name: Option<String>,
    pub tool_version: Option<String>,
    /// `sarif`, `cyclonedx` or `native`.
    pub format: String,
    /// `full` or `partial`.
    pub scope: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// Size of the submitted report.
    pub report_bytes: i64,
    pub submitted_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What processing changed; present once succeeded.
    pub counts: Option<ScanCounts>,
    /// Why it failed.
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    /// The processing job (attempts, dead state, last error).
    pub job: Option<JobState>,
}

impl From<ScanRecord> for ScanView {
    fn from(scan: ScanRecord) -> Self {
        ScanView {
            id: scan.id,
            asset_id: scan.asset_id,
            tool_name: scan.tool_name,
            tool_version: scan.tool_version,
            format: scan.format,
            scope: scan.scope,
            status: scan.status,
            report_bytes: scan.report_bytes,
            submitted_at: scan.submitted_at,
            started_at: scan.started_at,
            finished_at: scan.finished_at,
            counts: scan.counts,
            error: scan.error,
            job: scan.job,
        }
    }
}

/// The native report format, for tools without SARIF or CycloneDX output. Only
/// documents the format: reports are parsed by `posture_domain::report`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NativeReport {
    /// Always `posture-native`.
    #[schema(example = "posture-native")]
    format: String,
    /// Always `"1"`.
    #[schema(example = "1")]
    version: String,
    /// Required unless the request names the tool (`tool` query parameter).
    tool: Option<NativeTool>,
    /// May be empty or absent; at most 500,000.
    findings: Option<Vec<NativeFinding>>,
}

/// The tool that produced a native report.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NativeTool {
    #[schema(example = "acme-scanner")]
    name: String,
    version: Option<String>,
}

/// One finding of a native report.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NativeFinding {
    /// The tool's rule or check id.
    #[schema(example = "sql-injection")]
    rule_id: String,
    title: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    #[schema(example = "high")]
    severity: String,
    description: Option<String>,
    /// CWE numbers.
    #[schema(example = json!([89]))]
    cwe: Option<Vec<u32>>,
    /// CVE, GHSA or other advisory ids.
    #[schema(example = json!(["CVE-2021-44228"]))]
    vulnerability_ids: Option<Vec<String>>,
    location: Option<NativeLocation>,
    package: Option<NativePackage>,
    /// The tool's own stable identity of the finding, if it has one.
    fingerprint: Option<String>,
}

/// Where a native finding is.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NativeLocation {
    #[schema(example = "src/db.py")]
    path: String,
    line: Option<u32>,
}

/// Which dependency a native finding is about.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NativePackage {
    #[schema(example = "pkg:pypi/django@3.2.0")]
    purl: Option<String>,
    /// Required unless `purl` is given (name and version default from it).
    name: Option<String>,
    version: Option<String>,
}

/// Where the scan goes.
enum AssetRef {
    Id(AssetId),
    Named(AssetKind, AssetName),
}

struct Submission {
    asset: AssetRef,
    tool: Option<String>,
    tool_version: Option<String>,
    full: bool,
}

fn validate(query: SubmitScanQuery) -> Result<Submission, ApiError> {
    let mut errors = Vec::new();
    let asset = match (&query.asset, &query.asset_kind, &query.asset_name) {
        (Some(id), None, None) => match AssetId::parse(id) {
            Some(id) => Some(AssetRef::Id(id)),
            None => {
                errors.push(FieldError::parameter("asset", "is not an asset id (ast_…)"));
                None
            }
        },
        (None, Some(kind), Some(name)) => {
            let kind = kind
                .parse::<AssetKind>()
                .map_err(|e| errors.push(FieldError::parameter("asset_kind", e)));
            let name = AssetName::parse(name)
                .map_err(|e| errors.push(FieldError::parameter("asset_name", e.to_string())));
            match (kind, name) {
                (Ok(kind), Ok(name)) => Some(AssetRef::Named(kind, name)),
                _ => None,
            }
        }
        _ => {
            errors.push(FieldError::parameter(
                "asset",
                "give either asset, or asset_kind and asset_name",
            ));
            None
        }
    };
    let bounded = |name: &str, value: Option<String>, errors: &mut Vec<FieldError>| {
        let value = value
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty());
        if value
            .as_ref()
            .is_some_and(|text| text.chars().count() > 200 || text.chars().any(char::is_control))
        {
            errors.push(FieldError::parameter(
                name,
                "must be at most 200 characters without control characters",
            ));
        }
        value
    };
    let tool = bounded("tool", query.tool, &mut errors);
    let tool_version = bounded("tool_version", query.tool_version, &mut errors);
    let full = match query.scope.as_deref() {
        None | Some("partial") => false,
        Some("full") => true,
        Some(_) => {
            errors.push(FieldError::parameter("scope", "must be full or partial"));
            false
        }
    };
    match asset {
        Some(asset) if errors.is_empty() => Ok(Submission {
            asset,
            tool,
            tool_version,
            full,
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// The declared format of the body: `None` means "detect" (plain JSON).
fn declared_format(headers: &HeaderMap) -> Result<(Option<ReportFormat>, String), ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .ok_or(ApiError::UnsupportedMediaType)?;
    match ReportFormat::from_media_type(&media) {
        Some(format) => Ok((Some(format), media)),
        None if media == "application/json" => Ok((None, media)),
        None => Err(ApiError::UnsupportedMediaType),
    }
}

/// Submit a scanner report. The body is the report itself: SARIF 2.1.0
/// (`application/sarif+json`), CycloneDX 1.4–1.6 with vulnerabilities
/// (`application/vnd.cyclonedx+json`), the native format
/// (`application/vnd.posture.native+json`), or any of them as `application/json`
/// (detected). The report is checked before it is accepted: a 4xx names what is
/// wrong and where (a JSON pointer). 202 means the scan, the compressed report
/// and its processing job are committed; follow `Location`.
#[utoipa::path(post, path = "/v1/scans", tag = "scans", security(("api_key" = [])),
    params(SubmitScanQuery),
        request_body(
        description = "The report itself: SARIF 2.1.0, CycloneDX 1.4–1.6 JSON, or the native format (schema below; docs/report-formats.md)",
        content(
            (NativeReport = "application/vnd.posture.native+json"),
            (Object = "application/sarif+json"),
            (Object = "application/vnd.cyclonedx+json"),
            (Object = "application/json"),
        )
    ),
    responses(
        (status = 202, description = "Accepted; processed in the background", body = ScanView),
        (status = 400, description = "Not JSON or not UTF-8", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Report larger than the tier allows", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported content type", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not the declared format, unsupported version, invalid field (pointer in errors)", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit(
    State(state): State<AppState>,
    context: TenantContext,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<SubmitScanQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    context.require(Scope::Write)?;
    let submission = validate(query)?;
    let (declared, content_type) = declared_format(&headers)?;
    let limit = state.config.scan_max_bytes(context.tier);
    let report: Arc<[u8]> = to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?
        .to_vec()
        .into();

    // Parse (and compress) with no transaction open: CPU work, off the async
    // threads, a bounded number at a time.
    let permit =
        state.report_permits.acquire().await.map_err(|error| {
            ApiError::Internal(anyhow::Error::new(error).context("report permits"))
        })?;
    let parsed = parse_off_thread(report.clone(), declared, submission.tool.clone())
        .await
        .map_err(|error| ApiError::Internal(anyhow::Error::new(error).context("parser task")))?
        .map_err(ApiError::InvalidReport)?;
    let to_compress = report.clone();
    let compressed = tokio::task::spawn_blocking(move || compress(&to_compress))
        .await
        .map_err(|error| {
            ApiError::Internal(anyhow::Error::new(error).context("compression task"))
        })?;
    drop(permit);

    // A burst of submissions queues here, not for the pool (see
    // `AppParts::submission_writes`), until the transaction is committed.
    let _writing = state.submission_writes.acquire().await.map_err(|error| {
        ApiError::Internal(anyhow::Error::new(error).context("submission write slots"))
    })?;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let asset: AssetRecord = match &submission.asset {
        AssetRef::Id(id) => assets::get(&mut tx, *id)
            .await?
            .ok_or_else(|| ApiError::invalid_parameter("asset", "no such asset"))?,
        AssetRef::Named(kind, name) => assets::find_or_create(&mut tx, *kind, name).await?,
    };
    let tool_name = Some(parsed.tool_name.as_str());
    let tool_version = parsed
        .tool_version
        .as_deref()
        .or(submission.tool_version.as_deref());
    let scan = scans::insert(
        &mut tx,
        &NewScan {
            id: ScanId::new(),
            asset_id: asset.id,
            tool_name,
            tool_version,
            format: format_name(parsed.format),
            scope: if submission.full { "full" } else { "partial" },
            report_bytes: i64::try_from(report.len()).unwrap_or(i64::MAX),
            content_type: &content_type,
            compressed_report: &compressed,
            max_attempts: state.config.job_max_attempts,
        },
    )
    .await?;
    tx.commit().await?;
    let location = format!("/v1/scans/{}", scan.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(ScanView::from(scan)),
    )
        .into_response())
}

/// Query of `GET /v1/scans`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListScansQuery {
    /// Only scans of this asset (`ast_…`).
    asset: Option<String>,
    /// Items per page, 1–100 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List scans, newest first.
#[utoipa::path(get, path = "/v1/scans", tag = "scans", security(("api_key" = [])),
    params(ListScansQuery),
    responses((status = 200, description = "A page of scans", body = ScanPage)))]
pub async fn list(
    State(state): State<AppState>,
    context: TenantContext,
    ApiQuery(query): ApiQuery<ListScansQuery>,
) -> Result<Json<Page<ScanView>>, ApiError> {
    context.require(Scope::Read)?;
    let page = PageQuery::new(query.limit, query.cursor);
    let limit = page.limit()?;
    let after = page.cursor()?.map(decode_cursor).transpose()?;
    let asset = query
        .asset
        .as_deref()
        .map(|text| {
            AssetId::parse(text)
                .ok_or_else(|| ApiError::invalid_parameter("asset", "is not an asset id"))
        })
        .transpose()?;
    let records = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        scans::list(&mut tx, after.as_ref(), asset, limit + 1).await?
    })?;
    Ok(Json(Page::from_rows(
        records,
        limit,
        |last| Cursor::encode_time_and_id(last.submitted_at, &last.id.to_string()),
        ScanView::from,
    )))
}

/// A page of scans (for the OpenAPI document).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ScanPage {
    data: Vec<ScanView>,
    next_cursor: Option<String>,
}

fn decode_cursor(cursor: Cursor) -> Result<ScanPageCursor, ApiError> {
    let (submitted_at, id) = cursor.time_and_id(ScanId::parse)?;
    Ok(ScanPageCursor { submitted_at, id })
}

/// One scan: status, timings, counts, error, job.
#[utoipa::path(get, path = "/v1/scans/{id}", tag = "scans", security(("api_key" = [])),
    params(("id" = String, Path, description = "Scan id, `scn_…`")),
    responses(
        (status = 200, description = "The scan", body = ScanView),
        (status = 404, description = "No such scan in this organization", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
    Path(id): Path<String>,
) -> Result<Json<ScanView>, ApiError> {
    context.require(Scope::Read)?;
    let scan_id = ScanId::parse(&id).ok_or(ApiError::NotFound)?;
    let scan = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        scans::get(&mut tx, scan_id).await?
    })?
    .ok_or(ApiError::NotFound)?;
    Ok(Json(scan.into()))
}
