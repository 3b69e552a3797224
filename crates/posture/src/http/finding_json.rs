//! The findings list written as JSON straight from the rows, without serde's
//! per-field work or a copy of each string: the text is byte for byte what
//! serde_json writes for a page of the derived `Serialize` of
//! [`FindingView`](super::findings::FindingView) (a property test holds the
//! two together), so a client cannot tell which wrote a page.
//!
//! serde_json escapes every field name as it writes it, a character at a
//! time, and a finding has 25 of them: under callgrind the names were half of
//! a findings page's JSON and a sixth of the server's instructions for it
//! (docs/profiling.md item 22). Here each name is a constant written with
//! its quotes and colon; the values are escaped as serde_json escapes them,
//! read from a [`FindingRow`] that borrows its text from the row.

use super::findings::{cursor_after, is_sla_breached};
use super::timestamp;
use crate::store::finding_queries::FindingRow;
use chrono::{DateTime, Utc};
use posture_domain::ids::{AssetId, FindingId, ScanId};

/// A page of the findings list from up to `limit + 1` findings, newest first:
/// the text serde_json writes for a `Page<FindingView>` of the first `limit`
/// (with the cursor of the last when there is one more). `now` decides which
/// have breached their SLA.
pub fn write_page(findings: &[FindingRow<'_>], limit: usize, now: DateTime<Utc>) -> Vec<u8> {
    let shown = &findings[..findings.len().min(limit)];
    let mut out = Vec::with_capacity(64 + shown.len() * BYTES_PER_FINDING);
    out.extend_from_slice(b"{\"data\":[");
    for (index, finding) in shown.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_finding(finding, now, &mut out);
    }
    out.push(b']');
    if findings.len() > limit {
        if let Some(last) = shown.last() {
            out.extend_from_slice(b",\"next_cursor\":");
            string(&cursor_after(last.id), &mut out);
        }
    }
    out.push(b'}');
    out
}

/// Room reserved per finding: a little more than one takes (about 560 bytes),
/// so a page is written into one buffer instead of one that doubles (and
/// copies) a dozen times on the way.
const BYTES_PER_FINDING: usize = 640;

