//! The cache's lines of `/metrics`: hits and misses per layer and generation
//! (`views="posture"` or `"account"`), hit rates, loads, Redis
//! calls, failures, bypasses and mean latency, breaker state and transitions.

use super::breaker::BreakerState;
use super::redis::Redis;
use super::views::{Generation, ViewCache, ViewCacheMetrics};
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Appends the cache metrics in the Prometheus text format.
pub fn render(out: &mut String, redis: &Redis, views: &ViewCache) {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    // Per generation: posture views, and account views (the organization and
    // API keys' credentials, read on every authenticated request).
    let per_layer =
        |out: &mut String,
         name: &str,
         help: &str,
         kind: &str,
         pick: &dyn Fn(&ViewCacheMetrics) -> [(&'static str, f64); 2]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for generation in Generation::ALL {
                for (layer, value) in pick(views.metrics(generation)) {
                    let _ = writeln!(
                        out,
                        "{name}{{views=\"{}\",layer=\"{layer}\"}} {value}",
                        generation.as_str()
                    );
                }
            }
        };
    let ratio = |hits: u64, misses: u64| {
        if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        }
    };
    per_layer(
        out,
        "posture_cache_hits_total",
        "Cached view reads answered by a layer.",
        "counter",
        &|m| {
            [
                ("l1", load(&m.l1_hits) as f64),
                ("l2", load(&m.l2_hits) as f64),
            ]
        },
    );
    per_layer(
        out,
        "posture_cache_misses_total",
        "Cached view reads a layer could not answer.",
        "counter",
        &|m| {
            [
                ("l1", load(&m.l1_misses) as f64),
                ("l2", load(&m.l2_misses) as f64),
            ]
        },
    );
    per_layer(
        out,
        "posture_cache_hit_ratio",
        "Hits / (hits + misses) per layer since start.",
        "gauge",
        &|m| {
            [
                ("l1", ratio(load(&m.l1_hits), load(&m.l1_misses))),
                ("l2", ratio(load(&m.l2_hits), load(&m.l2_misses))),
            ]
        },
    );
    for (name, help, pick) in [
        (
            "posture_cache_loads_total",
            "Views loaded from PostgreSQL.",
            (|m: &ViewCacheMetrics| &m.loads)
                as fn(&ViewCacheMetrics) -> &std::sync::atomic::AtomicU64,
        ),
        (
            "posture_cache_early_refreshes_total",
            "Views refreshed early (XFetch) in the background.",
            |m: &ViewCacheMetrics| &m.early_refreshes,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for generation in Generation::ALL {
            let _ = writeln!(
                out,
                "{name}{{views=\"{}\"}} {}",
                generation.as_str(),
                load(pick(views.metrics(generation)))
            );
        }
    }
    for (name, help, value) in [
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
            "posture_redis_shed_total",
            "Redis calls given up before they were sent (too many in flight until their deadline); not counted against Redis by the breaker.",
            load(&redis.metrics().shed),
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
