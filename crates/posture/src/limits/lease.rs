//! Admission leases and remembered refusals: what this server knows about a
//! tenant's limits between two calls to Redis.
//!
//! One Redis call per request makes Redis the ceiling: the limiter's script
//! costs Redis about 30 µs, so one Redis core admits some 20,000 requests a
//! second, shared by every server. So a server asks for more than one slot
//! when a tenant's own traffic on it shows it will use them:
//!
//! - **Leases.** A tenant sending `r` requests a second here asks for about
//!   `r × hold` slots (at most 1/25 of its minute quota; free and basic
//!   tenants, whose quota is too small to share, always ask for one); one
//!   sending a few a second, too few to fill a lease worth its call in one
//!   hold, asks for [`REQUESTS_PER_LEASE`] held longer ([`lease_size`]). The
//!   slots are counted in Redis when granted and dated at the lease's end
//!   (see [`super::window`]), so the limits are never exceeded; each request
//!   that uses one is admitted here without a round trip. What a lease did
//!   not use by its end is given back — with the next call, or by
//!   [`Leases::take_give_backs`] — so the day and month count only requests
//!   that were served (a server that dies gives back nothing: its unused
//!   slots stay counted, at most 1/25 of the minute quota each).
//! - **Refills.** Once half a lease is used, the request that finds it so
//!   also starts, in the background, the call for the next one
//!   ([`Admission::Leased`]'s `refill`); it waits, unused, until the current
//!   lease is used up or over. So a busy tenant's requests do not wait for
//!   Redis at all: on a machine whose cores Redis shares with the server, a
//!   round trip under load took milliseconds. A refill is held for twice a
//!   lease's time (it waits while the current lease is used), and its slots
//!   are dated at its own end, which is after every request that uses them,
//!   so the minute's bound holds as for any lease.
//! - **Refusals.** A request Redis refuses is not counted, and nothing but
//!   time frees a slot, so the refusal holds until the window frees one — or
//!   another server gives a lease back. This server therefore answers the
//!   tenant's next requests with the same refusal for at most
//!   [`REFUSAL_MEMORY_MS`] without asking Redis: a tenant hammering past its
//!   limit costs a lookup here, not a round trip.
//!
//! Everything is per tenant and tier: a tier change starts afresh.

use super::policy::{Counts, Periods, PolicyName, WINDOW_MS};
use super::window::GiveBack;
use chrono::{DateTime, Duration, Utc};
use posture_domain::{TenantId, Tier};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a refusal is repeated without asking Redis again (bounds how
/// late this server notices a lease another server gave back).
pub const REFUSAL_MEMORY_MS: i64 = 1_000;

/// A lease is at most this share of the minute quota (1/25: 40 of an
/// enterprise tenant's 1,000, 4 of premium's 120; basic and free lease
/// nothing, see [`MIN_LEASE`]). The larger, the fewer script calls a busy tenant costs Redis
/// (the script runs some 45 µs for a lease on a busy machine, see
/// [`super::window`]); the smaller, the less a
/// crashed server's unused reservation takes from a minute.
const LEASE_SHARE_OF_QUOTA: u64 = 25;

/// The smallest lease worth its bookkeeping; tiers whose share is smaller
/// (basic, free) ask for one slot per request.
const MIN_LEASE: u64 = 4;

/// The requests a lease should last, at least, when the tenant is busy
/// enough to lease at all: a tenant whose rate fills fewer in one hold holds
/// its lease longer instead ([`lease_size`]), rather than calling the script
/// for nearly every other request (docs/profiling.md, item 20).
const REQUESTS_PER_LEASE: u64 = 8;

/// The longest a lease is stretched for [`REQUESTS_PER_LEASE`] (never below
/// the configured hold). Its slots are dated at its end, so a slow tenant's
/// slots stay in the minute's log up to this much longer than its requests:
/// the window can only refuse a little early, never admit more.
const LONGEST_STRETCHED_HOLD_MS: i64 = 4_000;

/// Give-backs of calls whose outcome is unknown kept per tenant, at most.
const MAX_GIVE_BACKS: usize = 64;

/// What the limiter should do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Admitted from a lease; the counts to report (the lease's, with the
    /// slots not used yet taken off the day and month). With `refill`, the
    /// caller asks Redis for the next lease in the background and reports
    /// the answer ([`Leases::refilled`], or [`Leases::refill_failed`]).
    Leased {
        counts: Counts,
        refill: Option<Refill>,
    },
    /// Refused again, as Redis refused it less than a second ago.
    StillRefused(PolicyName, Counts),
    /// Ask Redis for `want` slots dated `hold_ms` ahead, giving back
    /// `give_back` in the same call.
    Ask {
        want: u64,
        hold_ms: i64,
        give_back: Option<GiveBack>,
    },
}

