//! The HTTP API: routes, extractors, errors and the middleware stack.

pub mod api_keys;
pub mod assets;
pub mod catalog;
pub mod compliance;
pub mod error;
pub mod extract;
pub mod finding_json;
pub mod findings;
pub mod frameworks;
pub mod health;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod org;
pub mod pagination;
pub mod posture;
pub mod scans;
pub mod settings;
pub mod timestamp;
pub mod usage;
pub mod webhook_deliveries;
pub mod webhooks;

use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::routing::get;
use axum::Router;
use error::ApiError;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

/// `Cache-Control` of public, tenant-independent resources (the OpenAPI
/// document and the API browser's assets).
const PUBLIC_CACHE_CONTROL: &str = "public, max-age=3600";

/// The HTTP service the server runs: [`router`] within the body limit.
///
/// The limit is set around the router, not with `Router::layer`, which
/// wraps every route once more: one more boxed service that each request
/// clones, and one more boxed future. All it does is mark the request with
/// the limit that the body extractors apply, which needs nothing the router
/// knows. (This layer and tower-http's panic guard, which the request
/// context replaced, cost 9 % of `GET /health/live`'s answers a second and
/// 4–5 % of the cached read's: docs/profiling.md item 23.)
pub fn service(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
       + Send
       + 'static {
    let body_limit = DefaultBodyLimit::max(state.config.max_body_bytes);
    tower::Layer::layer(&body_limit, router(state))
}

/// Builds the router with every route and the request path's layers:
/// request context (id, span, panic guard, timeout, metrics, problem
/// rendering) → [authentication → rate limits → idempotency keys, on `/v1`
/// tenant routes, in the same layer] → handler. The body limit is
/// [`service`]'s.
pub fn router(state: AppState) -> Router {
    let tenant_routes = Router::new()
        .route("/v1/org", get(org::get_org))
        .route("/v1/usage", get(usage::get))
        .route("/v1/settings", get(settings::get).patch(settings::update))
        .route("/v1/posture", get(posture::get))
        .route("/v1/posture/history", get(posture::history))
        .route("/v1/compliance", get(compliance::overview))
        .route("/v1/compliance/{framework}", get(compliance::framework))
        .route(
            "/v1/compliance/{framework}/controls/{control}",
            get(compliance::control),
        )
        .route(
            "/v1/frameworks",
            get(frameworks::list).post(frameworks::create),
        )
        .route(
            "/v1/frameworks/{id}",
            get(frameworks::get)
                .put(frameworks::replace)
                .delete(frameworks::delete),
        )
        .route("/v1/api-keys", get(api_keys::list).post(api_keys::create))
        .route(
            "/v1/api-keys/{id}",
            get(api_keys::get).delete(api_keys::revoke),
        )
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/v1/webhooks/{id}/rotate-secret",
            axum::routing::post(webhooks::rotate_secret),
        )
        .route(
            "/v1/webhooks/{id}/test",
            axum::routing::post(webhook_deliveries::test),
        )
        .route(
            "/v1/webhooks/{id}/deliveries",
            get(webhook_deliveries::list),
        )
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery}",
            get(webhook_deliveries::get),
        )
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery}/retry",
            axum::routing::post(webhook_deliveries::retry),
        )
        .route("/v1/assets", get(assets::list).post(assets::create))
        .route(
            "/v1/assets/{id}",
            get(assets::get)
                .patch(assets::update)
                .delete(assets::delete),
        )
        // The scan body is read in the handler against the tier's report limit.
        .route("/v1/scans", get(scans::list).post(scans::submit))
        .route("/v1/scans/{id}", get(scans::get))
        .route("/v1/findings", get(findings::list))
        .route(
            "/v1/findings/triage",
            axum::routing::post(findings::bulk_triage),
        )
        .route(
            "/v1/findings/{id}",
            get(findings::get).patch(findings::triage),
        )
        // route_layer: only matched routes authenticate, so an unknown path is a
        // 404 rather than a 401. One layer for the request's context,
        // authentication, rate limits and idempotency keys (see `middleware`);
        // it is merged below, after the layer of the other routes.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::tenant_request,
        ));

    Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        // Public and tenant-independent: no key, CDN-cacheable; limited per
        // client IP.
        .merge(
            Router::new()
                .route("/v1/catalog/frameworks", get(catalog::frameworks))
                .route(
                    "/v1/catalog/frameworks/{framework}",
                    get(catalog::framework),
                )
                .route(
                    "/v1/catalog/weakness-classes",
                    get(catalog::weakness_classes),
                )
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::limits::middleware::limit_by_ip,
                )),
        )
        // Tenant-independent and versioned with the binary: cacheable by a CDN.
        .merge(
            Router::<AppState>::from(
                SwaggerUi::new("/docs").url("/openapi.json", openapi::ApiDoc::openapi()),
            )
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static(PUBLIC_CACHE_CONTROL),
            )),
        )
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_context,
        ))
        // After the layer above, which would otherwise wrap these routes a
        // second time: they have the request's context in their own layer.
        .merge(tenant_routes)
        .with_state(state)
}
