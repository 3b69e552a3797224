//! The benchmark's own database: created from `template0` and migrated as the
//! owner at the start, dropped at the end, so the benchmark never touches the
//! `posture` database or a test's.

use posture::store::MIGRATOR;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::str::FromStr;

/// URL of `database` as `role` on the server `scripts/setup.sh` prepared (each
/// role's password is its name; `POSTURE_PG_HOST`/`POSTURE_PG_PORT` as for the tests).
pub fn url(role: &str, database: &str) -> String {
    let host = std::env::var("POSTURE_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("POSTURE_PG_PORT").unwrap_or_else(|_| "5432".into());
    format!("postgres://{role}:{role}@{host}:{port}/{database}")
}

async fn connect(role: &str, database: &str) -> anyhow::Result<PgConnection> {
    let connection = PgConnectOptions::from_str(&url(role, database))?
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL as {role} ({error}); run `bash scripts/setup.sh` first"
            )
        })?;
    Ok(connection)
}

/// Creates `posture_bench_<unix time>` (same encoding and locale as the real
/// database) and applies the migrations. Returns its name.
pub async fn create() -> anyhow::Result<String> {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let name = format!("posture_bench_{created}");
    let mut maintenance = connect("posture_owner", "postgres").await?;
    sqlx::query(&format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    ))
    .execute(&mut maintenance)
    .await?;
    maintenance.close().await?;
    let mut connection = connect("posture_owner", &name).await?;
    MIGRATOR.run(&mut connection).await?;
    connection.close().await?;
    Ok(name)
}

/// Drops the benchmark's database, disconnecting anything still attached.
///
/// The owner may not terminate the application role's backends, so this first
/// waits (up to 10 s) for the servers' closed pools to be gone from the server:
/// a backend lingers briefly after its client has disconnected.
pub async fn drop(name: &str) -> anyhow::Result<()> {
    let mut maintenance = connect("posture_owner", "postgres").await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let attached: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(name)
                .fetch_one(&mut maintenance)
                .await?;
        if attached == 0 || std::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut maintenance)
        .await?;
    maintenance.close().await?;
    Ok(())
}

/// The PostgreSQL server's version.
pub async fn server_version(database: &str) -> anyhow::Result<String> {
    let store = posture::store::Store::connect_lazy(
        &url("posture_owner", database),
        &posture::store::PoolSettings::for_command(&posture::config::Config::default()),
    )?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(store.pool())
        .await?;
    store.close().await;
    Ok(version)
}
