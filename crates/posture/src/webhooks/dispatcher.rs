//! The dispatcher: sends committed deliveries, retries the failed ones on a
//! schedule, and disables endpoints that are gone or keep failing.
//!
//! One loop per process claims due deliveries (`FOR UPDATE SKIP LOCKED`, so
//! any number of processes share the work) as long as it has free sending
//! slots, and sends each in its own task. A delivery goes through three short
//! steps, and no database transaction is open during the HTTP call:
//!
//! 1. read the delivery, its event and its endpoint (one short transaction);
//! 2. send it ([`WebhookClient::attempt`]: SSRF-vetted, time-limited);
//! 3. record the attempt and what follows — success, the next retry, failure,
//!    the endpoint disabled — in one transaction, only if this dispatcher
//!    still holds the delivery's lease.
//!
//! A dispatcher that dies mid-attempt leaves its lease to expire; the
//! delivery is then claimed again (its lost attempt counted): at least once.

use super::client::{Outcome, WebhookClient};
use super::events::{EventData, WebhookDisabledData};
use crate::store::audit::{self, AuditEntry};
use crate::store::deliveries::{
    self, AttemptRecord, ClaimRules, ClaimedDelivery, DeliveryWork, NextStep,
};
use crate::store::outbox::{self, WEBHOOKS_CHANNEL};
use crate::store::{notifications, Store};
use crate::webhooks::events::Emitted;
use chrono::{DateTime, Utc};
use posture_domain::ids::{EventId, WebhookId};
use posture_domain::webhook::{EventType, WebhookSecret, WebhookUrl};
use rand::Rng;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Most deliveries of one endpoint in flight at once, across dispatchers: one
/// slow endpoint cannot take every sending slot from the other tenants.
pub const PER_ENDPOINT_IN_FLIGHT: i32 = 4;

/// How the dispatcher of one process behaves.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// Deliveries sent at once (0: no dispatcher in this process).
    pub concurrency: usize,
    /// The wait after the 1st, 2nd, … failed attempt; its length is the number
    /// of automatic retries.
    pub schedule: Vec<Duration>,
    /// Each wait is lengthened by up to this fraction, at random (0.0–1.0),
    /// so an endpoint's retries do not arrive in lockstep after an outage.
    pub jitter: f64,
    /// An endpoint whose deliveries have failed for this long is disabled.
    pub disable_after: Duration,
    /// How long a claimed delivery is held; longer than an attempt can take.
    pub lease: Duration,
    /// Idle dispatchers look for due retries this often.
    pub poll_interval: Duration,
}

impl DispatcherSettings {
    /// The wait before the retry that follows failed attempt `attempt`
    /// (1-based), jitter not included. Attempts beyond the schedule (manual
    /// retries) wait like the last step.
    pub fn delay_after(&self, attempt: i32) -> Duration {
        let index = usize::try_from(attempt.max(1) - 1).unwrap_or(0);
        self.schedule
            .get(index)
            .or(self.schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(5))
    }

    /// The number of attempts a delivery gets without a manual retry.
    pub fn automatic_attempts(&self) -> i32 {
        i32::try_from(self.schedule.len() + 1).unwrap_or(i32::MAX)
    }
}

/// Text a receiver controls, made storable: PostgreSQL refuses NUL in text
/// (and a refused write would leave the attempt unrecorded), and the log's
/// columns are bounded.
fn storable(text: &str, max_chars: usize) -> String {
    text.chars()
        .take(max_chars)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

/// Parses a schedule like `5s,5m,30m,2h,5h,10h,10h` (units ms, s, m, h).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let steps: Vec<Duration> = text
        .split(',')
        .map(str::trim)
        .filter(|step| !step.is_empty())
        .map(|step| {
            let split = step
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| format!("{step:?} has no unit (ms, s, m or h)"))?;
            let (number, unit) = step.split_at(split);
            let number: u64 = number
                .parse()
                .map_err(|_| format!("{step:?} does not start with a number"))?;
            let millis = match unit {
                "ms" => Some(number),
                "s" => number.checked_mul(1_000),
                "m" => number.checked_mul(60_000),
                "h" => number.checked_mul(3_600_000),
                _ => return Err(format!("{step:?}: the unit must be ms, s, m or h")),
            };
            match millis {
                Some(millis) if (1..=86_400_000).contains(&millis) => {
                    Ok(Duration::from_millis(millis))
                }
                _ => Err(format!("{step:?} must be between 1 ms and 24 h")),
            }
        })
        .collect::<Result<_, _>>()?;
    if steps.is_empty() || steps.len() > 20 {
        return Err("name 1 to 20 steps".to_owned());
    }
    Ok(steps)
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct DispatchMetrics {
    /// Attempts answered 2xx.
    pub delivered: AtomicU64,
    /// Attempts answered with another status.
    pub refused: AtomicU64,
    /// Attempts without an answer (refused destination, network, timeout).
    pub failed: AtomicU64,
    /// Endpoints the platform disabled.
    pub endpoints_disabled: AtomicU64,
}

