//! Integration tests: the real application on port 0, each test against its own
//! freshly cloned database, connected as the restricted application role.
//! One test binary (modules below) keeps link time down.

mod support;

mod account_cache;
mod assets;
mod auth;
mod caching;
mod cancelled_begin;
mod catalog;
mod cli;
mod compliance;
mod cross_tenant;
mod errors;
mod frameworks;
mod health;
mod hostile_input;
mod idempotency;
mod jobs;
mod posture;
mod query_plans;
mod rate_limit_late_replies;
mod rate_limit_script;
mod rate_limits;
mod real_reports;
mod scans;
mod schema_guard;
mod settings;
mod webhook_delivery;
mod webhook_dispatch;
mod webhooks;
