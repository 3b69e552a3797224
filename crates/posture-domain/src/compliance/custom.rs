//! Custom frameworks: a tenant's own controls, each mapped to CWE ids and rule
//! patterns. Parsed here into the same [`Framework`] shape as the built-ins.

use super::{Control, Framework, Matcher, RulePattern};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most custom frameworks one tenant may define.
pub const MAX_FRAMEWORKS_PER_TENANT: i64 = 20;
/// Most controls in one custom framework.
pub const MAX_CONTROLS: usize = 500;
/// Most CWE ids, and most rule patterns, one control maps.
pub const MAX_MAPPINGS_PER_KIND: usize = 100;
/// Longest control id.
pub const MAX_CONTROL_ID_CHARS: usize = 64;
/// Longest name or title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;

/// A control as the tenant writes it (and as it is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomControlSpec {
    /// The tenant's id for the control, unique in the framework (e.g. `SEC-01`).
    pub id: String,
    pub title: String,
    /// CWE ids whose findings fail the control.
    #[serde(default)]
    pub cwes: Vec<u32>,
    /// Rule ids (exact, or a prefix ending in `*`) whose findings fail the control.
    #[serde(default)]
    pub rules: Vec<String>,
}

/// What is wrong with a definition, and where (a JSON pointer into the request body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub pointer: String,
    pub message: String,
}

fn error(pointer: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        pointer: pointer.into(),
        message: message.into(),
    }
}

/// Checks a name, title or description: trimmed, non-empty, at most `max`
/// characters, no control characters other than newlines in descriptions.
pub fn check_text(pointer: &str, text: &str, max: usize, errors: &mut Vec<SpecError>) {
    if text.trim().is_empty() {
        errors.push(error(pointer, "must not be empty"));
    } else if text.chars().count() > max {
        errors.push(error(pointer, format!("must be at most {max} characters")));
    } else if text.chars().any(|c| c.is_control() && c != '\n') {
        errors.push(error(pointer, "must not contain control characters"));
    }
}

/// A control id appears in URLs (`/v1/compliance/{framework}/controls/{id}`),
/// so it is limited to characters that need no encoding there, and may not be
/// `.` or `..`, which HTTP clients collapse as path segments.
fn control_id_is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_CONTROL_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '(' | ')'))
        && !id.chars().all(|c| c == '.')
}

/// Parses a framework's controls, collecting every problem with its pointer
/// (`/controls/3/rules/0`).
pub fn parse_controls(specs: &[CustomControlSpec]) -> Result<Vec<Control>, Vec<SpecError>> {
    let mut errors = Vec::new();
    if specs.is_empty() {
        errors.push(error("/controls", "a framework needs at least one control"));
    }
    if specs.len() > MAX_CONTROLS {
        errors.push(error(
            "/controls",
            format!("at most {MAX_CONTROLS} controls"),
        ));
        return Err(errors);
    }
    let mut seen_ids = BTreeSet::new();
    let mut controls = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let at = |member: &str| format!("/controls/{index}/{member}");
        if !control_id_is_valid(&spec.id) {
            errors.push(error(
                at("id"),
                format!(
                    "1 to {MAX_CONTROL_ID_CHARS} characters: letters, digits and . - _ : ( ), \
                     not only dots"
                ),
            ));
        } else if !seen_ids.insert(spec.id.as_str()) {
            errors.push(error(at("id"), "another control has this id"));
        }
        check_text(&at("title"), &spec.title, MAX_TITLE_CHARS, &mut errors);
        if spec.cwes.is_empty() && spec.rules.is_empty() {
            errors.push(error(
                format!("/controls/{index}"),
                "map at least one CWE id or rule pattern, or the control can never be assessed",
            ));
        }
        if spec.cwes.len() > MAX_MAPPINGS_PER_KIND {
            errors.push(error(
                at("cwes"),
                format!("at most {MAX_MAPPINGS_PER_KIND} CWE ids"),
            ));
        }
        if spec.rules.len() > MAX_MAPPINGS_PER_KIND {
            errors.push(error(
                at("rules"),
                format!("at most {MAX_MAPPINGS_PER_KIND} rule patterns"),
            ));
        }
        for (k, cwe) in spec.cwes.iter().enumerate() {
            if *cwe == 0 {
                errors.push(error(
                    format!("/controls/{index}/cwes/{k}"),
                    "CWE ids start at 1",
                ));
            }
        }
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (k, text) in spec.rules.iter().enumerate() {
            match RulePattern::parse(text) {
                Ok(pattern) if !rules.contains(&pattern) => rules.push(pattern),
                Ok(_) => {}
                Err(reason) => errors.push(error(
                    format!("/controls/{index}/rules/{k}"),
                    reason.to_string(),
                )),
            }
        }
        controls.push(Control {
            id: spec.id.clone(),
            title: spec.title.trim().to_owned(),
            matcher: Matcher {
                cwes: spec.cwes.iter().copied().filter(|cwe| *cwe > 0).collect(),
                rules,
                dependencies: false,
            },
            // A custom control applies to any asset: it is assessed once anything was scanned.
            asset_kinds: BTreeSet::new(),
            classes: Vec::new(),
        });
    }
    if errors.is_empty() {
        Ok(controls)
    } else {
        Err(errors)
    }
}

/// A stored custom framework as a [`Framework`] (its controls were checked when saved).
pub fn framework(
    id: String,
    name: String,
    specs: &[CustomControlSpec],
    revision: i32,
) -> Framework {
    let controls = specs
        .iter()
        .map(|spec| Control {
            id: spec.id.clone(),
            title: spec.title.clone(),
            matcher: Matcher {
                cwes: spec.cwes.iter().copied().filter(|cwe| *cwe > 0).collect(),
                rules: spec
                    .rules
                    .iter()
                    .filter_map(|text| RulePattern::parse(text).ok())
                    .collect(),
                dependencies: false,
            },
            asset_kinds: BTreeSet::new(),
            classes: Vec::new(),
        })
        .collect();
    Framework {
        id,
        name,
        version: format!("revision {revision}"),
        custom: true,
        controls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, cwes: &[u32], rules: &[&str]) -> CustomControlSpec {
        CustomControlSpec {
            id: id.to_owned(),
            title: format!("Control {id}"),
            cwes: cwes.to_vec(),
            rules: rules.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn parses_valid_controls() {
        let controls = parse_controls(&[spec("SEC-1", &[89], &["B608", "CKV_*"])]).unwrap();
        assert_eq!(controls[0].matcher.cwes, BTreeSet::from([89]));
        assert!(controls[0].matcher.matches(&[], "CKV_AWS_20", false));
        assert!(controls[0].asset_kinds.is_empty());
    }

    #[test]
    fn reports_every_problem_with_its_pointer() {
        let errors = parse_controls(&[
            spec("A", &[0], &["*"]),
            spec("A", &[], &[]),
            spec("bad id", &[1], &[]),
            spec("..", &[1], &[]),
        ])
        .unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/controls/0/cwes/0",
                "/controls/0/rules/0",
                "/controls/1/id",
                "/controls/1",
                "/controls/2/id",
                "/controls/3/id",
            ]
        );
        assert_eq!(parse_controls(&[]).unwrap_err()[0].pointer, "/controls");
    }
}
