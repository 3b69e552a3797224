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

/// Runs `operation` (a read with no side effects) up to three times, backing off
/// 20 ms then 80 ms between attempts when it fails with a transient error.
pub async fn retry_read<T, F, Fut>(mut operation: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut pause = Duration::from_millis(20);
    let mut attempt = 1;
    loop {
        match operation().await {
            Err(error) if attempt < READ_ATTEMPTS && is_transient(&error) => {
                tracing::debug!(attempt, %error, "retrying read after transient error");
                tokio::time::sleep(pause).await;
                pause *= 4;
                attempt += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn io_error() -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = retry_read(|| async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(io_error())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded_and_permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry_read(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(io_error())
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), READ_ATTEMPTS);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry_read(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(sqlx::Error::RowNotFound)
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
