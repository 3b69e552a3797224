//! The public compliance catalog: the built-in frameworks, their controls and
//! what maps to each, and the weakness classes behind the mappings. No
//! credential is needed and nothing depends on the tenant, so the answers are
//! `Cache-Control: public` (a CDN may keep them) with a strong `ETag`. The
//! catalog is compiled into the binary, so each body is serialized once.

use super::compliance::MappingView;
use super::error::ApiError;
use crate::cache::http::{respond_with, strong_etag};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use posture_domain::compliance::Framework;
use posture_domain::compliance::{builtin, WeaknessClass};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use utoipa::ToSchema;

/// `Cache-Control` of catalog answers: they change only with a new release.
const CATALOG_CACHE_CONTROL: &str = "public, max-age=3600, stale-while-revalidate=86400";

/// The built-in frameworks.
#[derive(Serialize, ToSchema)]
pub struct CatalogFrameworkList {
    pub data: Vec<CatalogFrameworkSummary>,
}

/// One built-in framework, without its controls.
#[derive(Serialize, ToSchema)]
pub struct CatalogFrameworkSummary {
    /// `soc2`, `iso27001`, `nist-800-53`, `pci-dss` or `cis-v8`.
    pub id: String,
    pub name: String,
    pub version: String,
    /// How many of the framework's controls the catalog holds.
    pub controls: usize,
}

/// A built-in framework with every control and what maps to it.
#[derive(Serialize, ToSchema)]
pub struct CatalogFramework {
    pub id: String,
    pub name: String,
    pub version: String,
    pub controls: Vec<CatalogControl>,
}

/// One control of a built-in framework.
#[derive(Serialize, ToSchema)]
pub struct CatalogControl {
    /// The framework's own id, e.g. `CC6.1`.
    pub id: String,
    /// Our short title.
    pub title: String,
    pub mapping: MappingView,
}

/// The weakness classes that link findings to controls.
#[derive(Serialize, ToSchema)]
pub struct WeaknessClassList {
    pub data: Vec<WeaknessClassView>,
}

/// A weakness class: which findings belong to it and which controls they fail.
#[derive(Serialize, ToSchema)]
pub struct WeaknessClassView {
    pub id: String,
    pub title: String,
    /// The OWASP Top 10 2021 category whose CWE list the class follows.
    pub owasp: Option<String>,
    pub cwes: Vec<u32>,
    /// Rule ids, exact or `prefix*`.
    pub rules: Vec<String>,
    /// Whether dependency (package) findings belong to it.
    pub dependencies: bool,
    /// Asset kinds it applies to (empty: any).
    pub asset_kinds: Vec<String>,
    /// Framework id → the ids of the controls the class fails.
    pub controls: BTreeMap<String, Vec<String>>,
}

impl From<&Framework> for CatalogFramework {
    fn from(framework: &Framework) -> Self {
        CatalogFramework {
            id: framework.id.clone(),
            name: framework.name.clone(),
            version: framework.version.clone(),
            controls: framework
                .controls
                .iter()
                .map(|control| CatalogControl {
                    id: control.id.clone(),
                    title: control.title.clone(),
                    mapping: MappingView::from(control),
                })
                .collect(),
        }
    }
}

impl From<&WeaknessClass> for WeaknessClassView {
    fn from(class: &WeaknessClass) -> Self {
        WeaknessClassView {
            id: class.id.clone(),
            title: class.title.clone(),
            owasp: class.owasp.clone(),
            cwes: class.matcher.cwes.iter().copied().collect(),
            rules: class
                .matcher
                .rules
                .iter()
                .map(ToString::to_string)
                .collect(),
            dependencies: class.matcher.dependencies,
            asset_kinds: class
                .asset_kinds
                .iter()
                .map(|kind| kind.as_str().to_owned())
                .collect(),
            controls: class.controls.clone(),
        }
    }
}

/// A serialized answer and its tag.
struct Document {
    body: Bytes,
    etag: String,
}

impl Document {
    fn of(value: &impl Serialize) -> Document {
        // Plain data (strings, numbers, maps with string keys) always serializes.
        let body = serde_json::to_vec(value).unwrap_or_default();
        let etag = strong_etag(&body);
        Document {
            body: Bytes::from(body),
            etag,
        }
    }

    fn respond(&self, headers: &HeaderMap) -> Response {
        respond_with(
            headers,
            self.body.clone(),
            &self.etag,
            HeaderValue::from_static(CATALOG_CACHE_CONTROL),
        )
    }
}

/// Every catalog answer, serialized on first use.
struct Documents {
    frameworks: Document,
    framework: HashMap<String, Document>,
    classes: Document,
}

fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let catalog = builtin();
        Documents {
            frameworks: Document::of(&CatalogFrameworkList {
                data: catalog
                    .frameworks
                    .iter()
                    .map(|framework| CatalogFrameworkSummary {
                        id: framework.id.clone(),
                        name: framework.name.clone(),
                        version: framework.version.clone(),
                        controls: framework.controls.len(),
                    })
                    .collect(),
            }),
            framework: catalog
                .frameworks
                .iter()
                .map(|framework| {
                    (
                        framework.id.clone(),
                        Document::of(&CatalogFramework::from(framework)),
                    )
                })
                .collect(),
            classes: Document::of(&WeaknessClassList {
                data: catalog
                    .classes
                    .iter()
                    .map(WeaknessClassView::from)
                    .collect(),
            }),
        }
    })
}

/// The built-in frameworks. Public and CDN-cacheable.
#[utoipa::path(get, path = "/v1/catalog/frameworks", tag = "catalog",
    responses(
        (status = 200, description = "The built-in frameworks", body = CatalogFrameworkList),
        (status = 304, description = "Not modified (`If-None-Match` named the current `ETag`)"),
    ))]
pub async fn frameworks(headers: HeaderMap) -> Response {
    documents().frameworks.respond(&headers)
}

/// A built-in framework's controls and what maps to each. Public and
/// CDN-cacheable.
#[utoipa::path(get, path = "/v1/catalog/frameworks/{framework}", tag = "catalog",
    params(("framework" = String, Path, description = "`soc2`, `iso27001`, `nist-800-53`, `pci-dss` or `cis-v8`")),
    responses(
        (status = 200, description = "The framework", body = CatalogFramework),
        (status = 304, description = "Not modified (`If-None-Match` named the current `ETag`)"),
        (status = 404, description = "No such built-in framework", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn framework(
    Path(framework): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let document = documents()
        .framework
        .get(&framework)
        .ok_or(ApiError::NotFound)?;
    Ok(document.respond(&headers))
}

/// The weakness classes: the CWEs, rules and packages that belong to each,
/// and the controls of every framework they fail. Public and CDN-cacheable.
#[utoipa::path(get, path = "/v1/catalog/weakness-classes", tag = "catalog",
    responses(
        (status = 200, description = "The weakness classes", body = WeaknessClassList),
        (status = 304, description = "Not modified (`If-None-Match` named the current `ETag`)"),
    ))]
pub async fn weakness_classes(headers: HeaderMap) -> Response {
    documents().classes.respond(&headers)
}
