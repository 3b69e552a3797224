//! Which events a change causes, decided inside the transaction that makes
//! the change (so an event is announced exactly when its change commits).
//! Each function reads the tenant's enabled endpoints first and does nothing
//! more when none wants what it would emit.

use super::events::{
    short_title, ControlFailedData, Emitted, EventData, FindingData, ScanCompletedData,
    ScanCountsData, ScanFailedData, ScoreChangedData,
};
use crate::store::findings::AppliedScan;
use crate::store::outbox::{self, Subscribers};
use crate::store::TenantTx;
use chrono::{DateTime, Utc};
use posture_domain::compliance::{ComplianceResult, ControlStatus};
use posture_domain::ids::{AssetId, FindingId, ScanId};
use posture_domain::webhook::EventType;
use posture_domain::Severity;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Most `finding.created` events one scan emits, and separately most
/// `finding.reopened`: the most severe first. A scan importing 100,000
/// findings announces itself once (`scan.completed`, with the counts and the
/// number of finding events left out), not 100,000 times.
pub const MAX_FINDING_EVENTS_PER_SCAN: usize = 100;

/// Most `compliance.control_failed` events one posture refresh emits.
pub const MAX_CONTROL_EVENTS_PER_REFRESH: usize = 100;

/// The scan that was applied.
pub struct ScanFacts<'a> {
    pub scan_id: ScanId,
    pub asset_id: AssetId,
    pub tool: &'a str,
    pub tool_version: Option<&'a str>,
    pub scope: &'a str,
}

/// `scan.completed`, `finding.created` and `finding.reopened` for an applied scan.
pub async fn scan_applied(
    tx: &mut TenantTx,
    scan: ScanFacts<'_>,
    applied: &AppliedScan,
) -> Result<(), sqlx::Error> {
    let subscribers = outbox::subscribers(tx).await?;
    if subscribers.0.is_empty() {
        return Ok(());
    }
    let mut emitted = Vec::new();
    let mut omitted = 0_u64;

    // finding.created: per endpoint, at or above its threshold.
    let created_lowest = subscribers
        .of(EventType::FindingCreated)
        .map(|subscriber| subscriber.min_severity())
        .min();
    let mut created: Vec<(Uuid, Severity, Option<&'static str>)> = match created_lowest {
        Some(lowest) => applied
            .created
            .iter()
            .filter(|(_, severity)| *severity >= lowest)
            .map(|(id, severity)| (*id, *severity, None))
            .collect(),
        None => Vec::new(),
    };
    let mut reopened: Vec<(Uuid, Severity, Option<&'static str>)> =
        if subscribers.any(EventType::FindingReopened) {
            applied
                .reopened
                .iter()
                .map(|(id, severity, from)| (*id, *severity, Some(*from)))
                .collect()
        } else {
            Vec::new()
        };
    for list in [&mut created, &mut reopened] {
        // Most severe first; stable, so report order within a severity.
        list.sort_by_key(|(_, severity, _)| std::cmp::Reverse(*severity));
        omitted += list.len().saturating_sub(MAX_FINDING_EVENTS_PER_SCAN) as u64;
        list.truncate(MAX_FINDING_EVENTS_PER_SCAN);
    }
    let named: Vec<Uuid> = created
        .iter()
        .chain(&reopened)
        .map(|(id, ..)| *id)
        .collect();
    if !named.is_empty() {
        let facts: HashMap<Uuid, outbox::FindingFacts> = outbox::finding_facts(tx, &named)
            .await?
            .into_iter()
            .map(|facts| (facts.id, facts))
            .collect();
        for (event_type, list) in [
            (EventType::FindingCreated, &created),
            (EventType::FindingReopened, &reopened),
        ] {
            for (id, severity, previous_status) in list {
                let Some(facts) = facts.get(id) else { continue };
                let targets: Vec<Uuid> = subscribers
                    .of(event_type)
                    .filter(|subscriber| {
                        event_type != EventType::FindingCreated
                            || *severity >= subscriber.min_severity()
                    })
                    .map(|subscriber| subscriber.id)
                    .collect();
                emitted.push(Emitted::new(
                    event_type,
                    EventData::Finding(FindingData {
                        finding_id: FindingId::from_uuid(*id),
                        scan_id: scan.scan_id,
                        asset_id: AssetId::from_uuid(facts.asset_id),
                        severity: severity.as_str().to_owned(),
                        title: short_title(&facts.title),
                        rule_id: facts.rule_id.clone(),
                        previous_status: previous_status.map(str::to_owned),
                    }),
                    targets,
                ));
            }
        }
    }

    let counts = applied.counts;
    // First in the outbox (ids are time-ordered), so a receiver that sees
    // deliveries in order sees the scan before its findings.
    emitted.insert(
        0,
        Emitted::new(
            EventType::ScanCompleted,
            EventData::ScanCompleted(ScanCompletedData {
                scan_id: scan.scan_id,
                asset_id: scan.asset_id,
                tool: scan.tool.to_owned(),
                tool_version: scan.tool_version.map(str::to_owned),
                scope: scan.scope.to_owned(),
                counts: ScanCountsData {
                    total: counts.total,
                    new: counts.new,
                    reopened: counts.reopened,
                    resolved: counts.resolved,
                    unchanged: counts.unchanged,
                },
                finding_events_omitted: omitted,
            }),
            subscribers.targets(EventType::ScanCompleted),
        ),
    );
    outbox::emit(tx, emitted).await?;
    Ok(())
}

/// `scan.failed`.
pub async fn scan_failed(
    tx: &mut TenantTx,
    scan_id: ScanId,
    asset_id: AssetId,
    error_kind: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    let subscribers = outbox::subscribers(tx).await?;
    let targets = subscribers.targets(EventType::ScanFailed);
    if targets.is_empty() {
        return Ok(());
    }
    let data = EventData::ScanFailed(ScanFailedData {
        scan_id,
        asset_id,
        error_kind: error_kind.to_owned(),
        message: message.to_owned(),
    });
    outbox::emit(tx, vec![Emitted::new(EventType::ScanFailed, data, targets)]).await?;
    Ok(())
}

/// Whether a posture refresh needs the previous summary at all.
pub fn wants_posture_events(subscribers: &Subscribers) -> bool {
    subscribers.any(EventType::PostureScoreChanged)
        || subscribers.any(EventType::ComplianceControlFailed)
}

/// The summary a refresh replaces.
pub struct PreviousPosture {
    pub score: i16,
    /// `None` when no endpoint wants control events (it is not read then).
    pub compliance: Option<ComplianceResult>,
}

/// The summary a refresh stored.
pub struct NewPosture<'a> {
    pub score: i16,
    pub grade: &'a str,
    pub compliance: &'a ComplianceResult,
    pub computed_at: DateTime<Utc>,
}

