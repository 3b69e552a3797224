//! A fresh, migrated database per test, cloned from a migrated template.
//!
//! The template is named after a hash of the migrations, built once per change
//! (under an advisory lock, so parallel test processes build it only once) and
//! renamed into place only when complete. Each test then clones it with
//! `CREATE DATABASE … TEMPLATE`, which takes milliseconds.

use posture::store::MIGRATOR;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::str::FromStr;

/// Host and port of the test server (the one `scripts/setup.sh` prepared).
pub fn server() -> (String, u16) {
    let host = std::env::var("POSTURE_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("POSTURE_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    (host, port)
}

/// URL of `database` as `role` (the set-up script gives each role its name as password).
pub fn url(role: &str, database: &str) -> String {
    let (host, port) = server();
    format!("postgres://{role}:{role}@{host}:{port}/{database}")
}

/// A database created for one test.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
}

impl TestDatabase {
    /// Clones the migrated template into a new database owned by `posture_owner`.
    /// Panics with instructions if the server or roles are missing: tests never skip.
    pub async fn create() -> TestDatabase {
        let mut maintenance = connect_maintenance().await;
        let template = ensure_template(&mut maintenance).await;
        // The creation time in the name lets scripts/drop-test-databases.sh remove
        // only databases old enough not to belong to a suite running right now.
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default();
        let name = format!(
            "posture_test_{created}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut maintenance)
            .await
            .expect("cloning the template database");
        let _ = maintenance.close().await;
        TestDatabase { name }
    }

    /// URL for the application role (row-level security applies).
    pub fn app_url(&self) -> String {
        url("posture_app", &self.name)
    }

    /// URL for the owner role (migrations, operator commands; bypasses RLS).
    pub fn owner_url(&self) -> String {
        url("posture_owner", &self.name)
    }
}

async fn connect_maintenance() -> PgConnection {
    let options = PgConnectOptions::from_str(&url("posture_owner", "postgres"))
        .expect("valid URL")
        .disable_statement_logging();
    options.connect().await.unwrap_or_else(|error| {
        panic!(
            "cannot reach PostgreSQL as posture_owner ({error}). Run `bash scripts/setup.sh` \
             (or `make test`), which starts PostgreSQL and creates the roles."
        )
    })
}

/// Returns the template's name, building it if this set of migrations has none yet.
async fn ensure_template(maintenance: &mut PgConnection) -> String {
    let fingerprint = MIGRATOR
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, migration| {
            migration.checksum.iter().fold(hash, |h, byte| {
                (h ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3)
            })
        });
    let template = format!("posture_tpl_{fingerprint:016x}");
    let lock_key = (fingerprint >> 1) as i64;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_key)
        .execute(&mut *maintenance)
        .await
        .expect("advisory lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut *maintenance)
            .await
            .expect("checking for the template");
    if !exists {
        let building = format!("{template}_building");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building}"))
            .execute(&mut *maintenance)
            .await
            .expect("drop");
        // The same encoding and locale as scripts/setup.sh gives the real database,
        // so tests and production agree on what a character is.
        sqlx::query(&format!(
            "CREATE DATABASE {building} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
            .execute(&mut *maintenance)
            .await
            .expect("create template");
        {
            let mut connection = PgConnectOptions::from_str(&url("posture_owner", &building))
                .expect("valid URL")
                .disable_statement_logging()
                .connect()
                .await
                .expect("connecting to the template");
            MIGRATOR
                .run(&mut connection)
                .await
                .expect("migrating the template");
            connection
                .close()
                .await
                .expect("closing the template connection");
        }
        sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .execute(&mut *maintenance)
            .await
            .expect("publishing the template");
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key)
        .execute(&mut *maintenance)
        .await
        .expect("unlock");
    template
}
