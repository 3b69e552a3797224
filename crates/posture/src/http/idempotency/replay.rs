//! What is kept of a response for replay, and replaying it.
//!
//! Kept: the status, `Location`, `Content-Type` and body of 2xx and 4xx
//! responses — except secrets, which are never stored. Replayed: exactly that,
//! marked `Idempotent-Replayed: true`.

use super::IDEMPOTENT_REPLAYED;
use crate::http::error::{ApiError, Problem, PROBLEM_JSON};
use crate::http::middleware::RequestId;
use crate::store::idempotency::{StoredHeaders, StoredResponse};
use axum::body::{to_bytes, Body, HttpBody};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Largest response body stored for replay; a larger response is not stored
/// (the key is released). Our POST responses are a few KiB at most.
const MAX_STORED_BODY: usize = 1024 * 1024;

/// Response members never stored: `(path, member)`. A new API key's secret is
/// shown once and otherwise kept only as a hash, so a replayed creation omits it
/// (and names the key in `Location`, for revoking it if the first response was lost).
const SECRET_MEMBERS: &[(&str, &str)] = &[("/v1/api-keys", "key")];

/// Splits the handler's response into what the client gets and, when it is to
/// be kept, what is stored for replay.
///
/// Error responses leave handlers as an empty body with a [`Problem`] attached;
/// the request-context middleware (outside this one) renders it. We store the
/// problem as it will be rendered, minus `request_id` and `instance`, which
/// [`replay`] fills in for the replaying request.
pub(super) async fn capture(
    response: Response,
    path: &str,
) -> Result<(Response, Option<StoredResponse>), ApiError> {
    let status = response.status();
    if !is_stored(status) {
        return Ok((response, None));
    }
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let is_problem = content_type
        .as_deref()
        .is_some_and(|value| value.starts_with(PROBLEM_JSON));
    let attached = response.extensions().get::<Problem>().cloned();
    // Mirrors `middleware::render_problem`: an attached problem, or a generic one
    // for a bare error status.
    let problem = match attached {
        Some(problem) => Some(problem),
        None if status.is_client_error() && !is_problem => Some(Problem::for_status(status)),
        None => None,
    };
    if let Some(problem) = problem {
        let body = serde_json::to_vec(&problem)
            .map_err(|error| ApiError::Internal(anyhow::Error::new(error)))?;
        let stored = StoredResponse {
            status: status.as_u16(),
            headers: StoredHeaders {
                location,
                content_type: Some(PROBLEM_JSON.to_owned()),
            },
            body,
        };
        return Ok((response, Some(stored)));
    }
    // Only bodies known to fit are read; anything else passes through unstored.
    let fits = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|upper| upper <= MAX_STORED_BODY as u64);
    if !fits {
        return Ok((response, None));
    }
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, MAX_STORED_BODY)
        .await
        .map_err(|error| ApiError::Internal(anyhow::Error::new(error).context("response body")))?;
    let stored = without_secrets(path, &bytes).map(|body| StoredResponse {
        status: status.as_u16(),
        headers: StoredHeaders {
            location,
            content_type,
        },
        body,
    });
    Ok((Response::from_parts(parts, Body::from(bytes)), stored))
}

/// The body to store: as sent, or without the route's [`SECRET_MEMBERS`]
/// (`None`, not stored at all, if such a body is not the JSON object expected).
fn without_secrets(path: &str, body: &[u8]) -> Option<Vec<u8>> {
    let secrets: Vec<&str> = SECRET_MEMBERS
        .iter()
        .filter(|(route, _)| *route == path)
        .map(|(_, member)| *member)
        .collect();
    if secrets.is_empty() {
        return Some(body.to_vec());
    }
    let serde_json::Value::Object(mut object) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    for member in secrets {
        object.remove(member);
    }
    serde_json::to_vec(&object).ok()
}

/// Whether a response is kept for replay. 2xx and 4xx are the request's answer;
/// 5xx are the server's failure, and 401/403/408/429 depend on the credential
/// or on load — retrying those must run the request again.
fn is_stored(status: StatusCode) -> bool {
    status.is_success()
        || (status.is_client_error()
            && !matches!(
                status,
                StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::REQUEST_TIMEOUT
                    | StatusCode::TOO_MANY_REQUESTS
            ))
}

/// The stored response again: same status, `Location`, `Content-Type` and body,
/// marked `Idempotent-Replayed: true`. A problem body gets this request's id and
/// path, so `request_id` still matches the `x-request-id` header.
pub(super) fn replay(
    stored: StoredResponse,
    request_id: Option<&RequestId>,
    path: &str,
) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let is_problem = stored
        .headers
        .content_type
        .as_deref()
        .is_some_and(|value| value.starts_with(PROBLEM_JSON));
    let body = if is_problem {
        restamp_problem(stored.body, request_id, path)
    } else {
        stored.body
    };
    let mut response = (status, Body::from(body)).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::LOCATION, stored.headers.location),
        (header::CONTENT_TYPE, stored.headers.content_type),
    ] {
        if let Some(value) = value.and_then(|value| HeaderValue::from_str(&value).ok()) {
            headers.insert(name, value);
        }
    }
    headers.insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    response
}

fn restamp_problem(body: Vec<u8>, request_id: Option<&RequestId>, path: &str) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut problem)) = serde_json::from_slice(&body) else {
        return body;
    };
    if let Some(RequestId(id)) = request_id {
        problem.insert("request_id".into(), id.clone().into());
    }
    problem.insert("instance".into(), path.into());
    serde_json::to_vec(&problem).unwrap_or(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_are_stored() {
        assert!(is_stored(StatusCode::CREATED));
        assert!(is_stored(StatusCode::ACCEPTED));
        assert!(is_stored(StatusCode::UNPROCESSABLE_ENTITY));
        assert!(is_stored(StatusCode::CONFLICT));
        assert!(!is_stored(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_stored(StatusCode::FORBIDDEN));
        assert!(!is_stored(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!is_stored(StatusCode::INTERNAL_SERVER_ERROR));
    }

    #[test]
    fn secrets_are_not_stored() {
        let body = br#"{"id":"key_1","key":"sp_live_secret"}"#;
        let stored = without_secrets("/v1/api-keys", body).unwrap();
        assert_eq!(stored, br#"{"id":"key_1"}"#);
        assert_eq!(without_secrets("/v1/assets", body).unwrap(), body);
        assert_eq!(without_secrets("/v1/api-keys", b"[]"), None);
    }

    #[test]
    fn a_replayed_problem_names_the_replaying_request() {
        let stored = br#"{"type":"/problems/validation-failed","status":422}"#.to_vec();
        let id = RequestId("req-2".to_owned());
        let body: serde_json::Value =
            serde_json::from_slice(&restamp_problem(stored, Some(&id), "/v1/assets")).unwrap();
        assert_eq!(body["request_id"], "req-2");
        assert_eq!(body["instance"], "/v1/assets");
        assert_eq!(body["status"], 422);
    }
}
