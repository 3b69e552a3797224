//! PostgreSQL access. Tenant data is reachable only through a [`TenantTx`].
//!
//! [`Store::begin_tenant`] opens a transaction and binds it to one tenant with
//! `SET LOCAL app.tenant_id = …` — transaction-local, sent in the same round
//! trip as the `BEGIN` — and row-level security does the rest. Repository functions
//! take `&mut TenantTx`, so a tenant query cannot run outside a tenant
//! transaction. The one exception is a statement that binds its tenant
//! itself, for its own transaction, in a function of the schema: the findings
//! list's page without filters ([`finding_queries::page`]), the most frequent
//! read, in one round trip instead of three. Cross-tenant operator work lives in [`operator`], which needs a
//! pool connected as the schema owner.

pub mod api_keys;
pub mod assets;
pub mod audit;
mod beginning;
mod connect;
pub mod deliveries;
pub mod finding_queries;
mod finding_rows;
pub mod findings;
pub mod frameworks;
pub mod idempotency;
pub mod notifications;
pub mod operator;
pub mod outbox;
pub mod posture;
pub mod retry;
pub mod scans;
pub mod settings;
pub mod tenants;
pub mod webhooks;

use beginning::Beginning;
use posture_domain::TenantId;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use connect::wait_until_reachable;

/// The embedded migrations (the `migrations/` folder at the repository root).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// A pooled connection idle for this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Pool sizing and per-connection limits.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Connections kept open.
    pub min_connections: u32,
    /// Connections the pool may burst to.
    pub max_connections: u32,
    /// Longest wait for a connection.
    pub acquire_timeout: Duration,
    /// Age after which a connection is replaced.
    pub max_lifetime: Duration,
    /// Idle time after which a connection above the minimum is closed.
    pub idle_timeout: Duration,
    /// `statement_timeout` of each connection.
    pub statement_timeout: Duration,
    /// `idle_in_transaction_session_timeout` of each connection.
    pub idle_in_transaction_timeout: Duration,
}

impl PoolSettings {
    /// The server's pool, from the configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        PoolSettings {
            min_connections: config.db_pool_min,
            max_connections: config.db_pool_max,
            acquire_timeout: Duration::from_millis(config.db_acquire_timeout_ms),
            max_lifetime: Duration::from_secs(config.db_max_lifetime_secs),
            idle_timeout: Duration::from_secs(config.db_idle_timeout_secs),
            statement_timeout: Duration::from_millis(config.db_statement_timeout_ms),
            idle_in_transaction_timeout: Duration::from_millis(
                config.db_idle_in_transaction_timeout_ms,
            ),
        }
    }

    /// A small pool for one-shot commands (`migrate`, `admin`, `demo`).
    pub fn for_command(config: &crate::config::Config) -> Self {
        PoolSettings {
            min_connections: 0,
            max_connections: 2,
            statement_timeout: Duration::from_secs(300),
            ..PoolSettings::from_config(config)
        }
    }
}

/// A snapshot of the pool for health checks and metrics.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Connections checked out.
    pub in_use: u32,
    /// Tasks waiting for a connection.
    pub waiting: u32,
    /// Most connections the pool may open.
    pub max: u32,
}

/// The connection pool and the only way to open tenant transactions.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// Tasks currently waiting in `begin`; sqlx does not expose this itself.
    waiting: Arc<AtomicUsize>,
}

