//! `Idempotency-Key` on authenticated POSTs, the IETF draft / Stripe way.
//!
//! Pipelines retry: a timeout or a reset connection leaves a client not knowing
//! whether its scan was accepted. With an `Idempotency-Key` header the retry is
//! safe: the first response is stored and replayed (with `Idempotent-Replayed:
//! true`) instead of running the request again.
//!
//! This is one middleware, mounted as a `route_layer` *inside* `authenticate`
//! (it needs the [`TenantContext`]), so handlers know nothing about it:
//!
//! 1. no header, or not a POST → pass through; a malformed key → 422;
//! 2. buffer the body (bounded: 413 above it) and fingerprint the request with
//!    SHA-256 over method, path, query, content type and body;
//! 3. in one short tenant transaction, claim the key (tenant + method + path +
//!    key) as `in_flight` — or find it: completed with the same fingerprint →
//!    replay; another fingerprint → 422; in flight → 409 with `Retry-After`;
//!    in flight past its lock (the holder's process died) → take it over;
//! 4. run the handler with the buffered body, **no transaction open**;
//! 5. in a second transaction, store a 2xx/4xx response for `idempotency_ttl_secs`,
//!    or forget the key after a 5xx (and 401/403/408/429, whose outcome depends on
//!    the credential or on load rather than on the request) so the client may retry.
//!
//! The handler's own transaction and the key's completion are separate commits:
//! if the process dies between them, the key stays in flight until its lock
//! expires and a retry then runs the request again. The window is the time of
//! one small UPDATE; closing it would mean writing the response inside every
//! handler's transaction (Stripe's "atomic phases"), which we trade for handlers
//! that stay unaware of idempotency.

mod replay;

use super::error::{ApiError, FieldError, Problem};
use super::middleware::RequestId;
use crate::auth::TenantContext;
use crate::state::AppState;
use crate::store::idempotency::{self as keys, Claim, KeyScope};
use crate::store::Store;
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use posture_domain::TenantId;
use replay::{capture, replay};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// The request header naming a key.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set to `true` on a replayed response.
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Longest key (Stripe allows 255 characters).
const MAX_KEY_LEN: usize = 255;
/// How far a claim's lock outlasts the request timeout: a live request is
/// cancelled by the timeout before then, so only a dead holder's lock expires.
const LOCK_MARGIN: Duration = Duration::from_secs(5);
/// Bodies hashed on the async threads; larger ones (scan reports, up to the
/// tier's limit) are hashed on a blocking thread.
const INLINE_HASH_BYTES: usize = 64 * 1024;
/// One new key in this many triggers a sweep of the tenant's expired keys.
const SWEEP_EVERY: u64 = 64;
/// Most expired keys one sweep deletes.
const SWEEP_LIMIT: i64 = 100;

/// New keys claimed by this process, for pacing sweeps.
static CLAIMS: AtomicU64 = AtomicU64::new(0);

