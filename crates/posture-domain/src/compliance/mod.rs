//! Compliance: which framework controls a tenant's open findings fail.
//!
//! Findings are tied to controls through data a reviewer can read, in
//! `crates/posture-domain/compliance/` (see `docs/compliance.md` and
//! `docs/compliance-sources.md`):
//!
//! - `frameworks/*.toml`: the built-in frameworks, their control ids (facts) and
//!   our own short titles;
//! - `weaknesses.toml`: weakness classes (mostly the OWASP Top 10 2021 categories),
//!   each with its CWE ids, the asset kinds it applies to, and the controls it
//!   evidences per framework;
//! - `rules.toml`: scanner rule ids (exact or `prefix*`) that belong to a class,
//!   for tools that report no CWE.
//!
//! The data is compiled once ([`builtin`]) into [`Framework`]s whose
//! [`Control`]s each carry a [`Matcher`]: the CWE ids, rule patterns and
//! dependency flag that make a finding fail the control. Tenants' custom
//! frameworks ([`custom`]) are [`Framework`]s of the same shape, so one
//! [`evaluate`] serves both.

mod catalog;
pub mod custom;
mod evaluate;
mod rule_pattern;

pub use catalog::{builtin, Catalog, CatalogError, WeaknessClass};
pub use evaluate::{
    evaluate, ComplianceResult, ControlResult, ControlStatus, FindingGroup, FrameworkResult,
};
pub use rule_pattern::{RulePattern, RulePatternError};

use crate::asset::AssetKind;
use std::collections::BTreeSet;

/// What makes a finding fail a control: any of its CWE ids in `cwes`, its rule
/// id matching one of `rules`, or (with `dependencies`) being about a package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    pub cwes: BTreeSet<u32>,
    pub rules: Vec<RulePattern>,
    /// Findings about a package (dependency/SCA findings) match whatever their CWEs.
    pub dependencies: bool,
}

impl Matcher {
    /// Whether nothing can ever match (such a control is never assessed).
    pub fn is_empty(&self) -> bool {
        self.cwes.is_empty() && self.rules.is_empty() && !self.dependencies
    }

    /// Whether a finding with these properties fails the control.
    pub fn matches(&self, cwe_ids: &[u32], rule_id: &str, dependency: bool) -> bool {
        (self.dependencies && dependency)
            || cwe_ids.iter().any(|cwe| self.cwes.contains(cwe))
            || self.rules.iter().any(|pattern| pattern.matches(rule_id))
    }

    /// Adds everything `other` matches.
    fn absorb(&mut self, other: &Matcher) {
        self.cwes.extend(other.cwes.iter().copied());
        for pattern in &other.rules {
            if !self.rules.contains(pattern) {
                self.rules.push(pattern.clone());
            }
        }
        self.dependencies |= other.dependencies;
    }
}

/// One control (requirement) of a framework.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The framework's own id, e.g. `CC6.1`, `A.8.28`, `SI-10`, `6.2.4`, `16.1`.
    pub id: String,
    /// Our short title (built-in) or the tenant's (custom).
    pub title: String,
    /// The findings that fail it.
    pub matcher: Matcher,
    /// The asset kinds it applies to: it is assessed once an asset of one of
    /// these kinds has been scanned. Empty means any kind.
    pub asset_kinds: BTreeSet<AssetKind>,
    /// The weakness classes it was compiled from (built-in controls only).
    pub classes: Vec<String>,
}

/// A set of controls: a built-in framework or a tenant's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framework {
    /// `soc2`, `iso27001`, `nist-800-53`, `pci-dss`, `cis-v8`, or a custom framework's `cfw_…` id.
    pub id: String,
    pub name: String,
    pub version: String,
    /// Defined by the tenant rather than built in.
    pub custom: bool,
    pub controls: Vec<Control>,
}

impl Control {
    /// The control's status given how many open findings fail it and which
    /// asset kinds have been scanned.
    pub fn status(
        &self,
        failing_findings: u64,
        scanned_kinds: &BTreeSet<AssetKind>,
    ) -> ControlStatus {
        let in_scope = if self.asset_kinds.is_empty() {
            !scanned_kinds.is_empty()
        } else {
            !self.asset_kinds.is_disjoint(scanned_kinds)
        };
        if failing_findings > 0 {
            ControlStatus::Failed
        } else if in_scope && !self.matcher.is_empty() {
            ControlStatus::Passed
        } else {
            ControlStatus::NotAssessed
        }
    }
}

impl Framework {
    /// The control with this id.
    pub fn control(&self, id: &str) -> Option<&Control> {
        self.controls.iter().find(|control| control.id == id)
    }
}
