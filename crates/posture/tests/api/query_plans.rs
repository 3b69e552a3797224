//! The read path's statements, as PostgreSQL sees them (issue 8): the hot
//! ones keep a generic plan (planned once per connection, not on every
//! execution: planning cost twice the execution of a findings page when it
//! did), a tenant transaction begins in one round trip, and a read ends
//! without a `COMMIT` round trip — yet never leaves its transaction, or its
//! tenant, on the connection it gives back.

use crate::support::TestApp;
use posture::store::finding_queries::{self, FindingFilter};
use posture::store::{PoolSettings, Store};
use posture_domain::Tier;

/// A pool of one connection as the application role: what a test asks of
/// "the" connection it then sees again (prepared statements, plan counters
/// and settings belong to a session).
fn one_connection_store(app: &TestApp) -> Store {
    let settings = PoolSettings {
        max_connections: 1,
        ..PoolSettings::for_command(&posture::config::Config::default())
    };
    Store::connect_lazy(&app.database.app_url(), &settings).unwrap()
}

/// A page of the findings list, run more than the five custom plans
/// PostgreSQL tries first, is then executed with a generic plan. With the
/// page size bound as a parameter (`LIMIT $n`) the generic plan never won
/// and every page was planned anew.
#[tokio::test]
async fn the_findings_page_is_planned_once_per_connection() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    // Enough findings, with statistics, that the planner's estimates are
    // those of a real tenant.
    let mut tx = app.owner.begin_tenant(tenant.id).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO assets (tenant_id, id, kind, name, criticality)
         SELECT current_setting('app.tenant_id')::uuid, gen_random_uuid(), 'repository',
                'github.com/acme/api', 'high';
         INSERT INTO findings (tenant_id, id, asset_id, fingerprint, tool_name, rule_id, title,
                               severity, cwe_ids, status, first_seen_at, last_seen_at)
         SELECT a.tenant_id, gen_random_uuid(), a.id, 'plan:' || g, 'semgrep', 'rule-' || g,
                'Finding ' || g, 'high', '{}', 'open', now(), now()
         FROM assets a, generate_series(1, 3000) AS g;",
    )
    .execute(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE findings")
        .execute(app.owner.pool())
        .await
        .unwrap();

    let store = one_connection_store(&app);
    let mut tx = store.begin_tenant(tenant.id).await.unwrap();
    for _ in 0..8 {
        let page = finding_queries::list(&mut tx, &FindingFilter::default(), None, 51)
            .await
            .unwrap();
        assert_eq!(page.len(), 51);
    }
    let (generic, custom): (i64, i64) = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements
         WHERE statement LIKE 'SELECT id, asset_id,%ORDER BY id DESC LIMIT%'",
    )
    .fetch_one(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(
        generic >= 2,
        "the page was planned for every execution: {generic} generic, {custom} custom plans"
    );
}

/// `tenant_read!` ends its transaction by a `ROLLBACK` sent with the pool's
/// check of the connection it gives back: the next user of that connection
/// (the only one in this pool) finds no transaction and no tenant bound.
#[tokio::test]
async fn a_read_gives_its_connection_back_with_no_transaction_or_tenant_left() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let store = one_connection_store(&app);
    for _ in 0..3 {
        let bound: Option<String> = posture::tenant_read!(store, tenant.id, |tx| {
            sqlx::query_scalar("SELECT current_setting('app.tenant_id', true)")
                .fetch_one(tx.conn())
                .await?
        })
        .unwrap();
        assert_eq!(bound, Some(tenant.id.to_string()), "bound inside the read");
        let mut connection = store.pool().acquire().await.unwrap();
        let setting: Option<String> =
            sqlx::query_scalar("SELECT nullif(current_setting('app.tenant_id', true), '')")
                .fetch_one(&mut *connection)
                .await
                .unwrap();
        assert_eq!(setting, None, "the tenant outlived the read");
        // SAVEPOINT works only inside a transaction block.
        let savepoint = sqlx::raw_sql("SAVEPOINT probe")
            .execute(&mut *connection)
            .await;
        assert!(
            savepoint.is_err(),
            "the read's transaction is still open on the connection"
        );
    }
}

