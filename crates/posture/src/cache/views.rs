//! Cached tenant views (the bodies of `GET /v1/posture`, `/v1/compliance`, …):
//! L1 in this process → L2 Redis → PostgreSQL, filling the layers on the way back.
//!
//! **Keys carry a version**, `e<epoch>g<generation>`: one of the tenant's two
//! [`Generation`] counters (one INCR invalidates every view under it, no KEYS
//! or SCAN) and a global epoch (`posture:epoch`). Each process trusts a version
//! it read for at most `version_ttl` (1 s), so a change is visible everywhere
//! within a second while Redis is up. While Redis is unreachable the last known
//! version is kept, and L1 entries live out their own TTL.
//!
//! A generation bump that cannot reach Redis leaves L2 entries of the old
//! version behind; so the process remembers it failed, and once Redis answers
//! again it bumps the epoch, abandoning every L2 entry written before.
//!
//! **Single flight**: concurrent misses for one key run one load (moka's
//! `try_get_with`). **Early refresh** (XFetch): a hit on an entry close to its
//! expiry reloads it in the background with a probability that grows as expiry
//! nears and with the cost of the load, so a hot key is refreshed before it
//! expires instead of sending a burst of misses to PostgreSQL.

use super::redis::{Redis, EPOCH_KEY};
use axum::body::Bytes;
use axum::http::HeaderValue;
use posture_domain::TenantId;
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// XFetch's β: above 1 favours earlier refreshes.
const XFETCH_BETA: f64 = 1.0;

/// The last part of an L1 entry's life in which a hit renews it in the
/// background (from L2, else PostgreSQL: what a miss would do). XFetch alone
/// rarely fires for a view that loads in a millisecond — its lead is the load
/// time — so hot entries used to expire and their next request waited for
/// Redis, which under saturated cores took up to its timeout: 2 % of a cached
/// read's requests waited so.
const REFRESH_AHEAD_SHARE: f64 = 0.2;

/// How the view cache behaves.
#[derive(Debug, Clone)]
pub struct ViewCacheSettings {
    /// Use the in-process layer (off: every read goes to Redis, for benchmarks).
    pub l1_enabled: bool,
    /// How long an L1 entry lives.
    pub l1_ttl: Duration,
    /// Most L1 entries.
    pub l1_capacity: u64,
    /// How long an L2 entry lives.
    pub l2_ttl: Duration,
    /// How long a tenant's version read from Redis is trusted.
    pub version_ttl: Duration,
}

/// A cached response body with its strong ETag.
#[derive(Debug)]
pub struct CachedView {
    /// Shared with every response that serves it (no copy per request).
    pub body: Bytes,
    /// `"<hex>"`: a hash of the body, so equal bodies have equal tags whatever
    /// their version (and a reset counter cannot make a stale tag match).
    pub etag: String,
    /// The ETag as a header value, made once.
    pub etag_header: HeaderValue,
    /// When this process got it, and how long the load that produced it took.
    fetched: Instant,
    load_cost: Duration,
    /// What a reader worked out from the body once, such as authenticated
    /// and decoded credentials ([`CachedView::derived`]).
    derived: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl CachedView {
    fn new(body: Vec<u8>, load_cost: Duration) -> Self {
        let etag = super::http::strong_etag(&body);
        CachedView {
            body: Bytes::from(body),
            etag_header: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
            etag,
            fetched: Instant::now(),
            load_cost,
            derived: OnceLock::new(),
        }
    }

    /// `derive(body)`, worked out by the first reader of this view and kept
    /// with it: a view is immutable, so every later reader of the same view
    /// gets the same value without working it out again. (A view read as
    /// two types keeps the first; the second is worked out each time.)
    pub fn derived<T: Any + Send + Sync>(&self, derive: impl FnOnce(&[u8]) -> T) -> Arc<T> {
        if let Some(kept) = self.derived.get() {
            if let Ok(value) = kept.clone().downcast::<T>() {
                return value;
            }
            return Arc::new(derive(&self.body));
        }
        let value = Arc::new(derive(&self.body));
        let _ = self.derived.set(value.clone());
        value
    }
}

/// Hit and miss counters per layer, for `/metrics`.
#[derive(Debug, Default)]
pub struct ViewCacheMetrics {
    pub l1_hits: AtomicU64,
    pub l1_misses: AtomicU64,
    pub l2_hits: AtomicU64,
    pub l2_misses: AtomicU64,
    /// Loads from PostgreSQL.
    pub loads: AtomicU64,
    /// Background early refreshes started.
    pub early_refreshes: AtomicU64,
}

/// Which of a tenant's generation counters a view depends on: each is bumped
/// by different changes, so a scan does not evict the tenant's key lookups and
/// a tier change does not evict its posture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Posture and compliance views: bumped when a posture refresh stores a
    /// new summary (after scans, triage, custom framework changes, …).
    Posture,
    /// The organization and its API keys' credentials: bumped by tier and
    /// status changes, key revocation and tenant deletion.
    Account,
}

