//! JSON plumbing the parsers share: the nesting guard, JSON pointers for
//! error positions, a forgiving scalar type, and a seed that hands array
//! elements to a callback one at a time instead of collecting them.

use super::error::ReportError;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt::{self, Write as _};
use std::marker::PhantomData;

/// Deepest nesting of arrays and objects a report may have. Real reports stay
/// under 20; serde_json's own guard is 128, so ours trips first and the error
/// is the same wherever the nesting is (even inside fields we never read).
pub const MAX_DEPTH: usize = 100;

/// The byte offset of the first `[` or `{` that opens a level deeper than
/// `max`, if any. One pass, no allocation, no recursion: safe on any input,
/// including input that is not JSON at all.
pub(crate) fn excess_depth(bytes: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = skip_string(bytes, i),
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Given the index of an opening quote, the index just past the closing one
/// (or the end of input).
fn skip_string(bytes: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return i + 1,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    bytes.len()
}

enum Frame {
    Object {
        key: Option<String>,
        awaiting_key: bool,
    },
    Array {
        index: Option<usize>,
    },
}

/// The JSON pointer of the value at byte `offset` of `text`: the innermost
/// member or element whose token starts before `offset`. serde_json reports
/// a type error just past the offending value (or at it, for a container)
/// and a missing field just past the object's `}`, so this names the value,
/// or the object, at fault. Only used to explain errors: it re-scans from the start.
pub(crate) fn pointer_at(text: &str, offset: usize) -> String {
    let bytes = text.as_bytes();
    let before = |at: usize| at < offset;
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < bytes.len() && before(i) {
        let start = i;
        match bytes[i] {
            b'{' | b'[' => {
                value_starts(&mut stack);
                stack.push(if bytes[i] == b'{' {
                    Frame::Object {
                        key: None,
                        awaiting_key: true,
                    }
                } else {
                    Frame::Array { index: None }
                });
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            b',' => {
                if let Some(Frame::Object { awaiting_key, .. }) = stack.last_mut() {
                    *awaiting_key = true;
                }
                i += 1;
            }
            b'"' => {
                i = skip_string(bytes, i);
                match stack.last_mut() {
                    Some(Frame::Object { key, awaiting_key }) if *awaiting_key => {
                        let raw = text.get(start..i).unwrap_or("\"\"");
                        *key = Some(serde_json::from_str(raw).unwrap_or_default());
                        *awaiting_key = false;
                    }
                    _ => value_starts(&mut stack),
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' | b':' => i += 1,
            _ => {
                // A number or literal: runs to the next delimiter.
                value_starts(&mut stack);
                while i < bytes.len() && !b",]} \t\n\r:".contains(&bytes[i]) {
                    i += 1;
                }
            }
        }
    }
    let mut pointer = String::new();
    for frame in &stack {
        match frame {
            Frame::Object {
                key: Some(key),
                awaiting_key: false,
            } => push_token(&mut pointer, key),
            Frame::Array { index: Some(index) } => {
                let _ = write!(pointer, "/{index}");
            }
            _ => break,
        }
    }
    pointer
}

fn value_starts(stack: &mut [Frame]) {
    if let Some(Frame::Array { index }) = stack.last_mut() {
        *index = Some(index.map_or(0, |i| i + 1));
    }
}

/// Appends `/token` with RFC 6901 escaping (`~` → `~0`, `/` → `~1`).
pub(crate) fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for ch in token.chars() {
        match ch {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            _ => pointer.push(ch),
        }
    }
}

/// The byte offset serde_json means by a 1-based line and a column.
pub(crate) fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        text.bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    (line_start + column).min(text.len())
}

/// Any JSON value, of which only a string or a number is kept. For property
/// bags and probes, where a surprising type must not fail the report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Loose {
    Str(String),
    Num(f64),
    Other,
}

impl Loose {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Loose::Str(text) => Some(text),
            _ => None,
        }
    }

    /// A number, or a string holding one (`"7.5"`); finite values only.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Loose::Num(n) => Some(*n),
            Loose::Str(text) => text.trim().parse().ok(),
            Loose::Other => None,
        }
        .filter(|n: &f64| n.is_finite())
    }
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<Loose, E> {
        Ok(Loose::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Loose, E> {
        Ok(Loose::Str(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Loose, E> {
        Ok(Loose::Num(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Loose, E> {
        Ok(Loose::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Loose, E> {
        Ok(Loose::Num(v as f64))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Loose, E> {
        Ok(Loose::Other)
    }
    fn visit_unit<E>(self) -> Result<Loose, E> {
        Ok(Loose::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
}

/// The message of the serde error that carries a stashed [`ReportError`] out
/// of a visitor; the caller looks in the stash first.
pub(crate) const STASHED: &str = "report rejected";

/// Deserializes an array (or `null`, as none) one element at a time, handing
/// each to `each` with its index, so a 100,000-element array is never held
/// twice. An error from `each` is put in `stash` and aborts the parse.
pub(crate) struct EachElement<'s, T, F> {
    stash: &'s mut Option<ReportError>,
    each: F,
    element: PhantomData<fn() -> T>,
}

impl<'s, T, F> EachElement<'s, T, F> {
    pub(crate) fn new(stash: &'s mut Option<ReportError>, each: F) -> Self {
        EachElement {
            stash,
            each,
            element: PhantomData,
        }
    }
}

impl<'de, T, F> DeserializeSeed<'de> for EachElement<'_, T, F>
where
    T: Deserialize<'de>,
    F: FnMut(usize, T) -> Result<(), ReportError>,
{
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, T, F> Visitor<'de> for EachElement<'_, T, F>
where
    T: Deserialize<'de>,
    F: FnMut(usize, T) -> Result<(), ReportError>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(element) = seq.next_element::<T>()? {
            if let Err(error) = (self.each)(index, element) {
                *self.stash = Some(error);
                return Err(de::Error::custom(STASHED));
            }
            index += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_guard_ignores_brackets_in_strings() {
        assert_eq!(excess_depth(br#"{"a":[["[[[[[["]]}"#, 3), None);
        assert_eq!(excess_depth(br#"{"a":[[[1]]]}"#, 3), Some(7));
        assert_eq!(excess_depth(br#""\"[[[[""#, 1), None);
        assert_eq!(
            excess_depth(&vec![b'['; 100_000], MAX_DEPTH),
            Some(MAX_DEPTH)
        );
    }

    #[test]
    fn pointers_name_members_and_elements() {
        let text = r#"{"runs": [{"a": 1}, {"results": [0, {"level": "bogus"}]}], "x~/y": true}"#;
        let at = |needle: &str| text.find(needle).unwrap() + needle.len();
        assert_eq!(pointer_at(text, at("\"bogus\"")), "/runs/1/results/1/level");
        assert_eq!(pointer_at(text, at("\"a\": 1")), "/runs/0/a");
        assert_eq!(pointer_at(text, at("true")), "/x~0~1y");
        assert_eq!(pointer_at(text, 0), "");
        // Just past a closing brace (a missing field): the object itself.
        let close = text.find('}').unwrap();
        assert_eq!(pointer_at(text, close + 1), "/runs/0");
    }

    #[test]
    fn offsets_follow_lines() {
        let text = "ab\ncd\nef";
        assert_eq!(offset_of(text, 1, 1), 1);
        assert_eq!(offset_of(text, 3, 1), 7);
        assert_eq!(offset_of(text, 9, 9), text.len());
    }
}