/// The `BEGIN` and the tenant's `set_config` go to PostgreSQL as one simple
/// query: each kind of tenant transaction starts bound to its tenant and in
/// the mode it names — a plain one may write, a read is `READ ONLY`, a
/// snapshot is `REPEATABLE READ` too.
#[tokio::test]
async fn each_tenant_transaction_starts_bound_and_in_its_mode() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let store = one_connection_store(&app);
    let kinds = [
        ("begin_tenant", "off", "read committed"),
        ("begin_tenant_read", "on", "read committed"),
        ("begin_tenant_snapshot", "on", "repeatable read"),
    ];
    for (kind, read_only, isolation) in kinds {
        let mut tx = match kind {
            "begin_tenant" => store.begin_tenant(tenant.id).await,
            "begin_tenant_read" => store.begin_tenant_read(tenant.id).await,
            _ => store.begin_tenant_snapshot(tenant.id).await,
        }
        .unwrap();
        let (bound, read_only_now, isolation_now): (Option<String>, String, String) =
            sqlx::query_as(
                "SELECT current_setting('app.tenant_id', true),
                        current_setting('transaction_read_only'),
                        current_setting('transaction_isolation')",
            )
            .fetch_one(tx.conn())
            .await
            .unwrap();
        assert_eq!(
            bound,
            Some(tenant.id.to_string()),
            "{kind}: tenant not bound"
        );
        assert_eq!(read_only_now, read_only, "{kind}: transaction_read_only");
        assert_eq!(isolation_now, isolation, "{kind}: transaction_isolation");
        let write = sqlx::query(
            "INSERT INTO assets (tenant_id, id, kind, name, criticality)
             VALUES (current_setting('app.tenant_id')::uuid, gen_random_uuid(), 'repository',
                     'github.com/acme/' || $1, 'low')",
        )
        .bind(kind)
        .execute(tx.conn())
        .await;
        assert_eq!(write.is_ok(), read_only == "off", "{kind}: write {write:?}");
        tx.commit().await.unwrap();
    }
    let written: i64 = posture::tenant_read!(store, tenant.id, |tx| {
        sqlx::query_scalar("SELECT count(*) FROM assets")
            .fetch_one(tx.conn())
            .await?
    })
    .unwrap();
    assert_eq!(written, 1, "only the plain transaction wrote");
}

/// The findings page without filters is one statement, `findings_page`,
/// which binds the tenant for its own transaction: it returns what the
/// general path returns for an empty filter, page after page, is planned once
/// per connection, and leaves neither its tenant nor its read-only mode nor a
/// transaction on the connection it gives back.
#[tokio::test]
async fn the_unfiltered_findings_page_is_one_statement_that_leaves_nothing_bound() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let other = app.create_tenant(Tier::Enterprise).await;
    for (owner, findings) in [(tenant.id, 120), (other.id, 30)] {
        let mut tx = app.owner.begin_tenant(owner).await.unwrap();
        sqlx::query(
            "INSERT INTO assets (tenant_id, id, kind, name, criticality)
             SELECT current_setting('app.tenant_id')::uuid, gen_random_uuid(), 'repository',
                    'github.com/acme/api', 'high'",
        )
        .execute(tx.conn())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO findings (tenant_id, id, asset_id, fingerprint, tool_name, rule_id, title,
                                   severity, cwe_ids, status, first_seen_at, last_seen_at)
             SELECT a.tenant_id, gen_random_uuid(), a.id, 'page:' || g, 'semgrep', 'rule-' || g,
                    'Finding ' || g, 'high', '{79}', 'open', now(), now()
             FROM assets a, generate_series(1, $1) AS g
             WHERE a.tenant_id = current_setting('app.tenant_id')::uuid",
        )
        .bind(findings)
        .execute(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    let store = one_connection_store(&app);
    let mut after = None;
    let mut seen = 0;
    // Seven pages of 16, then the last 8 of the tenant's 120: more than the
    // five executions PostgreSQL plans for before it tries a generic plan.
    for _ in 0..7 {
        let page = finding_queries::page(&store, tenant.id, after, 16)
            .await
            .unwrap()
            .into_records()
            .unwrap();
        let expected = posture::tenant_read!(store, tenant.id, |tx| {
            finding_queries::list(&mut tx, &FindingFilter::default(), after, 16).await?
        })
        .unwrap()
        .into_records()
        .unwrap();
        let ids = |records: &[finding_queries::FindingRecord]| -> Vec<uuid::Uuid> {
            records.iter().map(|record| record.id).collect()
        };
        assert_eq!(
            ids(&page),
            ids(&expected),
            "the page differs from the list's"
        );
        assert_eq!(page.len(), 16);
        seen += page.len();
        after = page
            .last()
            .map(|last| posture_domain::ids::FindingId::from_uuid(last.id));

        let mut connection = store.pool().acquire().await.unwrap();
        let (bound, read_only): (Option<String>, String) = sqlx::query_as(
            "SELECT nullif(current_setting('app.tenant_id', true), ''),
                    current_setting('transaction_read_only')",
        )
        .fetch_one(&mut *connection)
        .await
        .unwrap();
        assert_eq!(bound, None, "the page's tenant outlived it");
        assert_eq!(read_only, "off", "the page's read-only mode outlived it");
        // SAVEPOINT works only inside a transaction block.
        let savepoint = sqlx::raw_sql("SAVEPOINT probe")
            .execute(&mut *connection)
            .await;
        assert!(savepoint.is_err(), "the page left a transaction open");
    }
    assert_eq!(seen, 112);
    let rest = finding_queries::page(&store, tenant.id, after, 100)
        .await
        .unwrap();
    assert_eq!(
        seen + rest.len(),
        120,
        "the pages miss some of the tenant's findings or add the other's"
    );

    let mut connection = store.pool().acquire().await.unwrap();
    let (generic, custom): (i64, i64) = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements
         WHERE statement LIKE 'SELECT id, asset_id,%FROM findings_page(%'",
    )
    .fetch_one(&mut *connection)
    .await
    .unwrap();
    assert!(
        generic >= 2,
        "the page was planned for every execution: {generic} generic, {custom} custom plans"
    );
}