/// The call for a tenant's next lease, made off the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refill {
    /// Slots to ask for, dated `hold_ms` ahead; none of them is for the
    /// request that started the refill.
    pub want: u64,
    pub hold_ms: i64,
    /// An ended lease's unused slots, given back in the same call.
    pub give_back: Option<GiveBack>,
}

/// A lease being used.
#[derive(Debug, Clone)]
struct Lease {
    prefix: String,
    granted: u64,
    used: u64,
    ends_at: DateTime<Utc>,
    /// The counts Redis returned when granting (every slot counted).
    counts: Counts,
    day_key: String,
    month_key: String,
}

impl Lease {
    fn unused(&self) -> Option<GiveBack> {
        (self.used < self.granted).then(|| GiveBack {
            prefix: self.prefix.clone(),
            first: self.used,
            count: self.granted - self.used,
            day_key: self.day_key.clone(),
            month_key: self.month_key.clone(),
        })
    }
}

/// What this server knows about one tenant.
#[derive(Debug)]
struct TenantSlots {
    tier: Tier,
    lease: Option<Lease>,
    /// The refill: the lease to use when `lease` is used up or over.
    next: Option<Lease>,
    /// A refill call is under way.
    refilling: bool,
    /// Unused slots of ended leases, given back with the next call.
    give_backs: Vec<GiveBack>,
    refused: Option<(PolicyName, Counts, DateTime<Utc>)>,
    /// Requests seen in the current second and the one before (the rate).
    second: i64,
    this_second: u64,
    last_second: u64,
}

impl TenantSlots {
    fn new(tier: Tier) -> Self {
        TenantSlots {
            tier,
            lease: None,
            next: None,
            refilling: false,
            give_backs: Vec::new(),
            refused: None,
            second: 0,
            this_second: 0,
            last_second: 0,
        }
    }

    fn count_request(&mut self, now: DateTime<Utc>) {
        let second = now.timestamp();
        if second != self.second {
            self.last_second = if second == self.second + 1 {
                self.this_second
            } else {
                0
            };
            self.this_second = 0;
            self.second = second;
        }
        self.this_second += 1;
    }

    /// Requests a second lately: the last full second, or this one if busier.
    fn rate(&self) -> u64 {
        self.last_second.max(self.this_second)
    }

    /// Ends the lease if it is over (used up or past its end), keeping what
    /// it did not use for giving back, and moves the refill, if it is not
    /// over itself, into its place.
    fn end_lease_if_over(&mut self, now: DateTime<Utc>) {
        let over = |lease: &Lease| lease.used >= lease.granted || now >= lease.ends_at;
        if self.lease.as_ref().is_some_and(over) {
            if let Some(unused) = self.lease.take().and_then(|lease| lease.unused()) {
                self.give_backs.push(unused);
            }
        }
        if self.next.as_ref().is_some_and(over) {
            if let Some(unused) = self.next.take().and_then(|lease| lease.unused()) {
                self.give_backs.push(unused);
            }
        }
        if self.lease.is_none() {
            self.lease = self.next.take();
        }
    }

