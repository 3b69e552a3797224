//! What a webhook message says: a small, versioned envelope around one event's
//! data. Payloads carry ids and a few facts, never whole reports; a receiver
//! that wants more reads the API with the ids. Every data shape is in the
//! OpenAPI document (`WebhookMessage`, `EventData`) and in docs/webhooks.md.

use chrono::{DateTime, NaiveDate, Utc};
use posture_domain::ids::{AssetId, FindingId, ScanId, WebhookId};
use posture_domain::webhook::EventType;
use posture_domain::TenantId;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// The version of every payload shape below. Adding members keeps it;
/// removing or changing one bumps it (receivers must ignore unknown members).
pub const PAYLOAD_VERSION: u32 = 1;

/// The type of the message `POST /v1/webhooks/{id}/test` sends. Not an event
/// an endpoint subscribes to: a ping goes to the endpoint tested, whatever it
/// subscribes to.
pub const PING: &str = "ping";

/// Longest finding title in a payload, in characters.
const MAX_TITLE_CHARS: usize = 200;

/// The body of every message (docs/webhooks.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookMessage {
    /// The event type: `scan.completed`, `scan.failed`, `finding.created`,
    /// `finding.reopened`, `posture.score_changed`, `compliance.control_failed`,
    /// `quota.warning`, `quota.exceeded`, `webhook.disabled` or `ping`.
    #[schema(example = "scan.completed")]
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload version, 1.
    pub version: u32,
    /// When the event happened.
    pub timestamp: DateTime<Utc>,
    /// The organization the event is about.
    #[schema(value_type = String, format = Uuid)]
    pub organization_id: TenantId,
    pub data: EventData,
}

/// One event's data; its shape follows the message's `type`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EventData {
    ScanCompleted(ScanCompletedData),
    ScanFailed(ScanFailedData),
    /// `finding.created` and `finding.reopened`.
    Finding(FindingData),
    ScoreChanged(ScoreChangedData),
    ControlFailed(ControlFailedData),
    /// `quota.warning` and `quota.exceeded`.
    Quota(QuotaData),
    WebhookDisabled(WebhookDisabledData),
    Ping(PingData),
}

/// `scan.completed`: a scan was applied.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScanCompletedData {
    #[schema(value_type = String, example = "scn_…")]
    pub scan_id: ScanId,
    #[schema(value_type = String, example = "ast_…")]
    pub asset_id: AssetId,
    pub tool: String,
    pub tool_version: Option<String>,
    /// `full` or `partial`.
    pub scope: String,
    pub counts: ScanCountsData,
    /// `finding.created` and `finding.reopened` events not sent for this scan
    /// because it had more than 100 of each (list the scan's findings instead).
    pub finding_events_omitted: u64,
}

/// What a scan did to the asset's findings.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ScanCountsData {
    pub total: i32,
    pub new: i32,
    pub reopened: i32,
    pub resolved: i32,
    pub unchanged: i32,
}

/// `scan.failed`: a scan could not be applied.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScanFailedData {
    #[schema(value_type = String, example = "scn_…")]
    pub scan_id: ScanId,
    #[schema(value_type = String, example = "ast_…")]
    pub asset_id: AssetId,
    /// `processing_failed` (every attempt failed), `unstorable_report`, or
    /// the parser's error kind for a report that no longer parses.
    pub error_kind: String,
    pub message: String,
}

/// `finding.created` (at or above the endpoint's `min_severity`) and
/// `finding.reopened`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FindingData {
    #[schema(value_type = String, example = "fnd_…")]
    pub finding_id: FindingId,
    #[schema(value_type = String, example = "scn_…")]
    pub scan_id: ScanId,
    #[schema(value_type = String, example = "ast_…")]
    pub asset_id: AssetId,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// At most 200 characters.
    pub title: String,
    pub rule_id: String,
    /// For `finding.reopened`: `resolved`, or `accepted_risk` whose acceptance expired.
    pub previous_status: Option<String>,
}

/// `posture.score_changed`: the score moved by at least the endpoint's
/// `score_threshold` since the score the endpoint was last told about.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScoreChangedData {
    /// The score this endpoint was last told about (or the score before the
    /// change, for its first event).
    pub previous_score: i16,
    pub score: i16,
    /// `score - previous_score`.
    pub change: i16,
    pub grade: String,
    pub computed_at: DateTime<Utc>,
}

/// `compliance.control_failed`: a control that was passing or not assessed
/// now fails (an open finding maps to it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ControlFailedData {
    /// e.g. `soc2`, or a custom framework's id.
    pub framework_id: String,
    pub control_id: String,
    pub control_title: String,
    /// `passed` or `not_assessed`.
    pub previous_status: String,
    pub failing_findings: u64,
    pub computed_at: DateTime<Utc>,
}

/// `quota.warning` (80 % of the day's or month's quota used) and
/// `quota.exceeded` (all of it: requests are refused until `resets_at`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotaData {
    /// `day` or `month` (UTC calendar periods).
    pub period: String,
    pub period_start: NaiveDate,
    pub limit: u64,
    /// Requests recorded so far in the period.
    pub used: u64,
    pub resets_at: DateTime<Utc>,
}

/// `webhook.disabled`: the platform disabled one of the organization's
/// endpoints. Sent to its other endpoints that subscribe to it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookDisabledData {
    #[schema(value_type = String, example = "whk_…")]
    pub webhook_id: WebhookId,
    pub url: String,
    /// `gone` (it answered 410) or `failing` (deliveries failed for 5 days).
    pub reason: String,
    pub failing_since: Option<DateTime<Utc>>,
}

/// `ping`: sent by `POST /v1/webhooks/{id}/test`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PingData {
    #[schema(value_type = String, example = "whk_…")]
    pub webhook_id: WebhookId,
    pub message: String,
}

/// A finding title cut to what a payload carries.
pub fn short_title(title: &str) -> String {
    title.chars().take(MAX_TITLE_CHARS).collect()
}

/// The whole body of a message of `event_type`.
pub fn message(
    tenant: TenantId,
    event_type: &str,
    timestamp: DateTime<Utc>,
    data: &EventData,
) -> Value {
    json!({
        "type": event_type,
        "version": PAYLOAD_VERSION,
        "timestamp": timestamp,
        "organization_id": tenant,
        "data": data,
    })
}

/// One event about to be written to the outbox: its type and data, and which
/// of the tenant's endpoints receive it.
#[derive(Debug, Clone)]
pub struct Emitted {
    /// An [`EventType`] name, or [`PING`].
    pub event_type: &'static str,
    pub data: EventData,
    /// The endpoints (`webhooks.id`) it is delivered to.
    pub targets: Vec<uuid::Uuid>,
    /// Set for events sent at most once per tenant and key.
    pub dedupe_key: Option<String>,
}

impl Emitted {
    /// An event of a subscribable type.
    pub fn new(event_type: EventType, data: EventData, targets: Vec<uuid::Uuid>) -> Self {
        Emitted {
            event_type: event_type.as_str(),
            data,
            targets,
            dedupe_key: None,
        }
    }
}
