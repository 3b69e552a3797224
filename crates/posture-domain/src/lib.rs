//! Posture's pure domain: the types every other layer agrees on.
//!
//! Nothing in this crate performs I/O. It holds identifiers, the tier catalogue,
//! API key scopes and the API key token format, each parsed once at the edge
//! ("parse, don't validate") so the rest of the system handles only valid values;
//! and the scanner report parsers ([`report`]), which reduce SARIF, CycloneDX and
//! native reports to fingerprinted [`NormalizedFinding`]s.

pub mod api_key;
pub mod asset;
pub mod base62;
pub mod compliance;
pub mod finding;
pub mod fingerprint;
pub mod ids;
pub mod purl;
pub mod report;
pub mod scope;
pub mod score;
pub mod tenant;
pub mod tier;
pub mod webhook;

pub use api_key::{ApiKeyId, ApiKeyToken, KeyParseError, SecretHash};
pub use finding::{Location, NormalizedFinding, Package, Severity};
pub use fingerprint::Fingerprint;
pub use report::{parse_report, ParsedReport, ReportError, ReportErrorKind, ReportFormat};
pub use scope::{Scope, Scopes};
pub use tenant::{TenantId, TenantName, TenantSlug, TenantStatus};
pub use tier::{Tier, TierLimits};
