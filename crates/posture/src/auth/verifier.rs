//! Verifying presented API keys, with their credentials cached in the tenant
//! view cache (L1 → Redis → PostgreSQL).

use super::TenantContext;
use crate::cache::views::{Generation, ViewCache};
use crate::http::error::ApiError;
use crate::store::api_keys::KeyCredentials;
use crate::store::{api_keys, Store};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use posture_domain::api_key::{SecretHash, KEY_ID_DISPLAY_PREFIX};
use posture_domain::{ApiKeyId, ApiKeyToken, Scope, Scopes, TenantId, TenantStatus, Tier};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
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
///
/// What is cached is authenticated: an HMAC-SHA256, under a key that only
/// PostgreSQL and the servers hold (`cache_signing_keys`), of the tenant, the
/// key id and the credentials precedes them. An entry that does not verify
/// (forged or damaged in Redis, or from an older format) is ignored and the
/// credentials are read from PostgreSQL, so write access to Redis is not a
/// way to mint keys.
pub struct KeyVerifier {
    store: Store,
    views: Arc<ViewCache>,
    signing_key: Arc<[u8; 32]>,
}

/// A cached entry's credentials once authenticated and decoded (kept with
/// the entry, [`crate::cache::views::CachedView::derived`]): `None` if its
/// MAC did not verify for this tenant and key id.
struct OpenedCredentials {
    tenant_id: TenantId,
    key_id: ApiKeyId,
    credentials: Option<Option<CachedCredentials>>,
}

/// The bytes of the MAC that precedes cached credentials.
const MAC_LEN: usize = 32;

impl KeyVerifier {
    /// A verifier over the server's store and view cache, authenticating cached
    /// credentials with `signing_key`.
    pub fn new(store: Store, views: Arc<ViewCache>, signing_key: [u8; 32]) -> Self {
        KeyVerifier {
            store,
            views,
            signing_key: Arc::new(signing_key),
        }
    }

    /// Reads the signing key from PostgreSQL (created by a migration).
    pub async fn load_signing_key(store: &Store) -> Result<[u8; 32], sqlx::Error> {
        let key: Vec<u8> = sqlx::query_scalar("SELECT key FROM cache_signing_keys WHERE id = 1")
            .fetch_one(store.pool())
            .await?;
        key.try_into()
            .map_err(|_| sqlx::Error::Decode("cache signing key is not 32 bytes".into()))
    }

    /// Checks a presented token and returns who is calling.
    pub async fn verify(&self, presented: &str) -> Result<TenantContext, AuthFailure> {
        // Shape and checksum first: a mistyped or random key costs no lookup.
        let token = ApiKeyToken::parse(presented).map_err(|_| AuthFailure::Malformed)?;
        let tenant_id = token.tenant_id();
        let key_id = token.key_id().clone();
        // `key:<key id as displayed>`, the name its credentials are cached under.
        let name = ["key:", KEY_ID_DISPLAY_PREFIX, key_id.as_str()].concat();
        // Credentials read afresh when the cached entry does not authenticate.
        let fresh: Option<CachedCredentials>;
        let (store, signing_key) = (self.store.clone(), self.signing_key.clone());
        let view = self
            .views
            .get_or_load(tenant_id, Generation::Account, &name, move || {
                let (store, key_id) = (store.clone(), key_id.clone());
                let signing_key = signing_key.clone();
                async move {
                    let credentials = load_credentials(&store, tenant_id, &key_id).await?;
                    Ok(sealed(&signing_key, tenant_id, &key_id, credentials))
                }
            })
            .await
            .map_err(unavailable)?;
        // Authenticated and decoded once per cached entry, by the first
        // request that reads it: a view is immutable, and it belongs to one
        // slot, named by the tenant and the key id it was sealed for (both
        // also checked here).
        let opened_view = view.derived(|body| OpenedCredentials {
            tenant_id,
            key_id: token.key_id().clone(),
            credentials: opened(&self.signing_key, tenant_id, token.key_id(), body),
        });
        let opened_here = (opened_view.tenant_id == tenant_id
            && &opened_view.key_id == token.key_id())
        .then(|| opened_view.credentials.as_ref());
        let cached = match opened_here.flatten() {
            Some(cached) => cached,
            None => {
                tracing::warn!(%tenant_id, key_id = %token.key_id(), "cached API key credentials failed authentication; reading them from PostgreSQL");
                let body = load_credentials(&self.store, tenant_id, token.key_id())
                    .await
                    .map_err(unavailable)?;
                fresh = serde_json::from_slice(&body).map_err(|_| AuthFailure::Unavailable)?;
                // Replace the bad entry, so the next request finds good
                // credentials instead of reading PostgreSQL again.
                let sealed = sealed(&self.signing_key, tenant_id, token.key_id(), body);
                self.views
                    .replace(tenant_id, Generation::Account, &name, sealed)
                    .await;
                &fresh
            }
        };
        let Some(stored) = cached.as_ref() else {
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
            scopes: Scopes::new(stored.scopes.iter().copied())
                .map_err(|_| AuthFailure::Unavailable)?,
        })
    }
}

