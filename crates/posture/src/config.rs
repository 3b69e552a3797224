//! Configuration: defaults, then an optional TOML file, then environment variables.
//!
//! [`SETTINGS`] is the one place every setting is listed with its environment
//! variable, TOML key, default and meaning; `docs/configuration.md` is checked
//! against it by a test, and `posture config` prints the effective values with
//! secrets redacted.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A connection string that may carry a password: redacted whenever printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL with its password; use only to connect.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, safe for logs.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "***".to_owned();
        };
        match rest.split_once('@') {
            Some((credentials, host)) => match credentials.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
                None => self.0.clone(),
            },
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with request and tenant ids as fields.
    Json,
}

/// Every setting of the service. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub public_url: String,
    pub database_url: SecretUrl,
    pub admin_database_url: SecretUrl,
    pub db_pool_min: u32,
    pub db_pool_max: u32,
    pub db_acquire_timeout_ms: u64,
    pub db_max_lifetime_secs: u64,
    pub db_idle_timeout_secs: u64,
    pub db_statement_timeout_ms: u64,
    pub db_idle_in_transaction_timeout_ms: u64,
    pub db_connect_deadline_secs: u64,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub idempotency_ttl_secs: u64,
    pub last_used_flush_secs: u64,
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub workers: usize,
    pub job_lease_secs: u64,
    pub job_max_attempts: i32,
    pub job_retry_base_ms: u64,
    pub job_poll_interval_ms: u64,
    pub maintenance_interval_secs: u64,
    pub job_statement_timeout_ms: u64,
    pub scan_max_bytes_free: usize,
    pub scan_max_bytes_basic: usize,
    pub scan_max_bytes_premium: usize,
    pub scan_max_bytes_enterprise: usize,
    /// `redis://…`; empty runs without Redis.
    pub redis_url: SecretUrl,
    pub redis_connect_timeout_ms: u64,
    pub redis_command_timeout_ms: u64,
    pub redis_max_in_flight: usize,
    pub redis_health_interval_ms: u64,
    pub breaker_window: usize,
    pub breaker_minimum_calls: usize,
    pub breaker_failure_rate_percent: u8,
    pub breaker_slow_call_ms: u64,
    pub breaker_open_wait_ms: u64,
    pub breaker_half_open_probes: usize,
    pub cache_l1_enabled: bool,
    pub cache_l1_ttl_ms: u64,
    pub cache_l1_capacity: u64,
    pub cache_l2_ttl_secs: u64,
    pub cache_version_ttl_ms: u64,
    pub http_cache_max_age_secs: u64,
    pub cache_warm_tenants: u32,
    pub cache_warm_timeout_ms: u64,
    pub rate_limits_enabled: bool,
    pub ip_rate_limit_per_minute: u64,
    pub rate_limit_lease_ms: u64,
    pub usage_flush_interval_ms: u64,
    pub trust_forwarded_for: bool,
    pub webhook_allow_http: bool,
    pub webhook_allowed_hosts: String,
    pub webhook_resolve: String,
    pub webhook_concurrency: usize,
    pub webhook_retry_schedule: String,
    pub webhook_retry_jitter_percent: u8,
    pub webhook_disable_after_secs: u64,
    pub webhook_connect_timeout_ms: u64,
    pub webhook_timeout_ms: u64,
    pub webhook_poll_interval_ms: u64,
    pub webhook_retention_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addr: "127.0.0.1:8080".parse().expect("valid default address"),
            public_url: "http://127.0.0.1:8080".to_owned(),
            database_url: SecretUrl::new(
                "postgres://posture_app:posture_app@127.0.0.1:5432/posture",
            ),
            admin_database_url: SecretUrl::new(
                "postgres://posture_owner:posture_owner@127.0.0.1:5432/posture",
            ),
            db_pool_min: 8,
            db_pool_max: 8,
            db_acquire_timeout_ms: 3_000,
            db_max_lifetime_secs: 3_600,
            db_idle_timeout_secs: 600,
            db_statement_timeout_ms: 5_000,
            db_idle_in_transaction_timeout_ms: 10_000,
            db_connect_deadline_secs: 30,
            request_timeout_ms: 10_000,
            max_body_bytes: 1024 * 1024,
            idempotency_ttl_secs: 86_400,
            last_used_flush_secs: 5,
            shutdown_grace_secs: 30,
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            workers: 2,
            job_lease_secs: 300,
            job_max_attempts: 5,
            job_retry_base_ms: 2_000,
            job_poll_interval_ms: 1_000,
            maintenance_interval_secs: 60,
            job_statement_timeout_ms: 120_000,
            scan_max_bytes_free: 5 * 1024 * 1024,
            scan_max_bytes_basic: 20 * 1024 * 1024,
            scan_max_bytes_premium: 50 * 1024 * 1024,
            scan_max_bytes_enterprise: 100 * 1024 * 1024,
            redis_url: SecretUrl::new("redis://127.0.0.1:6379"),
            redis_connect_timeout_ms: 100,
            redis_command_timeout_ms: 50,
            redis_max_in_flight: 32,
            redis_health_interval_ms: 500,
            breaker_window: 100,
            breaker_minimum_calls: 20,
            breaker_failure_rate_percent: 50,
            breaker_slow_call_ms: 40,
            breaker_open_wait_ms: 5_000,
            breaker_half_open_probes: 3,
            cache_l1_enabled: true,
            cache_l1_ttl_ms: 5_000,
            cache_l1_capacity: 50_000,
            cache_l2_ttl_secs: 30,
            cache_version_ttl_ms: 1_000,
            http_cache_max_age_secs: 5,
            cache_warm_tenants: 1_000,
            cache_warm_timeout_ms: 2_000,
            rate_limits_enabled: true,
            ip_rate_limit_per_minute: 60,
            rate_limit_lease_ms: 1_000,
            usage_flush_interval_ms: 2_000,
            trust_forwarded_for: false,
            webhook_allow_http: false,
            webhook_allowed_hosts: String::new(),
            webhook_resolve: String::new(),
            webhook_concurrency: 16,
            webhook_retry_schedule: "5s,5m,30m,2h,5h,10h,10h".to_owned(),
            webhook_retry_jitter_percent: 10,
            webhook_disable_after_secs: 5 * 86_400,
            webhook_connect_timeout_ms: 5_000,
            webhook_timeout_ms: 15_000,
            webhook_poll_interval_ms: 1_000,
            webhook_retention_days: 30,
        }
    }
}