/// Appends `finding` to `out` as a JSON object: what serde_json writes for
/// the `FindingView` of it.
pub fn write_finding(finding: &FindingRow<'_>, now: DateTime<Utc>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(&FindingId::from_uuid(finding.id).to_ascii());
    out.extend_from_slice(b"\",\"asset_id\":\"");
    out.extend_from_slice(&AssetId::from_uuid(finding.asset_id).to_ascii());
    out.extend_from_slice(b"\",\"fingerprint\":");
    string(finding.fingerprint, out);
    out.extend_from_slice(b",\"tool_name\":");
    string(finding.tool_name, out);
    out.extend_from_slice(b",\"rule_id\":");
    string(finding.rule_id, out);
    out.extend_from_slice(b",\"title\":");
    string(finding.title, out);
    out.extend_from_slice(b",\"description\":");
    optional_string(finding.description, out);
    out.extend_from_slice(b",\"severity\":");
    string(finding.severity, out);
    out.extend_from_slice(b",\"cwe_ids\":");
    array(&finding.cwe_ids, out, |cwe, out| {
        out.extend_from_slice(itoa::Buffer::new().format(*cwe).as_bytes());
    });
    out.extend_from_slice(b",\"vulnerability_ids\":");
    array(&finding.vulnerability_ids, out, |id, out| string(id, out));
    out.extend_from_slice(b",\"location\":");
    match finding.location_uri {
        Some(uri) => {
            out.extend_from_slice(b"{\"uri\":");
            string(uri, out);
            out.extend_from_slice(b",\"line\":");
            match finding.location_line {
                Some(line) => out.extend_from_slice(itoa::Buffer::new().format(line).as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"package\":");
    match finding.package_name {
        Some(name) => {
            out.extend_from_slice(b"{\"purl\":");
            optional_string(finding.package_purl, out);
            out.extend_from_slice(b",\"name\":");
            string(name, out);
            out.extend_from_slice(b",\"version\":");
            optional_string(finding.package_version, out);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"status\":");
    string(finding.status, out);
    out.extend_from_slice(b",\"status_reason\":");
    optional_string(finding.status_reason, out);
    out.extend_from_slice(b",\"accepted_until\":");
    optional_timestamp(finding.accepted_until.as_ref(), out);
    out.extend_from_slice(b",\"first_seen_at\":");
    timestamp::write_json(&finding.first_seen_at, out);
    out.extend_from_slice(b",\"last_seen_at\":");
    timestamp::write_json(&finding.last_seen_at, out);
    out.extend_from_slice(b",\"resolved_at\":");
    optional_timestamp(finding.resolved_at.as_ref(), out);
    out.extend_from_slice(b",\"sla_due_at\":");
    optional_timestamp(finding.sla_due_at.as_ref(), out);
    out.extend_from_slice(
        if is_sla_breached(finding.status, finding.sla_due_at, now) {
            b",\"sla_breached\":true,\"last_scan_id\":"
        } else {
            b",\"sla_breached\":false,\"last_scan_id\":"
        },
    );
    match finding.last_scan_id {
        Some(scan_id) => {
            out.push(b'"');
            out.extend_from_slice(&ScanId::from_uuid(scan_id).to_ascii());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// A JSON array of `items`, each written by `write`.
fn array<T>(items: &[T], out: &mut Vec<u8>, write: impl Fn(&T, &mut Vec<u8>)) {
    out.push(b'[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write(item, out);
    }
    out.push(b']');
}

/// A JSON string: copied as it is when nothing in it needs escaping (the
/// usual case), else escaped by serde_json.
fn string(text: &str, out: &mut Vec<u8>) {
    if !needs_escaping(text.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Whether `bytes` hold anything JSON escapes: a control character, `"` or
/// `\\`. Eight bytes at a time (a byte loop was most of writing a string):
/// for a word `w`, `(w - 0x01…01 * n) & !w & 0x80…80` is non-zero exactly
/// when some byte of `w` is below `n` (for `n` up to 128), and a byte equal
/// to `c` is a zero byte of `w ^ (0x01…01 * c)`.
fn needs_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |word: u64, limit: u64| word.wrapping_sub(ONES * limit) & !word & HIGH != 0;
    let mut words = bytes.chunks_exact(8);
    for chunk in words.by_ref() {
        let mut word_bytes = [0u8; 8];
        word_bytes.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word_bytes);
        if below(word, 0x20)
            || below(word ^ (ONES * u64::from(b'"')), 1)
            || below(word ^ (ONES * u64::from(b'\\')), 1)
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

fn optional_string(text: Option<&str>, out: &mut Vec<u8>) {
    match text {
        Some(text) => string(text, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn optional_timestamp(at: Option<&DateTime<Utc>>, out: &mut Vec<u8>) {
    match at {
        Some(at) => timestamp::write_json(at, out),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::findings::{finding_cursor, FindingView};
    use crate::http::pagination::Page;
    use crate::store::finding_queries::FindingRecord;
    use proptest::prelude::*;
    use uuid::Uuid;

    /// Text with what JSON must escape: quotes, backslashes, control
    /// characters, and characters beyond ASCII.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9:/._-]{0,24}",
            "\\PC{0,16}",
            proptest::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('\n'),
                    Just('\u{0}'),
                    Just('\u{1f}'),
                    Just('\u{7f}'),
                    Just('é'),
                    Just('\u{2028}'),
                    Just('a'),
                ],
                0..12
            )
            .prop_map(|chars| chars.into_iter().collect()),
        ]
    }

    fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
        (-62_135_596_800i64..253_402_300_800, 0u32..1_000_000_000)
            .prop_map(|(seconds, nanos)| DateTime::from_timestamp(seconds, nanos).unwrap())
    }

    prop_compose! {
        fn finding()(
            ids in (any::<u128>(), any::<u128>(), proptest::option::of(any::<u128>())),
            names in (text(), text(), text(), text(), text()),
            description in proptest::option::of(text()),
            cwe_ids in proptest::collection::vec(any::<i32>(), 0..4),
            vulnerability_ids in proptest::collection::vec(text(), 0..3),
            location in (proptest::option::of(text()), proptest::option::of(any::<i32>())),
            package in (
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
            ),
            status in (
                prop_oneof![Just("open".to_owned()), Just("reopened".to_owned()), text()],
                proptest::option::of(text()),
            ),
            times in (
                proptest::option::of(timestamp()),
                timestamp(),
                timestamp(),
                proptest::option::of(timestamp()),
                proptest::option::of(timestamp()),
            ),
        ) -> FindingRecord {
            let (id, asset_id, last_scan_id) = ids;
            let (fingerprint, tool_name, rule_id, title, severity) = names;
            let (status, status_reason) = status;
            let (location_uri, location_line) = location;
            let (package_purl, package_name, package_version) = package;
            let (accepted_until, first_seen_at, last_seen_at, resolved_at, sla_due_at) = times;
            FindingRecord {
                id: Uuid::from_u128(id),
                asset_id: Uuid::from_u128(asset_id),
                fingerprint,
                tool_name,
                rule_id,
                title,
                description,
                severity,
                cwe_ids,
                vulnerability_ids,
                location_uri,
                location_line,
                package_purl,
                package_name,
                package_version,
                status,
                status_reason,
                accepted_until,
                first_seen_at,
                last_seen_at,
                resolved_at,
                sla_due_at,
                last_scan_id: last_scan_id.map(Uuid::from_u128),
            }
        }
    }

    /// What the serde path writes for a page of `records`.
    fn serde_page(records: &[FindingRecord], limit: usize, now: DateTime<Utc>) -> String {
        let page = Page::from_rows(records.to_vec(), limit as u32, finding_cursor, |record| {
            FindingView::from_record(record, now)
        });
        serde_json::to_string(&page).unwrap()
    }

    proptest! {
        #[test]
        fn escaping_is_needed_exactly_for_control_characters_quotes_and_backslashes(
            // Mostly bytes at the edges: just below and above the space,
            // around the quote and the backslash, and beyond ASCII.
            bytes in proptest::collection::vec(
                prop_oneof![0x1eu8..0x24, 0x5au8..0x5f, 0x7eu8..=0xff, any::<u8>()],
                0..40
            )
        ) {
            let expected = bytes.iter().any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\');
            prop_assert_eq!(needs_escaping(&bytes), expected);
        }

        #[test]
        fn a_page_is_written_as_serde_writes_it(
            records in proptest::collection::vec(finding(), 0..5),
            limit in 1usize..5,
            now in timestamp(),
        ) {
            let rows: Vec<FindingRow<'_>> = records.iter().map(FindingRecord::as_row).collect();
            let written = String::from_utf8(write_page(&rows, limit, now)).unwrap();
            prop_assert_eq!(written, serde_page(&records, limit, now));
        }
    }
}
