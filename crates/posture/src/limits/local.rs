//! The in-process limiter: what a server enforces on its own while Redis is
//! unavailable (the breaker is open, or a call failed), and for client IPs.
//!
//! **GCRA** (the generic cell rate algorithm, as in the `governor` crate) at
//! the quota's per-minute rate with a burst of the whole quota: each subject
//! keeps one instant, its theoretical arrival time (TAT). A request at `now`
//! is admitted if `TAT − now ≤ 60 s − T` (T = 60 s / quota), and moves the TAT
//! by T. One number per subject, no log. The trade-off, accepted for an
//! outage: a full burst followed by the steady rate can admit up to twice the
//! quota in one 60-second window, and every instance admits its own quota.
//! Written here rather than taken from `governor` because the quota differs
//! per tenant and time must come from the injectable clock.

use super::policy::{Counts, WINDOW_MS};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One subject's GCRA state.
#[derive(Debug, Clone, Copy)]
struct Cell {
    /// Theoretical arrival time, µs since the epoch.
    tat_micros: i64,
    quota: u64,
}

/// The window in microseconds.
const WINDOW_MICROS: i64 = WINDOW_MS * 1_000;

/// The largest per-minute quota the local limiter enforces exactly.
pub const MAX_QUOTA: u64 = 1_000_000;

/// Per-minute GCRA limiters keyed by subject (a tenant, a client IP).
pub struct LocalLimiter<K: Hash + Eq + Send + Sync + 'static> {
    cells: moka::sync::Cache<K, Arc<Mutex<Cell>>>,
}

/// What the local limiter decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalDecision {
    pub admitted: bool,
    /// The requests the window holds now, as GCRA sees it (rounded up).
    pub in_window: u64,
    /// When one more request would be admitted.
    pub frees_at: Option<DateTime<Utc>>,
}

impl LocalDecision {
    /// As the minute part of [`Counts`] (day and month come from elsewhere).
    pub fn counts(&self, day: u64, month: u64) -> Counts {
        Counts {
            minute: self.in_window,
            minute_frees_at: self.frees_at,
            day,
            month,
        }
    }
}

impl<K: Hash + Eq + Send + Sync + Clone + 'static> LocalLimiter<K> {
    /// At most `capacity` subjects; one unseen for two windows is forgotten
    /// (its state has fully drained by then).
    pub fn new(capacity: u64) -> Self {
        LocalLimiter {
            cells: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(Duration::from_millis(2 * WINDOW_MS as u64))
                .build(),
        }
    }

    /// Admits or refuses one request of `subject` at `now` against `quota`
    /// requests per minute. A changed quota (a tier change) applies at once.
    pub fn check(&self, subject: &K, quota: u64, now: DateTime<Utc>) -> LocalDecision {
        self.decide(subject, quota, now, true)
    }

    /// What [`Self::check`] would decide now, without counting anything.
    pub fn peek(&self, subject: &K, quota: u64, now: DateTime<Utc>) -> LocalDecision {
        self.decide(subject, quota, now, false)
    }

    /// Whether one more request of `subject` would be refused now, without
    /// counting it; `Some(when it frees)` if so.
    pub fn over_limit(&self, subject: &K, quota: u64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.cells.contains_key(subject) {
            return None;
        }
        let decision = self.decide(subject, quota, now, false);
        (!decision.admitted).then(|| decision.frees_at.unwrap_or(now))
    }

    fn decide(&self, subject: &K, quota: u64, now: DateTime<Utc>, count: bool) -> LocalDecision {
        // Microseconds, and at most one request per microsecond per window's
        // worth, so the emission interval is never zero.
        let quota = quota.clamp(1, MAX_QUOTA);
        let cell = self.cells.get_with_by_ref(subject, || {
            Arc::new(Mutex::new(Cell {
                tat_micros: i64::MIN,
                quota,
            }))
        });
        let mut cell = cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cell.quota = quota;
        let now_micros = now.timestamp_micros();
        let emission = WINDOW_MICROS / i64::try_from(quota).unwrap_or(i64::MAX);
        let tolerance = WINDOW_MICROS - emission;
        let tat = cell.tat_micros.max(now_micros);
        let admitted = tat - now_micros <= tolerance;
        let new_tat = if admitted { tat + emission } else { tat };
        if count {
            cell.tat_micros = new_tat;
        }
        let backlog = new_tat.max(now_micros) - now_micros;
        let in_window = u64::try_from((backlog + emission - 1) / emission).unwrap_or(0);
        // One more fits once the backlog is back down to the tolerance.
        let frees_in = (backlog - tolerance).max(0);
        LocalDecision {
            admitted,
            in_window: in_window.min(quota),
            frees_at: (in_window > 0).then(|| now + ChronoDuration::microseconds(frees_in)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + (seconds * 1000.0) as i64).unwrap()
    }

    #[test]
    fn a_burst_of_the_quota_then_the_steady_rate() {
        let limiter = LocalLimiter::<u32>::new(100);
        let admitted = (0..15)
            .filter(|_| limiter.check(&1, 10, at(0.0)).admitted)
            .count();
        assert_eq!(admitted, 10, "a burst of the whole quota");
        let refused = limiter.check(&1, 10, at(0.0));
        assert!(!refused.admitted);
        assert_eq!(refused.in_window, 10);
        // One request's worth (6 s at 10/minute) frees up after 6 s.
        assert_eq!(refused.frees_at, Some(at(6.0)));
        assert!(!limiter.check(&1, 10, at(5.9)).admitted);
        assert!(limiter.check(&1, 10, at(6.0)).admitted);
        assert!(!limiter.check(&1, 10, at(6.0)).admitted);
        // Other subjects are independent.
        assert!(limiter.check(&2, 10, at(6.0)).admitted);
    }

    #[test]
    fn the_steady_rate_never_exceeds_twice_the_quota_in_a_window() {
        let limiter = LocalLimiter::<u32>::new(100);
        // A request every 100 ms for five minutes against 10/minute.
        let admitted: Vec<f64> = (0..3_000)
            .map(|i| f64::from(i) * 0.1)
            .filter(|&t| limiter.check(&1, 10, at(t)).admitted)
            .collect();
        for (i, start) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|&&t| t < start + 60.0)
                .count();
            assert!(in_window < 20, "{in_window} admitted from {start}");
        }
        // And over the long run, the quota's rate: 10 + 10 per minute after.
        assert!((55..=61).contains(&admitted.len()), "{}", admitted.len());
    }

    #[test]
    fn peeking_counts_nothing_and_huge_quotas_do_not_divide_by_zero() {
        let limiter = LocalLimiter::<u32>::new(100);
        assert_eq!(limiter.over_limit(&1, 2, at(0.0)), None, "never seen");
        assert!(limiter.check(&1, 2, at(0.0)).admitted);
        assert_eq!(limiter.over_limit(&1, 2, at(0.0)), None);
        assert!(limiter.check(&1, 2, at(0.0)).admitted);
        // Full: peeking says so, repeatedly, without moving the state.
        assert_eq!(limiter.over_limit(&1, 2, at(0.0)), Some(at(30.0)));
        assert_eq!(limiter.over_limit(&1, 2, at(0.0)), Some(at(30.0)));
        assert!(limiter.check(&1, 2, at(30.0)).admitted);
        for quota in [60_000, 100_000, u64::MAX] {
            assert!(limiter.check(&2, quota, at(0.0)).admitted, "{quota}");
        }
    }
}