    /// The refill to start now, if any: half the lease is used, the tenant
    /// is busy enough for more than one slot, and none is held or coming.
    fn refill_due(&mut self, want: u64, hold_ms: i64) -> Option<Refill> {
        let lease = self.lease.as_ref()?;
        if self.refilling || self.next.is_some() || want < 2 || lease.used * 2 < lease.granted {
            return None;
        }
        self.refilling = true;
        Some(Refill {
            want,
            hold_ms,
            give_back: self.give_backs.pop(),
        })
    }

    fn is_idle(&self, now: DateTime<Utc>) -> bool {
        self.lease.is_none()
            && self.next.is_none()
            && !self.refilling
            && self.give_backs.is_empty()
            && self.refused.is_none_or(|(_, _, until)| now >= until)
            && now.timestamp() > self.second + 1
    }
}

/// The slots to lease, and for how long, for a tenant sending `rate`
/// requests a second, with leases of `hold_ms` and at most `most` slots: a
/// hold's worth (`rate × hold`), or, when that is fewer than
/// [`REQUESTS_PER_LEASE`], that many (or what `rate` uses in
/// [`LONGEST_STRETCHED_HOLD_MS`], if fewer) held for as long as `rate` takes
/// to use them. A tenant sending one request a second gets one slot, as
/// before: a lease that one request would leave unused is only given back
/// again. `hold_ms` zero (leases off) is never stretched.
fn lease_size(rate: u64, hold_ms: i64, most: u64) -> (u64, i64) {
    let expected = rate.saturating_mul(hold_ms.unsigned_abs()) / 1_000;
    let plain = (expected.min(most).max(1), hold_ms);
    if rate < 2 || hold_ms <= 0 || hold_ms >= LONGEST_STRETCHED_HOLD_MS {
        return plain;
    }
    let stretched = REQUESTS_PER_LEASE
        .min(rate.saturating_mul(LONGEST_STRETCHED_HOLD_MS.unsigned_abs()) / 1_000)
        .min(most);
    if stretched <= plain.0 {
        return plain;
    }
    // Long enough for `rate` to use them all: longer than `hold_ms` (more
    // slots than a hold's worth) and at most the longest stretch (no more
    // than that many seconds' worth), by how `stretched` was chosen.
    let stretched_ms =
        i64::try_from((stretched * 1_000).div_ceil(rate)).unwrap_or(LONGEST_STRETCHED_HOLD_MS);
    (stretched, stretched_ms)
}

/// The leases and refusals of every tenant this server serves.
#[derive(Debug)]
pub struct Leases {
    /// How long a lease lasts; zero turns leases off (one slot per call).
    hold: Duration,
    /// Looked up on every request of a limited tenant: hashed with foldhash,
    /// not SipHash (tenant ids come from verified keys, not from a client).
    tenants: Mutex<HashMap<TenantId, TenantSlots, foldhash::fast::RandomState>>,
}

impl Leases {
    /// Leases lasting `hold` (zero: every request asks Redis).
    pub fn new(hold: Duration) -> Self {
        Leases {
            hold: hold.clamp(Duration::zero(), Duration::milliseconds(WINDOW_MS)),
            tenants: Mutex::default(),
        }
    }

