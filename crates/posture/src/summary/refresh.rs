//! Recomputing a tenant's posture summary: read → compute → store.
//!
//! 1. **Read** every input in one read-only REPEATABLE READ transaction, so the
//!    counts, the live findings and the compliance groups describe the same
//!    instant (the transaction's start, `computed_at`).
//! 2. **Compute** the score and compliance on a blocking thread with no
//!    transaction open (scoring 200,000 findings is CPU work).
//! 3. **Store** the summary and the day's snapshot in a second, short
//!    transaction, only over an older summary: two refreshes racing (one queued
//!    while another ran) cannot leave the staler view in place; and only while
//!    the job's lease is held. Then invalidate the cached views, then delete
//!    the job.

use super::{CostlyFinding, FactorView, PostureSummary, Remediation, MTTR_WINDOW_DAYS};
use crate::cache::views::{Generation, ViewCache};
use crate::jobs::queue::{self, ClaimedJob};
use crate::store::posture::{self as posture_store, LiveFinding, Snapshot, SummaryRecord};
use crate::store::{frameworks, outbox, Store};
use crate::webhooks::triggers::{self, NewPosture, PreviousPosture};
use anyhow::Context;
use chrono::{DateTime, Days, Utc};
use posture_domain::asset::Criticality;
use posture_domain::compliance::{self, ComplianceResult, Framework};
use posture_domain::finding::Severity;
use posture_domain::ids::{AssetId, FindingId};
use posture_domain::score::{score, OpenFinding, ScoreInput};
use posture_domain::webhook::EventType;
use posture_domain::TenantId;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Live findings read for one score; beyond this the cheapest are left out
/// (their cost is saturated long before).
const MAX_SCORED_FINDINGS: i64 = 200_000;

/// How a refresh ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// The summary and the day's snapshot were stored.
    Stored,
    /// A newer summary was already stored; nothing changed.
    Superseded,
    /// The job's lease was lost before the commit; another worker owns it.
    LeaseLost,
}

/// Recomputes and stores the tenant's summary. With `job`, the job completes (is
/// deleted) in the storing transaction, and only while `worker` holds it. Once
/// a new summary is committed, the tenant's cached views are invalidated in
/// `views` (every instance sees it within a second).
#[tracing::instrument(skip_all, fields(tenant_id = %tenant_id))]
pub async fn refresh(
    store: &Store,
    tenant_id: TenantId,
    job: Option<(&ClaimedJob, &str)>,
    views: Option<&ViewCache>,
) -> anyhow::Result<Refreshed> {
    // 1. Read.
    let mut tx = store.begin_tenant_snapshot(tenant_id).await?;
    let computed_at = posture_store::transaction_time(&mut tx).await?;
    let live = posture_store::live_findings(&mut tx, MAX_SCORED_FINDINGS).await?;
    let counts = posture_store::counts(&mut tx, computed_at).await?;
    let remediation = posture_store::remediation(&mut tx, computed_at, MTTR_WINDOW_DAYS).await?;
    let groups = posture_store::finding_groups(&mut tx).await?;
    let scanned_kinds = posture_store::scanned_asset_kinds(&mut tx).await?;
    let custom: Vec<Framework> = frameworks::all(&mut tx)
        .await?
        .iter()
        .map(|record| record.to_framework())
        .collect();
    tx.commit().await?;

    // 2. Compute, off the async threads.
    let (scored, compliance, live) = tokio::task::spawn_blocking(move || {
        let catalog = compliance::builtin();
        let all: Vec<&Framework> = catalog.frameworks.iter().chain(custom.iter()).collect();
        let compliance = compliance::evaluate(&all, &groups, &scanned_kinds);
        let input = ScoreInput {
            findings: live.iter().map(open_finding).collect(),
            compliance: compliance.builtin_rate(),
        };
        (score(&input), compliance, live)
    })
    .await
    .context("posture computation task")?;

    let mut open_by_severity: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
    for (status, severity, count) in &counts.by_status {
        *by_status.entry(status.clone()).or_default() += count;
        if status == "open" || status == "reopened" {
            *open_by_severity.entry(severity.clone()).or_default() += count;
        }
    }
    // `open_finding` maps every row, so the score's indexes are `live`'s.
    let costliest: Vec<(Uuid, f64)> = scored
        .top_findings
        .iter()
        .filter_map(|(index, points)| live.get(*index).map(|finding| (finding.id, *points)))
        .collect();
    drop(live);
    let compliance_percent = compliance.builtin_percent();
    let mut summary = PostureSummary {
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
        top_findings: Vec::new(),
        open_by_severity,
        by_status,
        sla_breaches: counts.sla_breaches,
        mttr: remediation
            .into_iter()
            .map(|row| {
                let view = Remediation {
                    resolved: row.resolved,
                    mean_hours: (row.mean_seconds / 360.0).round() / 10.0,
                };
                (row.severity, view)
            })
            .collect(),
        mttr_window_days: MTTR_WINDOW_DAYS,
        compliance_percent,
    };
    let snapshot = snapshot_of(&summary, &compliance, computed_at);
    let refresh_due_at = refresh_due_at(computed_at, counts.next_sla_due_at);

    // 3. Store.
    let mut tx = store.begin_tenant(tenant_id).await?;
    let ids: Vec<Uuid> = costliest.iter().map(|(id, _)| *id).collect();
    let titles: HashMap<Uuid, (String, String)> = posture_store::titles(&mut tx, &ids)
        .await?
        .into_iter()
        .map(|(id, title, severity)| (id, (title, severity)))
        .collect();
    // A finding deleted since the read (its asset was) drops out of the list.
    summary.top_findings = costliest
        .iter()
        .filter_map(|(id, points_lost)| {
            titles.get(id).map(|(title, severity)| CostlyFinding {
                id: FindingId::from_uuid(*id),
                title: title.clone(),
                severity: severity.clone(),
                points_lost: *points_lost,
            })
        })
        .collect();
    let record = SummaryRecord {
        computed_at,
        score: i16::from(summary.score),
        grade: summary.grade.clone(),
        posture: serde_json::to_value(&summary).context("serializing the posture summary")?,
        compliance: serde_json::to_value(&compliance).context("serializing compliance")?,
        refresh_due_at,
    };
    // Score and control events compare with the summary this one replaces:
    // refreshes of one tenant store one at a time (the tenant's first summary
    // has no row to lock, so a transaction-scoped advisory lock), and read the
    // endpoints' score baselines only once they hold it.
    posture_store::lock_refresh(&mut tx).await?;
    let subscribers = outbox::subscribers(&mut tx).await?;
    let previous = if triggers::wants_posture_events(&subscribers) {
        let with_compliance = subscribers.any(EventType::ComplianceControlFailed);
        posture_store::previous_locked(&mut tx, with_compliance)
            .await?
            .map(|(score, compliance)| PreviousPosture {
                score,
                // A summary stored by an older version may not parse: its
                // controls then count as not assessed.
                compliance: compliance.and_then(|value| serde_json::from_value(value).ok()),
            })
    } else {
        None
    };
    let stored = posture_store::save_summary(&mut tx, &record).await?;
    if stored {
        posture_store::save_snapshot(&mut tx, &snapshot).await?;
        if triggers::wants_posture_events(&subscribers) {
            triggers::posture_refreshed(
                &mut tx,
                &subscribers,
                previous.as_ref(),
                NewPosture {
                    score: record.score,
                    grade: &record.grade,
                    compliance: &compliance,
                    computed_at,
                },
            )
            .await?;
        }
    }
    if let Some((job, worker)) = job {
        if !queue::still_held(&mut tx, job, worker).await? {
            return Ok(Refreshed::LeaseLost);
        }
    }
    tx.commit().await?;
    if let (true, Some(views)) = (stored, views) {
        views.invalidate(tenant_id, Generation::Posture).await;
    }
    // The job ends only after the cached views were invalidated, so "no
    // refresh pending" implies "no stale view cached here". A crash before this
    // leaves the job to be run again after its lease: harmless, as a refresh
    // over an equal view changes nothing.
    if let Some((job, worker)) = job {
        let mut tx = store.begin_tenant(tenant_id).await?;
        queue::complete_by_deleting(&mut tx, job, worker).await?;
        tx.commit().await?;
    }
    tracing::debug!(score = summary.score, stored, "posture refreshed");
    Ok(if stored {
        Refreshed::Stored
    } else {
        Refreshed::Superseded
    })
}

