//! The limits of a tier as policies, the state of each after a request, and
//! the response headers that describe them:
//!
//! - `RateLimit-Policy: "minute";q=10;w=60, "day";q=1000;w=86400, …` (every
//!   limited policy; IETF draft-ietf-httpapi-ratelimit-headers);
//! - `RateLimit: "minute";r=3;t=41` (the policy closest to refusing: the one
//!   that refused, else the one with the fewest requests left);
//! - `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (the
//!   same policy; reset as a Unix time, as GitHub and others send it).

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone, Utc};
use posture_domain::Tier;

/// The length of the sliding window, in milliseconds.
pub const WINDOW_MS: i64 = 60_000;

/// One of the three limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyName {
    /// Requests in any sliding 60-second window.
    Minute,
    /// Requests per UTC calendar day.
    Day,
    /// Requests per UTC calendar month.
    Month,
}

impl PolicyName {
    /// The name in headers and problems.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::Minute => "minute",
            PolicyName::Day => "day",
            PolicyName::Month => "month",
        }
    }
}

/// The calendar periods containing an instant (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub day: NaiveDate,
    /// The first of the month.
    pub month: NaiveDate,
    /// The next UTC midnight.
    pub day_ends: DateTime<Utc>,
    /// The first instant of the next month.
    pub month_ends: DateTime<Utc>,
}

impl Periods {
    /// The periods `now` falls in.
    pub fn at(now: DateTime<Utc>) -> Periods {
        let day = now.date_naive();
        let month = day.with_day(1).unwrap_or(day);
        let midnight =
            |date: NaiveDate| Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN));
        let next_day = day.checked_add_days(Days::new(1)).unwrap_or(day);
        let next_month = month.checked_add_months(Months::new(1)).unwrap_or(month);
        Periods {
            day,
            month,
            day_ends: midnight(next_day),
            month_ends: midnight(next_month),
        }
    }

    /// The month's length in seconds (the `w` of the month policy).
    fn month_seconds(&self) -> i64 {
        (self.month_ends - Utc.from_utc_datetime(&self.month.and_time(chrono::NaiveTime::MIN)))
            .num_seconds()
    }
}

/// What the counters said, for a tenant, at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Requests in the current 60-second window (this one included if admitted).
    pub minute: u64,
    /// When the window next frees a request (the oldest admitted request
    /// leaves it); `None` when the window is empty.
    pub minute_frees_at: Option<DateTime<Utc>>,
    /// Requests of the day and of the month (this one included if admitted).
    pub day: u64,
    pub month: u64,
}

/// One policy's state after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyState {
    pub name: PolicyName,
    /// The quota; `None` is unlimited (enterprise day and month).
    pub quota: Option<u64>,
    pub used: u64,
    /// Seconds until the window frees a request (minute) or the period ends.
    pub reset_secs: u64,
    /// The policy's window in seconds, for `RateLimit-Policy`.
    pub window_secs: u64,
}

impl PolicyState {
    /// Requests left; `None` when unlimited.
    pub fn remaining(&self) -> Option<u64> {
        self.quota.map(|quota| quota.saturating_sub(self.used))
    }
}

/// The outcome of a request against a tenant's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The policy that refused the request, if one did.
    pub refused_by: Option<PolicyName>,
    /// Every policy's state, minute first.
    pub states: Vec<PolicyState>,
    /// When it was decided.
    pub decided_at: DateTime<Utc>,
}

/// The per-minute, per-day and per-month quotas of `tier`.
pub fn quotas(tier: Tier) -> [(PolicyName, Option<u64>); 3] {
    let limits = tier.limits();
    [
        (PolicyName::Minute, Some(u64::from(limits.per_minute))),
        (PolicyName::Day, limits.per_day.map(u64::from)),
        (PolicyName::Month, limits.per_month.map(u64::from)),
    ]
}

/// Which policy, if any, refuses one more request given `counts` taken before
/// it; checked in order minute, day, month.
pub fn refusing_policy(tier: Tier, counts: &Counts) -> Option<PolicyName> {
    quotas(tier).into_iter().find_map(|(name, quota)| {
        let used = match name {
            PolicyName::Minute => counts.minute,
            PolicyName::Day => counts.day,
            PolicyName::Month => counts.month,
        };
        quota.is_some_and(|quota| used >= quota).then_some(name)
    })
}

