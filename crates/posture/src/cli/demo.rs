//! `posture demo`: a demo tenant to try the API with.

use super::owner_store;
use crate::auth::{issue_api_key, revoke_api_key, KeyRequest};
use crate::config::Config;
use crate::store::api_keys;
use crate::store::operator::{self, OPERATOR_ACTOR};
use anyhow::anyhow;
use chrono::Utc;
use posture_domain::{TenantName, TenantSlug, Tier};

const DEMO_SLUG: &str = "demo";
/// Name of the admin key `posture demo` prints (the previous one is revoked).
const DEMO_KEY_NAME: &str = "demo-admin";

/// Creates the `demo` tenant (premium) if missing, with a read-only CI key as
/// sample data, then issues a fresh admin key (revoking the previous run's) and
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
            tx.commit().await?;
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