impl Store {
    /// Builds the pool without connecting; connections open on first use, and the
    /// pool then keeps `min_connections` open. Pair with [`wait_until_reachable`].
    pub fn connect_lazy(url: &str, settings: &PoolSettings) -> anyhow::Result<Store> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("posture")
            // Set in the start-up packet, so they hold even if the role's own
            // defaults (scripts/setup.sh) are missing.
            .options([
                (
                    "statement_timeout",
                    settings.statement_timeout.as_millis().to_string(),
                ),
                (
                    "idle_in_transaction_session_timeout",
                    settings.idle_in_transaction_timeout.as_millis().to_string(),
                ),
            ])
            // Statements are traced by our own spans; sqlx's per-statement log lines
            // would dominate log volume at load.
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .min_connections(settings.min_connections)
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .max_lifetime(settings.max_lifetime)
            .idle_timeout(settings.idle_timeout)
            // A connection broken while idle (database restart) is detected and
            // replaced before a request gets it: one that sat idle for a while
            // is pinged first. Not every connection: under load they are idle
            // for microseconds, and a ping on each would add a round trip to
            // every transaction (a fifth of a short read's).
            .test_before_acquire(false)
            .before_acquire(|connection, metadata| {
                Box::pin(async move {
                    if metadata.idle_for >= PING_IF_IDLE_FOR {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(Store {
            pool,
            waiting: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Opens connections until the pool holds `count`, so the first burst of
    /// requests does not pay for connecting (a lazily built pool opens them only
    /// on demand).
    pub async fn warm_up(&self, count: u32) -> Result<(), sqlx::Error> {
        let mut held = Vec::new();
        while self.pool.size() < count && held.len() < count as usize {
            held.push(self.pool.acquire().await?);
        }
        Ok(())
    }

    /// Opens a transaction bound to `tenant_id`; row-level security confines every
    /// statement in it to that tenant's rows.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn begin_tenant(&self, tenant_id: TenantId) -> Result<TenantTx, sqlx::Error> {
        self.begin_bound("BEGIN", tenant_id).await
    }

    /// Like [`Store::begin_tenant`], but `READ ONLY`: for reads with no side
    /// effects (the [`crate::tenant_read`] macro), which PostgreSQL then holds to
    /// that.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn begin_tenant_read(&self, tenant_id: TenantId) -> Result<TenantTx, sqlx::Error> {
        self.begin_bound("BEGIN READ ONLY", tenant_id).await
    }

    /// Like [`Store::begin_tenant`], but read-only and REPEATABLE READ: every
    /// statement sees the same snapshot, so several aggregates read for one
    /// computation (the posture view) agree with each other.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn begin_tenant_snapshot(
        &self,
        tenant_id: TenantId,
    ) -> Result<TenantTx, sqlx::Error> {
        self.begin_bound(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            tenant_id,
        )
        .await
    }

    /// Sends the tenant's setting and `begin` as one simple query: one round
    /// trip where a `BEGIN` and a bound `set_config` took two (a findings page
    /// was four). The tenant id is written into the statement, which is safe
    /// because it is a [`TenantId`] — a parsed UUID, whose text is hex digits
    /// and hyphens — never text from a request.
    ///
    /// The setting comes first: in a query of several statements PostgreSQL
    /// runs the ones before a `BEGIN` in an implicit transaction that the
    /// `BEGIN` then makes explicit (keeping the `SET LOCAL`), and a failure
    /// before it rolls the implicit one back. The other way round, a failing
    /// second statement left the connection inside an aborted transaction
    /// block that sqlx does not know of, and the pool would hand it out so.
    /// `SET LOCAL`, not `SELECT set_config`: a `SELECT` takes a snapshot, after
    /// which `BEGIN ISOLATION LEVEL …` is refused. sqlx checks that the
    /// connection is in a transaction afterwards: a transaction never starts
    /// without its tenant. Were the setting ever missing, the policies would
    /// match no rows.
    async fn begin_bound(
        &self,
        begin: &'static str,
        tenant_id: TenantId,
    ) -> Result<TenantTx, sqlx::Error> {
        let statement = format!("SET LOCAL app.tenant_id = '{tenant_id}'; {begin}");
        let tx = {
            let _waiting = WaitingGuard::enter(&self.waiting);
            Beginning::on(&self.pool, Some(statement)).await?
        };
        Ok(TenantTx { tx, tenant_id })
    }

    /// A transaction with no tenant bound: for operator work on the owner's pool
    /// (which bypasses row-level security). On the server's pool it sees no tenant rows.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let _waiting = WaitingGuard::enter(&self.waiting);
        Beginning::on(&self.pool, None).await
    }

    /// A pooled connection outside any transaction, for a statement that
    /// binds its tenant itself for its own transaction (the function
    /// `findings_page`, [`finding_queries::page`]); every other tenant read
    /// goes through a [`TenantTx`].
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let _waiting = WaitingGuard::enter(&self.waiting);
        self.pool.acquire().await
    }

    /// Round-trip time of `SELECT 1`, for readiness.
    pub async fn ping(&self) -> Result<Duration, sqlx::Error> {
        let started = Instant::now();
        let mut connection = {
            let _waiting = WaitingGuard::enter(&self.waiting);
            self.pool.acquire().await?
        };
        sqlx::query("SELECT 1").execute(&mut *connection).await?;
        Ok(started.elapsed())
    }

    /// Current pool occupancy.
    pub fn pool_stats(&self) -> PoolStats {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats {
            size,
            idle,
            in_use: size.saturating_sub(idle),
            waiting: u32::try_from(self.waiting.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    /// The raw pool, for migrations and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Counts a task as waiting for a connection until dropped, so a cancelled wait
/// (a request timeout, a client hanging up) is uncounted too.
struct WaitingGuard<'a>(&'a AtomicUsize);

impl<'a> WaitingGuard<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        WaitingGuard(counter)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A transaction bound to one tenant. Dropped without [`TenantTx::commit`], it rolls back.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant_id: TenantId,
}

impl TenantTx {
    /// The tenant this transaction is bound to.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// The connection, for repository functions.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Takes (until the transaction ends) the tenant's lock on `collection`,
    /// which other transactions taking it wait for: so concurrent creates
    /// cannot all count room under a per-tenant cap.
    pub async fn lock_collection(&mut self, collection: &'static str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2::text, 0))")
            .bind(collection)
            .bind(self.tenant_id.as_uuid())
            .execute(&mut *self.tx)
            .await
            .map(|_| ())
    }

    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Ends a transaction that only read, without a round trip of its own:
    /// there is nothing to commit, so it is rolled back, and sqlx sends that
    /// `ROLLBACK` together with the check the pool makes of every connection
    /// given back (which waits for it, so the connection is never handed out
    /// with the transaction — or its tenant setting — still open). A
    /// `COMMIT` was one of the five round trips of a findings page.
    pub fn end_read(self) {
        drop(self.tx);
    }
}
