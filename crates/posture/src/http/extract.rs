//! Request extractors whose rejections are problems with a pointer to the field.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

/// A JSON body. Wrong content type → 415, too large → 413, not JSON → 400,
/// JSON of the wrong shape → 422 with a JSON pointer to the offending member.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(failure)
                        if failure.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                    {
                        ApiError::PayloadTooLarge
                    }
                    other => ApiError::MalformedJson(other.body_text()),
                })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes a request body, which must be a JSON object, reporting where the
/// document is wrong. (serde's derived structs would also accept an array of the
/// fields in order; every request body of the API is an object.)
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Report syntax errors as such; only well-formed non-objects are 422.
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
            .map_err(|error| ApiError::MalformedJson(error.to_string()))?;
        return Err(ApiError::invalid("", "the body must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        if inner.is_data() {
            ApiError::invalid(&json_pointer(error.path()), inner.to_string())
        } else {
            ApiError::MalformedJson(inner.to_string())
        }
    })?;
    // Trailing characters after the document are malformed JSON too.
    deserializer
        .end()
        .map_err(|error| ApiError::MalformedJson(error.to_string()))?;
    Ok(value)
}

/// Converts serde's path (`scopes[0]`, `a.b`) to an RFC 6901 pointer (`/scopes/0`).
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => pointer.push('?'),
        }
    }
    pointer
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(media) = content_type.and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Query parameters; a bad one → 422 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|error| {
                let name = error.path().to_string();
                let name = if name == "." {
                    "query".to_owned()
                } else {
                    name
                };
                ApiError::invalid_parameter(&name, error.inner().to_string())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        scopes: Vec<String>,
    }

    #[test]
    fn pointers_name_the_offending_member() {
        match parse_json::<Body>(br#"{"name":"x","scopes":["read",7]}"#) {
            Err(ApiError::Validation(errors)) => {
                assert_eq!(errors[0].pointer.as_deref(), Some("/scopes/1"))
            }
            other => panic!("{other:?}"),
        }
        match parse_json::<Body>(br#"{"scopes":[]}"#) {
            Err(ApiError::Validation(errors)) => assert_eq!(errors[0].pointer.as_deref(), Some("")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_objects_are_accepted() {
        for body in [&br#"["x", ["read"]]"#[..], b"7", b" \"text\" ", b"null"] {
            match parse_json::<Body>(body) {
                Err(ApiError::Validation(errors)) => {
                    assert_eq!(errors[0].pointer.as_deref(), Some(""))
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            parse_json::<Body>(b"[1,"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<Body>(b""),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn syntax_errors_and_trailing_garbage_are_malformed() {
        assert!(matches!(
            parse_json::<Body>(b"{\"name\":"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<Body>(br#"{"name":"x","scopes":[]} x"#),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn json_content_types_are_recognised() {
        let accepts = |text: &'static str| is_json(Some(&header::HeaderValue::from_static(text)));
        assert!(accepts("application/json"));
        assert!(accepts("Application/JSON; charset=utf-8"));
        assert!(accepts("application/problem+json"));
        assert!(!accepts("text/plain"));
        assert!(!is_json(None));
    }
}
