//! Enforcement on the request path.
//!
//! - [`check`] runs right after authentication on every `/v1` tenant route
//!   ([`crate::http::middleware::tenant_path`]): it decides on the tenant's
//!   limits (at most one Redis round trip, none from a lease; the key lookup
//!   before it is cached), so the request is answered 429 before any database
//!   work or let through; either way the response carries the rate-limit
//!   headers.
//! - [`limit_by_ip`] guards public routes (the catalog). `authenticate`
//!   refuses a client already over its IP limit before looking its key up
//!   ([`refuse_flooding_client`]) and counts every 401 against the IP
//!   ([`count_unauthenticated`]), so clients without a valid key are limited
//!   per IP, never touch a tenant's quota, and stop costing lookups.

use super::policy::Decision;
use crate::auth::TenantContext;
use crate::http::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};

/// The tenant's rate-limit decision for one request (`None` with limits
/// off): checked right after authentication, before any database work. The
/// caller answers [`refusal`] if there is one, and writes the decision's
/// headers on the response either way.
pub async fn check(state: &AppState, context: &TenantContext) -> Option<Decision> {
    if !state.config.rate_limits_enabled {
        return None;
    }
    let (decision, _) = state
        .limiter
        .check_tenant(context.tenant_id, context.tier)
        .await;
    Some(decision)
}

/// The 429 for a refused decision.
pub fn refusal(decision: &Decision) -> Option<ApiError> {
    let refused = decision.refused_by?;
    let state = decision.binding()?;
    Some(ApiError::QuotaExceeded {
        policy: refused.as_str(),
        quota: state.quota.unwrap_or_default(),
        retry_after_secs: decision.retry_after_secs().unwrap_or(1),
    })
}

/// Middleware: the per-IP limit of public routes.
pub async fn limit_by_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(error) = count_unauthenticated(&state, &request) {
        return error.into_response();
    }
    next.run(request).await
}

/// `Some(429)` if the client's IP is already over `ip_rate_limit_per_minute`;
/// counts nothing. `authenticate` asks before looking a presented key up.
pub fn refuse_flooding_client(state: &AppState, request: &Request) -> Option<ApiError> {
    if !state.config.rate_limits_enabled {
        return None;
    }
    let ip = client_ip(request, state.config.trust_forwarded_for)?;
    state
        .limiter
        .ip_over_limit(ip)
        .map(|retry_after_secs| ip_refusal(state, retry_after_secs))
}

/// Counts one request from the client without a valid key (a 401, or a
/// public route); `Some(429)` if its IP is over the limit.
pub fn count_unauthenticated(state: &AppState, request: &Request) -> Option<ApiError> {
    if !state.config.rate_limits_enabled {
        return None;
    }
    let ip = client_ip(request, state.config.trust_forwarded_for)?;
    state
        .limiter
        .check_ip(ip)
        .err()
        .map(|retry_after_secs| ip_refusal(state, retry_after_secs))
}

fn ip_refusal(state: &AppState, retry_after_secs: u64) -> ApiError {
    ApiError::QuotaExceeded {
        policy: "ip-minute",
        quota: state.limiter.ip_per_minute(),
        retry_after_secs,
    }
}

/// The client's address: the peer, or — behind a trusted proxy — the last
/// address in `X-Forwarded-For` (the one that proxy appended; earlier ones
/// are the client's own claims).
fn client_ip(request: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        if let Some(ip) = forwarded_for(request.headers()) {
            return Some(ip);
        }
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .last()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_proxys_own_entry_is_the_last_one() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 10.0.0.7"),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        assert_eq!(forwarded_for(&headers), "203.0.113.9".parse().ok());
        let mut garbage = HeaderMap::new();
        garbage.insert("x-forwarded-for", HeaderValue::from_static("not-an-ip"));
        assert_eq!(forwarded_for(&garbage), None);
    }
}