/// Who hears of a new score: endpoints grouped by the score they compare
/// with, and the baselines to record.
#[derive(Debug, Default, PartialEq, Eq)]
struct ScoreNews {
    /// Baseline → endpoints told of the change from it.
    by_baseline: HashMap<i16, Vec<Uuid>>,
    /// Endpoints told (their baseline becomes the new score).
    told: Vec<Uuid>,
    /// Endpoints never told before and not told now (their baseline starts).
    started: Vec<Uuid>,
}

/// Each endpoint compares the new score with the score it was last told
/// about (or, never told, the previous score), so a drift of many small steps
/// is reported once it adds up to the endpoint's threshold.
fn score_news(subscribers: &Subscribers, previous: Option<i16>, score: i16) -> ScoreNews {
    let mut news = ScoreNews::default();
    for subscriber in subscribers.of(EventType::PostureScoreChanged) {
        match subscriber.score_baseline.or(previous) {
            Some(baseline) if i32::from((score - baseline).abs()) >= subscriber.score_threshold => {
                news.by_baseline
                    .entry(baseline)
                    .or_default()
                    .push(subscriber.id);
                news.told.push(subscriber.id);
            }
            _ if subscriber.score_baseline.is_none() => news.started.push(subscriber.id),
            _ => {}
        }
    }
    news
}

