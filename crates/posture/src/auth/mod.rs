//! Authentication: API key → [`TenantContext`].
//!
//! [`authenticate`] reads `Authorization: Bearer sp_live_…` (or
//! `X-API-Key`), verifies it with [`KeyVerifier`], and puts the resulting
//! [`TenantContext`] in the request extensions, where handlers take it as an
//! extractor. The tenant therefore only ever comes from a verified credential.

mod issue;
mod last_used;
mod tier_gate;
mod verifier;

pub use issue::{issue_api_key, revoke_api_key, KeyFieldError, KeyRequest};
pub use last_used::LastUsedRecorder;
pub use tier_gate::{MinimumTier, Premium, RequireTier};
pub use verifier::{AuthFailure, KeyVerifier};

use crate::http::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use posture_domain::{ApiKeyId, Scope, Scopes, TenantId, Tier};

/// Who is calling, established from a verified credential.
#[derive(Debug, Clone)]
pub struct TenantContext {
    /// The caller's tenant: every query of the request runs bound to it.
    pub tenant_id: TenantId,
    /// The tenant's tier when the key was verified.
    pub tier: Tier,
    /// The API key used.
    pub key_id: ApiKeyId,
    /// The key's scopes.
    pub scopes: Scopes,
}

impl TenantContext {
    /// Succeeds if the key grants `scope` (admin ⊇ write ⊇ read); else 403.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "This API key lacks the {scope} scope."
            )))
        }
    }

    /// The actor name for audit entries.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_id)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TenantContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Present on every route behind `authenticate`; absent means the route was
        // mounted without it, which is a bug, not a client error.
        parts
            .extensions
            .get::<TenantContext>()
            .cloned()
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!(
                    "TenantContext requested on an unauthenticated route"
                ))
            })
    }
}

/// Authenticates the request: verifies its key and puts the [`TenantContext`]
/// in its extensions (and returns it), or answers 401/403. Runs first on the
/// tenant routes' request path ([`crate::http::middleware::tenant_path`]).
pub async fn authenticate(
    state: &AppState,
    request: &mut Request,
) -> Result<TenantContext, ApiError> {
    // A client already over its per-IP limit (too many requests without a
    // valid key) is refused before its key costs a lookup.
    if let Some(refused) = crate::limits::middleware::refuse_flooding_client(state, request) {
        return Err(refused);
    }
    let verified = match presented_token(request.headers()) {
        None => Err(ApiError::Unauthenticated(
            "Send an API key as 'Authorization: Bearer sp_live_…'.",
        )),
        Some(token) => state
            .verifier
            .verify(token)
            .await
            .map_err(AuthFailure::into_api_error),
    };
    let context = match verified {
        Ok(context) => context,
        // A client without a valid key is limited per IP (never on a
        // tenant's quota): each failure counts.
        Err(error @ ApiError::Unauthenticated(_)) => {
            return Err(
                crate::limits::middleware::count_unauthenticated(state, request).unwrap_or(error),
            );
        }
        Err(error) => return Err(error),
    };
    tracing::Span::current().record("tenant_id", tracing::field::display(context.tenant_id));
    state.last_used.record(context.tenant_id, &context.key_id);
    request.extensions_mut().insert(context.clone());
    Ok(context)
}

/// The token from `Authorization: Bearer …` or, for older clients, `X-API-Key`.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let (scheme, token) = text.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    headers.get("x-api-key")?.to_str().ok().map(str::trim)
}
