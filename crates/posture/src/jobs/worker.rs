//! Workers: claim jobs, run them, record failures; woken by LISTEN/NOTIFY.
//!
//! Each worker loops: claim one job; if there is none, sleep until a
//! notification (a scan was committed), the poll interval (retries come due
//! without a notification) or shutdown. Each job runs in its own task, so a
//! panic is contained and recorded as a failed attempt, not a dead worker.

use super::queue::{self, ClaimedJob, FailureOutcome};
use crate::cache::views::ViewCache;
use crate::ingest::process::ScanProcessor;
use crate::store::{deliveries, notifications, scans, Store, TenantTx};
use crate::summary::refresh::{self, Refreshed};
use crate::webhooks::triggers;
use posture_domain::ids::ScanId;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The kind of the job that recomputes a tenant's posture summary.
const REFRESH_POSTURE: &str = "refresh_posture";

/// The channel `store::scans::insert` notifies on commit.
pub const JOBS_CHANNEL: &str = "posture_jobs";

/// How the workers of one process behave.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Concurrent workers (0: none in this process).
    pub count: usize,
    /// How long a claim is valid; an expired claim is taken over.
    pub lease: Duration,
    /// First retry delay; later ones grow fourfold.
    pub retry_base: Duration,
    /// Fallback polling interval when no notification arrives.
    pub poll_interval: Duration,
    /// Largest report a stored scan may decompress to.
    pub max_report_bytes: usize,
    /// How often periodic upkeep runs (reopening lapsed risk acceptances).
    pub maintenance_interval: Duration,
    /// `statement_timeout` of the transaction that applies a scan.
    pub apply_statement_timeout: Duration,
    /// How long finished webhook events are kept.
    pub webhook_retention_days: i32,
}

/// Starts the workers (and one LISTEN connection) until `shutdown` is cancelled.
/// A worker finishes the job in hand before it stops.
pub fn spawn_workers(
    store: Store,
    settings: WorkerSettings,
    views: Option<Arc<ViewCache>>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    if settings.count == 0 {
        return Vec::new();
    }
    let wake = Arc::new(Notify::new());
    let mut handles = vec![
        tokio::spawn(listen(store.clone(), wake.clone(), shutdown.clone())),
        tokio::spawn(maintain(
            store.clone(),
            settings.maintenance_interval,
            settings.webhook_retention_days,
            shutdown.clone(),
        )),
    ];
    let instance = format!("{}-{:04x}", std::process::id(), rand::random::<u16>());
    for number in 0..settings.count {
        let processor = ScanProcessor {
            store: store.clone(),
            worker_id: format!("worker-{instance}-{number}"),
            max_report_bytes: settings.max_report_bytes,
            apply_statement_timeout: settings.apply_statement_timeout,
            views: views.clone(),
        };
        handles.push(tokio::spawn(work(
            processor,
            settings.clone(),
            wake.clone(),
            shutdown.clone(),
        )));
    }
    handles
}

/// Forwards notifications to idle workers (until reconnected after an error,
/// they poll).
async fn listen(store: Store, wake: Arc<Notify>, shutdown: CancellationToken) {
    notifications::listen(store, JOBS_CHANNEL, shutdown, |_| wake.notify_waiters()).await;
}

/// Most webhook events one pruning statement deletes; a round repeats it
/// while batches come back full, up to [`PRUNE_BATCHES_PER_ROUND`].
const PRUNE_BATCH: i32 = 10_000;
const PRUNE_BATCHES_PER_ROUND: usize = 10;

/// Most findings one upkeep round reopens (the rest wait for the next round).
const RISK_EXPIRY_BATCH: i32 = 1_000;

