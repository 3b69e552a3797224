//! Operator control of the Redis circuit breakers of every running server:
//! `posture admin redis-breaker open|closed|auto` sends a PostgreSQL
//! notification on [`CHANNEL`]; each server listens and applies it to its own
//! breaker. The setting lives in memory: a server started later begins
//! automatic, and the command is repeated if needed.

use super::redis::Redis;
use crate::store::{notifications, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The notification channel.
pub const CHANNEL: &str = "posture_control";
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

/// Applies one control message to `redis`; false for an unknown message.
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

/// Listens for control messages until `shutdown`, reconnecting after errors.
pub fn spawn_listener(store: Store, redis: Redis, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        notifications::listen(store, CHANNEL, shutdown, |payload| {
            if !apply(&redis, payload) {
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
}
