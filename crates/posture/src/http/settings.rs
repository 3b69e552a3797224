//! `/v1/settings`: the organization's own settings (SLA days by severity).

use super::error::{ApiError, FieldError};
use super::extract::ApiJson;
use super::middleware::RequestId;
use crate::auth::TenantContext;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry};
use crate::store::findings::{self, SlaPolicy};
use crate::store::settings;
use axum::extract::State;
use axum::{Extension, Json};
use posture_domain::Scope;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// Days from first sight to a finding's due date, by severity (info has none).
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy)]
pub struct SlaDays {
    pub critical: i32,
    pub high: i32,
    pub medium: i32,
    pub low: i32,
}

/// The organization's settings.
#[derive(Serialize, ToSchema)]
pub struct Settings {
    pub sla_days: SlaDays,
}

/// A change of settings; members not sent are kept.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub sla_days: Option<SlaDaysPatch>,
}

/// SLA days to change (1–3650 each).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaDaysPatch {
    pub critical: Option<i32>,
    pub high: Option<i32>,
    pub medium: Option<i32>,
    pub low: Option<i32>,
}

fn view(policy: SlaPolicy) -> Settings {
    Settings {
        sla_days: SlaDays {
            critical: policy.critical_days,
            high: policy.high_days,
            medium: policy.medium_days,
            low: policy.low_days,
        },
    }
}

/// The organization's settings (defaults: 7 / 30 / 90 / 180 days).
#[utoipa::path(get, path = "/v1/settings", tag = "org", security(("api_key" = [])),
    responses((status = 200, description = "Settings", body = Settings)))]
pub async fn get(
    State(state): State<AppState>,
    context: TenantContext,
) -> Result<Json<Settings>, ApiError> {
    context.require(Scope::Read)?;
    let policy = crate::tenant_read!(state.store, context.tenant_id, |tx| {
        findings::sla_policy(&mut tx).await?
    })?;
    Ok(Json(view(policy)))
}

/// Change settings. New SLA days apply to every finding's due date at once.
#[utoipa::path(patch, path = "/v1/settings", tag = "org", security(("api_key" = [])),
    request_body = SettingsPatch,
    responses(
        (status = 200, description = "Settings after the change", body = Settings),
        (status = 422, description = "Invalid values", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    context: TenantContext,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> Result<Json<Settings>, ApiError> {
    context.require(Scope::Admin)?;
    let Some(days) = patch.sla_days else {
        return Err(ApiError::invalid("", "nothing to change"));
    };
    let mut errors = Vec::new();
    for (name, value) in [
        ("critical", days.critical),
        ("high", days.high),
        ("medium", days.medium),
        ("low", days.low),
    ] {
        if value.is_some_and(|days| !(1..=3650).contains(&days)) {
            errors.push(FieldError::at(
                format!("/sla_days/{name}"),
                "must be between 1 and 3650 days",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut tx = state.store.begin_tenant(context.tenant_id).await?;
    let current = findings::sla_policy(&mut tx).await?;
    let policy = SlaPolicy {
        critical_days: days.critical.unwrap_or(current.critical_days),
        high_days: days.high.unwrap_or(current.high_days),
        medium_days: days.medium.unwrap_or(current.medium_days),
        low_days: days.low.unwrap_or(current.low_days),
    };
    let recomputed = settings::save_sla_policy(&mut tx, policy).await?;
    audit::record(
        &mut tx,
        AuditEntry {
            actor: &context.actor(),
            action: "settings.sla_changed",
            target: None,
            details: json!({
                "critical": policy.critical_days, "high": policy.high_days,
                "medium": policy.medium_days, "low": policy.low_days, "findings_recomputed": recomputed,
            }),
            request_id: Some(&request_id),
        },
    )
    .await?;
    // SLA due dates moved: breaches and the posture view with them.
    crate::jobs::queue::queue_posture_refresh(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(view(policy)))
}
