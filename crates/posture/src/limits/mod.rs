//! Rate limits and quotas (docs/rate-limits.md).
//!
//! API-key requests are limited per tenant by its tier: a sliding 60-second
//! window, a UTC day and a UTC month, all checked and counted in one Redis
//! round trip ([`window`]) right after authentication and before any database
//! work. When Redis is unavailable the server falls back to its own GCRA at
//! the tier's per-minute rate and to local day and month estimates ([`local`]),
//! and fails open rather than refuse a tenant because of our outage. Admitted
//! requests are counted durably in PostgreSQL ([`usage`]). Requests without a
//! valid key are limited per client IP, in process ([`middleware`]).

pub mod clock;
pub mod lease;
pub mod local;
pub mod metrics;
pub mod middleware;
pub mod policy;
pub mod usage;
pub mod window;

use crate::cache::redis::{Redis, RedisError};
use crate::webhooks::quota::QuotaAlerts;
use clock::Clock;
use lease::{Admission, Leases};
use local::LocalLimiter;
use policy::{decide, Decision, PolicyName, WINDOW_MS};
use posture_domain::{TenantId, Tier};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use usage::UsageBook;
use window::{GiveBack, Limits, Mode, WindowCall, WindowReply};

/// Where a decision came from, for `/v1/usage` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The shared counters in Redis.
    Redis,
    /// This server alone (Redis unavailable).
    Local,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct LimiterMetrics {
    pub admitted: AtomicU64,
    /// Refused, per policy: minute, day, month.
    pub refused: [AtomicU64; 3],
    /// Decisions made without Redis.
    pub local_decisions: AtomicU64,
    /// Requests refused by the client-IP limit.
    pub ip_refused: AtomicU64,
    /// Decisions made without a Redis call: admitted from a lease, or a
    /// refusal repeated.
    pub leased: AtomicU64,
    pub refusals_repeated: AtomicU64,
}

/// The process's limiter.
pub struct RateLimiter {
    redis: Redis,
    clock: Arc<dyn Clock>,
    tenants: LocalLimiter<TenantId>,
    /// Slots leased from Redis and refusals remembered, per tenant.
    leases: Leases,
    ips: LocalLimiter<IpAddr>,
    ip_per_minute: u64,
    usage: Arc<UsageBook>,
    /// Makes every sorted-set member unique across servers.
    instance: String,
    sequence: AtomicU64,
    metrics: LimiterMetrics,
    /// `quota.warning` / `quota.exceeded` webhooks, spotted in decisions.
    quota_alerts: QuotaAlerts,
}

impl RateLimiter {
    /// A limiter over `redis`, reading time from `clock`, leasing slots for
    /// `lease_hold` (zero: one Redis call per request; see [`lease`]).
    pub fn new(
        redis: Redis,
        clock: Arc<dyn Clock>,
        ip_per_minute: u64,
        lease_hold: std::time::Duration,
    ) -> Self {
        RateLimiter {
            redis,
            clock,
            tenants: LocalLimiter::new(1_000_000),
            leases: Leases::new(chrono::Duration::from_std(lease_hold).unwrap_or_default()),
            ips: LocalLimiter::new(1_000_000),
            ip_per_minute,
            usage: Arc::new(UsageBook::default()),
            instance: format!("{:016x}", rand::random::<u64>()),
            sequence: AtomicU64::new(0),
            metrics: LimiterMetrics::default(),
            quota_alerts: QuotaAlerts::default(),
        }
    }

    /// The quota alerts its decisions raise (their writer takes the receiver).
    pub fn quota_alerts(&self) -> &QuotaAlerts {
        &self.quota_alerts
    }

    /// The clock decisions are made by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Durable usage counts and floors.
    pub fn usage(&self) -> &Arc<UsageBook> {
        &self.usage
    }

    /// The counters.
    pub fn metrics(&self) -> &LimiterMetrics {
        &self.metrics
    }

