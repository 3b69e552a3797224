//! Why a report was refused, and where in it.

use super::json::{offset_of, pointer_at};
use serde::Serialize;
use serde_json::error::Category;
use std::fmt;

/// The class of a refusal. Every kind is the submitter's to fix (a 4xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportErrorKind {
    /// The bytes are not UTF-8.
    InvalidUtf8,
    /// The text is not JSON (the message gives line and column).
    Malformed,
    /// Arrays and objects nest deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    TooDeep,
    /// Valid JSON, but not the declared (or any recognised) report format.
    WrongFormat,
    /// The right format in a version we do not read.
    UnsupportedVersion,
    /// A field has the wrong type or value.
    Invalid,
    /// More results than the limit.
    TooManyFindings,
}

impl ReportErrorKind {
    /// A stable snake_case name, e.g. for a problem type.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReportErrorKind::InvalidUtf8 => "invalid_utf8",
            ReportErrorKind::Malformed => "malformed",
            ReportErrorKind::TooDeep => "too_deep",
            ReportErrorKind::WrongFormat => "wrong_format",
            ReportErrorKind::UnsupportedVersion => "unsupported_version",
            ReportErrorKind::Invalid => "invalid",
            ReportErrorKind::TooManyFindings => "too_many_findings",
        }
    }
}

impl fmt::Display for ReportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused report: what is wrong and where. The message is about the
/// submitted document only, so it is safe to show to the submitter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct ReportError {
    /// What class of problem it is.
    pub kind: ReportErrorKind,
    /// RFC 6901 JSON pointer to the offending value; `""` is the whole document.
    pub pointer: String,
    /// What is wrong, in words for the submitter.
    pub message: String,
}

impl ReportError {
    pub(crate) fn new(
        kind: ReportErrorKind,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> ReportError {
        ReportError {
            kind,
            pointer: pointer.into(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> ReportError {
        ReportError::new(ReportErrorKind::Invalid, pointer, message)
    }

    /// Classifies a serde_json error on `text`, locating it with a pointer.
    pub(crate) fn from_json(error: serde_json::Error, text: &str) -> ReportError {
        let full = error.to_string();
        // serde_json appends " at line L column C" to positioned errors; the
        // pointer says where more usefully, so the bare message is kept.
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        let bare = full.strip_suffix(&suffix).unwrap_or(&full);
        let offset = offset_of(text, error.line(), error.column());
        match error.classify() {
            Category::Eof => ReportError::new(
                ReportErrorKind::Malformed,
                "",
                format!(
                    "the document ends early ({bare}) at line {} column {}",
                    error.line(),
                    error.column()
                ),
            ),
            Category::Syntax if bare.starts_with("recursion limit exceeded") => ReportError::new(
                ReportErrorKind::TooDeep,
                pointer_at(text, offset),
                "the document nests arrays and objects too deeply",
            ),
            Category::Syntax | Category::Io => ReportError::new(
                ReportErrorKind::Malformed,
                "",
                format!("not valid JSON: {full}"),
            ),
            Category::Data => {
                let pointer = pointer_at(text, offset);
                if !pointer.is_empty() {
                    return ReportError::invalid(pointer, bare);
                }
                // The document itself has the wrong shape (an array, a
                // string). Unless it is not even JSON: that is the bigger news.
                match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                    Err(syntax) if syntax.classify() != Category::Data => {
                        ReportError::from_json(syntax, text)
                    }
                    _ => ReportError::new(
                        ReportErrorKind::WrongFormat,
                        "",
                        format!("the document is not a report object: {bare}"),
                    ),
                }
            }
        }
    }
}