/// Periodic upkeep: findings whose risk acceptance has lapsed reopen even if no
/// scan sees them again, and tenants whose posture view is due get a refresh
/// (the daily snapshot job). Runs in every worker process; `SKIP LOCKED` in the
/// function keeps concurrent rounds from colliding.
async fn maintain(
    store: Store,
    interval: Duration,
    retention_days: i32,
    shutdown: CancellationToken,
) {
    // The first round runs one interval after start, not at once: upkeep is
    // periodic work, and tests that set a long interval get none.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match reopen_expired_risk_acceptances(&store).await {
            Ok(0) => {}
            Ok(reopened) => {
                tracing::info!(reopened, "reopened findings whose risk acceptance expired");
                wake_workers(&store).await;
            }
            Err(error) => tracing::warn!(%error, "reopening expired risk acceptances failed"),
        }
        for _ in 0..PRUNE_BATCHES_PER_ROUND {
            match deliveries::prune(&store, retention_days, PRUNE_BATCH).await {
                Ok(pruned) => {
                    if pruned > 0 {
                        tracing::info!(pruned, "pruned old webhook events");
                    }
                    if pruned < i64::from(PRUNE_BATCH) {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "pruning webhook events failed");
                    break;
                }
            }
        }
        match queue_due_posture_refreshes(&store).await {
            Ok(0) => {}
            Ok(queued) => {
                tracing::info!(queued, "queued posture refreshes that came due");
                wake_workers(&store).await;
            }
            Err(error) => tracing::warn!(%error, "queueing due posture refreshes failed"),
        }
    }
}

/// Reopens up to a batch of findings whose accepted risk has expired, across
/// tenants; returns how many.
pub async fn reopen_expired_risk_acceptances(store: &Store) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT reopen_expired_risk_acceptances($1)")
        .bind(RISK_EXPIRY_BATCH)
        .fetch_one(store.pool())
        .await
}

/// Tells idle workers (of every process) that jobs were queued outside a
/// request: the SQL upkeep functions do not notify themselves.
async fn wake_workers(store: &Store) {
    if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
        .bind(JOBS_CHANNEL)
        .execute(store.pool())
        .await
    {
        tracing::debug!(%error, "could not notify workers; they will poll");
    }
}

/// Most tenants one upkeep round queues a refresh for.
const REFRESH_BATCH: i32 = 1_000;

/// Queues a posture refresh for tenants whose view is due: a new UTC day (the
/// daily snapshot), an SLA date passed, or no view yet. Returns how many.
pub async fn queue_due_posture_refreshes(store: &Store) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT queue_due_posture_refreshes($1)")
        .bind(REFRESH_BATCH)
        .fetch_one(store.pool())
        .await
}

