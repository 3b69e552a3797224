//! What the benchmark reads besides the wall clock: the process's peak resident
//! memory (Linux `/proc`), and the time spent inside one named tracing span.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Peak resident set size of this process so far (`VmHWM`), in bytes.
pub fn peak_rss() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// CPU time (user + system) of all this process's threads so far, from
/// `/proc/self/stat` in clock ticks (100 per second on Linux).
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces), in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0: `echo 5 > clear_refs`), so the
/// next reading is the peak of what follows rather than of report generation.
/// Returns false if the kernel refused; the peak then covers the whole process.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Total time spent in spans named `name` (from creation to close), installed
/// as the global subscriber. For an instrumented `async fn` that is awaited at
/// once, that is the time the call took.
#[derive(Clone)]
pub struct SpanClock {
    nanos: Arc<AtomicU64>,
}

impl SpanClock {
    /// Installs the clock for spans named `name`; nothing else is recorded.
    pub fn install(name: &'static str) -> SpanClock {
        let clock = SpanClock {
            nanos: Arc::new(AtomicU64::new(0)),
        };
        let filter = tracing_subscriber::filter::filter_fn(move |meta| {
            meta.is_span() && meta.name() == name
        });
        let subscriber = tracing_subscriber::registry().with(clock.clone().with_filter(filter));
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        clock
    }

    /// Time recorded since the last call.
    pub fn take(&self) -> Duration {
        Duration::from_nanos(self.nanos.swap(0, Ordering::Relaxed))
    }
}

struct Started(Instant);

impl<S> Layer<S> for SpanClock
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        if let Some(span) = context.span(&id) {
            if let Some(Started(started)) = span.extensions().get::<Started>() {
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.nanos.fetch_add(nanos, Ordering::Relaxed);
            }
        }
    }
}
