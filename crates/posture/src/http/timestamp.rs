//! Timestamps in responses, written without the formatting machinery.
//!
//! The text is exactly chrono's (RFC 3339 in UTC with `Z`, and 0, 3, 6 or 9
//! fractional digits, as few as show the value: `SecondsFormat::AutoSi`), so
//! switching a field to these functions changes no response. chrono writes
//! through `fmt` one character at a time; a page of 50 findings has 250
//! timestamps, which made them a visible part of its serialization. Use with
//! `#[serde(serialize_with = "timestamp::serialize")]`, or
//! `timestamp::optional` for an `Option`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Longest text: `9999-12-31T23:59:59.123456789Z`.
const MAX_LEN: usize = 30;

/// Serializes `at` as chrono does.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = [0u8; MAX_LEN];
    match write(at, &mut text) {
        // Every byte written is an ASCII digit or separator.
        Some(len) => serializer.serialize_str(std::str::from_utf8(&text[..len]).unwrap_or("")),
        None => serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

/// [`serialize`] for an optional timestamp (`null` when absent).
pub fn optional<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// Appends `at` to a JSON text as a string, exactly as [`serialize`] writes it
/// through serde_json (for writers that skip serde: `finding_json`).
pub fn write_json(at: &DateTime<Utc>, out: &mut Vec<u8>) {
    let mut text = [0u8; MAX_LEN];
    match write(at, &mut text) {
        // Digits and separators: nothing to escape.
        Some(len) => {
            out.push(b'"');
            out.extend_from_slice(&text[..len]);
            out.push(b'"');
        }
        None => {
            let text = at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &text);
        }
    }
}

/// Writes `at` into `out` and returns the length; `None` for what the fast
/// path does not cover (years outside 0–9999, leap seconds), which chrono
/// writes instead.
///
/// The date comes from the seconds since the epoch by civil-from-days
/// arithmetic, not chrono's accessors (each of which unpacks its internal
/// ordinal form again), and digits go two at a time from a table: a page of
/// findings writes about 120 timestamps, and this was 425 instructions each.
fn write(at: &DateTime<Utc>, out: &mut [u8; MAX_LEN]) -> Option<usize> {
    let nanos = at.timestamp_subsec_nanos();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let seconds = at.timestamp();
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let year = u32::try_from(year).ok().filter(|year| *year <= 9999)?;
    // Below 86,400: fits.
    let second_of_day = seconds.rem_euclid(86_400) as u32;
    let mut text = Text { out, len: 0 };
    text.pair(year / 100);
    text.pair(year % 100);
    text.byte(b'-');
    text.pair(month);
    text.byte(b'-');
    text.pair(day);
    text.byte(b'T');
    text.pair(second_of_day / 3_600);
    text.byte(b':');
    text.pair(second_of_day / 60 % 60);
    text.byte(b':');
    text.pair(second_of_day % 60);
    // As few fractional digits as show the value, in steps of three.
    if nanos != 0 {
        text.byte(b'.');
        if nanos % 1_000_000 == 0 {
            text.digits(nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            text.digits(nanos / 1_000, 6);
        } else {
            text.digits(nanos, 9);
        }
    }
    text.byte(b'Z');
    Some(text.len)
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01
/// (Howard Hinnant's `civil_from_days`: eras of 400 years, years that start
/// in March so the leap day comes last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    // Day of the era, 0–146,096.
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March, 0–11.
    let month_from_march = (5 * day_of_year + 2) / 153;
    // All three are small and non-negative.
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `00` to `99`, two bytes each.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// A cursor writing into the stack buffer.
struct Text<'a> {
    out: &'a mut [u8; MAX_LEN],
    len: usize,
}

impl Text<'_> {
    fn byte(&mut self, byte: u8) {
        self.out[self.len] = byte;
        self.len += 1;
    }

    /// `value` (below 100) as two decimal digits.
    fn pair(&mut self, value: u32) {
        let at = value as usize % 100 * 2;
        self.out[self.len..self.len + 2].copy_from_slice(&PAIRS[at..at + 2]);
        self.len += 2;
    }

    /// `value` as exactly `count` decimal digits, zero-padded.
    fn digits(&mut self, value: u32, count: usize) {
        let mut rest = value;
        for slot in self.out[self.len..self.len + count].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        self.len += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fast(at: &DateTime<Utc>) -> String {
        serde_json::to_string(&Wrapper(*at)).unwrap()
    }

    struct Wrapper(DateTime<Utc>);

    impl serde::Serialize for Wrapper {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize(&self.0, serializer)
        }
    }

    #[test]
    fn known_values_read_as_chrono_writes_them() {
        for text in [
            "2026-12-01T21:37:15Z",
            "2026-12-01T21:37:15.351Z",
            "2026-12-01T21:37:15.351118Z",
            "2026-12-01T21:37:15.000000001Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let at: DateTime<Utc> = text.parse().unwrap();
            assert_eq!(fast(&at), format!("\"{text}\""));
        }
    }

    proptest! {
        #[test]
        fn any_timestamp_is_written_as_chrono_writes_it(
            seconds in -62_135_596_800i64..253_402_300_800,
            nanos in prop_oneof![Just(0u32), (0u32..1_000).prop_map(|n| n * 1_000_000),
                                 (0u32..1_000_000).prop_map(|n| n * 1_000), 0u32..1_000_000_000],
        ) {
            let at = DateTime::<Utc>::from_timestamp(seconds, nanos).unwrap();
            prop_assert_eq!(fast(&at), serde_json::to_string(&at).unwrap());
        }
    }

    #[test]
    fn out_of_range_years_fall_back_to_chrono() {
        let at = DateTime::<Utc>::from_timestamp(-62_135_596_801, 0).unwrap();
        assert_eq!(fast(&at), serde_json::to_string(&at).unwrap());
        let mut written = Vec::new();
        write_json(&at, &mut written);
        assert_eq!(written, serde_json::to_vec(&at).unwrap());
    }

    proptest! {
        #[test]
        fn json_written_directly_is_what_serde_writes(
            seconds in -62_135_596_800i64..253_402_300_800,
            nanos in 0u32..1_000_000_000,
        ) {
            let at = DateTime::<Utc>::from_timestamp(seconds, nanos).unwrap();
            let mut written = b"[".to_vec();
            write_json(&at, &mut written);
            written.push(b']');
            prop_assert_eq!(written, serde_json::to_vec(&[at]).unwrap());
        }
    }

    #[test]
    fn optional_timestamps_are_null_or_the_same_text() {
        #[derive(serde::Serialize)]
        struct Row {
            #[serde(serialize_with = "optional")]
            at: Option<DateTime<Utc>>,
        }
        let at: DateTime<Utc> = "2026-12-01T21:37:15.351118Z".parse().unwrap();
        let some = serde_json::to_string(&Row { at: Some(at) }).unwrap();
        assert_eq!(some, r#"{"at":"2026-12-01T21:37:15.351118Z"}"#);
        assert_eq!(
            serde_json::to_string(&Row { at: None }).unwrap(),
            r#"{"at":null}"#
        );
    }
}
