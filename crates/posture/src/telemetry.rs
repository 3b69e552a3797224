//! Logging set-up: text or JSON lines, filtered by `POSTURE_LOG`.

use crate::config::{Config, LogFormat};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. Request spans carry `request_id` and, once
/// authenticated, `tenant_id`, so every line logged within a request has both:
/// JSON lines list every enclosing span (`spans`), so a line logged in a nested
/// span still carries the request's ids.
/// Calling it twice is harmless (the second call changes nothing).
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match config.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
    };
}
