//! A finding written as JSON without serde's per-field work: the text is
//! byte for byte what serde_json writes for the derived `Serialize` of
//! [`FindingView`] (a property test holds the two together), so a client
//! cannot tell which wrote a page.
//!
//! serde_json escapes every field name as it writes it, a character at a
//! time, and a finding has 25 of them: under callgrind the names were half of
//! a findings page's JSON and a sixth of the server's instructions for it
//! (docs/profiling.md item 22). Here each name is a constant written with
//! its quotes and colon; the values are escaped as serde_json escapes them.

use super::findings::{FindingView, LocationView, PackageView};
use super::timestamp;
use chrono::{DateTime, Utc};

/// Appends `view` to `out` as a JSON object.
pub fn write_finding(view: &FindingView, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(&view.id.to_ascii());
    out.extend_from_slice(b"\",\"asset_id\":\"");
    out.extend_from_slice(&view.asset_id.to_ascii());
    out.extend_from_slice(b"\",\"fingerprint\":");
    string(&view.fingerprint, out);
    out.extend_from_slice(b",\"tool_name\":");
    string(&view.tool_name, out);
    out.extend_from_slice(b",\"rule_id\":");
    string(&view.rule_id, out);
    out.extend_from_slice(b",\"title\":");
    string(&view.title, out);
    out.extend_from_slice(b",\"description\":");
    optional_string(view.description.as_deref(), out);
    out.extend_from_slice(b",\"severity\":");
    string(&view.severity, out);
    out.extend_from_slice(b",\"cwe_ids\":[");
    for (index, cwe) in view.cwe_ids.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(itoa::Buffer::new().format(*cwe).as_bytes());
    }
    out.extend_from_slice(b"],\"vulnerability_ids\":[");
    for (index, vulnerability) in view.vulnerability_ids.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        string(vulnerability, out);
    }
    out.extend_from_slice(b"],\"location\":");
    match &view.location {
        Some(location) => write_location(location, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"package\":");
    match &view.package {
        Some(package) => write_package(package, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"status\":");
    string(&view.status, out);
    out.extend_from_slice(b",\"status_reason\":");
    optional_string(view.status_reason.as_deref(), out);
    out.extend_from_slice(b",\"accepted_until\":");
    optional_timestamp(view.accepted_until.as_ref(), out);
    out.extend_from_slice(b",\"first_seen_at\":");
    timestamp::write_json(&view.first_seen_at, out);
    out.extend_from_slice(b",\"last_seen_at\":");
    timestamp::write_json(&view.last_seen_at, out);
    out.extend_from_slice(b",\"resolved_at\":");
    optional_timestamp(view.resolved_at.as_ref(), out);
    out.extend_from_slice(b",\"sla_due_at\":");
    optional_timestamp(view.sla_due_at.as_ref(), out);
    out.extend_from_slice(if view.sla_breached {
        b",\"sla_breached\":true,\"last_scan_id\":"
    } else {
        b",\"sla_breached\":false,\"last_scan_id\":"
    });
    match &view.last_scan_id {
        Some(scan_id) => {
            out.push(b'"');
            out.extend_from_slice(&scan_id.to_ascii());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

fn write_location(location: &LocationView, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"uri\":");
    string(&location.uri, out);
    out.extend_from_slice(b",\"line\":");
    match location.line {
        Some(line) => out.extend_from_slice(itoa::Buffer::new().format(line).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

fn write_package(package: &PackageView, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"purl\":");
    optional_string(package.purl.as_deref(), out);
    out.extend_from_slice(b",\"name\":");
    string(&package.name, out);
    out.extend_from_slice(b",\"version\":");
    optional_string(package.version.as_deref(), out);
    out.push(b'}');
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
    use posture_domain::ids::{AssetId, FindingId, ScanId};
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
            location in proptest::option::of((text(), proptest::option::of(any::<i32>()))),
            package in proptest::option::of(
                (proptest::option::of(text()), text(), proptest::option::of(text()))
            ),
            status in (text(), proptest::option::of(text()), any::<bool>()),
            times in (
                proptest::option::of(timestamp()),
                timestamp(),
                timestamp(),
                proptest::option::of(timestamp()),
                proptest::option::of(timestamp()),
            ),
        ) -> FindingView {
            let (id, asset_id, last_scan_id) = ids;
            let (fingerprint, tool_name, rule_id, title, severity) = names;
            let (status, status_reason, sla_breached) = status;
            let (accepted_until, first_seen_at, last_seen_at, resolved_at, sla_due_at) = times;
            FindingView {
                id: FindingId::from_uuid(Uuid::from_u128(id)),
                asset_id: AssetId::from_uuid(Uuid::from_u128(asset_id)),
                fingerprint,
                tool_name,
                rule_id,
                title,
                description,
                severity,
                cwe_ids,
                vulnerability_ids,
                location: location.map(|(uri, line)| LocationView { uri, line }),
                package: package.map(|(purl, name, version)| PackageView { purl, name, version }),
                status,
                status_reason,
                accepted_until,
                first_seen_at,
                last_seen_at,
                resolved_at,
                sla_due_at,
                sla_breached,
                last_scan_id: last_scan_id.map(|id| ScanId::from_uuid(Uuid::from_u128(id))),
            }
        }
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
        fn a_finding_is_written_as_serde_writes_it(view in finding()) {
            let mut written = Vec::new();
            write_finding(&view, &mut written);
            let expected = serde_json::to_vec(&view).unwrap();
            prop_assert_eq!(String::from_utf8(written).unwrap(), String::from_utf8(expected).unwrap());
        }
    }
}