/// `posture.score_changed` and `compliance.control_failed` for a stored
/// refresh. Without a previous summary (the tenant's first) there is no
/// change to report; controls failing in it are reported (they were not
/// assessed before).
pub async fn posture_refreshed(
    tx: &mut TenantTx,
    subscribers: &Subscribers,
    previous: Option<&PreviousPosture>,
    new: NewPosture<'_>,
) -> Result<(), sqlx::Error> {
    let mut emitted = Vec::new();

    let ScoreNews {
        by_baseline,
        told,
        started,
    } = score_news(
        subscribers,
        previous.map(|previous| previous.score),
        new.score,
    );
    let mut baselines: Vec<(i16, Vec<Uuid>)> = by_baseline.into_iter().collect();
    baselines.sort_by_key(|(baseline, _)| *baseline);
    for (baseline, targets) in baselines {
        emitted.push(Emitted::new(
            EventType::PostureScoreChanged,
            EventData::ScoreChanged(ScoreChangedData {
                previous_score: baseline,
                score: new.score,
                change: new.score - baseline,
                grade: new.grade.to_owned(),
                computed_at: new.computed_at,
            }),
            targets,
        ));
    }
    outbox::set_score_baseline(tx, &told, new.score).await?;
    // Endpoints never told start from the score before this change (or this
    // one, for the tenant's first): later changes add up from there.
    let start = previous.map_or(new.score, |previous| previous.score);
    outbox::set_score_baseline(tx, &started, start).await?;

    let control_targets = subscribers.targets(EventType::ComplianceControlFailed);
    if !control_targets.is_empty() {
        let was_failing: HashSet<(&str, &str)> = previous
            .and_then(|previous| previous.compliance.as_ref())
            .map(|compliance| {
                compliance
                    .frameworks
                    .iter()
                    .flat_map(|framework| {
                        framework
                            .controls
                            .iter()
                            .filter(|control| control.status == ControlStatus::Failed)
                            .map(|control| (framework.id.as_str(), control.id.as_str()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let previous_status = |framework: &str, control: &str| -> &'static str {
            let status = previous
                .and_then(|previous| previous.compliance.as_ref())
                .and_then(|compliance| {
                    compliance
                        .frameworks
                        .iter()
                        .find(|f| f.id == framework)
                        .and_then(|f| f.controls.iter().find(|c| c.id == control))
                        .map(|c| c.status)
                });
            match status {
                Some(ControlStatus::Passed) => "passed",
                _ => "not_assessed",
            }
        };
        let newly_failed = new.compliance.frameworks.iter().flat_map(|framework| {
            framework
                .controls
                .iter()
                .filter(|control| control.status == ControlStatus::Failed)
                .filter(|control| {
                    !was_failing.contains(&(framework.id.as_str(), control.id.as_str()))
                })
                .map(move |control| (framework, control))
        });
        for (framework, control) in newly_failed.take(MAX_CONTROL_EVENTS_PER_REFRESH) {
            emitted.push(Emitted::new(
                EventType::ComplianceControlFailed,
                EventData::ControlFailed(ControlFailedData {
                    framework_id: framework.id.clone(),
                    control_id: control.id.clone(),
                    control_title: control.title.clone(),
                    previous_status: previous_status(&framework.id, &control.id).to_owned(),
                    failing_findings: control.failing_findings,
                    computed_at: new.computed_at,
                }),
                control_targets.clone(),
            ));
        }
    }
    outbox::emit(tx, emitted).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::Subscriber;

    fn subscriber(threshold: i32, baseline: Option<i16>) -> Subscriber {
        Subscriber {
            id: Uuid::now_v7(),
            event_types: vec!["posture.score_changed".into()],
            min_severity: "high".into(),
            score_threshold: threshold,
            score_baseline: baseline,
        }
    }

    #[test]
    fn a_slow_drift_is_reported_once_it_adds_up_to_the_threshold() {
        // Told of 80 last; the score slides 78, 76, 75: the third step is news.
        let endpoint = subscriber(5, Some(80));
        let id = endpoint.id;
        let subscribers = Subscribers(vec![endpoint]);
        assert_eq!(score_news(&subscribers, Some(80), 78), ScoreNews::default());
        assert_eq!(score_news(&subscribers, Some(78), 76), ScoreNews::default());
        let news = score_news(&subscribers, Some(76), 75);
        assert_eq!(news.by_baseline, HashMap::from([(80, vec![id])]));
        assert_eq!(news.told, vec![id]);
    }

    #[test]
    fn endpoints_never_told_start_from_the_previous_score() {
        let fresh = subscriber(5, None);
        let sensitive = subscriber(1, None);
        let (fresh_id, sensitive_id) = (fresh.id, sensitive.id);
        let subscribers = Subscribers(vec![fresh, sensitive]);
        let news = score_news(&subscribers, Some(70), 72);
        assert_eq!(news.by_baseline, HashMap::from([(70, vec![sensitive_id])]));
        assert_eq!(news.started, vec![fresh_id]);
        // The tenant's first summary: nothing to compare with, everyone starts.
        let first = score_news(&subscribers, None, 90);
        assert!(first.by_baseline.is_empty());
        assert_eq!(first.started.len(), 2);
    }
}
