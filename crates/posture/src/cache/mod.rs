//! Caching in front of PostgreSQL: [`views`] (L1 in process → L2 Redis →
//! PostgreSQL, with per-tenant generations for invalidation), over [`redis`]
//! (every call behind the [`breaker`] and a timeout), so a dead or hung Redis
//! costs a cold cache and never a failed request. HTTP caching (ETag,
//! `If-None-Match`, `Cache-Control`) is in [`http`].

pub mod breaker;
pub mod control;
pub mod http;
pub mod metrics;
pub mod redis;
pub mod views;
pub mod warm;
