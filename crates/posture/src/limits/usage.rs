//! Durable usage: every server counts the API-key requests it admitted per
//! tenant, day and month, and adds them to PostgreSQL (`api_usage`) every
//! `usage_flush_interval_ms`; so Redis losing its data, or being down, never
//! resets a tenant's usage. The flush is additive, so servers never overwrite
//! each other's counts.
//!
//! Back from PostgreSQL come the **floors**: each tenant's recorded usage of
//! the current day and month, loaded for every tenant when the server starts
//! and refreshed for the tenants it serves after every flush. Redis counters
//! never read below their floor (that is how they are re-seeded), and while
//! Redis is unavailable the local estimate is the floor plus what this server
//! admitted since the last flush.
//!
//! A crash loses at most one interval of this server's counts; a graceful
//! shutdown flushes them.

use super::policy::Periods;
use crate::store::Store;
use chrono::{DateTime, NaiveDate, Utc};
use posture_domain::TenantId;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use uuid::Uuid;

/// A calendar period of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Period {
    Day(NaiveDate),
    Month(NaiveDate),
}

impl Period {
    fn kind(self) -> &'static str {
        match self {
            Period::Day(_) => "day",
            Period::Month(_) => "month",
        }
    }

    fn start(self) -> NaiveDate {
        match self {
            Period::Day(start) | Period::Month(start) => start,
        }
    }
}

/// A tenant's recorded usage of one day and one month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Floor {
    day: Option<(NaiveDate, u64)>,
    month: Option<(NaiveDate, u64)>,
}

/// The day's and month's usage of a tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayAndMonth {
    pub day: u64,
    pub month: u64,
}

/// Counts not yet flushed, and floors.
#[derive(Default)]
pub struct UsageBook {
    // Both are read or written on every request of a limited tenant:
    // hashed with foldhash, not SipHash (their keys are tenant ids, which
    // come from verified keys, not from what a client chooses).
    pending: Mutex<HashMap<(TenantId, Period), u64, foldhash::fast::RandomState>>,
    floors: RwLock<HashMap<TenantId, Floor, foldhash::fast::RandomState>>,
}

impl UsageBook {
    /// Counts one admitted request of `tenant` at `now`.
    pub fn record(&self, tenant: TenantId, now: DateTime<Utc>) {
        let periods = Periods::at(now);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *pending
            .entry((tenant, Period::Day(periods.day)))
            .or_default() += 1;
        *pending
            .entry((tenant, Period::Month(periods.month)))
            .or_default() += 1;
    }

    /// The tenant's recorded usage of the periods containing `now` (zero
    /// without a record, or when the record is of an earlier period).
    pub fn floor(&self, tenant: TenantId, now: DateTime<Utc>) -> DayAndMonth {
        let periods = Periods::at(now);
        let floors = self.floors.read().unwrap_or_else(|p| p.into_inner());
        let floor = floors.get(&tenant).copied().unwrap_or_default();
        let of = |record: Option<(NaiveDate, u64)>, current: NaiveDate| {
            record
                .filter(|(start, _)| *start == current)
                .map_or(0, |(_, n)| n)
        };
        DayAndMonth {
            day: of(floor.day, periods.day),
            month: of(floor.month, periods.month),
        }
    }

    /// The floor plus what this server admitted since its last flush: the
    /// best local estimate while Redis is unavailable.
    pub fn local_estimate(&self, tenant: TenantId, now: DateTime<Utc>) -> DayAndMonth {
        let periods = Periods::at(now);
        let floor = self.floor(tenant, now);
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let pending_of = |period| pending.get(&(tenant, period)).copied().unwrap_or(0);
        DayAndMonth {
            day: floor.day + pending_of(Period::Day(periods.day)),
            month: floor.month + pending_of(Period::Month(periods.month)),
        }
    }