    /// Admits or refuses one API-key request of `tenant` on `tier`, counting
    /// it if admitted.
    pub async fn check_tenant(
        self: &Arc<Self>,
        tenant: TenantId,
        tier: Tier,
    ) -> (Decision, Source) {
        let now = self.clock.now();
        let (want, hold_ms, give_back) = match self.leases.admit(tenant, tier, now) {
            Admission::Leased { counts, refill } => {
                self.metrics.leased.fetch_add(1, Ordering::Relaxed);
                if let Some(refill) = refill {
                    self.refill_in_background(tenant, tier, now, refill);
                }
                return self.decided(tenant, tier, None, &counts, now, Source::Redis);
            }
            Admission::StillRefused(policy, counts) => {
                self.metrics
                    .refusals_repeated
                    .fetch_add(1, Ordering::Relaxed);
                return self.decided(tenant, tier, Some(policy), &counts, now, Source::Redis);
            }
            Admission::Ask {
                want,
                hold_ms,
                give_back,
            } => (want, hold_ms, give_back),
        };
        let prefix = self.next_prefix();
        let call = self.lease_call(
            tenant,
            tier,
            now,
            &prefix,
            want,
            hold_ms,
            give_back.as_ref(),
        );
        let (refused, counts, source) = match self.run(&call).await {
            Ok(WindowReply {
                refused,
                mut counts,
                granted,
            }) => {
                match refused {
                    Some(policy) => self.leases.refused(tenant, tier, now, policy, counts),
                    None => {
                        self.leases.granted(
                            tenant,
                            tier,
                            now,
                            hold_ms,
                            granted,
                            prefix,
                            counts,
                            call.period_keys(),
                        );
                        // This request used the first slot; the day and month
                        // count the rest only once they are used.
                        let unused = granted.saturating_sub(1);
                        counts.day = counts.day.saturating_sub(unused);
                        counts.month = counts.month.saturating_sub(unused);
                    }
                }
                (refused, counts, Source::Redis)
            }
            Err(error) => {
                if let Some(unused) = give_back {
                    self.leases.give_back_failed(tenant, unused);
                }
                self.undo_if_it_ran(tenant, tier, &error, &call);
                self.metrics.local_decisions.fetch_add(1, Ordering::Relaxed);
                let before = self.usage.local_estimate(tenant, now);
                // Day and month against the local estimate first: a request
                // they refuse must not spend a slot of the minute's GCRA.
                let day_or_month = policy::refusing_policy(
                    tier,
                    &policy::Counts {
                        minute: 0,
                        minute_frees_at: None,
                        day: before.day,
                        month: before.month,
                    },
                );
                let minute = if day_or_month.is_some() {
                    self.tenants.peek(&tenant, tier_minute(tier), now)
                } else {
                    self.tenants.check(&tenant, tier_minute(tier), now)
                };
                let refused = day_or_month.or((!minute.admitted).then_some(PolicyName::Minute));
                let counted = u64::from(refused.is_none());
                let counts = minute.counts(before.day + counted, before.month + counted);
                (refused, counts, Source::Local)
            }
        };
        self.decided(tenant, tier, refused, &counts, now, source)
    }

