//! Caching in front of PostgreSQL (issue 5): so far the circuit breaker that
//! will guard every Redis call, so a dead or hung Redis costs nothing but a
//! cold cache.

pub mod breaker;
