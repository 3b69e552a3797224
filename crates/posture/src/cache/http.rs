//! The HTTP layer of caching (L3): cached tenant reads carry a strong `ETag`
//! and `Cache-Control: private, max-age=…`; a request whose `If-None-Match`
//! names the current tag gets 304 with no body — served from the view cache,
//! so without touching PostgreSQL when the view is cached.

use super::views::CachedView;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

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

/// The cached view as a JSON response, or 304 if the client has it.
pub fn respond(headers: &HeaderMap, view: &CachedView, max_age_secs: u64) -> Response {
    let cache_control = HeaderValue::from_str(&format!("private, max-age={max_age_secs}"))
        .unwrap_or(HeaderValue::from_static("private, no-cache"));
    let etag = HeaderValue::from_str(&view.etag).unwrap_or(HeaderValue::from_static("\"\""));
    if not_modified(headers, &view.etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache_control)],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache_control),
        ],
        view.body.clone(),
    )
        .into_response()
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
