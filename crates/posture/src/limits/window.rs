//! The shared limiter in Redis: one Lua script checks and counts the minute
//! window, the day and the month of one subject in one atomic round trip.
//!
//! **The minute window is a sliding log**: a sorted set of the admitted
//! requests' times. A request at `now` is admitted only if fewer than the
//! quota were admitted in `(now − 60 s, now]`, so no 60-second window ever
//! admits more than the quota, and a request is refused only when one would.
//! Exact, at the price of one set member per call that was granted slots in
//! the last minute: a call's slots share one member, `<prefix>:<n>` for `n`
//! slots, and the minute's count is the sum over the members. One member
//! per slot, as before, made a lease of 40 cost Redis 40 insertions and,
//! a minute later, 40 removals. The sum itself is kept beside the log
//! (`rl:slots:sum`) and changed by exactly the members a call adds, gives
//! back or lets expire: summing the whole log on every call was most of the
//! script's time (70–106 µs a call with a hundred-odd members, on a VM whose
//! Redis shared its two cores). The log is `rl:slots`, not the older
//! `rl:log` (one member per call, summed each time) or `rl:minute` (one
//! per slot): a server still running an older script would change the log
//! without its sum. GCRA and sliding-window counters keep less state but
//! admit up to twice the quota across some 60-second windows, which the
//! product's limits do not allow.
//!
//! **Day and month** are counters whose keys name the UTC period (so they
//! reset at midnight and on the 1st without anyone resetting them). The caller
//! passes each counter's floor — the usage PostgreSQL has recorded — and the
//! script never lets a counter read below it: a Redis that lost its data is
//! re-seeded by the first request after it.
//!
//! **Admission leases** ([`super::lease`]): one call may admit up to `want`
//! requests at once (all or as many as every quota has room for). Their log
//! entries are dated `hold` ahead — the end of the lease — so each stays in
//! the window at least 60 s after the request that uses it, whenever in the
//! lease that request comes: a lease can never make a 60-second window admit
//! more than the quota. The same call first gives back the unused slots of an
//! earlier lease (removes their entries and takes them off the day and month).
//!
//! A refused request is not counted. All keys carry the subject's hash tag
//! (`{t:<tenant>}`), so the script touches one Redis Cluster slot. Time comes
//! from the caller (the injectable clock), not from Redis.

use super::policy::{Counts, Periods, WINDOW_MS};
use chrono::{DateTime, TimeZone, Utc};
use posture_domain::TenantId;
use redis::{Cmd, Script};
use std::sync::OnceLock;

/// KEYS: minute log, day counter, month counter, the day and month
/// counters of the lease given back, and the minute log's sum of slots.
/// ARGV: now (ms), window (ms), minute quota, day quota, month quota (−1:
/// unlimited), day floor, month floor, day key TTL (s), month key TTL (s),
/// member prefix (unique per call; its member is `<prefix>:<slots granted>`),
/// mode (`check` admits and counts, `peek` only reads), slots wanted, hold
/// (ms: how far ahead the slots are dated), prefix of the lease given back,
/// its first unused slot, the number of unused slots (from the first to the
/// lease's end: the lease's member is `<prefix>:<first + unused>`, or, for a
/// call whose reply never came, at most that).
/// Returns: refused policy (`""` if admitted), minute count, oldest entry's
/// time (ms, `""` if none), day count, month count, slots granted.
const LUA: &str = r#"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
-- One member per call that was granted slots: `<prefix>:<n>` stands for n.
local function slots_of(member)
  return tonumber(string.match(member, ':(%d+)$')) or 0
end
-- The whole log's slots, the slow way: only for a sum that is missing or
-- does not add up.
local function recount()
  local slots = 0
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    slots = slots + slots_of(member)
  end
  return slots
end
-- The minute's count is the sum of the log's slots, kept beside it
-- (KEYS[6]) and changed with every member added or removed, so a call
-- costs the members it touches rather than all of them. No log, no count;
-- a log without its sum (a log from before sums were kept, or a sum lost
-- on its own) is summed afresh.
local minute = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  minute = tonumber(redis.call('GET', KEYS[6]) or '') or recount()
end
local back = tonumber(ARGV[16])
if back > 0 then
  local prefix = ARGV[14]
  local first = tonumber(ARGV[15])
  -- The lease's member names its size: first + back for a lease the caller
  -- held; for a call whose reply never came, at most what it asked for.
  for n = first + back, first + 1, -1 do
    local member = prefix .. ':' .. n
    local score = redis.call('ZSCORE', KEYS[1], member)
    if score then
      local removed = n - first
      redis.call('ZREM', KEYS[1], member)
      if first > 0 then
        redis.call('ZADD', KEYS[1], score, prefix .. ':' .. first)
      end
      minute = minute - removed
      if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('DECRBY', KEYS[4], removed) end
      if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('DECRBY', KEYS[5], removed) end
      break
    end
  end
end
-- Members out of the window leave it, and their slots the count: usually a
-- few (the calls of a minute ago), never the whole log.
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
if #expired > 0 then
  for _, member in ipairs(expired) do
    minute = minute - slots_of(member)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
