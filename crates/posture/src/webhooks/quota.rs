//! `quota.warning` and `quota.exceeded`, without database work on the request
//! path.
//!
//! The limiter shows every decision to [`QuotaAlerts::observe`], which spots
//! the request that crossed 80 % of the day's or month's quota, the one that
//! used the last of it, and any refusal by those quotas. Such an alert goes
//! through a bounded channel to [`write_alerts`], which writes the event in
//! the tenant's transaction under a dedupe key naming the tenant, the event
//! and the period: servers racing on the same crossing write it once, and a
//! tenant hears about each period's warning and exhaustion once.
//!
//! Counters live in Redis (issue 6), so there is no PostgreSQL transaction to
//! join; the alert reaches the outbox within moments of the request. A
//! refusal re-sends the `exceeded` alert (deduplicated), so a crossing lost
//! with a crashed server is still announced while the tenant keeps trying.

use super::events::{Emitted, EventData, QuotaData};
use crate::limits::policy::{Decision, Periods, PolicyName};
use crate::store::{outbox, Store};
use chrono::{DateTime, NaiveDate, Utc};
use posture_domain::webhook::EventType;
use posture_domain::TenantId;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Alerts waiting to be written; beyond this they are dropped (and logged).
const CHANNEL_CAPACITY: usize = 1_024;

/// Alerts remembered as sent by this server; past it the memory is cleared
/// (the database's dedupe key still holds).
const MAX_REMEMBERED: usize = 100_000;

/// The share of a quota at which `quota.warning` is sent, in percent.
pub const WARNING_PERCENT: u64 = 80;

/// One quota alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaAlert {
    pub tenant: TenantId,
    pub event_type: EventType,
    /// `day` or `month`.
    pub period: &'static str,
    pub period_start: NaiveDate,
    pub resets_at: DateTime<Utc>,
    pub limit: u64,
    pub used: u64,
}

/// What makes an alert the same alert: one per tenant, type, period kind and
/// period. Copied and compared on the request path, so it holds no string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AlertKey {
    tenant: TenantId,
    event_type: EventType,
    period: &'static str,
    period_start: NaiveDate,
}

impl QuotaAlert {
    fn key(&self) -> AlertKey {
        AlertKey {
            tenant: self.tenant,
            event_type: self.event_type,
            period: self.period,
            period_start: self.period_start,
        }
    }

    /// The event's dedupe key in PostgreSQL (unique per tenant).
    fn dedupe_key(&self) -> String {
        format!("{}:{}:{}", self.event_type, self.period, self.period_start)
    }
}

/// Alerts handed to the writer and not failed. Once a tenant is past a mark,
/// every one of its requests asks again, so asking takes only a read lock.
type Handed = Arc<RwLock<HashSet<AlertKey>>>;

/// Spots alerts and hands them to the writer.
pub struct QuotaAlerts {
    sender: mpsc::Sender<QuotaAlert>,
    receiver: Mutex<Option<mpsc::Receiver<QuotaAlert>>>,
    sent: Handed,
}

impl Default for QuotaAlerts {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        QuotaAlerts {
            sender,
            receiver: Mutex::new(Some(receiver)),
            sent: Handed::default(),
        }
    }
}

/// The alerts a decision calls for (pure: the limiter's unit of truth).
pub fn alerts_for(tenant: TenantId, decision: &Decision) -> Vec<QuotaAlert> {
    // The calendar is worked out only for a decision that raises an alert.
    let periods = std::cell::OnceCell::new();
    let periods = || *periods.get_or_init(|| Periods::at(decision.decided_at));
    let admitted = decision.refused_by.is_none();
    decision
        .states
        .iter()
        .filter_map(|state| {
            if state.name == PolicyName::Minute {
                return None;
            }
            let limit = state.quota?;
            // `used` includes this request when it was admitted.
            let warning_at = (limit * WARNING_PERCENT).div_ceil(100).max(1);
            // At or past the mark, not exactly on it: counts can skip values
            // (re-seeded from PostgreSQL, estimated locally, several servers);
            // the dedupe keys keep it to one event per period.
            let event_type =
                if decision.refused_by == Some(state.name) || (admitted && state.used >= limit) {
                    EventType::QuotaExceeded
                } else if admitted && state.used >= warning_at {
                    EventType::QuotaWarning
                } else {
                    return None;
                };
            let periods = periods();
            let (period, period_start, resets_at) = match state.name {
                PolicyName::Day => ("day", periods.day, periods.day_ends),
                _ => ("month", periods.month, periods.month_ends),
            };
            Some(QuotaAlert {
                tenant,
                event_type,
                period,
                period_start,
                resets_at,
                limit,
                used: state.used.min(limit),
            })
        })
        .collect()
}