async fn work(
    processor: ScanProcessor,
    settings: WorkerSettings,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        // Register interest before claiming, so a notification sent between an
        // empty claim and the wait is not missed.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match queue::claim(&processor.store, &processor.worker_id, 1, settings.lease).await {
            Ok(jobs) if !jobs.is_empty() => {
                for job in jobs {
                    run_one(&processor, &settings, job).await;
                }
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "claiming jobs failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = &mut notified => {}
            () = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
}

/// Runs one job in its own task and records a failure (error or panic).
pub async fn run_one(processor: &ScanProcessor, settings: &WorkerSettings, job: ClaimedJob) {
    let task = {
        let processor = processor.clone();
        let job = job.clone();
        tokio::spawn(async move { dispatch(&processor, &job).await })
    };
    // Keep the lease while the job runs, so a long apply is not taken over by
    // another worker (which would wait on its locks and then redo the work).
    let heartbeat = tokio::spawn(renew_lease(
        processor.store.clone(),
        processor.worker_id.clone(),
        job.clone(),
        settings.lease,
    ));
    let result = task.await;
    heartbeat.abort();
    let failure = match result {
        Ok(Ok(outcome)) => {
            tracing::debug!(?outcome, job_id = %job.job_id, "job finished");
            return;
        }
        Ok(Err(error)) if is_permanent(&error) => {
            // Retrying cannot help: the store refuses a value of this report.
            tracing::warn!(job_id = %job.job_id, error = format!("{error:#}"), "job failed permanently");
            let message =
                "the report holds a value the store cannot keep (e.g. an out-of-range number)";
            match record_permanent_failure(&processor.store, &processor.worker_id, &job, message)
                .await
            {
                Ok(()) => return,
                Err(record_error) => {
                    format!("{error:#}; then recording the failure failed: {record_error}")
                }
            }
        }
        Ok(Err(error)) => format!("{error:#}"),
        Err(join_error) if join_error.is_panic() => "the job panicked".to_owned(),
        Err(join_error) => format!("the job task failed: {join_error}"),
    };
    tracing::warn!(job_id = %job.job_id, attempt = job.attempt, error = %failure, "job attempt failed");
    if let Err(error) = record_failure(
        &processor.store,
        &processor.worker_id,
        settings,
        &job,
        &failure,
    )
    .await
    {
        // The lease will expire and the job be claimed again.
        tracing::error!(%error, job_id = %job.job_id, "could not record the job failure");
    }
}

/// How a job that ran to the end finished (for the job log).
#[derive(Debug)]
#[allow(dead_code)] // The fields are read through `Debug` only.
enum Finished {
    Scan(crate::ingest::process::Processed),
    Refresh(Refreshed),
}

/// Runs a job by its kind.
async fn dispatch(processor: &ScanProcessor, job: &ClaimedJob) -> anyhow::Result<Finished> {
    match job.kind.as_str() {
        REFRESH_POSTURE => refresh::refresh(
            &processor.store,
            job.tenant_id,
            Some((job, processor.worker_id.as_str())),
            processor.views.as_deref(),
        )
        .await
        .map(Finished::Refresh),
        _ => processor.process(job).await.map(Finished::Scan),
    }
}

/// Extends the job's lease every third of its length while this worker holds it.
async fn renew_lease(store: Store, worker_id: String, job: ClaimedJob, lease: Duration) {
    let mut ticks = tokio::time::interval(lease / 3);
    ticks.tick().await; // The first tick is immediate; the claim just set the lease.
    loop {
        ticks.tick().await;
        let renewed = async {
            let mut tx = store.begin_tenant(job.tenant_id).await?;
            let held = queue::renew(&mut tx, &job, &worker_id, lease).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(held)
        };
        match renewed.await {
            Ok(true) => {}
            Ok(false) => return, // Finished or taken over: nothing to keep.
            Err(error) => {
                tracing::warn!(%error, job_id = %job.job_id, "could not renew the job's lease")
            }
        }
    }
}

/// Whether a failed attempt would fail the same way every time: the database
/// refused a value (data exception, check violation, a key too large to index).
fn is_permanent(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(db)) => {
                let code = db.code().unwrap_or_default();
                code.starts_with("22") || code == "23514" || code == "54000"
            }
            _ => false,
        })
}

/// Ends a job whose scan cannot be applied: the scan fails with `message`, and the
/// job is done (not retried).
async fn record_permanent_failure(
    store: &Store,
    worker_id: &str,
    job: &ClaimedJob,
    message: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_tenant(job.tenant_id).await?;
    let completed = if job.kind == REFRESH_POSTURE {
        queue::complete_by_deleting(&mut tx, job, worker_id).await?
    } else {
        queue::complete(&mut tx, job, worker_id).await?
    };
    if !completed {
        return Ok(());
    }
    if let Some(scan_id) = job.scan_id {
        fail_scan(&mut tx, scan_id, "unstorable_report", message).await?;
    }
    tx.commit().await
}

async fn record_failure(
    store: &Store,
    worker_id: &str,
    settings: &WorkerSettings,
    job: &ClaimedJob,
    failure: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_tenant(job.tenant_id).await?;
    if job.kind == REFRESH_POSTURE
        && queue::drop_failed_refresh_if_covered(&mut tx, job, worker_id).await?
    {
        return tx.commit().await;
    }
    let outcome = queue::fail(&mut tx, job, worker_id, failure, settings.retry_base).await?;
    if let (FailureOutcome::Dead, Some(scan_id)) = (outcome, job.scan_id) {
        let message = "processing failed on every attempt; see the job's last error";
        fail_scan(&mut tx, scan_id, "processing_failed", message).await?;
    }
    tx.commit().await
}

/// Marks the scan failed and announces it (`scan.failed`), in one transaction.
async fn fail_scan(
    tx: &mut TenantTx,
    scan_id: ScanId,
    kind: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    scans::mark_failed(tx, scan_id, &json!({ "kind": kind, "message": message })).await?;
    if let Some(scan) = scans::get(tx, scan_id).await? {
        triggers::scan_failed(tx, scan_id, scan.asset_id, kind, message).await?;
    }
    Ok(())
}