end
-- A sum that does not add up (the log changed behind the script's back) is
-- never trusted below zero: the log is summed afresh.
if minute < 0 then
  minute = recount()
end
local day = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[6]))
local month = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(ARGV[7]))
local refused = ''
local granted = 0
if ARGV[11] == 'check' then
  local minute_quota = tonumber(ARGV[3])
  local day_quota = tonumber(ARGV[4])
  local month_quota = tonumber(ARGV[5])
  if minute >= minute_quota then
    refused = 'minute'
  elseif day_quota >= 0 and day >= day_quota then
    refused = 'day'
  elseif month_quota >= 0 and month >= month_quota then
    refused = 'month'
  else
    granted = math.min(math.max(tonumber(ARGV[12]), 1), minute_quota - minute)
    if day_quota >= 0 then granted = math.min(granted, day_quota - day) end
    if month_quota >= 0 then granted = math.min(granted, month_quota - month) end
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[13]), ARGV[10] .. ':' .. granted)
    -- Entries are dated at most one window ahead (the hold is bounded), so
    -- the log outlives its newest entry's time in the window.
    redis.call('PEXPIRE', KEYS[1], window * 2)
    minute = minute + granted
    day = day + granted
    month = month + granted
    redis.call('SET', KEYS[2], day, 'EX', ARGV[8])
    redis.call('SET', KEYS[3], month, 'EX', ARGV[9])
  end
end
-- The sum lives as long as the log can: a sum without its log counts for
-- nothing (see above), so one that outlives it is harmless.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[6], minute, 'PX', window * 2)
else
  redis.call('DEL', KEYS[6])
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {refused, minute, oldest[2] or '', day, month, granted}
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
    /// Minute log, day, month, the given-back lease's day and month, and
    /// the log's sum.
    keys: [String; 6],
    args: Vec<String>,
}

/// The unused slots of an earlier lease, given back by a later call (or by
/// the limiter's upkeep): their log entries are removed and they are taken
/// off the day and month counters of the lease's own period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveBack {
    /// The lease's member prefix.
    pub prefix: String,
    /// The first unused slot.
    pub first: u64,
    /// How many slots, from `first` on, were not used.
    pub count: u64,
    /// The lease's day and month counters.
    pub day_key: String,
    pub month_key: String,
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
    /// After the call: the granted slots are counted.
    pub counts: Counts,
    /// Slots admitted (0 when refused or peeking).
    pub granted: u64,
}

/// The hash tag of a tenant's keys.
pub fn tenant_tag(tenant: TenantId) -> String {
    format!("{{t:{tenant}}}")
}

impl WindowCall {
    /// A call for the subject whose keys start with `tag` (e.g. `{t:<id>}`),
    /// admitting one request (`Check`, its member `<member>:1`) or none
    /// (`Peek`).
    pub fn new(tag: &str, limits: Limits, now: DateTime<Utc>, member: &str, mode: Mode) -> Self {
        let periods = Periods::at(now);
        let ttl_after = |end: DateTime<Utc>| {
            // Kept a day past the period's end, for late readers; then gone.
            ((end - now).num_seconds() + 86_400).max(1).to_string()
        };
        let quota = |quota: Option<u64>| quota.map_or_else(|| "-1".to_owned(), |q| q.to_string());
        let day_key = format!("{tag}:rl:day:{}", periods.day.format("%Y%m%d"));
        let month_key = format!("{tag}:rl:month:{}", periods.month.format("%Y%m"));
        WindowCall {
            keys: [
                format!("{tag}:rl:slots"),
                day_key.clone(),
                month_key.clone(),
                day_key,
                month_key,
                format!("{tag}:rl:slots:sum"),
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
                "1".to_owned(),
                "0".to_owned(),
                String::new(),
                "0".to_owned(),
                "0".to_owned(),
            ],
        }
    }

    /// Asks for up to `want` slots at once, dated `hold_ms` ahead (a lease);
    /// without this a check asks for one slot dated now.
    pub fn lease(mut self, want: u64, hold_ms: i64) -> Self {
        self.args[11] = want.max(1).to_string();
        self.args[12] = hold_ms.clamp(0, WINDOW_MS).to_string();
        self
    }

    /// Gives back an earlier lease's unused slots in the same call.
    pub fn giving_back(mut self, unused: &GiveBack) -> Self {
        self.keys[3].clone_from(&unused.day_key);
        self.keys[4].clone_from(&unused.month_key);
        self.args[13].clone_from(&unused.prefix);
        self.args[14] = unused.first.to_string();
        self.args[15] = unused.count.to_string();
        self
    }

    /// Everything this call may have been granted, as a give-back: for a call
    /// whose reply never came (timed out after it was sent), which Redis may
    /// have carried out. Giving back slots that were never granted removes
    /// nothing, so this is safe either way; without it such a lease's slots
    /// stayed counted, unused, for a minute.
    pub fn everything_asked(&self) -> GiveBack {
        GiveBack {
            prefix: self.args[9].clone(),
            first: 0,
            count: self.args[11].parse().unwrap_or(1),
            day_key: self.keys[1].clone(),
            month_key: self.keys[2].clone(),
        }
    }

    /// The day and month counters this call counts in.
    pub fn period_keys(&self) -> (&str, &str) {
        (&self.keys[1], &self.keys[2])
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

/// The raw reply: refused, minute, oldest, day, month, granted.
pub type RawReply = (String, u64, String, u64, u64, u64);

/// Reads the script's reply.
pub fn parse_reply(raw: RawReply) -> WindowReply {
    let (refused, minute, oldest, day, month, granted) = raw;
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
        granted,
    }
}

/// Whether an error is Redis saying it does not have the script.
pub fn is_no_script(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
