//! Shared state handed to every handler.

use crate::auth::{KeyVerifier, LastUsedRecorder};
use crate::cache::redis::Redis;
use crate::cache::views::ViewCache;
use crate::config::Config;
use crate::http::metrics::Metrics;
use crate::limits::RateLimiter;
use crate::store::Store;
use std::ops::Deref;
use std::sync::Arc;

/// Everything a request may need, behind one `Arc`: axum clones the state
/// for every middleware layer and extractor of every request, so a clone is
/// one atomic increment rather than one per shared part (which, with a dozen
/// parts, showed in the profile as the request path's costliest function).
/// Fields are reached through `Deref` (`state.store`, `state.config`, …).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// The state made of `parts`.
    pub fn new(parts: AppParts) -> Self {
        AppState(Arc::new(parts))
    }
}

impl Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// The database, connected as the application role.
    pub store: Store,
    /// API key verification and its cache.
    pub verifier: Arc<KeyVerifier>,
    /// Pending `last_used_at` writes.
    pub last_used: Arc<LastUsedRecorder>,
    /// HTTP metrics.
    pub metrics: Arc<Metrics>,
    /// Reports parsed (and compressed) at once on submission: each holds its
    /// report and its findings in memory and a core busy, so bursts queue here
    /// rather than exhaust memory.
    pub report_permits: Arc<tokio::sync::Semaphore>,
    /// Scan submissions writing to PostgreSQL at once (half the pool): a
    /// scanner's burst of submissions waits here for its transaction rather
    /// than in the pool's queue, where every read that needs the database
    /// would wait behind it.
    pub submission_writes: Arc<tokio::sync::Semaphore>,
    /// Redis behind its circuit breaker.
    pub redis: Redis,
    /// Cached tenant views (L1 → L2 → PostgreSQL).
    pub views: Arc<ViewCache>,
    /// Rate limits and quotas.
    pub limiter: Arc<RateLimiter>,
    /// The webhook dispatcher's counters (for `/metrics`).
    pub webhook_metrics: Arc<crate::webhooks::dispatcher::DispatchMetrics>,
}
