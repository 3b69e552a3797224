//! The built-in catalog: the TOML files in `crates/posture-domain/compliance/`,
//! embedded at compile time and compiled into frameworks with matchers.

use super::{Control, Framework, Matcher, RulePattern};
use crate::asset::AssetKind;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// The built-in frameworks' files, in the order the API lists them.
const FRAMEWORK_FILES: [(&str, &str); 5] = [
    (
        "soc2",
        include_str!("../../compliance/frameworks/soc2.toml"),
    ),
    (
        "iso27001",
        include_str!("../../compliance/frameworks/iso27001.toml"),
    ),
    (
        "nist-800-53",
        include_str!("../../compliance/frameworks/nist-800-53.toml"),
    ),
    (
        "pci-dss",
        include_str!("../../compliance/frameworks/pci-dss.toml"),
    ),
    (
        "cis-v8",
        include_str!("../../compliance/frameworks/cis-v8.toml"),
    ),
];
const WEAKNESSES_FILE: &str = include_str!("../../compliance/weaknesses.toml");
const RULES_FILE: &str = include_str!("../../compliance/rules.toml");

/// A weakness class: the link between findings (by CWE, rule or package) and
/// the controls they evidence failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeaknessClass {
    pub id: String,
    pub title: String,
    /// The OWASP Top 10 2021 category whose CWE list the class follows, if any.
    pub owasp: Option<String>,
    pub matcher: Matcher,
    pub asset_kinds: BTreeSet<AssetKind>,
    /// Framework id → control ids.
    pub controls: BTreeMap<String, Vec<String>>,
}

/// The compiled built-in catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub frameworks: Vec<Framework>,
    pub classes: Vec<WeaknessClass>,
}

impl Catalog {
    /// The built-in framework with this id.
    pub fn framework(&self, id: &str) -> Option<&Framework> {
        self.frameworks.iter().find(|framework| framework.id == id)
    }
}

/// Why the catalog's data is inconsistent (a test compiles it, so this never
/// reaches a running service).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{file}: {source}")]
    Toml {
        file: String,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Inconsistent(String),
}