/// Documentation of one setting.
pub struct SettingDoc {
    /// Environment variable.
    pub env: &'static str,
    /// Key in the TOML file.
    pub toml_key: &'static str,
    /// Default, as text.
    pub default: &'static str,
    /// What it controls.
    pub meaning: &'static str,
}

/// Every setting, in one place. Keep in step with [`Config`] and `docs/configuration.md`.
pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc { env: "POSTURE_CONFIG", toml_key: "-", default: "(none)", meaning: "Path of an optional TOML file; environment variables override it." },
    SettingDoc { env: "POSTURE_LISTEN_ADDR", toml_key: "listen_addr", default: "127.0.0.1:8080", meaning: "Address the HTTP server binds (port 0 picks a free port)." },
    SettingDoc { env: "POSTURE_PUBLIC_URL", toml_key: "public_url", default: "http://127.0.0.1:8080", meaning: "Base URL clients use; printed by `posture demo`." },
    SettingDoc { env: "DATABASE_URL", toml_key: "database_url", default: "postgres://posture_app:posture_app@127.0.0.1:5432/posture", meaning: "Connection of the server: the restricted application role (secret; redacted in output)." },
    SettingDoc { env: "POSTURE_ADMIN_DATABASE_URL", toml_key: "admin_database_url", default: "postgres://posture_owner:posture_owner@127.0.0.1:5432/posture", meaning: "Connection of `migrate`, `admin` and `demo`: the schema owner (secret; redacted in output)." },
    SettingDoc { env: "POSTURE_DB_POOL_MIN", toml_key: "db_pool_min", default: "8", meaning: "Connections the pool keeps open." },
    SettingDoc { env: "POSTURE_DB_POOL_MAX", toml_key: "db_pool_max", default: "8", meaning: "Connections the pool may burst to: a few per core of the database server (more only contend for its cores)." },
    SettingDoc { env: "POSTURE_DB_ACQUIRE_TIMEOUT_MS", toml_key: "db_acquire_timeout_ms", default: "3000", meaning: "Longest wait for a pooled connection before the request fails with 503." },
    SettingDoc { env: "POSTURE_DB_MAX_LIFETIME_SECS", toml_key: "db_max_lifetime_secs", default: "3600", meaning: "Connections are recycled after this age." },
    SettingDoc { env: "POSTURE_DB_IDLE_TIMEOUT_SECS", toml_key: "db_idle_timeout_secs", default: "600", meaning: "Idle connections above the minimum are closed after this." },
    SettingDoc { env: "POSTURE_DB_STATEMENT_TIMEOUT_MS", toml_key: "db_statement_timeout_ms", default: "5000", meaning: "statement_timeout of every server connection." },
    SettingDoc { env: "POSTURE_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", toml_key: "db_idle_in_transaction_timeout_ms", default: "10000", meaning: "idle_in_transaction_session_timeout of every server connection." },
    SettingDoc { env: "POSTURE_DB_CONNECT_DEADLINE_SECS", toml_key: "db_connect_deadline_secs", default: "30", meaning: "At start-up, retry the database with backoff and jitter for this long, then give up." },
    SettingDoc { env: "POSTURE_REQUEST_TIMEOUT_MS", toml_key: "request_timeout_ms", default: "10000", meaning: "A request still running after this is answered 503." },
    SettingDoc { env: "POSTURE_MAX_BODY_BYTES", toml_key: "max_body_bytes", default: "1048576", meaning: "Largest accepted request body; larger ones get 413." },
    SettingDoc { env: "POSTURE_IDEMPOTENCY_TTL_SECS", toml_key: "idempotency_ttl_secs", default: "86400", meaning: "How long a POST's response is kept for replay under its Idempotency-Key (then the key may be reused)." },
    SettingDoc { env: "POSTURE_LAST_USED_FLUSH_SECS", toml_key: "last_used_flush_secs", default: "5", meaning: "How often API keys' last_used_at is written (each key at most once a minute)." },
    SettingDoc { env: "POSTURE_SHUTDOWN_GRACE_SECS", toml_key: "shutdown_grace_secs", default: "30", meaning: "On SIGTERM/SIGINT, how long in-flight requests may take to finish." },
    SettingDoc { env: "POSTURE_LOG_FORMAT", toml_key: "log_format", default: "text", meaning: "`text` or `json` (one object per line, with request_id and tenant_id)." },
        SettingDoc { env: "POSTURE_LOG", toml_key: "log_filter", default: "info", meaning: "Log filter in tracing's EnvFilter syntax, e.g. `info,posture=debug`." },
    SettingDoc { env: "POSTURE_WORKERS", toml_key: "workers", default: "2", meaning: "Job workers inside `posture serve` (0: none; run `posture worker` elsewhere). `posture worker` uses at least 1." },
    SettingDoc { env: "POSTURE_JOB_LEASE_SECS", toml_key: "job_lease_secs", default: "300", meaning: "How long a claimed job is held; a crashed worker's job is taken over after this." },
    SettingDoc { env: "POSTURE_JOB_MAX_ATTEMPTS", toml_key: "job_max_attempts", default: "5", meaning: "Attempts before a job is dead (visible on its scan)." },
    SettingDoc { env: "POSTURE_JOB_RETRY_BASE_MS", toml_key: "job_retry_base_ms", default: "2000", meaning: "First retry delay of a failed job; each later one is four times longer (±25 % jitter, at most 1 h)." },
    SettingDoc { env: "POSTURE_JOB_POLL_INTERVAL_MS", toml_key: "job_poll_interval_ms", default: "1000", meaning: "Idle workers look for due jobs this often even without a notification." },
        SettingDoc { env: "POSTURE_MAINTENANCE_INTERVAL_SECS", toml_key: "maintenance_interval_secs", default: "60", meaning: "How often workers run upkeep: findings whose accepted risk has expired reopen." },
        SettingDoc { env: "POSTURE_JOB_STATEMENT_TIMEOUT_MS", toml_key: "job_statement_timeout_ms", default: "120000", meaning: "statement_timeout of the transaction that applies a scan (a 100k-finding report takes seconds; request-path statements keep db_statement_timeout_ms)." },
    SettingDoc { env: "POSTURE_SCAN_MAX_BYTES_FREE", toml_key: "scan_max_bytes_free", default: "5242880", meaning: "Largest scan report a free-tier tenant may submit (413 above)." },
    SettingDoc { env: "POSTURE_SCAN_MAX_BYTES_BASIC", toml_key: "scan_max_bytes_basic", default: "20971520", meaning: "Largest scan report for the basic tier." },
    SettingDoc { env: "POSTURE_SCAN_MAX_BYTES_PREMIUM", toml_key: "scan_max_bytes_premium", default: "52428800", meaning: "Largest scan report for the premium tier." },
    SettingDoc { env: "POSTURE_SCAN_MAX_BYTES_ENTERPRISE", toml_key: "scan_max_bytes_enterprise", default: "104857600", meaning: "Largest scan report for the enterprise tier." },
    SettingDoc { env: "REDIS_URL", toml_key: "redis_url", default: "redis://127.0.0.1:6379", meaning: "Redis, the shared cache (L2); empty runs without it. Redis is never required: requests fall back to PostgreSQL." },
    SettingDoc { env: "POSTURE_REDIS_CONNECT_TIMEOUT_MS", toml_key: "redis_connect_timeout_ms", default: "100", meaning: "Longest wait for a connection to Redis." },
    SettingDoc { env: "POSTURE_REDIS_COMMAND_TIMEOUT_MS", toml_key: "redis_command_timeout_ms", default: "50", meaning: "Longest wait for one Redis reply; a request never waits longer on Redis." },
    SettingDoc { env: "POSTURE_REDIS_MAX_IN_FLIGHT", toml_key: "redis_max_in_flight", default: "32", meaning: "Most Redis commands one server has sent and not yet had answered; more wait their turn within the command timeout, and one that cannot be sent in time falls back like a failed call without counting against Redis in the circuit breaker. 1 to 10000." },
    SettingDoc { env: "POSTURE_REDIS_HEALTH_INTERVAL_MS", toml_key: "redis_health_interval_ms", default: "500", meaning: "How often the Redis health check PINGs (feeding the circuit breaker)." },
    SettingDoc { env: "POSTURE_BREAKER_WINDOW", toml_key: "breaker_window", default: "100", meaning: "Redis calls in the circuit breaker's sliding window." },
    SettingDoc { env: "POSTURE_BREAKER_MINIMUM_CALLS", toml_key: "breaker_minimum_calls", default: "20", meaning: "Calls in the window before the failure rate is judged." },
    SettingDoc { env: "POSTURE_BREAKER_FAILURE_RATE_PERCENT", toml_key: "breaker_failure_rate_percent", default: "50", meaning: "Failure rate (timeouts and slow calls included) at which the breaker opens." },
    SettingDoc { env: "POSTURE_BREAKER_SLOW_CALL_MS", toml_key: "breaker_slow_call_ms", default: "40", meaning: "A Redis call at least this slow counts as a failure." },
    SettingDoc { env: "POSTURE_BREAKER_OPEN_WAIT_MS", toml_key: "breaker_open_wait_ms", default: "5000", meaning: "How long the open breaker skips Redis before probing it." },
    SettingDoc { env: "POSTURE_BREAKER_HALF_OPEN_PROBES", toml_key: "breaker_half_open_probes", default: "3", meaning: "Probe calls while half-open; all must succeed to close." },
    SettingDoc { env: "POSTURE_CACHE_L1_ENABLED", toml_key: "cache_l1_enabled", default: "true", meaning: "Keep cached views in process memory (L1); off sends every cached read to Redis (for benchmarks)." },
    SettingDoc { env: "POSTURE_CACHE_L1_TTL_MS", toml_key: "cache_l1_ttl_ms", default: "5000", meaning: "How long a view or a key's credentials stay in L1; also how stale they can be on an instance that cannot reach Redis (at most 5000)." },
    SettingDoc { env: "POSTURE_CACHE_L1_CAPACITY", toml_key: "cache_l1_capacity", default: "50000", meaning: "Most views held in L1." },
    SettingDoc { env: "POSTURE_CACHE_L2_TTL_SECS", toml_key: "cache_l2_ttl_secs", default: "30", meaning: "How long a view stays in Redis (L2)." },
    SettingDoc { env: "POSTURE_CACHE_VERSION_TTL_MS", toml_key: "cache_version_ttl_ms", default: "1000", meaning: "How long an instance trusts a tenant's cache generations before reading them again: a change (including a key revocation) reaches every instance within this (at most 5000)." },
    SettingDoc { env: "POSTURE_CACHE_WARM_TENANTS", toml_key: "cache_warm_tenants", default: "1000", meaning: "At start-up, the posture views of this many most recently active tenants are loaded into the cache before the server accepts requests (0: none)." },
    SettingDoc { env: "POSTURE_CACHE_WARM_TIMEOUT_MS", toml_key: "cache_warm_timeout_ms", default: "2000", meaning: "Longest that warming may delay start-up; whatever is not loaded by then is loaded on demand." },
    SettingDoc { env: "POSTURE_HTTP_CACHE_MAX_AGE_SECS", toml_key: "http_cache_max_age_secs", default: "5", meaning: "`Cache-Control: private, max-age` of cached tenant reads (they also carry an ETag for `If-None-Match`)." },
    SettingDoc { env: "POSTURE_RATE_LIMITS_ENABLED", toml_key: "rate_limits_enabled", default: "true", meaning: "Enforce the tiers' rate limits and quotas and the per-IP limit (off: for benchmarks only)." },
    SettingDoc { env: "POSTURE_IP_RATE_LIMIT_PER_MINUTE", toml_key: "ip_rate_limit_per_minute", default: "60", meaning: "Requests per minute from one client address without a valid API key (401s and public routes), per server; 1 to 60000. An address over it is refused before its key is looked up." },
    SettingDoc { env: "POSTURE_RATE_LIMIT_LEASE_MS", toml_key: "rate_limit_lease_ms", default: "1000", meaning: "How long a server may use per-minute slots it reserved in Redis for a busy premium or enterprise tenant (at most 1/25 of the minute quota per lease, about a second of its traffic, or up to 4 s of it, 8 slots, for a tenant sending only a few requests a second), instead of one Redis call per request; unused slots are given back. 0 to 10000; 0 makes every request ask Redis." },
    SettingDoc { env: "POSTURE_USAGE_FLUSH_INTERVAL_MS", toml_key: "usage_flush_interval_ms", default: "2000", meaning: "How often each server adds the requests it admitted to PostgreSQL (the durable day and month usage); at most 10000." },
    SettingDoc { env: "POSTURE_TRUST_FORWARDED_FOR", toml_key: "trust_forwarded_for", default: "false", meaning: "Take the client address from the last `X-Forwarded-For` entry (only behind a proxy that appends it)." },
    SettingDoc { env: "POSTURE_WEBHOOK_ALLOW_HTTP", toml_key: "webhook_allow_http", default: "false", meaning: "Accept plain `http://` webhook URLs (tests, on-premise receivers); otherwise https only." },
    SettingDoc { env: "POSTURE_WEBHOOK_ALLOWED_HOSTS", toml_key: "webhook_allowed_hosts", default: "", meaning: "Comma-separated host names exempt from the public-address check (SSRF protection); empty in production." },
    SettingDoc { env: "POSTURE_WEBHOOK_RESOLVE", toml_key: "webhook_resolve", default: "", meaning: "`host=address` pairs, comma-separated (repeat a host for several addresses), used instead of DNS for webhook hosts, like curl's --resolve." },
    SettingDoc { env: "POSTURE_WEBHOOK_CONCURRENCY", toml_key: "webhook_concurrency", default: "16", meaning: "Webhook deliveries one process sends at once (0: no dispatcher in this process). Runs in `posture serve` and `posture worker`." },
    SettingDoc { env: "POSTURE_WEBHOOK_RETRY_SCHEDULE", toml_key: "webhook_retry_schedule", default: "5s,5m,30m,2h,5h,10h,10h", meaning: "Waits before each retry of a failed delivery (units ms, s, m, h; 1 to 20 steps); a delivery gets one attempt more than there are steps." },
    SettingDoc { env: "POSTURE_WEBHOOK_RETRY_JITTER_PERCENT", toml_key: "webhook_retry_jitter_percent", default: "10", meaning: "Each retry wait is lengthened by up to this share, at random (0 to 100); a receiver's Retry-After is a minimum." },
    SettingDoc { env: "POSTURE_WEBHOOK_DISABLE_AFTER_SECS", toml_key: "webhook_disable_after_secs", default: "432000", meaning: "An endpoint whose deliveries have failed without a success for this long (5 days) is disabled and the organization told." },
    SettingDoc { env: "POSTURE_WEBHOOK_CONNECT_TIMEOUT_MS", toml_key: "webhook_connect_timeout_ms", default: "5000", meaning: "Longest wait to connect to a webhook endpoint." },
    SettingDoc { env: "POSTURE_WEBHOOK_TIMEOUT_MS", toml_key: "webhook_timeout_ms", default: "15000", meaning: "Longest a delivery attempt may take in all (connect, send, answer); at most 60000." },
    SettingDoc { env: "POSTURE_WEBHOOK_POLL_INTERVAL_MS", toml_key: "webhook_poll_interval_ms", default: "1000", meaning: "Idle dispatchers look for retries that came due this often (new events wake them at once)." },
    SettingDoc { env: "POSTURE_WEBHOOK_RETENTION_DAYS", toml_key: "webhook_retention_days", default: "30", meaning: "Events and their delivery logs are kept this long once every delivery has finished." },
];

