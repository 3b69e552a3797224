//! Tier gates: `RequireTier<Premium>` as a handler argument admits only tenants
//! on that tier or above, and answers anyone else with 403 `tier-required`
//! naming the tier needed.

use super::TenantContext;
use crate::http::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use posture_domain::Tier;
use std::marker::PhantomData;

/// A tier a route requires, as a type (so the requirement shows in the handler's signature).
pub trait MinimumTier: Send + Sync + 'static {
    const TIER: Tier;
}

/// Premium and above (custom frameworks, advanced scans).
pub struct Premium;

impl MinimumTier for Premium {
    const TIER: Tier = Tier::Premium;
}

/// The caller's [`TenantContext`], once its tier is known to be at least `T`'s.
pub struct RequireTier<T: MinimumTier> {
    pub context: TenantContext,
    tier: PhantomData<T>,
}

impl<T: MinimumTier> RequireTier<T> {
    /// Checks `context` against the gate.
    pub fn check(context: TenantContext) -> Result<Self, ApiError> {
        if context.tier >= T::TIER {
            Ok(RequireTier {
                context,
                tier: PhantomData,
            })
        } else {
            Err(ApiError::TierRequired {
                required: T::TIER,
                current: context.tier,
            })
        }
    }
}

impl<S: Send + Sync, T: MinimumTier> FromRequestParts<S> for RequireTier<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let context = TenantContext::from_request_parts(parts, state).await?;
        Self::check(context)
    }
}