/// What a dispatcher task needs.
#[derive(Clone)]
struct Dispatcher {
    store: Store,
    client: WebhookClient,
    settings: Arc<DispatcherSettings>,
    worker: Arc<str>,
    metrics: Arc<DispatchMetrics>,
}

/// Starts the dispatcher `config` describes (none when `webhook_concurrency`
/// is 0).
pub fn spawn_from_config(
    store: Store,
    config: &crate::config::Config,
    metrics: Arc<DispatchMetrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let settings = config.dispatcher_settings();
    if settings.concurrency == 0 {
        return Ok(Vec::new());
    }
    let client = WebhookClient::new(config.webhook_policy(), config.webhook_timeouts())?;
    Ok(spawn_dispatcher(store, client, settings, metrics, shutdown))
}

/// Appends the dispatcher's counters to `/metrics` in the Prometheus text format.
pub fn render_metrics(out: &mut String, metrics: &DispatchMetrics) {
    use std::fmt::Write;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    out.push_str(
        "# HELP posture_webhook_attempts_total Webhook delivery attempts by this process, by outcome.\n\
         # TYPE posture_webhook_attempts_total counter\n",
    );
    for (outcome, counter) in [
        ("delivered", &metrics.delivered),
        ("refused", &metrics.refused),
        ("failed", &metrics.failed),
    ] {
        let _ = writeln!(
            out,
            "posture_webhook_attempts_total{{outcome=\"{outcome}\"}} {}",
            load(counter)
        );
    }
    let _ = writeln!(
        out,
        "# HELP posture_webhook_endpoints_disabled_total Endpoints this process disabled (410 Gone, or failing for days).\n\
         # TYPE posture_webhook_endpoints_disabled_total counter\n\
         posture_webhook_endpoints_disabled_total {}",
        load(&metrics.endpoints_disabled)
    );
}

/// Starts the dispatcher (and its LISTEN connection) until `shutdown`; the
/// returned handle finishes once the attempts in flight have been recorded.
pub fn spawn_dispatcher(
    store: Store,
    client: WebhookClient,
    settings: DispatcherSettings,
    metrics: Arc<DispatchMetrics>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    if settings.concurrency == 0 {
        return Vec::new();
    }
    let wake = Arc::new(Notify::new());
    let listener = {
        let wake = wake.clone();
        tokio::spawn(notifications::listen(
            store.clone(),
            WEBHOOKS_CHANNEL,
            shutdown.clone(),
            move |_| wake.notify_waiters(),
        ))
    };
    let dispatcher = Dispatcher {
        store,
        client,
        worker: format!(
            "dispatcher-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        )
        .into(),
        settings: Arc::new(settings),
        metrics,
    };
    vec![listener, tokio::spawn(run(dispatcher, wake, shutdown))]
}

async fn run(dispatcher: Dispatcher, wake: Arc<Notify>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(dispatcher.settings.concurrency));
    let mut in_flight = JoinSet::new();
    loop {
        while let Some(finished) = in_flight.try_join_next() {
            log_panic(finished);
        }
        // Wait for a free slot, then take every free one.
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        // Interest registered before claiming: a notification sent between an
        // empty claim and the wait is not missed.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let rules = ClaimRules {
            max: i32::try_from(permits.len()).unwrap_or(i32::MAX),
            lease: dispatcher.settings.lease,
            per_endpoint: PER_ENDPOINT_IN_FLIGHT,
            automatic_attempts: dispatcher.settings.automatic_attempts(),
        };
        match deliveries::claim(&dispatcher.store, &dispatcher.worker, rules).await {
            Ok(claimed) if !claimed.is_empty() => {
                for (delivery, permit) in claimed.into_iter().zip(permits) {
                    let dispatcher = dispatcher.clone();
                    in_flight.spawn(async move {
                        dispatcher.send(delivery).await;
                        drop(permit);
                    });
                }
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "claiming webhook deliveries failed"),
        }
        drop(permits);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = &mut notified => {}
            () = tokio::time::sleep(dispatcher.settings.poll_interval) => {}
        }
    }
    // Attempts in flight are recorded before the process stops (each is
    // bounded by the client's total timeout).
    while let Some(finished) = in_flight.join_next().await {
        log_panic(finished);
    }
}

