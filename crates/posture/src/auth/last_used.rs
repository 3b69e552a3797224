//! Recording when API keys were last used, off the request path.
//!
//! A request only touches an in-memory map. A background task (see
//! `startup`) calls [`LastUsedRecorder::flush`] every few seconds and writes the
//! pending keys in one statement per tenant. Each key is queued at most once a
//! minute by this instance, and the UPDATE skips rows written within the last
//! minute, so a key costs at most one write a minute however hot it is.

use crate::store::{api_keys, Store};
use chrono::Utc;
use posture_domain::{ApiKeyId, TenantId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one key's use is written at most.
const RECORD_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Pending {
    /// When each key was last queued, to queue it at most once per interval.
    last_queued: HashMap<(TenantId, ApiKeyId), Instant>,
    /// Keys used since the last flush, by tenant.
    due: HashMap<TenantId, Vec<ApiKeyId>>,
}

/// Collects key uses and writes them in batches.
#[derive(Default)]
pub struct LastUsedRecorder {
    pending: Mutex<Pending>,
}

impl LastUsedRecorder {
    /// Notes that a key was used now. Cheap: a map lookup under a short lock.
    pub fn record(&self, tenant_id: TenantId, key_id: &ApiKeyId) {
        self.record_at(tenant_id, key_id, Instant::now());
    }

    fn record_at(&self, tenant_id: TenantId, key_id: &ApiKeyId, now: Instant) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let identity = (tenant_id, key_id.clone());
        let queued_recently = pending
            .last_queued
            .get(&identity)
            .is_some_and(|queued| now.duration_since(*queued) < RECORD_INTERVAL);
        if !queued_recently {
            pending.last_queued.insert(identity, now);
            pending
                .due
                .entry(tenant_id)
                .or_default()
                .push(key_id.clone());
        }
    }

    /// Writes every pending use. Failed writes are logged and dropped: a
    /// `last_used_at` that lags a minute is harmless, a growing backlog is not.
    pub async fn flush(&self, store: &Store) {
        let due = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let now = Instant::now();
            pending
                .last_queued
                .retain(|_, queued| now.duration_since(*queued) < RECORD_INTERVAL);
            std::mem::take(&mut pending.due)
        };
        let used_at = Utc::now();
        for (tenant_id, key_ids) in due {
            let written = async {
                let mut tx = store.begin_tenant(tenant_id).await?;
                api_keys::touch_last_used(&mut tx, &key_ids, used_at).await?;
                tx.commit().await
            };
            if let Err(error) = written.await {
                tracing::warn!(%tenant_id, %error, "could not record API key use");
            }
        }
    }

    /// Keys waiting to be written (for tests and metrics).
    pub fn pending_count(&self) -> usize {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        pending.due.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_queued_at_most_once_a_minute() {
        let recorder = LastUsedRecorder::default();
        let tenant = TenantId::new_random();
        let key = ApiKeyId::parse("AAAAAAAAAAAA").unwrap();
        let start = Instant::now();
        recorder.record_at(tenant, &key, start);
        recorder.record_at(tenant, &key, start + Duration::from_secs(30));
        assert_eq!(recorder.pending_count(), 1);
        recorder.record_at(tenant, &key, start + Duration::from_secs(61));
        assert_eq!(recorder.pending_count(), 2);
    }
}
