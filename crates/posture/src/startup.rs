//! Building the application apart from serving it, so tests can bind port 0.

use crate::auth::{KeyVerifier, LastUsedRecorder};
use crate::cache::redis::Redis;
use crate::cache::views::ViewCache;
use crate::config::Config;
use crate::http;
use crate::http::metrics::Metrics;
use crate::jobs::worker::spawn_workers;
use crate::limits::clock::{Clock, SystemClock};
use crate::limits::RateLimiter;
use crate::state::{AppParts, AppState};
use crate::store::{wait_until_reachable, PoolSettings, Store};
use anyhow::Context;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects to the database (retrying with backoff until the configured
    /// deadline) and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Application::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with the clock rate limits and quotas follow
    /// (tests move it).
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let store = Store::connect_lazy(
            config.database_url.expose(),
            &PoolSettings::from_config(&config),
        )
        .context("invalid DATABASE_URL")?;
        wait_until_reachable(&store, Duration::from_secs(config.db_connect_deadline_secs)).await?;
        store
            .warm_up(config.db_pool_min)
            .await
            .context("opening the pool's minimum connections")?;
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("binding {}", config.listen_addr))?;
        let redis = Redis::new(&config.redis_settings()).context("the Redis URL")?;
        let views = Arc::new(ViewCache::new(config.view_cache_settings(), redis.clone()));
        let signing_key = KeyVerifier::load_signing_key(&store)
            .await
            .context("reading the cache signing key (run `posture migrate`)")?;
        let verifier = KeyVerifier::new(store.clone(), views.clone(), signing_key);
        let limiter = Arc::new(RateLimiter::new(
            redis.clone(),
            clock,
            config.ip_rate_limit_per_minute,
            Duration::from_millis(config.rate_limit_lease_ms),
        ));
        // Counters never read below what PostgreSQL recorded: load it before
        // the first request (a Redis that lost its data is re-seeded from it).
        let now = limiter.clock().now();
        if let Err(error) = limiter.usage().load_floors(&store, now, None).await {
            tracing::warn!(%error, "usage floors not loaded; counting from Redis alone until the next flush");
        }
        let config_pool_max = config.db_pool_max;
        let state = AppState::new(AppParts {
            config: Arc::new(config),
            store,
            verifier: Arc::new(verifier),
            last_used: Arc::new(LastUsedRecorder::default()),
            metrics: Arc::new(Metrics::default()),
            report_permits: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            )),
            submission_writes: Arc::new(tokio::sync::Semaphore::new(submission_write_slots(
                config_pool_max,
            ))),
            redis,
            views,
            limiter,
            webhook_metrics: Arc::default(),
        });
        // Before the listener accepts anything, so readiness follows warmth.
        crate::cache::warm::warm(
            &state,
            state.config.cache_warm_tenants,
            Duration::from_millis(state.config.cache_warm_timeout_ms),
        )
        .await;
        Ok(Application {
            listener,
            state,
            shutdown: CancellationToken::new(),
        })
    }

    /// The bound port (useful when the configuration asked for port 0).
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or(0)
    }

    /// The shared state (tests use it to reach the store).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting, lets
    /// in-flight requests finish (up to the grace period), writes pending
    /// `last_used_at` updates and closes the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            shutdown,
        } = self;
        let grace = Duration::from_secs(state.config.shutdown_grace_secs);
        // The flusher has its own token, cancelled only after the drain, so uses
        // recorded by requests finishing during the drain are written too.
        let flusher_stop = CancellationToken::new();
        let flusher = tokio::spawn(flush_last_used(state.clone(), flusher_stop.clone()));
        let usage_flusher = tokio::spawn(flush_usage(state.clone(), flusher_stop.clone()));
        let lease_keeper = tokio::spawn(give_back_leases(state.clone(), flusher_stop.clone()));
        // Workers stop after the HTTP drain, finishing the job in hand.
        let workers_stop = CancellationToken::new();
        let workers = spawn_workers(
            state.store.clone(),
            state.config.worker_settings(state.config.workers),
            Some(state.views.clone()),
            workers_stop.clone(),
        );
        // The dispatcher stops with the workers, recording the attempts in flight.
        let dispatcher = crate::webhooks::dispatcher::spawn_from_config(
            state.store.clone(),
            &state.config,
            state.webhook_metrics.clone(),
            workers_stop.clone(),
        )?;
        // Quota alerts queued by requests are written after the drain.
        let quota_alerts = state
            .limiter
            .quota_alerts()
            .take_receiver()
            .map(|receiver| {
                tokio::spawn(crate::webhooks::quota::write_alerts(
                    state.store.clone(),
                    receiver,
                    flusher_stop.clone(),
                ))
            });
        let redis_health = state.redis.spawn_health_check(workers_stop.clone());
        let control = crate::cache::control::spawn_listener(
            state.store.clone(),
            state.redis.clone(),
            state.views.clone(),
            workers_stop.clone(),
        );
        tracing::info!(addr = %listener.local_addr()?, "serving");

        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
            SocketAddr,
        >(http::service(state.clone()));
        let mut server = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .into_future(),
        );
        let drained = tokio::select! {
            result = &mut server => Some(result),
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => None,
        };
        match drained {
            Some(result) => result
                .context("server task failed")?
                .context("server failed")?,
            None => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "in-flight requests outlived the grace period; dropping them"
                );
                server.abort();
            }
        }
        workers_stop.cancel();
        if tokio::time::timeout(
            grace,
            futures_join_all(workers.into_iter().chain(dispatcher).collect()),
        )
        .await
        .is_err()
        {
            tracing::warn!("workers did not finish their jobs within the grace period");
        }
        if let Some(health) = redis_health {
            let _ = health.await;
        }
        let _ = control.await;
        // The flusher writes once more on its way out.
        flusher_stop.cancel();
        let _ = flusher.await;
        let _ = usage_flusher.await;
        let _ = lease_keeper.await;
        if let Some(quota_alerts) = quota_alerts {
            let _ = quota_alerts.await;
        }
        // Connections still held by requests that outlived the grace period are
        // not waited for beyond it.
        if tokio::time::timeout(grace, state.store.close())
            .await
            .is_err()
        {
            tracing::warn!("database pool did not close within the grace period");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Writes pending `last_used_at` updates periodically and once at shutdown.
async fn flush_last_used(state: AppState, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(Duration::from_secs(
        state.config.last_used_flush_secs.max(1),
    ));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => state.last_used.flush(&state.store).await,
            () = shutdown.cancelled() => {
                state.last_used.flush(&state.store).await;
                return;
            }
        }
    }
}

