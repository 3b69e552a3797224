//! Just enough of the package URL spec (<https://github.com/package-url/purl-spec>)
//! to read a package's name and version and to compare packages across tools.
//!
//! ```text
//! pkg:<type>/<namespace>/<name>@<version>?<qualifiers>#<subpath>
//! ```

/// The parts of a package URL that identify a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    /// Lowercased type (`pypi`, `npm`, `maven`, ...).
    pub kind: String,
    /// Percent-decoded namespace; empty when there is none.
    pub namespace: String,
    /// Percent-decoded name.
    pub name: String,
    /// Percent-decoded version.
    pub version: Option<String>,
}

impl Purl {
    /// Parses a package URL, ignoring its qualifiers and subpath. `None` when
    /// the text is not `pkg:<type>/<name>...`.
    pub fn parse(text: &str) -> Option<Purl> {
        let text = text.trim();
        let (scheme, rest) = text.split_once(':')?;
        if !scheme.eq_ignore_ascii_case("pkg") {
            return None;
        }
        // Qualifiers and subpath never identify the package (they say where it
        // came from, e.g. `?arch=x86_64`), so they are dropped.
        let rest = rest.split_once('#').map_or(rest, |(head, _)| head);
        let rest = rest.split_once('?').map_or(rest, |(head, _)| head);
        // Some tools write `pkg://type/...`; the spec says to tolerate it.
        let rest = rest.trim_start_matches('/');
        let (kind, path) = rest.split_once('/')?;
        // The version follows the last '@' only if that '@' is in the final
        // segment: an unencoded npm scope (`@angular/core`) is not a version.
        let last_slash = path.rfind('/');
        let (path, version) = match path.rfind('@') {
            Some(at) if last_slash.is_none_or(|slash| at > slash) => {
                (&path[..at], Some(percent_decode(&path[at + 1..])))
            }
            _ => (path, None),
        };
        let (namespace, name) = path.rsplit_once('/').unwrap_or(("", path));
        let name = percent_decode(name);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let namespace = namespace
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(percent_decode)
            .collect::<Vec<_>>()
            .join("/");
        Some(Purl {
            kind: kind.to_ascii_lowercase(),
            namespace,
            name,
            version: version.filter(|v| !v.is_empty()),
        })
    }

    /// The package's identity without its version, in canonical form:
    /// `pkg:<type>/<namespace>/<name>`, with the name (and namespace) folded
    /// the way the ecosystem compares them, so `pkg:pypi/Django_REST` and
    /// `pkg:pypi/django-rest` are the same package.
    pub fn identity(&self) -> String {
        let (namespace, name) = match self.kind.as_str() {
            // PEP 503: case-insensitive, runs of `-`, `_`, `.` are equal.
            "pypi" => (self.namespace.to_lowercase(), pep503(&self.name)),
            // Types the purl spec declares case-insensitive.
            "npm" | "github" | "bitbucket" | "composer" | "hex" | "pub" => {
                (self.namespace.to_lowercase(), self.name.to_lowercase())
            }
            _ => (self.namespace.clone(), self.name.clone()),
        };
        if namespace.is_empty() {
            format!("pkg:{}/{}", self.kind, name)
        } else {
            format!("pkg:{}/{}/{}", self.kind, namespace, name)
        }
    }
}

fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator = false;
    for ch in name.chars() {
        if matches!(ch, '-' | '_' | '.') {
            if !in_separator {
                out.push('-');
            }
            in_separator = true;
        } else {
            out.extend(ch.to_lowercase());
            in_separator = false;
        }
    }
    out
}

/// Decodes `%XX` escapes. Text that would not decode to UTF-8 is returned as given.
pub fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_identifying_parts() {
        let purl = Purl::parse("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1?type=jar#sub")
            .unwrap();
        assert_eq!(purl.kind, "maven");
        assert_eq!(purl.namespace, "org.apache.logging.log4j");
        assert_eq!(purl.name, "log4j-core");
        assert_eq!(purl.version.as_deref(), Some("2.14.1"));
        assert_eq!(
            purl.identity(),
            "pkg:maven/org.apache.logging.log4j/log4j-core"
        );
    }

    #[test]
    fn npm_scopes_encoded_or_not() {
        for text in [
            "pkg:npm/%40angular/core@1.0.0",
            "pkg:NPM/@Angular/core@1.0.0",
        ] {
            let purl = Purl::parse(text).unwrap();
            assert_eq!(purl.name, "core");
            assert_eq!(purl.version.as_deref(), Some("1.0.0"));
            assert_eq!(purl.identity(), "pkg:npm/@angular/core");
        }
        let unversioned = Purl::parse("pkg:npm/@angular/core").unwrap();
        assert_eq!(unversioned.version, None);
        assert_eq!(unversioned.namespace, "@angular");
    }

    #[test]
    fn pypi_names_compare_per_pep_503() {
        let a = Purl::parse("pkg:pypi/Django_REST.framework@3.0").unwrap();
        let b = Purl::parse("pkg:pypi/django-rest-framework@3.1").unwrap();
        assert_eq!(a.identity(), b.identity());
    }

    #[test]
    fn rejects_non_purls() {
        for text in [
            "",
            "django",
            "https://x/y",
            "pkg:",
            "pkg:pypi",
            "pkg:pypi/",
            "pkg:/x",
        ] {
            assert_eq!(Purl::parse(text), None, "{text}");
        }
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "%ff");
    }
}
