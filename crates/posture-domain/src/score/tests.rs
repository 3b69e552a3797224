//! Worked examples from docs/scoring.md and the score's properties.
use super::*;
use proptest::prelude::*;
use uuid::Uuid;

fn asset(n: u128) -> AssetId {
    AssetId::from_uuid(Uuid::from_u128(n))
}

fn finding(severity: Severity, asset_criticality: Criticality, n: u128) -> OpenFinding {
    OpenFinding {
        severity,
        asset_criticality,
        asset_id: asset(n),
    }
}

fn close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

fn points(score: &Score, name: &str) -> f64 {
    score
        .factors
        .iter()
        .find(|f| f.name == name)
        .unwrap()
        .points_lost
}

#[test]
fn clean_tenant_scores_exactly_100() {
    for compliance in [
        None,
        Some(ComplianceRate::default()),
        Some(ComplianceRate {
            passed: 7,
            failed: 0,
        }),
    ] {
        let info = vec![finding(Severity::Info, Criticality::Critical, 1)];
        for findings in [vec![], info] {
            let result = score(&ScoreInput {
                findings,
                compliance,
            });
            assert_eq!((result.value, result.grade), (100, Grade::A));
            assert!(result.top_findings.is_empty());
            assert!(result.factors.iter().all(|f| f.points_lost == 0.0));
        }
    }
}

/// docs/scoring.md, example 1: one critical on a medium-criticality asset.
#[test]
fn example_one_critical() {
    let input = ScoreInput {
        findings: vec![finding(Severity::Critical, Criticality::Medium, 1)],
        compliance: None,
    };
    let result = score(&input);
    assert_eq!((result.value, result.grade), (85, Grade::B));
    close(points(&result, "critical_findings"), 14.287316110892583);
    assert_eq!(result.top_findings.len(), 1);
}

/// docs/scoring.md, example 2: one noisy asset cannot floor the score.
#[test]
fn example_noisy_asset_is_capped() {
    let findings = vec![finding(Severity::Critical, Criticality::Critical, 1); 5_000];
    let result = score(&ScoreInput {
        findings,
        compliance: None,
    });
    assert_eq!((result.value, result.grade), (68, Grade::D));
    assert_eq!(result.top_findings.len(), TOP_FINDINGS);
    // Ten saturated assets do.
    let findings: Vec<_> = (0..10)
        .flat_map(|n| vec![finding(Severity::Critical, Criticality::Critical, n); 500])
        .collect();
    assert_eq!(
        score(&ScoreInput {
            findings,
            compliance: None
        })
        .value,
        20
    );
}

/// docs/scoring.md, example 3: two assets and compliance.
#[test]
fn example_mixed() {
    let mut findings = vec![
        finding(Severity::Critical, Criticality::High, 1),
        finding(Severity::High, Criticality::High, 1),
    ];
    findings.extend([finding(Severity::Medium, Criticality::Medium, 2); 2]);
    findings.extend([finding(Severity::Low, Criticality::Medium, 2); 3]);
    findings.push(finding(Severity::Info, Criticality::Critical, 2));
    let compliance = Some(ComplianceRate {
        passed: 90,
        failed: 10,
    });
    let result = score(&ScoreInput {
        findings,
        compliance,
    });
    assert_eq!((result.value, result.grade), (65, Grade::D));
    close(points(&result, "critical_findings"), 14.0503722789944);
    close(points(&result, "high_findings"), 7.0251861394972);
    close(points(&result, "medium_findings"), 7.539021210643859);
    close(points(&result, "low_findings"), 3.7695106053219294);
    close(points(&result, "failed_controls"), 2.0);
    let total: f64 = result.factors.iter().map(|f| f.points_lost).sum();
    close(100.0 - total, 65.61590976554261);
    let order: Vec<usize> = result.top_findings.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, [0, 1, 2, 3, 4, 5, 6]); // the info finding (7) costs nothing
}

#[test]
fn grade_cut_offs() {
    let grades: Vec<_> = [100, 90, 89, 80, 79, 70, 69, 60, 59, 0]
        .map(Grade::from_score)
        .into();
    use Grade::*;
    assert_eq!(grades, [A, A, B, B, C, C, D, D, F, F]);
}

fn any_severity() -> impl Strategy<Value = Severity> {
    prop::sample::select(Severity::ALL.to_vec())
}

fn any_criticality() -> impl Strategy<Value = Criticality> {
    prop::sample::select(Criticality::ALL.to_vec())
}

/// Findings on a handful of assets, so several share one; each asset's
/// criticality is fixed, as in the database.
fn any_findings() -> impl Strategy<Value = Vec<OpenFinding>> {
    let criticalities = prop::collection::vec(any_criticality(), 6);
    let picks = prop::collection::vec((any_severity(), 0..6usize), 0..60);
    (criticalities, picks).prop_map(|(crits, picks)| {
        picks
            .into_iter()
            .map(|(s, a)| finding(s, crits[a], a as u128))
            .collect()
    })
}

