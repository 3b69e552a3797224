//! The `posture` command line: `serve`, `migrate`, `admin …`, `demo`, `config`.

mod admin;
mod demo;

use crate::config::{Config, SETTINGS};
use crate::jobs::worker::spawn_workers;
use crate::startup::{cancel_on_signals, futures_join_all, Application};
use crate::store::{wait_until_reachable, PoolSettings, Store, MIGRATOR};
use crate::telemetry;
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// Posture: security posture and compliance for organizations.
#[derive(Parser)]
#[command(name = "posture", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (connects as the application role, DATABASE_URL).
    Serve,
    /// Run job workers only (no HTTP), for scaling processing out.
    Worker,
    /// Apply database migrations (as the owner, POSTURE_ADMIN_DATABASE_URL).
    Migrate,
    /// Operator commands: tenants and API keys (as the owner).
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Create (or reuse) a demo tenant and print an API key and the URL.
    Demo,
    /// Print the effective configuration (secrets redacted) and every setting.
    Config,
}

/// Runs the command line; returns the process exit code.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("posture: configuration error: {error:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config);
    let outcome = match cli.command {
        Command::Serve => serve(config).await,
        Command::Worker => worker(config).await,
        Command::Migrate => migrate(&config).await,
        Command::Admin { command } => admin::run(&config, command).await,
        Command::Demo => demo::run(&config).await,
        Command::Config => {
            print_config(&config);
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("posture: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    tracing::info!(database = %config.database_url.redacted(), listen = %config.listen_addr, "starting");
    let application = Application::build(config).await?;
    cancel_on_signals(application.shutdown_token());
    application.run_until_stopped().await
}

async fn worker(config: Config) -> anyhow::Result<()> {
    let store = Store::connect_lazy(
        config.database_url.expose(),
        &PoolSettings::from_config(&config),
    )?;
    wait_until_reachable(&store, Duration::from_secs(config.db_connect_deadline_secs)).await?;
    let count = config.workers.max(1);
    tracing::info!(count, "starting workers");
    let shutdown = tokio_util::sync::CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    // Workers bump tenants' cache generations when they store a new posture
    // summary, so the serving instances drop their cached views.
    let redis = crate::cache::redis::Redis::new(&config.redis_settings())?;
    let redis_health = redis.spawn_health_check(stop.clone());
    let views = std::sync::Arc::new(crate::cache::views::ViewCache::new(
        config.view_cache_settings(),
        redis,
    ));
    let mut workers = spawn_workers(
        store.clone(),
        config.worker_settings(count),
        Some(views),
        stop.clone(),
    );
    workers.extend(crate::webhooks::dispatcher::spawn_from_config(
        store.clone(),
        &config,
        std::sync::Arc::default(),
        stop.clone(),
    )?);
    shutdown.cancelled().await;
    stop.cancel();
    if let Some(health) = redis_health {
        let _ = health.await;
    }
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    if tokio::time::timeout(grace, futures_join_all(workers))
        .await
        .is_err()
    {
        tracing::warn!("workers did not finish their jobs within the grace period");
    }
    store.close().await;
    Ok(())
}

/// Connects a small pool as the schema owner, for one-shot commands.
pub(crate) async fn owner_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect_lazy(
        config.admin_database_url.expose(),
        &PoolSettings::for_command(config),
    )?;
    wait_until_reachable(&store, Duration::from_secs(config.db_connect_deadline_secs)).await?;
    Ok(store)
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = owner_store(config).await?;
    MIGRATOR.run(store.pool()).await?;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(store.pool())
        .await?;
    println!(
        "migrations: {applied} applied, database {}",
        config.admin_database_url.redacted()
    );
    store.close().await;
    Ok(())
}

fn print_config(config: &Config) {
    println!("# effective configuration (secrets redacted)\n{config:#?}\n");
    println!("# settings: environment variable | TOML key | default | meaning");
    for setting in SETTINGS {
        println!(
            "{} | {} | {} | {}",
            setting.env, setting.toml_key, setting.default, setting.meaning
        );
    }
}
