//! Evaluating frameworks against a tenant's open findings.
//!
//! A control **fails** when an open finding maps to it; **passes** when an asset
//! of a kind it applies to has been scanned and nothing open maps to it; and is
//! **not assessed** otherwise (including controls nothing can map to: we do not
//! claim a pass we cannot observe). Compliance % = passed / (passed + failed).

use super::Framework;
use crate::asset::AssetKind;
use crate::score::ComplianceRate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// Open findings that share what the mappings look at, and how many there are.
/// The store groups findings this way, so evaluation is over distinct keys, not
/// over every finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingGroup {
    pub cwe_ids: Vec<u32>,
    pub rule_id: String,
    /// The findings are about a package (dependency findings).
    pub dependency: bool,
    pub count: u64,
}

/// A control's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlStatus {
    Passed,
    Failed,
    NotAssessed,
}

/// One control's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlResult {
    pub id: String,
    pub title: String,
    pub status: ControlStatus,
    /// Open findings that map to it.
    pub failing_findings: u64,
}

/// One framework's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkResult {
    pub id: String,
    pub name: String,
    pub version: String,
    pub custom: bool,
    pub passed: u32,
    pub failed: u32,
    pub not_assessed: u32,
    /// passed / (passed + failed) × 100, one decimal; `None` when nothing was assessed.
    pub percent: Option<f64>,
    pub controls: Vec<ControlResult>,
}

/// Every framework's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceResult {
    pub frameworks: Vec<FrameworkResult>,
    /// Open findings that map to no built-in control (unknown CWE, unknown rule).
    pub unmapped_findings: u64,
}

impl ComplianceResult {
    /// Passed and failed controls summed over the built-in frameworks: the
    /// score's compliance factor. Custom frameworks are left out so scores stay
    /// comparable between tenants. `None` when nothing was assessed.
    pub fn builtin_rate(&self) -> Option<ComplianceRate> {
        let (passed, failed) = self
            .frameworks
            .iter()
            .filter(|framework| !framework.custom)
            .fold((0, 0), |(p, f), framework| {
                (p + framework.passed, f + framework.failed)
            });
        (passed + failed > 0).then_some(ComplianceRate { passed, failed })
    }

    /// The compliance % over the built-in frameworks (see [`Self::builtin_rate`]).
    pub fn builtin_percent(&self) -> Option<f64> {
        self.builtin_rate()
            .map(|rate| percent(rate.passed, rate.failed))
    }

    /// The result for one framework.
    pub fn framework(&self, id: &str) -> Option<&FrameworkResult> {
        self.frameworks.iter().find(|framework| framework.id == id)
    }
}

fn percent(passed: u32, failed: u32) -> f64 {
    let total = f64::from(passed) + f64::from(failed);
    (f64::from(passed) * 1000.0 / total).round() / 10.0
}

