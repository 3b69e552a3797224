//! Liveness, readiness and metrics endpoints (unauthenticated).

use super::error::Problem;
use crate::state::AppState;
use crate::store::PoolStats;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// Longest a readiness check waits for the database.
const READY_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process is up.
#[derive(Serialize, ToSchema)]
pub struct Live {
    /// Always `live`.
    pub status: &'static str,
}

/// Readiness report.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: &'static str,
    /// The database check.
    pub database: DatabaseCheck,
    /// Connection pool occupancy.
    pub pool: PoolStats,
    /// Redis: never required for readiness (requests fall back to PostgreSQL).
    pub redis: RedisCheck,
}

/// Redis as this instance sees it.
#[derive(Serialize, ToSchema)]
pub struct RedisCheck {
    /// `disabled` (no URL configured) or `enabled`.
    pub status: &'static str,
    /// The circuit breaker: `closed`, `open`, `half_open`, `forced_open` or `forced_closed`.
    pub breaker: &'static str,
}

fn redis_check(state: &AppState) -> RedisCheck {
    RedisCheck {
        status: if state.redis.is_enabled() {
            "enabled"
        } else {
            "disabled"
        },
        breaker: state.redis.breaker_state().as_str(),
    }
}

/// Result of pinging the database.
#[derive(Serialize, ToSchema)]
pub struct DatabaseCheck {
    /// `up`, `busy` (reachable, every connection in use) or `down`.
    pub status: &'static str,
    /// Round trip of `SELECT 1`, including acquiring a connection.
    pub latency_ms: Option<f64>,
}

/// The process is running (does not touch dependencies).
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { status: "live" })
}

/// Ready to serve: the database answers. 503 (as a problem with the same
/// checks) while it does not; recovers by itself when the database returns.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Database unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let ping = tokio::time::timeout(READY_PING_TIMEOUT, state.store.ping()).await;
    let pool = state.store.pool_stats();
    match ping {
        Ok(Ok(latency)) => Json(Ready {
            status: "ready",
            database: DatabaseCheck {
                status: "up",
                latency_ms: Some(latency.as_secs_f64() * 1e3),
            },
            pool,
            redis: redis_check(&state),
        })
        .into_response(),
        // Every connection busy is load, not an outage: stay in rotation.
        Ok(Err(sqlx::Error::PoolTimedOut)) if pool.size >= pool.max && pool.idle == 0 => {
            Json(Ready {
                status: "ready",
                database: DatabaseCheck {
                    status: "busy",
                    latency_ms: None,
                },
                pool,
                redis: redis_check(&state),
            })
            .into_response()
        }
        failed => {
            let reason = match failed {
                Ok(Err(error)) => error.to_string(),
                _ => "timed out".to_owned(),
            };
            tracing::warn!(%reason, "readiness check failed: database unreachable");
            let mut problem =
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready")
                    .with_detail("The database is unreachable.");
            let checks = serde_json::json!({
                "database": DatabaseCheck { status: "down", latency_ms: None },
                "pool": pool,
                "redis": redis_check(&state),
            });
            problem.extensions = checks.as_object().cloned();
            problem.into_response_with(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let mut text = state.metrics.render(state.store.pool_stats());
            crate::cache::metrics::render(&mut text, &state.redis, &state.views);
            crate::limits::metrics::render(&mut text, &state.limiter);
            crate::webhooks::dispatcher::render_metrics(&mut text, &state.webhook_metrics);
            text
        },
    )
}
