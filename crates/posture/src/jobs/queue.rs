//! The durable job queue in PostgreSQL.
//!
//! Jobs are rows written in the same transaction as the thing they process (see
//! `store::scans::insert`). Workers claim them with `claim_jobs()` — `FOR UPDATE
//! SKIP LOCKED`, one lease per claim — and finish them inside the tenant
//! transaction that applies their effects, checking they still hold the lease, so
//! a job's effects commit exactly once even if a slow worker and its replacement
//! both run it.

use crate::store::{Store, TenantTx};
use posture_domain::ids::ScanId;
use posture_domain::TenantId;
use rand::Rng;
use std::time::Duration;
use uuid::Uuid;

/// A job a worker has claimed.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub tenant_id: TenantId,
    pub job_id: Uuid,
    pub kind: String,
    pub scan_id: Option<ScanId>,
    /// 1 on the first try.
    pub attempt: i32,
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Queued again to run after the backoff.
    RetryScheduled,
    /// Out of attempts: the job is dead and visible as such through the API.
    Dead,
    /// Another worker holds the job now (our lease expired); nothing changed.
    LeaseLost,
}

/// The SQL condition for "this worker still holds this job", with the tenant,
/// job id, worker and attempt bound as `$1`–`$4`: a job whose lease expired and
/// was claimed again (a later attempt) is no longer ours to finish.
const HELD_BY_WORKER: &str =
    "tenant_id = $1 AND id = $2 AND status = 'running' AND locked_by = $3 AND attempts = $4";

/// Claims up to `max_jobs` runnable jobs of any tenant for `worker`.
pub async fn claim(
    store: &Store,
    worker: &str,
    max_jobs: i32,
    lease: Duration,
) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let rows: Vec<(Uuid, Uuid, String, Option<Uuid>, i32)> =
        sqlx::query_as("SELECT tenant_id, job_id, kind, scan_id, attempt FROM claim_jobs($1, $2, make_interval(secs => $3))")
            .bind(worker)
            .bind(max_jobs)
            .bind(lease.as_secs_f64())
            .fetch_all(store.pool())
            .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, job_id, kind, scan_id, attempt)| ClaimedJob {
            tenant_id: TenantId::from_uuid(tenant_id),
            job_id,
            kind,
            scan_id: scan_id.map(ScanId::from_uuid),
            attempt,
        })
        .collect())
}

/// Marks the job done inside the transaction that applied its effects. Returns
/// false if this worker no longer holds it: the caller must then roll back.
pub async fn complete(
    tx: &mut TenantTx,
    job: &ClaimedJob,
    worker: &str,
) -> Result<bool, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let updated = sqlx::query(&format!(
        "UPDATE jobs SET status = 'succeeded', locked_by = NULL, locked_until = NULL, updated_at = now(),
                         last_error = NULL
         WHERE {HELD_BY_WORKER}"
    ))
    .bind(tenant_id)
    .bind(job.job_id)
    .bind(worker)
    .bind(job.attempt)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Queues a posture refresh for the transaction's tenant, in the transaction
/// that changed its findings (or anything else the posture view shows), so the
/// change and the refresh commit together. At most one refresh waits per tenant:
/// if one is already queued it covers this change too — and this transaction
/// then row-locks it (the no-op `DO UPDATE`), so no worker can claim it (claims
/// skip locked rows) and read the data before this change commits. `DO NOTHING`
/// would take no lock, and the change could miss every refresh.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn queue_posture_refresh(tx: &mut TenantTx) -> Result<(), sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let queued: bool = sqlx::query_scalar(
        "INSERT INTO jobs (tenant_id, id, kind, max_attempts) VALUES ($1, $2, 'refresh_posture', 3)
         ON CONFLICT (tenant_id) WHERE kind = 'refresh_posture' AND status = 'queued'
         DO UPDATE SET updated_at = now()
         RETURNING (xmax = 0) AS inserted",
    )
    .bind(tenant_id)
    .bind(Uuid::now_v7())
    .fetch_one(tx.conn())
    .await?;
    if queued {
        // Delivered on commit: idle workers wake at once instead of at their next poll.
        sqlx::query("SELECT pg_notify('posture_jobs', '')")
            .execute(tx.conn())
            .await?;
    }
    Ok(())
}