/// Makes POSTs with an `Idempotency-Key` safe to retry (see the module docs);
/// runs after authentication and rate limits, whose [`TenantContext`] scopes
/// the keys ([`super::middleware::tenant_path`]).
pub async fn guard(state: AppState, request: Request, next: Next) -> Response {
    match handle(state, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(state: AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Ok(next.run(request).await);
    }
    let Some(key) = parse_key(request.headers())? else {
        return Ok(next.run(request).await);
    };
    let context = request
        .extensions()
        .get::<TenantContext>()
        .cloned()
        .ok_or_else(|| {
            // `tenant_path` authenticates before calling this.
            ApiError::Internal(anyhow::anyhow!(
                "idempotency middleware ran before authentication"
            ))
        })?;

    // The largest body any POST route accepts for this tenant; handlers still
    // apply their own (possibly smaller) limits to the buffered body.
    let limit = state
        .config
        .scan_max_bytes(context.tier)
        .max(state.config.max_body_bytes);
    let (parts, body) = request.into_parts();
    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let body = to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;

    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let request_hash = fingerprint_off_thread(context.actor(), &parts, body.clone()).await?;
    let scope = KeyScope {
        key: &key,
        method: &method,
        path: &path,
    };

    let lock_token = Uuid::new_v4();
    let ttl = Duration::from_secs(state.config.idempotency_ttl_secs.max(1));
    let lock_for = state.config.request_timeout() + LOCK_MARGIN;
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let claim = keys::claim(&mut tx, scope, &request_hash, lock_token, lock_for, ttl).await?;
    tx.commit().await?;

    match claim {
        Claim::Completed(stored) => {
            let request_id = parts.extensions.get::<RequestId>();
            return Ok(replay(stored, request_id, &path));
        }
        Claim::Mismatch => return Ok(key_reused()),
        Claim::InFlight { retry_after } => return Ok(in_flight(retry_after)),
        Claim::Acquired { taken_over } => {
            if taken_over {
                tracing::warn!(%key, "took over an idempotency key whose holder's lock expired");
            } else if CLAIMS.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
                spawn_sweep(state.store.clone(), context.tenant_id);
            }
        }
    }

    // From here until the outcome is recorded, a cancelled request (the timeout
    // fired, the client hung up) must not leave the key locked: the guard
    // releases it in the background if this future is dropped.
    let mut guard = ReleaseOnDrop {
        store: state.store.clone(),
        tenant_id: context.tenant_id,
        key: key.clone(),
        method: method.clone(),
        path: path.clone(),
        lock_token,
        armed: true,
    };
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (response, stored) = capture(response, &path).await?;
    let recorded = match &stored {
        Some(stored) => async {
            let mut tx = state.store.begin_tenant(context.tenant_id).await?;
            let completed = keys::complete(&mut tx, scope, lock_token, stored, ttl).await?;
            tx.commit().await?;
            if !completed {
                tracing::warn!(%key, "idempotency key was taken over before this request finished; its response is not stored");
            }
            Ok::<_, sqlx::Error>(())
        }
        .await,
        None => async {
            let mut tx = state.store.begin_tenant(context.tenant_id).await?;
            keys::release(&mut tx, scope, lock_token).await?;
            tx.commit().await
        }
        .await,
    };
    match recorded {
        // Recorded: nothing for the guard to undo.
        Ok(()) => guard.armed = false,
        // The handler's work is done and committed; its response still goes to the
        // client. The guard tries once more to release the key, so a retry is not
        // answered 409 until the lock expires.
        Err(error) => {
            tracing::warn!(%error, %key, "could not record the idempotency key's outcome")
        }
    }
    Ok(response)
}

/// The key from the header: 1–255 visible ASCII characters. A structured-field
/// string (`"…"`, as the IETF draft writes it) is accepted and unquoted.
fn parse_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid =
        |detail: &str| ApiError::Validation(vec![FieldError::parameter("Idempotency-Key", detail)]);
    if values.next().is_some() {
        return Err(invalid("send one Idempotency-Key header, not several"));
    }
    let bytes = value.as_bytes();
    let bytes = match bytes {
        [b'"', inner @ .., b'"'] => inner,
        _ => bytes,
    };
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN {
        return Err(invalid("must be 1 to 255 characters long"));
    }
    if !bytes.iter().all(|byte| (0x21..=0x7e).contains(byte)) {
        return Err(invalid(
            "must be visible ASCII characters only (no spaces or control characters), e.g. a UUID",
        ));
    }
    // All visible ASCII, so valid UTF-8.
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// SHA-256 of what makes the request *this* request: the API key that sent
/// it (a replay must not hand one key's result — e.g. an admin key's 201 — to a
/// key that may not make the request), method, path, query, content type (it
/// selects the report format) and body. Each field is length-prefixed, so no two
/// different requests share an encoding.
pub fn fingerprint(
    caller: &str,
    method: &str,
    path: &str,
    query: &str,
    content_type: &[u8],
    body: &[u8],
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for field in [
        caller.as_bytes(),
        method.as_bytes(),
        path.as_bytes(),
        query.as_bytes(),
        content_type,
        body,
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    hasher.finalize().into()
}

/// [`fingerprint`], on a blocking thread for large bodies (hashing 100 MiB takes
/// a fraction of a second: too long to hold an async worker thread).
async fn fingerprint_off_thread(
    caller: String,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> Result<[u8; 32], ApiError> {
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.as_bytes().to_vec())
        .unwrap_or_default();
    let small = body.len() <= INLINE_HASH_BYTES;
    let hash = move || fingerprint(&caller, &method, &path, &query, &content_type, &body);
    if small {
        return Ok(hash());
    }
    tokio::task::spawn_blocking(hash)
        .await
        .map_err(|error| ApiError::Internal(anyhow::Error::new(error).context("hashing task")))
}

/// 422: the key was used for a different request.
fn key_reused() -> Response {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
        "Idempotency key reused",
    )
    .with_detail(
        "This Idempotency-Key was used for a different request (another body or query); \
         use a new key for a new request.",
    )
    .into_response_with(StatusCode::UNPROCESSABLE_ENTITY)
}

