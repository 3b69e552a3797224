//! Idempotency keys of the transaction's tenant (`idempotency_keys`).
//!
//! The HTTP layer (`http::idempotency`) calls [`claim`] in one short transaction
//! before the handler runs and [`complete`] or [`release`] in another after it:
//! no transaction stays open while the handler works. All time comparisons use
//! the database's `now()`, so instances with skewed clocks agree on whether a
//! lock or a key has expired.

use super::TenantTx;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// The entry a key names: the same key string on another route is another entry
/// (and the tenant comes from the transaction).
#[derive(Debug, Clone, Copy)]
pub struct KeyScope<'a> {
    /// The client's `Idempotency-Key`.
    pub key: &'a str,
    /// The request method (`POST`).
    pub method: &'a str,
    /// The request path, without the query.
    pub path: &'a str,
}

/// The headers of a stored response worth replaying.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHeaders {
    /// `Location`, e.g. of a created asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `Content-Type` of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// A completed request's response, as stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: StoredHeaders,
    pub body: Vec<u8>,
}

/// The outcome of [`claim`].
#[derive(Debug)]
pub enum Claim {
    /// The key is now held by `lock_token`: run the request, then [`complete`] or
    /// [`release`]. `taken_over` when an earlier holder's lock had expired.
    Acquired { taken_over: bool },
    /// The key completed earlier with this response, for the same request.
    Completed(StoredResponse),
    /// Another request with this key is running; retry after about this long.
    InFlight { retry_after: Duration },
    /// The key was used for a different request (another body or query).
    Mismatch,
}

#[derive(sqlx::FromRow)]
struct ExistingRow {
    request_hash: Vec<u8>,
    status: String,
    response_status: Option<i32>,
    response_headers: Option<sqlx::types::Json<StoredHeaders>>,
    response_body: Option<Vec<u8>>,
    expired: bool,
    lock_expired: bool,
    lock_remaining_secs: i64,
}

/// Claims `scope` for the request whose fingerprint is `request_hash`.
///
/// Inserts the key as `in_flight`, held by `lock_token` for `lock_for`; if it
/// exists, decides from the stored row. An expired key is deleted and claimed
/// afresh (the lazy half of expiry); an in-flight key whose lock has passed is
/// taken over, because its holder's process died (a live holder is bounded by
/// the request timeout, which `lock_for` exceeds). Concurrent claims are
/// serialized by the primary key: a second `INSERT … ON CONFLICT DO NOTHING`
/// waits for the first transaction, and the existing row is then read `FOR
/// UPDATE`, so exactly one request can take over an expired lock.
#[tracing::instrument(level = "debug", skip(tx, request_hash, lock_token))]
pub async fn claim(
    tx: &mut TenantTx,
    scope: KeyScope<'_>,
    request_hash: &[u8; 32],
    lock_token: Uuid,
    lock_for: Duration,
    ttl: Duration,
) -> Result<Claim, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let lock_ms = i64::try_from(lock_for.as_millis()).unwrap_or(i64::MAX);
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    // At most: insert (conflict), find expired and delete, insert again, which
    // either succeeds or conflicts with a concurrent newcomer whose row we read.
    for _ in 0..3 {
        let inserted: Option<i32> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys
                 (tenant_id, key, method, path, request_hash, status, lock_token, locked_until, expires_at)
             VALUES ($1, $2, $3, $4, $5, 'in_flight', $6,
                     now() + make_interval(secs => $7::double precision / 1000),
                     -- An in-flight key outlives its lock, so it never expires under a live request.
                     now() + make_interval(secs => ($7 + $8)::double precision / 1000))
             ON CONFLICT DO NOTHING
             RETURNING 1",
        )
        .bind(tenant_id)
        .bind(scope.key)
        .bind(scope.method)
        .bind(scope.path)
        .bind(&request_hash[..])
        .bind(lock_token)
        .bind(lock_ms)
        .bind(ttl_ms)
        .fetch_optional(tx.conn())
        .await?;
        if inserted.is_some() {
            return Ok(Claim::Acquired { taken_over: false });
        }

        let existing: Option<ExistingRow> = sqlx::query_as(
            "SELECT request_hash, status, response_status, response_headers, response_body,
                    expires_at <= now() AS expired,
                    coalesce(locked_until <= now(), true) AS lock_expired,
                    greatest(0, ceil(extract(epoch FROM locked_until - now())))::bigint
                        AS lock_remaining_secs
             FROM idempotency_keys
             WHERE tenant_id = $1 AND key = $2 AND method = $3 AND path = $4
             FOR UPDATE",
        )
        .bind(tenant_id)
        .bind(scope.key)
        .bind(scope.method)
        .bind(scope.path)
        .fetch_optional(tx.conn())
        .await?;
        let Some(existing) = existing else {
            // Deleted between our insert and our read (released, or swept): try again.
            continue;
        };
        if existing.expired {
            delete(tx, scope).await?;
            continue;
        }
        if existing.request_hash != request_hash[..] {
            return Ok(Claim::Mismatch);
        }
        if existing.status == "completed" {
            return stored_response(existing).map(Claim::Completed);
        }
        if !existing.lock_expired {
            let remaining = u64::try_from(existing.lock_remaining_secs).unwrap_or(0);
            return Ok(Claim::InFlight {
                retry_after: Duration::from_secs(remaining.clamp(1, 5)),
            });
        }
        sqlx::query(
            "UPDATE idempotency_keys
             SET lock_token = $5,
                 locked_until = now() + make_interval(secs => $6::double precision / 1000),
                 expires_at = now() + make_interval(secs => ($6 + $7)::double precision / 1000)
             WHERE tenant_id = $1 AND key = $2 AND method = $3 AND path = $4",
        )
        .bind(tenant_id)
        .bind(scope.key)
        .bind(scope.method)
        .bind(scope.path)
        .bind(lock_token)
        .bind(lock_ms)
        .bind(ttl_ms)
        .execute(tx.conn())
        .await?;
        return Ok(Claim::Acquired { taken_over: true });
    }
    // Only reachable if the key is deleted and re-created by others on every
    // attempt; say "in flight" and let the client retry.
    Ok(Claim::InFlight {
        retry_after: Duration::from_secs(1),
    })
}

