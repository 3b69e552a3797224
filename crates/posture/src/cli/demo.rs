//! `posture demo`: a demo tenant to try the API with.

use super::owner_store;
use crate::auth::{issue_api_key, revoke_api_key, KeyRequest};
use crate::config::Config;
use crate::ingest::{compress, format_name};
use crate::store::operator::{self, OPERATOR_ACTOR};
use crate::store::scans::{self, NewScan};
use crate::store::{api_keys, assets, TenantTx};
use anyhow::anyhow;
use chrono::Utc;
use posture_domain::asset::{AssetKind, AssetName};
use posture_domain::ids::ScanId;
use posture_domain::report::{parse_report, ReportFormat};
use posture_domain::{TenantName, TenantSlug, Tier};

const DEMO_SLUG: &str = "demo";
/// Name of the admin key `posture demo` prints (the previous one is revoked).
const DEMO_KEY_NAME: &str = "demo-admin";

/// Real scanner reports (see fixtures/README.md) submitted for the demo tenant,
/// so its dashboard and API have findings: (asset kind, asset name, media type, report).
const SAMPLE_SCANS: &[(AssetKind, &str, &str, &[u8])] = &[
    (
        AssetKind::Repository,
        "github.com/demo/webapp",
        "application/sarif+json",
        include_bytes!("../../../../fixtures/reports/semgrep.sarif"),
    ),
    (
        AssetKind::Repository,
        "github.com/demo/webapp",
        "application/sarif+json",
        include_bytes!("../../../../fixtures/reports/bandit.sarif"),
    ),
    (
        AssetKind::Repository,
        "github.com/demo/infrastructure",
        "application/sarif+json",
        include_bytes!("../../../../fixtures/reports/checkov.sarif"),
    ),
    (
        AssetKind::Url,
        "https://shop.demo.example",
        "application/vnd.cyclonedx+json",
        include_bytes!("../../../../fixtures/reports/retire.cdx.json"),
    ),
];

/// Stores the sample reports as full scans with their jobs, as `POST /v1/scans` does.
async fn queue_sample_scans(tx: &mut TenantTx, config: &Config) -> anyhow::Result<usize> {
    for (kind, asset_name, media_type, report) in SAMPLE_SCANS {
        let parsed = parse_report(report, ReportFormat::from_media_type(media_type), None)
            .map_err(|error| anyhow!("bundled sample report is invalid: {error}"))?;
        let asset = assets::find_or_create(tx, *kind, &AssetName::parse(asset_name)?).await?;
        scans::insert(
            tx,
            &NewScan {
                id: ScanId::new(),
                asset_id: asset.id,
                tool_name: Some(&parsed.tool_name),
                tool_version: parsed.tool_version.as_deref(),
                format: format_name(parsed.format),
                scope: "full",
                report_bytes: report.len() as i64,
                content_type: media_type,
                compressed_report: &compress(report),
                max_attempts: config.job_max_attempts,
            },
        )
        .await?;
    }
    Ok(SAMPLE_SCANS.len())
}

/// Creates the `demo` tenant (premium) if missing, with a CI key and real sample
/// scans as sample data, then issues a fresh admin key (revoking the previous run's) and
/// prints how to use it.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let store = owner_store(config).await?;
    let tenant = match operator::find_tenant(&store, DEMO_SLUG).await? {
        Some(tenant) => tenant,
        None => {
            let slug = TenantSlug::parse(DEMO_SLUG)?;
            let name = TenantName::parse("Demo Organization")?;
            let tenant = operator::create_tenant(&store, &slug, &name, Tier::Premium).await?;
            let ci_key =
                KeyRequest::parse("ci-scanner (sample)", &["write".into()], None, Utc::now())
                    .map_err(|errors| anyhow!("{errors:?}"))?;
            let mut tx = store.begin_tenant(tenant.id).await?;
            issue_api_key(&mut tx, &ci_key, OPERATOR_ACTOR, None).await?;
            let queued = queue_sample_scans(&mut tx, config).await?;
            tx.commit().await?;
            println!("queued {queued} sample scans (real scanner reports); the server's workers process them");
            tenant
        }
    };
    let request = KeyRequest::parse(DEMO_KEY_NAME, &["admin".into()], None, Utc::now())
        .map_err(|errors| anyhow!("{errors:?}"))?;
    let mut tx = store.begin_tenant(tenant.id).await?;
    // Each run prints a fresh key; the previous run's admin key is revoked so
    // demo keys do not pile up.
    for old in api_keys::list(&mut tx, None, 1_000).await? {
        if old.name == DEMO_KEY_NAME && old.revoked_at.is_none() {
            revoke_api_key(&mut tx, &old.key_id, OPERATOR_ACTOR, None).await?;
        }
    }
    let (record, token) = issue_api_key(&mut tx, &request, OPERATOR_ACTOR, None).await?;
    tx.commit().await?;
    store.close().await;

    let url = config.public_url.trim_end_matches('/');
    println!(
        "demo tenant: {} ({}), tier {}",
        tenant.slug, tenant.id, tenant.tier
    );
    println!(
        "api key ({}, admin scope; shown only once): {}",
        record.key_id,
        token.expose()
    );
    println!("url: {url}");
    println!(
        "try: curl -H 'Authorization: Bearer {}' {url}/v1/org",
        token.expose()
    );
    println!("docs: {url}/docs");
    Ok(())
}