fn any_compliance() -> impl Strategy<Value = Option<ComplianceRate>> {
    prop::option::of(
        (0..500u32, 0..500u32).prop_map(|(passed, failed)| ComplianceRate { passed, failed }),
    )
}

fn any_input() -> impl Strategy<Value = ScoreInput> {
    (any_findings(), any_compliance()).prop_map(|(findings, compliance)| ScoreInput {
        findings,
        compliance,
    })
}

fn value(findings: Vec<OpenFinding>, compliance: Option<ComplianceRate>) -> u8 {
    score(&ScoreInput {
        findings,
        compliance,
    })
    .value
}

proptest! {
    #[test]
    fn bounded_and_explained(input in any_input()) {
        let result = score(&input);
        prop_assert!(result.value <= 100);
        prop_assert_eq!(result.grade, Grade::from_score(result.value));
        let lost: f64 = result.factors.iter().map(|f| f.points_lost).sum();
        prop_assert!((0.0..100.0).contains(&lost));
        // The factors add up to what was lost (up to float rounding of the shares).
        let unrounded = 100.0 - lost;
        prop_assert!((-1e-9..1.0 + 1e-9).contains(&(unrounded - f64::from(result.value))));
        prop_assert!(result.top_findings.len() <= TOP_FINDINGS);
        prop_assert!(result.top_findings.windows(2).all(|w| w[0].1 >= w[1].1));
        let clean = input.findings.iter().all(|f| f.severity == Severity::Info)
            && input.compliance.is_none_or(|c| c.failed == 0);
        prop_assert_eq!(result.value == 100, clean);
    }

    #[test]
    fn deterministic_and_order_independent(input in any_input(), seed in any::<u64>()) {
        let first = score(&input);
        prop_assert_eq!(&first, &score(&input));
        // Reverse, then rotate: a different order of the same findings.
        let mut shuffled = input.clone();
        shuffled.findings.reverse();
        let len = shuffled.findings.len().max(1);
        shuffled.findings.rotate_left((seed as usize) % len);
        let second = score(&shuffled);
        prop_assert_eq!(first.value, second.value);
        prop_assert_eq!(&first.factors, &second.factors);
        let costs = |s: &Score, findings: &[OpenFinding]| {
            let mut c: Vec<_> = s.top_findings.iter().map(|(i, p)| (p.to_bits(), findings[*i].severity, findings[*i].asset_id)).collect();
            c.sort();
            c
        };
        // Equal-cost ties may pick different findings, but only among identical ones.
        if first.top_findings.len() < TOP_FINDINGS {
            prop_assert_eq!(costs(&first, &input.findings), costs(&second, &shuffled.findings));
        }
    }

    #[test]
    fn adding_a_finding_never_raises(input in any_input(), severity in any_severity(), at in 0..7usize, crit in any_criticality()) {
        let before = score(&input).value;
        let mut findings = input.findings.clone();
        // Reuse an existing asset's criticality, or add a new asset (id 6).
        let criticality = findings.iter().find(|f| f.asset_id == asset(at as u128)).map_or(crit, |f| f.asset_criticality);
        findings.push(finding(severity, criticality, at as u128));
        prop_assert!(value(findings, input.compliance) <= before);
    }

    #[test]
    fn resolving_a_finding_never_lowers(input in any_input(), pick in any::<prop::sample::Index>()) {
        prop_assume!(!input.findings.is_empty());
        let before = score(&input).value;
        let mut findings = input.findings.clone();
        findings.remove(pick.index(findings.len()));
        prop_assert!(value(findings, input.compliance) >= before);
    }

    #[test]
    fn raising_a_severity_never_raises(input in any_input(), pick in any::<prop::sample::Index>()) {
        prop_assume!(!input.findings.is_empty());
        let before = score(&input).value;
        let mut findings = input.findings.clone();
        let i = pick.index(findings.len());
        let next = Severity::ALL.iter().copied().find(|s| *s > findings[i].severity);
        prop_assume!(next.is_some());
        findings[i].severity = next.unwrap();
        prop_assert!(value(findings, input.compliance) <= before);
    }

    #[test]
    fn raising_criticality_never_raises(input in any_input(), pick in any::<prop::sample::Index>()) {
        prop_assume!(!input.findings.is_empty());
        let before = score(&input).value;
        let mut findings = input.findings.clone();
        let target = findings[pick.index(findings.len())];
        let next = Criticality::ALL.iter().copied().find(|c| *c > target.asset_criticality);
        prop_assume!(next.is_some());
        for f in findings.iter_mut().filter(|f| f.asset_id == target.asset_id) {
            f.asset_criticality = next.unwrap();
        }
        prop_assert!(value(findings, input.compliance) <= before);
    }

    #[test]
    fn more_failed_controls_never_raises(findings in any_findings(), passed in 0..500u32, failed in 0..500u32, more in 1..500u32) {
        let rate = |passed, failed| Some(ComplianceRate { passed, failed });
        let before = value(findings.clone(), rate(passed, failed));
        prop_assert!(value(findings.clone(), rate(passed, failed + more)) <= before);
        // Passing controls never lower it either.
        prop_assert!(value(findings, rate(passed + more, failed)) >= before);
    }
}
