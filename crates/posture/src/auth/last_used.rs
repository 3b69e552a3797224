//! Recording when API keys were last used, off the request path.
//!
//! A request only touches an in-memory map. A background task (see
//! `startup`) calls [`LastUsedRecorder::flush`] every few seconds and writes the
//! pending keys of every tenant in one statement (a thousand keys a
//! statement). Each key is queued at most once a minute by this instance, and
//! the UPDATE skips rows written within the last minute, so a key costs at
//! most one write a minute however hot it is.

use crate::store::{api_keys, Store};
use posture_domain::{ApiKeyId, TenantId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one key's use is written at most.
const RECORD_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Pending {
    /// When each key was last queued, to queue it at most once per interval.
    /// Looked up on every authenticated request: hashed with foldhash, not
    /// SipHash (the keys are verified keys' ids, not chosen by a client).
    last_queued: HashMap<(TenantId, ApiKeyId), Instant, foldhash::fast::RandomState>,
    /// Keys used since the last flush.
    due: Vec<(TenantId, ApiKeyId)>,
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
            pending.last_queued.insert(identity.clone(), now);
            pending.due.push(identity);
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
        // One statement for all tenants: a transaction per tenant made a
        // server that had just served a thousand tenants run a thousand of
        // them in a row (docs/profiling.md item 21).
        for used in due.chunks(api_keys::MOST_KEYS_TOUCHED_AT_ONCE) {
            if let Err(error) = api_keys::touch_last_used(store, used).await {
                tracing::warn!(keys = used.len(), %error, "could not record API keys' use");
            }
        }
    }

    /// Keys waiting to be written (for tests and metrics).
    pub fn pending_count(&self) -> usize {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        pending.due.len()
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
