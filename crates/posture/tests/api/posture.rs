//! `GET /v1/posture`: the score with its working, per tenant; MTTR and the
//! changes since yesterday and 30 days ago; `GET /v1/posture/history`; and the
//! background refresh that keeps the stored view current (the daily job, the
//! guard against stale refreshes, lapsed risk acceptances).

use crate::support::{assert_problem, TestApp, TestTenant};
use chrono::{DateTime, Days, NaiveDate, Utc};
use posture::jobs::worker::{queue_due_posture_refreshes, reopen_expired_risk_acceptances};
use posture_domain::{TenantId, TenantStatus, Tier};
use serde_json::{json, Value};

async fn scan(app: &TestApp, tenant: &TestTenant, results: &[(&str, &str, u32)]) {
    let results: Vec<Value> = results
        .iter()
        .map(|(rule, level, line)| {
            json!({"ruleId": rule, "level": level, "message": {"text": rule},
                   "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a.py"}, "region": {"startLine": line}}}]})
        })
        .collect();
    let report = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": results}]});
    let scan = app
        .ingest_sarif(
            &tenant.admin_key,
            "asset_kind=repository&asset_name=acme/api&scope=full",
            &report,
        )
        .await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    app.wait_for_posture(tenant.id).await;
}

#[tokio::test]
async fn the_score_follows_open_findings_and_shows_its_working() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant(Tier::Premium).await;
    let b = app.create_tenant(Tier::Premium).await;
    let reader = app.issue_key(a.id, &["read"]).await;

    let clean: Value = app.get("/v1/posture", &reader).await.json().await.unwrap();
    assert_eq!(
        (clean["score"].as_u64(), clean["grade"].as_str()),
        (Some(100), Some("A")),
        "{clean}"
    );
    assert_eq!(clean["factors"].as_array().unwrap().len(), 5);

    scan(
        &app,
        &a,
        &[
            ("sqli", "error", 1),
            ("xss", "warning", 2),
            ("style", "note", 3),
        ],
    )
    .await;
    let posture: Value = app.get("/v1/posture", &reader).await.json().await.unwrap();
    let score = posture["score"].as_u64().unwrap();
    assert!(score < 100, "{posture}");
    assert_eq!(
        posture["open_by_severity"],
        json!({"high": 1, "low": 1, "medium": 1})
    );
    assert_eq!(posture["by_status"], json!({"open": 3}));
    let top = posture["top_findings"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert_eq!(top[0]["severity"], "high", "the costliest first: {posture}");
    let lost: f64 = posture["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["points_lost"].as_f64().unwrap())
        .sum();
    assert!(
        (100.0 - lost - score as f64).abs() < 1.0,
        "factors explain the score: {posture}"
    );

    // Triaging the costliest as a false positive never lowers the score.
    let id = top[0]["id"].as_str().unwrap();
    let patched = app
        .client
        .patch(format!("{}/v1/findings/{id}", app.address))
        .bearer_auth(&a.admin_key)
        .json(&json!({"status": "false_positive", "reason": "test fixture"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    app.wait_for_posture(a.id).await;
    let after: Value = app.get("/v1/posture", &reader).await.json().await.unwrap();
    assert!(after["score"].as_u64().unwrap() > score, "{after}");
    assert_eq!(after["by_status"], json!({"open": 2, "false_positive": 1}));

    // Another tenant's findings are not its own.
    let other: Value = app
        .get("/v1/posture", &b.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["score"], 100, "{other}");
    assert_eq!(other["top_findings"], json!([]));
}

async fn posture_of(app: &TestApp, key: &str) -> Value {
    let response = app.get("/v1/posture", key).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Changes the high SLA, which queues a posture refresh; waits for it.
async fn refresh_via_settings(app: &TestApp, tenant: &TestTenant, high_days: u32) {
    let response = app
        .client
        .patch(format!("{}/v1/settings", app.address))
        .bearer_auth(&tenant.admin_key)
        .json(&json!({"sla_days": {"high": high_days}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.wait_for_posture(tenant.id).await;
}

/// Today (UTC) as the database sees it.
async fn today(app: &TestApp) -> NaiveDate {
    sqlx::query_scalar("SELECT (now() AT TIME ZONE 'UTC')::date")
        .fetch_one(app.owner.pool())
        .await
        .unwrap()
}

/// Stores a daily snapshot `days_ago` days before today (UTC), as the owner.
async fn insert_snapshot(
    app: &TestApp,
    tenant: &TestTenant,
    days_ago: i32,
    score: i16,
    open_total: i32,
    compliance_percent: Option<f64>,
) {
    sqlx::query(
        "INSERT INTO posture_snapshots (tenant_id, day, computed_at, score, grade, open_total,
                                        open_by_severity, sla_breaches, compliance_percent, frameworks)
         VALUES ($1, (now() AT TIME ZONE 'UTC')::date - $2, now() - make_interval(days => $2),
                 $3, 'F', $4, '{}', 0, $5, '{}')",
    )
    .bind(tenant.id.as_uuid())
    .bind(days_ago)
    .bind(score)
    .bind(open_total)
    .bind(compliance_percent)
    .execute(app.owner.pool())
    .await
    .unwrap();
}

/// Posture refresh jobs of the tenant with `status`.
async fn refresh_jobs(app: &TestApp, tenant_id: TenantId, status: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'refresh_posture' AND status = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(status)
    .fetch_one(app.owner.pool())
    .await
    .unwrap()
}

/// The stored summary's computed_at and refresh_due_at, and whether the latter is in the future.
async fn stored_summary(
    app: &TestApp,
    tenant_id: TenantId,
) -> (DateTime<Utc>, DateTime<Utc>, bool) {
    sqlx::query_as(
        "SELECT computed_at, refresh_due_at, refresh_due_at > now() FROM posture_summaries WHERE tenant_id = $1",
    )
    .bind(tenant_id.as_uuid())
    .fetch_one(app.owner.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn mttr_covers_findings_resolved_by_a_full_rescan_in_the_window() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    scan(
        &app,
        &tenant,
        &[("sqli", "error", 1), ("xss", "warning", 2)],
    )
    .await;
    let before = posture_of(&app, key).await;
    assert_eq!(before["mttr"], json!({}), "{before}");
    assert_eq!(before["mttr_window_days"], 90);

    // A full rescan without the high finding resolves it.
    scan(&app, &tenant, &[("xss", "warning", 2)]).await;
    let after = posture_of(&app, key).await;
    assert_eq!(
        after["by_status"],
        json!({"open": 1, "resolved": 1}),
        "{after}"
    );
    assert_eq!(after["open_by_severity"], json!({"medium": 1}));
    let high = &after["mttr"]["high"];
    assert_eq!(high["resolved"], 1, "{after}");
    let hours = high["mean_hours"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&hours), "{after}");
    assert!(after["mttr"].get("medium").is_none(), "{after}");
    assert_eq!(after["mttr_window_days"], 90);

    // First seen 48 hours before it was resolved.
    let updated = sqlx::query(
        "UPDATE findings SET first_seen_at = resolved_at - interval '48 hours'
         WHERE tenant_id = $1 AND status = 'resolved'",
    )
    .bind(tenant.id.as_uuid())
    .execute(app.owner.pool())
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(updated, 1);
    refresh_via_settings(&app, &tenant, 20).await;
    let posture = posture_of(&app, key).await;
    assert_eq!(
        posture["mttr"],
        json!({"high": {"resolved": 1, "mean_hours": 48.0}}),
        "{posture}"
    );

    // Resolved before the 90-day window: no longer counted.
    sqlx::query(
        "UPDATE findings SET resolved_at = now() - interval '91 days',
                             first_seen_at = now() - interval '93 days'
         WHERE tenant_id = $1 AND status = 'resolved'",
    )
    .bind(tenant.id.as_uuid())
    .execute(app.owner.pool())
    .await
    .unwrap();
    refresh_via_settings(&app, &tenant, 21).await;
    let posture = posture_of(&app, key).await;
    assert_eq!(posture["mttr"], json!({}), "{posture}");
}

#[tokio::test]
async fn changes_compare_with_yesterday_and_thirty_days_ago() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    scan(
        &app,
        &tenant,
        &[("sqli", "error", 1), ("xss", "warning", 2)],
    )
    .await;
    let posture = posture_of(&app, key).await;
    assert_eq!(posture["change_since_yesterday"], Value::Null, "{posture}");
    assert_eq!(posture["change_since_30_days"], Value::Null, "{posture}");
    let score = posture["score"].as_i64().unwrap();
    let open: i64 = posture["open_by_severity"]
        .as_object()
        .unwrap()
        .values()
        .map(|count| count.as_i64().unwrap())
        .sum();
    assert_eq!(open, 2);
    let compliance = posture["compliance_percent"]
        .as_f64()
        .expect("a scanned repository assesses built-in controls");

    let today = today(&app).await;
    insert_snapshot(&app, &tenant, 1, 50, 10, Some(40.0)).await;
    insert_snapshot(&app, &tenant, 31, 60, 1, Some(95.5)).await;
    // Older ones are not the latest before either cut-off.
    insert_snapshot(&app, &tenant, 2, 10, 99, Some(1.0)).await;
    insert_snapshot(&app, &tenant, 45, 10, 99, Some(1.0)).await;
    // Rows written behind the API's back do not invalidate the cached view; a
    // refresh (which stores a new summary) does.
    refresh_via_settings(&app, &tenant, 22).await;

    let posture = posture_of(&app, key).await;
    let round = |value: f64| (value * 10.0).round() / 10.0;
    let yesterday = &posture["change_since_yesterday"];
    assert_eq!(
        yesterday["since"],
        (today - Days::new(1)).to_string(),
        "{posture}"
    );
    assert_eq!(yesterday["score_before"], 50);
    assert_eq!(yesterday["score_delta"], score - 50);
    assert_eq!(yesterday["open_before"], 10);
    assert_eq!(yesterday["open_delta"], open - 10);
    assert_eq!(yesterday["compliance_percent_before"], 40.0);
    assert_eq!(
        yesterday["compliance_percent_delta"].as_f64(),
        Some(round(compliance - 40.0)),
        "{posture}"
    );
    let month = &posture["change_since_30_days"];
    assert_eq!(
        month["since"],
        (today - Days::new(31)).to_string(),
        "{posture}"
    );
    assert_eq!(month["score_before"], 60);
    assert_eq!(month["score_delta"], score - 60);
    assert_eq!(month["open_before"], 1);
    assert_eq!(month["open_delta"], open - 1);
    assert_eq!(month["compliance_percent_before"], 95.5);
    assert_eq!(
        month["compliance_percent_delta"].as_f64(),
        Some(round(compliance - 95.5)),
        "{posture}"
    );

    // Without a compliance % on one side there is no delta; the latest snapshot
    // before each cut-off is the one compared with.
    let other = app.create_tenant(Tier::Basic).await;
    insert_snapshot(&app, &other, 3, 70, 4, Some(40.0)).await;
    insert_snapshot(&app, &other, 40, 80, 0, None).await;
    let posture = posture_of(&app, &other.admin_key).await;
    assert_eq!(posture["compliance_percent"], Value::Null, "{posture}");
    let yesterday = &posture["change_since_yesterday"];
    assert_eq!(
        yesterday["since"],
        (today - Days::new(3)).to_string(),
        "{posture}"
    );
    assert_eq!(yesterday["score_delta"], 100 - 70);
    assert_eq!(yesterday["open_delta"], -4);
    assert_eq!(yesterday["compliance_percent_before"], 40.0);
    assert_eq!(yesterday["compliance_percent_delta"], Value::Null);
    let month = &posture["change_since_30_days"];
    assert_eq!(
        month["since"],
        (today - Days::new(40)).to_string(),
        "{posture}"
    );
    assert_eq!(month["score_delta"], 100 - 80);
    assert_eq!(month["compliance_percent_before"], Value::Null);
    assert_eq!(month["compliance_percent_delta"], Value::Null);
}

#[tokio::test]
async fn history_lists_daily_snapshots_oldest_first() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;

    let history: Value = app
        .get("/v1/posture/history", key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history, json!({"days": 90, "snapshots": []}));

    // A scan today leaves today's snapshot, matching the current view.
    scan(
        &app,
        &tenant,
        &[("sqli", "error", 1), ("xss", "warning", 2)],
    )
    .await;
    let posture = posture_of(&app, key).await;
    let today = today(&app).await;
    let history: Value = app
        .get("/v1/posture/history", key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["days"], 90);
    let snapshots = history["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 1, "{history}");
    let snapshot = &snapshots[0];
    assert_eq!(snapshot["day"], today.to_string());
    assert_eq!(snapshot["score"], posture["score"]);
    assert_eq!(snapshot["grade"], posture["grade"]);
    assert_eq!(snapshot["open_total"], 2);
    assert_eq!(snapshot["open_by_severity"], posture["open_by_severity"]);
    assert_eq!(snapshot["sla_breaches"], posture["sla_breaches"]);
    assert_eq!(
        snapshot["compliance_percent"],
        posture["compliance_percent"]
    );
    assert!(
        snapshot["frameworks"]["soc2"].is_number(),
        "built-in frameworks' percentages: {snapshot}"
    );

    // Inside the window (today counts as one of the days) and outside it.
    for days_ago in [100, 10, 90, 89] {
        insert_snapshot(&app, &tenant, days_ago, 50, 3, Some(40.0)).await;
    }
    let days_listed = |history: &Value| -> Vec<String> {
        history["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|snapshot| snapshot["day"].as_str().unwrap().to_owned())
            .collect()
    };
    let day = |ago: u64| (today - Days::new(ago)).to_string();
    for (query, expected) in [
        ("", vec![day(89), day(10), day(0)]),
        ("?days=90", vec![day(89), day(10), day(0)]),
        ("?days=89", vec![day(10), day(0)]),
        ("?days=1", vec![day(0)]),
        (
            "?days=365",
            vec![day(100), day(90), day(89), day(10), day(0)],
        ),
    ] {
        let history: Value = app
            .get(&format!("/v1/posture/history{query}"), key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(days_listed(&history), expected, "{query}: {history}");
    }
    let history: Value = app
        .get("/v1/posture/history?days=30", key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["days"], 30);
    assert_eq!(
        history["snapshots"][0],
        json!({"day": day(10), "score": 50, "grade": "F", "open_total": 3, "open_by_severity": {},
               "sla_breaches": 0, "compliance_percent": 40.0, "frameworks": {}})
    );

    // Bad parameters name themselves.
    for query in ["days=0", "days=366", "days=-1", "days=ninety", "days="] {
        let problem = assert_problem(
            app.get(&format!("/v1/posture/history?{query}"), key).await,
            422,
        )
        .await;
        assert_eq!(
            problem["errors"][0]["parameter"], "days",
            "{query}: {problem}"
        );
    }
    // An unknown parameter is refused by name, not ignored.
    let problem = assert_problem(app.get("/v1/posture/history?limit=5", key).await, 422).await;
    assert_eq!(problem["type"], "/problems/validation-failed", "{problem}");
    assert_eq!(problem["errors"][0]["parameter"], "limit", "{problem}");

    // Another organization's snapshots are its own.
    let other = app.create_tenant(Tier::Premium).await;
    let history: Value = app
        .get("/v1/posture/history?days=365", &other.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["snapshots"], json!([]), "{history}");
}

#[tokio::test]
async fn due_views_are_queued_once_per_tenant_and_suspended_tenants_skipped() {
    // No periodic upkeep during the test: the test calls it.
    let app = TestApp::spawn_with(|config| config.maintenance_interval_secs = 3_600).await;
    let due = app.create_tenant(Tier::Premium).await;
    scan(&app, &due, &[("sqli", "error", 1)]).await;
    let fresh = app.create_tenant(Tier::Premium).await;
    posture_of(&app, &fresh.admin_key).await;
    // A suspended tenant without any view: it would be due if it were active.
    let suspended = app.create_tenant(Tier::Premium).await;
    posture::store::operator::set_status(&app.owner, suspended.id, TenantStatus::Suspended)
        .await
        .unwrap();

    let (computed_at, _, in_future) = stored_summary(&app, due.id).await;
    assert!(in_future, "a fresh view is not due");
    assert_eq!(queue_due_posture_refreshes(&app.owner).await.unwrap(), 0);

    sqlx::query(
        "UPDATE posture_summaries SET refresh_due_at = now() - interval '1 minute' WHERE tenant_id = $1",
    )
    .bind(due.id.as_uuid())
    .execute(app.owner.pool())
    .await
    .unwrap();

    // A refresh already waiting covers it: none is added (one waits per tenant).
    // Parked an hour ahead so no worker takes it meanwhile.
    sqlx::query(
        "INSERT INTO jobs (tenant_id, id, kind, max_attempts, run_at)
         VALUES ($1, gen_random_uuid(), 'refresh_posture', 3, now() + interval '1 hour')",
    )
    .bind(due.id.as_uuid())
    .execute(app.owner.pool())
    .await
    .unwrap();
    assert_eq!(queue_due_posture_refreshes(&app.owner).await.unwrap(), 0);
    assert_eq!(refresh_jobs(&app, due.id, "queued").await, 1);
    sqlx::query("DELETE FROM jobs WHERE tenant_id = $1 AND kind = 'refresh_posture'")
        .bind(due.id.as_uuid())
        .execute(app.owner.pool())
        .await
        .unwrap();

    assert_eq!(queue_due_posture_refreshes(&app.owner).await.unwrap(), 1);
    // Called again at once: the queued one (unless a worker already took it) covers it.
    let again = queue_due_posture_refreshes(&app.owner).await.unwrap();
    assert!(again <= 1, "{again}");
    assert!(refresh_jobs(&app, due.id, "queued").await <= 1);

    app.wait_for_posture(due.id).await;
    let (recomputed_at, _, in_future) = stored_summary(&app, due.id).await;
    assert!(recomputed_at > computed_at);
    assert!(in_future, "the refreshed view is due again later");
    assert_eq!(queue_due_posture_refreshes(&app.owner).await.unwrap(), 0);

    // Neither the fresh nor the suspended tenant was queued.
    for tenant in [&fresh, &suspended] {
        let jobs: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'refresh_posture'",
        )
        .bind(tenant.id.as_uuid())
        .fetch_one(app.owner.pool())
        .await
        .unwrap();
        assert_eq!(jobs, 0, "{}", tenant.slug);
    }
    let views: i64 =
        sqlx::query_scalar("SELECT count(*) FROM posture_summaries WHERE tenant_id = $1")
            .bind(suspended.id.as_uuid())
            .fetch_one(app.owner.pool())
            .await
            .unwrap();
    assert_eq!(views, 0);

    // Once active again, its missing view is due.
    posture::store::operator::set_status(&app.owner, suspended.id, TenantStatus::Active)
        .await
        .unwrap();
    assert_eq!(queue_due_posture_refreshes(&app.owner).await.unwrap(), 1);
    app.wait_for_posture(suspended.id).await;
    let (_, _, in_future) = stored_summary(&app, suspended.id).await;
    assert!(in_future);
}

#[tokio::test]
async fn a_stale_refresh_does_not_replace_a_newer_view() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    scan(&app, &tenant, &[("sqli", "error", 1)]).await;
    let before = posture_of(&app, key).await;
    assert!(before["score"].as_u64().unwrap() < 100, "{before}");

    // A view stored "later" than any refresh that starts now.
    let future: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE posture_summaries SET computed_at = now() + interval '1 hour'
         WHERE tenant_id = $1 RETURNING computed_at",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(app.owner.pool())
    .await
    .unwrap();
    let snapshot_before: (DateTime<Utc>, i16) =
        sqlx::query_as("SELECT computed_at, score FROM posture_snapshots WHERE tenant_id = $1")
            .bind(tenant.id.as_uuid())
            .fetch_one(app.owner.pool())
            .await
            .unwrap();

    // Triage the only finding away: a stored refresh would show 100.
    let id = before["top_findings"][0]["id"].as_str().unwrap();
    let patched = app
        .client
        .patch(format!("{}/v1/findings/{id}", app.address))
        .bearer_auth(key)
        .json(&json!({"status": "false_positive", "reason": "test fixture"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    app.wait_for_posture(tenant.id).await;

    let (computed_at, score): (DateTime<Utc>, i16) =
        sqlx::query_as("SELECT computed_at, score FROM posture_summaries WHERE tenant_id = $1")
            .bind(tenant.id.as_uuid())
            .fetch_one(app.owner.pool())
            .await
            .unwrap();
    assert_eq!(computed_at, future, "the newer view stays");
    assert_eq!(i64::from(score), before["score"].as_i64().unwrap());
    let after = posture_of(&app, key).await;
    assert_eq!(after["score"], before["score"], "{after}");
    assert_eq!(after["by_status"], json!({"open": 1}));
    let snapshot_after: (DateTime<Utc>, i16) =
        sqlx::query_as("SELECT computed_at, score FROM posture_snapshots WHERE tenant_id = $1")
            .bind(tenant.id.as_uuid())
            .fetch_one(app.owner.pool())
            .await
            .unwrap();
    assert_eq!(
        snapshot_after, snapshot_before,
        "nor is the day's snapshot rewritten"
    );
    // The superseded refresh finished all the same: nothing is left queued or dead.
    let jobs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'refresh_posture'",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(app.owner.pool())
    .await
    .unwrap();
    assert_eq!(jobs, 0);

    // Over an older view, the next refresh is stored.
    sqlx::query(
        "UPDATE posture_summaries SET computed_at = now() - interval '1 hour' WHERE tenant_id = $1",
    )
    .bind(tenant.id.as_uuid())
    .execute(app.owner.pool())
    .await
    .unwrap();
    refresh_via_settings(&app, &tenant, 20).await;
    let after = posture_of(&app, key).await;
    assert_eq!(after["score"], 100, "{after}");
    assert_eq!(after["by_status"], json!({"false_positive": 1}));
}

#[tokio::test]
async fn an_expired_risk_acceptance_reopens_the_finding_and_refreshes_the_posture() {
    // No periodic upkeep during the test: the test calls it.
    let app = TestApp::spawn_with(|config| config.maintenance_interval_secs = 3_600).await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    scan(&app, &tenant, &[("sqli", "error", 1)]).await;
    let before = posture_of(&app, key).await;
    let id = before["top_findings"][0]["id"].as_str().unwrap().to_owned();

    let until = Utc::now() + chrono::Duration::hours(1);
    let patched = app
        .client
        .patch(format!("{}/v1/findings/{id}", app.address))
        .bearer_auth(key)
        .json(&json!({"status": "accepted_risk", "reason": "compensating control", "accepted_until": until}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    app.wait_for_posture(tenant.id).await;
    let accepted = posture_of(&app, key).await;
    assert_eq!(
        accepted["by_status"],
        json!({"accepted_risk": 1}),
        "{accepted}"
    );
    assert_eq!(accepted["open_by_severity"], json!({}));
    assert_eq!(accepted["score"], 100);

    // Nothing has lapsed yet.
    assert_eq!(
        reopen_expired_risk_acceptances(&app.owner).await.unwrap(),
        0
    );
    assert_eq!(refresh_jobs(&app, tenant.id, "queued").await, 0);

    sqlx::query(
        "UPDATE findings SET accepted_until = now() - interval '1 second'
         WHERE tenant_id = $1 AND status = 'accepted_risk'",
    )
    .bind(tenant.id.as_uuid())
    .execute(app.owner.pool())
    .await
    .unwrap();
    assert_eq!(
        reopen_expired_risk_acceptances(&app.owner).await.unwrap(),
        1
    );
    // Nothing else changed the tenant's data, so only a refresh queued by the
    // reopening can bring the view up to date.
    app.wait_for_posture(tenant.id).await;
    let reopened = posture_of(&app, key).await;
    assert_eq!(reopened["by_status"], json!({"reopened": 1}), "{reopened}");
    assert_eq!(reopened["open_by_severity"], json!({"high": 1}));
    assert_eq!(reopened["score"], before["score"]);
    assert_eq!(reopened["top_findings"][0]["id"], id.as_str());

    let finding: Value = app
        .get(&format!("/v1/findings/{id}"), key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(finding["status"], "reopened", "{finding}");
    assert_eq!(finding["accepted_until"], Value::Null);
    let last = finding["history"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last["kind"], "risk_expired", "{finding}");

    // Done once: a second round has nothing to reopen or refresh.
    assert_eq!(
        reopen_expired_risk_acceptances(&app.owner).await.unwrap(),
        0
    );
    assert_eq!(refresh_jobs(&app, tenant.id, "queued").await, 0);
}

// Regression tests for three races: around the background refresh (the
// server's own workers run the jobs; the test decides when a job comes due and
// wakes them) and around the custom-framework cap.

use crate::support::test_config;
use posture::jobs::queue::{self, queue_posture_refresh};
use posture::store::{PoolSettings, Store};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A pool as the application role (row-level security applies), as the
/// server's handlers and workers use.
fn app_store(app: &TestApp) -> Store {
    Store::connect_lazy(
        &app.database.app_url(),
        &PoolSettings::for_command(&test_config(&app.database)),
    )
    .unwrap()
}

/// Wakes the server's idle workers, as a committed change does.
async fn wake_workers(app: &TestApp) {
    sqlx::query("SELECT pg_notify('posture_jobs', '')")
        .execute(app.owner.pool())
        .await
        .unwrap();
}

/// The posture refresh job `id`, if it exists: (status, attempts, last_error,
/// whether run_at is in the future).
async fn refresh_job(app: &TestApp, id: Uuid) -> Option<(String, i32, Option<String>, bool)> {
    sqlx::query_as(
        "SELECT status, attempts, last_error, run_at > now() FROM jobs
         WHERE id = $1 AND kind = 'refresh_posture'",
    )
    .bind(id)
    .fetch_optional(app.owner.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_change_made_while_a_refresh_is_queued_reaches_the_view() {
    // Workers poll often; no periodic upkeep queues refreshes of its own.
    let app = TestApp::spawn_with(|config| {
        config.job_poll_interval_ms = 50;
        config.maintenance_interval_secs = 3_600;
    })
    .await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    let store = app_store(&app);
    scan(&app, &tenant, &[("sqli", "error", 1)]).await;
    let before = posture_of(&app, key).await;
    assert_eq!(before["by_status"], json!({"open": 1}), "{before}");

    // A refresh already waits, queued by an earlier change; it comes due in a
    // moment. (Once the change below locks it, the test could not move its
    // run_at: that update would wait for the lock.)
    let waiting: Uuid = sqlx::query_scalar(
        "INSERT INTO jobs (tenant_id, id, kind, max_attempts, run_at)
         VALUES ($1, gen_random_uuid(), 'refresh_posture', 3, now() + interval '2 seconds')
         RETURNING id",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(app.owner.pool())
    .await
    .unwrap();

    // A change, as a handler makes it: the finding triaged and, in the same
    // transaction, a refresh queued — the waiting one covers it.
    let mut tx = store.begin_tenant(tenant.id).await.unwrap();
    let triaged = sqlx::query(
        "UPDATE findings SET status = 'false_positive', status_reason = 'test fixture'
         WHERE tenant_id = $1",
    )
    .bind(tenant.id.as_uuid())
    .execute(tx.conn())
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(triaged, 1);
    queue_posture_refresh(&mut tx).await.unwrap();
    let (status, _, _, not_yet_due) = refresh_job(&app, waiting).await.unwrap();
    assert_eq!(status, "queued");
    assert!(
        not_yet_due,
        "the change was made before the waiting refresh came due"
    );
    assert_eq!(refresh_jobs(&app, tenant.id, "queued").await, 1);

    // The refresh comes due while the change is uncommitted, and the workers
    // are woken. Neither they nor another claim may take it: run now, it would
    // read the data without the change and then be gone, and no refresh would
    // ever show the change.
    let due_in: f64 = sqlx::query_scalar(
        "SELECT greatest(extract(epoch FROM run_at - now()), 0)::float8 FROM jobs WHERE id = $1",
    )
    .bind(waiting)
    .fetch_one(app.owner.pool())
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs_f64(due_in) + Duration::from_millis(50)).await;
    wake_workers(&app).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let claimed = queue::claim(&store, "worker-t", 1, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(
            claimed.is_empty(),
            "the refresh covering an uncommitted change was claimed: {claimed:?}"
        );
        let status = refresh_job(&app, waiting).await.map(|job| job.0);
        assert_eq!(
            status.as_deref(),
            Some("queued"),
            "a worker took the refresh covering an uncommitted change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Once the change commits, the refresh runs and shows it.
    tx.commit().await.unwrap();
    app.wait_for_posture(tenant.id).await;
    let after = posture_of(&app, key).await;
    assert_eq!(
        after["by_status"],
        json!({"false_positive": 1}),
        "the committed change reached the view: {after}"
    );
    assert_eq!(after["score"], 100, "{after}");
}

#[tokio::test]
async fn concurrent_creates_never_exceed_the_custom_framework_cap() {
    // Connections enough, open beforehand, for the creates to run at once.
    let app = TestApp::spawn_with(|config| {
        config.db_pool_min = 16;
        config.db_pool_max = 16;
    })
    .await;
    let definition =
        |name: &str| json!({"name": name, "controls": [{"id": "A", "title": "t", "cwes": [89]}]});
    // Several tenants, each racing at the cap: one lucky interleaving must not hide a race.
    for round in 0..5 {
        let tenant = app.create_tenant(Tier::Premium).await;
        let key = &tenant.admin_key;
        for number in 1..=19 {
            let response = app
                .post_json(
                    "/v1/frameworks",
                    key,
                    &definition(&format!("Framework {number}")),
                )
                .await;
            assert_eq!(response.status(), 201, "framework {number}");
        }

        // Warm up: eight concurrent reads leave eight open HTTP connections
        // (and database connections in use), so the creates start together.
        let mut warming = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let request = app
                .client
                .get(format!("{}/v1/frameworks", app.address))
                .bearer_auth(key);
            warming.spawn(async move { request.send().await.unwrap().status() });
        }
        while let Some(status) = warming.join_next().await {
            assert_eq!(status.unwrap(), 200);
        }

        let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let mut racing = tokio::task::JoinSet::new();
        for number in 0..8 {
            let request = app
                .client
                .post(format!("{}/v1/frameworks", app.address))
                .bearer_auth(key)
                .json(&definition(&format!("Racer {number}")));
            let start = start.clone();
            racing.spawn(async move {
                start.wait().await;
                request.send().await.unwrap()
            });
        }
        let (mut created, mut refused) = (0, 0);
        while let Some(response) = racing.join_next().await {
            let response = response.unwrap();
            match response.status().as_u16() {
                201 => created += 1,
                409 => {
                    let problem = assert_problem(response, 409).await;
                    assert!(
                        problem["detail"].as_str().unwrap().contains("at most 20"),
                        "refused for the cap, not the name: {problem}"
                    );
                    refused += 1;
                }
                status => panic!("unexpected {status}: {}", response.text().await.unwrap()),
            }
        }
        assert_eq!((created, refused), (1, 7), "round {round}");
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM custom_frameworks WHERE tenant_id = $1")
                .bind(tenant.id.as_uuid())
                .fetch_one(app.owner.pool())
                .await
                .unwrap();
        assert_eq!(stored, 20, "round {round}");
    }
}

#[tokio::test]
async fn a_failed_refresh_covered_by_a_queued_one_is_dropped_not_left_running() {
    // Workers poll often; no periodic upkeep queues refreshes of its own.
    let app = TestApp::spawn_with(|config| {
        config.job_poll_interval_ms = 50;
        config.maintenance_interval_secs = 3_600;
    })
    .await;
    let tenant = app.create_tenant(Tier::Premium).await;
    // A first view (computed on this first read), so no upkeep round finds the
    // tenant due (the first round runs as the server starts); then no refresh is pending.
    posture_of(&app, &tenant.admin_key).await;
    app.wait_for_posture(tenant.id).await;
    let (computed_at, _, _) = stored_summary(&app, tenant.id).await;

    // A stored framework the refresh cannot read (a control without a title,
    // which the API would refuse) fails every refresh of the tenant alike.
    sqlx::query(
        r#"INSERT INTO custom_frameworks (tenant_id, id, name, controls)
           VALUES ($1, gen_random_uuid(), 'Unreadable', '[{"id": "x"}]')"#,
    )
    .bind(tenant.id.as_uuid())
    .execute(app.owner.pool())
    .await
    .unwrap();
    // Together: a refresh queued an hour ahead, and one whose worker died on
    // its first attempt (its lease has expired, so a worker takes it over).
    let (queued, orphan): (Uuid, Uuid) = sqlx::query_as(
        "WITH queued AS (
             INSERT INTO jobs (tenant_id, id, kind, max_attempts, run_at)
             VALUES ($1, gen_random_uuid(), 'refresh_posture', 3, now() + interval '1 hour')
             RETURNING id
         ), orphan AS (
             INSERT INTO jobs (tenant_id, id, kind, max_attempts, status, attempts, locked_by,
                               locked_until)
             VALUES ($1, gen_random_uuid(), 'refresh_posture', 3, 'running', 1, 'dead-worker',
                     now() - interval '1 second')
             RETURNING id
         )
         SELECT queued.id, orphan.id FROM queued, orphan",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(app.owner.pool())
    .await
    .unwrap();
    wake_workers(&app).await;

    // A worker takes the orphan over and its refresh fails. The failure is
    // recorded at once: the queued refresh covers the failed one's work, so the
    // failed one is gone — not re-queued beside it (the one-queued-refresh
    // index refuses that), nor left running until its new lease runs out.
    let started = Instant::now();
    loop {
        let orphan_job = refresh_job(&app, orphan).await;
        if orphan_job.is_none() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the failed refresh was not dropped: {orphan_job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        refresh_job(&app, queued).await,
        Some(("queued".to_owned(), 0, None, true)),
        "the queued one is untouched"
    );
    assert_eq!(
        stored_summary(&app, tenant.id).await.0,
        computed_at,
        "the refresh failed: the view is as it was"
    );

    // With no refresh queued beside it, a failed one is retried as usual.
    sqlx::query("UPDATE jobs SET run_at = now() WHERE id = $1")
        .bind(queued)
        .execute(app.owner.pool())
        .await
        .unwrap();
    wake_workers(&app).await;
    let started = Instant::now();
    let retried = loop {
        let job = refresh_job(&app, queued).await.expect("kept for its retry");
        if job.2.is_some() {
            break job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the failure was not recorded: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (status, attempts, _, later) = &retried;
    assert_eq!(
        (status.as_str(), *attempts, *later),
        ("queued", 1, true),
        "{retried:?}"
    );
}
