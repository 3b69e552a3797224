//! The outer request path: request id, tracing span, timeout, metrics, access
//! log, and the single place where error responses become problem+json.

use super::error::{ApiError, Problem, PROBLEM_JSON};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;
use tracing::Instrument;

/// Header carrying the request id in both directions.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Outermost middleware. Assigns the request id (a caller's well-formed
/// `x-request-id` is kept, so ids can be followed across services), opens the
/// request span every log line of the request is written in, records metrics
/// and the access log, and renders error responses as problems.
pub async fn request_context(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_acceptable_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));

    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        tenant_id = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    let mut response = render_problem(response, &request_id, &path);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .observe(method_label(&method), &route, status, elapsed);
    span.in_scope(|| {
        let latency_ms = elapsed.as_secs_f64() * 1e3;
        if status >= 500 {
            tracing::error!(target: "posture::access", status, latency_ms, "request finished");
        } else {
            tracing::info!(target: "posture::access", status, latency_ms, "request finished");
        }
    });
    response
}

/// Bounds the time a request may take; past it the client gets 503.
pub async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout(), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// The method as a metrics label: HTTP allows any token as a method, so unknown
/// ones share one label and cannot grow the series count.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn is_acceptable_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Turns an error response into problem+json: the [`Problem`] a handler attached,
/// or a generic one for bare errors from the router, the body limit or a panic.
fn render_problem(response: Response, request_id: &str, path: &str) -> Response {
    let status = response.status();
    let attached = response.extensions().get::<Problem>().cloned();
    let already_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if attached.is_none() && (status.as_u16() < 400 || already_problem) {
        return response;
    }
    let mut problem = attached.unwrap_or_else(|| Problem::for_status(status));
    problem.request_id = Some(request_id.to_owned());
    problem.instance = Some(path.to_owned());
    let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
    let (mut parts, _) = response.into_parts();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.remove::<Problem>();
    Response::from_parts(parts, Body::from(body))
}