    /// Decides how to admit one request of `tenant` on `tier` at `now`.
    pub fn admit(&self, tenant: TenantId, tier: Tier, now: DateTime<Utc>) -> Admission {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let slots = tenants
            .entry(tenant)
            .or_insert_with(|| TenantSlots::new(tier));
        if slots.tier != tier {
            // A new tier: earlier leases and refusals were under other quotas
            // (a refill under way is given back when it arrives).
            slots.end_lease_if_over(DateTime::<Utc>::MAX_UTC);
            slots.refused = None;
            slots.tier = tier;
        }
        slots.count_request(now);
        if let Some((policy, counts, until)) = slots.refused {
            if now < until {
                return Admission::StillRefused(policy, counts);
            }
            slots.refused = None;
        }
        slots.end_lease_if_over(now);
        // A tier whose share would be a slot or two does not lease at all.
        let most = Some(u64::from(tier.limits().per_minute) / LEASE_SHARE_OF_QUOTA)
            .filter(|most| *most >= MIN_LEASE)
            .unwrap_or(1);
        let (want, hold_ms) = lease_size(slots.rate(), self.hold.num_milliseconds(), most);
        if let Some(lease) = &mut slots.lease {
            lease.used += 1;
            let unused = lease.granted - lease.used;
            let mut counts = lease.counts;
            counts.day = counts.day.saturating_sub(unused);
            counts.month = counts.month.saturating_sub(unused);
            // A refill waits, unused, until this lease is over, so its slots
            // are held (and dated) twice as long: used up at the same rate,
            // it is not over before it is used.
            let refill = slots.refill_due(want, hold_ms.saturating_mul(2));
            return Admission::Leased { counts, refill };
        }
        Admission::Ask {
            want,
            // A single slot is dated now: a tenant without a lease is counted
            // exactly as without leases at all.
            hold_ms: if want > 1 { hold_ms } else { 0 },
            give_back: slots.give_backs.pop(),
        }
    }