/// Adds admitted requests to PostgreSQL's usage periodically and once at
/// shutdown; prunes old usage rows hourly.
async fn flush_usage(state: AppState, shutdown: CancellationToken) {
    let limiter = state.limiter.clone();
    let flush = || async {
        let now = limiter.clock().now();
        if let Err(error) = limiter.usage().flush(&state.store, now).await {
            tracing::warn!(%error, "usage not flushed; kept for the next flush");
        }
    };
    let mut ticks = tokio::time::interval(Duration::from_millis(
        state.config.usage_flush_interval_ms.max(100),
    ));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prunes = tokio::time::interval(Duration::from_secs(3_600));
    prunes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => flush().await,
            _ = prunes.tick() => {
                if let Err(error) = crate::limits::usage::prune(&state.store).await {
                    tracing::warn!(%error, "old usage rows not pruned");
                }
            }
            () = shutdown.cancelled() => {
                flush().await;
                return;
            }
        }
    }
}

/// Gives back the unused slots of rate-limit leases that ended (twice a
/// second), and every lease's at shutdown, so a tenant's minute, day and
/// month count only requests that were served.
async fn give_back_leases(state: AppState, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => state.limiter.give_back_unused(false).await,
            () = shutdown.cancelled() => {
                state.limiter.give_back_unused(true).await;
                return;
            }
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => tracing::info!("SIGINT received; shutting down"),
            () = terminate => tracing::info!("SIGTERM received; shutting down"),
        }
        token.cancel();
    });
}

/// Waits for every task (their results are logged by the tasks themselves).
pub async fn futures_join_all(handles: Vec<tokio::task::JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

/// How many scan submissions may hold a database connection at once: half
/// the pool, so a burst of them leaves the other half to every other
/// request.
fn submission_write_slots(pool_max: u32) -> usize {
    usize::try_from(pool_max / 2).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::submission_write_slots;

    #[test]
    fn submissions_write_through_half_the_pool_and_never_none() {
        assert_eq!(submission_write_slots(16), 8);
        assert_eq!(submission_write_slots(5), 2);
        assert_eq!(submission_write_slots(1), 1);
        assert_eq!(submission_write_slots(0), 1);
    }
}