/// A send task that panicked leaves its delivery `sending` until the lease
/// expires (then it is claimed again, or failed at its attempt limit).
fn log_panic(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished {
        tracing::error!(%error, "a webhook send task failed");
    }
}

impl Dispatcher {
    /// Sends one claimed delivery and records what came of it. Errors are
    /// logged: the lease expires and the delivery is claimed again.
    async fn send(&self, claimed: ClaimedDelivery) {
        if let Err(error) = self.try_send(claimed).await {
            tracing::warn!(%error, delivery = %claimed.delivery_id, "webhook delivery could not be recorded; it will be retried");
        }
    }

    async fn try_send(&self, claimed: ClaimedDelivery) -> Result<(), sqlx::Error> {
        // 1. Read, in a short transaction.
        let mut tx = self.store.begin_tenant(claimed.tenant_id).await?;
        let work = deliveries::work(&mut tx, &claimed, &self.worker).await?;
        tx.commit().await?;
        let Some(work) = work else {
            return Ok(()); // Taken over, or deleted with its endpoint.
        };
        if !work.enabled {
            let mut tx = self.store.begin_tenant(claimed.tenant_id).await?;
            if deliveries::fail_unsent(&mut tx, &claimed, &self.worker, "endpoint disabled").await?
            {
                tx.commit().await?;
            }
            return Ok(());
        }

        // 2. Send, with no transaction open.
        let attempted_at = Utc::now();
        let attempt = self.attempt(&work, attempted_at).await;
        let (status_code, error) = match &attempt.outcome {
            Outcome::Delivered { status } => {
                self.metrics.delivered.fetch_add(1, Ordering::Relaxed);
                (Some(i32::from(*status)), None)
            }
            Outcome::Refused { status, .. } => {
                self.metrics.refused.fetch_add(1, Ordering::Relaxed);
                (Some(i32::from(*status)), None)
            }
            Outcome::Failed { error } => {
                self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                (None, Some(storable(error, 2_000)))
            }
        };
        let finished_at = Utc::now();
        let next = self.next_step(&claimed, &work, &attempt.outcome, finished_at);
        let record = AttemptRecord {
            attempted_at,
            status_code,
            latency_ms: i32::try_from(attempt.latency.as_millis()).unwrap_or(i32::MAX),
            error,
            response_excerpt: storable(&attempt.response_excerpt, 4_000),
        };

        // 3. Record, if still ours.
        let mut tx = self.store.begin_tenant(claimed.tenant_id).await?;
        if !deliveries::record_attempt(&mut tx, &claimed, &self.worker, &record, next).await? {
            tracing::info!(delivery = %claimed.delivery_id, "lease lost before the attempt was recorded");
            return Ok(());
        }
        let disable = match (&attempt.outcome, next) {
            (Outcome::Delivered { .. }, _) => {
                deliveries::endpoint_succeeded(&mut tx, work.webhook_id).await?;
                None
            }
            (Outcome::Refused { gone: true, .. }, _) => Some("gone"),
            _ => {
                let since =
                    deliveries::endpoint_failed(&mut tx, work.webhook_id, attempted_at).await?;
                let failing_for = since
                    .and_then(|since| (finished_at - since).to_std().ok())
                    .unwrap_or_default();
                (failing_for >= self.settings.disable_after).then_some("failing")
            }
        };
        if let Some(reason) = disable {
            self.disable(&mut tx, work.webhook_id, reason).await?;
        }
        tx.commit().await?;
        tracing::debug!(
            delivery = %claimed.delivery_id,
            attempt = claimed.attempt,
            status = ?record.status_code,
            ?next,
            "webhook attempt recorded"
        );
        Ok(())
    }

    /// Signs and sends the event's payload.
    async fn attempt(&self, work: &DeliveryWork, now: DateTime<Utc>) -> super::client::Attempt {
        let failed = |error: String| super::client::Attempt {
            outcome: Outcome::Failed { error },
            latency: Duration::ZERO,
            response_excerpt: String::new(),
        };
        // The client applies the configured rules (https unless allowed).
        let url = match WebhookUrl::parse(&work.url, true) {
            Ok(url) => url,
            Err(error) => return failed(format!("the URL {error}")),
        };
        let Ok(current) = WebhookSecret::parse(&work.secret) else {
            return failed("the endpoint's secret is unreadable".to_owned());
        };
        let previous = work
            .previous_secret
            .as_deref()
            .filter(|_| {
                work.previous_secret_expires_at
                    .is_some_and(|until| until > now)
            })
            .and_then(|text| WebhookSecret::parse(text).ok());
        let mut secrets = vec![&current];
        secrets.extend(previous.as_ref());
        let message = super::client::Message {
            id: EventId::from_uuid(work.event_id).to_string(),
            body: serde_json::to_vec(&work.payload).unwrap_or_default(),
        };
        self.client
            .attempt(&url, &secrets, &message, now.timestamp())
            .await
    }

