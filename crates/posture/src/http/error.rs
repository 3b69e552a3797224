//! The one API error type, rendered as RFC 9457 `application/problem+json`.
//!
//! Handlers return [`ApiError`]. Its response carries a [`Problem`] in the
//! response extensions with an empty body; the request-context middleware
//! (`http::middleware`) renders it, adding the request id and the path, and
//! also turns any other error response (axum's 404/405, tower's 413, a panic)
//! into a problem. So every error leaves in one shape, from one place.
//! Details of 5xx errors are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use posture_domain::report::ReportErrorKind;
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input: a JSON pointer into the body, or a query parameter name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) to the offending member of the request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Name of the offending query or path parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// What is wrong with it.
    pub detail: String,
}

impl FieldError {
    /// An error in the body member at `pointer` (e.g. `/scopes/0`).
    pub fn at(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            pointer: Some(pointer.into()),
            parameter: None,
            detail: detail.into(),
        }
    }

    /// An error in the query or path parameter `name`.
    pub fn parameter(name: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            pointer: None,
            parameter: Some(name.into()),
            detail: detail.into(),
        }
    }
}

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem; documented in `docs/errors.md`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request id, also sent as the `x-request-id` header; quote it to support.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The invalid fields, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extension members specific to the problem type.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Problem {
    /// A problem of type `/problems/<slug>`.
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Problem {
            problem_type: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            request_id: None,
            errors: Vec::new(),
            extensions: None,
        }
    }

    /// Adds a detail message.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The generic problem for a bare error status produced outside our handlers.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Problem::new(status, "not-found", "Not found")
                .with_detail("No resource exists at this path."),
            StatusCode::METHOD_NOT_ALLOWED => {
                Problem::new(status, "method-not-allowed", "Method not allowed")
                    .with_detail("The resource does not support this method; see the Allow header.")
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                Problem::new(status, "payload-too-large", "Payload too large")
                    .with_detail("The request body exceeds the size limit.")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Problem::new(status, "unsupported-media-type", "Unsupported media type")
            }
            status if status.is_server_error() => {
                Problem::new(status, "internal", "Internal server error").with_detail(
                    "The server failed to handle the request; quote the request id to support.",
                )
            }
            status => Problem::new(
                status,
                "http-error",
                status.canonical_reason().unwrap_or("Request failed"),
            ),
        }
    }

    /// A response carrying this problem, rendered by the request-context middleware.
    pub fn into_response_with(self, status: StatusCode) -> Response {
        let mut response = status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credential, or one that is malformed, unknown, revoked or expired.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// The credential lacks a scope the route requires.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The tenant's tier does not include the feature.
    #[error("tier {required} required")]
    TierRequired {
        required: posture_domain::Tier,
        current: posture_domain::Tier,
    },
    /// The tenant is suspended.
    #[error("tenant suspended")]
    TenantSuspended,
    /// No such object — also the answer for another tenant's object.
    #[error("not found")]
    NotFound,
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body or parameters are well-formed but invalid.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Content-Type is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The body exceeds the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// A submitted scan report that cannot be read: where and why.
    #[error("invalid report: {0}")]
    InvalidReport(posture_domain::report::ReportError),
    /// The request conflicts with the current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request conflicts with an existing object through one field (e.g. a
    /// name that must be unique): 409 with a pointer to the field.
    #[error("conflict at {pointer}: {detail}")]
    ConflictAt { pointer: String, detail: String },
    /// A dependency (the database) is unavailable or overloaded; retry shortly.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The request took longer than the configured timeout.
    #[error("request timed out")]
    Timeout,
    /// A rate limit or quota is used up: 429 naming the policy, with
    /// `Retry-After`.
    #[error("{policy} quota exceeded")]
    QuotaExceeded {
        /// `minute`, `day`, `month` (the tenant's) or `ip-minute` (a client's).
        policy: &'static str,
        quota: u64,
        retry_after_secs: u64,
    },
    /// A bug or unexpected failure; the detail is logged, not returned.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A validation error about one body member.
    pub fn invalid(pointer: &str, detail: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::at(pointer, detail)])
    }

    /// The same error for another request (a cached load's error shared by the
    /// requests that waited on it). Internal details stay in the log of the first.
    pub fn duplicate(&self) -> ApiError {
        match self {
            ApiError::NotFound => ApiError::NotFound,
            ApiError::Unavailable(reason) => ApiError::Unavailable(reason.clone()),
            ApiError::Timeout => ApiError::Timeout,
            ApiError::Forbidden(detail) => ApiError::Forbidden(detail.clone()),
            ApiError::Conflict(detail) => ApiError::Conflict(detail.clone()),
            other => ApiError::Internal(anyhow::anyhow!("shared failure: {other}")),
        }
    }

    /// A validation error about one query parameter.
    pub fn invalid_parameter(name: &str, detail: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::parameter(name, detail)])
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::TenantSuspended | ApiError::TierRequired { .. } => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Conflict(_) | ApiError::ConflictAt { .. } => StatusCode::CONFLICT,
            ApiError::InvalidReport(error) => match error.kind {
                ReportErrorKind::InvalidUtf8 | ReportErrorKind::Malformed => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            ApiError::Unavailable(_) | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn problem(self, status: StatusCode) -> Problem {
        match self {
            ApiError::Unauthenticated(detail) => {
                Problem::new(status, "unauthenticated", "Authentication required")
                    .with_detail(detail)
            }
            ApiError::Forbidden(detail) => {
                Problem::new(status, "forbidden", "Forbidden").with_detail(detail)
            }
            ApiError::TierRequired { required, current } => {
                let mut problem = Problem::new(status, "tier-required", "Tier required")
                    .with_detail(format!(
                        "This feature needs the {required} tier or above; the organization is on {current}."
                    ));
                let mut extensions = serde_json::Map::new();
                extensions.insert("required_tier".into(), serde_json::json!(required));
                extensions.insert("current_tier".into(), serde_json::json!(current));
                problem.extensions = Some(extensions);
                problem
            }
            ApiError::TenantSuspended => {
                Problem::new(status, "tenant-suspended", "Tenant suspended")
                    .with_detail("This organization is suspended; contact support.")
            }
            ApiError::NotFound => Problem::for_status(status),
            ApiError::MalformedJson(detail) => {
                Problem::new(status, "malformed-json", "Malformed JSON").with_detail(detail)
            }
            ApiError::Validation(errors) => Problem {
                errors,
                ..Problem::new(status, "validation-failed", "Validation failed")
                    .with_detail("One or more fields are invalid; see errors.")
            },
            ApiError::UnsupportedMediaType => {
                Problem::for_status(status).with_detail("Send the body as application/json.")
            }
            ApiError::PayloadTooLarge => Problem::for_status(status),
            ApiError::InvalidReport(error) => {
                let mut problem = Problem {
                    errors: vec![FieldError::at(error.pointer.clone(), error.message.clone())],
                    ..Problem::new(status, "invalid-report", "Invalid report").with_detail(format!(
                        "The report cannot be read ({}): {}",
                        error.kind, error.message
                    ))
                };
                let mut extensions = serde_json::Map::new();
                extensions.insert(
                    "report_error".into(),
                    serde_json::Value::from(error.kind.as_str()),
                );
                problem.extensions = Some(extensions);
                problem
            }
            ApiError::Conflict(detail) => {
                Problem::new(status, "conflict", "Conflict").with_detail(detail)
            }
            ApiError::ConflictAt { pointer, detail } => Problem {
                errors: vec![FieldError::at(pointer, detail.clone())],
                ..Problem::new(status, "conflict", "Conflict").with_detail(detail)
            },
            ApiError::Unavailable(_) => Problem::new(status, "unavailable", "Service unavailable")
                .with_detail("A dependency is temporarily unavailable; retry shortly."),
            ApiError::Timeout => Problem::new(status, "timeout", "Request timed out")
                .with_detail("The request took too long; retry shortly."),
            ApiError::QuotaExceeded {
                policy,
                quota,
                retry_after_secs,
            } => {
                let what = match policy {
                    "minute" => format!("{quota} requests per minute"),
                    "day" => format!("{quota} requests per day (UTC)"),
                    "month" => format!("{quota} requests per month (UTC)"),
                    _ => format!("{quota} unauthenticated requests per minute from one address"),
                };
                let mut problem = Problem::new(status, "quota-exceeded", "Quota exceeded")
                    .with_detail(format!(
                        "The {policy} limit of {what} is used up; retry in {retry_after_secs} s."
                    ));
                let mut extensions = serde_json::Map::new();
                extensions.insert("policy".into(), serde_json::json!(policy));
                extensions.insert("quota".into(), serde_json::json!(quota));
                extensions.insert("retry_after".into(), serde_json::json!(retry_after_secs));
                problem.extensions = Some(extensions);
                problem
            }
            ApiError::Internal(_) => Problem::for_status(status),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed")
            }
            ApiError::Unavailable(reason) => tracing::warn!(%reason, "dependency unavailable"),
            _ => {}
        }
        let challenge = matches!(self, ApiError::Unauthenticated(_));
        let retry_after = match &self {
            ApiError::QuotaExceeded {
                retry_after_secs, ..
            } => Some(retry_after_secs.to_string()),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some("1".to_owned()),
            _ => None,
        };
        let mut response = self.problem(status).into_response_with(status);
        if challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"posture\""),
            );
        }
        if let Some(Ok(seconds)) = retry_after.map(|s| HeaderValue::from_str(&s)) {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        let unavailable = match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            // query_canceled (statement_timeout), admin shutdown, cannot connect now,
            // too many connections, connection failures.
            sqlx::Error::Database(db) => matches!(
                db.code().as_deref(),
                Some("57014" | "57P01" | "57P02" | "57P03" | "53300" | "08000" | "08003" | "08006")
            ),
            _ => false,
        };
        if unavailable {
            return ApiError::Unavailable(error.to_string());
        }
        // A write referencing a row that no longer exists (e.g. the tenant was
        // deleted while one of its keys was still cached), or one colliding with
        // a unique key: the state changed under the request, not a server fault.
        if let sqlx::Error::Database(db) = &error {
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            // Class 22 (data exception: out of range, too long, bad encoding) and
            // check violations: a value the schema refuses.
            if code.starts_with("22") || code == "23514" {
                tracing::info!(%error, "value refused by the database answered with 422");
                return ApiError::Validation(vec![FieldError {
                    pointer: None,
                    parameter: None,
                    detail: "A value is outside what the service accepts.".to_owned(),
                }]);
            }
        }
        let conflict = match &error {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                Some("The request refers to something that no longer exists.")
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Some("The request conflicts with an existing object.")
            }
            _ => None,
        };
        if let Some(detail) = conflict {
            tracing::info!(%error, "constraint violation answered with 409");
            ApiError::Conflict(detail.to_owned())
        } else {
            ApiError::Internal(anyhow::Error::new(error).context("database error"))
        }
    }
}