    /// Adds the pending counts to PostgreSQL, then refreshes the floors of the
    /// tenants this server has served. Counts that could not be written stay
    /// pending for the next flush.
    pub async fn flush(&self, store: &Store, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let batch: Vec<((TenantId, Period), u64)> = {
            let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.iter().map(|(key, count)| (*key, *count)).collect()
        };
        if !batch.is_empty() {
            write(store, &batch).await?;
            // Written counts move from pending into the floors in one step, so
            // the local estimate (floor + pending) never drops in between.
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let mut floors = self.floors.write().unwrap_or_else(|p| p.into_inner());
            for ((tenant, period), written) in &batch {
                if let Some(count) = pending.get_mut(&(*tenant, *period)) {
                    *count -= (*count).min(*written);
                    if *count == 0 {
                        pending.remove(&(*tenant, *period));
                    }
                }
                let floor = floors.entry(*tenant).or_default();
                let slot = match period {
                    Period::Day(_) => &mut floor.day,
                    Period::Month(_) => &mut floor.month,
                };
                *slot = match *slot {
                    Some((start, count)) if start == period.start() => {
                        Some((start, count + written))
                    }
                    _ => Some((period.start(), *written)),
                };
            }
        }
        let served: Vec<Uuid> = {
            let floors = self.floors.read().unwrap_or_else(|p| p.into_inner());
            floors.keys().map(|tenant| tenant.as_uuid()).collect()
        };
        if !served.is_empty() {
            self.load_floors(store, now, Some(served)).await?;
        }
        Ok(())
    }

    /// Loads floors for `tenants` (`None`: every tenant with usage).
    pub async fn load_floors(
        &self,
        store: &Store,
        now: DateTime<Utc>,
        tenants: Option<Vec<Uuid>>,
    ) -> Result<(), sqlx::Error> {
        let periods = Periods::at(now);
        let rows: Vec<(Uuid, String, i64)> =
            sqlx::query_as("SELECT tenant_id, period, requests FROM current_api_usage($1, $2, $3)")
                .bind(periods.day)
                .bind(periods.month)
                .bind(tenants.as_deref())
                .fetch_all(store.pool())
                .await?;
        let mut loaded: HashMap<TenantId, Floor> = HashMap::new();
        for (tenant, period, requests) in rows {
            let floor = loaded.entry(TenantId::from_uuid(tenant)).or_default();
            let count = u64::try_from(requests).unwrap_or(0);
            match period.as_str() {
                "day" => floor.day = Some((periods.day, count)),
                _ => floor.month = Some((periods.month, count)),
            }
        }
        let mut floors = self.floors.write().unwrap_or_else(|p| p.into_inner());
        let asked = tenants
            .unwrap_or_default()
            .into_iter()
            .map(TenantId::from_uuid);
        for tenant in asked.chain(loaded.keys().copied().collect::<Vec<_>>()) {
            let read = loaded.get(&tenant).copied().unwrap_or_default();
            let floor = floors.entry(tenant).or_default();
            // PostgreSQL only grows, but a floor bumped by a flush after this
            // read started may be ahead of it: keep the larger, per period.
            floor.day = newer_or_larger(floor.day, read.day, periods.day);
            floor.month = newer_or_larger(floor.month, read.month, periods.month);
        }
        Ok(())
    }
}

/// The floor to keep for the period starting `current`: the larger count of
/// the two records of that period (a record of an earlier period counts zero).
fn newer_or_larger(
    held: Option<(NaiveDate, u64)>,
    read: Option<(NaiveDate, u64)>,
    current: NaiveDate,
) -> Option<(NaiveDate, u64)> {
    let count = |record: Option<(NaiveDate, u64)>| {
        record
            .filter(|(start, _)| *start == current)
            .map_or(0, |(_, n)| n)
    };
    Some((current, count(held).max(count(read))))
}

/// One statement for the whole batch, as the owner (`add_api_usage`).
async fn write(store: &Store, batch: &[((TenantId, Period), u64)]) -> Result<(), sqlx::Error> {
    let tenants: Vec<Uuid> = batch.iter().map(|((t, _), _)| t.as_uuid()).collect();
    let kinds: Vec<&str> = batch.iter().map(|((_, p), _)| p.kind()).collect();
    let starts: Vec<NaiveDate> = batch.iter().map(|((_, p), _)| p.start()).collect();
    let counts: Vec<i64> = batch
        .iter()
        .map(|(_, n)| i64::try_from(*n).unwrap_or(i64::MAX))
        .collect();
    sqlx::query("SELECT add_api_usage($1, $2, $3, $4)")
        .bind(&tenants)
        .bind(&kinds)
        .bind(&starts)
        .bind(&counts)
        .execute(store.pool())
        .await
        .map(|_| ())
}

/// Deletes day rows older than a week and month rows older than a year (the
/// function decides the cutoffs from the database's clock).
pub async fn prune(store: &Store) -> Result<u64, sqlx::Error> {
    let pruned: i64 = sqlx::query_scalar("SELECT prune_api_usage()")
        .fetch_one(store.pool())
        .await?;
    Ok(u64::try_from(pruned).unwrap_or(0))
}
