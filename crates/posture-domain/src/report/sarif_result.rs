//! One SARIF result to one finding draft: which rule it belongs to, and what
//! it inherits from that rule (level, `security-severity`, CWE ids, text).

use super::error::ReportError;
use super::ids::{cwe_from_tag, is_advisory_id};
use super::json::Loose;
use super::sarif_model::{text_of, Kind, Level, RawResult, RuleInfo, RunIndex};
use crate::finding::{FindingDraft, Location, ToolFingerprint, MAX_TITLE_CHARS};
use crate::purl::percent_decode;
use crate::Severity;
use std::collections::BTreeMap;

/// Turns one result into a draft; `None` for results that are not findings.
pub(super) fn draft(
    index: &RunIndex,
    raw: RawResult,
    pointer: &str,
) -> Result<Option<FindingDraft>, ReportError> {
    // A passing check, a suppressed result, or one from a previous run
    // (`baselineState: absent`) is not an open finding.
    let suppressed = raw.suppressions.iter().flatten().any(|s| {
        s.status
            .as_deref()
            .is_none_or(|status| status == "accepted")
    });
    if matches!(raw.kind, Some(Kind::Pass | Kind::NotApplicable))
        || suppressed
        || raw.baseline_state.as_deref() == Some("absent")
    {
        return Ok(None);
    }
    let rule = resolve_rule(index, &raw, pointer)?;
    let rule_id = raw
        .rule_id
        .clone()
        .or_else(|| raw.rule.as_ref().and_then(|r| r.id.clone()))
        .or_else(|| rule.and_then(|r| r.id.clone()))
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            ReportError::invalid(
                pointer,
                "the result names no rule; set `ruleId` or `rule.id`",
            )
        })?;
    let empty = RuleInfo::default();
    let rule = rule.unwrap_or(&empty);

    // SARIF §3.27.10: without a level, a result that is not a failure is "none".
    let level = raw
        .level
        .or(match raw.kind {
            Some(kind) if kind != Kind::Fail => Some(Level::None),
            _ => None,
        })
        .or(rule.level)
        .unwrap_or(Level::Warning);
    let properties = raw.properties.as_ref();
    let security_severity = properties
        .and_then(|p| p.security_severity.as_ref())
        .and_then(Loose::as_f64)
        .or(rule.security_severity);
    let severity = security_severity.map_or(level.severity(), Severity::from_cvss);

    let mut cwe_ids = rule.cwe_ids.clone();
    cwe_ids.extend(raw.taxa.iter().flatten().filter_map(|t| index.cwe_of(t)));
    let tags = || properties.into_iter().flat_map(|p| p.tags());
    cwe_ids.extend(tags().filter_map(cwe_from_tag));
    let mut vulnerability_ids = rule.vulnerability_ids.clone();
    vulnerability_ids.extend(
        tags()
            .chain(std::iter::once(rule_id.as_str()))
            .filter(|t| is_advisory_id(t))
            .map(str::to_owned),
    );

    let location = raw.locations.into_iter().flatten().find_map(|l| {
        let physical = l.physical_location?;
        // `uriBaseId` is not resolved: the relative uri is the portable part.
        let uri = percent_decode(physical.artifact_location?.uri?.trim());
        let start_line = physical.region.and_then(|r| r.start_line);
        Some(Location {
            uri,
            start_line: start_line.and_then(|l| u32::try_from(l).ok()),
        })
    });

    let message = text_of(raw.message);
    // A long or multi-line message is the finding's own description;
    // otherwise the rule's explains it.
    let description = match &message {
        Some(m) if m.trim().contains('\n') || m.len() > MAX_TITLE_CHARS => Some(m.clone()),
        _ => rule.description.clone(),
    };
    let title = message.or_else(|| rule.title.clone()).unwrap_or_default();

    let first = |map: Option<BTreeMap<String, String>>| {
        map?.into_iter().find(|(_, value)| !value.trim().is_empty())
    };
    let tool_fingerprint = match first(raw.fingerprints) {
        Some((key, value)) => Some(ToolFingerprint::Complete { key, value }),
        None => first(raw.partial_fingerprints)
            .map(|(key, value)| ToolFingerprint::Partial { key, value }),
    };

    Ok(Some(FindingDraft {
        rule_id,
        title,
        description,
        severity,
        cwe_ids,
        vulnerability_ids,
        location,
        package: None,
        tool_fingerprint,
    }))
}

/// Finds the result's rule: by `rule.toolComponent.index` + `rule.index`
/// (an extension's rule), by `ruleIndex`/`rule.index` into the driver, else by id.
fn resolve_rule<'i>(
    index: &'i RunIndex,
    raw: &RawResult,
    pointer: &str,
) -> Result<Option<&'i RuleInfo>, ReportError> {
    let reference = raw.rule.as_ref();
    let component = reference
        .and_then(|r| r.tool_component.as_ref())
        .and_then(|c| c.index)
        .and_then(|c| usize::try_from(c).ok());
    // -1 is SARIF's "not given".
    let (position, field) = match (raw.rule_index, reference.and_then(|r| r.index)) {
        (Some(i), _) if i >= 0 => (Some(i), "ruleIndex"),
        (_, Some(i)) if i >= 0 => (Some(i), "rule/index"),
        _ => (None, ""),
    };
    let id = raw
        .rule_id
        .as_deref()
        .or_else(|| reference.and_then(|r| r.id.as_deref()));
    if let Some(position) = position {
        let by_position = usize::try_from(position)
            .ok()
            .and_then(|p| index.rule_at(component, p));
        match (by_position, id) {
            (Some(rule), _) => return Ok(Some(rule)),
            (None, None) => {
                return Err(ReportError::invalid(
                    format!("{pointer}/{field}"),
                    format!("rule index {position} is out of range for the tool's rules"),
                ))
            }
            (None, Some(_)) => {}
        }
    }
    Ok(id.and_then(|id| index.rule_by_id(id)))
}
