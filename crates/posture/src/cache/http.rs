//! The HTTP layer of caching (L3): cached tenant reads carry a strong `ETag`
//! and `Cache-Control: private, max-age=…`; a request whose `If-None-Match`
//! names the current tag gets 304 with no body — served from the view cache,
//! so without touching PostgreSQL when the view is cached.

use super::views::{CachedView, Generation};
use crate::http::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use posture_domain::TenantId;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::{Arc, OnceLock};

/// The request's `If-None-Match` values — all a cached read looks at — as a
/// header map of their own: taken without copying the request's other
/// headers (axum's `HeaderMap` extractor clones them all), and empty, without
/// allocating, when the client sent none.
pub struct IfNoneMatch(pub HeaderMap);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut only = HeaderMap::new();
        for value in parts.headers.get_all(header::IF_NONE_MATCH) {
            only.append(header::IF_NONE_MATCH, value.clone());
        }
        Ok(IfNoneMatch(only))
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`). Weak comparison, as RFC
/// 9110 prescribes for `If-None-Match`: a `W/` prefix is ignored.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// The tenant's view `name` through the view cache: on a miss, `build` makes
/// it from the database and it is cached as JSON under `generation`.
pub async fn cached_json<T, F, Fut>(
    state: &AppState,
    tenant_id: TenantId,
    generation: Generation,
    name: &'static str,
    build: F,
) -> Result<Arc<CachedView>, ApiError>
where
    T: Serialize,
    F: Fn(AppState, TenantId) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let loader_state = state.clone();
    let build = Arc::new(build);
    state
        .views
        .get_or_load(tenant_id, generation, name, move || {
            let (state, build) = (loader_state.clone(), build.clone());
            async move {
                let view = build(state, tenant_id).await?;
                serde_json::to_vec(&view).map_err(|error| {
                    ApiError::Internal(
                        anyhow::Error::new(error).context(format!("serializing {name}")),
                    )
                })
            }
        })
        .await
        .map_err(|error| error.duplicate())
}

/// The cached view as a JSON response, or 304 if the client has it. The body
/// is shared with the cache, not copied.
pub fn respond(headers: &HeaderMap, view: &CachedView, max_age_secs: u64) -> Response {
    respond_tagged(
        headers,
        view.body.clone(),
        &view.etag,
        view.etag_header.clone(),
        private_cache_control(max_age_secs),
    )
}

/// `private, max-age=<max_age_secs>`, made once for the first value asked for
/// (every cached read of a server asks for the same one) and read without a
/// lock from then on; another value is formatted each time.
fn private_cache_control(max_age_secs: u64) -> HeaderValue {
    static FIRST: OnceLock<(u64, HeaderValue)> = OnceLock::new();
    let format = |age: u64| {
        HeaderValue::from_str(&format!("private, max-age={age}"))
            .unwrap_or(HeaderValue::from_static("private, no-cache"))
    };
    let (age, value) = FIRST.get_or_init(|| (max_age_secs, format(max_age_secs)));
    if *age == max_age_secs {
        value.clone()
    } else {
        format(max_age_secs)
    }
}

/// A JSON body with its strong `etag` and `cache_control`, or 304 if the
/// client's `If-None-Match` names the tag.
pub fn respond_with(
    headers: &HeaderMap,
    body: Bytes,
    etag: &str,
    cache_control: HeaderValue,
) -> Response {
    let etag_value = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\""));
    respond_tagged(headers, body, etag, etag_value, cache_control)
}

/// [`respond_with`] with the tag already made into a header value.
fn respond_tagged(
    headers: &HeaderMap,
    body: Bytes,
    etag: &str,
    etag_value: HeaderValue,
    cache_control: HeaderValue,
) -> Response {
    if not_modified(headers, etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_value),
                (header::CACHE_CONTROL, cache_control),
            ],
        )
            .into_response();
    }
    let mut response = Response::new(axum::body::Body::from(body));
    // Room for the rate-limit headers and the request id added on the way
    // out, so the map is allocated once rather than grown and rehashed.
    let headers = response.headers_mut();
    headers.reserve(RESPONSE_HEADERS);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::ETAG, etag_value);
    headers.insert(header::CACHE_CONTROL, cache_control);
    response
}

/// Headers a cached read's response ends up with: its own three, five
/// rate-limit headers and the request id.
const RESPONSE_HEADERS: usize = 9;

/// A strong ETag for `body`: `"<hex>"` of the first 16 bytes of its SHA-256,
/// so equal bodies have equal tags however they were produced.
pub fn strong_etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let etag = "\"abc\"";
        for (value, expected) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abcd\"", false),
            ("abc", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static(value));
            assert_eq!(not_modified(&headers, etag), expected, "{value}");
        }
        assert!(!not_modified(&HeaderMap::new(), etag));
    }
}
