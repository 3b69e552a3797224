//! Posture: a multi-tenant security posture and compliance service.
//!
//! The folders follow the request path: [`http`] (routes, errors, middleware) →
//! [`auth`] (API key → tenant) → [`store`] (tenant transactions under row-level
//! security). [`startup`] assembles them; [`cli`] is the `posture` command.

pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod limits;
pub mod startup;
pub mod state;
pub mod store;
pub mod summary;
pub mod telemetry;
pub mod webhooks;