/// The built-in catalog, compiled on first use.
///
/// # Panics
/// If the embedded data is inconsistent; `builtin_catalog_compiles` in this
/// crate's tests makes that a test failure rather than a runtime one.
pub fn builtin() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| compile().expect("the built-in compliance catalog is consistent"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrameworkFile {
    id: String,
    name: String,
    version: String,
    controls: Vec<ControlEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlEntry {
    id: String,
    title: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeaknessesFile {
    class: Vec<ClassEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassEntry {
    id: String,
    title: String,
    owasp: Option<String>,
    #[serde(default)]
    dependencies: bool,
    asset_kinds: Vec<AssetKind>,
    #[serde(default)]
    cwes: Vec<u32>,
    controls: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rule: Vec<RuleEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    pattern: String,
    class: String,
    #[allow(dead_code)] // Documentation for readers of the file.
    tool: Option<String>,
    #[allow(dead_code)]
    note: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, CatalogError> {
    toml::from_str(text).map_err(|source| CatalogError::Toml {
        file: file.to_owned(),
        source,
    })
}

fn inconsistent(message: String) -> CatalogError {
    CatalogError::Inconsistent(message)
}

/// Parses and cross-checks the embedded files and builds every control's matcher
/// as the union of its classes'.
pub fn compile() -> Result<Catalog, CatalogError> {
    let mut frameworks = Vec::with_capacity(FRAMEWORK_FILES.len());
    for (id, text) in FRAMEWORK_FILES {
        let file: FrameworkFile = parse(&format!("frameworks/{id}.toml"), text)?;
        if file.id != id {
            return Err(inconsistent(format!(
                "frameworks/{id}.toml declares id {:?}",
                file.id
            )));
        }
        let mut seen = BTreeSet::new();
        let mut controls = Vec::with_capacity(file.controls.len());
        for control in file.controls {
            if !seen.insert(control.id.clone()) {
                return Err(inconsistent(format!("{id}: control {} twice", control.id)));
            }
            controls.push(Control {
                id: control.id,
                title: control.title,
                matcher: Matcher::default(),
                asset_kinds: BTreeSet::new(),
                classes: Vec::new(),
            });
        }
        frameworks.push(Framework {
            id: file.id,
            name: file.name,
            version: file.version,
            custom: false,
            controls,
        });
    }

    let weaknesses: WeaknessesFile = parse("weaknesses.toml", WEAKNESSES_FILE)?;
    let rules: RulesFile = parse("rules.toml", RULES_FILE)?;
    let mut classes = Vec::with_capacity(weaknesses.class.len());
    let mut cwe_owner: BTreeMap<u32, String> = BTreeMap::new();
    for entry in weaknesses.class {
        if classes
            .iter()
            .any(|class: &WeaknessClass| class.id == entry.id)
        {
            return Err(inconsistent(format!("class {} twice", entry.id)));
        }
        for cwe in &entry.cwes {
            if let Some(owner) = cwe_owner.insert(*cwe, entry.id.clone()) {
                return Err(inconsistent(format!(
                    "CWE-{cwe} is in classes {owner} and {}",
                    entry.id
                )));
            }
        }
        for framework in &frameworks {
            let listed = entry.controls.get(&framework.id).map_or(0, Vec::len);
            if listed == 0 {
                return Err(inconsistent(format!(
                    "class {} maps no {} control",
                    entry.id, framework.id
                )));
            }
        }
        classes.push(WeaknessClass {
            id: entry.id,
            title: entry.title,
            owasp: entry.owasp,
            matcher: Matcher {
                cwes: entry.cwes.into_iter().collect(),
                rules: Vec::new(),
                dependencies: entry.dependencies,
            },
            asset_kinds: entry.asset_kinds.into_iter().collect(),
            controls: entry.controls,
        });
    }
    for rule in rules.rule {
        let pattern = RulePattern::parse(&rule.pattern)
            .map_err(|error| inconsistent(format!("rule {:?}: {error}", rule.pattern)))?;
        let class = classes
            .iter_mut()
            .find(|class| class.id == rule.class)
            .ok_or_else(|| {
                inconsistent(format!(
                    "rule {} names unknown class {}",
                    rule.pattern, rule.class
                ))
            })?;
        if class.matcher.rules.contains(&pattern) {
            return Err(inconsistent(format!("rule {} twice", rule.pattern)));
        }
        class.matcher.rules.push(pattern);
    }

    // Each control matches what its classes match and applies where they apply.
    for class in &classes {
        for (framework_id, control_ids) in &class.controls {
            let framework = frameworks
                .iter_mut()
                .find(|framework| &framework.id == framework_id)
                .ok_or_else(|| {
                    inconsistent(format!(
                        "class {} maps to unknown framework {framework_id}",
                        class.id
                    ))
                })?;
            for control_id in control_ids {
                let control = framework
                    .controls
                    .iter_mut()
                    .find(|control| &control.id == control_id)
                    .ok_or_else(|| {
                        inconsistent(format!(
                            "class {} maps to {framework_id} control {control_id}, which is not in the framework",
                            class.id
                        ))
                    })?;
                control.matcher.absorb(&class.matcher);
                control
                    .asset_kinds
                    .extend(class.asset_kinds.iter().copied());
                control.classes.push(class.id.clone());
            }
        }
    }
    Ok(Catalog {
        frameworks,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_compiles() {
        let catalog = compile().unwrap_or_else(|error| panic!("{error}"));
        let ids: Vec<_> = catalog.frameworks.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            ["soc2", "iso27001", "nist-800-53", "pci-dss", "cis-v8"]
        );
        for framework in &catalog.frameworks {
            assert!(
                framework.controls.iter().any(|c| !c.matcher.is_empty()),
                "{} has no mapped control",
                framework.id
            );
        }
        // Exactly one class takes dependency findings.
        assert_eq!(
            catalog
                .classes
                .iter()
                .filter(|class| class.matcher.dependencies)
                .count(),
            1
        );
    }

    #[test]
    fn soc2_and_iso_are_complete() {
        let catalog = builtin();
        assert_eq!(catalog.framework("soc2").unwrap().controls.len(), 33);
        assert_eq!(catalog.framework("iso27001").unwrap().controls.len(), 93);
    }

    /// The CWE ids and checkov checks of the committed real-scanner fixtures
    /// all reach a control (fixtures/reports/expected.json lists them).
    #[test]
    fn fixture_weaknesses_are_mapped() {
        let catalog = builtin();
        let mapped = |cwes: &[u32], rule: &str, dependency: bool| {
            catalog
                .classes
                .iter()
                .any(|class| class.matcher.matches(cwes, rule, dependency))
        };
        for cwe in [
            20, 22, 27, 74, 77, 78, 79, 89, 94, 95, 259, 295, 327, 328, 400, 471, 502, 703, 770,
            798, 1321, 1333,
        ] {
            assert!(mapped(&[cwe], "", false), "CWE-{cwe} is not mapped");
        }
        for rule in [
            "CKV2_AWS_5",
            "CKV2_AWS_6",
            "CKV2_AWS_61",
            "CKV2_AWS_62",
            "CKV_AWS_144",
            "CKV_AWS_145",
            "CKV_AWS_18",
            "CKV_AWS_20",
            "CKV_AWS_21",
            "CKV_AWS_23",
            "CKV_AWS_24",
            "CKV_AWS_382",
            "CKV_DOCKER_2",
            "CKV_DOCKER_4",
            "CKV_DOCKER_7",
            "CKV_DOCKER_8",
        ] {
            assert!(mapped(&[], rule, false), "{rule} is not mapped");
        }
        assert!(
            mapped(&[], "GHSA-xxxx", true),
            "dependency findings are not mapped"
        );
    }
}
