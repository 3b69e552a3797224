//! The security score: one number from 0 to 100 and a letter grade.
//!
//! The formula, its constants and worked examples are in `docs/scoring.md`;
//! the unit tests below reproduce those examples. In short:
//!
//! 1. Each open finding weighs `severity weight × criticality multiplier`
//!    (Dependency-Track's 10/5/3/1 severity weights; info weighs nothing).
//! 2. Each asset's weights are summed and saturate:
//!    `asset penalty = ASSET_CAP × (1 − e^(−sum / ASSET_K))`, so one noisy asset
//!    costs at most [`ASSET_CAP`].
//! 3. Asset penalties are summed and saturate again:
//!    `findings penalty = FINDINGS_MAX × (1 − e^(−Σ / TOTAL_K))`.
//! 4. Failed controls cost up to [`COMPLIANCE_MAX`], proportional to the fail rate.
//! 5. `score = floor(100 − findings penalty − compliance penalty)`.
//!
//! Weights are summed as integers (in half points) so the result does not depend
//! on the order of the findings, and assets are visited in id order so the
//! floating-point sums are reproducible.

use crate::asset::Criticality;
use crate::finding::Severity;
use crate::ids::AssetId;
use serde::Serialize;
use std::collections::BTreeMap;

/// Most points one asset's findings can cost before the second saturation.
pub const ASSET_CAP: f64 = 25.0;
/// Weighted points at which an asset reaches 1 − 1/e (63%) of [`ASSET_CAP`].
pub const ASSET_K: f64 = 20.0;
/// Most points all findings together can cost (the score never reaches 0 from findings alone).
pub const FINDINGS_MAX: f64 = 80.0;
/// Summed asset penalty at which findings reach 63% of [`FINDINGS_MAX`].
pub const TOTAL_K: f64 = 50.0;
/// Points lost when every assessed control fails.
pub const COMPLIANCE_MAX: f64 = 20.0;
/// How many of the costliest findings a [`Score`] lists.
pub const TOP_FINDINGS: usize = 10;

/// One open (or reopened) finding, reduced to what the score needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFinding {
    pub severity: Severity,
    /// The criticality of the asset the finding is on.
    pub asset_criticality: Criticality,
    /// Findings on the same asset share that asset's diminishing penalty.
    pub asset_id: AssetId,
}

/// Controls passed and failed across the tenant's frameworks (not-assessed controls excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ComplianceRate {
    pub passed: u32,
    pub failed: u32,
}

/// Everything the score depends on. Callers pass only open and reopened
/// findings; false positives, accepted risks and resolved findings are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoreInput {
    pub findings: Vec<OpenFinding>,
    /// `None` when no control has been assessed yet; that costs nothing.
    pub compliance: Option<ComplianceRate>,
}

/// A letter grade with DefectDojo's default cut-offs: A ≥ 90, B ≥ 80, C ≥ 70, D ≥ 60, else F.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Grade {
    F,
    D,
    C,
    B,
    A,
}

impl Grade {
    /// The grade of a score.
    pub const fn from_score(value: u8) -> Grade {
        match value {
            90.. => Grade::A,
            80..=89 => Grade::B,
            70..=79 => Grade::C,
            60..=69 => Grade::D,
            _ => Grade::F,
        }
    }

    /// The letter, as shown in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::D => "D",
            Grade::F => "F",
        }
    }
}

/// One line of the breakdown: what cost how many points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Factor {
    /// `critical_findings`, `high_findings`, `medium_findings`, `low_findings` or `failed_controls`.
    pub name: &'static str,
    pub points_lost: f64,
}

/// The score with its explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// 0..=100; 100 exactly when nothing costs points.
    pub value: u8,
    pub grade: Grade,
    /// Always the same five factors in the same order; their points sum to `100 − unrounded score`.
    pub factors: Vec<Factor>,
    /// `(index into ScoreInput::findings, points lost)` for the costliest findings,
    /// most expensive first (ties by index), at most [`TOP_FINDINGS`], none that cost nothing.
    pub top_findings: Vec<(usize, f64)>,
}

/// Dependency-Track's risk weights; info findings are informational and cost nothing.
pub const fn severity_weight(severity: Severity) -> u64 {
    match severity {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 3,
        Severity::High => 5,
        Severity::Critical => 10,
    }
}