/// Whether `worker` still holds the running job, row-locking it until the
/// transaction ends (so the check stays true until then).
pub async fn still_held(
    tx: &mut TenantTx,
    job: &ClaimedJob,
    worker: &str,
) -> Result<bool, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let held: Option<i32> = sqlx::query_scalar(&format!(
        "SELECT 1 FROM jobs
         WHERE {HELD_BY_WORKER}
         FOR UPDATE"
    ))
    .bind(tenant_id)
    .bind(job.job_id)
    .bind(worker)
    .bind(job.attempt)
    .fetch_optional(tx.conn())
    .await?;
    Ok(held.is_some())
}

/// Deletes a finished job that leaves nothing to show (a posture refresh),
/// inside the transaction that stored its result. Returns false if this worker
/// no longer holds it: the caller must then roll back.
pub async fn complete_by_deleting(
    tx: &mut TenantTx,
    job: &ClaimedJob,
    worker: &str,
) -> Result<bool, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let deleted = sqlx::query(&format!(
        "DELETE FROM jobs
         WHERE {HELD_BY_WORKER}"
    ))
    .bind(tenant_id)
    .bind(job.job_id)
    .bind(worker)
    .bind(job.attempt)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(deleted == 1)
}

/// Extends this worker's lease on a running job; false if it no longer holds it.
pub async fn renew(
    tx: &mut TenantTx,
    job: &ClaimedJob,
    worker: &str,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let updated = sqlx::query(&format!(
        "UPDATE jobs SET locked_until = now() + make_interval(secs => $5), updated_at = now()
         WHERE {HELD_BY_WORKER}"
    ))
    .bind(tenant_id)
    .bind(job.job_id)
    .bind(worker)
    .bind(job.attempt)
    .bind(lease.as_secs_f64())
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Records a failed attempt of a posture refresh when another refresh of the
/// tenant is already queued: that one covers this one's work, so this one is
/// deleted (re-queueing it would break the one-queued-refresh rule). Returns
/// false when there is no such sibling (or this worker lost the job): then
/// record the failure with [`fail`].
pub async fn drop_failed_refresh_if_covered(
    tx: &mut TenantTx,
    job: &ClaimedJob,
    worker: &str,
) -> Result<bool, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let deleted = sqlx::query(&format!(
        "DELETE FROM jobs
         WHERE {HELD_BY_WORKER}
           AND kind = 'refresh_posture'
           AND EXISTS (SELECT 1 FROM jobs queued
                       WHERE queued.tenant_id = $1 AND queued.kind = 'refresh_posture'
                         AND queued.status = 'queued')"
    ))
    .bind(tenant_id)
    .bind(job.job_id)
    .bind(worker)
    .bind(job.attempt)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(deleted == 1)
}

/// Records a failed attempt: queued again after an exponential backoff with
/// jitter, or dead when out of attempts.
pub async fn fail(
    tx: &mut TenantTx,
    job: &ClaimedJob,
    worker: &str,
    error: &str,
    retry_base: Duration,
) -> Result<FailureOutcome, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let backoff = retry_delay(retry_base, job.attempt);
    let status: Option<String> = sqlx::query_scalar(&format!(
        "UPDATE jobs
         SET status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
             run_at = now() + make_interval(secs => $5),
             locked_by = NULL, locked_until = NULL, updated_at = now(), last_error = left($6, 2000)
         WHERE {HELD_BY_WORKER}
         RETURNING status"
    ))
    .bind(tenant_id)
    .bind(job.job_id)
    .bind(worker)
    .bind(job.attempt)
    .bind(backoff.as_secs_f64())
    .bind(error)
    .fetch_optional(tx.conn())
    .await?;
    Ok(match status.as_deref() {
        Some("dead") => FailureOutcome::Dead,
        Some(_) => FailureOutcome::RetryScheduled,
        None => FailureOutcome::LeaseLost,
    })
}

/// `base × 4^(attempt-1)`, capped at one hour, with ±25 % jitter so jobs failed
/// together do not retry together.
pub fn retry_delay(base: Duration, attempt: i32) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(10);
    let delay = base
        .saturating_mul(4u32.saturating_pow(exponent))
        .min(Duration::from_secs(3600));
    delay.mul_f64(rand::thread_rng().gen_range(0.75..=1.25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        let base = Duration::from_secs(2);
        let first = retry_delay(base, 1);
        assert!(first >= Duration::from_millis(1500) && first <= Duration::from_millis(2500));
        let third = retry_delay(base, 3);
        assert!(third >= Duration::from_secs(24) && third <= Duration::from_secs(40));
        assert!(retry_delay(base, 50) <= Duration::from_secs(4500));
    }
}
