//! Retrying idempotent reads on transient database errors.

use std::future::Future;
use std::time::Duration;

/// Attempts an idempotent read gets in total.
const READ_ATTEMPTS: u32 = 3;

/// Whether `error` is worth retrying: a broken connection, a serialization failure
/// or deadlock, or the server shutting down / not yet accepting connections.
/// Pool exhaustion is *not* transient here: retrying would add load to an
/// overloaded pool, so it surfaces as 503 at once.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("40001" | "40P01" | "57P01" | "57P02" | "57P03" | "08000" | "08003" | "08006")
        ),
        _ => false,
    }
}

/// The retry schedule of one idempotent read: after a transient error, wait
/// 20 ms, then 80 ms; three attempts in all.
#[derive(Debug)]
pub struct ReadBackoff {
    next_pause: Duration,
    retries_left: u32,
}

impl Default for ReadBackoff {
    fn default() -> Self {
        ReadBackoff {
            next_pause: Duration::from_millis(20),
            retries_left: READ_ATTEMPTS - 1,
        }
    }
}

impl ReadBackoff {
    /// How long to wait before retrying after `error`; `None` when the error is
    /// permanent or the attempts are used up.
    pub fn pause_after(&mut self, error: &sqlx::Error) -> Option<Duration> {
        if !is_transient(error) {
            return None;
        }
        self.retries_left = self.retries_left.checked_sub(1)?;
        let pause = self.next_pause;
        self.next_pause *= 4;
        Some(pause)
    }
}

/// Runs `$body` as an idempotent read in a read-only transaction bound to `$tenant`
/// (`$tx` names the transaction inside the body), ended without a round trip
/// of its own ([`crate::store::TenantTx::end_read`]), and retried as a
/// whole on transient errors with [`retry_read`]. `$body` is a block of async
/// code evaluating to the read's value; `?` on `sqlx::Error` works inside it.
///
/// ```ignore
/// let asset = tenant_read!(state.store, context.tenant_id, |tx| { assets::get(&mut tx, id).await? })?;
/// ```
#[macro_export]
macro_rules! tenant_read {
    ($store:expr, $tenant:expr, |$tx:ident| $body:block) => {
        $crate::store::retry::retry_read(|| async {
            let mut $tx = $store.begin_tenant_read($tenant).await?;
            let value = $body;
            $tx.end_read();
            Ok(value)
        })
        .await
    };
}

/// Runs `operation` — a read with no side effects, typically a whole tenant
/// transaction — retrying it on the [`ReadBackoff`] schedule.
pub async fn retry_read<T, F, Fut>(mut operation: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut backoff = ReadBackoff::default();
    loop {
        match operation().await {
            Err(error) => match backoff.pause_after(&error) {
                Some(pause) => {
                    tracing::debug!(%error, ?pause, "retrying read after transient error");
                    tokio::time::sleep(pause).await;
                }
                None => return Err(error),
            },
            Ok(value) => return Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error() -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ))
    }

    #[test]
    fn transient_errors_are_retried_twice_with_growing_pauses() {
        let mut backoff = ReadBackoff::default();
        assert_eq!(
            backoff.pause_after(&io_error()),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            backoff.pause_after(&io_error()),
            Some(Duration::from_millis(80))
        );
        assert_eq!(backoff.pause_after(&io_error()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_read_repeats_the_operation_until_it_succeeds() {
        let mut calls = 0;
        let result = retry_read(|| {
            calls += 1;
            let outcome = if calls == 1 {
                Err(io_error())
            } else {
                Ok(calls)
            };
            async move { outcome }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
    }

    #[test]
    fn permanent_errors_and_pool_exhaustion_are_not_retried() {
        let mut backoff = ReadBackoff::default();
        assert_eq!(backoff.pause_after(&sqlx::Error::RowNotFound), None);
        assert_eq!(backoff.pause_after(&sqlx::Error::PoolTimedOut), None);
    }
}