/// The criticality multiplier in half units: low ×0.5, medium ×1, high ×1.5, critical ×2.
/// Kept as an integer so that per-asset sums are exact and order-independent.
pub const fn criticality_half_multiplier(criticality: Criticality) -> u64 {
    match criticality {
        Criticality::Low => 1,
        Criticality::Medium => 2,
        Criticality::High => 3,
        Criticality::Critical => 4,
    }
}

/// A finding's weight in half points.
fn half_points(finding: &OpenFinding) -> u64 {
    severity_weight(finding.severity) * criticality_half_multiplier(finding.asset_criticality)
}

/// `cap × (1 − e^(−x / k))`: linear (slope cap/k) for small x, approaching cap for large x.
fn saturate(x: f64, cap: f64, k: f64) -> f64 {
    cap * -(-x / k).exp_m1()
}

/// Per-asset totals in half points: overall and split by severity (Low, Medium, High, Critical).
#[derive(Default)]
struct AssetTotals {
    half_points: u64,
    by_severity: [u64; 4],
}

/// The severities that cost points, in factor order, with their index into `by_severity`.
const COSTED: [(Severity, &str, usize); 4] = [
    (Severity::Critical, "critical_findings", 3),
    (Severity::High, "high_findings", 2),
    (Severity::Medium, "medium_findings", 1),
    (Severity::Low, "low_findings", 0),
];

fn severity_slot(severity: Severity) -> Option<usize> {
    COSTED
        .iter()
        .find(|(s, _, _)| *s == severity)
        .map(|(_, _, slot)| *slot)
}

/// Computes the score. Pure and deterministic: the same findings in any order give the same
/// value, grade and factors.
pub fn score(input: &ScoreInput) -> Score {
    // 1. Exact integer sums per asset, visited in id order.
    let mut assets: BTreeMap<AssetId, AssetTotals> = BTreeMap::new();
    for finding in &input.findings {
        let points = half_points(finding);
        let Some(slot) = severity_slot(finding.severity) else {
            continue;
        };
        let totals = assets.entry(finding.asset_id).or_default();
        totals.half_points += points;
        totals.by_severity[slot] += points;
    }

    // 2. Per-asset saturation, then 3. saturation across assets.
    let penalties: BTreeMap<AssetId, f64> = assets
        .iter()
        .map(|(id, totals)| {
            (
                *id,
                saturate(totals.half_points as f64 / 2.0, ASSET_CAP, ASSET_K),
            )
        })
        .collect();
    let asset_sum: f64 = penalties.values().sum();
    let findings_penalty = saturate(asset_sum, FINDINGS_MAX, TOTAL_K);

    // Attribution: the findings penalty is shared between assets in proportion to their
    // penalties, and within an asset in proportion to each finding's weight. This is the
    // points one finding costs, used for the factors and the top findings.
    let share = |id: &AssetId, half_points: u64| -> f64 {
        let totals = &assets[id];
        findings_penalty
            * (penalties[id] / asset_sum)
            * (half_points as f64 / totals.half_points as f64)
    };

    let mut factors: Vec<Factor> = COSTED
        .iter()
        .map(|(_, name, slot)| Factor {
            name,
            points_lost: assets
                .iter()
                .filter(|(_, totals)| totals.by_severity[*slot] > 0)
                .map(|(id, totals)| share(id, totals.by_severity[*slot]))
                .sum(),
        })
        .collect();

    // 4. Compliance: proportional to the fail rate; nothing when nothing was assessed.
    let compliance_penalty = match input.compliance {
        Some(ComplianceRate { passed, failed }) if failed > 0 => {
            COMPLIANCE_MAX * f64::from(failed) / (f64::from(passed) + f64::from(failed))
        }
        _ => 0.0,
    };
    factors.push(Factor {
        name: "failed_controls",
        points_lost: compliance_penalty,
    });

    // 5. Floor, so any cost at all shows as below 100; clamp guards against rounding.
    let value = (100.0 - findings_penalty - compliance_penalty)
        .floor()
        .clamp(0.0, 100.0) as u8;

    let mut top_findings: Vec<(usize, f64)> = input
        .findings
        .iter()
        .enumerate()
        .filter_map(|(index, finding)| {
            let points = half_points(finding);
            (points > 0).then(|| (index, share(&finding.asset_id, points)))
        })
        .collect();
    top_findings.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    top_findings.truncate(TOP_FINDINGS);

    Score {
        value,
        grade: Grade::from_score(value),
        factors,
        top_findings,
    }
}

#[cfg(test)]
mod tests;