/// The decision's full state from the counts after the request.
pub fn decide(
    tier: Tier,
    refused_by: Option<PolicyName>,
    counts: &Counts,
    now: DateTime<Utc>,
) -> Decision {
    let periods = Periods::at(now);
    let seconds_until = |at: DateTime<Utc>| {
        // Rounded up: a client waiting that long finds the request admitted.
        let millis = (at - now).num_milliseconds().max(0);
        u64::try_from((millis + 999) / 1000).unwrap_or(0)
    };
    let states: Vec<PolicyState> = quotas(tier)
        .into_iter()
        .map(|(name, quota)| match name {
            PolicyName::Minute => PolicyState {
                name,
                quota,
                used: counts.minute,
                reset_secs: counts
                    .minute_frees_at
                    .map_or(0, |frees_at| seconds_until(frees_at).max(1)),
                window_secs: 60,
            },
            PolicyName::Day => PolicyState {
                name,
                quota,
                used: counts.day,
                reset_secs: seconds_until(periods.day_ends),
                window_secs: 86_400,
            },
            PolicyName::Month => PolicyState {
                name,
                quota,
                used: counts.month,
                reset_secs: seconds_until(periods.month_ends),
                window_secs: u64::try_from(periods.month_seconds()).unwrap_or(2_592_000),
            },
        })
        .collect();
    // When several limits are used up at once (the day's last request was
    // also the minute's tenth), name the one that frees last: waiting for the
    // first would only meet the next refusal.
    let refused_by = refused_by.map(|first| {
        states
            .iter()
            .filter(|state: &&PolicyState| state.quota.is_some_and(|quota| state.used >= quota))
            .max_by_key(|state| state.reset_secs)
            .map_or(first, |state| state.name)
    });
    Decision {
        refused_by,
        states,
        decided_at: now,
    }
}

impl Decision {
    /// The policy the headers describe: the refusing one, else the limited
    /// one with the fewest requests left (the shorter window on a tie).
    pub fn binding(&self) -> Option<&PolicyState> {
        if let Some(refused) = self.refused_by {
            return self.states.iter().find(|state| state.name == refused);
        }
        self.states
            .iter()
            .filter(|state| state.quota.is_some())
            .min_by_key(|state| (state.remaining(), state.name))
    }

    /// Seconds until the refused request may be retried.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.refused_by?;
        self.binding().map(|state| state.reset_secs.max(1))
    }

    /// Adds the rate-limit headers to `headers`.
    ///
    /// Written byte by byte with `itoa` rather than `format!`: on every
    /// response of a tenant route, the formatting machinery and the run-time
    /// checks of `HeaderName::from_static` made this a twelfth of a cached
    /// read's instructions.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let mut policy = Vec::with_capacity(96);
        for state in self.states.iter().filter(|state| state.quota.is_some()) {
            if !policy.is_empty() {
                policy.extend_from_slice(b", ");
            }
            let quota = ("q", state.quota.unwrap_or_default());
            push_item(&mut policy, state.name, quota, ("w", state.window_secs));
        }
        // The bytes are moved into the header, not copied again.
        let text = |value: Vec<u8>| HeaderValue::from_maybe_shared(Bytes::from(value)).ok();
        if let Some(policy) = text(policy) {
            headers.insert(RATELIMIT_POLICY.clone(), policy);
        }
        if let Some(state) = self.binding() {
            let remaining = state.remaining().unwrap_or_default();
            let mut current = Vec::with_capacity(32);
            push_item(
                &mut current,
                state.name,
                ("r", remaining),
                ("t", state.reset_secs),
            );
            if let Some(value) = text(current) {
                headers.insert(RATELIMIT.clone(), value);
            }
            headers.insert(
                X_RATELIMIT_LIMIT.clone(),
                HeaderValue::from(state.quota.unwrap_or_default()),
            );
            headers.insert(X_RATELIMIT_REMAINING.clone(), HeaderValue::from(remaining));
            // Rounded up, so it is never earlier than the reset itself.
            let reset = self.decided_at
                + chrono::Duration::seconds(i64::try_from(state.reset_secs).unwrap_or(0));
            let reset_at = (reset.timestamp_millis() + 999).div_euclid(1000);
            headers.insert(X_RATELIMIT_RESET.clone(), HeaderValue::from(reset_at));
        }
    }
}

