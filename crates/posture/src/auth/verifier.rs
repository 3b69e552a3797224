//! Verifying presented API keys, with their credentials cached in the tenant
//! view cache (L1 → Redis → PostgreSQL).

use super::TenantContext;
use crate::cache::views::{Generation, ViewCache};
use crate::http::error::ApiError;
use crate::store::api_keys::KeyCredentials;
use crate::store::{api_keys, Store};
use chrono::{DateTime, Utc};
use posture_domain::api_key::SecretHash;
use posture_domain::{ApiKeyId, ApiKeyToken, Scope, Scopes, TenantId, TenantStatus, Tier};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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

/// What the cache holds about one key id: its credentials as stored, or
/// `None` for an id that does not exist (so a flood of well-formed but unknown
/// keys costs one lookup per cache lifetime, not one per request).
///
/// Only the SHA-256 of the secret is held, as in the database; the presented
/// secret is compared with it on every request, so a cached entry never
/// admits a wrong secret.
#[derive(Serialize, Deserialize)]
struct CachedCredentials {
    secret_hash: [u8; 32],
    scopes: Vec<Scope>,
    expires_at: Option<DateTime<Utc>>,
    revoked: bool,
    tier: Tier,
    tenant_status: TenantStatus,
}

impl From<KeyCredentials> for CachedCredentials {
    fn from(stored: KeyCredentials) -> Self {
        CachedCredentials {
            secret_hash: *stored.secret_hash.as_bytes(),
            scopes: stored.scopes.iter().collect(),
            expires_at: stored.expires_at,
            revoked: stored.revoked_at.is_some(),
            tier: stored.tier,
            tenant_status: stored.tenant_status,
        }
    }
}

/// Verifies tokens against the database through the tenant view cache.
///
/// A key's credentials are cached under the tenant's [`Generation::Account`]:
/// in process (L1), in Redis (L2, shared by every instance) and loaded from
/// PostgreSQL once for concurrent misses (single flight). Revoking a key,
/// changing a tenant's tier or status and deleting a tenant bump that
/// generation, so every instance stops using the old credentials within the
/// cache's version TTL (1 s) while Redis is up; every server also hears of the
/// change by a PostgreSQL notification and drops them at once. Without Redis
/// and notifications, the L1 lifetime (at most 5 s) bounds it.
pub struct KeyVerifier {
    store: Store,
    views: Arc<ViewCache>,
}

impl KeyVerifier {
    /// A verifier over the server's store and view cache.
    pub fn new(store: Store, views: Arc<ViewCache>) -> Self {
        KeyVerifier { store, views }
    }

    /// Checks a presented token and returns who is calling.
    pub async fn verify(&self, presented: &str) -> Result<TenantContext, AuthFailure> {
        // Shape and checksum first: a mistyped or random key costs no lookup.
        let token = ApiKeyToken::parse(presented).map_err(|_| AuthFailure::Malformed)?;
        let tenant_id = token.tenant_id();
        let store = self.store.clone();
        let key_id = token.key_id().clone();
        let view = self
            .views
            .get_or_load(
                tenant_id,
                Generation::Account,
                &format!("key:{key_id}"),
                move || {
                    let (store, key_id) = (store.clone(), key_id.clone());
                    async move { load_credentials(&store, tenant_id, &key_id).await }
                },
            )
            .await
            .map_err(|error| {
                tracing::warn!(%error, "API key lookup failed");
                AuthFailure::Unavailable
            })?;
        let cached: Option<CachedCredentials> =
            serde_json::from_slice(&view.body).map_err(|error| {
                tracing::error!(%error, "undecodable cached API key credentials");
                AuthFailure::Unavailable
            })?;
        let Some(stored) = cached else {
            return Err(AuthFailure::Unknown);
        };
        // Constant-time comparison of the hashes.
        if !SecretHash::from_slice(&stored.secret_hash)
            .is_some_and(|hash| hash.matches(&token.secret_hash()))
        {
            return Err(AuthFailure::Unknown);
        }
        if stored.revoked {
            return Err(AuthFailure::Revoked);
        }
        if stored.tenant_status == TenantStatus::Suspended {
            return Err(AuthFailure::Suspended);
        }
        if stored.expires_at.is_some_and(|expiry| expiry <= Utc::now()) {
            return Err(AuthFailure::Expired);
        }
        Ok(TenantContext {
            tenant_id,
            tier: stored.tier,
            key_id: token.key_id().clone(),
            scopes: Scopes::new(stored.scopes).map_err(|_| AuthFailure::Unavailable)?,
        })
    }
}

/// The key's credentials from PostgreSQL, serialized for the cache.
async fn load_credentials(
    store: &Store,
    tenant_id: TenantId,
    key_id: &ApiKeyId,
) -> Result<Vec<u8>, ApiError> {
    let found = crate::tenant_read!(store, tenant_id, |tx| {
        api_keys::find_credentials(&mut tx, key_id).await?
    })?;
    let cached = found.map(CachedCredentials::from);
    serde_json::to_vec(&cached).map_err(|error| {
        ApiError::Internal(anyhow::Error::new(error).context("serializing credentials"))
    })
}
