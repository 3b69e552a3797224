//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Posture's HTTP API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Posture API",
        description = "Security posture and compliance for organizations. Authenticate with `Authorization: Bearer sp_live_…`. Every error is RFC 9457 `application/problem+json`; another organization's objects are always 404.",
    ),
    paths(
                super::org::get_org,
        super::settings::get,
        super::settings::update,
        super::api_keys::create,
        super::api_keys::list,
        super::api_keys::get,
        super::api_keys::revoke,
        super::assets::create,
        super::assets::list,
        super::assets::get,
        super::assets::update,
        super::assets::delete,
        super::scans::submit,
        super::scans::list,
        super::scans::get,
        super::findings::list,
        super::findings::get,
        super::findings::triage,
        super::findings::bulk_triage,
        super::health::live,
        super::health::ready,
        super::health::metrics,
    ),
    components(schemas(
        super::api_keys::ApiKeyPage,
        super::assets::AssetPage,
        super::scans::ScanPage,
        super::findings::FindingPage,
    )),
    modifiers(&BearerKey),
    tags(
        (name = "org", description = "The caller's organization"),
        (name = "api-keys", description = "API keys (admin scope)"),
        (name = "assets", description = "What gets scanned: repositories, images, hosts, domains, URLs, cloud accounts, SaaS apps"),
        (name = "scans", description = "Submitting scanner reports and following their processing"),
        (name = "findings", description = "De-duplicated findings, their history, and triage"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sp_live_…")
                    .description(Some(
                        "An API key created with `posture admin key create` or POST /v1/api-keys.",
                    ))
                    .build(),
            ),
        );
    }
}
