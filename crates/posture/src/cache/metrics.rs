//! The cache's lines of `/metrics`: hits and misses per layer, hit rates, Redis
//! calls, failures, bypasses and mean latency, breaker state and transitions.

use super::breaker::BreakerState;
use super::redis::Redis;
use super::views::ViewCache;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Appends the cache metrics in the Prometheus text format.
pub fn render(out: &mut String, redis: &Redis, views: &ViewCache) {
    let cache = views.metrics();
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let (l1_hits, l1_misses) = (load(&cache.l1_hits), load(&cache.l1_misses));
    let (l2_hits, l2_misses) = (load(&cache.l2_hits), load(&cache.l2_misses));
    out.push_str("# HELP posture_cache_hits_total Cached view reads answered by a layer.\n");
    out.push_str("# TYPE posture_cache_hits_total counter\n");
    let _ = writeln!(out, "posture_cache_hits_total{{layer=\"l1\"}} {l1_hits}");
    let _ = writeln!(out, "posture_cache_hits_total{{layer=\"l2\"}} {l2_hits}");
    out.push_str("# HELP posture_cache_misses_total Cached view reads a layer could not answer.\n");
    out.push_str("# TYPE posture_cache_misses_total counter\n");
    let _ = writeln!(
        out,
        "posture_cache_misses_total{{layer=\"l1\"}} {l1_misses}"
    );
    let _ = writeln!(
        out,
        "posture_cache_misses_total{{layer=\"l2\"}} {l2_misses}"
    );
    out.push_str("# HELP posture_cache_hit_ratio Hits / (hits + misses) per layer since start.\n");
    out.push_str("# TYPE posture_cache_hit_ratio gauge\n");
    for (layer, hits, misses) in [("l1", l1_hits, l1_misses), ("l2", l2_hits, l2_misses)] {
        let ratio = if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        };
        let _ = writeln!(out, "posture_cache_hit_ratio{{layer=\"{layer}\"}} {ratio}");
    }
    for (name, help, value) in [
        (
            "posture_cache_loads_total",
            "Views loaded from PostgreSQL.",
            load(&cache.loads),
        ),
        (
            "posture_cache_early_refreshes_total",
            "Views refreshed early (XFetch) in the background.",
            load(&cache.early_refreshes),
        ),
        (
            "posture_redis_calls_total",
            "Redis commands sent.",
            load(&redis.metrics().calls),
        ),
        (
            "posture_redis_failures_total",
            "Redis commands that failed or timed out.",
            load(&redis.metrics().failures),
        ),
        (
            "posture_redis_bypassed_total",
            "Redis calls skipped because the circuit breaker was open.",
            load(&redis.metrics().bypassed),
        ),
        (
            "posture_redis_breaker_transitions_total",
            "Circuit breaker state changes.",
            redis.breaker_transitions(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let calls = load(&redis.metrics().calls);
    let mean_seconds = if calls == 0 {
        0.0
    } else {
        load(&redis.metrics().latency_micros) as f64 / calls as f64 / 1e6
    };
    let _ = writeln!(
        out,
        "# HELP posture_redis_latency_seconds_mean Mean Redis command latency since start.\n\
         # TYPE posture_redis_latency_seconds_mean gauge\nposture_redis_latency_seconds_mean {mean_seconds}"
    );
    out.push_str("# HELP posture_redis_breaker_state 1 for the circuit breaker's current state.\n");
    out.push_str("# TYPE posture_redis_breaker_state gauge\n");
    let current = redis.breaker_state();
    for state in [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
        BreakerState::ForcedOpen,
        BreakerState::ForcedClosed,
    ] {
        let _ = writeln!(
            out,
            "posture_redis_breaker_state{{state=\"{}\"}} {}",
            state.as_str(),
            u8::from(state == current)
        );
    }
}
