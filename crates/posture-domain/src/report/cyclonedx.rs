//! CycloneDX 1.4–1.6 JSON BOMs with `vulnerabilities` (<https://cyclonedx.org/docs/1.6/json/>).
//!
//! One finding per (vulnerability, affected component). A BOM is read whole:
//! its vulnerabilities refer to components by `bom-ref`, and components may
//! come before or after them. Only the identifying fields are kept, so a
//! 5,000-component SBOM costs a few hundred kilobytes.

use super::error::{ReportError, ReportErrorKind};
use super::ids::is_advisory_id;
use super::json::Loose;
use super::{no_tool_name, Sink};
use crate::finding::{FindingDraft, Package, Severity};
use crate::purl::{percent_decode, Purl};
use serde::Deserialize;
use std::collections::HashMap;

const SUPPORTED_VERSIONS: [&str; 3] = ["1.4", "1.5", "1.6"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bom {
    bom_format: Option<Loose>,
    spec_version: Option<Loose>,
    metadata: Option<Metadata>,
    components: Option<Vec<Component>>,
    vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Deserialize)]
struct Metadata {
    tools: Option<Tools>,
    component: Option<Component>,
}

/// `metadata.tools`: an array of tools in 1.4, `{components, services}` since 1.5.
#[derive(Deserialize)]
#[serde(untagged)]
enum Tools {
    Legacy(Vec<ToolEntry>),
    Modern {
        components: Option<Vec<ToolEntry>>,
        services: Option<Vec<ToolEntry>>,
    },
}

#[derive(Deserialize)]
struct ToolEntry {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(rename = "bom-ref")]
    bom_ref: Option<String>,
    group: Option<String>,
    name: Option<String>,
    version: Option<String>,
    purl: Option<String>,
    components: Option<Vec<Component>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vulnerability {
    #[serde(rename = "bom-ref")]
    bom_ref: Option<String>,
    id: Option<String>,
    references: Option<Vec<Reference>>,
    ratings: Option<Vec<Rating>>,
    cwes: Option<Vec<u32>>,
    description: Option<String>,
    detail: Option<String>,
    analysis: Option<Analysis>,
    affects: Option<Vec<Affect>>,
}

#[derive(Deserialize)]
struct Reference {
    id: Option<String>,
}

#[derive(Deserialize)]
struct Rating {
    score: Option<f64>,
    severity: Option<String>,
}

#[derive(Deserialize)]
struct Analysis {
    state: Option<String>,
}

#[derive(Deserialize)]
struct Affect {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// Parses a CycloneDX BOM into `sink`; returns the tool name and version.
pub(super) fn parse(
    text: &str,
    hint: Option<&str>,
    sink: &mut Sink,
) -> Result<(String, Option<String>), ReportError> {
    let bom: Bom = serde_json::from_str(text).map_err(|e| ReportError::from_json(e, text))?;
    match &bom.bom_format {
        Some(Loose::Str(format)) if format == "CycloneDX" => {}
        Some(_) => {
            return Err(ReportError::new(
                ReportErrorKind::WrongFormat,
                "/bomFormat",
                "not a CycloneDX BOM: `bomFormat` must be \"CycloneDX\"",
            ))
        }
        None => {
            return Err(ReportError::new(
                ReportErrorKind::WrongFormat,
                "",
                "not a CycloneDX BOM: it has no `bomFormat`",
            ))
        }
    }
    match &bom.spec_version {
        Some(Loose::Str(v)) if SUPPORTED_VERSIONS.contains(&v.as_str()) => {}
        Some(Loose::Str(v)) => {
            return Err(ReportError::new(
                ReportErrorKind::UnsupportedVersion,
                "/specVersion",
                format!("CycloneDX {v:?} is not supported; expected 1.4, 1.5 or 1.6"),
            ))
        }
        _ => {
            return Err(ReportError::invalid(
                "/specVersion",
                "`specVersion` must be a string such as \"1.6\"",
            ))
        }
    }
    let (tool_name, tool_version) = tool_of(bom.metadata.as_ref(), hint)?;

    let subject = bom.metadata.as_ref().and_then(|m| m.component.as_ref());
    let by_ref = index_components(subject.into_iter().chain(bom.components.iter().flatten()));
    for (v, vulnerability) in bom.vulnerabilities.into_iter().flatten().enumerate() {
        let pointer = format!("/vulnerabilities/{v}");
        // VEX: the producer already established this one does not apply.
        let state = vulnerability
            .analysis
            .as_ref()
            .and_then(|a| a.state.as_deref());
        if matches!(
            state,
            Some("not_affected" | "false_positive" | "resolved" | "resolved_with_pedigree")
        ) {
            continue;
        }
        let packages: Vec<Option<Package>> = match vulnerability.affects.as_deref() {
            None | Some([]) => vec![subject.map(package_of)],
            Some(affects) => affects
                .iter()
                .enumerate()
                .map(|(a, affect)| {
                    resolve(&by_ref, affect, &format!("{pointer}/affects/{a}")).map(Some)
                })
                .collect::<Result<_, _>>()?,
        };
        let template = draft(vulnerability, &pointer)?;
        for (a, package) in packages.into_iter().enumerate() {
            sink.admit(|| format!("{pointer}/affects/{a}"))?;
            let draft = FindingDraft {
                package,
                ..template.clone()
            };
            sink.push(&tool_name, draft);
        }
    }
    Ok((tool_name, tool_version))
}

/// The tool that produced the BOM: the first listed, skipping CycloneDX's own
/// libraries (which list themselves next to the scanner that used them).
fn tool_of(
    metadata: Option<&Metadata>,
    hint: Option<&str>,
) -> Result<(String, Option<String>), ReportError> {
    let tools: Vec<&ToolEntry> = match metadata.and_then(|m| m.tools.as_ref()) {
        Some(Tools::Legacy(tools)) => tools.iter().collect(),
        Some(Tools::Modern {
            components,
            services,
        }) => components
            .iter()
            .flatten()
            .chain(services.iter().flatten())
            .collect(),
        None => Vec::new(),
    };
    let named: Vec<(&str, &ToolEntry)> = tools
        .into_iter()
        .filter_map(|t| Some((t.name.as_deref()?.trim(), t)))
        .filter(|(name, _)| !name.is_empty())
        .collect();
    let chosen = named
        .iter()
        .find(|(name, _)| !name.to_ascii_lowercase().starts_with("cyclonedx"))
        .or(named.first());
    match (chosen, hint) {
        (Some((name, tool)), _) => Ok((name.to_string(), tool.version.clone())),
        (None, Some(hint)) => Ok((hint.to_owned(), None)),
        (None, None) => Err(no_tool_name("/metadata/tools")),
    }
}

/// Every component by `bom-ref`, nested ones included (walked with an
/// explicit stack: nesting depth is the submitter's choice).
fn index_components<'b>(
    roots: impl Iterator<Item = &'b Component>,
) -> HashMap<&'b str, &'b Component> {
    let mut by_ref = HashMap::new();
    let mut stack: Vec<&Component> = roots.collect();
    while let Some(component) = stack.pop() {
        if let Some(bom_ref) = component.bom_ref.as_deref() {
            by_ref.entry(bom_ref).or_insert(component);
        }
        stack.extend(component.components.iter().flatten());
    }
    by_ref
}

