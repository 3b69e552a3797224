//! Webhooks: the signing secret (`whsec_…`), the Standard Webhooks signature
//! scheme, and the rules an endpoint URL and its addresses must satisfy
//! (no loopback, private or otherwise internal targets: SSRF protection).

mod address;
mod event_type;
mod secret;
mod signature;
mod url;

pub use address::is_forbidden_address;
pub use event_type::{EventType, UnknownEventType};
pub use secret::{SecretParseError, WebhookSecret};
pub use signature::{sign, signature_header, verify};
pub use url::{UrlError, WebhookUrl};