/// `RateLimit-Policy`: every limited policy with its quota and window.
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: the binding policy's remaining requests and reset.
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Appends `"<policy>";<key>=<value>;<key>=<value>`, an item of the
/// rate-limit headers.
fn push_item(out: &mut Vec<u8>, policy: PolicyName, first: (&str, u64), second: (&str, u64)) {
    let mut digits = itoa::Buffer::new();
    out.push(b'"');
    out.extend_from_slice(policy.as_str().as_bytes());
    out.push(b'"');
    for (key, value) in [first, second] {
        out.push(b';');
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(digits.format(value).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn periods_follow_utc_calendar_boundaries() {
        let periods = Periods::at(at("2026-02-28T23:59:59.500Z"));
        assert_eq!(periods.day.to_string(), "2026-02-28");
        assert_eq!(periods.month.to_string(), "2026-02-01");
        assert_eq!(periods.day_ends, at("2026-03-01T00:00:00Z"));
        assert_eq!(periods.month_ends, at("2026-03-01T00:00:00Z"));
        assert_eq!(periods.month_seconds(), 28 * 86_400);
        let december = Periods::at(at("2026-12-31T12:00:00Z"));
        assert_eq!(december.month_ends, at("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn the_first_exhausted_policy_refuses() {
        let counts = |minute, day, month| Counts {
            minute,
            minute_frees_at: None,
            day,
            month,
        };
        assert_eq!(refusing_policy(Tier::Free, &counts(9, 999, 9_999)), None);
        assert_eq!(
            refusing_policy(Tier::Free, &counts(10, 0, 0)),
            Some(PolicyName::Minute)
        );
        assert_eq!(
            refusing_policy(Tier::Free, &counts(0, 1_000, 0)),
            Some(PolicyName::Day)
        );
        assert_eq!(
            refusing_policy(Tier::Free, &counts(0, 0, 10_000)),
            Some(PolicyName::Month)
        );
        // Enterprise has no day or month quota.
        assert_eq!(
            refusing_policy(Tier::Enterprise, &counts(999, u64::MAX, u64::MAX)),
            None
        );
    }

    #[test]
    fn headers_name_the_binding_policy() {
        let now = at("2026-11-23T10:00:00Z");
        let counts = Counts {
            minute: 7,
            minute_frees_at: Some(now + chrono::Duration::seconds(41)),
            day: 998,
            month: 5_000,
        };
        let decision = decide(Tier::Free, None, &counts, now);
        let mut headers = HeaderMap::new();
        decision.write_headers(&mut headers);
        assert_eq!(
            headers["ratelimit-policy"],
            "\"minute\";q=10;w=60, \"day\";q=1000;w=86400, \"month\";q=10000;w=2592000"
        );
        // 2 left today is fewer than 3 left this minute.
        assert_eq!(headers["ratelimit"], "\"day\";r=2;t=50400");
        assert_eq!(headers["x-ratelimit-limit"], "1000");
        assert_eq!(headers["x-ratelimit-remaining"], "2");
        assert_eq!(
            headers["x-ratelimit-reset"],
            at("2026-11-24T00:00:00Z").timestamp().to_string()
        );

        let refused = decide(
            Tier::Free,
            Some(PolicyName::Minute),
            &Counts {
                minute: 10,
                ..counts
            },
            now,
        );
        assert_eq!(refused.retry_after_secs(), Some(41));
        let mut headers = HeaderMap::new();
        refused.write_headers(&mut headers);
        assert_eq!(headers["ratelimit"], "\"minute\";r=0;t=41");
    }

    #[test]
    fn of_several_used_up_limits_the_one_freeing_last_is_named() {
        let now = at("2026-11-23T10:00:00.400Z");
        let counts = Counts {
            minute: 10,
            minute_frees_at: Some(now + chrono::Duration::seconds(55)),
            day: 1_000,
            month: 5_000,
        };
        let decision = decide(Tier::Free, Some(PolicyName::Minute), &counts, now);
        assert_eq!(decision.refused_by, Some(PolicyName::Day));
        assert_eq!(decision.retry_after_secs(), Some(50_400));
        let mut headers = HeaderMap::new();
        decision.write_headers(&mut headers);
        // 10:00:00.4 + 50,400 s, rounded up to the second: never early.
        assert_eq!(
            headers["x-ratelimit-reset"],
            at("2026-11-24T00:00:01Z").timestamp().to_string()
        );
    }

    #[test]
    fn enterprise_lists_only_the_minute_policy() {
        let now = at("2026-11-23T10:00:00Z");
        let counts = Counts {
            minute: 1,
            minute_frees_at: Some(now + chrono::Duration::seconds(60)),
            day: 50_000,
            month: 900_000,
        };
        let decision = decide(Tier::Enterprise, None, &counts, now);
        let mut headers = HeaderMap::new();
        decision.write_headers(&mut headers);
        assert_eq!(headers["ratelimit-policy"], "\"minute\";q=1000;w=60");
        assert_eq!(headers["ratelimit"], "\"minute\";r=999;t=60");
    }
}