/// A lookup that failed: logged, and 503 for the caller.
fn unavailable(error: impl std::fmt::Display) -> AuthFailure {
    tracing::warn!(%error, "API key lookup failed");
    AuthFailure::Unavailable
}

/// The MAC of cached credentials: over the tenant, the key id and the bytes.
fn mac(
    signing_key: &[u8; 32],
    tenant_id: TenantId,
    key_id: &ApiKeyId,
    body: &[u8],
) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_key).expect("HMAC takes any key length");
    mac.update(tenant_id.as_uuid().as_bytes());
    mac.update(key_id.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(body);
    mac
}

/// `MAC ‖ credentials`, as cached.
fn sealed(
    signing_key: &[u8; 32],
    tenant_id: TenantId,
    key_id: &ApiKeyId,
    body: Vec<u8>,
) -> Vec<u8> {
    let tag = mac(signing_key, tenant_id, key_id, &body)
        .finalize()
        .into_bytes();
    let mut sealed = Vec::with_capacity(MAC_LEN + body.len());
    sealed.extend_from_slice(&tag);
    sealed.extend_from_slice(&body);
    sealed
}

/// The credentials of a cached entry whose MAC verifies (constant time);
/// `None` for anything else.
fn opened(
    signing_key: &[u8; 32],
    tenant_id: TenantId,
    key_id: &ApiKeyId,
    sealed: &[u8],
) -> Option<Option<CachedCredentials>> {
    if sealed.len() < MAC_LEN {
        return None;
    }
    let (tag, body) = sealed.split_at(MAC_LEN);
    mac(signing_key, tenant_id, key_id, body)
        .verify_slice(tag)
        .ok()?;
    serde_json::from_slice(body).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Vec<u8> {
        serde_json::to_vec(&Some(CachedCredentials {
            secret_hash: [7; 32],
            scopes: vec![Scope::Read],
            expires_at: None,
            revoked: false,
            tier: Tier::Free,
            tenant_status: TenantStatus::Active,
        }))
        .unwrap()
    }

    #[test]
    fn only_sealed_credentials_of_the_same_key_open() {
        let key = [1u8; 32];
        let tenant = TenantId::new_random();
        let key_id = ApiKeyId::parse("key_abcdefghijkl").unwrap();
        let sealed = sealed(&key, tenant, &key_id, credentials());
        assert!(opened(&key, tenant, &key_id, &sealed).is_some_and(|c| c.is_some()));
        // Another server key, tenant or key id; a flipped byte; no MAC at all.
        assert!(opened(&[2u8; 32], tenant, &key_id, &sealed).is_none());
        assert!(opened(&key, TenantId::new_random(), &key_id, &sealed).is_none());
        let other_id = ApiKeyId::parse("key_abcdefghijkm").unwrap();
        assert!(opened(&key, tenant, &other_id, &sealed).is_none());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 2;
        tampered[last] ^= 1;
        assert!(opened(&key, tenant, &key_id, &tampered).is_none());
        assert!(opened(&key, tenant, &key_id, &credentials()).is_none());
    }
}
