//! Precomputed posture summaries: the score with its working, counts, MTTR and
//! compliance, computed in the background ([`refresh`]) whenever a tenant's
//! findings change and once a day, and stored per tenant so `GET /v1/posture`
//! and `GET /v1/compliance` are single-row reads.

pub mod refresh;

use posture_domain::ids::FindingId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Days of resolved findings that mean time to remediate covers.
pub const MTTR_WINDOW_DAYS: i32 = 90;

/// The stored posture view (the body of `GET /v1/posture` without the changes
/// over time, which are read alongside it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PostureSummary {
    /// 0–100 (docs/scoring.md).
    pub score: u8,
    /// A–F.
    pub grade: String,
    /// Points lost per factor: critical, high, medium and low findings, failed controls.
    pub factors: Vec<FactorView>,
    /// The findings that cost the most points, costliest first.
    pub top_findings: Vec<CostlyFinding>,
    /// Live (open and reopened) findings by severity.
    pub open_by_severity: BTreeMap<String, i64>,
    /// All findings by status.
    pub by_status: BTreeMap<String, i64>,
    /// Live findings past their SLA due date.
    pub sla_breaches: i64,
    /// Mean time to remediate per severity, over findings resolved in the last
    /// `mttr_window_days` days; severities with none resolved are absent.
    pub mttr: BTreeMap<String, Remediation>,
    pub mttr_window_days: i32,
    /// Controls passed / (passed + failed) over the built-in frameworks, in %;
    /// null when no control has been assessed.
    pub compliance_percent: Option<f64>,
}

/// One factor of the score.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FactorView {
    pub name: String,
    pub points_lost: f64,
}

/// A finding and what it costs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CostlyFinding {
    #[schema(value_type = String)]
    pub id: FindingId,
    pub title: String,
    pub severity: String,
    pub points_lost: f64,
}

/// Mean time to remediate for one severity.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Remediation {
    /// Findings resolved in the window.
    pub resolved: i64,
    /// Mean hours from first seen to resolved, one decimal.
    pub mean_hours: f64,
}
