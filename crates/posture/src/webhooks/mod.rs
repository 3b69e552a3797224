//! Webhooks (docs/webhooks.md): endpoints a tenant registers, checked against
//! SSRF at registration ([`destination`]); signing is in the domain crate
//! (`posture_domain::webhook`).

pub mod destination;
