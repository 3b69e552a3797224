//! Recognising CWE numbers and advisory ids in the free-form strings tools
//! put in tags, taxa and rule ids.

/// Largest CWE number accepted (the catalogue is in the low thousands).
const MAX_CWE: u32 = 1_000_000;

/// A CWE number from a tag that says it is one: `external/cwe/cwe-79`
/// (CodeQL, Bandit), `CWE-79` or `CWE-79: Improper Neutralization…`
/// (Semgrep), `cwe:79`, `CWE_79`, `CWE 79`. Case does not matter.
pub(crate) fn cwe_from_tag(tag: &str) -> Option<u32> {
    let tag = tag.trim();
    let tag = strip_ignore_case(tag, "external/cwe/").unwrap_or(tag);
    let rest = strip_ignore_case(tag, "cwe")?;
    let rest = rest.strip_prefix(['-', ':', '_', ' ']).unwrap_or(rest);
    leading_number(rest)
}

/// A CWE number from a taxon id already known to be in the CWE taxonomy:
/// a bare `79` as well as the tag forms.
pub(crate) fn cwe_from_taxon_id(id: &str) -> Option<u32> {
    leading_number(id.trim()).or_else(|| cwe_from_tag(id))
}

/// Digits at the start of `text`, ended by the end or a non-alphanumeric
/// character (so `79: XSS` is 79 but `79a` is nothing).
fn leading_number(text: &str) -> Option<u32> {
    let end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    let ended_cleanly = text[end..]
        .chars()
        .next()
        .is_none_or(|c| !c.is_alphanumeric());
    let number: u32 = text[..end].parse().ok()?;
    (ended_cleanly && (1..=MAX_CWE).contains(&number)).then_some(number)
}

/// Whether `text` is a CVE (`CVE-2021-44228`) or GHSA (`GHSA-jfh8-c2jp-5v3q`) id.
pub(crate) fn is_advisory_id(text: &str) -> bool {
    if let Some(rest) = strip_ignore_case(text, "CVE-") {
        let mut parts = rest.split('-');
        let year = parts.next().unwrap_or("");
        let serial = parts.next().unwrap_or("");
        return parts.next().is_none()
            && year.len() == 4
            && serial.len() >= 4
            && year
                .bytes()
                .chain(serial.bytes())
                .all(|b| b.is_ascii_digit());
    }
    if let Some(rest) = strip_ignore_case(text, "GHSA-") {
        let parts: Vec<&str> = rest.split('-').collect();
        return parts.len() == 3
            && parts
                .iter()
                .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    false
}

fn strip_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwe_tag_forms() {
        let cases = [
            ("external/cwe/cwe-79", Some(79)),
            ("EXTERNAL/CWE/CWE-079", Some(79)),
            (
                "CWE-89: Improper Neutralization of Special Elements",
                Some(89),
            ),
            ("cwe:22", Some(22)),
            ("CWE_78", Some(78)),
            ("CWE 502", Some(502)),
            ("CWE79", Some(79)),
            ("cwe-79a", None),
            ("cwe-", None),
            ("cwe-0", None),
            ("security", None),
            ("79", None),
            ("owasp-a03", None),
            ("CWE-99999999999", None),
        ];
        for (tag, expected) in cases {
            assert_eq!(cwe_from_tag(tag), expected, "{tag}");
        }
        assert_eq!(cwe_from_taxon_id("79"), Some(79));
        assert_eq!(cwe_from_taxon_id("CWE-79"), Some(79));
        assert_eq!(cwe_from_taxon_id("x"), None);
    }

    #[test]
    fn advisory_ids() {
        for id in ["CVE-2021-44228", "cve-1999-0001", "GHSA-jfh8-c2jp-5v3q"] {
            assert!(is_advisory_id(id), "{id}");
        }
        for id in [
            "CVE-21-1",
            "CVE-2021-1",
            "CVE-2021-44228-x",
            "GHSA-abc",
            "B101",
            "",
        ] {
            assert!(!is_advisory_id(id), "{id}");
        }
    }
}