    /// Records the refill Redis granted (`granted` slots under `prefix`,
    /// asked for at `now` with `hold_ms`): the lease the
    /// tenant's requests use once the current one is used up or over.
    #[allow(clippy::too_many_arguments)]
    pub fn refilled(
        &self,
        tenant: TenantId,
        tier: Tier,
        now: DateTime<Utc>,
        hold_ms: i64,
        granted: u64,
        prefix: String,
        counts: Counts,
        (day_key, month_key): (&str, &str),
    ) {
        let lease = Lease {
            prefix,
            granted,
            used: 0,
            ends_at: (now + Duration::milliseconds(hold_ms)).min(Periods::at(now).day_ends),
            counts,
            day_key: day_key.to_owned(),
            month_key: month_key.to_owned(),
        };
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slots) = tenants.get_mut(&tenant) else {
            // Forgotten meanwhile (idle, or the map was pruned): nothing will
            // use it, so it goes back with the next upkeep round.
            let slots = tenants
                .entry(tenant)
                .or_insert_with(|| TenantSlots::new(tier));
            slots.give_backs.extend(lease.unused());
            return;
        };
        slots.refilling = false;
        if slots.tier != tier || granted == 0 {
            slots.give_backs.extend(lease.unused());
            return;
        }
        if slots.lease.is_none() {
            slots.lease = Some(lease);
        } else if let Some(unused) = slots.next.replace(lease).and_then(|old| old.unused()) {
            slots.give_backs.push(unused);
        }
    }

    /// A refill Redis refused or did not answer: the tenant's requests ask
    /// again themselves once the current lease is over. What it was to give
    /// back is kept for the next call.
    pub fn refill_failed(&self, tenant: TenantId, give_back: Option<GiveBack>) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slots) = tenants.get_mut(&tenant) {
            slots.refilling = false;
            slots.give_backs.extend(give_back);
        }
    }

    /// Records Redis's grant of `granted` slots (under `prefix`) for a
    /// request that asked with `hold_ms`; the first slot is that request's.
    #[allow(clippy::too_many_arguments)]
    pub fn granted(
        &self,
        tenant: TenantId,
        tier: Tier,
        now: DateTime<Utc>,
        hold_ms: i64,
        granted: u64,
        prefix: String,
        counts: Counts,
        (day_key, month_key): (&str, &str),
    ) {
        if granted <= 1 {
            return;
        }
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let slots = tenants
            .entry(tenant)
            .or_insert_with(|| TenantSlots::new(tier));
        let lease = Lease {
            prefix,
            granted,
            used: 1,
            // Its slots count in this day and month: it ends with them.
            ends_at: (now + Duration::milliseconds(hold_ms)).min(Periods::at(now).day_ends),
            counts,
            day_key: day_key.to_owned(),
            month_key: month_key.to_owned(),
        };
        if slots.tier != tier {
            // The tier changed while Redis was asked: this lease was granted
            // under quotas that no longer apply.
            slots.give_backs.extend(lease.unused());
            return;
        }
        // Concurrent requests may each have asked for a lease; the newest
        // is used, the one it replaces given back.
        if let Some(unused) = slots.lease.replace(lease).and_then(|old| old.unused()) {
            slots.give_backs.push(unused);
        }
    }

    /// Remembers Redis's refusal of a request of `tenant` on `tier`, to
    /// repeat it until the window frees a slot or the refusing day or month
    /// ends (at most for [`REFUSAL_MEMORY_MS`]).
    pub fn refused(
        &self,
        tenant: TenantId,
        tier: Tier,
        now: DateTime<Utc>,
        policy: PolicyName,
        counts: Counts,
    ) {
        let periods = Periods::at(now);
        let frees_at = match policy {
            PolicyName::Minute => match counts.minute_frees_at {
                Some(frees_at) => frees_at,
                None => return,
            },
            PolicyName::Day => periods.day_ends,
            PolicyName::Month => periods.month_ends,
        };
        let until = frees_at.min(now + Duration::milliseconds(REFUSAL_MEMORY_MS));
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let slots = tenants
            .entry(tenant)
            .or_insert_with(|| TenantSlots::new(tier));
        if slots.tier == tier {
            slots.refused = Some((policy, counts, until));
        }
    }

    /// A call for `tenant` on `tier` got no reply, but Redis may have run it
    /// ([`super::window::WindowCall::everything_asked`]): what it asked for
    /// is given back with the tenant's next call, or by the upkeep. Commands
    /// share one connection, which Redis serves in order, so the give-back
    /// comes after the call it undoes.
    /// At most [`MAX_GIVE_BACKS`] are kept per tenant (a Redis that hangs
    /// for long would otherwise grow the list; past a minute the oldest no
    /// longer free anything in the window).
    pub fn outcome_unknown(&self, tenant: TenantId, tier: Tier, asked: GiveBack) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let give_backs = &mut tenants
            .entry(tenant)
            .or_insert_with(|| TenantSlots::new(tier))
            .give_backs;
        if give_backs.len() < MAX_GIVE_BACKS {
            give_backs.push(asked);
        }
    }

    /// A request that asked for `give_back` could not reach Redis: keep it
    /// for the next call.
    pub fn give_back_failed(&self, tenant: TenantId, give_back: GiveBack) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slots) = tenants.get_mut(&tenant) {
            slots.give_backs.push(give_back);
        }
    }

    /// Ends leases that are over (all of them with `everything`, at
    /// shutdown), returns what they and earlier leases left to give back, and
    /// forgets idle tenants (so the map holds only tenants of the last
    /// seconds).
    pub fn take_give_backs(
        &self,
        now: DateTime<Utc>,
        everything: bool,
    ) -> Vec<(TenantId, GiveBack)> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        tenants.retain(|tenant, slots| {
            let until = if everything {
                DateTime::<Utc>::MAX_UTC
            } else {
                now
            };
            slots.end_lease_if_over(until);
            out.extend(slots.give_backs.drain(..).map(|give| (*tenant, give)));
            !slots.is_idle(now)
        });
        out
    }

    /// Tenants currently known (for tests and metrics).
    pub fn tenants_known(&self) -> usize {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(1_795_000_000_000 + ms).unwrap()
    }

    fn counts(minute: u64) -> Counts {
        Counts {
            minute,
            minute_frees_at: Some(at(60_000)),
            day: minute,
            month: minute,
        }
    }

    fn keys() -> (&'static str, &'static str) {
        ("day", "month")
    }

    #[test]
    fn a_quiet_tenant_asks_for_one_slot_dated_now() {
        let leases = Leases::new(Duration::seconds(1));
        let tenant = TenantId::new_random();
        assert_eq!(
            leases.admit(tenant, Tier::Enterprise, at(0)),
            Admission::Ask {
                want: 1,
                hold_ms: 0,
                give_back: None
            }
        );
    }

    /// Asks for a lease for a tenant of `tier` that sent `rate` requests
    /// in the last second: what it wants, and for how long.
    fn lease_after(leases: &Leases, tier: Tier, rate: i64) -> (u64, i64) {
        let tenant = TenantId::new_random();
        for i in 0..rate {
            let _ = leases.admit(tenant, tier, at(i));
        }
        match leases.admit(tenant, tier, at(1_000)) {
            Admission::Ask { want, hold_ms, .. } => (want, hold_ms),
            other => panic!("expected to ask Redis, got {other:?}"),
        }
    }

    #[test]
    fn a_slow_tenant_leases_enough_for_several_requests_held_longer() {
        let leases = Leases::new(Duration::seconds(1));
        // One a second: one slot, dated now (a lease would go unused).
        assert_eq!(lease_after(&leases, Tier::Enterprise, 1), (1, 0));
        // Two a second: eight slots for the four seconds they last.
        assert_eq!(lease_after(&leases, Tier::Enterprise, 2), (8, 4_000));
        // Three a second: eight, held as long as three a second take.
        assert_eq!(lease_after(&leases, Tier::Enterprise, 3), (8, 2_667));
        // Eight a second fill a plain lease: a second's worth, as before.
        assert_eq!(lease_after(&leases, Tier::Enterprise, 8), (8, 1_000));
        assert_eq!(lease_after(&leases, Tier::Enterprise, 12), (12, 1_000));
        // Premium's share is 4 slots: stretched only as long as those take.
        assert_eq!(lease_after(&leases, Tier::Premium, 2), (4, 2_000));
        // Basic never leases, however busy.
        assert_eq!(lease_after(&leases, Tier::Basic, 5), (1, 0));
        // Leases off: every request asks for its own slot.
        let off = Leases::new(Duration::zero());
        assert_eq!(lease_after(&off, Tier::Enterprise, 5), (1, 0));
        // A configured hold past the stretch is used as it is.
        let long = Leases::new(Duration::seconds(5));
        assert_eq!(lease_after(&long, Tier::Enterprise, 1), (5, 5_000));
    }

    #[test]
    fn a_busy_tenant_leases_slots_uses_them_and_gives_back_the_rest() {
        let leases = Leases::new(Duration::seconds(1));
        let tenant = TenantId::new_random();
        // 60 requests in one second: the next second asks for 40 (the cap).
        for i in 0..60 {
            let _ = leases.admit(tenant, Tier::Enterprise, at(i));
        }
        let Admission::Ask { want, hold_ms, .. } =
            leases.admit(tenant, Tier::Enterprise, at(1_000))
        else {
            panic!("expected to ask Redis");
        };
        assert_eq!((want, hold_ms), (40, 1_000));
        leases.granted(
            tenant,
            Tier::Enterprise,
            at(1_000),
            hold_ms,
            20,
            "p".into(),
            counts(20),
            keys(),
        );
        // 4 more requests come from the lease: 15 slots stay unused.
        for used in 2..=5u64 {
            let Admission::Leased { counts: seen, .. } =
                leases.admit(tenant, Tier::Enterprise, at(1_100))
            else {
                panic!("expected the lease to admit");
            };
            assert_eq!(seen.minute, 20, "the whole lease counts in the minute");
            assert_eq!(seen.day, used, "the day counts only slots used");
        }
        // After its end the next request asks again and gives the rest back.
        let Admission::Ask { give_back, .. } = leases.admit(tenant, Tier::Enterprise, at(2_000))
        else {
            panic!("a lease past its end admits nothing");
        };
        let give_back = give_back.expect("the unused slots are given back");
        assert_eq!((give_back.first, give_back.count), (5, 15));
    }

    /// Leases `granted` slots to a tenant that sent 30 requests in the last
    /// second (so it wants 30), at `at(1_000)`.
    fn leased(leases: &Leases, tenant: TenantId, granted: u64) {
        for i in 0..30 {
            let _ = leases.admit(tenant, Tier::Enterprise, at(i));
        }
        let Admission::Ask { hold_ms, .. } = leases.admit(tenant, Tier::Enterprise, at(1_000))
        else {
            panic!("expected to ask Redis");
        };
        leases.granted(
            tenant,
            Tier::Enterprise,
            at(1_000),
            hold_ms,
            granted,
            "first".into(),
            counts(granted),
            keys(),
        );
    }

    /// Records a refill of 20 slots (prefix `refill`, asked at `at(1_100)` for
    /// a second), after which the minute counts `minute`.
    fn refilled(leases: &Leases, tenant: TenantId, minute: u64) {
        leases.refilled(
            tenant,
            Tier::Enterprise,
            at(1_100),
            1_000,
            20,
            "refill".into(),
            counts(minute),
            keys(),
        );
    }

    #[test]
    fn half_a_lease_used_starts_one_refill_and_the_refill_takes_over_without_asking() {
        let leases = Leases::new(Duration::seconds(1));
        let tenant = TenantId::new_random();
        leased(&leases, tenant, 10);
        let mut refills = Vec::new();
        // Slots 2 to 10 of the first lease.
        for _ in 2..=10 {
            let Admission::Leased { refill, .. } =
                leases.admit(tenant, Tier::Enterprise, at(1_100))
            else {
                panic!("expected the lease to admit");
            };
            refills.extend(refill);
        }
        assert_eq!(refills.len(), 1, "one refill under way at a time");
        assert_eq!((refills[0].want, refills[0].hold_ms), (30, 2_000));
        refilled(&leases, tenant, 30);
        // The first lease is used up: the refill admits, no call to Redis.
        for _ in 0..20 {
            assert!(matches!(
                leases.admit(tenant, Tier::Enterprise, at(1_200)),
                Admission::Leased { .. }
            ));
        }
        assert!(matches!(
            leases.admit(tenant, Tier::Enterprise, at(1_200)),
            Admission::Ask { .. }
        ));
    }

    #[test]
    fn a_refill_that_is_not_used_is_given_back_whole() {
        let leases = Leases::new(Duration::seconds(1));
        let tenant = TenantId::new_random();
        leased(&leases, tenant, 4);
        // Three of its four slots used (the first by the request that asked).
        for _ in 0..2 {
            let _ = leases.admit(tenant, Tier::Enterprise, at(1_100));
        }
        refilled(&leases, tenant, 24);
        // The tenant goes quiet: both leases end; the refill's 20 slots and
        // the first lease's unused one go back.
        let mut given: Vec<(String, u64, u64)> = leases
            .take_give_backs(at(2_200), false)
            .into_iter()
            .map(|(_, give)| (give.prefix, give.first, give.count))
            .collect();
        given.sort();
        assert_eq!(
            given,
            vec![("first".into(), 3, 1), ("refill".into(), 0, 20)]
        );
    }

    #[test]
    fn a_refill_granted_under_an_old_tier_is_given_back() {
        let leases = Leases::new(Duration::seconds(1));
        let tenant = TenantId::new_random();
        leased(&leases, tenant, 4);
        let _ = leases.admit(tenant, Tier::Enterprise, at(1_100));
        // Downgraded while the refill was asked for.
        let _ = leases.admit(tenant, Tier::Premium, at(1_150));
        refilled(&leases, tenant, 24);
        let given = leases.take_give_backs(at(1_200), false);
        assert!(given
            .iter()
            .any(|(_, give)| give.prefix == "refill" && give.count == 20));
    }

    #[test]
    fn free_and_basic_tenants_never_lease() {
        let leases = Leases::new(Duration::seconds(1));
        for tier in [Tier::Free, Tier::Basic] {
            let tenant = TenantId::new_random();
            for i in 0..100 {
                let _ = leases.admit(tenant, tier, at(i));
            }
            assert!(matches!(
                leases.admit(tenant, tier, at(1_000)),
                Admission::Ask {
                    want: 1,
                    hold_ms: 0,
                    ..
                }
            ));
        }
    }

    #[test]
    fn a_refusal_is_repeated_until_the_window_frees_a_slot_and_at_most_a_second() {
        let leases = Leases::new(Duration::seconds(1));
        let tenant = TenantId::new_random();
        let mut refused = counts(10);
        refused.minute_frees_at = Some(at(400));
        leases.refused(tenant, Tier::Free, at(0), PolicyName::Minute, refused);
        assert_eq!(
            leases.admit(tenant, Tier::Free, at(399)),
            Admission::StillRefused(PolicyName::Minute, refused)
        );
        assert!(matches!(
            leases.admit(tenant, Tier::Free, at(400)),
            Admission::Ask { .. }
        ));
        // A day refusal ends with the day.
        let before_midnight = DateTime::<Utc>::from_timestamp(1_795_046_399, 500_000_000).unwrap();
        leases.refused(
            tenant,
            Tier::Free,
            before_midnight,
            PolicyName::Day,
            counts(5),
        );
        assert!(matches!(
            leases.admit(
                tenant,
                Tier::Free,
                before_midnight + Duration::milliseconds(499)
            ),
            Admission::StillRefused(PolicyName::Day, _)
        ));
        assert!(matches!(
            leases.admit(
                tenant,
                Tier::Free,
                before_midnight + Duration::milliseconds(500)
            ),
            Admission::Ask { .. }
        ));
        // Otherwise it is repeated for a second, then Redis is asked again.
        leases.refused(tenant, Tier::Free, at(500), PolicyName::Day, counts(5));
        assert!(matches!(
            leases.admit(tenant, Tier::Free, at(1_499)),
            Admission::StillRefused(PolicyName::Day, _)
        ));
        assert!(matches!(
            leases.admit(tenant, Tier::Free, at(1_500)),
            Admission::Ask { .. }
        ));
        // Another tier (an upgrade) is not refused by the old one's memory.
        leases.refused(tenant, Tier::Free, at(2_000), PolicyName::Day, counts(5));
        assert!(matches!(
            leases.admit(tenant, Tier::Premium, at(2_001)),
            Admission::Ask { .. }
        ));
    }

    #[test]
    fn upkeep_gives_back_ended_leases_and_forgets_idle_tenants() {
        let leases = Leases::new(Duration::seconds(1));
        let tenant = TenantId::new_random();
        let _ = leases.admit(tenant, Tier::Enterprise, at(0));
        leases.granted(
            tenant,
            Tier::Enterprise,
            at(0),
            1_000,
            10,
            "p".into(),
            counts(10),
            keys(),
        );
        assert!(leases.take_give_backs(at(500), false).is_empty());
        let given = leases.take_give_backs(at(1_000), false);
        assert_eq!(given.len(), 1);
        assert_eq!((given[0].1.first, given[0].1.count), (1, 9));
        assert_eq!(leases.tenants_known(), 1, "seen this second");
        assert!(leases.take_give_backs(at(3_000), false).is_empty());
        assert_eq!(leases.tenants_known(), 0);
    }

    /// Calls whose outcome is unknown are given back, all of them up to the
    /// bound, and no more: a Redis hanging for long cannot grow the list.
    #[test]
    fn unknown_outcomes_are_given_back_up_to_a_bound() {
        let leases = Leases::new(Duration::seconds(1));
        let tenant = TenantId::new_random();
        for call in 0..100 {
            let asked = GiveBack {
                prefix: format!("p{call}"),
                first: 0,
                count: 40,
                day_key: "day".into(),
                month_key: "month".into(),
            };
            leases.outcome_unknown(tenant, Tier::Free, asked);
        }
        let given = leases.take_give_backs(at(0), false);
        assert_eq!(given.len(), MAX_GIVE_BACKS);
        assert_eq!(
            (
                given[0].1.prefix.as_str(),
                given[0].1.first,
                given[0].1.count
            ),
            ("p0", 0, 40)
        );
        assert!(leases.take_give_backs(at(0), false).is_empty());
    }
}
