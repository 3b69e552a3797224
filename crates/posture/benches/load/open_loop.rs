//! A fixed-rate ("open-loop") GET load: requests leave on a schedule, one every
//! `1 / rate` seconds, whatever the server's answers are doing, and each
//! latency is measured from the time the request was *scheduled* to leave.
//!
//! wrk keeps a fixed number of connections busy (a closed loop): when the
//! server stalls, wrk stops sending, and the requests that would have waited
//! are never measured (coordinated omission). Here a stall shows: the
//! requests scheduled during it leave late, and their lateness is part of
//! their latency. The scan spike uses this to measure reads while the server
//! is busy with something else.
//!
//! The generator runs on a thread and runtime of its own, so the work of the
//! rest of the harness (submitting scans, polling PostgreSQL) cannot delay
//! its schedule.

use crate::wrk;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// A request that does not finish within this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of one scheduled request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was due to leave.
    pub scheduled: Instant,
    /// From `scheduled` to the end of the answer's body.
    pub latency: Duration,
    /// From `scheduled` to when the request task started sending: the
    /// generator's own lateness (a busy machine delays it too), part of
    /// `latency`.
    pub lag: Duration,
    pub outcome: Outcome,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// An answer with a status other than 2xx.
    Status,
    /// No answer: connection error or timeout.
    Failed,
}

/// A running generator; [`OpenLoop::stop`] ends it and hands back its samples
/// (dropping it, on an error path, only ends it).
pub struct OpenLoop {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<Vec<Sample>>>>,
}

impl OpenLoop {
    /// Starts sending `GET url` at `rate` requests per second, each with the
    /// next of `keys` (rotating) as its bearer token.
    pub fn start(url: String, keys: Vec<String>, rate: u32) -> anyhow::Result<OpenLoop> {
        anyhow::ensure!(!keys.is_empty() && rate > 0, "keys and a rate are needed");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("open-loop".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(generate(url, keys, rate, stopped))
            })?;
        Ok(OpenLoop {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops scheduling, waits for the requests in flight and returns every
    /// sample, in the order they were scheduled.
    pub fn stop(mut self) -> anyhow::Result<Vec<Sample>> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self
            .thread
            .take()
            .ok_or_else(|| anyhow::anyhow!("the open-loop generator was stopped already"))?;
        let mut samples = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the open-loop generator panicked"))??;
        samples.sort_by_key(|sample| sample.scheduled);
        Ok(samples)
    }
}

impl Drop for OpenLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The schedule: request `i` is due at `start + i / rate`. When the loop falls
/// behind (the machine is busy) the overdue requests leave at once, and their
/// latency counts from when they were due.
async fn generate(
    url: String,
    keys: Vec<String>,
    rate: u32,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<Sample>> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let url: Arc<str> = url.into();
    let keys: Vec<Arc<str>> = keys.into_iter().map(Arc::from).collect();
    let period_ns = 1e9 / f64::from(rate);
    let start = Instant::now();
    let mut in_flight = JoinSet::new();
    let mut samples = Vec::new();
    let mut next: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        // Exact in f64 up to 2^53 ns (104 days).
        let due = start + Duration::from_nanos((next as f64 * period_ns) as u64);
        tokio::time::sleep_until(due.into()).await;
        let key = keys[usize::try_from(next).unwrap_or(0) % keys.len()].clone();
        in_flight.spawn(send(client.clone(), url.clone(), key, due));
        next += 1;
        // Collect what has finished, so finished tasks do not pile up.
        while let Some(done) = in_flight.try_join_next() {
            samples.push(done?);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        samples.push(done?);
    }
    Ok(samples)
}

/// One request, timed from `due` to the end of its body.
async fn send(client: reqwest::Client, url: Arc<str>, key: Arc<str>, due: Instant) -> Sample {
    let lag = due.elapsed();
    let result = async {
        let response = client.get(&*url).bearer_auth(&*key).send().await?;
        let status = response.status();
        response.bytes().await?;
        Ok::<_, reqwest::Error>(status)
    }
    .await;
    let outcome = match result {
        Ok(status) if status.is_success() => Outcome::Success,
        Ok(_) => Outcome::Status,
        Err(_) => Outcome::Failed,
    };
    Sample {
        scheduled: due,
        latency: due.elapsed(),
        lag,
        outcome,
    }
}

/// The samples scheduled within `[from, to)`.
fn window(samples: &[Sample], from: Instant, to: Instant) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|sample| sample.scheduled >= from && sample.scheduled < to)
        .collect()
}

/// The `p`th percentile (nearest rank) of sorted values; 0 for none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The 99th percentile of the generator's lag, in ms, over the samples
/// scheduled within `[from, to)`: how much of the latency is the client's.
pub fn lag_p99_ms(samples: &[Sample], from: Instant, to: Instant) -> f64 {
    let mut millis: Vec<f64> = window(samples, from, to)
        .iter()
        .map(|sample| sample.lag.as_secs_f64() * 1e3)
        .collect();
    millis.sort_by(f64::total_cmp);
    percentile(&millis, 99.0)
}

/// The samples scheduled within `[from, to)`, summarized like a wrk run
/// (requests per second is the rate they were scheduled at over the window).
pub fn summarize(samples: &[Sample], from: Instant, to: Instant) -> wrk::Summary {
    let window = window(samples, from, to);
    let mut millis: Vec<f64> = window
        .iter()
        .map(|sample| sample.latency.as_secs_f64() * 1e3)
        .collect();
    millis.sort_by(f64::total_cmp);
    let seconds = to.saturating_duration_since(from).as_secs_f64();
    let count = |outcome: Outcome| {
        window
            .iter()
            .filter(|sample| sample.outcome == outcome)
            .count() as u64
    };
    wrk::Summary {
        requests: window.len() as u64,
        duration_s: seconds,
        requests_per_second: if seconds > 0.0 {
            window.len() as f64 / seconds
        } else {
            0.0
        },
        mean_ms: if millis.is_empty() {
            0.0
        } else {
            millis.iter().sum::<f64>() / millis.len() as f64
        },
        p50_ms: percentile(&millis, 50.0),
        p90_ms: percentile(&millis, 90.0),
        p99_ms: percentile(&millis, 99.0),
        max_ms: millis.last().copied().unwrap_or(0.0),
        non_2xx: count(Outcome::Status),
        socket_errors: count(Outcome::Failed),
    }
}
