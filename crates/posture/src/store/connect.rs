//! Start-up connection: retry with exponential backoff and jitter until a deadline.

use super::Store;
use rand::Rng;
use std::time::{Duration, Instant};

/// Waits until the database answers `SELECT 1`, retrying with exponential backoff
/// (100 ms doubling to 5 s) and full jitter, so a fleet restarting together does
/// not hammer a recovering database in lock-step. Gives up after `deadline`.
pub async fn wait_until_reachable(store: &Store, deadline: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut ceiling = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        match store.ping().await {
            Ok(_) => return Ok(()),
            Err(error) if started.elapsed() + ceiling < deadline => {
                let pause = rand::thread_rng().gen_range(ceiling / 2..=ceiling);
                tracing::warn!(attempt, %error, retry_in_ms = pause.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(pause).await;
                ceiling = (ceiling * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(error) => {
                anyhow::bail!(
                    "database not reachable after {attempt} attempts in {:.1} s: {error}",
                    started.elapsed().as_secs_f64()
                )
            }
        }
    }
}
