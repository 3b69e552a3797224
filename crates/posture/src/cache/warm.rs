//! Cache warming: before a starting server accepts requests, the posture views
//! of the most recently active tenants are loaded, so a restart (or a new
//! instance behind the load balancer) does not greet its first burst with a
//! cold cache. Bounded in time: whatever is not loaded by the deadline is
//! loaded on demand, and start-up goes on.

use crate::state::AppState;
use posture_domain::TenantId;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Loads up to `max_tenants` posture views within `deadline`; returns how many.
pub async fn warm(state: &AppState, max_tenants: u32, deadline: Duration) -> usize {
    if max_tenants == 0 {
        return 0;
    }
    let started = Instant::now();
    let work = async {
        let tenants: Vec<Uuid> =
            match sqlx::query_scalar("SELECT tenant_id FROM recently_active_tenants($1)")
                .bind(i32::try_from(max_tenants).unwrap_or(i32::MAX))
                .fetch_all(state.store.pool())
                .await
            {
                Ok(tenants) => tenants,
                Err(error) => {
                    tracing::warn!(%error, "cache warming: cannot list recently active tenants");
                    return 0;
                }
            };
        let mut loaded = 0;
        for tenant in tenants {
            if crate::http::posture::cached(state, TenantId::from_uuid(tenant))
                .await
                .is_ok()
            {
                loaded += 1;
            }
        }
        loaded
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(loaded) => {
            tracing::info!(
                loaded,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "cache warmed"
            );
            loaded
        }
        Err(_) => {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "cache warming hit its deadline; the rest loads on demand"
            );
            0
        }
    }
}