impl Generation {
    /// Every generation.
    pub const ALL: [Generation; 2] = [Generation::Posture, Generation::Account];

    /// The name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::Posture => "posture",
            Generation::Account => "account",
        }
    }

    /// The tag in keys: the counter's name, and the L1 key prefix.
    fn tag(self) -> &'static str {
        match self {
            Generation::Posture => "gen",
            Generation::Account => "acct",
        }
    }

    /// The tenant's counter in Redis; hash-tagged so all of a tenant's keys
    /// share a Redis Cluster slot.
    fn key(self, tenant: TenantId) -> String {
        format!("{{t:{tenant}}}:{}", self.tag())
    }
}

/// A tenant's versions as last read, one per [`Generation`].
#[derive(Clone)]
struct TenantVersions {
    posture: Arc<str>,
    account: Arc<str>,
    read_at: Instant,
}

impl TenantVersions {
    fn of(&self, generation: Generation) -> Arc<str> {
        match generation {
            Generation::Posture => self.posture.clone(),
            Generation::Account => self.account.clone(),
        }
    }
}

/// Bumps one of `tenant`'s generations in Redis (so every process drops the
/// views under it within `version_ttl`); false if Redis did not answer. For
/// processes without a view cache of their own, such as operator commands.
pub async fn bump_generation(redis: &Redis, tenant: TenantId, generation: Generation) -> bool {
    let mut command = redis::cmd("INCR");
    command.arg(generation.key(tenant));
    redis.query::<u64>(&command).await.is_ok()
}

/// The caches' hasher. Every read hashes its two L1 keys (about 70 bytes
/// each) and its tenant's id: foldhash, seeded per process like the standard
/// library's SipHash but several times faster on such keys.
type KeyHasher = foldhash::fast::RandomState;

/// The view cache of this process.
pub struct ViewCache {
    settings: ViewCacheSettings,
    redis: Redis,
    l1: moka::future::Cache<String, Arc<CachedView>, KeyHasher>,
    /// Tenant → its versions, trusted for `version_ttl` after they were read.
    versions: moka::sync::Cache<TenantId, TenantVersions, KeyHasher>,
    /// Keys being refreshed early, so one hot key gets one refresh.
    refreshing: moka::sync::Cache<String, (), KeyHasher>,
    /// Tenants whose versions are being read in the background.
    reading_versions: Mutex<HashSet<TenantId, KeyHasher>>,
    /// Tenant → how many times this process invalidated its views. Part of
    /// every L1 key, so a load that started before an invalidation fills a
    /// key nobody asks for any more, even while Redis is down and the version
    /// stays the same; and a version read that overlapped an invalidation is
    /// not trusted. One counter per tenant that ever changed (bounded by the
    /// number of tenants).
    local_bumps: Mutex<HashMap<TenantId, u64, KeyHasher>>,
    /// Counters per [`Generation`], in [`Generation::ALL`] order.
    metrics: [ViewCacheMetrics; 2],
}

/// Why a view could not be produced: the loader's own error.
pub type LoadError = Arc<crate::http::error::ApiError>;

