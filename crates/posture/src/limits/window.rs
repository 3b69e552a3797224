//! The shared limiter in Redis: one Lua script checks and counts the minute
//! window, the day and the month of one subject in one atomic round trip.
//!
//! **The minute window is a sliding log**: a sorted set of the admitted
//! requests' times. A request at `now` is admitted only if fewer than the
//! quota were admitted in `(now − 60 s, now]`, so no 60-second window ever
//! admits more than the quota, and a request is refused only when one would.
//! Exact, at the price of one set member per admitted request in the last
//! minute (at most 1,000 per enterprise tenant, ~60 KB). GCRA and sliding-window
//! counters keep less state but admit up to twice the quota across some
//! 60-second windows, which the product's limits do not allow.
//!
//! **Day and month** are counters whose keys name the UTC period (so they
//! reset at midnight and on the 1st without anyone resetting them). The caller
//! passes each counter's floor — the usage PostgreSQL has recorded — and the
//! script never lets a counter read below it: a Redis that lost its data is
//! re-seeded by the first request after it.
//!
//! A refused request is not counted. All keys carry the subject's hash tag
//! (`{t:<tenant>}`), so the script touches one Redis Cluster slot. Time comes
//! from the caller (the injectable clock), not from Redis.

use super::policy::{Counts, Periods, WINDOW_MS};
use chrono::{DateTime, TimeZone, Utc};
use posture_domain::TenantId;
use redis::{Cmd, Script};
use std::sync::OnceLock;

/// KEYS: minute log, day counter, month counter.
/// ARGV: now (ms), window (ms), minute quota, day quota, month quota (−1:
/// unlimited), day floor, month floor, day key TTL (s), month key TTL (s),
/// member (unique per request), mode (`check` counts an admitted request,
/// `peek` only reads).
/// Returns: refused policy (`""` if admitted), minute count, oldest entry's
/// time (ms, `""` if none), day count, month count.
const LUA: &str = r#"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local minute = redis.call('ZCARD', KEYS[1])
local day = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[6]))
local month = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(ARGV[7]))
local refused = ''
if ARGV[11] == 'check' then
  local day_quota = tonumber(ARGV[4])
  local month_quota = tonumber(ARGV[5])
  if minute >= tonumber(ARGV[3]) then
    refused = 'minute'
  elseif day_quota >= 0 and day >= day_quota then
    refused = 'day'
  elseif month_quota >= 0 and month >= month_quota then
    refused = 'month'
  else
    redis.call('ZADD', KEYS[1], now, ARGV[10])
    redis.call('PEXPIRE', KEYS[1], window)
    minute = minute + 1
    day = day + 1
    month = month + 1
    redis.call('SET', KEYS[2], day, 'EX', ARGV[8])
    redis.call('SET', KEYS[3], month, 'EX', ARGV[9])
  end
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {refused, minute, oldest[2] or '', day, month}
"#;

fn script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(LUA))
}

/// Check and count, or only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Peek,
}

/// One call of the script: what to send and for whom.
#[derive(Debug, Clone)]
pub struct WindowCall {
    keys: [String; 3],
    args: Vec<String>,
}

/// The subject's quotas and floors for one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub minute: u64,
    /// `None`: unlimited.
    pub day: Option<u64>,
    pub month: Option<u64>,
    /// Usage PostgreSQL recorded for the day and the month.
    pub day_floor: u64,
    pub month_floor: u64,
}

/// The script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowReply {
    /// `Some("minute" | "day" | "month")` if refused.
    pub refused: Option<super::policy::PolicyName>,
    pub counts: Counts,
}

/// The hash tag of a tenant's keys.
pub fn tenant_tag(tenant: TenantId) -> String {
    format!("{{t:{tenant}}}")
}

impl WindowCall {
    /// A call for the subject whose keys start with `tag` (e.g. `{t:<id>}`).
    pub fn new(tag: &str, limits: Limits, now: DateTime<Utc>, member: &str, mode: Mode) -> Self {
        let periods = Periods::at(now);
        let ttl_after = |end: DateTime<Utc>| {
            // Kept a day past the period's end, for late readers; then gone.
            ((end - now).num_seconds() + 86_400).max(1).to_string()
        };
        let quota = |quota: Option<u64>| quota.map_or_else(|| "-1".to_owned(), |q| q.to_string());
        WindowCall {
            keys: [
                format!("{tag}:rl:minute"),
                format!("{tag}:rl:day:{}", periods.day.format("%Y%m%d")),
                format!("{tag}:rl:month:{}", periods.month.format("%Y%m")),
            ],
            args: vec![
                now.timestamp_millis().to_string(),
                WINDOW_MS.to_string(),
                limits.minute.to_string(),
                quota(limits.day),
                quota(limits.month),
                limits.day_floor.to_string(),
                limits.month_floor.to_string(),
                ttl_after(periods.day_ends),
                ttl_after(periods.month_ends),
                member.to_owned(),
                match mode {
                    Mode::Check => "check",
                    Mode::Peek => "peek",
                }
                .to_owned(),
            ],
        }
    }

    /// `EVALSHA`: the script by its hash (the usual case; Redis has it cached).
    pub fn evalsha(&self) -> Cmd {
        let mut command = redis::cmd("EVALSHA");
        command.arg(script().get_hash());
        self.keys_and_args(&mut command);
        command
    }

    /// `EVAL`: the script's text, after Redis answered `NOSCRIPT` (it
    /// restarted, or its script cache was flushed); this also caches it again.
    pub fn eval(&self) -> Cmd {
        let mut command = redis::cmd("EVAL");
        command.arg(LUA);
        self.keys_and_args(&mut command);
        command
    }

    fn keys_and_args(&self, command: &mut Cmd) {
        command
            .arg(self.keys.len())
            .arg(&self.keys[..])
            .arg(&self.args[..]);
    }
}

/// The raw reply: refused, minute, oldest, day, month.
pub type RawReply = (String, u64, String, u64, u64);

/// Reads the script's reply.
pub fn parse_reply(raw: RawReply) -> WindowReply {
    let (refused, minute, oldest, day, month) = raw;
    let refused = match refused.as_str() {
        "minute" => Some(super::policy::PolicyName::Minute),
        "day" => Some(super::policy::PolicyName::Day),
        "month" => Some(super::policy::PolicyName::Month),
        _ => None,
    };
    // The oldest admitted request leaves the window 60 s after it came.
    let minute_frees_at = oldest
        .parse::<f64>()
        .ok()
        .and_then(|millis| Utc.timestamp_millis_opt(millis as i64 + WINDOW_MS).single());
    WindowReply {
        refused,
        counts: Counts {
            minute,
            minute_frees_at,
            day,
            month,
        },
    }
}

/// Whether an error is Redis saying it does not have the script.
pub fn is_no_script(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
