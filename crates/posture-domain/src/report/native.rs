//! Posture's native report format, version 1 (`docs/report-formats.md`).
//!
//! Unlike SARIF and CycloneDX, which we read leniently because we do not
//! control their producers, the native format is ours and strict: unknown
//! members, unknown severities and empty identifiers are refused with a
//! pointer, so a typo is caught at submission instead of becoming a silent
//! default.

use super::error::{ReportError, ReportErrorKind};
use super::json::{push_token, EachElement, Loose, STASHED};
use super::{no_tool_name, Sink};
use crate::finding::{FindingDraft, Location, Package, Severity, ToolFingerprint};
use crate::purl::Purl;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// The value of the `format` member.
pub const FORMAT_MARKER: &str = "posture-native";
const VERSION: &str = "1";
/// Longest tool fingerprint accepted, in bytes.
const MAX_FINGERPRINT_BYTES: usize = 512;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeTool {
    name: String,
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeFinding {
    rule_id: String,
    title: String,
    severity: Severity,
    description: Option<String>,
    cwe: Option<Vec<u32>>,
    vulnerability_ids: Option<Vec<String>>,
    location: Option<NativeLocation>,
    package: Option<NativePackage>,
    fingerprint: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeLocation {
    path: String,
    line: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativePackage {
    purl: Option<String>,
    name: Option<String>,
    version: Option<String>,
}

#[derive(Default)]
struct State {
    stash: Option<ReportError>,
    format: bool,
    version: Option<Loose>,
    tool: Option<(String, Option<String>)>,
    unknown_member: Option<String>,
    buffered: Vec<(usize, NativeFinding)>,
}

/// Parses a native report into `sink`; returns the tool name and version.
pub(super) fn parse(
    text: &str,
    hint: Option<&str>,
    sink: &mut Sink,
) -> Result<(String, Option<String>), ReportError> {
    let mut state = State::default();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let outcome = (&mut deserializer)
        .deserialize_map(ReportVisitor {
            state: &mut state,
            sink,
        })
        .and_then(|()| deserializer.end());
    let failure = match (state.stash.take(), outcome) {
        (Some(error), _) => Some(error),
        (None, Err(error)) => Some(ReportError::from_json(error, text)),
        (None, Ok(())) => None,
    };
    // A later version may fail on fields it defines differently; the version
    // is then the real problem. Checked only once the format is confirmed.
    let version_error = match &state.version {
        Some(Loose::Str(v)) if v == VERSION => None,
        Some(other) => Some(ReportError::new(
            ReportErrorKind::UnsupportedVersion,
            "/version",
            format!(
                "native report version {} is not supported; expected \"{VERSION}\"",
                describe(other)
            ),
        )),
        None => Some(ReportError::invalid(
            "/version",
            format!("`version` is required (\"{VERSION}\")"),
        )),
    };
    if let Some(error) = failure {
        return Err(match version_error {
            Some(version_error) if state.format && error.kind == ReportErrorKind::Invalid => {
                version_error
            }
            _ => error,
        });
    }
    if !state.format {
        return Err(ReportError::new(
            ReportErrorKind::WrongFormat,
            "",
            format!("not a native report: expected `format`: \"{FORMAT_MARKER}\""),
        ));
    }
    if let Some(error) = version_error {
        return Err(error);
    }
    if let Some(member) = state.unknown_member {
        let mut pointer = String::new();
        push_token(&mut pointer, &member);
        return Err(ReportError::invalid(
            pointer,
            format!("unknown member {member:?}"),
        ));
    }
    let tool = match state.tool {
        Some(tool) => tool,
        None => (
            hint.ok_or_else(|| no_tool_name("/tool/name"))?.to_owned(),
            None,
        ),
    };
    for (i, finding) in state.buffered {
        sink.push(&tool.0, convert(finding, i)?);
    }
    Ok(tool)
}

/// A top-level member of the report.
enum Member {
    Format,
    Version,
    Tool,
    Findings,
    Other,
}

struct ReportVisitor<'a> {
    state: &'a mut State,
    sink: &'a mut Sink,
}

impl<'de> Visitor<'de> for ReportVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a native report object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ReportVisitor { state, sink } = self;
        let reject = |stash: &mut Option<ReportError>, error: ReportError| {
            *stash = Some(error);
            de::Error::custom(STASHED)
        };
        let mut key = String::new();
        while let Some(member) = map.next_key_seed(KeyCapture(&mut key))? {
            match member {
                Member::Format => {
                    if map.next_value::<Loose>()?.as_str() != Some(FORMAT_MARKER) {
                        let message =
                            format!("not a native report: `format` must be \"{FORMAT_MARKER}\"");
                        return Err(reject(
                            &mut state.stash,
                            ReportError::new(ReportErrorKind::WrongFormat, "/format", message),
                        ));
                    }
                    state.format = true;
                }
                Member::Version => state.version = Some(map.next_value::<Loose>()?),
                Member::Tool => {
                    let tool: NativeTool = map.next_value()?;
                    let name = tool.name.trim().to_owned();
                    if name.is_empty() {
                        return Err(reject(
                            &mut state.stash,
                            ReportError::invalid("/tool/name", "the tool name is empty"),
                        ));
                    }
                    state.tool = Some((name, tool.version));
                }
                Member::Findings => {
                    let State {
                        stash,
                        tool,
                        buffered,
                        ..
                    } = &mut *state;
                    let tool = tool.as_ref().map(|(name, _)| name.as_str());
                    // Stream when the tool is already known; else wait for it.
                    map.next_value_seed(EachElement::new(stash, |i, finding: NativeFinding| {
                        sink.admit(|| format!("/findings/{i}"))?;
                        match tool {
                            Some(tool) => sink.push(tool, convert(finding, i)?),
                            None => buffered.push((i, finding)),
                        }
                        Ok(())
                    }))?;
                }
                Member::Other => {
                    state.unknown_member.get_or_insert_with(|| key.clone());
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

fn describe(value: &Loose) -> String {
    match value {
        Loose::Str(text) => format!("{text:?}"),
        Loose::Num(n) => n.to_string(),
        Loose::Other => "of the wrong type".to_owned(),
    }
}

/// Deserializes a member name as [`Member`] while keeping its text, so an
/// unknown member can be named in the error.
struct KeyCapture<'k>(&'k mut String);

impl<'de> de::DeserializeSeed<'de> for KeyCapture<'_> {
    type Value = Member;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Member, D::Error> {
        let key = std::borrow::Cow::<str>::deserialize(deserializer)?;
        self.0.clear();
        self.0.push_str(&key);
        Ok(match key.as_ref() {
            "format" => Member::Format,
            "version" => Member::Version,
            "tool" => Member::Tool,
            "findings" => Member::Findings,
            _ => Member::Other,
        })
    }
}

/// Validates one finding.
fn convert(finding: NativeFinding, i: usize) -> Result<FindingDraft, ReportError> {
    let at = |field: &str| format!("/findings/{i}/{field}");
    let required = |value: &str, field: &str| {
        if value.trim().is_empty() {
            Err(ReportError::invalid(
                at(field),
                format!("`{field}` must not be empty"),
            ))
        } else {
            Ok(())
        }
    };
    required(&finding.rule_id, "rule_id")?;
    required(&finding.title, "title")?;
    let cwe_ids = finding.cwe.unwrap_or_default();
    if let Some(k) = cwe_ids.iter().position(|&id| id == 0) {
        return Err(ReportError::invalid(
            at(&format!("cwe/{k}")),
            "CWE ids start at 1",
        ));
    }
    let vulnerability_ids = finding.vulnerability_ids.unwrap_or_default();
    if let Some(k) = vulnerability_ids.iter().position(|id| id.trim().is_empty()) {
        return Err(ReportError::invalid(
            at(&format!("vulnerability_ids/{k}")),
            "empty vulnerability id",
        ));
    }
    let location = match finding.location {
        Some(location) => {
            required(&location.path, "location/path")?;
            if location.line == Some(0) {
                return Err(ReportError::invalid(
                    at("location/line"),
                    "lines are numbered from 1",
                ));
            }
            Some(Location {
                uri: location.path,
                start_line: location.line,
            })
        }
        None => None,
    };
    let package = finding
        .package
        .map(|package| package_of(package, &at))
        .transpose()?;
    let tool_fingerprint = match finding.fingerprint {
        Some(value) if value.trim().is_empty() || value.len() > MAX_FINGERPRINT_BYTES => {
            return Err(ReportError::invalid(
                at("fingerprint"),
                format!("`fingerprint` must be 1 to {MAX_FINGERPRINT_BYTES} bytes"),
            ))
        }
        Some(value) => Some(ToolFingerprint::Complete {
            key: "fingerprint".to_owned(),
            value,
        }),
        None => None,
    };
    Ok(FindingDraft {
        rule_id: finding.rule_id,
        title: finding.title,
        description: finding.description,
        severity: finding.severity,
        cwe_ids,
        vulnerability_ids,
        location,
        package,
        tool_fingerprint,
    })
}

fn package_of(package: NativePackage, at: &dyn Fn(&str) -> String) -> Result<Package, ReportError> {
    let purl = match package.purl {
        Some(text) => match Purl::parse(&text) {
            Some(purl) => Some((text, purl)),
            None => {
                return Err(ReportError::invalid(
                    at("package/purl"),
                    format!("{text:?} is not a package URL"),
                ))
            }
        },
        None => None,
    };
    let name = match (package.name.filter(|n| !n.trim().is_empty()), &purl) {
        (Some(name), _) => name,
        (None, Some((_, parsed))) => parsed.name.clone(),
        (None, None) => {
            return Err(ReportError::invalid(
                at("package"),
                "a package needs a `name` or a `purl`",
            ))
        }
    };
    let version = package
        .version
        .or_else(|| purl.as_ref().and_then(|(_, p)| p.version.clone()));
    Ok(Package {
        purl: purl.map(|(text, _)| text),
        name,
        version,
    })
}