/// Evaluates `frameworks` against the open findings (grouped) of a tenant whose
/// scanned assets are of `scanned_kinds`.
pub fn evaluate(
    frameworks: &[&Framework],
    groups: &[FindingGroup],
    scanned_kinds: &BTreeSet<AssetKind>,
) -> ComplianceResult {
    // Flatten the controls into slots and index them by what they match, so each
    // group is looked up once instead of tested against every control.
    let slots: Vec<(usize, usize)> = frameworks
        .iter()
        .enumerate()
        .flat_map(|(f, framework)| (0..framework.controls.len()).map(move |c| (f, c)))
        .collect();
    let mut by_cwe: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut by_pattern: Vec<(&super::RulePattern, Vec<usize>)> = Vec::new();
    let mut dependency_slots = Vec::new();
    for (slot, &(f, c)) in slots.iter().enumerate() {
        let matcher = &frameworks[f].controls[c].matcher;
        for cwe in &matcher.cwes {
            by_cwe.entry(*cwe).or_default().push(slot);
        }
        for pattern in &matcher.rules {
            match by_pattern.iter_mut().find(|(known, _)| *known == pattern) {
                Some((_, pattern_slots)) => pattern_slots.push(slot),
                None => by_pattern.push((pattern, vec![slot])),
            }
        }
        if matcher.dependencies {
            dependency_slots.push(slot);
        }
    }

    let mut failing = vec![0_u64; slots.len()];
    // `stamp[slot] == group index + 1` once the group has counted for the slot,
    // so a group matching a control by two routes counts once.
    let mut stamp = vec![0_usize; slots.len()];
    let mut unmapped_findings = 0;
    for (index, group) in groups.iter().enumerate() {
        let mark = index + 1;
        let mut builtin_hit = false;
        let mut hit = |slot: usize| {
            if stamp[slot] != mark {
                stamp[slot] = mark;
                failing[slot] += group.count;
                builtin_hit |= !frameworks[slots[slot].0].custom;
            }
        };
        for cwe in &group.cwe_ids {
            for &slot in by_cwe.get(cwe).into_iter().flatten() {
                hit(slot);
            }
        }
        for (pattern, pattern_slots) in &by_pattern {
            if pattern.matches(&group.rule_id) {
                pattern_slots.iter().for_each(|&slot| hit(slot));
            }
        }
        if group.dependency {
            dependency_slots.iter().for_each(|&slot| hit(slot));
        }
        if !builtin_hit {
            unmapped_findings += group.count;
        }
    }

    let mut next_slot = 0;
    let results = frameworks
        .iter()
        .map(|framework| {
            let mut result = FrameworkResult {
                id: framework.id.clone(),
                name: framework.name.clone(),
                version: framework.version.clone(),
                custom: framework.custom,
                passed: 0,
                failed: 0,
                not_assessed: 0,
                percent: None,
                controls: Vec::with_capacity(framework.controls.len()),
            };
            for control in &framework.controls {
                let failing_findings = failing[next_slot];
                next_slot += 1;
                let status = control.status(failing_findings, scanned_kinds);
                match status {
                    ControlStatus::Failed => result.failed += 1,
                    ControlStatus::Passed => result.passed += 1,
                    ControlStatus::NotAssessed => result.not_assessed += 1,
                }
                result.controls.push(ControlResult {
                    id: control.id.clone(),
                    title: control.title.clone(),
                    status,
                    failing_findings,
                });
            }
            if result.passed + result.failed > 0 {
                result.percent = Some(percent(result.passed, result.failed));
            }
            result
        })
        .collect();
    ComplianceResult {
        frameworks: results,
        unmapped_findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::{Control, Matcher, RulePattern};

    fn control(id: &str, cwes: &[u32], rules: &[&str], kinds: &[AssetKind]) -> Control {
        Control {
            id: id.to_owned(),
            title: id.to_owned(),
            matcher: Matcher {
                cwes: cwes.iter().copied().collect(),
                rules: rules
                    .iter()
                    .map(|r| RulePattern::parse(r).unwrap())
                    .collect(),
                dependencies: false,
            },
            asset_kinds: kinds.iter().copied().collect(),
            classes: Vec::new(),
        }
    }

    fn framework(controls: Vec<Control>) -> Framework {
        Framework {
            id: "test".into(),
            name: "Test".into(),
            version: "1".into(),
            custom: false,
            controls,
        }
    }

    fn group(cwes: &[u32], rule: &str, count: u64) -> FindingGroup {
        FindingGroup {
            cwe_ids: cwes.to_vec(),
            rule_id: rule.to_owned(),
            dependency: false,
            count,
        }
    }

    #[test]
    fn fail_pass_and_not_assessed() {
        let framework = framework(vec![
            control("sqli", &[89], &[], &[AssetKind::Repository]),
            control("xss", &[79], &[], &[AssetKind::Repository]),
            control("cloud", &[], &["CKV_AWS_*"], &[AssetKind::CloudAccount]),
            control("unmapped", &[], &[], &[]),
        ]);
        let scanned = BTreeSet::from([AssetKind::Repository]);
        let result = evaluate(
            &[&framework],
            &[group(&[89, 79], "B608", 2), group(&[1], "x", 5)],
            &scanned,
        );
        let statuses: Vec<_> = result.frameworks[0]
            .controls
            .iter()
            .map(|c| (c.id.as_str(), c.status, c.failing_findings))
            .collect();
        assert_eq!(
            statuses,
            [
                ("sqli", ControlStatus::Failed, 2),
                ("xss", ControlStatus::Failed, 2),
                ("cloud", ControlStatus::NotAssessed, 0),
                ("unmapped", ControlStatus::NotAssessed, 0),
            ]
        );
        assert_eq!(result.unmapped_findings, 5);
        assert_eq!(result.frameworks[0].percent, Some(0.0));

        // A clean rescan: what is in scope passes.
        let clean = evaluate(&[&framework], &[], &scanned);
        let fw = &clean.frameworks[0];
        assert_eq!((fw.passed, fw.failed, fw.not_assessed), (2, 0, 2));
        assert_eq!(fw.percent, Some(100.0));
        assert_eq!(
            clean.builtin_rate(),
            Some(ComplianceRate {
                passed: 2,
                failed: 0
            })
        );

        // Nothing scanned: nothing assessed, no rate.
        let none = evaluate(&[&framework], &[], &BTreeSet::new());
        assert_eq!(none.frameworks[0].not_assessed, 4);
        assert_eq!(none.builtin_rate(), None);
        assert_eq!(none.frameworks[0].percent, None);
    }

    #[test]
    fn a_finding_fails_a_control_of_another_scope() {
        // Evidence counts wherever it was found: the control fails even though
        // no asset of its kind was scanned.
        let framework = framework(vec![control(
            "cloud",
            &[],
            &["CKV_AWS_20"],
            &[AssetKind::CloudAccount],
        )]);
        let result = evaluate(
            &[&framework],
            &[group(&[], "CKV_AWS_20", 1)],
            &BTreeSet::from([AssetKind::Repository]),
        );
        assert_eq!(
            result.frameworks[0].controls[0].status,
            ControlStatus::Failed
        );
    }

    #[test]
    fn a_group_counts_once_per_control() {
        let framework = framework(vec![control("c", &[89, 79], &["B608"], &[])]);
        let result = evaluate(
            &[&framework],
            &[group(&[89, 79], "B608", 3)],
            &BTreeSet::from([AssetKind::Repository]),
        );
        assert_eq!(result.frameworks[0].controls[0].failing_findings, 3);
    }

    #[test]
    fn percent_rounds_to_one_decimal() {
        assert_eq!(percent(2, 1), 66.7);
        assert_eq!(percent(1, 0), 100.0);
    }
}
