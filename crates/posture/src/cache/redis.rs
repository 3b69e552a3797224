//! Redis, as an accelerator that may fail: every command goes through the
//! circuit breaker and carries a timeout, and no error ever reaches a request —
//! callers treat any [`RedisError`] as a cache miss and go to PostgreSQL.
//!
//! One multiplexed [`ConnectionManager`] serves the process; it reconnects by
//! itself after a failure. It is created lazily, so the server starts (and is
//! ready) with Redis down. A health loop PINGs on an interval through the
//! breaker, so a dead Redis is noticed without traffic and a recovered one is
//! probed while the breaker is half-open.
//!
//! At most `max_in_flight` commands are sent at once; the others wait their
//! turn here, within the same deadline. Only a command that was sent counts
//! for the breaker, timed from when it was sent: a burst of this server's own
//! (a restart with a thousand tenants' caches cold, or cores saturated by
//! requests) queues here instead of making Redis look slow, which had opened
//! the breaker — and sent every decision to the fallbacks — on a healthy
//! Redis. A command that cannot be sent before its deadline is shed
//! ([`RedisError::Busy`]): the caller falls back, the breaker learns nothing;
//! so does one that times out after waiting so long for its turn that it was
//! sent with less time left than a slow call takes.

use super::breaker::{BreakerSettings, BreakerState, CircuitBreaker, Outcome};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, IntoConnectionInfo};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How to reach Redis and how patient to be with it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://…`; `None` runs without Redis (every call is bypassed).
    pub url: Option<String>,
    /// Longest wait for a connection to be established.
    pub connect_timeout: Duration,
    /// Longest wait for one command's reply.
    pub command_timeout: Duration,
    /// How often the health loop PINGs.
    pub health_interval: Duration,
    /// Most commands sent and not yet answered at once.
    pub max_in_flight: usize,
    pub breaker: BreakerSettings,
}

/// Why a Redis call gave no answer. Callers fall back to PostgreSQL on any of them.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis is not configured")]
    Disabled,
    #[error("redis circuit breaker is open")]
    Bypassed,
    #[error("too many redis commands in flight to send this one in time")]
    Busy,
    #[error("redis command timed out")]
    Timeout,
    #[error("redis: {0}")]
    Command(#[from] redis::RedisError),
}

