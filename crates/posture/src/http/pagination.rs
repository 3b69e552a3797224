//! Cursor pagination shared by every list endpoint.

use super::error::ApiError;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Page size when the client names none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// `limit` and `cursor` query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1–100 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl PageQuery {
    /// From a list endpoint's own query struct (serde's `flatten` would turn
    /// numbers into strings with query strings, so endpoints repeat the two fields).
    pub fn new(limit: Option<u32>, cursor: Option<String>) -> Self {
        PageQuery { limit, cursor }
    }

    /// The page size, checked against the bounds.
    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => Ok(limit),
            Some(_) => Err(ApiError::invalid_parameter(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            )),
        }
    }

    /// The cursor, if one was sent.
    pub fn cursor(&self) -> Result<Option<Cursor>, ApiError> {
        self.cursor.as_deref().map(Cursor::decode).transpose()
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items, in the endpoint's order.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows, fetched in order: the extra row
    /// only tells that another page exists, and `cursor_of` the last row shown
    /// is where the next page starts.
    pub fn from_rows<R>(
        mut rows: Vec<R>,
        limit: u32,
        cursor_of: impl Fn(&R) -> String,
        view: impl FnMut(R) -> T,
    ) -> Page<T> {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page {
            data: rows.into_iter().map(view).collect(),
            next_cursor,
        }
    }
}

/// Room reserved per item when a page is written as JSON: a little more than
/// a finding takes (about 540 bytes), so a page is written into one buffer
/// instead of one that doubles (and copies) a dozen times on the way.
const JSON_BYTES_PER_ITEM: usize = 640;

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(64 + self.data.len() * JSON_BYTES_PER_ITEM);
        match serde_json::to_writer(&mut body, &self) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(error) => {
                ApiError::Internal(anyhow::Error::new(error).context("serializing a page"))
                    .into_response()
            }
        }
    }
}

/// An opaque position in a list: its parts hex-encoded so clients treat it as a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    /// Encodes the sort key of the last item of a page.
    pub fn encode(parts: &[&str]) -> String {
        parts
            .join("|")
            .bytes()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    fn decode(text: &str) -> Result<Cursor, ApiError> {
        let invalid =
            || ApiError::invalid_parameter("cursor", "is not a cursor this endpoint returned");
        if text.len() % 2 != 0 || text.len() > 512 {
            return Err(invalid());
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|index| u8::from_str_radix(text.get(index..index + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| invalid())?;
        String::from_utf8(bytes).map(Cursor).map_err(|_| invalid())
    }

    /// Encodes the (time, id) sort key of lists ordered newest first.
    pub fn encode_time_and_id(at: DateTime<Utc>, id: &str) -> String {
        Cursor::encode(&[&at.timestamp_micros().to_string(), id])
    }

    /// Decodes a (time, id) cursor, parsing the id with `parse_id`. Times outside
    /// 1970..10000 can only be forged and would be out of range for Postgres.
    pub fn time_and_id<T>(
        &self,
        parse_id: impl FnOnce(&str) -> Option<T>,
    ) -> Result<(DateTime<Utc>, T), ApiError> {
        let invalid =
            || ApiError::invalid_parameter("cursor", "is not a cursor this endpoint returned");
        let [micros, id] = self.parts::<2>().ok_or_else(invalid)?;
        let at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_micros)
            .filter(|at| (1970..10_000).contains(&at.year()))
            .ok_or_else(invalid)?;
        let id = parse_id(&id).ok_or_else(invalid)?;
        Ok((at, id))
    }

    /// Splits the cursor into exactly `N` parts.
    pub fn parts<const N: usize>(&self) -> Option<[String; N]> {
        let parts: Vec<String> = self.0.split('|').map(str::to_owned).collect();
        parts.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let text = Cursor::encode(&["1700000000", "AbC"]);
        let cursor = Cursor::decode(&text).unwrap();
        assert_eq!(
            cursor.parts::<2>().unwrap(),
            ["1700000000".to_owned(), "AbC".to_owned()]
        );
        assert!(cursor.parts::<3>().is_none());
        for bad in ["xyz", "zz", "é1", &"ab".repeat(300)] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        let query = |limit| PageQuery {
            limit,
            cursor: None,
        };
        assert_eq!(query(None).limit().unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(query(Some(100)).limit().unwrap(), 100);
        assert!(query(Some(0)).limit().is_err());
        assert!(query(Some(101)).limit().is_err());
    }
}
