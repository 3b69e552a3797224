//! Webhooks (docs/webhooks.md): endpoints a tenant registers, checked against
//! SSRF at registration and at delivery ([`destination`]); one signed delivery
//! attempt ([`client`]); signing itself is in the domain crate
//! (`posture_domain::webhook`).

pub mod client;
pub mod destination;