fn package_of(component: &Component) -> Package {
    let purl = component.purl.as_deref().and_then(Purl::parse);
    let name = match (component.name.as_deref(), component.group.as_deref()) {
        (Some(name), Some(group)) if !group.trim().is_empty() => {
            format!("{}/{}", group.trim(), name.trim())
        }
        (Some(name), _) => name.to_owned(),
        (None, _) => purl.as_ref().map(purl_name).unwrap_or_default(),
    };
    Package {
        purl: component.purl.clone(),
        name,
        version: component
            .version
            .clone()
            .or_else(|| purl.and_then(|p| p.version)),
    }
}

fn purl_name(purl: &Purl) -> String {
    if purl.namespace.is_empty() {
        purl.name.clone()
    } else {
        format!("{}/{}", purl.namespace, purl.name)
    }
}

/// The package an `affects` entry points at: a component's `bom-ref` (also
/// inside a BOM-Link, `urn:cdx:…#ref`), else a purl standing for itself.
fn resolve(
    by_ref: &HashMap<&str, &Component>,
    affect: &Affect,
    pointer: &str,
) -> Result<Package, ReportError> {
    let reference = affect
        .reference
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ReportError::invalid(format!("{pointer}/ref"), "`ref` is required"))?;
    let local = match reference
        .strip_prefix("urn:cdx:")
        .and_then(|link| link.split_once('#'))
    {
        Some((_, fragment)) => percent_decode(fragment),
        None => reference.to_owned(),
    };
    if let Some(component) = by_ref.get(local.as_str()) {
        return Ok(package_of(component));
    }
    match Purl::parse(reference) {
        Some(purl) => Ok(Package {
            purl: Some(reference.to_owned()),
            name: purl_name(&purl),
            version: purl.version,
        }),
        None => Err(ReportError::invalid(
            format!("{pointer}/ref"),
            format!("{reference:?} matches no component's bom-ref and is not a package URL"),
        )),
    }
}

/// Everything of a finding but its package.
fn draft(vulnerability: Vulnerability, pointer: &str) -> Result<FindingDraft, ReportError> {
    let mut severity: Option<Severity> = None;
    for (r, rating) in vulnerability.ratings.iter().flatten().enumerate() {
        let named = match rating.severity.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("critical") => Some(Severity::Critical),
            Some("high") => Some(Severity::High),
            Some("medium") => Some(Severity::Medium),
            Some("low") => Some(Severity::Low),
            Some("info" | "none") => Some(Severity::Info),
            Some("unknown") | None => None,
            Some(other) => {
                return Err(ReportError::invalid(
                    format!("{pointer}/ratings/{r}/severity"),
                    format!("unknown severity {other:?}; expected critical, high, medium, low, info, none or unknown"),
                ))
            }
        };
        let rated = named.or(rating.score.map(Severity::from_cvss));
        severity = severity.max(rated);
    }
    let rule_id = vulnerability
        .id
        .clone()
        .or(vulnerability.bom_ref)
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            ReportError::invalid(format!("{pointer}/id"), "the vulnerability has no `id`")
        })?;
    let mut vulnerability_ids: Vec<String> = vulnerability.id.into_iter().collect();
    let references = vulnerability
        .references
        .into_iter()
        .flatten()
        .filter_map(|r| r.id);
    vulnerability_ids.extend(references.filter(|id| is_advisory_id(id.trim())));
    let description = vulnerability.description.or(vulnerability.detail);
    Ok(FindingDraft {
        title: description.clone().unwrap_or_else(|| rule_id.clone()),
        rule_id,
        description,
        severity: severity.unwrap_or(Severity::UNRATED),
        cwe_ids: vulnerability.cwes.unwrap_or_default(),
        vulnerability_ids,
        ..FindingDraft::default()
    })
}
