//! A circuit breaker for Redis: a small state machine of our own.
//!
//! ```text
//!            failure rate ≥ threshold over the window
//!            (after `minimum_calls`)
//!   Closed ───────────────────────────────────────────▶ Open
//!     ▲                                                  │ open_wait elapsed
//!     │ every probe succeeded                            ▼
//!     └──────────────────────────────────────────── HalfOpen ──(a probe failed)──▶ Open
//! ```
//!
//! - **Closed**: every call goes through; each outcome (success, failure, or a
//!   call slower than `slow_call` — a hung Redis is as bad as a dead one) enters
//!   a count-based sliding window of the last `window` calls. Once the window
//!   holds at least `minimum_calls` outcomes and the failure rate reaches
//!   `failure_rate`, the breaker opens.
//! - **Open**: no call goes through ([`CircuitBreaker::try_acquire`] returns
//!   `None`); the caller serves from PostgreSQL without waiting on Redis.
//! - **HalfOpen**: after `open_wait`, up to `half_open_probes` calls go through
//!   as probes. All succeeding closes the breaker (with a fresh window); one
//!   failing reopens it for another `open_wait`.
//!
//! Operators can force it open (maintenance) or closed; a forced state holds
//! until released. Time is passed in (`now`), so tests drive the clock.
//! The defaults follow resilience4j's (50 % over a window of 100, half-open
//! probes) with a minimum of 20 calls and a short wait, because Redis errors
//! are cheap to detect and a long open period means a long cold cache.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When the breaker opens and how it recovers.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Outcomes kept in the sliding window.
    pub window: usize,
    /// Outcomes needed in the window before the failure rate is judged.
    pub minimum_calls: usize,
    /// Failure rate (0–1) at which the breaker opens.
    pub failure_rate: f64,
    /// A call at least this slow counts as a failure.
    pub slow_call: Duration,
    /// How long the breaker stays open before probing.
    pub open_wait: Duration,
    /// Probe calls admitted while half-open.
    pub half_open_probes: usize,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            window: 100,
            minimum_calls: 20,
            failure_rate: 0.5,
            slow_call: Duration::from_millis(50),
            open_wait: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

/// The breaker's state, as reported in metrics and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
    /// Held open by an operator.
    ForcedOpen,
    /// Held closed by an operator.
    ForcedClosed,
}

impl BreakerState {
    /// The name used in metrics and health.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
            BreakerState::ForcedClosed => "forced_closed",
        }
    }
}

/// Permission to make one call; hand it back with the outcome.
#[derive(Debug)]
#[must_use = "record the call's outcome with CircuitBreaker::record"]
pub struct Permit {
    /// Admitted as a half-open probe (counted against `half_open_probes`).
    probe: bool,
    /// The breaker's generation when admitted: outcomes of calls admitted
    /// before a transition do not count after it.
    generation: u64,
}

/// How a call through the breaker went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// An error or a timeout.
    Failure,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    /// `true` = failed (or slow), most recent last.
    window: VecDeque<bool>,
    failures: usize,
    opened_at: Option<Instant>,
    probes_admitted: usize,
    probes_succeeded: usize,
    /// Bumped on every transition.
    generation: u64,
    transitions: u64,
}

/// A thread-safe circuit breaker (see the module docs).
#[derive(Debug)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        CircuitBreaker {
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                window: VecDeque::with_capacity(settings.window),
                failures: 0,
                opened_at: None,
                probes_admitted: 0,
                probes_succeeded: 0,
                generation: 0,
                transitions: 0,
            }),
            settings,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves consistent state (every update
        // is a few assignments), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state (an open breaker whose wait is over reports half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        inner.state
    }

    /// State transitions since start.
    pub fn transitions(&self) -> u64 {
        self.lock().transitions
    }

    /// Asks to make a call: `None` means do not call Redis now.
    pub fn try_acquire(&self, now: Instant) -> Option<Permit> {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        match inner.state {
            BreakerState::Closed | BreakerState::ForcedClosed => Some(Permit {
                probe: false,
                generation: inner.generation,
            }),
            BreakerState::Open | BreakerState::ForcedOpen => None,
            BreakerState::HalfOpen => (inner.probes_admitted < self.settings.half_open_probes)
                .then(|| {
                    inner.probes_admitted += 1;
                    Permit {
                        probe: true,
                        generation: inner.generation,
                    }
                }),
        }
    }

    /// Records how a permitted call went; `elapsed` at or above `slow_call`
    /// counts as a failure even if it succeeded.
    pub fn record(&self, permit: Permit, outcome: Outcome, elapsed: Duration, now: Instant) {
        let failed = outcome == Outcome::Failure || elapsed >= self.settings.slow_call;
        let mut inner = self.lock();
        if permit.generation != inner.generation {
            return; // Admitted before the last transition: no longer relevant.
        }
        match inner.state {
            BreakerState::Closed => {
                inner.window.push_back(failed);
                inner.failures += usize::from(failed);
                if inner.window.len() > self.settings.window {
                    let dropped = inner.window.pop_front().unwrap_or(false);
                    inner.failures -= usize::from(dropped);
                }
                let calls = inner.window.len();
                if calls >= self.settings.minimum_calls.max(1)
                    && inner.failures as f64 >= self.settings.failure_rate * calls as f64
                {
                    Self::transition(&mut inner, BreakerState::Open, Some(now));
                }
            }
            BreakerState::HalfOpen if permit.probe => {
                if failed {
                    Self::transition(&mut inner, BreakerState::Open, Some(now));
                } else {
                    inner.probes_succeeded += 1;
                    if inner.probes_succeeded >= self.settings.half_open_probes {
                        Self::transition(&mut inner, BreakerState::Closed, None);
                    }
                }
            }
            _ => {}
        }
    }

    /// Returns a permit whose call was never made (shed before it was sent):
    /// no outcome is recorded, and a half-open probe's turn goes to the
    /// next call.
    pub fn release(&self, permit: Permit) {
        let mut inner = self.lock();
        if permit.probe
            && permit.generation == inner.generation
            && inner.state == BreakerState::HalfOpen
        {
            inner.probes_admitted = inner.probes_admitted.saturating_sub(1);
        }
    }

    /// Holds the breaker open (`Some(true)`), closed (`Some(false)`), or
    /// releases it to closed with a fresh window (`None`).
    pub fn force(&self, forced: Option<bool>) {
        let mut inner = self.lock();
        let state = match forced {
            Some(true) => BreakerState::ForcedOpen,
            Some(false) => BreakerState::ForcedClosed,
            None => BreakerState::Closed,
        };
        Self::transition(&mut inner, state, None);
    }

    /// Open → half-open once the wait is over.
    fn advance(&self, inner: &mut Inner, now: Instant) {
        if inner.state == BreakerState::Open
            && inner.opened_at.is_some_and(|opened| {
                now.saturating_duration_since(opened) >= self.settings.open_wait
            })
        {
            Self::transition(inner, BreakerState::HalfOpen, None);
        }
    }

    fn transition(inner: &mut Inner, state: BreakerState, now: Option<Instant>) {
        if inner.state != state {
            inner.transitions += 1;
            tracing::info!(
                from = inner.state.as_str(),
                to = state.as_str(),
                "redis circuit breaker"
            );
        }
        inner.state = state;
        inner.generation += 1;
        inner.window.clear();
        inner.failures = 0;
        inner.probes_admitted = 0;
        inner.probes_succeeded = 0;
        inner.opened_at = now;
    }
}

#[cfg(test)]
mod tests;
