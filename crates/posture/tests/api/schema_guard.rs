//! The schema itself enforces tenant isolation; these tests read the catalog so a
//! new table cannot forget it.

use crate::support::database::TestDatabase;
use crate::support::TestApp;
use posture_domain::Tier;
use sqlx::{Connection, PgConnection, Row};

/// Every table in `public` that holds tenant data (has a `tenant_id` column),
/// plus `tenants` itself, whose `id` is the tenant id.
async fn tenant_tables(connection: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
           AND (c.relname = 'tenants' OR EXISTS (
                SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
         ORDER BY 1",
    )
    .fetch_all(connection)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_tenant_table_has_forced_rls_a_policy_and_tenant_leading_keys() {
    let database = TestDatabase::create().await;
    let mut connection = PgConnection::connect(&database.owner_url()).await.unwrap();
    let tables = tenant_tables(&mut connection).await;
    assert!(tables.contains(&"api_keys".to_owned()) && tables.contains(&"audit_log".to_owned()));

    let mut failures = Vec::new();
    for table in &tables {
        let tenant_column = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let row = sqlx::query(
            "SELECT c.relrowsecurity, c.relforcerowsecurity,
                    (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
                    (SELECT string_agg(pg_get_expr(p.polqual, p.polrelid) || ' / ' ||
                                       coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''), '; ')
                       FROM pg_policy p WHERE p.polrelid = c.oid) AS expressions
             FROM pg_class c WHERE c.oid = $1::regclass",
        )
        .bind(table)
        .fetch_one(&mut connection)
        .await
        .unwrap();
        if !row.get::<bool, _>("relrowsecurity") {
            failures.push(format!("{table}: row level security not enabled"));
        }
        if !row.get::<bool, _>("relforcerowsecurity") {
            failures.push(format!("{table}: row level security not forced"));
        }
        if row.get::<i64, _>("policies") == 0 {
            failures.push(format!("{table}: no policy"));
        }
        let expressions: String = row
            .get::<Option<String>, _>("expressions")
            .unwrap_or_default();
        if expressions.matches("app.tenant_id").count() < 2 {
            failures.push(format!(
                "{table}: policy must check app.tenant_id in USING and WITH CHECK: {expressions}"
            ));
        }

        // The first column of the primary key, every unique key and every index.
        let leading: Vec<(String, String)> = sqlx::query_as(
            "SELECT i.indexrelid::regclass::text, a.attname::text
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = $1::regclass",
        )
        .bind(table)
        .fetch_all(&mut connection)
        .await
        .unwrap();
        let primary: Option<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = $1::regclass AND i.indisprimary",
        )
        .bind(table)
        .fetch_optional(&mut connection)
        .await
        .unwrap();
        if primary.as_deref() != Some(tenant_column) {
            failures.push(format!(
                "{table}: primary key must lead with {tenant_column}, found {primary:?}"
            ));
        }
        for (index, column) in leading {
            // The job queue's claim index is global by design (workers claim the
            // oldest job of any tenant); it is non-unique and partial.
            // So are the webhook dispatcher's (it claims the earliest due
            // delivery of any tenant) and pruning's (old events of any
            // tenant); also non-unique.
            if [
                "jobs_claimable",
                "webhook_deliveries_due",
                "webhook_events_by_created",
            ]
            .contains(&index.as_str())
            {
                continue;
            }
            // tenants.slug is a global catalog key (tenants are the distribution key itself).
            if column != tenant_column && !(table == "tenants" && column == "slug") {
                failures.push(format!(
                    "{table}: index {index} leads with {column}, not {tenant_column}"
                ));
            }
        }

        // Foreign keys of tenant data must include tenant_id (Citus co-location).
        let foreign: Vec<(String, String)> = sqlx::query_as(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = $1::regclass AND contype = 'f'",
        )
        .bind(table)
        .fetch_all(&mut connection)
        .await
        .unwrap();
        for (name, definition) in foreign {
            if !definition.starts_with("FOREIGN KEY (tenant_id") {
                failures.push(format!(
                    "{table}: foreign key {name} does not lead with tenant_id: {definition}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "schema guard failures:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_app_role_is_restricted() {
    let database = TestDatabase::create().await;
    let mut connection = PgConnection::connect(&database.app_url()).await.unwrap();
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert!(
        !superuser && !bypass,
        "the app role must be neither superuser nor BYPASSRLS"
    );
    let owns_any: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'public' AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user))",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert!(!owns_any, "the app role must not own any table");
    let statement_timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_ne!(
        statement_timeout, "0",
        "the app role needs a statement_timeout"
    );
}

/// Functions that run as the owner (`SECURITY DEFINER`: the job claim, usage,
/// key use) step around row-level security, so each must pin its
/// `search_path` (or a caller's objects could stand in for ours) and be
/// executable by no one but the app role — not by `PUBLIC`, the default.
#[tokio::test]
async fn functions_run_as_the_owner_pin_their_search_path_and_only_the_app_role_calls_them() {
    let database = TestDatabase::create().await;
    let mut connection = PgConnection::connect(&database.owner_url()).await.unwrap();
    let rows = sqlx::query(
        "SELECT p.oid::regprocedure::text AS name,
                coalesce(array_to_string(p.proconfig, ','), '') AS config,
                coalesce((SELECT array_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                                         ELSE pg_get_userbyid(a.grantee)::text END)
                          FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                          WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner),
                         '{}') AS callers
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public' AND p.prosecdef
         ORDER BY 1",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    let names: Vec<String> = rows.iter().map(|row| row.get("name")).collect();
    for expected in ["add_api_usage(", "touch_api_keys(", "claim_jobs("] {
        assert!(
            names.iter().any(|name| name.starts_with(expected)),
            "{expected}…) is not among the owner's functions: {names:?}"
        );
    }
    let mut failures = Vec::new();
    for row in &rows {
        let name: String = row.get("name");
        let config: String = row.get("config");
        let callers: Vec<String> = row.get("callers");
        if !config
            .split(',')
            .any(|setting| setting.starts_with("search_path="))
        {
            failures.push(format!("{name}: no pinned search_path"));
        }
        if callers != ["posture_app"] {
            failures.push(format!("{name}: executable by {callers:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn without_a_tenant_the_app_role_sees_nothing_and_cannot_insert() {
    // Limits on, so the requests are counted into api_usage.
    let app = TestApp::spawn_with(|config| {
        config.rate_limits_enabled = true;
        config.usage_flush_interval_ms = 100;
        // The webhook's deliveries go to a local receiver.
        config.webhook_allow_http = true;
        config.webhook_allowed_hosts = "hooks.test".into();
        config.webhook_resolve = "hooks.test=127.0.0.1".into();
        config.webhook_poll_interval_ms = 20;
    })
    .await;
    let receiver = crate::support::receiver::Receiver::start().await;
    // Premium: custom frameworks need it.
    let tenant = app.create_tenant(Tier::Premium).await;
    give_rows_in_every_table(&app, &tenant.admin_key, &receiver.url("hooks.test")).await;
    app.wait_for_posture(tenant.id).await;
    let attempted = crate::auth::eventually(std::time::Duration::from_secs(5), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_attempts WHERE tenant_id = $1")
            .bind(tenant.id.as_uuid())
            .fetch_one(app.owner.pool())
            .await
            .unwrap()
            > 0
    })
    .await;
    assert!(attempted.is_some(), "the scan's webhook was not attempted");
    let usage_flushed = crate::auth::eventually(std::time::Duration::from_secs(5), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM api_usage WHERE tenant_id = $1")
            .bind(tenant.id.as_uuid())
            .fetch_one(app.owner.pool())
            .await
            .unwrap()
            == 2
    })
    .await;
    assert!(
        usage_flushed.is_some(),
        "the requests' usage was not flushed"
    );
    let mut connection = PgConnection::connect(&app.database.app_url())
        .await
        .unwrap();
    let mut owner = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    let tables = tenant_tables(&mut connection).await;
    assert!(tables.len() >= 3, "{tables:?}");

    for table in &tables {
        // Never set, then set and reset by a finished tenant transaction (the
        // pooled-connection case, where the setting reads as '' rather than NULL).
        for phase in ["never set", "after a tenant transaction"] {
            let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{table} ({phase}): {e}"));
            assert_eq!(count, 0, "{table} ({phase}) leaked rows without a tenant");
            let mut tx = connection.begin().await.unwrap();
            sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
                .bind(tenant.id.to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
            let visible: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            let tenant_column = if table == "tenants" {
                "id"
            } else {
                "tenant_id"
            };
            let stored: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {table} WHERE {tenant_column} = $1"
            ))
            .bind(tenant.id.as_uuid())
            .fetch_one(&mut owner)
            .await
            .unwrap();
            assert_eq!(
                visible, stored,
                "{table}: the tenant should see exactly its own rows"
            );
            assert!(
                stored > 0,
                "{table}: the fixture should give the tenant rows here"
            );
            tx.commit().await.unwrap();
        }
    }

    // Inserting tenant rows with no tenant bound is refused (by RLS or by privileges).
    let key_insert = sqlx::query(
        "INSERT INTO api_keys (tenant_id, key_id, name, secret_hash, scopes, created_by)
         VALUES ($1, 'AAAAAAAAAAAA', 'x', decode(repeat('00', 32), 'hex'), ARRAY['read'], 'test')",
    )
    .bind(tenant.id.as_uuid())
    .execute(&mut connection)
    .await;
    assert!(
        key_insert.is_err(),
        "insert into api_keys without a tenant succeeded"
    );
    let audit_insert = sqlx::query(
        "INSERT INTO audit_log (tenant_id, id, actor, action) VALUES ($1, gen_random_uuid(), 'x', 'y')",
    )
    .bind(tenant.id.as_uuid())
    .execute(&mut connection)
    .await;
    assert!(
        audit_insert.is_err(),
        "insert into audit_log without a tenant succeeded"
    );
    let tenant_insert = sqlx::query(
        "INSERT INTO tenants (id, slug, name, tier) VALUES (gen_random_uuid(), 'zzz', 'z', 'free')",
    )
    .execute(&mut connection)
    .await;
    assert!(tenant_insert.is_err(), "the app role created a tenant");

    // And bound to one tenant, it cannot write rows of another.
    let other = app.create_tenant(Tier::Free).await;
    let mut tx = connection.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let cross = sqlx::query("INSERT INTO audit_log (tenant_id, id, actor, action) VALUES ($1, gen_random_uuid(), 'x', 'y')")
        .bind(other.id.as_uuid())
        .execute(&mut *tx)
        .await;
    assert!(cross.is_err(), "a tenant wrote a row of another tenant");
}

#[tokio::test]
async fn the_app_role_can_only_record_use_and_revoke_keys_and_revocation_is_final() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let key_id = &tenant.admin_key[30..42];
    let mut connection = PgConnection::connect(&app.database.app_url())
        .await
        .unwrap();
    let mut tx = connection.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    for assignment in [
        "secret_hash = decode(repeat('00', 32), 'hex')",
        "scopes = ARRAY['admin']",
        "expires_at = NULL",
        "name = 'renamed'",
    ] {
        let mut savepoint = tx.begin().await.unwrap();
        let result = sqlx::query(&format!(
            "UPDATE api_keys SET {assignment} WHERE key_id = $1"
        ))
        .bind(key_id)
        .execute(&mut *savepoint)
        .await;
        assert!(result.is_err(), "the app role could set {assignment}");
        savepoint.rollback().await.unwrap();
    }
    sqlx::query("UPDATE api_keys SET last_used_at = now(), revoked_at = now() WHERE key_id = $1")
        .bind(key_id)
        .execute(&mut *tx)
        .await
        .expect("recording use and revoking are allowed");
    let restore = sqlx::query("UPDATE api_keys SET revoked_at = NULL WHERE key_id = $1")
        .bind(key_id)
        .execute(&mut *tx)
        .await;
    assert!(restore.is_err(), "a revoked key was restored");
}

/// Gives the tenant rows in every tenant table through the API: settings, an
/// asset, a processed scan (report, job, findings, sightings, events) submitted
/// with an idempotency key, a custom framework, and a webhook at `webhook_url`
/// that the scan's `scan.completed` event is delivered to (event, delivery,
/// attempt).
async fn give_rows_in_every_table(app: &TestApp, key: &str, webhook_url: &str) {
    let webhook = app
        .post_json(
            "/v1/webhooks",
            key,
            &serde_json::json!({"url": webhook_url, "event_types": ["scan.completed"]}),
        )
        .await;
    assert_eq!(webhook.status(), 201);
    let settings = app
        .client
        .patch(format!("{}/v1/settings", app.address))
        .bearer_auth(key)
        .json(&serde_json::json!({"sla_days": {"low": 200}}))
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status(), 200);
    let report = serde_json::json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": [
        {"ruleId": "r", "level": "error", "message": {"text": "m"},
         "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a"}, "region": {"startLine": 1}}}]}]}]});
    let response = app
        .client
        .post(format!(
            "{}/v1/scans?asset_kind=host&asset_name=h1&scope=full",
            app.address
        ))
        .bearer_auth(key)
        .header("content-type", "application/sarif+json")
        .header("idempotency-key", "schema-guard-1")
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let scan = app.wait_for_scan(key, &location).await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    let framework = app
        .client
        .post(format!("{}/v1/frameworks", app.address))
        .bearer_auth(key)
        .json(&serde_json::json!({"name": "Ours", "controls": [
            {"id": "SEC-1", "title": "No injection", "cwes": [89]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(framework.status(), 201);
    // posture_summaries and posture_snapshots are written by the refresh the
    // scan and the framework queued (the caller waits for it).
}
