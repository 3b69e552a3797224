//! The webhook outbox: events written in the transaction of the change that
//! causes them, each with one delivery per endpoint that receives it. The
//! dispatcher (`webhooks::dispatcher`) sends what is committed here; what is
//! rolled back was never announced.
//!
//! An event no endpoint receives is not written at all, so a tenant without
//! webhooks pays one small read per change and stores nothing.

use super::TenantTx;
use crate::webhooks::events::{self, Emitted};
use chrono::Utc;
use posture_domain::ids::{DeliveryId, EventId};
use posture_domain::webhook::EventType;
use posture_domain::Severity;
use uuid::Uuid;

/// The channel the dispatcher listens on; notified when deliveries commit.
pub const WEBHOOKS_CHANNEL: &str = "posture_webhooks";

/// An enabled endpoint, as event matching sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Subscriber {
    pub id: Uuid,
    pub event_types: Vec<String>,
    pub min_severity: String,
    pub score_threshold: i32,
    pub score_baseline: Option<i16>,
}

impl Subscriber {
    /// Whether it subscribes to `event_type`.
    pub fn wants(&self, event_type: EventType) -> bool {
        self.event_types
            .iter()
            .any(|name| name == event_type.as_str())
    }

    /// The least severe finding it wants `finding.created` for.
    pub fn min_severity(&self) -> Severity {
        // Validated when stored; a value that does not parse sends everything
        // rather than nothing.
        self.min_severity.parse().unwrap_or(Severity::Info)
    }
}

/// The tenant's enabled endpoints.
#[derive(Debug, Clone, Default)]
pub struct Subscribers(pub Vec<Subscriber>);

impl Subscribers {
    /// Those subscribing to `event_type`.
    pub fn of(&self, event_type: EventType) -> impl Iterator<Item = &Subscriber> {
        self.0
            .iter()
            .filter(move |subscriber| subscriber.wants(event_type))
    }

    /// Whether any subscribes to `event_type`.
    pub fn any(&self, event_type: EventType) -> bool {
        self.of(event_type).next().is_some()
    }

    /// The ids of those subscribing to `event_type`.
    pub fn targets(&self, event_type: EventType) -> Vec<Uuid> {
        self.of(event_type)
            .map(|subscriber| subscriber.id)
            .collect()
    }
}

/// The tenant's enabled endpoints (at most 20), read in the transaction that
/// emits, so an endpoint created or disabled concurrently is either wholly in
/// or wholly out.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn subscribers(tx: &mut TenantTx) -> Result<Subscribers, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let rows: Vec<Subscriber> = sqlx::query_as(
        // KEY SHARE: an endpoint deleted meanwhile waits for this transaction
        // (its deliveries' foreign key would fail it otherwise); edits do not.
        "SELECT id, event_types, min_severity, score_threshold, score_baseline
         FROM webhooks WHERE tenant_id = $1 AND enabled ORDER BY id FOR KEY SHARE",
    )
    .bind(tenant_id)
    .fetch_all(tx.conn())
    .await?;
    Ok(Subscribers(rows))
}

/// Writes `emitted` events (those with targets) and their deliveries, due now,
/// and tells dispatchers on commit. An event whose dedupe key the tenant
/// already used is skipped with its deliveries. Returns the ids of the
/// deliveries written.
#[tracing::instrument(level = "debug", skip_all, fields(events = emitted.len()))]
pub async fn emit(tx: &mut TenantTx, emitted: Vec<Emitted>) -> Result<Vec<Uuid>, sqlx::Error> {
    let tenant = tx.tenant_id();
    let now = Utc::now();
    let emitted: Vec<(Uuid, Emitted)> = emitted
        .into_iter()
        .filter(|event| !event.targets.is_empty())
        .map(|event| (EventId::new().as_uuid(), event))
        .collect();
    if emitted.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = emitted.iter().map(|(id, _)| *id).collect();
    let types: Vec<&str> = emitted.iter().map(|(_, event)| event.event_type).collect();
    let payloads: Vec<serde_json::Value> = emitted
        .iter()
        .map(|(_, event)| events::message(tenant, event.event_type, now, &event.data))
        .collect();
    let dedupe_keys: Vec<Option<&str>> = emitted
        .iter()
        .map(|(_, event)| event.dedupe_key.as_deref())
        .collect();
    let written: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO webhook_events (tenant_id, id, event_type, payload, dedupe_key, created_at)
         SELECT $1, e.id, e.event_type, e.payload, e.dedupe_key, $6
         FROM UNNEST($2::uuid[], $3::text[], $4::jsonb[], $5::text[])
              AS e(id, event_type, payload, dedupe_key)
         ON CONFLICT (tenant_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
         RETURNING id",
    )
    .bind(tenant.as_uuid())
    .bind(&ids)
    .bind(&types)
    .bind(&payloads)
    .bind(&dedupe_keys)
    .bind(now)
    .fetch_all(tx.conn())
    .await?;
    drop(payloads);

    let mut delivery_ids = Vec::new();
    let mut webhook_ids = Vec::new();
    let mut event_ids = Vec::new();
    for (event_id, event) in &emitted {
        if !written.contains(event_id) {
            continue;
        }
        for webhook_id in &event.targets {
            delivery_ids.push(DeliveryId::new().as_uuid());
            webhook_ids.push(*webhook_id);
            event_ids.push(*event_id);
        }
    }
    if delivery_ids.is_empty() {
        return Ok(delivery_ids);
    }
    sqlx::query(
        "INSERT INTO webhook_deliveries (tenant_id, id, webhook_id, event_id, next_attempt_at, created_at, updated_at)
         SELECT $1, d.id, d.webhook_id, d.event_id, $5, $5, $5
         FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[]) AS d(id, webhook_id, event_id)",
    )
    .bind(tenant.as_uuid())
    .bind(&delivery_ids)
    .bind(&webhook_ids)
    .bind(&event_ids)
    .bind(now)
    .execute(tx.conn())
    .await?;
    // Delivered on commit: idle dispatchers wake at once instead of at their next poll.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WEBHOOKS_CHANNEL)
        .execute(tx.conn())
        .await?;
    Ok(delivery_ids)
}

/// Records that endpoints `ids` were told about `score` (or, for those never
/// told, that `score` is where they start from).
pub async fn set_score_baseline(
    tx: &mut TenantTx,
    ids: &[Uuid],
    score: i16,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query("UPDATE webhooks SET score_baseline = $3 WHERE tenant_id = $1 AND id = ANY($2)")
        .bind(tenant_id)
        .bind(ids)
        .bind(score)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// What a finding event says about a finding.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FindingFacts {
    pub id: Uuid,
    pub asset_id: Uuid,
    pub title: String,
    pub rule_id: String,
}

/// Titles and rule ids of `ids` (the few findings a scan's events name).
pub async fn finding_facts(
    tx: &mut TenantTx,
    ids: &[Uuid],
) -> Result<Vec<FindingFacts>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    sqlx::query_as(
        "SELECT id, asset_id, title, rule_id FROM findings WHERE tenant_id = $1 AND id = ANY($2)",
    )
    .bind(tenant_id)
    .bind(ids)
    .fetch_all(tx.conn())
    .await
}