impl Config {
    /// Loads the configuration from `POSTURE_CONFIG` (if set) and the process environment.
    pub fn load() -> anyhow::Result<Config> {
        let file = std::env::var("POSTURE_CONFIG").ok();
        Config::load_from(file.as_deref().map(Path::new), |name| {
            std::env::var(name).ok()
        })
    }

    /// Loads from an optional TOML file and an environment lookup (injectable for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.check()?;
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        fn set<T: std::str::FromStr>(
            env: &impl Fn(&str) -> Option<String>,
            name: &str,
            slot: &mut T,
        ) -> anyhow::Result<()>
        where
            T::Err: fmt::Display,
        {
            if let Some(text) = env(name) {
                *slot = text
                    .trim()
                    .parse()
                    .map_err(|error| anyhow::anyhow!("{name}={text:?} is invalid: {error}"))?;
            }
            Ok(())
        }
        set(&env, "POSTURE_LISTEN_ADDR", &mut self.listen_addr)?;
        set(&env, "POSTURE_PUBLIC_URL", &mut self.public_url)?;
        if let Some(url) = env("DATABASE_URL") {
            self.database_url = SecretUrl::new(url);
        }
        if let Some(url) = env("POSTURE_ADMIN_DATABASE_URL") {
            self.admin_database_url = SecretUrl::new(url);
        }
        set(&env, "POSTURE_DB_POOL_MIN", &mut self.db_pool_min)?;
        set(&env, "POSTURE_DB_POOL_MAX", &mut self.db_pool_max)?;
        set(
            &env,
            "POSTURE_DB_ACQUIRE_TIMEOUT_MS",
            &mut self.db_acquire_timeout_ms,
        )?;
        set(
            &env,
            "POSTURE_DB_MAX_LIFETIME_SECS",
            &mut self.db_max_lifetime_secs,
        )?;
        set(
            &env,
            "POSTURE_DB_IDLE_TIMEOUT_SECS",
            &mut self.db_idle_timeout_secs,
        )?;
        set(
            &env,
            "POSTURE_DB_STATEMENT_TIMEOUT_MS",
            &mut self.db_statement_timeout_ms,
        )?;
        set(
            &env,
            "POSTURE_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
            &mut self.db_idle_in_transaction_timeout_ms,
        )?;
        set(
            &env,
            "POSTURE_DB_CONNECT_DEADLINE_SECS",
            &mut self.db_connect_deadline_secs,
        )?;
        set(
            &env,
            "POSTURE_REQUEST_TIMEOUT_MS",
            &mut self.request_timeout_ms,
        )?;
        set(&env, "POSTURE_MAX_BODY_BYTES", &mut self.max_body_bytes)?;
        set(
            &env,
            "POSTURE_IDEMPOTENCY_TTL_SECS",
            &mut self.idempotency_ttl_secs,
        )?;
        set(
            &env,
            "POSTURE_LAST_USED_FLUSH_SECS",
            &mut self.last_used_flush_secs,
        )?;
        set(
            &env,
            "POSTURE_SHUTDOWN_GRACE_SECS",
            &mut self.shutdown_grace_secs,
        )?;
        set(&env, "POSTURE_WORKERS", &mut self.workers)?;
        set(&env, "POSTURE_JOB_LEASE_SECS", &mut self.job_lease_secs)?;
        set(&env, "POSTURE_JOB_MAX_ATTEMPTS", &mut self.job_max_attempts)?;
        set(
            &env,
            "POSTURE_JOB_RETRY_BASE_MS",
            &mut self.job_retry_base_ms,
        )?;
        set(
            &env,
            "POSTURE_JOB_POLL_INTERVAL_MS",
            &mut self.job_poll_interval_ms,
        )?;
        set(
            &env,
            "POSTURE_MAINTENANCE_INTERVAL_SECS",
            &mut self.maintenance_interval_secs,
        )?;
        set(
            &env,
            "POSTURE_JOB_STATEMENT_TIMEOUT_MS",
            &mut self.job_statement_timeout_ms,
        )?;
        set(
            &env,
            "POSTURE_SCAN_MAX_BYTES_FREE",
            &mut self.scan_max_bytes_free,
        )?;
        set(
            &env,
            "POSTURE_SCAN_MAX_BYTES_BASIC",
            &mut self.scan_max_bytes_basic,
        )?;
        set(
            &env,
            "POSTURE_SCAN_MAX_BYTES_PREMIUM",
            &mut self.scan_max_bytes_premium,
        )?;
        set(
            &env,
            "POSTURE_SCAN_MAX_BYTES_ENTERPRISE",
            &mut self.scan_max_bytes_enterprise,
        )?;
        if let Some(url) = env("REDIS_URL") {
            self.redis_url = SecretUrl::new(url);
        }
        set(
            &env,
            "POSTURE_REDIS_CONNECT_TIMEOUT_MS",
            &mut self.redis_connect_timeout_ms,
        )?;
        set(
            &env,
            "POSTURE_REDIS_COMMAND_TIMEOUT_MS",
            &mut self.redis_command_timeout_ms,
        )?;
        set(
            &env,
            "POSTURE_REDIS_MAX_IN_FLIGHT",
            &mut self.redis_max_in_flight,
        )?;
        set(
            &env,
            "POSTURE_REDIS_HEALTH_INTERVAL_MS",
            &mut self.redis_health_interval_ms,
        )?;
        set(&env, "POSTURE_BREAKER_WINDOW", &mut self.breaker_window)?;
        set(
            &env,
            "POSTURE_BREAKER_MINIMUM_CALLS",
            &mut self.breaker_minimum_calls,
        )?;
        set(
            &env,
            "POSTURE_BREAKER_FAILURE_RATE_PERCENT",
            &mut self.breaker_failure_rate_percent,
        )?;
        set(
            &env,
            "POSTURE_BREAKER_SLOW_CALL_MS",
            &mut self.breaker_slow_call_ms,
        )?;
        set(
            &env,
            "POSTURE_BREAKER_OPEN_WAIT_MS",
            &mut self.breaker_open_wait_ms,
        )?;
        set(
            &env,
            "POSTURE_BREAKER_HALF_OPEN_PROBES",
            &mut self.breaker_half_open_probes,
        )?;
        set(&env, "POSTURE_CACHE_L1_ENABLED", &mut self.cache_l1_enabled)?;
        set(&env, "POSTURE_CACHE_L1_TTL_MS", &mut self.cache_l1_ttl_ms)?;
        set(
            &env,
            "POSTURE_CACHE_L1_CAPACITY",
            &mut self.cache_l1_capacity,
        )?;
        set(
            &env,
            "POSTURE_CACHE_L2_TTL_SECS",
            &mut self.cache_l2_ttl_secs,
        )?;
        set(
            &env,
            "POSTURE_CACHE_VERSION_TTL_MS",
            &mut self.cache_version_ttl_ms,
        )?;
        set(
            &env,
            "POSTURE_HTTP_CACHE_MAX_AGE_SECS",
            &mut self.http_cache_max_age_secs,
        )?;
        set(
            &env,
            "POSTURE_CACHE_WARM_TENANTS",
            &mut self.cache_warm_tenants,
        )?;
        set(
            &env,
            "POSTURE_CACHE_WARM_TIMEOUT_MS",
            &mut self.cache_warm_timeout_ms,
        )?;
        set(
            &env,
            "POSTURE_RATE_LIMITS_ENABLED",
            &mut self.rate_limits_enabled,
        )?;
        set(
            &env,
            "POSTURE_IP_RATE_LIMIT_PER_MINUTE",
            &mut self.ip_rate_limit_per_minute,
        )?;
        set(
            &env,
            "POSTURE_RATE_LIMIT_LEASE_MS",
            &mut self.rate_limit_lease_ms,
        )?;
        set(
            &env,
            "POSTURE_USAGE_FLUSH_INTERVAL_MS",
            &mut self.usage_flush_interval_ms,
        )?;
        set(
            &env,
            "POSTURE_TRUST_FORWARDED_FOR",
            &mut self.trust_forwarded_for,
        )?;
        set(
            &env,
            "POSTURE_WEBHOOK_ALLOW_HTTP",
            &mut self.webhook_allow_http,
        )?;
        if let Some(hosts) = env("POSTURE_WEBHOOK_ALLOWED_HOSTS") {
            self.webhook_allowed_hosts = hosts;
        }
        if let Some(resolve) = env("POSTURE_WEBHOOK_RESOLVE") {
            self.webhook_resolve = resolve;
        }
        set(
            &env,
            "POSTURE_WEBHOOK_CONCURRENCY",
            &mut self.webhook_concurrency,
        )?;
        if let Some(schedule) = env("POSTURE_WEBHOOK_RETRY_SCHEDULE") {
            self.webhook_retry_schedule = schedule;
        }
        set(
            &env,
            "POSTURE_WEBHOOK_RETRY_JITTER_PERCENT",
            &mut self.webhook_retry_jitter_percent,
        )?;
        set(
            &env,
            "POSTURE_WEBHOOK_DISABLE_AFTER_SECS",
            &mut self.webhook_disable_after_secs,
        )?;
        set(
            &env,
            "POSTURE_WEBHOOK_CONNECT_TIMEOUT_MS",
            &mut self.webhook_connect_timeout_ms,
        )?;
        set(
            &env,
            "POSTURE_WEBHOOK_TIMEOUT_MS",
            &mut self.webhook_timeout_ms,
        )?;
        set(
            &env,
            "POSTURE_WEBHOOK_POLL_INTERVAL_MS",
            &mut self.webhook_poll_interval_ms,
        )?;
        set(
            &env,
            "POSTURE_WEBHOOK_RETENTION_DAYS",
            &mut self.webhook_retention_days,
        )?;
        if let Some(format) = env("POSTURE_LOG_FORMAT") {
            self.log_format = match format.trim() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => bail!("POSTURE_LOG_FORMAT={other:?} is invalid: expected text or json"),
            };
        }
        if let Some(filter) = env("POSTURE_LOG").or_else(|| env("RUST_LOG")) {
            self.log_filter = filter;
        }
        Ok(())
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.db_pool_max == 0 || self.db_pool_min > self.db_pool_max {
            bail!(
                "db_pool_min ({}) must not exceed db_pool_max ({}), which must be positive",
                self.db_pool_min,
                self.db_pool_max
            );
        }
        // Both bound how long a revoked key keeps working on an instance that
        // missed the revocation's notification: L1 when Redis is down, the
        // version TTL while it is up.
        if self.cache_l1_ttl_ms > 5_000 {
            bail!(
                "cache_l1_ttl_ms must be at most 5000: a revoked key must stop working within 5 s"
            );
        }
        if !(100..=10_000).contains(&self.usage_flush_interval_ms) {
            bail!("usage_flush_interval_ms must be between 100 and 10000: usage must reach PostgreSQL within seconds");
        }
        if let Err(problem) =
            crate::webhooks::destination::DestinationPolicy::parse_resolve(&self.webhook_resolve)
        {
            bail!("webhook_resolve: {problem}");
        }
        if let Err(problem) =
            crate::webhooks::dispatcher::parse_schedule(&self.webhook_retry_schedule)
        {
            bail!("webhook_retry_schedule: {problem}");
        }
        if self.webhook_retry_jitter_percent > 100 {
            bail!("webhook_retry_jitter_percent must be between 0 and 100");
        }
        if !(1..=60_000).contains(&self.webhook_timeout_ms)
            || !(1..=60_000).contains(&self.webhook_connect_timeout_ms)
        {
            bail!("webhook_timeout_ms and webhook_connect_timeout_ms must be between 1 and 60000");
        }
        if self.webhook_disable_after_secs == 0 || self.webhook_retention_days == 0 {
            bail!("webhook_disable_after_secs and webhook_retention_days must be positive");
        }
        if self.rate_limit_lease_ms > 10_000 {
            bail!("rate_limit_lease_ms must be at most 10000: leased slots are reserved for that long");
        }
        if !(1..=10_000).contains(&self.redis_max_in_flight) {
            bail!("redis_max_in_flight must be between 1 and 10000");
        }
        if !(1..=60_000).contains(&self.ip_rate_limit_per_minute) {
            bail!("ip_rate_limit_per_minute must be between 1 and 60000");
        }
        if self.cache_version_ttl_ms > 5_000 {
            bail!("cache_version_ttl_ms must be at most 5000: a revoked key must stop working within 5 s");
        }
        if !(1..=100).contains(&self.job_max_attempts) {
            bail!("job_max_attempts must be between 1 and 100");
        }
        if !(1..=100).contains(&self.breaker_failure_rate_percent) || self.breaker_window == 0 {
            bail!("breaker_failure_rate_percent must be 1 to 100 and breaker_window positive");
        }
        if self.max_body_bytes == 0 || self.request_timeout_ms == 0 {
            bail!("max_body_bytes and request_timeout_ms must be positive");
        }
        Ok(())
    }

    /// Largest scan report a tenant of `tier` may submit.
    pub fn scan_max_bytes(&self, tier: posture_domain::Tier) -> usize {
        use posture_domain::Tier;
        match tier {
            Tier::Free => self.scan_max_bytes_free,
            Tier::Basic => self.scan_max_bytes_basic,
            Tier::Premium => self.scan_max_bytes_premium,
            Tier::Enterprise => self.scan_max_bytes_enterprise,
        }
    }

    /// The largest scan report of any tier (the stored-report decompression bound).
    pub fn scan_max_bytes_any(&self) -> usize {
        posture_domain::Tier::ALL
            .into_iter()
            .map(|tier| self.scan_max_bytes(tier))
            .max()
            .unwrap_or(0)
    }

    /// Worker behaviour, with `count` workers.
    pub fn worker_settings(&self, count: usize) -> crate::jobs::worker::WorkerSettings {
        crate::jobs::worker::WorkerSettings {
            count,
            lease: Duration::from_secs(self.job_lease_secs.max(1)),
            retry_base: Duration::from_millis(self.job_retry_base_ms),
            poll_interval: Duration::from_millis(self.job_poll_interval_ms.max(10)),
            max_report_bytes: self.scan_max_bytes_any(),
            maintenance_interval: Duration::from_secs(self.maintenance_interval_secs.max(1)),
            apply_statement_timeout: Duration::from_millis(
                self.job_statement_timeout_ms.max(1_000),
            ),
            webhook_retention_days: i32::try_from(self.webhook_retention_days).unwrap_or(i32::MAX),
        }
    }

    /// Redis connection and circuit breaker settings.
    pub fn redis_settings(&self) -> crate::cache::redis::RedisSettings {
        use crate::cache::breaker::BreakerSettings;
        let url = self.redis_url.expose().trim();
        crate::cache::redis::RedisSettings {
            url: (!url.is_empty()).then(|| url.to_owned()),
            connect_timeout: Duration::from_millis(self.redis_connect_timeout_ms.max(1)),
            command_timeout: Duration::from_millis(self.redis_command_timeout_ms.max(1)),
            health_interval: Duration::from_millis(self.redis_health_interval_ms.max(10)),
            max_in_flight: self.redis_max_in_flight,
            breaker: BreakerSettings {
                window: self.breaker_window,
                minimum_calls: self.breaker_minimum_calls,
                failure_rate: f64::from(self.breaker_failure_rate_percent) / 100.0,
                slow_call: Duration::from_millis(self.breaker_slow_call_ms.max(1)),
                open_wait: Duration::from_millis(self.breaker_open_wait_ms),
                half_open_probes: self.breaker_half_open_probes.max(1),
            },
        }
    }

    /// How the webhook dispatcher behaves.
    pub fn dispatcher_settings(&self) -> crate::webhooks::dispatcher::DispatcherSettings {
        let total = Duration::from_millis(self.webhook_timeout_ms.max(1));
        crate::webhooks::dispatcher::DispatcherSettings {
            concurrency: self.webhook_concurrency,
            // Validated when the configuration was read.
            schedule: crate::webhooks::dispatcher::parse_schedule(&self.webhook_retry_schedule)
                .unwrap_or_else(|_| vec![Duration::from_secs(5)]),
            jitter: f64::from(self.webhook_retry_jitter_percent.min(100)) / 100.0,
            disable_after: Duration::from_secs(self.webhook_disable_after_secs.max(1)),
            // An attempt ends within the total timeout; the margin covers
            // reading and recording it.
            lease: total + Duration::from_secs(30),
            poll_interval: Duration::from_millis(self.webhook_poll_interval_ms.max(10)),
        }
    }

    /// The webhook client's timeouts.
    pub fn webhook_timeouts(&self) -> crate::webhooks::client::Timeouts {
        crate::webhooks::client::Timeouts {
            connect: Duration::from_millis(self.webhook_connect_timeout_ms.max(1)),
            total: Duration::from_millis(self.webhook_timeout_ms.max(1)),
        }
    }

    /// How webhook destinations are vetted.
    pub fn webhook_policy(&self) -> crate::webhooks::destination::DestinationPolicy {
        crate::webhooks::destination::DestinationPolicy {
            allow_http: self.webhook_allow_http,
            allowed_hosts: self
                .webhook_allowed_hosts
                .split(',')
                .map(|host| host.trim().to_ascii_lowercase())
                .filter(|host| !host.is_empty())
                .collect(),
            // Validated when the configuration was read.
            resolve: crate::webhooks::destination::DestinationPolicy::parse_resolve(
                &self.webhook_resolve,
            )
            .unwrap_or_default(),
            resolve_timeout: Duration::from_secs(2),
        }
    }

    /// View cache settings.
    pub fn view_cache_settings(&self) -> crate::cache::views::ViewCacheSettings {
        crate::cache::views::ViewCacheSettings {
            l1_enabled: self.cache_l1_enabled,
            l1_ttl: Duration::from_millis(self.cache_l1_ttl_ms.max(1)),
            l1_capacity: self.cache_l1_capacity,
            l2_ttl: Duration::from_secs(self.cache_l2_ttl_secs.max(1)),
            version_ttl: Duration::from_millis(self.cache_version_ttl_ms),
        }
    }

    /// How long a request may run.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from_env(pairs: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_from(None, |name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_documented_pool() {
        let config = from_env(&[]).unwrap();
        assert_eq!((config.db_pool_min, config.db_pool_max), (8, 8));
        assert_eq!(config.log_format, LogFormat::Text);
        // Limits are on unless a benchmark turns them off.
        assert!(config.rate_limits_enabled);
        assert_eq!(config.ip_rate_limit_per_minute, 60);
    }

    #[test]
    fn environment_overrides_and_bad_values_are_named() {
        let config = from_env(&[
            ("POSTURE_DB_POOL_MAX", "80"),
            ("POSTURE_LOG_FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(config.db_pool_max, 80);
        assert_eq!(config.log_format, LogFormat::Json);
        let error = from_env(&[("POSTURE_DB_POOL_MAX", "lots")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("POSTURE_DB_POOL_MAX"), "{error}");
        assert!(from_env(&[("POSTURE_CACHE_L1_TTL_MS", "60000")]).is_err());
        assert!(from_env(&[("POSTURE_CACHE_VERSION_TTL_MS", "60000")]).is_err());
    }

    #[test]
    fn toml_file_is_read_and_unknown_keys_refused() {
        let dir = std::env::temp_dir().join(format!("posture-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "db_pool_min = 2\ndb_pool_max = 4\nlog_format = \"json\"\n",
        )
        .unwrap();
        let config = Config::load_from(Some(&good), |_| None).unwrap();
        assert_eq!((config.db_pool_min, config.db_pool_max), (2, 4));
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "db_pool_minimum = 2\n").unwrap();
        assert!(Config::load_from(Some(&bad), |_| None).is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let config = from_env(&[("DATABASE_URL", "postgres://app:hunter2@db/x")]).unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("postgres://app:***@db/x"));
    }

    #[test]
    fn documented_defaults_are_the_real_defaults() {
        let printed = format!("{:#?}", Config::default());
        for setting in SETTINGS.iter().filter(|s| s.toml_key != "-") {
            let line = printed
                .lines()
                .find(|line| line.trim().starts_with(&format!("{}: ", setting.toml_key)))
                .unwrap_or_else(|| panic!("{} is not a Config field", setting.toml_key));
            let value = line
                .trim()
                .split_once(": ")
                .unwrap()
                .1
                .trim_end_matches(',');
            let value = value.trim_matches('"').to_ascii_lowercase();
            let documented = if setting.toml_key.ends_with("database_url") {
                // Debug redacts the password; compare the redacted forms.
                SecretUrl::new(setting.default).redacted()
            } else {
                setting.default.to_owned()
            };
            assert_eq!(
                value, documented,
                "default of {} differs from SETTINGS",
                setting.toml_key
            );
        }
    }

    #[test]
    fn every_field_is_documented() {
        let documented: Vec<_> = SETTINGS.iter().map(|s| s.toml_key).collect();
        // Config's field names, read from its pretty Debug output ("    name: value,").
        let printed = format!("{:#?}", Config::default());
        let fields = printed
            .lines()
            .filter(|line| line.starts_with("    ") && !line.starts_with("     "))
            .filter_map(|line| line.trim().split_once(": "))
            .map(|(key, _)| key.to_owned());
        for key in fields {
            assert!(
                documented.contains(&key.as_str()),
                "setting {key} is not in SETTINGS"
            );
        }
        let docs = include_str!("../../../docs/configuration.md");
        for setting in SETTINGS {
            assert!(
                docs.contains(setting.env),
                "{} missing from docs/configuration.md",
                setting.env
            );
        }
    }
}
