//! Prometheus metrics, rendered in the text exposition format.
//!
//! A small registry of our own instead of a metrics framework: one series per
//! (method, route, status) with a latency histogram of atomic counters. The
//! read lock is uncontended on the hot path; the write lock is taken only the
//! first time a series is seen.

use crate::store::PoolStats;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Default)]
struct Series {
    /// Cumulative counts per bucket (Prometheus buckets are cumulative on output).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// The series of one route: a handful of (method, status) pairs, found by a
/// scan that allocates nothing.
type RouteSeries = Vec<(&'static str, u16, Arc<Series>)>;

/// The HTTP metrics of this process.
#[derive(Default)]
pub struct Metrics {
    /// Route template → its series. Keyed by the route alone so that a
    /// request finds its series by `&str`, without building an owned key.
    series: RwLock<HashMap<String, RouteSeries>>,
}

impl Metrics {
    /// Records one finished request. `route` is the matched route template
    /// (never the raw path, which would make the label set unbounded).
    pub fn observe(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let find = |routes: &HashMap<String, RouteSeries>| {
            routes.get(route).and_then(|series| {
                series
                    .iter()
                    .find(|(m, s, _)| *m == method && *s == status)
                    .map(|(_, _, series)| series.clone())
            })
        };
        let existing = find(&self.series.read().unwrap_or_else(|p| p.into_inner()));
        let series = match existing {
            Some(series) => series,
            None => {
                let mut routes = self.series.write().unwrap_or_else(|p| p.into_inner());
                match find(&routes) {
                    Some(series) => series,
                    None => {
                        let series = Arc::new(Series::default());
                        routes.entry(route.to_owned()).or_default().push((
                            method,
                            status,
                            series.clone(),
                        ));
                        series
                    }
                }
            }
        };
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            series.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        series.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        series.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The exposition text, with the pool gauges appended.
    pub fn render(&self, pool: PoolStats) -> String {
        let routes = self.series.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(SeriesKey, Arc<Series>)> = routes
            .iter()
            .flat_map(|(route, series)| {
                series.iter().map(|(method, status, data)| {
                    let key = SeriesKey {
                        method,
                        route: route.clone(),
                        status: *status,
                    };
                    (key, data.clone())
                })
            })
            .collect();
        drop(routes);
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP posture_http_requests_total HTTP requests answered, by method, route and status.\n");
        out.push_str("# TYPE posture_http_requests_total counter\n");
        for (key, data) in &all {
            let count = data.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "posture_http_requests_total{{{}}} {count}",
                labels(key)
            );
        }
        out.push_str(
            "# HELP posture_http_request_duration_seconds Time to answer HTTP requests.\n",
        );
        out.push_str("# TYPE posture_http_request_duration_seconds histogram\n");
        for (key, data) in &all {
            let labels = labels(key);
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&data.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(out, "posture_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let count = data.count.load(Ordering::Relaxed);
            let sum = data.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "posture_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "posture_http_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "posture_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        for (name, help, value) in [
            (
                "posture_db_pool_connections",
                "Open database connections.",
                pool.size,
            ),
            (
                "posture_db_pool_idle",
                "Open database connections not in use.",
                pool.idle,
            ),
            (
                "posture_db_pool_in_use",
                "Database connections checked out.",
                pool.in_use,
            ),
            (
                "posture_db_pool_waiting",
                "Tasks waiting for a database connection.",
                pool.waiting,
            ),
            (
                "posture_db_pool_max",
                "Most database connections the pool may open.",
                pool.max,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

fn labels(key: &SeriesKey) -> String {
    format!(
        "method=\"{}\",route=\"{}\",status=\"{}\"",
        escape(key.method),
        escape(&key.route),
        key.status
    )
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let metrics = Metrics::default();
        metrics.observe("GET", "/v1/org", 200, Duration::from_micros(300));
        metrics.observe("GET", "/v1/org", 200, Duration::from_millis(20));
        metrics.observe("GET", "/v1/org", 401, Duration::from_millis(1));
        metrics.observe("POST", "/v1/org", 200, Duration::from_millis(1));
        let pool = PoolStats {
            size: 3,
            idle: 2,
            in_use: 1,
            waiting: 0,
            max: 60,
        };
        let text = metrics.render(pool);
        assert!(text.contains(
            "posture_http_requests_total{method=\"GET\",route=\"/v1/org\",status=\"200\"} 2"
        ));
        assert!(text.contains("route=\"/v1/org\",status=\"200\",le=\"0.0005\"} 1"));
        assert!(text.contains("route=\"/v1/org\",status=\"200\",le=\"0.025\"} 2"));
        assert!(text.contains("route=\"/v1/org\",status=\"200\",le=\"+Inf\"} 2"));
        assert!(text.contains(
            "posture_http_requests_total{method=\"GET\",route=\"/v1/org\",status=\"401\"} 1"
        ));
        assert!(text.contains(
            "posture_http_requests_total{method=\"POST\",route=\"/v1/org\",status=\"200\"} 1"
        ));
        assert!(text.contains("posture_db_pool_in_use 1"));
        assert!(text.contains("posture_db_pool_max 60"));
    }
}
