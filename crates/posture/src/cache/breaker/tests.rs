use super::*;

const FAST: Duration = Duration::from_millis(1);

fn settings() -> BreakerSettings {
    BreakerSettings {
        window: 10,
        minimum_calls: 4,
        failure_rate: 0.5,
        slow_call: Duration::from_millis(50),
        open_wait: Duration::from_secs(5),
        half_open_probes: 2,
    }
}

/// Makes one call with the given outcome; false if the breaker refused it.
fn call(breaker: &CircuitBreaker, outcome: Outcome, now: Instant) -> bool {
    match breaker.try_acquire(now) {
        Some(permit) => {
            breaker.record(permit, outcome, FAST, now);
            true
        }
        None => false,
    }
}

#[test]
fn opens_at_the_failure_rate_only_after_the_minimum_calls() {
    let breaker = CircuitBreaker::new(settings());
    let now = Instant::now();
    // Three failures: 100 %, but below the minimum of four calls.
    for _ in 0..3 {
        assert!(call(&breaker, Outcome::Failure, now));
    }
    assert_eq!(breaker.state(now), BreakerState::Closed);
    // The fourth call makes 4 of 4: open, and nothing goes through.
    assert!(call(&breaker, Outcome::Failure, now));
    assert_eq!(breaker.state(now), BreakerState::Open);
    assert!(breaker.try_acquire(now).is_none());
}

#[test]
fn stays_closed_below_the_rate() {
    let breaker = CircuitBreaker::new(settings());
    let now = Instant::now();
    for outcome in [
        Outcome::Success,
        Outcome::Success,
        Outcome::Failure,
        Outcome::Success,
    ] {
        call(&breaker, outcome, now);
    }
    assert_eq!(breaker.state(now), BreakerState::Closed, "1 failure in 4");
    // ...and old failures slide out of the window.
    for _ in 0..20 {
        call(&breaker, Outcome::Success, now);
    }
    call(&breaker, Outcome::Failure, now);
    call(&breaker, Outcome::Failure, now);
    assert_eq!(breaker.state(now), BreakerState::Closed, "2 of 10");
}

#[test]
fn slow_successes_count_as_failures() {
    let breaker = CircuitBreaker::new(settings());
    let now = Instant::now();
    for _ in 0..4 {
        let permit = breaker.try_acquire(now).unwrap();
        breaker.record(permit, Outcome::Success, Duration::from_millis(80), now);
    }
    assert_eq!(breaker.state(now), BreakerState::Open);
}

#[test]
fn half_opens_after_the_wait_and_closes_when_probes_succeed() {
    let breaker = CircuitBreaker::new(settings());
    let start = Instant::now();
    for _ in 0..4 {
        call(&breaker, Outcome::Failure, start);
    }
    let later = start + Duration::from_secs(5);
    assert_eq!(breaker.state(later - FAST), BreakerState::Open);
    assert_eq!(breaker.state(later), BreakerState::HalfOpen);
    // Two probes are admitted, a third is not until they report.
    let first = breaker.try_acquire(later).unwrap();
    let second = breaker.try_acquire(later).unwrap();
    assert!(breaker.try_acquire(later).is_none());
    breaker.record(first, Outcome::Success, FAST, later);
    assert_eq!(breaker.state(later), BreakerState::HalfOpen);
    breaker.record(second, Outcome::Success, FAST, later);
    assert_eq!(breaker.state(later), BreakerState::Closed);
    assert!(call(&breaker, Outcome::Success, later));
    assert_eq!(breaker.transitions(), 3, "closed→open→half-open→closed");
}

#[test]
fn a_failed_probe_reopens_for_another_wait() {
    let breaker = CircuitBreaker::new(settings());
    let start = Instant::now();
    for _ in 0..4 {
        call(&breaker, Outcome::Failure, start);
    }
    let probing = start + Duration::from_secs(6);
    assert!(call(&breaker, Outcome::Failure, probing));
    assert_eq!(breaker.state(probing), BreakerState::Open);
    assert_eq!(
        breaker.state(probing + Duration::from_secs(4)),
        BreakerState::Open
    );
    assert_eq!(
        breaker.state(probing + Duration::from_secs(5)),
        BreakerState::HalfOpen
    );
}

#[test]
fn late_outcomes_from_before_a_transition_are_ignored() {
    let breaker = CircuitBreaker::new(settings());
    let now = Instant::now();
    let slow_call = breaker.try_acquire(now).unwrap();
    for _ in 0..4 {
        call(&breaker, Outcome::Failure, now);
    }
    let probing = now + Duration::from_secs(5);
    assert_eq!(breaker.state(probing), BreakerState::HalfOpen);
    // A call admitted while closed reports during half-open: not a probe result.
    breaker.record(slow_call, Outcome::Failure, FAST, probing);
    assert_eq!(breaker.state(probing), BreakerState::HalfOpen);
}

#[test]
fn operators_can_force_it_open_or_closed() {
    let breaker = CircuitBreaker::new(settings());
    let now = Instant::now();
    breaker.force(Some(true));
    assert_eq!(breaker.state(now), BreakerState::ForcedOpen);
    assert!(breaker
        .try_acquire(now + Duration::from_secs(3600))
        .is_none());
    breaker.force(Some(false));
    for _ in 0..10 {
        assert!(
            call(&breaker, Outcome::Failure, now),
            "forced closed admits all"
        );
    }
    assert_eq!(breaker.state(now), BreakerState::ForcedClosed);
    breaker.force(None);
    assert_eq!(breaker.state(now), BreakerState::Closed);
}

#[test]
fn a_released_permit_records_nothing_and_frees_its_probe_turn() {
    let breaker = CircuitBreaker::new(settings());
    let start = Instant::now();
    // Released while closed: the window stays empty, however many.
    for _ in 0..20 {
        breaker.release(breaker.try_acquire(start).unwrap());
    }
    assert_eq!(breaker.state(start), BreakerState::Closed);
    for _ in 0..4 {
        call(&breaker, Outcome::Failure, start);
    }
    let later = start + Duration::from_secs(5);
    let first = breaker.try_acquire(later).unwrap();
    let second = breaker.try_acquire(later).unwrap();
    assert!(breaker.try_acquire(later).is_none());
    // A probe that was never sent gives its turn to another call.
    breaker.release(first);
    let third = breaker.try_acquire(later).unwrap();
    breaker.record(second, Outcome::Success, FAST, later);
    breaker.record(third, Outcome::Success, FAST, later);
    assert_eq!(breaker.state(later), BreakerState::Closed);
}
