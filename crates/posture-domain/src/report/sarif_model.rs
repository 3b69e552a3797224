//! The slice of SARIF 2.1.0 that Posture reads, and the per-run rule index.
//!
//! Only fields we use are declared; serde skips the rest without building
//! anything, so a run's `artifacts`, `codeFlows` or rule `help` cost nothing
//! but the scan. Optional collections are `Option<Vec<_>>` because real tools
//! write `null` for "none".

use super::ids::{cwe_from_tag, cwe_from_taxon_id, is_advisory_id};
use super::json::Loose;
use crate::finding::Severity;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// `result.level` / `defaultConfiguration.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Level {
    None,
    Note,
    Warning,
    Error,
}

impl Level {
    pub(super) fn severity(self) -> Severity {
        match self {
            Level::Error => Severity::High,
            Level::Warning => Severity::Medium,
            Level::Note => Severity::Low,
            Level::None => Severity::Info,
        }
    }
}

/// `result.kind`: only `fail` (the default) and the review kinds are findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Kind {
    Pass,
    Open,
    Informational,
    NotApplicable,
    Review,
    Fail,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Tool {
    pub driver: Option<ToolComponent>,
    pub extensions: Option<Vec<ToolComponent>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ToolComponent {
    pub name: Option<String>,
    pub version: Option<String>,
    pub semantic_version: Option<String>,
    pub rules: Option<Vec<Rule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Rule {
    id: Option<String>,
    name: Option<String>,
    short_description: Option<Text>,
    full_description: Option<Text>,
    default_configuration: Option<RuleConfiguration>,
    properties: Option<Properties>,
    relationships: Option<Vec<Relationship>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Text {
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RuleConfiguration {
    level: Option<Level>,
}

#[derive(Debug, Deserialize)]
struct Relationship {
    target: Option<DescriptorRef>,
}

/// A property bag; `tags` and `security-severity` are the only members we read.
#[derive(Debug, Deserialize)]
pub(super) struct Properties {
    #[serde(rename = "security-severity")]
    pub security_severity: Option<Loose>,
    pub tags: Option<Vec<Loose>>,
}

impl Properties {
    pub(super) fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().flatten().filter_map(Loose::as_str)
    }
}

/// A `reportingDescriptorReference`: a rule or a taxon, by id and/or index.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescriptorRef {
    pub id: Option<String>,
    pub index: Option<i64>,
    pub tool_component: Option<ComponentRef>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ComponentRef {
    pub name: Option<String>,
    pub index: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Taxonomy {
    name: Option<String>,
    taxa: Option<Vec<Taxon>>,
}

#[derive(Debug, Deserialize)]
struct Taxon {
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawResult {
    pub rule_id: Option<String>,
    pub rule_index: Option<i64>,
    pub rule: Option<DescriptorRef>,
    pub kind: Option<Kind>,
    pub level: Option<Level>,
    pub message: Option<Text>,
    pub locations: Option<Vec<ResultLocation>>,
    pub fingerprints: Option<BTreeMap<String, String>>,
    pub partial_fingerprints: Option<BTreeMap<String, String>>,
    pub properties: Option<Properties>,
    pub taxa: Option<Vec<DescriptorRef>>,
    pub suppressions: Option<Vec<Suppression>>,
    pub baseline_state: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResultLocation {
    pub physical_location: Option<PhysicalLocation>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PhysicalLocation {
    pub artifact_location: Option<ArtifactLocation>,
    pub region: Option<Region>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ArtifactLocation {
    pub uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Region {
    pub start_line: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Suppression {
    pub status: Option<String>,
}

/// What a result may inherit from its rule.
#[derive(Debug, Default)]
pub(super) struct RuleInfo {
    pub id: Option<String>,
    /// `shortDescription.text`, else `name`.
    pub title: Option<String>,
    pub description: Option<String>,
    pub level: Option<Level>,
    pub security_severity: Option<f64>,
    pub cwe_ids: Vec<u32>,
    pub vulnerability_ids: Vec<String>,
}

/// A CWE taxonomy's taxa ids by index, for references that give only an index.
struct TaxonomyInfo {
    is_cwe: bool,
    ids: Vec<Option<String>>,
}

/// A run's rules and taxonomies, indexed so that resolving a result is O(1)
/// however many rules and results there are.
pub(super) struct RunIndex {
    pub tool_name: String,
    rules: Vec<RuleInfo>,
    /// Rule id → position in `rules`; the driver's rules win over extensions'.
    by_id: HashMap<String, usize>,
    /// `(start, len)` in `rules` of the driver (first) and each extension.
    components: Vec<(usize, usize)>,
    taxonomies: Vec<TaxonomyInfo>,
}

impl RunIndex {
    pub(super) fn new(tool_name: String, tool: Tool, taxonomies: Vec<Taxonomy>) -> RunIndex {
        let taxonomies: Vec<TaxonomyInfo> = taxonomies
            .into_iter()
            .map(|t| TaxonomyInfo {
                is_cwe: t
                    .name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case("cwe")),
                ids: t
                    .taxa
                    .unwrap_or_default()
                    .into_iter()
                    .map(|x| x.id)
                    .collect(),
            })
            .collect();
        let mut index = RunIndex {
            tool_name,
            rules: Vec::new(),
            by_id: HashMap::new(),
            components: Vec::new(),
            taxonomies,
        };
        let components = std::iter::once(tool.driver.unwrap_or_default())
            .chain(tool.extensions.unwrap_or_default());
        for component in components {
            let start = index.rules.len();
            for rule in component.rules.unwrap_or_default() {
                let info = index.rule_info(rule);
                if let Some(id) = &info.id {
                    index.by_id.entry(id.clone()).or_insert(index.rules.len());
                }
                index.rules.push(info);
            }
            index.components.push((start, index.rules.len() - start));
        }
        index
    }

    fn rule_info(&self, rule: Rule) -> RuleInfo {
        let properties = rule.properties;
        let mut cwe_ids: Vec<u32> = properties
            .iter()
            .flat_map(Properties::tags)
            .filter_map(cwe_from_tag)
            .collect();
        let targets = rule
            .relationships
            .into_iter()
            .flatten()
            .filter_map(|r| r.target);
        cwe_ids.extend(targets.filter_map(|target| self.cwe_of(&target)));
        let vulnerability_ids = properties
            .iter()
            .flat_map(Properties::tags)
            .chain(rule.id.as_deref())
            .filter(|tag| is_advisory_id(tag))
            .map(str::to_owned)
            .collect();
        RuleInfo {
            title: text_of(rule.short_description).or(rule.name),
            description: text_of(rule.full_description),
            level: rule.default_configuration.and_then(|c| c.level),
            security_severity: properties
                .as_ref()
                .and_then(|p| p.security_severity.as_ref())
                .and_then(Loose::as_f64),
            id: rule.id,
            cwe_ids,
            vulnerability_ids,
        }
    }

    /// The rule at `index` of the driver (`component` `None`) or of an extension.
    pub(super) fn rule_at(&self, component: Option<usize>, index: usize) -> Option<&RuleInfo> {
        let (start, len) = *self.components.get(component.unwrap_or(0))?;
        (index < len).then(|| &self.rules[start + index])
    }

    /// The rule with id `id`; a hierarchical id (`CA2000/1`) falls back to its root.
    pub(super) fn rule_by_id(&self, id: &str) -> Option<&RuleInfo> {
        let position = self.by_id.get(id).or_else(|| {
            let (root, _) = id.split_once('/')?;
            self.by_id.get(root)
        })?;
        Some(&self.rules[*position])
    }

    /// The CWE number a taxon reference names, if it names one. The taxonomy
    /// is known by `toolComponent.name` ("CWE") or by `toolComponent.index`
    /// into the run's `taxonomies`; the taxon by `id`, else by `index`.
    /// Taxonomies listed after `results` are not seen by streamed results;
    /// references by name and id (what tools write) do not need them.
    pub(super) fn cwe_of(&self, reference: &DescriptorRef) -> Option<u32> {
        let component = reference.tool_component.as_ref();
        let by_index = component
            .and_then(|c| c.index)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.taxonomies.get(i));
        let named_cwe = component
            .and_then(|c| c.name.as_deref())
            .is_some_and(|n| n.eq_ignore_ascii_case("cwe"));
        let taxonomy =
            by_index.or_else(|| named_cwe.then(|| self.taxonomies.iter().find(|t| t.is_cwe))?);
        let in_cwe = named_cwe || taxonomy.is_some_and(|t| t.is_cwe);
        let id = reference.id.as_deref().or_else(|| {
            let index = usize::try_from(reference.index?).ok()?;
            taxonomy?.ids.get(index)?.as_deref()
        })?;
        if in_cwe {
            cwe_from_taxon_id(id)
        } else {
            // An unnamed taxonomy still counts when the id says "CWE-…".
            cwe_from_tag(id)
        }
    }
}

pub(super) fn text_of(text: Option<Text>) -> Option<String> {
    text.and_then(|t| t.text).filter(|t| !t.trim().is_empty())
}