impl ViewCache {
    /// An empty cache over `redis`.
    pub fn new(settings: ViewCacheSettings, redis: Redis) -> Self {
        ViewCache {
            l1: moka::future::Cache::builder()
                .max_capacity(settings.l1_capacity)
                .time_to_live(settings.l1_ttl)
                // Lets `invalidate_tenant` drop a tenant's entries by key prefix.
                .support_invalidation_closures()
                .build_with_hasher(KeyHasher::default()),
            versions: moka::sync::Cache::builder()
                .max_capacity(settings.l1_capacity)
                .time_to_live(Duration::from_secs(600))
                .build_with_hasher(KeyHasher::default()),
            refreshing: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(30))
                .build_with_hasher(KeyHasher::default()),
            settings,
            redis,
            reading_versions: Mutex::default(),
            local_bumps: Mutex::default(),
            metrics: Default::default(),
        }
    }

    /// The counters.
    pub fn metrics(&self, generation: Generation) -> &ViewCacheMetrics {
        &self.metrics[generation as usize]
    }

    /// How many times this process invalidated the tenant's views.
    fn local_bumps(&self, tenant: TenantId) -> u64 {
        self.local_bumps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&tenant)
            .copied()
            .unwrap_or(0)
    }

    /// The tenant's current version of `generation`: trusted for
    /// `version_ttl`, then read from Redis (the epoch and both generations in
    /// one MGET). Without Redis, the last known version (or `local` for a
    /// tenant never seen).
    ///
    /// A version past three quarters of its time is read again in the background (once
    /// per tenant at a time) while it is still served, so a tenant in steady
    /// use never waits for this round trip: on a machine whose cores Redis
    /// shares with the server, one took milliseconds under load. The bound
    /// is the same — no version is used longer than `version_ttl` after it
    /// was read.
    pub async fn version(self: &Arc<Self>, tenant: TenantId, generation: Generation) -> Arc<str> {
        let known = self.versions.get(&tenant);
        if let Some(versions) = &known {
            let age = versions.read_at.elapsed();
            if age < self.settings.version_ttl {
                if age >= self.settings.version_ttl * 3 / 4 {
                    self.read_versions_ahead(tenant);
                }
                return versions.of(generation);
            }
        }
        match self.read_versions(tenant).await {
            Some(versions) => versions.of(generation),
            // Keep serving what we know; L1 entries expire by their TTL.
            None => known.map_or_else(|| Arc::from("local"), |versions| versions.of(generation)),
        }
    }

    /// Reads the tenant's versions in the background, unless a read of them
    /// is already under way.
    fn read_versions_ahead(self: &Arc<Self>, tenant: TenantId) {
        let claimed = self
            .reading_versions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(tenant);
        if !claimed {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            let _ = cache.read_versions(tenant).await;
            cache
                .reading_versions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&tenant);
        });
    }

    /// Reads the tenant's versions from Redis and trusts them from now on,
    /// unless an invalidation overlapped the read; `None` if Redis did not
    /// answer.
    async fn read_versions(&self, tenant: TenantId) -> Option<TenantVersions> {
        let bumps_before = self.local_bumps(tenant);
        // An owed epoch bump goes first, so the version read below is after it.
        self.redis.pay_epoch_debt().await;
        let mut command = redis::cmd("MGET");
        command
            .arg(EPOCH_KEY)
            .arg(Generation::Posture.key(tenant))
            .arg(Generation::Account.key(tenant));
        let (epoch, posture, account) = self
            .redis
            .query::<(Option<u64>, Option<u64>, Option<u64>)>(&command)
            .await
            .ok()?;
        let epoch = epoch.unwrap_or(0);
        let versions = TenantVersions {
            posture: format!("e{epoch}g{}", posture.unwrap_or(0)).into(),
            account: format!("e{epoch}a{}", account.unwrap_or(0)).into(),
            read_at: Instant::now(),
        };
        // A read that overlapped an invalidation may hold the version from
        // before it: use it for this request, trust it for none.
        if self.local_bumps(tenant) == bumps_before {
            self.versions.insert(tenant, versions.clone());
        }
        Some(versions)
    }

    /// Marks every cached view of the tenant under `generation` stale: one
    /// INCR. In this process the change is visible at once; elsewhere within
    /// `version_ttl`.
    pub async fn invalidate(&self, tenant: TenantId, generation: Generation) {
        if !bump_generation(&self.redis, tenant, generation).await {
            // L2 may hold this tenant's views under the old version: abandon
            // all of L2 once Redis is back.
            self.redis.owe_epoch_bump();
        }
        // After the INCR: version reads that started before it are not
        // trusted, and new L1 keys are used from now on.
        *self
            .local_bumps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(tenant)
            .or_default() += 1;
        // Forget the versions only after the INCR, so a read in between cannot
        // re-read the old one and trust it for another `version_ttl`.
        self.versions.invalidate(&tenant);
        // L1 entries of the old version are unreachable once Redis gives the
        // new one, but while Redis is down the version stays the same: drop
        // them, so nothing outlives the change here.
        let prefix = l1_prefix(tenant, generation);
        let _ = self
            .l1
            .invalidate_entries_if(move |key, _| key.starts_with(&prefix));
    }

    /// The view `name` of `tenant`: from L1, else L2, else `load` (once for
    /// concurrent callers), filling the layers on the way back.
    pub async fn get_or_load<F, Fut>(
        self: &Arc<Self>,
        tenant: TenantId,
        generation: Generation,
        name: &str,
        load: F,
    ) -> Result<Arc<CachedView>, LoadError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, crate::http::error::ApiError>> + Send + 'static,
    {
        let slot = self.slot(tenant, generation, name).await;
        let counters = self.metrics(generation);
        if !self.settings.l1_enabled {
            return self.l2_or_load(&slot, &load).await;
        }
        if let Some(view) = self.l1.get(&slot.l1).await {
            counters.l1_hits.fetch_add(1, Ordering::Relaxed);
            self.maybe_refresh_early(&slot, &view, load);
            return Ok(view);
        }
        counters.l1_misses.fetch_add(1, Ordering::Relaxed);
        let cache = self.clone();
        let fill = slot.clone();
        // Boxed: the miss path's future (moka's single flight around L2 and
        // the load) is many times the hit path's, and unboxed it would size
        // this future, and every future awaiting it up to the request's,
        // for the miss — all of it copied each time one of them is moved.
        Box::pin(self.l1.try_get_with(slot.l1.clone(), async move {
            cache.l2_or_load(&fill, &load).await
        }))
        .await
        .map_err(|error: Arc<LoadError>| (*error).clone())
    }

    /// Replaces the view `name` of `tenant` in L1 and L2 with `body` (a caller
    /// that found the cached one unusable and loaded it afresh).
    pub async fn replace(
        self: &Arc<Self>,
        tenant: TenantId,
        generation: Generation,
        name: &str,
        body: Vec<u8>,
    ) -> Arc<CachedView> {
        let slot = self.slot(tenant, generation, name).await;
        let view = Arc::new(CachedView::new(body, Duration::ZERO));
        self.fill_l2(&slot, &view).await;
        if self.settings.l1_enabled {
            self.l1.insert(slot.l1.clone(), view.clone()).await;
        }
        view
    }

    /// Where the view `name` of `tenant` lives now.
    async fn slot(
        self: &Arc<Self>,
        tenant: TenantId,
        generation: Generation,
        name: &str,
    ) -> Arc<Slot> {
        let bumps = self.local_bumps(tenant);
        let version = self.version(tenant, generation).await;
        // One string: the L2 key is made from it only on an L1 miss.
        let l1 = l1_key(tenant, generation, name, &version, bumps);
        Arc::new(Slot {
            generation,
            tenant,
            // The local part is the last `:l`: it ends in digits only.
            shared_len: l1.rfind(":l").unwrap_or(l1.len()),
            l1,
        })
    }

    /// Writes `view` to L2; a failed write costs nothing but a later miss.
    async fn fill_l2(&self, slot: &Slot, view: &CachedView) {
        let mut set = redis::cmd("SET");
        set.arg(slot.l2())
            .arg(&view.body[..])
            .arg("PX")
            .arg(u64::try_from(self.settings.l2_ttl.as_millis()).unwrap_or(u64::MAX));
        let _ = self.redis.query::<()>(&set).await;
    }

    async fn l2_or_load<F, Fut>(&self, slot: &Slot, load: &F) -> Result<Arc<CachedView>, LoadError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, crate::http::error::ApiError>>,
    {
        let counters = self.metrics(slot.generation);
        let mut get = redis::cmd("GET");
        get.arg(slot.l2());
        if let Ok(Some(body)) = self.redis.query::<Option<Vec<u8>>>(&get).await {
            counters.l2_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::new(CachedView::new(body, Duration::ZERO)));
        }
        counters.l2_misses.fetch_add(1, Ordering::Relaxed);
        self.load_fresh(slot, load).await
    }

    /// Refreshes a hit in the background, at most one refresh per entry at a
    /// time: from PostgreSQL when XFetch says so (`now + cost·β·(−ln U)`
    /// passes expiry), else, in the last [`REFRESH_AHEAD_SHARE`] of its life,
    /// the way a miss would load it (L2, then PostgreSQL), so that a hot entry
    /// is replaced before it expires instead of by a request that waits.
    fn maybe_refresh_early<F, Fut>(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        view: &Arc<CachedView>,
        load: F,
    ) where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, crate::http::error::ApiError>> + Send + 'static,
    {
        let cost = view.load_cost.max(Duration::from_millis(1)).as_secs_f64();
        let uniform: f64 = rand::random::<f64>().max(f64::MIN_POSITIVE);
        let lead = cost * XFETCH_BETA * -uniform.ln();
        let age = view.fetched.elapsed().as_secs_f64();
        let ttl = self.settings.l1_ttl.as_secs_f64();
        let from_postgres = age + lead >= ttl;
        if !from_postgres && age < ttl * (1.0 - REFRESH_AHEAD_SHARE) {
            return;
        }
        let mut claimed = false;
        self.refreshing
            .entry(slot.l1.clone())
            .or_insert_with(|| claimed = true);
        if !claimed {
            return;
        }
        self.metrics(slot.generation)
            .early_refreshes
            .fetch_add(1, Ordering::Relaxed);
        let cache = self.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            let fresh = if from_postgres {
                cache.load_fresh(&slot, &load).await
            } else {
                cache.l2_or_load(&slot, &load).await
            };
            if let Ok(fresh) = fresh {
                cache.l1.insert(slot.l1.clone(), fresh).await;
            }
            cache.refreshing.invalidate(&slot.l1);
        });
    }

    /// Loads from PostgreSQL and fills L2 (on an L2 miss, and for an early
    /// refresh, which skips L2's copy: it is as old as the entry being replaced).
    async fn load_fresh<F, Fut>(&self, slot: &Slot, load: &F) -> Result<Arc<CachedView>, LoadError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, crate::http::error::ApiError>>,
    {
        self.metrics(slot.generation)
            .loads
            .fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let body = load().await.map_err(Arc::new)?;
        let view = Arc::new(CachedView::new(body, started.elapsed()));
        self.fill_l2(slot, &view).await;
        Ok(view)
    }
}

