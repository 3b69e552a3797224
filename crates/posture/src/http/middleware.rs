//! The request path's layers: the request's context on every route
//! ([`within_request_context`]: request id, tracing span, panic guard,
//! timeout, metrics, access log, and the single place where error responses
//! become problem+json), on the tenant routes with their own path inside it
//! ([`tenant_path`]: authentication, rate limits, idempotency keys), in one
//! layer each ([`request_context`], [`tenant_request`]).
//!
//! Few layers, on purpose: axum's `from_fn` layers clone the service they
//! wrap on every call, and each layer's clone clones everything inside it, so
//! the cost of stacked layers grows with the square of their number. For the
//! same reason the request's context catches panics itself rather than
//! through a panic-catching layer, and the body limit is set around the whole
//! router ([`super::service`]).

use super::error::{ApiError, Problem, PROBLEM_JSON};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Instant;
use tracing::Instrument;

/// Header carrying the request id in both directions.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Outermost middleware of every route but the tenant routes (which have
/// [`tenant_request`]): the request's context ([`within_request_context`])
/// around the route.
pub async fn request_context(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    within_request_context(&state, request, |request| next.run(request)).await
}

/// The tenant routes' one middleware: the request's context
/// ([`within_request_context`]) around [`tenant_path`]. One layer where two
/// nested ones would each box and clone, on every request, the services
/// they wrap (a tenant route is the most frequent request there is).
pub async fn tenant_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let context_state = state.clone();
    // Boxed: the tenant path's future is large (authentication, limits and
    // the handler's futures are in it), and unboxed it made every future
    // wrapped around it as large, each moved by copying all of it.
    within_request_context(&context_state, request, |request| {
        Box::pin(tenant_path(state, request, next))
    })
    .await
}

/// Runs `handle` in the request's context: assigns the request id (a
/// caller's well-formed `x-request-id` is kept, so ids can be followed across
/// services), opens the request span every log line of the request is
/// written in, records metrics and the access log, bounds the time a request
/// may take (past it the client gets 503), turns a panic in `handle` into a
/// 500 (logged in the request's span, with the panic's message) and renders
/// error responses as problems.
async fn within_request_context<F, Fut>(
    state: &AppState,
    mut request: Request,
    handle: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_acceptable_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let mut text = uuid::Uuid::encode_buffer();
            uuid::Uuid::now_v7()
                .simple()
                .encode_lower(&mut text)
                .to_owned()
        });
    // Both are reference-counted: kept without copying the text.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().clone();
    let uri = request.uri().clone();
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
    // The timeout and the panic guard are inside, so a request that runs out
    // of time or panics is logged, counted and rendered like any other. The
    // guard covers `handle` itself too (it is called on the first poll) and
    // the inner services' `call`, which `Next::run` makes on its first poll.
    // Unwind safety: a panicking request's state is dropped with it, and
    // what it shares (pools, caches) is built to be used after a panic
    // elsewhere (poisoned locks are recovered where they are taken).
    let handled = unless_panicking(async move { handle(request).await });
    let response = match tokio::time::timeout(
        state.config.request_timeout(),
        handled.instrument(span.clone()),
    )
    .await
    {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    };
    let mut response = render_problem(response, &request_id, uri.path());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .observe(method_label(&method), route, status, elapsed);
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

/// The tenant routes' request path within the request's context:
/// authenticate (the tenant comes only from the verified key) → rate limits
/// (before any database work) → idempotency keys → handler. Every answer
/// from here on, errors included, carries the tenant's rate-limit headers
/// once the limits were checked.
async fn tenant_path(state: AppState, mut request: Request, next: Next) -> Response {
    let context = match crate::auth::authenticate(&state, &mut request).await {
        Ok(context) => context,
        Err(error) => return error.into_response(),
    };
    let decision = crate::limits::middleware::check(&state, &context).await;
    let refused = decision
        .as_ref()
        .and_then(crate::limits::middleware::refusal);
    let mut response = match refused {
        Some(error) => error.into_response(),
        None => super::idempotency::guard(state, request, next).await,
    };
    if let Some(decision) = &decision {
        decision.write_headers(response.headers_mut());
    }
    response
}

/// `handling`'s response, or if it panics a 500 (an internal error: its
/// message goes to the log, written in the span `handling` is polled in, and
/// not to the client).
async fn unless_panicking(handling: impl Future<Output = Response>) -> Response {
    match AssertUnwindSafe(handling).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => ApiError::Internal(anyhow::anyhow!(
            "the request's handling panicked: {}",
            panic_message(panic.as_ref())
        ))
        .into_response(),
    }
}

/// The text given to `panic!`: a panic's payload is a `&str` or a `String`.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn a_panicking_request_is_an_opaque_500() {
        let response = unless_panicking(async {
            if StatusCode::OK.is_success() {
                panic!("the detail {}", "of a bug");
            }
            StatusCode::OK.into_response()
        })
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let problem = response
            .extensions()
            .get::<Problem>()
            .expect("the 500 carries its problem");
        let shown = serde_json::to_string(problem).unwrap();
        assert!(!shown.contains("of a bug"), "{shown}");
    }

    #[tokio::test]
    async fn a_request_that_does_not_panic_keeps_its_response() {
        let response = unless_panicking(async { StatusCode::ACCEPTED.into_response() }).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    #[test]
    fn a_panics_message_is_read_from_either_payload() {
        assert_eq!(panic_message(&"static text"), "static text");
        assert_eq!(panic_message(&String::from("formatted")), "formatted");
        assert_eq!(panic_message(&42_u8), "a panic without a message");
    }
}