    /// A member prefix no other call of any server uses.
    fn next_prefix(&self) -> String {
        format!(
            "{}:{}",
            self.instance,
            self.sequence.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Asks Redis for the tenant's next lease off the request path
    /// ([`lease`]'s refills). A refusal leaves the tenant's next requests to
    /// ask (and be refused) themselves; the call's give-back is then done
    /// (the script gives back first), unless Redis did not answer.
    fn refill_in_background(
        self: &Arc<Self>,
        tenant: TenantId,
        tier: Tier,
        now: chrono::DateTime<chrono::Utc>,
        refill: lease::Refill,
    ) {
        let limiter = self.clone();
        tokio::spawn(async move {
            let prefix = limiter.next_prefix();
            let call = limiter.lease_call(
                tenant,
                tier,
                now,
                &prefix,
                refill.want,
                refill.hold_ms,
                refill.give_back.as_ref(),
            );
            match limiter.run(&call).await {
                Ok(WindowReply {
                    refused: None,
                    counts,
                    granted,
                }) => limiter.leases.refilled(
                    tenant,
                    tier,
                    now,
                    refill.hold_ms,
                    granted,
                    prefix,
                    counts,
                    call.period_keys(),
                ),
                Ok(_) => limiter.leases.refill_failed(tenant, None),
                Err(error) => {
                    limiter.leases.refill_failed(tenant, refill.give_back);
                    limiter.undo_if_it_ran(tenant, tier, &error, &call);
                }
            }
        });
    }

    /// The script call asking for `want` slots dated `hold_ms` ahead, under
    /// `prefix`, giving back `give_back` first.
    #[allow(clippy::too_many_arguments)]
    fn lease_call(
        &self,
        tenant: TenantId,
        tier: Tier,
        now: chrono::DateTime<chrono::Utc>,
        prefix: &str,
        want: u64,
        hold_ms: i64,
        give_back: Option<&window::GiveBack>,
    ) -> WindowCall {
        let call = WindowCall::new(
            &window::tenant_tag(tenant),
            self.limits(tenant, tier, now),
            now,
            prefix,
            Mode::Check,
        )
        .lease(want, hold_ms);
        match give_back {
            Some(unused) => call.giving_back(unused),
            None => call,
        }
    }

    /// A call that got no reply may still have been carried out by Redis:
    /// then what it asked for is given back later
    /// ([`lease::Leases::outcome_unknown`]).
    fn undo_if_it_ran(&self, tenant: TenantId, tier: Tier, error: &RedisError, call: &WindowCall) {
        if error.may_have_run() {
            self.leases
                .outcome_unknown(tenant, tier, call.everything_asked());
        }
    }

    /// The decision from `counts`, counted in usage and metrics and shown
    /// to the quota alerts.
    fn decided(
        &self,
        tenant: TenantId,
        tier: Tier,
        refused: Option<PolicyName>,
        counts: &policy::Counts,
        now: chrono::DateTime<chrono::Utc>,
        source: Source,
    ) -> (Decision, Source) {
        let decision = decide(tier, refused, counts, now);
        match decision.refused_by {
            None => {
                self.usage.record(tenant, now);
                self.metrics.admitted.fetch_add(1, Ordering::Relaxed);
            }
            Some(policy) => {
                self.metrics.refused[policy as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.quota_alerts.observe(tenant, &decision);
        (decision, source)
    }

    /// Gives back to Redis the unused slots of leases that are over (every
    /// lease with `everything`, at shutdown); run periodically, so a tenant
    /// that stopped sending does not keep slots counted. Kept for the next
    /// run when Redis does not answer.
    pub async fn give_back_unused(&self, everything: bool) {
        let now = self.clock.now();
        for (tenant, unused) in self.leases.take_give_backs(now, everything) {
            if self.give_back(tenant, &unused, now).await.is_err() {
                self.leases.give_back_failed(tenant, unused);
            }
        }
    }

    async fn give_back(
        &self,
        tenant: TenantId,
        unused: &GiveBack,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<WindowReply, RedisError> {
        let nothing = Limits {
            minute: 0,
            day: None,
            month: None,
            day_floor: 0,
            month_floor: 0,
        };
        let call = WindowCall::new(&window::tenant_tag(tenant), nothing, now, "", Mode::Peek)
            .giving_back(unused);
        self.run(&call).await
    }

    /// The tenant's current consumption without counting anything.
    pub async fn peek_tenant(&self, tenant: TenantId, tier: Tier) -> (Decision, Source) {
        let now = self.clock.now();
        let call = WindowCall::new(
            &window::tenant_tag(tenant),
            self.limits(tenant, tier, now),
            now,
            "",
            Mode::Peek,
        );
        match self.run(&call).await {
            Ok(reply) => (decide(tier, None, &reply.counts, now), Source::Redis),
            Err(_) => {
                let estimate = self.usage.local_estimate(tenant, now);
                let counts = policy::Counts {
                    // GCRA has no log to read without admitting; the minute
                    // consumption is unknown locally.
                    minute: 0,
                    minute_frees_at: None,
                    day: estimate.day,
                    month: estimate.month,
                };
                (decide(tier, None, &counts, now), Source::Local)
            }
        }
    }

    /// Admits or refuses one unauthenticated request from `ip`; `Err` holds
    /// the seconds to wait.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), u64> {
        let now = self.clock.now();
        let decision = self.ips.check(&ip, self.ip_per_minute, now);
        if decision.admitted {
            return Ok(());
        }
        self.metrics.ip_refused.fetch_add(1, Ordering::Relaxed);
        let wait_ms = decision
            .frees_at
            .map_or(WINDOW_MS, |at| (at - now).num_milliseconds());
        Err(u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1))
    }

    /// Whether `ip` is over its limit now, without counting a request:
    /// `Some(seconds to wait)` if so. Checked before a presented key is looked
    /// up, so a client guessing keys stops costing lookups once limited.
    pub fn ip_over_limit(&self, ip: IpAddr) -> Option<u64> {
        let now = self.clock.now();
        let frees_at = self.ips.over_limit(&ip, self.ip_per_minute, now)?;
        self.metrics.ip_refused.fetch_add(1, Ordering::Relaxed);
        let wait_ms = (frees_at - now).num_milliseconds();
        Some(u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1))
    }

    /// The quota per client IP and minute.
    pub fn ip_per_minute(&self) -> u64 {
        self.ip_per_minute
    }

    fn limits(&self, tenant: TenantId, tier: Tier, now: chrono::DateTime<chrono::Utc>) -> Limits {
        let limits = tier.limits();
        let floor = self.usage.floor(tenant, now);
        Limits {
            minute: tier_minute(tier),
            day: limits.per_day.map(u64::from),
            month: limits.per_month.map(u64::from),
            day_floor: floor.day,
            month_floor: floor.month,
        }
    }

    /// Runs the script by hash, sending its text if Redis lost it.
    async fn run(&self, call: &WindowCall) -> Result<WindowReply, RedisError> {
        let reply = match self.redis.query::<window::RawReply>(&call.evalsha()).await {
            Err(RedisError::Command(error)) if window::is_no_script(&error) => {
                self.redis.query(&call.eval()).await
            }
            other => other,
        };
        reply.map(window::parse_reply)
    }
}

fn tier_minute(tier: Tier) -> u64 {
    u64::from(tier.limits().per_minute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clock::ManualClock;

    /// Without Redis every decision is local. A request the day refuses must
    /// leave the minute's GCRA as it was.
    #[tokio::test]
    async fn a_local_refusal_by_the_day_spends_nothing_of_the_minute() {
        let clock = Arc::new(ManualClock::new("2026-11-23T21:00:00Z".parse().unwrap()));
        let limiter = Arc::new(RateLimiter::new(
            Redis::disabled(),
            clock.clone(),
            60,
            std::time::Duration::from_secs(1),
        ));
        let tenant = TenantId::new_random();
        let mut admitted = 0;
        while admitted < 1_000 {
            let (decision, source) = limiter.check_tenant(tenant, Tier::Free).await;
            assert_eq!(source, Source::Local);
            match decision.refused_by {
                None => admitted += 1,
                Some(PolicyName::Minute) => clock.advance(chrono::Duration::seconds(6)),
                Some(other) => panic!("refused by {other:?} after {admitted}"),
            }
        }
        clock.advance(chrono::Duration::seconds(6));
        let now = clock.now();
        let before = limiter.tenants.peek(&tenant, 10, now);
        for _ in 0..30 {
            let (decision, _) = limiter.check_tenant(tenant, Tier::Free).await;
            assert_eq!(decision.refused_by, Some(PolicyName::Day));
        }
        assert_eq!(limiter.tenants.peek(&tenant, 10, now), before);
        assert!(before.admitted, "the minute had room all along");
    }
}
