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
pub async fn drop(name: &str) -> anyhow::Result<()> {
    let mut maintenance = connect("posture_owner", "postgres").await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut maintenance)
        .await?;
    maintenance.close().await?;
    Ok(())
}