/// Where one view lives in each layer.
struct Slot {
    generation: Generation,
    tenant: TenantId,
    /// `<tenant>:<generation>:<name>:<version>:l<local bumps>`.
    l1: String,
    /// The length of the L1 key without its local part (`:l<local bumps>`),
    /// the part every instance shares.
    shared_len: usize,
}

impl Slot {
    /// The L2 key: the tenant's hash tag, then the L1 key without the local
    /// part (shared by every instance).
    fn l2(&self) -> String {
        l2_key(self.tenant, &self.l1[..self.shared_len])
    }
}

/// The start of every L1 key of the tenant's views under `generation`.
fn l1_prefix(tenant: TenantId, generation: Generation) -> String {
    let mut prefix = String::with_capacity(48);
    push_l1_prefix(&mut prefix, tenant, generation);
    prefix
}

/// `<tenant>:<generation>:`, the start of [`l1_key`].
fn push_l1_prefix(key: &mut String, tenant: TenantId, generation: Generation) {
    let mut uuid = uuid::Uuid::encode_buffer();
    key.push_str(tenant.as_uuid().hyphenated().encode_lower(&mut uuid));
    key.push(':');
    key.push_str(generation.tag());
    key.push(':');
}

/// `<tenant>:<generation>:<name>:<version>:l<local bumps>`, an L1 key. Made
/// twice per request (the key's credentials and the view), so pushed piece by
/// piece: through `format!` it was over a quarter of a view lookup's instructions.
fn l1_key(
    tenant: TenantId,
    generation: Generation,
    name: &str,
    version: &str,
    bumps: u64,
) -> String {
    let mut key = String::with_capacity(64 + name.len() + version.len());
    push_l1_prefix(&mut key, tenant, generation);
    key.push_str(name);
    key.push(':');
    key.push_str(version);
    key.push_str(":l");
    key.push_str(itoa::Buffer::new().format(bumps));
    key
}

