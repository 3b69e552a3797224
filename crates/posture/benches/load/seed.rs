//! The harness's data: load tenants (enterprise, so limits do not trip unless
//! a scenario wants them to) with findings, and one free tenant for the 429
//! path, each with a read key; the scan spike's tenants also get a write key.
//! Tenants of the other tiers (free, basic, premium), with findings but no
//! keys, make the tenant table mixed. Then every tenant's posture view,
//! computed by the server's own workers.

use crate::database;
use crate::settings::Settings;
use posture::auth::{issue_api_key, KeyRequest};
use posture::config::Config;
use posture::store::operator::{self, OPERATOR_ACTOR};
use posture::store::{PoolSettings, Store};
use posture_domain::{TenantId, TenantName, TenantSlug, Tier};
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What was seeded.
#[derive(Debug, Serialize)]
pub struct Seeded {
    /// Tenants with a posture view to wait for (load tenants and the free one).
    pub tenants: usize,
    /// Tenants by tier.
    pub tiers: BTreeMap<String, usize>,
    pub findings: u64,
    #[serde(skip)]
    pub load_keys: Vec<String>,
    #[serde(skip)]
    pub free_key: String,
    /// Write keys of the scan spike's tenants.
    #[serde(skip)]
    pub spike_keys: Vec<String>,
}

/// Creates the tenants and keys (through the product's own functions) and
/// the findings (one set-based statement as the superuser: row-level security
/// would otherwise need one transaction per tenant).
pub async fn seed(database: &str, settings: &Settings) -> anyhow::Result<Seeded> {
    let owner = Store::connect_lazy(
        &database::url("posture_owner", database),
        &PoolSettings::for_command(&Config::default()),
    )?;
    let mut load_keys = Vec::with_capacity(settings.tenants);
    let mut spike_keys = Vec::new();
    let mut tiers = BTreeMap::new();
    let mut plan: Vec<(Uuid, i32)> = Vec::with_capacity(settings.tenants + 1);
    // The spike's scans come from the last load tenants: the big ones come
    // first, and are spared when there are enough others.
    let first_spike_tenant = if settings.spike_scans > 0 {
        settings.tenants.saturating_sub(settings.spike_tenants)
    } else {
        usize::MAX
    };
    for number in 0..settings.tenants {
        let tenant = tenant(&owner, "load", Tier::Enterprise, number).await?;
        load_keys.push(issue_key(&owner, tenant, "load", "read").await?);
        if number >= first_spike_tenant {
            spike_keys.push(issue_key(&owner, tenant, "spike", "write").await?);
        }
        let findings = if number < settings.big_tenants {
            settings.big_findings
        } else {
            settings.findings
        };
        plan.push((tenant.as_uuid(), i32::try_from(findings)?));
    }
    *tiers.entry(Tier::Enterprise.to_string()).or_default() += settings.tenants;
    let free_tenant = tenant(&owner, "load", Tier::Free, 0).await?;
    let free_key = issue_key(&owner, free_tenant, "load", "read").await?;
    plan.push((free_tenant.as_uuid(), 50));
    *tiers.entry(Tier::Free.to_string()).or_default() += 1;
    for number in 0..settings.other_tenants {
        let tier = [Tier::Free, Tier::Basic, Tier::Premium][number % 3];
        let tenant = tenant(&owner, "other", tier, number).await?;
        plan.push((tenant.as_uuid(), i32::try_from(settings.findings)?));
        *tiers.entry(tier.to_string()).or_default() += 1;
    }
    owner.close().await;

    let mut admin = PgConnection::connect(&database::url("postgres", database)).await?;
    let tenants: Vec<Uuid> = plan.iter().map(|(id, _)| *id).collect();
    let counts: Vec<i32> = plan.iter().map(|(_, n)| *n).collect();
    sqlx::raw_sql("CREATE TEMP TABLE bench_plan (tenant_id uuid, findings integer)")
        .execute(&mut admin)
        .await?;
    sqlx::query("INSERT INTO bench_plan SELECT * FROM UNNEST($1::uuid[], $2::integer[])")
        .bind(&tenants)
        .bind(&counts)
        .execute(&mut admin)
        .await?;
    sqlx::raw_sql(
        "-- Finding ids are UUIDv7, as the product writes them (FindingId::new):
         -- time-ordered, so a tenant's newest findings sit together in the
         -- table as a scan's batch does. Random (v4) ids would scatter the
         -- newest 50 of every tenant over the whole table, a layout the
         -- product never produces.
         CREATE FUNCTION pg_temp.uuid_v7(at timestamptz) RETURNS uuid
         LANGUAGE sql VOLATILE AS $$
           SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                  PLACING substring(int8send(floor(extract(epoch FROM at) * 1000)::bigint) FROM 3)
                  FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
         $$;
         INSERT INTO assets (tenant_id, id, kind, name, criticality)
         SELECT tenant_id, gen_random_uuid(), 'repository', 'github.com/bench/app', 'high' FROM bench_plan;
         -- A mix a scanner produces: five severities, some findings mapped to
         -- compliance controls (CWE-89, CWE-79), one in ten resolved; first
         -- seen over 90 days, inserted in the order they were found.
         INSERT INTO findings (tenant_id, id, asset_id, fingerprint, tool_name, rule_id, title,
                               severity, cwe_ids, status, first_seen_at, last_seen_at, resolved_at)
         SELECT tenant_id, pg_temp.uuid_v7(found_at), asset_id, 'bench:' || md5(asset_id::text || g),
                'bench', 'rule-' || (g % 200), 'Benchmark finding ' || g,
                (ARRAY['info', 'low', 'medium', 'high', 'critical'])[1 + g % 5],
                CASE WHEN g % 7 = 0 THEN ARRAY[89] WHEN g % 11 = 0 THEN ARRAY[79] ELSE '{}' END,
                CASE WHEN g % 10 = 0 THEN 'resolved' ELSE 'open' END,
                found_at, now(), CASE WHEN g % 10 = 0 THEN now() END
         FROM (SELECT a.tenant_id, a.id AS asset_id, g,
                      now() - (g % 90) * interval '1 day' + g * interval '1 millisecond' AS found_at
               FROM bench_plan p JOIN assets a ON a.tenant_id = p.tenant_id,
                    generate_series(1, p.findings) AS g) planned
         ORDER BY tenant_id, found_at;
         ANALYZE;",
    )
    .execute(&mut admin)
    .await?;
    // Every tenant without a posture view gets a refresh job (the server's
    // workers run them); the function queues up to 1,000 a call.
    loop {
        let queued: i32 = sqlx::query_scalar("SELECT queue_due_posture_refreshes(1000)")
            .fetch_one(&mut admin)
            .await?;
        if queued == 0 {
            break;
        }
    }
    admin.close().await?;
    Ok(Seeded {
        tenants: plan.len(),
        tiers,
        findings: counts.iter().map(|n| u64::try_from(*n).unwrap_or(0)).sum(),
        load_keys,
        free_key,
        spike_keys,
    })
}

