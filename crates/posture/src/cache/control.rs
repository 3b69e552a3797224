//! Operator control of the Redis circuit breakers of every running server:
//! `posture admin redis-breaker open|closed|auto` sends a PostgreSQL
//! notification on [`CHANNEL`]; each server listens and applies it to its own
//! breaker. The setting lives in memory: a server started later begins
//! automatic, and the command is repeated if needed.

use super::redis::Redis;
use crate::store::Store;
use sqlx::postgres::PgListener;
use std::time::Duration;
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
        loop {
            let session = async {
                let mut listener = PgListener::connect_with(store.pool()).await?;
                listener.listen(CHANNEL).await?;
                loop {
                    let notification = listener.recv().await?;
                    if !apply(&redis, notification.payload()) {
                        tracing::warn!(payload = notification.payload(), "unknown control message");
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = session => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "control notifications interrupted; reconnecting");
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
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