    /// Success, a retry at a time, or the end.
    fn next_step(
        &self,
        claimed: &ClaimedDelivery,
        work: &DeliveryWork,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> NextStep {
        let retry_after = match outcome {
            Outcome::Delivered { .. } => return NextStep::Succeeded,
            Outcome::Refused { gone: true, .. } => return NextStep::Failed,
            Outcome::Refused { retry_after, .. } => *retry_after,
            Outcome::Failed { .. } => None,
        };
        let allowed = work
            .max_attempts
            .unwrap_or_else(|| self.settings.automatic_attempts());
        if claimed.attempt >= allowed {
            return NextStep::Failed;
        }
        let scheduled = self.settings.delay_after(claimed.attempt);
        let jitter = rand::thread_rng().gen_range(0.0..=self.settings.jitter.clamp(0.0, 1.0));
        let wait = scheduled
            .mul_f64(1.0 + jitter)
            // Never sooner than the receiver asked.
            .max(retry_after.unwrap_or_default());
        NextStep::RetryAt(now + chrono::Duration::from_std(wait).unwrap_or_default())
    }

    /// Disables the endpoint for `reason`, fails its unsent deliveries, and
    /// tells the organization: an audit entry, the endpoint's
    /// `disabled_reason` (the dashboard's view of it), and a
    /// `webhook.disabled` event to its other endpoints.
    async fn disable(
        &self,
        tx: &mut crate::store::TenantTx,
        webhook_id: uuid::Uuid,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        let Some(disabled) = deliveries::disable_endpoint(tx, webhook_id, reason).await? else {
            return Ok(());
        };
        self.metrics
            .endpoints_disabled
            .fetch_add(1, Ordering::Relaxed);
        let id = WebhookId::from_uuid(webhook_id);
        tracing::warn!(tenant_id = %tx.tenant_id(), webhook = %id, reason, "webhook endpoint disabled");
        audit::record(
            tx,
            AuditEntry {
                actor: "platform",
                action: "webhook.disabled",
                target: Some(&id.to_string()),
                details: json!({ "reason": reason, "failing_since": disabled.failing_since }),
                request_id: None,
            },
        )
        .await?;
        let subscribers = outbox::subscribers(tx).await?;
        let data = EventData::WebhookDisabled(WebhookDisabledData {
            webhook_id: id,
            url: disabled.url,
            reason: reason.to_owned(),
            failing_since: disabled.failing_since,
        });
        outbox::emit(
            tx,
            vec![Emitted::new(
                EventType::WebhookDisabled,
                data,
                subscribers.targets(EventType::WebhookDisabled),
            )],
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(schedule: &str) -> DispatcherSettings {
        DispatcherSettings {
            concurrency: 1,
            schedule: parse_schedule(schedule).unwrap(),
            jitter: 0.0,
            disable_after: Duration::from_secs(5 * 86_400),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_default_schedule_parses_and_counts_eight_attempts() {
        let settings = settings("5s,5m,30m,2h,5h,10h,10h");
        assert_eq!(settings.automatic_attempts(), 8);
        assert_eq!(settings.delay_after(1), Duration::from_secs(5));
        assert_eq!(settings.delay_after(4), Duration::from_secs(7_200));
        assert_eq!(settings.delay_after(7), Duration::from_secs(36_000));
        // Beyond the schedule (a manual retry's failure): the last step.
        assert_eq!(settings.delay_after(12), Duration::from_secs(36_000));
        assert_eq!(
            parse_schedule("100ms, 2s").unwrap(),
            vec![Duration::from_millis(100), Duration::from_secs(2)]
        );
    }

    #[test]
    fn receiver_text_is_made_storable() {
        assert_eq!(storable("a\0b", 10), "a\u{FFFD}b");
        assert_eq!(storable("abcdef", 3), "abc");
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in ["", "5", "5x", "s", "0s", "25h", "-1s", &"1s,".repeat(21)] {
            assert!(parse_schedule(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
