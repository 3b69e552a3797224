//! `GET /v1/posture`: the security score with its working, and open counts.
//!
//! A first cut of issue 4's view: score, grade, factors, the costliest findings,
//! counts by severity and status, SLA breaches. Compliance, MTTR and trends
//! join when they exist (the score already takes a compliance rate).

use super::error::ApiError;
use crate::auth::TenantContext;
use crate::state::AppState;
use crate::store::posture::{self, LiveFinding};
use axum::extract::State;
use axum::Json;
use posture_domain::asset::Criticality;
use posture_domain::finding::Severity;
use posture_domain::ids::{AssetId, FindingId};
use posture_domain::score::{score, OpenFinding, ScoreInput};
use posture_domain::Scope;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Live findings read for one score; beyond this the cheapest are left out
/// (their cost is saturated long before).
const MAX_SCORED_FINDINGS: i64 = 200_000;

/// The posture summary.
#[derive(Serialize, ToSchema)]
pub struct Posture {
    /// 0–100 (docs/scoring.md).
    pub score: u8,
    /// A–F.
    pub grade: String,
    /// Points lost per factor.
    pub factors: Vec<FactorView>,
    /// The findings that cost the most points.
    pub top_findings: Vec<CostlyFinding>,
    /// Live (open and reopened) findings by severity.
    pub open_by_severity: BTreeMap<String, i64>,
    /// All findings by status.
    pub by_status: BTreeMap<String, i64>,
    /// Live findings past their SLA due date.
    pub sla_breaches: i64,
}

/// One factor of the score.
#[derive(Serialize, ToSchema)]
pub struct FactorView {
    pub name: String,
    pub points_lost: f64,
}

/// A finding and what it costs.
#[derive(Serialize, ToSchema)]
pub struct CostlyFinding {
    #[schema(value_type = String)]
    pub id: FindingId,
    pub title: String,
    pub severity: String,
    pub points_lost: f64,
}

/// The organization's posture: score with its working, and counts.
#[utoipa::path(get, path = "/v1/posture", tag = "org", security(("api_key" = [])),
    responses((status = 200, description = "Posture", body = Posture)))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
) -> Result<Json<Posture>, ApiError> {
    context.require(Scope::Read)?;
    let (live, counts) = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        let live = posture::live_findings(&mut tx, MAX_SCORED_FINDINGS).await?;
        (live, posture::counts(&mut tx).await?)
    })?;
    // Scoring 200,000 findings is CPU work: off the async threads.
    let (scored, live) = tokio::task::spawn_blocking(move || {
        let input = ScoreInput {
            findings: live.iter().map(open_finding).collect(),
            compliance: None,
        };
        (score(&input), live)
    })
    .await
    .map_err(|error| ApiError::Internal(anyhow::Error::new(error).context("scoring task")))?;

    let mut open_by_severity: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
    for (status, severity, count) in counts.by_status {
        *by_status.entry(status.clone()).or_default() += count;
        if status == "open" || status == "reopened" {
            *open_by_severity.entry(severity).or_default() += count;
        }
    }
    // `open_finding` maps every row, so the score's indexes are `live`'s.
    let top_findings = scored
        .top_findings
        .iter()
        .filter_map(|(index, points)| live.get(*index).map(|finding| (finding, *points)))
        .map(|(finding, points_lost)| CostlyFinding {
            id: FindingId::from_uuid(finding.id),
            title: finding.title.clone(),
            severity: finding.severity.clone(),
            points_lost,
        })
        .collect();
    Ok(Json(Posture {
        score: scored.value,
        grade: scored.grade.as_str().to_owned(),
        factors: scored
            .factors
            .iter()
            .map(|factor| FactorView {
                name: factor.name.to_owned(),
                points_lost: factor.points_lost,
            })
            .collect(),
        top_findings,
        open_by_severity,
        by_status,
        sla_breaches: counts.sla_breaches,
    }))
}

/// The score's view of a stored finding. The schema's CHECK constraints make
/// the fallbacks unreachable; they keep one row per finding all the same.
fn open_finding(finding: &LiveFinding) -> OpenFinding {
    OpenFinding {
        severity: finding
            .severity
            .parse::<Severity>()
            .unwrap_or(Severity::Medium),
        asset_criticality: finding
            .criticality
            .parse::<Criticality>()
            .unwrap_or(Criticality::Medium),
        asset_id: AssetId::from_uuid(finding.asset_id),
    }
}
