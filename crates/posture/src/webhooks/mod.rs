//! Webhooks (docs/webhooks.md): endpoints a tenant registers, checked against
//! SSRF at registration and at delivery ([`destination`]); the events a change
//! causes, written to the outbox in its transaction ([`triggers`], [`events`],
//! `store::outbox`); the dispatcher that sends them with retries
//! ([`dispatcher`]), one signed attempt at a time ([`client`]). Signing itself
//! is in the domain crate (`posture_domain::webhook`).

pub mod client;
pub mod destination;
pub mod dispatcher;
pub mod events;
pub mod quota;
pub mod triggers;
