//! Verifying presented API keys, with an in-process cache.

use super::TenantContext;
use crate::http::error::ApiError;
use crate::store::{api_keys, Store};
use chrono::Utc;
use moka::sync::Cache;
use posture_domain::api_key::token_digest;
use posture_domain::{ApiKeyId, ApiKeyToken, TenantId, TenantStatus};
use std::time::Duration;

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Not a well-formed key or a bad checksum: refused without a lookup.
    Malformed,
    /// No such key, or the secret does not match.
    Unknown,
    /// The key was revoked.
    Revoked,
    /// The key has expired.
    Expired,
    /// The key's tenant is suspended.
    Suspended,
    /// The database could not be asked.
    Unavailable,
}

impl AuthFailure {
    /// The HTTP answer: 401 for a bad credential, 403 for a suspended tenant,
    /// 503 when the credential could not be checked.
    pub fn into_api_error(self) -> ApiError {
        match self {
            AuthFailure::Malformed => ApiError::Unauthenticated("The API key is malformed."),
            AuthFailure::Unknown => ApiError::Unauthenticated("The API key is not valid."),
            AuthFailure::Revoked => ApiError::Unauthenticated("The API key has been revoked."),
            AuthFailure::Expired => ApiError::Unauthenticated("The API key has expired."),
            AuthFailure::Suspended => ApiError::TenantSuspended,
            AuthFailure::Unavailable => ApiError::Unavailable("credential lookup failed".into()),
        }
    }
}

/// A cached verdict about one token.
#[derive(Clone)]
enum Verdict {
    Valid {
        context: TenantContext,
        expires_at: Option<chrono::DateTime<Utc>>,
    },
    Refused(AuthFailure),
}

/// Verifies tokens against the database, caching verdicts in process.
///
/// The cache is keyed by the SHA-256 of the whole token, never the token, and
/// entries live `ttl` (at most 5 s by configuration): that bounds how long a key
/// revoked on another instance keeps working. Refusals are cached too, so a
/// client retrying a bad key in a loop costs one lookup per `ttl`.
pub struct KeyVerifier {
    store: Store,
    cache: Cache<[u8; 32], Verdict>,
}

impl KeyVerifier {
    /// A verifier over the server's store.
    pub fn new(store: Store, ttl: Duration, capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build();
        KeyVerifier { store, cache }
    }

    /// Checks a presented token and returns who is calling.
    pub async fn verify(&self, presented: &str) -> Result<TenantContext, AuthFailure> {
        // Shape and checksum first: a mistyped or random key costs no lookup.
        let token = ApiKeyToken::parse(presented).map_err(|_| AuthFailure::Malformed)?;
        let digest = token_digest(presented);
        let verdict = match self.cache.get(&digest) {
            Some(verdict) => verdict,
            None => {
                let verdict = self.look_up(&token).await?;
                self.cache.insert(digest, verdict.clone());
                verdict
            }
        };
        match verdict {
            Verdict::Valid {
                expires_at: Some(expiry),
                ..
            } if expiry <= Utc::now() => Err(AuthFailure::Expired),
            Verdict::Valid { context, .. } => Ok(context),
            Verdict::Refused(failure) => Err(failure),
        }
    }

    /// Drops cached verdicts for one key, so a revocation applies on this
    /// instance at once (other instances within the cache TTL).
    pub fn forget_key(&self, tenant_id: TenantId, key_id: &ApiKeyId) {
        let key_id = key_id.clone();
        // Only fails if invalidation closures were not enabled, which `new` does.
        let _ = self.cache.invalidate_entries_if(move |_, verdict| {
            matches!(verdict, Verdict::Valid { context, .. }
                if context.tenant_id == tenant_id && context.key_id == key_id)
        });
    }

    /// Drops every cached verdict (used when a tenant's tier or status changes).
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    async fn look_up(&self, token: &ApiKeyToken) -> Result<Verdict, AuthFailure> {
        let found = crate::tenant_read!(self.store, token.tenant_id(), |tx| {
            api_keys::find_credentials(&mut tx, token.key_id()).await?
        })
        .map_err(|error| {
            tracing::warn!(%error, "API key lookup failed");
            AuthFailure::Unavailable
        })?;
        let Some(stored) = found else {
            return Ok(Verdict::Refused(AuthFailure::Unknown));
        };
        // Constant-time comparison of the hashes.
        if !stored.secret_hash.matches(&token.secret_hash()) {
            return Ok(Verdict::Refused(AuthFailure::Unknown));
        }
        if stored.revoked_at.is_some() {
            return Ok(Verdict::Refused(AuthFailure::Revoked));
        }
        if stored.tenant_status == TenantStatus::Suspended {
            return Ok(Verdict::Refused(AuthFailure::Suspended));
        }
        Ok(Verdict::Valid {
            context: TenantContext {
                tenant_id: token.tenant_id(),
                tier: stored.tier,
                key_id: token.key_id().clone(),
                scopes: stored.scopes,
            },
            expires_at: stored.expires_at,
        })
    }
}