fn stored_response(row: ExistingRow) -> Result<StoredResponse, sqlx::Error> {
    let status = row
        .response_status
        .and_then(|status| u16::try_from(status).ok())
        .ok_or_else(|| sqlx::Error::Decode("completed idempotency key without a status".into()))?;
    Ok(StoredResponse {
        status,
        headers: row.response_headers.map(|json| json.0).unwrap_or_default(),
        body: row.response_body.unwrap_or_default(),
    })
}

/// Stores the response of the request holding `lock_token`, to be replayed for
/// `ttl`. Returns false if the request no longer holds the key (its lock expired
/// and another request took it over): that request's response wins.
#[tracing::instrument(level = "debug", skip(tx, lock_token, response))]
pub async fn complete(
    tx: &mut TenantTx,
    scope: KeyScope<'_>,
    lock_token: Uuid,
    response: &StoredResponse,
    ttl: Duration,
) -> Result<bool, sqlx::Error> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let updated = sqlx::query(
        "UPDATE idempotency_keys
         SET status = 'completed', response_status = $6, response_headers = $7,
             response_body = $8, locked_until = NULL,
             expires_at = now() + make_interval(secs => $9::double precision / 1000)
         WHERE tenant_id = $1 AND key = $2 AND method = $3 AND path = $4
           AND lock_token = $5 AND status = 'in_flight'",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(scope.key)
    .bind(scope.method)
    .bind(scope.path)
    .bind(lock_token)
    .bind(i32::from(response.status))
    .bind(sqlx::types::Json(&response.headers))
    .bind(&response.body)
    .bind(ttl_ms)
    .execute(tx.conn())
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Forgets the key held by `lock_token`, so the client may retry it: after a
/// server error, a response too large to store, or an abandoned request.
#[tracing::instrument(level = "debug", skip(tx, lock_token))]
pub async fn release(
    tx: &mut TenantTx,
    scope: KeyScope<'_>,
    lock_token: Uuid,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM idempotency_keys
         WHERE tenant_id = $1 AND key = $2 AND method = $3 AND path = $4
           AND lock_token = $5 AND status = 'in_flight'",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(scope.key)
    .bind(scope.method)
    .bind(scope.path)
    .bind(lock_token)
    .execute(tx.conn())
    .await?;
    Ok(deleted.rows_affected() == 1)
}

async fn delete(tx: &mut TenantTx, scope: KeyScope<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys
         WHERE tenant_id = $1 AND key = $2 AND method = $3 AND path = $4",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(scope.key)
    .bind(scope.method)
    .bind(scope.path)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Deletes up to `limit` of the tenant's expired keys (oldest first) and returns
/// how many. Bounded, so an occasional sweep costs one small index range scan on
/// `(tenant_id, expires_at)`; rows locked by a concurrent claim are skipped.
#[tracing::instrument(level = "debug", skip(tx))]
pub async fn sweep_expired(tx: &mut TenantTx, limit: i64) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        // The CTE is evaluated exactly once: as an `IN (subquery)` the planner may
        // rescan the LIMIT subquery per row and delete more than `limit` rows.
        "WITH doomed AS MATERIALIZED (
             SELECT key, method, path FROM idempotency_keys
             WHERE tenant_id = $1 AND expires_at < now()
             ORDER BY expires_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         DELETE FROM idempotency_keys k
         USING doomed d
         WHERE k.tenant_id = $1 AND k.key = d.key AND k.method = d.method AND k.path = d.path",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(limit)
    .execute(tx.conn())
    .await?;
    Ok(deleted.rows_affected())
}
