//! `posture admin`: operator commands on tenants and API keys.

use super::owner_store;
use crate::auth::{issue_api_key, revoke_api_key, KeyRequest};
use crate::cache::redis::Redis;
use crate::cache::views::{bump_generation, Generation};
use crate::config::Config;
use crate::store::operator::{self, OPERATOR_ACTOR};
use crate::store::tenants::TenantRecord;
use crate::store::{api_keys, Store};
use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use clap::Subcommand;
use posture_domain::{ApiKeyId, TenantId, TenantName, TenantSlug, TenantStatus, Tier};

/// Operator commands.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage a tenant's API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Force every running server's Redis circuit breaker open (maintenance:
    /// Redis is not called at all) or closed, or hand it back to automatic.
    RedisBreaker {
        #[arg(value_enum)]
        mode: BreakerMode,
    },
}

/// What to do with the Redis circuit breakers.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BreakerMode {
    /// Held open: every request skips Redis.
    Open,
    /// Held closed: Redis is called whatever its failure rate.
    Closed,
    /// Automatic again (closed, with a fresh window).
    Auto,
}

/// Tenant commands. TENANT is a tenant's slug or id.
#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// URL-safe handle: 3–63 of a-z, 0-9, '-'.
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// free, basic, premium or enterprise.
        #[arg(long, default_value = "free")]
        tier: String,
    },
    /// List every tenant.
    List,
    /// Change a tenant's tier (takes effect on every running server's next request).
    SetTier { tenant: String, tier: String },
    /// Suspend a tenant: its keys are refused with 403.
    Suspend { tenant: String },
    /// Re-activate a suspended tenant.
    Activate { tenant: String },
    /// Delete a tenant and every row it owns. Irreversible.
    Delete {
        tenant: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// API key commands.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// Create a key and print it (shown only this once).
    Create {
        tenant: String,
        /// What the key is for.
        #[arg(long, default_value = "admin-cli")]
        name: String,
        /// Comma-separated scopes: read, write, admin.
        #[arg(long, default_value = "read,write,admin", value_delimiter = ',')]
        scopes: Vec<String>,
        /// Expire the key after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List a tenant's keys.
    List { tenant: String },
    /// Revoke a key (by its id, `key_…`).
    Revoke { tenant: String, key_id: String },
}

/// Runs an admin command.
pub async fn run(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let store = owner_store(config).await?;
    let mut changed_account = None;
    let outcome = match command {
        AdminCommand::Tenant { command } => run_tenant(&store, command).await.map(|changed| {
            changed_account = changed;
        }),
        AdminCommand::Key { command } => run_key(&store, command).await.map(|changed| {
            changed_account = changed;
        }),
        AdminCommand::RedisBreaker { mode } => {
            let message = match mode {
                BreakerMode::Open => crate::cache::control::FORCE_OPEN,
                BreakerMode::Closed => crate::cache::control::FORCE_CLOSED,
                BreakerMode::Auto => crate::cache::control::RELEASE,
            };
            crate::cache::control::broadcast(&store, message)
                .await
                .map(|()| println!("sent {message:?} to every running server"))
                .map_err(anyhow::Error::from)
        }
    };
    store.close().await;
    if let Some(tenant) = changed_account {
        bump_account_generation(config, tenant).await;
    }
    outcome
}

/// Runs a tenant command; returns the tenant whose account it changed.
async fn run_tenant(store: &Store, command: TenantCommand) -> anyhow::Result<Option<TenantId>> {
    let changed = match command {
        TenantCommand::Create { slug, name, tier } => {
            let slug = TenantSlug::parse(&slug)?;
            let name = TenantName::parse(&name)?;
            let tier: Tier = tier.parse()?;
            let tenant = operator::create_tenant(store, &slug, &name, tier).await?;
            println!(
                "created tenant {} ({}), tier {}",
                tenant.slug, tenant.id, tenant.tier
            );
            None
        }
        TenantCommand::List => {
            let tenants = operator::list_tenants(store).await?;
            println!(
                "{:<36}  {:<24}  {:<10}  {:<9}  name",
                "id", "slug", "tier", "status"
            );
            for tenant in &tenants {
                println!(
                    "{:<36}  {:<24}  {:<10}  {:<9}  {}",
                    tenant.id,
                    tenant.slug,
                    tenant.tier,
                    tenant.status.as_str(),
                    tenant.name
                );
            }
            println!("{} tenant(s)", tenants.len());
            None
        }
        TenantCommand::SetTier { tenant, tier } => {
            let tier: Tier = tier.parse()?;
            let tenant = find(store, &tenant).await?;
            let updated = operator::set_tier(store, tenant.id, tier).await?;
            println!(
                "tenant {}: tier {} -> {}",
                updated.slug, tenant.tier, updated.tier
            );
            Some(tenant.id)
        }
        TenantCommand::Suspend { tenant } => {
            Some(set_status(store, &tenant, TenantStatus::Suspended).await?)
        }
        TenantCommand::Activate { tenant } => {
            Some(set_status(store, &tenant, TenantStatus::Active).await?)
        }
        TenantCommand::Delete { tenant, yes } => {
            let tenant = find(store, &tenant).await?;
            if !yes {
                bail!(
                    "deleting {} removes all of its data; repeat with --yes to confirm",
                    tenant.slug
                );
            }
            operator::delete_tenant(store, tenant.id).await?;
            println!(
                "deleted tenant {} ({}) and all of its data",
                tenant.slug, tenant.id
            );
            Some(tenant.id)
        }
    };
    Ok(changed)
}

async fn set_status(store: &Store, tenant: &str, status: TenantStatus) -> anyhow::Result<TenantId> {
    let tenant = find(store, tenant).await?;
    let updated = operator::set_status(store, tenant.id, status).await?;
    println!("tenant {}: {}", updated.slug, updated.status.as_str());
    Ok(tenant.id)
}

/// Runs a key command; returns the tenant whose account it changed.
async fn run_key(store: &Store, command: KeyCommand) -> anyhow::Result<Option<TenantId>> {
    let changed = match command {
        KeyCommand::Create {
            tenant,
            name,
            scopes,
            expires_in_days,
        } => {
            let tenant = find(store, &tenant).await?;
            let expires_at =
                expires_in_days.map(|days| Utc::now() + chrono::Duration::days(i64::from(days)));
            let request =
                KeyRequest::parse(&name, &scopes, expires_at, Utc::now()).map_err(|errors| {
                    let described: Vec<_> = errors
                        .iter()
                        .map(|(field, detail)| format!("{field}: {detail}"))
                        .collect();
                    anyhow!("invalid key request: {}", described.join("; "))
                })?;
            let mut tx = store.begin_tenant(tenant.id).await?;
            let (record, token) = issue_api_key(&mut tx, &request, OPERATOR_ACTOR, None).await?;
            tx.commit().await?;
            println!(
                "created {} ({}) for tenant {}, scopes {}",
                record.key_id,
                record.name,
                tenant.slug,
                record.scopes.names().join(",")
            );
            println!("key (shown only once): {}", token.expose());
            None
        }
        KeyCommand::List { tenant } => {
            let tenant = find(store, &tenant).await?;
            let mut tx = store.begin_tenant(tenant.id).await?;
            // The CLI lists everything; the API pages through at most 100 at a time.
            let keys = api_keys::list(&mut tx, None, u32::MAX / 2).await?;
            tx.commit().await?;
            println!(
                "{:<16}  {:<20}  {:<16}  {:<8}  last used",
                "id", "name", "scopes", "status"
            );
            for key in &keys {
                let status = key.status(Utc::now());
                let last_used = key
                    .last_used_at
                    .map_or("never".to_owned(), |at| at.to_rfc3339());
                println!(
                    "{:<16}  {:<20}  {:<16}  {:<8}  {last_used}",
                    key.key_id.to_string(),
                    key.name,
                    key.scopes.names().join(","),
                    status
                );
            }
            println!("{} key(s)", keys.len());
            None
        }
        KeyCommand::Revoke { tenant, key_id } => {
            let tenant = find(store, &tenant).await?;
            let key_id = ApiKeyId::parse(&key_id)
                .context("key ids look like key_ followed by 12 characters")?;
            let mut tx = store.begin_tenant(tenant.id).await?;
            let revoked = revoke_api_key(&mut tx, &key_id, OPERATOR_ACTOR, None).await?;
            tx.commit().await?;
            match revoked {
                Some(record) => println!(
                    "revoked {} ({}); running servers refuse it from their next request",
                    record.key_id, record.name
                ),
                None => bail!("tenant {} has no key {key_id}", tenant.slug),
            }
            Some(tenant.id)
        }
    };
    Ok(changed)
}

/// Makes Redis's cached copies of the tenant's credentials and organization
/// stale. Running servers also do it when the change's notification reaches
/// them; this covers Redis entries that would outlive a moment when no server
/// is running. Best effort: without Redis there is nothing cached there.
async fn bump_account_generation(config: &Config, tenant: TenantId) {
    let bumped = match Redis::new(&config.redis_settings()) {
        Ok(redis) if redis.is_enabled() => {
            bump_generation(&redis, tenant, Generation::Account).await
        }
        _ => true,
    };
    if !bumped {
        eprintln!(
            "note: Redis did not answer; running servers drop their cached credentials on the \
             change's notification, and Redis's copies expire within cache_l2_ttl_secs"
        );
    }
}

async fn find(store: &Store, id_or_slug: &str) -> anyhow::Result<TenantRecord> {
    operator::find_tenant(store, id_or_slug)
        .await?
        .ok_or_else(|| anyhow!("no tenant with slug or id {id_or_slug:?}"))
}
