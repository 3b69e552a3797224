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
        super::usage::get,
        super::posture::get,
        super::posture::history,
        super::compliance::overview,
        super::compliance::framework,
        super::compliance::control,
        super::catalog::frameworks,
        super::catalog::framework,
        super::catalog::weakness_classes,
        super::frameworks::create,
        super::frameworks::list,
        super::frameworks::get,
        super::frameworks::replace,
        super::frameworks::delete,
        super::settings::get,
        super::settings::update,
        super::api_keys::create,
        super::api_keys::list,
        super::api_keys::get,
        super::api_keys::revoke,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::get,
        super::webhooks::update,
        super::webhooks::delete,
        super::webhooks::rotate_secret,
        super::webhook_deliveries::test,
        super::webhook_deliveries::list,
        super::webhook_deliveries::get,
        super::webhook_deliveries::retry,
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
        super::webhook_deliveries::DeliveryPage,
        crate::webhooks::events::WebhookMessage,
    )),
    modifiers(&BearerKey, &IdempotencyKeyHeader),
    tags(
        (name = "org", description = "The caller's organization"),
        (name = "api-keys", description = "API keys (admin scope)"),
        (name = "assets", description = "What gets scanned: repositories, images, hosts, domains, URLs, cloud accounts, SaaS apps"),
        (name = "scans", description = "Submitting scanner reports and following their processing"),
        (name = "findings", description = "De-duplicated findings, their history, and triage"),
        (name = "posture", description = "The security score with its working, and its history"),
        (name = "compliance", description = "Compliance with SOC 2, ISO 27001, NIST 800-53, PCI DSS, CIS Controls and custom frameworks, down to the failing findings"),
        (name = "webhooks", description = "Signed notifications to the organization's endpoints (admin scope). Every message's body is a `WebhookMessage` (see the schema and docs/webhooks.md); it is signed by the Standard Webhooks scheme."),
        (name = "catalog", description = "The built-in compliance catalog: frameworks, controls and mappings (public, no key needed)"),
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

/// Documents the optional `Idempotency-Key` header on every authenticated POST;
/// it is handled by a middleware (`http::idempotency`), not by the handlers, so
/// their annotations do not mention it.
struct IdempotencyKeyHeader;

impl Modify for IdempotencyKeyHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::Required;
        let parameter = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes the request safe to retry: 1–255 visible ASCII characters, e.g. a UUID, \
                 new for every new request. A retry with the same key and the same request \
                 receives the first response again (with `Idempotent-Replayed: true`) for 24 h by \
                 default; \
                 the same key with another body or query is 422 \
                 `/problems/idempotency-key-reused`; while the first request runs, 409 \
                 `/problems/idempotency-key-in-flight` with `Retry-After`.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255)),
            ))
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            if let Some(operation) = item.post.as_mut() {
                operation
                    .parameters
                    .get_or_insert_with(Vec::new)
                    .push(parameter.clone());
            }
        }
    }
}