/// When the view goes stale with no change to the data: the next SLA due date
/// of a live finding, or the next UTC midnight (a new day's snapshot), whichever
/// is first.
fn refresh_due_at(
    computed_at: DateTime<Utc>,
    next_sla_due_at: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let next_midnight = (computed_at.date_naive() + Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map(|midnight| midnight.and_utc())
        .unwrap_or(computed_at);
    next_sla_due_at.map_or(next_midnight, |due| due.min(next_midnight))
}

fn snapshot_of(
    summary: &PostureSummary,
    compliance: &ComplianceResult,
    computed_at: DateTime<Utc>,
) -> Snapshot {
    let open_total: i64 = summary.open_by_severity.values().sum();
    let frameworks: serde_json::Map<String, serde_json::Value> = compliance
        .frameworks
        .iter()
        .map(|framework| (framework.id.clone(), json!(framework.percent)))
        .collect();
    Snapshot {
        day: computed_at.date_naive(),
        computed_at,
        score: i16::from(summary.score),
        grade: summary.grade.clone(),
        open_total: i32::try_from(open_total).unwrap_or(i32::MAX),
        open_by_severity: json!(summary.open_by_severity),
        sla_breaches: i32::try_from(summary.sla_breaches).unwrap_or(i32::MAX),
        compliance_percent: summary.compliance_percent,
        frameworks: serde_json::Value::Object(frameworks),
    }
}

/// The score's view of a stored finding. The schema's CHECK constraints make
/// the fallbacks unreachable; they keep one entry per row all the same.
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn refresh_is_due_at_the_next_sla_date_or_midnight() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 15, 30, 0).unwrap();
        let midnight = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        assert_eq!(refresh_due_at(at, None), midnight);
        let soon = Utc.with_ymd_and_hms(2026, 11, 23, 18, 0, 0).unwrap();
        assert_eq!(refresh_due_at(at, Some(soon)), soon);
        let later = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        assert_eq!(refresh_due_at(at, Some(later)), midnight);
    }
}