/// Creates tenant `<role>-<tier>-<number>` through the operator's function.
async fn tenant(owner: &Store, role: &str, tier: Tier, number: usize) -> anyhow::Result<TenantId> {
    let tenant = operator::create_tenant(
        owner,
        &TenantSlug::parse(&format!("{role}-{tier}-{number}"))?,
        &TenantName::parse(&format!("{role} {tier} {number}"))?,
        tier,
    )
    .await?;
    Ok(tenant.id)
}

/// Issues `tenant` a key with one scope; returns the token.
async fn issue_key(
    owner: &Store,
    tenant: TenantId,
    name: &str,
    scope: &str,
) -> anyhow::Result<String> {
    let request = KeyRequest::parse(name, &[scope.into()], None, chrono::Utc::now())
        .map_err(|errors| anyhow::anyhow!("{errors:?}"))?;
    let mut tx = owner.begin_tenant(tenant).await?;
    let (_, token) = issue_api_key(&mut tx, &request, OPERATOR_ACTOR, None).await?;
    tx.commit().await?;
    Ok(token.expose())
}

/// Waits until `tenants` posture views exist (the server's workers compute them).
pub async fn wait_for_posture(
    database: &str,
    tenants: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(&database::url("postgres", database)).await?;
    let started = Instant::now();
    loop {
        let computed: i64 = sqlx::query_scalar("SELECT count(*) FROM posture_summaries")
            .fetch_one(&mut admin)
            .await?;
        if usize::try_from(computed).unwrap_or(0) >= tenants {
            eprintln!(
                "bench: {computed} posture views computed in {:.1?}",
                started.elapsed()
            );
            break;
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "only {computed} of {tenants} posture views after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    admin.close().await?;
    Ok(())
}