impl RedisError {
    /// Whether Redis may have carried the command out although no reply came:
    /// it was sent, and then timed out or lost its connection. (A command
    /// never sent, or one Redis answered with an error, had no effect.)
    pub fn may_have_run(&self) -> bool {
        match self {
            RedisError::Timeout => true,
            RedisError::Command(error) => !matches!(error.kind(), redis::ErrorKind::Server(_)),
            RedisError::Disabled | RedisError::Bypassed | RedisError::Busy => false,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RedisMetrics {
    /// Commands sent (the breaker admitted them).
    pub calls: AtomicU64,
    /// Commands that failed or timed out.
    pub failures: AtomicU64,
    /// Calls not made because the breaker was open.
    pub bypassed: AtomicU64,
    /// Calls given up before they were sent: too many in flight until their
    /// deadline.
    pub shed: AtomicU64,
    /// Summed latency of sent commands, microseconds.
    pub latency_micros: AtomicU64,
}

/// The global epoch key: bumped to abandon every cached entry in Redis at once.
pub const EPOCH_KEY: &str = "posture:epoch";

struct Inner {
    manager: Option<ConnectionManager>,
    /// An invalidation could not reach Redis: bump the epoch once it answers.
    epoch_bump_owed: std::sync::atomic::AtomicBool,
    breaker: CircuitBreaker,
    command_timeout: Duration,
    health_interval: Duration,
    /// One permit per command in flight.
    in_flight: tokio::sync::Semaphore,
    /// The breaker's slow-call mark: a call given less time than this when
    /// it was sent, and timed out, is not held against Redis.
    slow_call: Duration,
    metrics: RedisMetrics,
}

/// The process's Redis handle; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

impl Redis {
    /// Builds the handle without connecting (the first command connects).
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Redis> {
        let manager = match &settings.url {
            None => None,
            Some(url) => {
                // TCP_NODELAY, as every Redis client wants and redis-rs does
                // not set by default: with Nagle's algorithm a command written
                // while another is unanswered waits for that answer's ACK.
                let info = url.as_str().into_connection_info()?;
                let tcp = info.tcp_settings().clone().set_nodelay(true);
                let client = redis::Client::open(info.set_tcp_settings(tcp))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(settings.connect_timeout))
                    .set_response_timeout(Some(settings.command_timeout))
                    // Reconnection is retried briefly per attempt; the breaker
                    // and the health loop pace the attempts beyond that.
                    .set_number_of_retries(1)
                    .set_max_delay(settings.command_timeout);
                Some(ConnectionManager::new_lazy_with_config(client, config)?)
            }
        };
        Ok(Redis {
            inner: Arc::new(Inner {
                manager,
                epoch_bump_owed: std::sync::atomic::AtomicBool::new(false),
                breaker: CircuitBreaker::new(settings.breaker.clone()),
                command_timeout: settings.command_timeout,
                health_interval: settings.health_interval,
                in_flight: tokio::sync::Semaphore::new(settings.max_in_flight.max(1)),
                slow_call: settings.breaker.slow_call,
                metrics: RedisMetrics::default(),
            }),
        })
    }

    /// A handle that never calls Redis.
    pub fn disabled() -> Redis {
        Redis::new(&RedisSettings {
            url: None,
            connect_timeout: Duration::from_millis(50),
            command_timeout: Duration::from_millis(50),
            health_interval: Duration::from_secs(1),
            max_in_flight: 1,
            breaker: BreakerSettings::default(),
        })
        .expect("a handle without a URL cannot fail")
    }

    /// Whether a Redis URL is configured.
    pub fn is_enabled(&self) -> bool {
        self.inner.manager.is_some()
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state(Instant::now())
    }

    /// Breaker transitions since start.
    pub fn breaker_transitions(&self) -> u64 {
        self.inner.breaker.transitions()
    }

    /// Forces the breaker open or closed (maintenance), or releases it (`None`).
    pub fn force_breaker(&self, forced: Option<bool>) {
        self.inner.breaker.force(forced);
    }

    /// The counters.
    pub fn metrics(&self) -> &RedisMetrics {
        &self.inner.metrics
    }

    /// Records that an invalidation could not reach Redis: entries Redis holds
    /// may be stale, so the epoch is bumped (abandoning them all) as soon as
    /// Redis answers again — by the next read or by the health loop, so a
    /// process that serves no reads (a `posture worker`) pays it too.
    pub fn owe_epoch_bump(&self) {
        if self.is_enabled() {
            self.inner.epoch_bump_owed.store(true, Ordering::Relaxed);
        }
    }

    /// Bumps the epoch if a bump is owed; stays owed if Redis does not answer.
    pub async fn pay_epoch_debt(&self) {
        if self.inner.epoch_bump_owed.swap(false, Ordering::Relaxed) {
            let mut command = redis::cmd("INCR");
            command.arg(EPOCH_KEY);
            if self.query::<u64>(&command).await.is_err() {
                self.inner.epoch_bump_owed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Runs one command through the breaker, with the command timeout.
    pub async fn query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, RedisError> {
        let Some(manager) = &self.inner.manager else {
            return Err(RedisError::Disabled);
        };
        let Some(permit) = self.inner.breaker.try_acquire(Instant::now()) else {
            self.inner.metrics.bypassed.fetch_add(1, Ordering::Relaxed);
            return Err(RedisError::Bypassed);
        };
        let metrics = &self.inner.metrics;
        let deadline = tokio::time::Instant::now() + self.inner.command_timeout;
        // Waiting for a turn is this server's backlog, not Redis's latency.
        let Ok(Ok(_sending)) =
            tokio::time::timeout_at(deadline, self.inner.in_flight.acquire()).await
        else {
            metrics.shed.fetch_add(1, Ordering::Relaxed);
            self.inner.breaker.release(permit);
            return Err(RedisError::Busy);
        };
        metrics.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        // What is left of the deadline once sent: a call that waited long for
        // its turn and then ran out of time proves nothing about Redis.
        let budget = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut connection = manager.clone();
        let result = match tokio::time::timeout_at(
            deadline,
            command.query_async::<T>(&mut connection),
        )
        .await
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(RedisError::Command(error)),
            Err(_) => Err(RedisError::Timeout),
        };
        let elapsed = started.elapsed();
        metrics.latency_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if matches!(result, Err(RedisError::Timeout)) && budget < self.inner.slow_call {
            // Cut short by the wait for its turn before it had as long as a
            // slow call takes: no outcome for the breaker.
            metrics.shed.fetch_add(1, Ordering::Relaxed);
            self.inner.breaker.release(permit);
            return result;
        }
        let outcome = match &result {
            // An error reply (e.g. NOSCRIPT) is Redis answering: healthy.
            Ok(_) => Outcome::Success,
            Err(RedisError::Command(error))
                if matches!(error.kind(), redis::ErrorKind::Server(_)) =>
            {
                Outcome::Success
            }
            Err(error) => {
                metrics.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, ?elapsed, ?budget, "redis call failed");
                Outcome::Failure
            }
        };
        self.inner
            .breaker
            .record(permit, outcome, elapsed, Instant::now());
        result
    }

    /// Starts the health loop: a PING every `health_interval` until `shutdown`.
    pub fn spawn_health_check(&self, shutdown: CancellationToken) -> Option<JoinHandle<()>> {
        if !self.is_enabled() {
            return None;
        }
        let redis = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(redis.inner.health_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                match redis.query::<String>(&redis::cmd("PING")).await {
                    Ok(_) => redis.pay_epoch_debt().await,
                    Err(RedisError::Bypassed) => {}
                    Err(error) => tracing::debug!(%error, "redis health check failed"),
                }
            }
        }))
    }
}