impl QuotaAlerts {
    /// Looks at one decision; cheap when it calls for no alert (nearly always).
    pub fn observe(&self, tenant: TenantId, decision: &Decision) {
        for alert in alerts_for(tenant, decision) {
            let key = alert.key();
            if self
                .sent
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key)
            {
                continue;
            }
            {
                let mut sent = self.sent.write().unwrap_or_else(|p| p.into_inner());
                if sent.len() >= MAX_REMEMBERED {
                    sent.clear();
                }
                if !sent.insert(key) {
                    continue; // Another request handed it over meanwhile.
                }
            }
            if self.sender.try_send(alert).is_err() {
                // Not handed over: a later decision raises it again.
                forget(&self.sent, key);
                tracing::warn!("quota alert dropped: the writer is behind");
            }
        }
    }

    /// The receiving end, for the one writer task (`None` once taken), with
    /// what the writer needs to let a failed alert be raised again.
    pub fn take_receiver(&self) -> Option<AlertReceiver> {
        let receiver = self
            .receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        Some(AlertReceiver {
            receiver,
            sent: self.sent.clone(),
        })
    }
}

/// The writer's end of the alerts.
pub struct AlertReceiver {
    receiver: mpsc::Receiver<QuotaAlert>,
    sent: Handed,
}

fn forget(sent: &Handed, key: AlertKey) {
    sent.write().unwrap_or_else(|p| p.into_inner()).remove(&key);
}

/// Writes alerts to the outbox until `shutdown` (then drains what is queued).
/// An alert that could not be written is forgotten, so the tenant's next
/// request at or past the mark raises it again.
pub async fn write_alerts(store: Store, alerts: AlertReceiver, shutdown: CancellationToken) {
    let AlertReceiver { mut receiver, sent } = alerts;
    loop {
        let alert = tokio::select! {
            alert = receiver.recv() => alert,
            () = shutdown.cancelled() => {
                receiver.close();
                receiver.recv().await
            }
        };
        let Some(alert) = alert else { return };
        if let Err(error) = write(&store, &alert).await {
            forget(&sent, alert.key());
            tracing::warn!(%error, tenant_id = %alert.tenant, event = %alert.event_type, "quota alert not written");
        }
    }
}

/// Writes one alert's event (once per dedupe key) to the endpoints that want it.
pub async fn write(store: &Store, alert: &QuotaAlert) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_tenant(alert.tenant).await?;
    let targets = outbox::subscribers(&mut tx)
        .await?
        .targets(alert.event_type);
    if targets.is_empty() {
        return Ok(());
    }
    let mut event = Emitted::new(
        alert.event_type,
        EventData::Quota(QuotaData {
            period: alert.period.to_owned(),
            period_start: alert.period_start,
            limit: alert.limit,
            used: alert.used,
            resets_at: alert.resets_at,
        }),
        targets,
    );
    event.dedupe_key = Some(alert.dedupe_key());
    outbox::emit(&mut tx, vec![event]).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::policy::{decide, Counts};
    use chrono::TimeZone;
    use posture_domain::Tier;

    fn decision(day: u64, month: u64, refused_by: Option<PolicyName>) -> Decision {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let counts = Counts {
            minute: 1,
            minute_frees_at: None,
            day,
            month,
        };
        decide(Tier::Free, refused_by, &counts, now)
    }

    fn kinds(alerts: &[QuotaAlert]) -> Vec<(EventType, &'static str)> {
        alerts
            .iter()
            .map(|alert| (alert.event_type, alert.period))
            .collect()
    }

    #[test]
    fn the_crossing_request_and_the_last_one_raise_alerts() {
        let tenant = TenantId::new_random();
        // Free: 1,000 a day, 10,000 a month.
        assert!(alerts_for(tenant, &decision(799, 5_000, None)).is_empty());
        assert_eq!(
            kinds(&alerts_for(tenant, &decision(800, 5_000, None))),
            [(EventType::QuotaWarning, "day")]
        );
        // Past the mark too (counts can skip it); deduplicated downstream.
        assert_eq!(
            kinds(&alerts_for(tenant, &decision(850, 5_000, None))),
            [(EventType::QuotaWarning, "day")]
        );
        assert_eq!(
            kinds(&alerts_for(tenant, &decision(1_000, 8_000, None))),
            [
                (EventType::QuotaExceeded, "day"),
                (EventType::QuotaWarning, "month")
            ]
        );
        let refused = alerts_for(tenant, &decision(1_000, 8_100, Some(PolicyName::Day)));
        assert_eq!(kinds(&refused), [(EventType::QuotaExceeded, "day")]);
        assert_eq!(refused[0].dedupe_key(), "quota.exceeded:day:2026-11-23");
        assert_eq!(
            refused[0].resets_at,
            Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap()
        );
        // The minute never raises one.
        assert!(alerts_for(tenant, &decision(10, 10, Some(PolicyName::Minute))).is_empty());
    }

    #[test]
    fn an_alert_is_handed_over_once() {
        let alerts = QuotaAlerts::default();
        let mut receiver = alerts.take_receiver().unwrap().receiver;
        let tenant = TenantId::new_random();
        alerts.observe(tenant, &decision(800, 10, None));
        alerts.observe(tenant, &decision(801, 10, None));
        assert!(receiver.try_recv().is_ok());
        assert!(receiver.try_recv().is_err());
        // Forgotten (its write failed): raised again.
        let warning = alerts_for(tenant, &decision(800, 10, None)).remove(0);
        assert_eq!(warning.dedupe_key(), "quota.warning:day:2026-11-23");
        forget(&alerts.sent, warning.key());
        alerts.observe(tenant, &decision(802, 10, None));
        assert!(receiver.try_recv().is_ok());
    }
}
