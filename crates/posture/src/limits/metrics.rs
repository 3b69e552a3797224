//! The limiter's lines of `/metrics`.

use super::RateLimiter;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Appends the limiter's counters in the Prometheus text format.
pub fn render(out: &mut String, limiter: &RateLimiter) {
    let metrics = limiter.metrics();
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP posture_rate_limit_admitted_total API-key requests admitted by the tenant limits.\n\
         # TYPE posture_rate_limit_admitted_total counter\n\
         posture_rate_limit_admitted_total {}",
        load(&metrics.admitted)
    );
    out.push_str(
        "# HELP posture_rate_limit_refused_total Requests refused with 429, by policy.\n\
         # TYPE posture_rate_limit_refused_total counter\n",
    );
    for (policy, counter) in ["minute", "day", "month"].iter().zip(&metrics.refused) {
        let _ = writeln!(
            out,
            "posture_rate_limit_refused_total{{policy=\"{policy}\"}} {}",
            load(counter)
        );
    }
    let _ = writeln!(
        out,
        "posture_rate_limit_refused_total{{policy=\"ip-minute\"}} {}",
        load(&metrics.ip_refused)
    );
    let _ = writeln!(
        out,
        "# HELP posture_rate_limit_local_decisions_total Tenant decisions made without Redis (in-process fallback).\n\
         # TYPE posture_rate_limit_local_decisions_total counter\n\
         posture_rate_limit_local_decisions_total {}",
        load(&metrics.local_decisions)
    );
    let _ = writeln!(
        out,
        "# HELP posture_rate_limit_decisions_without_redis_total Tenant decisions this server made from what it already knew: admitted from a leased slot, or a refusal repeated.\n\
         # TYPE posture_rate_limit_decisions_without_redis_total counter\n\
         posture_rate_limit_decisions_without_redis_total{{reason=\"leased\"}} {}\n\
         posture_rate_limit_decisions_without_redis_total{{reason=\"refusal_repeated\"}} {}",
        load(&metrics.leased),
        load(&metrics.refusals_repeated)
    );
}
