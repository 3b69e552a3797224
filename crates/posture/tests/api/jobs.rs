//! The durable queue: a crashed worker's job is finished by another with no
//! duplicated findings, a stale worker cannot commit over it, and a job that
//! keeps failing ends dead and visible through the API.

use crate::support::{test_config, TestApp};
use posture::ingest::process::{Processed, ScanProcessor};
use posture::jobs::queue;
use posture::store::{PoolSettings, Store};
use posture_domain::Tier;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use std::time::{Duration, Instant};

fn report(results: usize) -> Vec<u8> {
    let results: Vec<Value> = (0..results)
        .map(|i| {
            json!({
                "ruleId": format!("rule-{i}"),
                "level": "warning",
                "message": {"text": format!("issue {i}")},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "src/main.rs"}, "region": {"startLine": i + 1}}}]
            })
        })
        .collect();
    serde_json::to_vec(&json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "clippy"}}, "results": results}]}))
        .unwrap()
}

async fn submit(app: &TestApp, key: &str, body: Vec<u8>) -> String {
    let response = app
        .client
        .post(format!(
            "{}/v1/scans?asset_kind=repository&asset_name=acme/core&scope=full",
            app.address
        ))
        .bearer_auth(key)
        .header("content-type", "application/sarif+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn scan_status(app: &TestApp, key: &str, location: &str) -> Value {
    app.get(location, key).await.json().await.unwrap()
}

async fn wait_until(
    app: &TestApp,
    key: &str,
    location: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let scan = scan_status(app, key, location).await;
        if done(&scan) {
            return scan;
        }
        assert!(started.elapsed() < within, "not within {within:?}: {scan}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_crashed_workers_job_is_finished_by_another_without_duplicates() {
    // No workers in the server: this test plays them.
    let app = TestApp::spawn_with(|config| config.workers = 0).await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let location = submit(&app, &tenant.admin_key, report(25)).await;
    assert_eq!(
        scan_status(&app, &tenant.admin_key, &location).await["status"],
        "queued"
    );

    let config = test_config(&app.database);
    let store =
        Store::connect_lazy(&app.database.app_url(), &PoolSettings::for_command(&config)).unwrap();
    // Worker A claims the job with a short lease and "crashes" (never finishes).
    let lease = Duration::from_millis(500);
    let claimed = queue::claim(&store, "worker-a", 5, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let stale = claimed[0].clone();
    assert_eq!(stale.attempt, 1);
    // While A's lease holds, nobody else gets the job.
    assert!(queue::claim(&store, "worker-b", 5, lease)
        .await
        .unwrap()
        .is_empty());

    // After the lease expires, worker B takes it over and finishes it.
    let started = Instant::now();
    let retaken = loop {
        let jobs = queue::claim(&store, "worker-b", 5, Duration::from_secs(60))
            .await
            .unwrap();
        if let Some(job) = jobs.into_iter().next() {
            break job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the expired lease was not taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((retaken.job_id, retaken.attempt), (stale.job_id, 2));
    let processor = |worker: &str| ScanProcessor {
        store: store.clone(),
        worker_id: worker.to_owned(),
        max_report_bytes: 1 << 20,
        apply_statement_timeout: Duration::from_secs(60),
        views: None,
    };
    assert_eq!(
        processor("worker-b").process(&retaken).await.unwrap(),
        Processed::Applied
    );

    // Worker A wakes up and runs its stale claim: it must not commit anything.
    assert_eq!(
        processor("worker-a").process(&stale).await.unwrap(),
        Processed::LeaseLost
    );

    let scan = scan_status(&app, &tenant.admin_key, &location).await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    assert_eq!(scan["counts"]["new"], 25);
    assert_eq!(scan["job"]["status"], "succeeded");
    assert_eq!(scan["job"]["attempts"], 2);
    let mut owner = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    let (findings, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM findings WHERE tenant_id = $1),
                (SELECT count(*) FROM finding_events WHERE tenant_id = $1)",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(
        (findings, events),
        (25, 25),
        "each finding and its creation exactly once"
    );
}

#[tokio::test]
async fn in_process_workers_pick_up_submitted_scans() {
    let app = TestApp::spawn_with(|config| {
        config.workers = 1;
        // A long poll interval: only the commit notification can wake the worker in time.
        config.job_poll_interval_ms = 60_000;
    })
    .await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    // Let the worker reach its idle wait, so this scan arrives by notification.
    let first = submit(&app, &tenant.admin_key, report(3)).await;
    let done = wait_until(
        &app,
        &tenant.admin_key,
        &first,
        Duration::from_secs(10),
        |s| s["status"] == "succeeded",
    )
    .await;
    assert_eq!(done["counts"]["total"], 3);
    let second = submit(&app, &tenant.admin_key, report(4)).await;
    let done = wait_until(
        &app,
        &tenant.admin_key,
        &second,
        Duration::from_secs(10),
        |s| s["status"] == "succeeded",
    )
    .await;
    assert_eq!(
        done["counts"]["new"], 1,
        "rule-3 is new; the first three are unchanged"
    );
    assert_eq!(done["counts"]["unchanged"], 3);
}

/// Installs (as the owner) a trigger that corrupts every stored report as it is
/// written, so every attempt to process it fails to decompress it.
pub(crate) async fn corrupt_stored_reports(owner: &mut PgConnection) {
    sqlx::raw_sql(
        "CREATE FUNCTION corrupt_report() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.body := '\\x00010203'::bytea; RETURN NEW; END $$;
         CREATE TRIGGER corrupt_report BEFORE INSERT ON scan_reports FOR EACH ROW EXECUTE FUNCTION corrupt_report();",
    )
    .execute(owner)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_job_that_keeps_failing_ends_dead_and_its_scan_failed() {
    let app = TestApp::spawn_with(|config| {
        config.workers = 1;
        config.job_max_attempts = 2;
        config.job_retry_base_ms = 20;
        config.job_poll_interval_ms = 50;
    })
    .await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    // A trigger (installed as the owner) corrupts every stored report as it is
    // written, so every attempt fails to decompress it: a transient-looking failure.
    let mut owner = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    corrupt_stored_reports(&mut owner).await;
    let location = submit(&app, &tenant.admin_key, report(2)).await;
    let scan = wait_until(
        &app,
        &tenant.admin_key,
        &location,
        Duration::from_secs(10),
        |s| s["status"] == "failed",
    )
    .await;
    assert_eq!(scan["job"]["status"], "dead", "{scan}");
    assert_eq!(scan["job"]["attempts"], 2);
    assert!(
        scan["job"]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{scan}"
    );
    assert_eq!(scan["error"]["kind"], "processing_failed");
}

#[tokio::test]
async fn a_report_larger_than_one_write_batch_is_applied_and_rescanned_exactly() {
    // 12,000 results: three write batches of new findings, then a rescan with
    // the last 1,500 removed (resolutions spanning batches).
    let app = TestApp::spawn_with(|config| config.workers = 1).await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let first = submit(&app, &tenant.admin_key, report(12_000)).await;
    let done = wait_until(
        &app,
        &tenant.admin_key,
        &first,
        Duration::from_secs(60),
        |s| s["status"] == "succeeded",
    )
    .await;
    assert_eq!(done["counts"]["new"], 12_000, "{done}");
    let second = submit(&app, &tenant.admin_key, report(10_500)).await;
    let done = wait_until(
        &app,
        &tenant.admin_key,
        &second,
        Duration::from_secs(60),
        |s| s["status"] == "succeeded",
    )
    .await;
    assert_eq!(
        (
            done["counts"]["unchanged"].as_i64(),
            done["counts"]["resolved"].as_i64()
        ),
        (Some(10_500), Some(1_500)),
        "{done}"
    );
    let mut owner = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    let (findings, open, events): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'open'),
                (SELECT count(*) FROM finding_events WHERE tenant_id = $1)
         FROM findings WHERE tenant_id = $1",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!((findings, open, events), (12_000, 10_500, 13_500));
}

#[tokio::test]
async fn a_worker_killed_mid_apply_leaves_a_job_another_worker_finishes_once() {
    let app = TestApp::spawn_with(|config| config.workers = 0).await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let location = submit(&app, &tenant.admin_key, report(40)).await;
    let config = test_config(&app.database);
    let store =
        Store::connect_lazy(&app.database.app_url(), &PoolSettings::for_command(&config)).unwrap();
    let processor = |worker: &str| ScanProcessor {
        store: store.clone(),
        worker_id: worker.to_owned(),
        max_report_bytes: 1 << 20,
        apply_statement_timeout: Duration::from_secs(60),
        views: None,
    };

    // Hold the asset row so worker A's apply blocks inside its transaction (its
    // inserts check the foreign key to the asset): A is then killed mid-apply.
    let mut owner = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    let mut blocker = owner.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM assets WHERE tenant_id = $1 FOR UPDATE")
        .bind(tenant.id.as_uuid())
        .execute(&mut *blocker)
        .await
        .unwrap();
    let job = queue::claim(&store, "worker-a", 1, Duration::from_millis(500))
        .await
        .unwrap()
        .remove(0);
    let worker_a = processor("worker-a");
    let running = tokio::spawn(async move { worker_a.process(&job).await });
    // Wait (bounded) until A is stuck on the lock, then kill it.
    let mut watcher = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            // pg_locks, not pg_stat_activity: the latter hides other roles' wait states.
            "SELECT count(*) FROM pg_locks WHERE NOT granted",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "worker A never reached its apply"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    blocker.rollback().await.unwrap();

    // Worker B takes the job over once A's lease expires and finishes it.
    let started = Instant::now();
    let retaken = loop {
        if let Some(job) = queue::claim(&store, "worker-b", 1, Duration::from_secs(60))
            .await
            .unwrap()
            .into_iter()
            .next()
        {
            break job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the killed worker's job was not taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        processor("worker-b").process(&retaken).await.unwrap(),
        Processed::Applied
    );
    let scan = scan_status(&app, &tenant.admin_key, &location).await;
    assert_eq!(
        (scan["status"].as_str(), scan["counts"]["new"].as_i64()),
        (Some("succeeded"), Some(40)),
        "{scan}"
    );
    let (findings, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM findings WHERE tenant_id = $1),
                (SELECT count(*) FROM finding_events WHERE tenant_id = $1)",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(
        (findings, events),
        (40, 40),
        "nothing of the killed attempt survived; nothing doubled"
    );
}

#[tokio::test]
async fn a_lease_is_renewed_only_by_its_holder() {
    let app = TestApp::spawn_with(|config| config.workers = 0).await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    submit(&app, &tenant.admin_key, report(1)).await;
    let config = test_config(&app.database);
    let store =
        Store::connect_lazy(&app.database.app_url(), &PoolSettings::for_command(&config)).unwrap();
    let job = queue::claim(&store, "worker-a", 1, Duration::from_millis(100))
        .await
        .unwrap()
        .remove(0);

    let mut tx = store.begin_tenant(job.tenant_id).await.unwrap();
    assert!(
        queue::renew(&mut tx, &job, "worker-a", Duration::from_secs(600))
            .await
            .unwrap()
    );
    assert!(
        !queue::renew(&mut tx, &job, "worker-b", Duration::from_secs(600))
            .await
            .unwrap(),
        "not b's lease"
    );
    tx.commit().await.unwrap();
    let mut owner = PgConnection::connect(&app.database.owner_url())
        .await
        .unwrap();
    let remaining: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM locked_until - now())::float8 FROM jobs WHERE id = $1",
    )
    .bind(job.job_id)
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert!(
        remaining > 500.0,
        "the lease was extended: {remaining} s left"
    );
    // Held, so nobody else can claim it.
    assert!(queue::claim(&store, "worker-b", 1, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
}
