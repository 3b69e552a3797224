//! Control messages to every running server, sent as PostgreSQL notifications
//! on [`CHANNEL`]:
//!
//! - `posture admin redis-breaker open|closed|auto` forces each server's Redis
//!   circuit breaker. The setting lives in memory: a server started later
//!   begins automatic, and the command is repeated if needed.
//! - `account-changed:<tenant>` is sent by the transaction that revokes a key
//!   or changes a tenant's tier or status (or deletes it), whichever process
//!   runs it: each server drops what it cached about the tenant's credentials
//!   and organization, so the change applies on the next request everywhere,
//!   even while Redis is down.

use super::redis::Redis;
use super::views::{Generation, ViewCache};
use crate::store::notifications::{self, ACCOUNT_CHANGED};
use crate::store::Store;
use posture_domain::TenantId;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The notification channel.
pub const CHANNEL: &str = notifications::CONTROL_CHANNEL;
/// Hold the breaker open.
pub const FORCE_OPEN: &str = "redis-breaker:open";
/// Hold the breaker closed.
pub const FORCE_CLOSED: &str = "redis-breaker:closed";
/// Back to automatic.
pub const RELEASE: &str = "redis-breaker:auto";

/// Sends `message` to every listening server.
pub async fn broadcast(store: &Store, message: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(message)
        .execute(store.pool())
        .await
        .map(|_| ())
}

/// Applies one breaker message to `redis`; false if `message` is not one.
pub fn apply(redis: &Redis, message: &str) -> bool {
    let forced = match message {
        FORCE_OPEN => Some(true),
        FORCE_CLOSED => Some(false),
        RELEASE => None,
        _ => return false,
    };
    redis.force_breaker(forced);
    tracing::warn!(message, "redis circuit breaker set by an operator");
    true
}

/// The tenant named by an account-change message.
fn changed_account(message: &str) -> Option<TenantId> {
    let id = message.strip_prefix(ACCOUNT_CHANGED)?.parse().ok()?;
    // The message comes from our own transactions over the database connection.
    Some(TenantId::from_uuid(id))
}

/// Listens for control messages until `shutdown`, reconnecting after errors.
pub fn spawn_listener(
    store: Store,
    redis: Redis,
    views: Arc<ViewCache>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        notifications::listen(store, CHANNEL, shutdown, |payload| {
            if let Some(tenant) = changed_account(payload) {
                // Every server bumps the generation: whichever reaches Redis
                // first makes the others' copies stale, and one that cannot
                // owes an epoch bump. Spawned so a slow Redis cannot hold up
                // the notifications behind this one.
                let views = views.clone();
                tokio::spawn(async move { views.invalidate(tenant, Generation::Account).await });
            } else if !apply(&redis, payload) {
                tracing::warn!(payload, "unknown control message");
            }
        })
        .await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::breaker::BreakerState;

    #[test]
    fn messages_force_and_release_the_breaker() {
        let redis = Redis::disabled();
        assert!(apply(&redis, FORCE_OPEN));
        assert_eq!(redis.breaker_state(), BreakerState::ForcedOpen);
        assert!(apply(&redis, FORCE_CLOSED));
        assert_eq!(redis.breaker_state(), BreakerState::ForcedClosed);
        assert!(apply(&redis, RELEASE));
        assert_eq!(redis.breaker_state(), BreakerState::Closed);
        assert!(!apply(&redis, "redis-breaker:sideways"));
        assert_eq!(redis.breaker_state(), BreakerState::Closed);
    }

    #[test]
    fn account_changes_name_their_tenant() {
        let tenant = TenantId::new_random();
        assert_eq!(
            changed_account(&format!("{ACCOUNT_CHANGED}{tenant}")),
            Some(tenant)
        );
        assert_eq!(changed_account("account-changed:not-a-uuid"), None);
        assert_eq!(changed_account(FORCE_OPEN), None);
    }
}