/// An L2 key: the tenant's hash tag, then the view's versioned key.
fn l2_key(tenant: TenantId, key: &str) -> String {
    format!("{{t:{tenant}}}:view:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::{oneshot, Notify};

    fn cache() -> Arc<ViewCache> {
        let settings = ViewCacheSettings {
            l1_enabled: true,
            l1_ttl: Duration::from_secs(5),
            l1_capacity: 100,
            l2_ttl: Duration::from_secs(30),
            version_ttl: Duration::from_secs(1),
        };
        Arc::new(ViewCache::new(settings, Redis::disabled()))
    }

    #[test]
    fn l1_keys_name_tenant_generation_view_version_and_local_bumps() {
        let tenant = TenantId::from_uuid(uuid::Uuid::from_u128(
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ));
        let key = l1_key(tenant, Generation::Account, "key:key_7Yx", "e3a12", 40);
        assert_eq!(
            key,
            "01234567-89ab-cdef-0123-456789abcdef:acct:key:key_7Yx:e3a12:l40"
        );
        // Invalidation finds a tenant's keys of one generation by this prefix.
        assert!(key.starts_with(&l1_prefix(tenant, Generation::Account)));
        assert!(!key.starts_with(&l1_prefix(tenant, Generation::Posture)));
    }

    /// Without Redis the version never changes, so only the local part of
    /// the key keeps a load that straddled an invalidation from being served
    /// after it.
    #[tokio::test]
    async fn a_load_overlapping_an_invalidation_is_not_served_after_it() {
        let cache = cache();
        let tenant = TenantId::new_random();
        let started = Arc::new(Notify::new());
        let (release, released) = oneshot::channel::<()>();
        let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
        let slow = {
            let (cache, started, released) = (cache.clone(), started.clone(), released.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(tenant, Generation::Account, "org", move || {
                        let (started, released) = (started.clone(), released.clone());
                        async move {
                            started.notify_one();
                            if let Some(released) = released.lock().await.take() {
                                let _ = released.await;
                            }
                            Ok(b"before".to_vec())
                        }
                    })
                    .await
                    .map(|view| view.body.clone())
            })
        };
        started.notified().await;
        cache.invalidate(tenant, Generation::Account).await;
        release.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap(), &b"before"[..]);
        let after = cache
            .get_or_load(tenant, Generation::Account, "org", || async {
                Ok(b"after".to_vec())
            })
            .await
            .unwrap();
        assert_eq!(after.body, &b"after"[..]);
        // Other tenants and the other generation are untouched by it.
        assert_eq!(cache.local_bumps(TenantId::new_random()), 0);
        assert_eq!(cache.local_bumps(tenant), 1);
    }

    /// Serves `body` for `name` from L1 as if it had been loaded `age` ago.
    async fn cached_since(cache: &Arc<ViewCache>, tenant: TenantId, name: &str, age: Duration) {
        let slot = cache.slot(tenant, Generation::Posture, name).await;
        let mut view = CachedView::new(b"old".to_vec(), Duration::from_micros(10));
        view.fetched = Instant::now() - age;
        cache.l1.insert(slot.l1.clone(), Arc::new(view)).await;
    }

    /// A hit late in an entry's life is served at once and renews the entry
    /// in the background; one earlier in its life loads nothing.
    #[tokio::test]
    async fn a_hit_near_expiry_renews_the_entry_in_the_background() {
        let cache = cache();
        let tenant = TenantId::new_random();
        let ttl = cache.settings.l1_ttl;
        cached_since(&cache, tenant, "young", ttl / 10).await;
        cached_since(&cache, tenant, "old", ttl - ttl / 10).await;
        let loads = Arc::new(AtomicU64::new(0));
        let loaded = Arc::new(Notify::new());
        let loader = || {
            let (loads, loaded) = (loads.clone(), loaded.clone());
            move || {
                let (loads, loaded) = (loads.clone(), loaded.clone());
                async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    loaded.notify_one();
                    Ok(b"new".to_vec())
                }
            }
        };
        for name in ["young", "old"] {
            let served = cache
                .get_or_load(tenant, Generation::Posture, name, loader())
                .await
                .unwrap();
            assert_eq!(
                served.body,
                &b"old"[..],
                "{name}: the hit is served as it is"
            );
        }
        loaded.notified().await;
        // The refresh inserts after its load; the next read sees it once it has.
        let renewed = async {
            loop {
                let view = cache
                    .get_or_load(tenant, Generation::Posture, "old", loader())
                    .await
                    .unwrap();
                if view.body == b"new"[..] {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), renewed)
            .await
            .expect("the renewed entry replaces the old one");
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "only the old entry was reloaded"
        );
    }
}