/// 409: the first request with the key is still running.
fn in_flight(retry_after: Duration) -> Response {
    let mut response = Problem::new(
        StatusCode::CONFLICT,
        "idempotency-key-in-flight",
        "Request with this idempotency key in progress",
    )
    .with_detail(
        "A request with this Idempotency-Key is still being processed; retry after Retry-After \
         seconds to receive its response.",
    )
    .into_response_with(StatusCode::CONFLICT);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after.as_secs()),
    );
    response
}

/// Deletes some of the tenant's expired keys in the background. Expired keys are
/// otherwise only deleted when reused, so without this a tenant that never reuses
/// keys would keep them all; one sweep of up to [`SWEEP_LIMIT`] per
/// [`SWEEP_EVERY`] new keys removes them faster than they accumulate.
fn spawn_sweep(store: Store, tenant_id: TenantId) {
    tokio::spawn(async move {
        let swept = async {
            let mut tx = store.begin_tenant(tenant_id).await?;
            let deleted = keys::sweep_expired(&mut tx, SWEEP_LIMIT).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(deleted)
        }
        .await;
        match swept {
            Ok(deleted) => tracing::debug!(%tenant_id, deleted, "swept expired idempotency keys"),
            Err(error) => tracing::warn!(%error, %tenant_id, "sweeping idempotency keys failed"),
        }
    });
}

/// Releases a claimed key if the request ends without recording its outcome
/// (the future was dropped by the timeout or a disconnect, or recording failed),
/// so the client's retry runs instead of waiting out the lock.
struct ReleaseOnDrop {
    store: Store,
    tenant_id: TenantId,
    key: String,
    method: String,
    path: String,
    lock_token: Uuid,
    armed: bool,
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        let (tenant_id, lock_token) = (self.tenant_id, self.lock_token);
        let (key, method, path) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.method),
            std::mem::take(&mut self.path),
        );
        runtime.spawn(async move {
            let scope = KeyScope {
                key: &key,
                method: &method,
                path: &path,
            };
            let released = async {
                let mut tx = store.begin_tenant(tenant_id).await?;
                keys::release(&mut tx, scope, lock_token).await?;
                tx.commit().await
            }
            .await;
            if let Err(error) = released {
                // The lock expires by itself; until then retries get 409.
                tracing::warn!(%error, %key, "could not release an abandoned idempotency key");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(value: &'static str) -> Result<Option<String>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(&IDEMPOTENCY_KEY, HeaderValue::from_static(value));
        parse_key(&headers)
    }

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        assert_eq!(
            key_of("abc-123_X.Y:z").unwrap().as_deref(),
            Some("abc-123_X.Y:z")
        );
        assert_eq!(key_of("\"quoted\"").unwrap().as_deref(), Some("quoted"));
        assert!(key_of("with space").is_err());
        assert!(key_of("\"\"").is_err());
        assert!(key_of(Box::leak("k".repeat(256).into_boxed_str())).is_err());
        assert!(key_of(Box::leak("k".repeat(255).into_boxed_str())).is_ok());
        assert!(parse_key(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn fingerprints_separate_fields() {
        let a = fingerprint(
            "key:a",
            "POST",
            "/v1/scans",
            "a=1",
            b"application/json",
            b"{}",
        );
        assert_eq!(
            a,
            fingerprint(
                "key:a",
                "POST",
                "/v1/scans",
                "a=1",
                b"application/json",
                b"{}"
            )
        );
        assert_ne!(
            a,
            fingerprint(
                "key:a",
                "POST",
                "/v1/scans",
                "a=2",
                b"application/json",
                b"{}"
            )
        );
        assert_ne!(
            a,
            fingerprint(
                "key:a",
                "POST",
                "/v1/scans",
                "a=1",
                b"application/sarif+json",
                b"{}"
            )
        );
        assert_ne!(
            fingerprint("key:a", "POST", "/v1/x", "ab", b"", b""),
            fingerprint("key:a", "POST", "/v1/x", "a", b"b", b"")
        );
    }
}
