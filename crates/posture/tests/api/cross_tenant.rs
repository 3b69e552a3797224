//! Cross-tenant isolation through the HTTP API: tenant B must never see, change or
//! even learn of the existence of tenant A's objects.
//!
//! The suite is table driven so every new route joins it with one line:
//!
//! - [`ID_ROUTES`]: routes addressing one object. Each is called by B with every one
//!   of A's ids of that kind and must answer exactly what an unknown id gets (404).
//! - [`LIST_ROUTES`]: collection routes. B pages through each with a small limit and
//!   must find none of A's ids (while finding its own, so the check is not vacuous).
//!   [`UNPAGED_LIST_ROUTES`] are collections listed whole, checked the same way.
//! - [`probe_body`]: a valid body for id routes that take one (PATCH, PUT), so B's request
//!   reaches the lookup instead of being refused for its body.
//!
//! Object kinds ([`Kind`]) name the placeholder in the path template and where to
//! collect the tenant's ids from; add a kind when a route addresses a new object.

use crate::support::{assert_problem, TestApp, TestTenant};
use posture_domain::{base62, ApiKeyToken, Tier};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// A kind of tenant-owned object that routes address by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `key_…` ids, listed by `GET /v1/api-keys`.
    ApiKey,
    /// `ast_…` ids, listed by `GET /v1/assets`.
    Asset,
    /// `scn_…` ids, listed by `GET /v1/scans`.
    Scan,
    /// `fnd_…` ids, listed by `GET /v1/findings`.
    Finding,
    /// `cfw_…` custom framework ids, listed (whole, unpaged) by `GET /v1/frameworks`.
    Framework,
    /// `whk_…` webhook ids, listed (whole, unpaged) by `GET /v1/webhooks`.
    Webhook,
}

impl Kind {
    const ALL: &'static [Kind] = &[
        Kind::ApiKey,
        Kind::Asset,
        Kind::Scan,
        Kind::Finding,
        Kind::Framework,
        Kind::Webhook,
    ];

    /// The placeholder in path templates.
    fn placeholder(self) -> &'static str {
        match self {
            Kind::ApiKey => "{api_key}",
            Kind::Asset => "{asset}",
            Kind::Scan => "{scan}",
            Kind::Finding => "{finding}",
            Kind::Framework => "{framework}",
            Kind::Webhook => "{webhook}",
        }
    }

    /// The list route that enumerates this kind for a tenant.
    fn list_route(self) -> &'static str {
        match self {
            Kind::ApiKey => "/v1/api-keys",
            Kind::Asset => "/v1/assets",
            Kind::Scan => "/v1/scans",
            Kind::Finding => "/v1/findings",
            Kind::Framework => "/v1/frameworks",
            Kind::Webhook => "/v1/webhooks",
        }
    }

    /// Whether the list route pages (`limit`/`cursor`) or lists everything at once.
    fn paginated(self) -> bool {
        !UNPAGED_LIST_ROUTES.contains(&self.list_route())
    }

    /// The prefix of this kind's ids (`key_`, `ast_`).
    fn id_prefix(self) -> &'static str {
        let unknown = self.unknown_id();
        &unknown[..=unknown.find('_').expect("prefixed ids")]
    }

    /// A well-formed id that exists in no tenant: the baseline 404.
    fn unknown_id(self) -> &'static str {
        match self {
            Kind::ApiKey => "key_000000000000",
            Kind::Asset => "ast_0000000000000000000000",
            Kind::Scan => "scn_0000000000000000000000",
            Kind::Finding => "fnd_0000000000000000000000",
            Kind::Framework => "cfw_0000000000000000000000",
            Kind::Webhook => "whk_0000000000000000000000",
        }
    }
}

/// Routes that address one object: method, path template, and the kind of id.
/// Mutating routes belong here too: B's attempt must fail and change nothing.
const ID_ROUTES: &[(&str, &str, Kind)] = &[
    ("GET", "/v1/api-keys/{api_key}", Kind::ApiKey),
    ("DELETE", "/v1/api-keys/{api_key}", Kind::ApiKey),
    ("GET", "/v1/assets/{asset}", Kind::Asset),
    ("PATCH", "/v1/assets/{asset}", Kind::Asset),
    ("DELETE", "/v1/assets/{asset}", Kind::Asset),
    ("GET", "/v1/scans/{scan}", Kind::Scan),
    ("GET", "/v1/findings/{finding}", Kind::Finding),
    ("PATCH", "/v1/findings/{finding}", Kind::Finding),
    ("GET", "/v1/frameworks/{framework}", Kind::Framework),
    ("PUT", "/v1/frameworks/{framework}", Kind::Framework),
    ("DELETE", "/v1/frameworks/{framework}", Kind::Framework),
    ("GET", "/v1/compliance/{framework}", Kind::Framework),
    (
        "GET",
        "/v1/compliance/{framework}?status=failed",
        Kind::Framework,
    ),
    ("GET", "/v1/webhooks/{webhook}", Kind::Webhook),
    ("PATCH", "/v1/webhooks/{webhook}", Kind::Webhook),
    ("DELETE", "/v1/webhooks/{webhook}", Kind::Webhook),
    (
        "POST",
        "/v1/webhooks/{webhook}/rotate-secret",
        Kind::Webhook,
    ),
    ("GET", "/v1/webhooks/{webhook}/deliveries", Kind::Webhook),
    ("POST", "/v1/webhooks/{webhook}/test", Kind::Webhook),
    // Every framework of both tenants has a control `SEC-01` (see [`World::build`]).
    (
        "GET",
        "/v1/compliance/{framework}/controls/SEC-01",
        Kind::Framework,
    ),
];

/// Collection routes (paginated with `limit`/`cursor`, items carry `id`).
const LIST_ROUTES: &[&str] = &["/v1/api-keys", "/v1/assets", "/v1/scans", "/v1/findings"];

/// Collection routes that list everything in one response (`data`, items carry `id`).
const UNPAGED_LIST_ROUTES: &[&str] = &["/v1/frameworks", "/v1/webhooks"];

/// A valid body for the id routes that take one, so B's request gets as far as the
/// lookup (a missing body would be refused first, proving nothing about isolation).
fn probe_body(method: &str, template: &str) -> Option<Value> {
    match (method, template) {
        ("PATCH", "/v1/assets/{asset}") => Some(json!({ "criticality": "low", "tags": ["b"] })),
        ("PATCH", "/v1/findings/{finding}") => {
            Some(json!({ "status": "false_positive", "reason": "b says so" }))
        }
        ("PUT", "/v1/frameworks/{framework}") => Some(framework_body(FRAMEWORKS[0], &[1])),
        ("PATCH", "/v1/webhooks/{webhook}") => Some(json!({ "enabled": false })),
        ("POST", "/v1/webhooks/{webhook}/rotate-secret") => Some(json!({ "overlap_seconds": 0 })),
        _ => None,
    }
}

/// The assets each tenant creates: the same kinds and names in both, since names
/// are unique only within a tenant.
const ASSETS: &[(&str, &str)] = &[
    ("repository", "github.com/acme/api"),
    ("host", "db-1.internal"),
    ("domain", "acme.example"),
];

/// The names of A's custom frameworks; B has one named like A's first (names are
/// unique only within a tenant).
const FRAMEWORKS: &[&str] = &["Secure coding", "Cloud baseline", "Supply chain"];

/// A custom framework definition with one control, `SEC-01`, mapping `cwes` and
/// the rule of [`submit_scan`]'s findings.
fn framework_body(name: &str, cwes: &[u32]) -> Value {
    json!({
        "name": name,
        "controls": [{ "id": "SEC-01", "title": "Secure code", "cwes": cwes, "rules": ["rule"] }],
    })
}

/// Creates a custom framework through the API; returns its id.
async fn create_framework(app: &TestApp, key: &str, body: &Value) -> String {
    let response = app.post_json("/v1/frameworks", key, body).await;
    assert_eq!(response.status(), 201, "creating {body}");
    let created: Value = response.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// Two tenants with data, and the keys to act as them.
struct World {
    app: TestApp,
    a: TestTenant,
    b: TestTenant,
    /// Extra keys A created through the API: (id, token).
    a_extra: Vec<(String, String)>,
}

impl World {
    async fn build() -> World {
        // Webhook hosts resolve without DNS; nothing is sent (deliveries
        // stay pending, to be looked at).
        let app = TestApp::spawn_with(|config| {
            config.webhook_resolve = "hooks.example.test=93.184.216.34".into();
            config.webhook_concurrency = 0;
        })
        .await;
        // Both may define custom frameworks, so B's writes reach the lookup.
        let a = app.create_tenant(Tier::Enterprise).await;
        let b = app.create_tenant(Tier::Premium).await;
        let mut a_extra = Vec::new();
        for (name, scopes) in [("a-ci", json!(["write"])), ("a-reader", json!(["read"]))] {
            let created = create_key(&app, &a.admin_key, name, scopes).await;
            a_extra.push(created);
        }
        // B has data of its own too, enough for several pages at limit 2.
        for name in ["b-one", "b-two", "b-three"] {
            create_key(&app, &b.admin_key, name, json!(["read"])).await;
        }
        for tenant in [&a, &b] {
            for (kind, name) in ASSETS {
                let body = json!({ "kind": kind, "name": name, "tags": ["shared"] });
                let response = app.post_json("/v1/assets", &tenant.admin_key, &body).await;
                assert_eq!(response.status(), 201, "creating {body}");
            }
            // Three scans, so scans (like findings) span several pages at limit 2.
            for _ in 0..3 {
                submit_scan(&app, &tenant.admin_key).await;
            }
        }
        for name in FRAMEWORKS {
            create_framework(&app, &a.admin_key, &framework_body(name, &[89, 79])).await;
        }
        create_framework(&app, &b.admin_key, &framework_body(FRAMEWORKS[0], &[89])).await;
        for (tenant, count) in [(&a, 3), (&b, 1)] {
            for number in 0..count {
                let body = json!({
                    "url": format!("https://hooks.example.test/{number}"),
                    "event_types": ["scan.completed"],
                });
                let response = app
                    .post_json("/v1/webhooks", &tenant.admin_key, &body)
                    .await;
                assert_eq!(response.status(), 201, "creating {body}");
            }
        }
        World { app, a, b, a_extra }
    }

    /// Every id of `kind` that `tenant` owns, as its own listing shows them.
    async fn ids(&self, tenant: &TestTenant, kind: Kind) -> BTreeSet<String> {
        if kind.paginated() {
            list_all(&self.app, kind.list_route(), &tenant.admin_key).await
        } else {
            list_unpaged(&self.app, kind.list_route(), &tenant.admin_key).await
        }
    }
}

/// Submits a small SARIF report for the tenant's repository and waits until it is
/// processed, so the tenant has scans and findings.
async fn submit_scan(app: &TestApp, key: &str) {
    let results: Vec<Value> = (1..=3)
        .map(|line| {
            json!({"ruleId": "rule", "level": "error", "message": {"text": "issue"},
                   "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a.py"}, "region": {"startLine": line}}}]})
        })
        .collect();
    let report = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "semgrep"}}, "results": results}]});
    let scan = app
        .ingest_sarif(
            key,
            "asset_kind=repository&asset_name=github.com/acme/api&scope=full",
            &report,
        )
        .await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
}

/// Creates a key through the API; returns its id and token.
async fn create_key(app: &TestApp, admin_key: &str, name: &str, scopes: Value) -> (String, String) {
    let response = app
        .post_json(
            "/v1/api-keys",
            admin_key,
            &json!({ "name": name, "scopes": scopes }),
        )
        .await;
    assert_eq!(response.status(), 201, "creating {name}");
    let body: Value = response.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

/// Pages through `route` with `limit=2` and returns every item's id.
async fn list_all(app: &TestApp, route: &str, key: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _page in 0..100 {
        let path = match &cursor {
            Some(cursor) => format!("{route}?limit=2&cursor={cursor}"),
            None => format!("{route}?limit=2"),
        };
        let response = app.get(&path, key).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let body: Value = response.json().await.unwrap();
        let items = body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no data array: {body}"));
        assert!(items.len() <= 2, "GET {path} ignored the limit: {body}");
        for item in items {
            let id = item["id"]
                .as_str()
                .unwrap_or_else(|| panic!("GET {path}: item without id: {item}"));
            assert!(ids.insert(id.to_owned()), "GET {path}: {id} listed twice");
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
    panic!("{route}: more than 100 pages; the cursor does not advance");
}

/// Every item's id in an unpaged collection `route`.
async fn list_unpaged(app: &TestApp, route: &str, key: &str) -> BTreeSet<String> {
    let response = app.get(route, key).await;
    assert_eq!(response.status(), 200, "GET {route}");
    let body: Value = response.json().await.unwrap();
    assert!(
        body.get("next_cursor").is_none(),
        "GET {route} pages: {body}"
    );
    let mut ids = BTreeSet::new();
    for item in body["data"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap();
        assert!(ids.insert(id.to_owned()), "GET {route}: {id} listed twice");
    }
    ids
}

/// Every `next_cursor` met while paging through `route` with `limit=1`.
async fn cursors(app: &TestApp, route: &str, key: &str) -> Vec<String> {
    let mut cursors = Vec::new();
    let mut path = format!("{route}?limit=1");
    for _page in 0..100 {
        let body: Value = app.get(&path, key).await.json().await.unwrap();
        match body["next_cursor"].as_str() {
            Some(next) => {
                cursors.push(next.to_owned());
                path = format!("{route}?limit=1&cursor={next}");
            }
            None => return cursors,
        }
    }
    panic!("{route}: more than 100 pages");
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let request = app
        .client
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", app.address),
        )
        .bearer_auth(key);
    match body {
        Some(body) => request.json(body),
        None => request,
    }
    .send()
    .await
    .expect("request")
}

/// The problem body without the per-request members, for comparing two problems.
fn problem_shape(mut body: Value) -> Value {
    let object = body.as_object_mut().unwrap();
    object.remove("request_id");
    object.remove("instance");
    body
}

#[tokio::test]
async fn another_tenants_ids_are_not_found_on_every_id_route() {
    let world = World::build().await;
    let app = &world.app;

    for kind in Kind::ALL {
        let a_ids = world.ids(&world.a, *kind).await;
        assert!(
            a_ids.len() >= 3,
            "{kind:?}: A should own its admin key and two more: {a_ids:?}"
        );
        for (method, template, route_kind) in ID_ROUTES {
            if route_kind != kind {
                continue;
            }
            let body = probe_body(method, template);
            // What an id that exists nowhere gets: B must get exactly this for A's ids.
            let unknown = template.replace(kind.placeholder(), kind.unknown_id());
            let baseline = problem_shape(
                assert_problem(
                    send(app, method, &unknown, &world.b.admin_key, body.as_ref()).await,
                    404,
                )
                .await,
            );
            assert_eq!(baseline["type"], "/problems/not-found");

            for id in &a_ids {
                let path = template.replace(kind.placeholder(), id);
                // A itself can reach the object (so the 404 below is about B, not the route).
                if *method == "GET" {
                    let own = send(app, method, &path, &world.a.admin_key, None).await;
                    assert_eq!(own.status(), 200, "A: {method} {path}");
                }
                let response = send(app, method, &path, &world.b.admin_key, body.as_ref()).await;
                let status = response.status();
                assert_eq!(status, 404, "B: {method} {path} must be 404, got {status}");
                let problem = problem_shape(assert_problem(response, 404).await);
                assert_eq!(
                    problem, baseline,
                    "B: {method} {path} differs from an unknown id's 404"
                );
            }
        }
    }
}

#[tokio::test]
async fn another_tenants_delete_changes_nothing() {
    let world = World::build().await;
    let app = &world.app;
    let a_ids = world.ids(&world.a, Kind::ApiKey).await;

    for id in &a_ids {
        assert_problem(
            app.delete(&format!("/v1/api-keys/{id}"), &world.b.admin_key)
                .await,
            404,
        )
        .await;
    }

    // A's keys still authenticate...
    for (id, token) in &world.a_extra {
        let org = app.get("/v1/org", token).await;
        assert_eq!(
            org.status(),
            200,
            "A's key {id} stopped working after B's DELETE"
        );
        let org: Value = org.json().await.unwrap();
        assert_eq!(org["id"], world.a.id.to_string());
    }
    assert_eq!(app.get("/v1/org", &world.a.admin_key).await.status(), 200);
    // ...and none is revoked, as A sees them.
    for id in &a_ids {
        let key: Value = app
            .get(&format!("/v1/api-keys/{id}"), &world.a.admin_key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(key["status"], "active", "{key}");
        assert!(key["revoked_at"].is_null(), "{key}");
    }
    // Nor was a revocation recorded anywhere.
    let revocations: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'api_key.revoked'")
            .fetch_one(app.owner.pool())
            .await
            .unwrap();
    assert_eq!(revocations, 0);
}

#[tokio::test]
async fn another_tenants_patch_and_delete_leave_assets_unchanged() {
    let world = World::build().await;
    let app = &world.app;
    let a_ids = world.ids(&world.a, Kind::Asset).await;
    assert_eq!(a_ids.len(), ASSETS.len());
    let snapshot = |tenant: &TestTenant| {
        let key = tenant.admin_key.clone();
        let ids = a_ids.clone();
        async move {
            let mut assets = Vec::new();
            for id in &ids {
                let response = app.get(&format!("/v1/assets/{id}"), &key).await;
                assets.push((response.status().as_u16(), response.text().await.unwrap()));
            }
            assets
        }
    };
    let before = snapshot(&world.a).await;
    assert!(
        before.iter().all(|(status, _)| *status == 200),
        "{before:?}"
    );

    for id in &a_ids {
        let path = format!("/v1/assets/{id}");
        // Renames too, even to a name both tenants use (a 409 would reveal the row).
        for body in [
            json!({ "criticality": "critical", "tags": ["b"] }),
            json!({ "name": ASSETS[0].1 }),
        ] {
            let response = send(app, "PATCH", &path, &world.b.admin_key, Some(&body)).await;
            assert_problem(response, 404).await;
        }
        assert_problem(app.delete(&path, &world.b.admin_key).await, 404).await;
    }

    // A sees exactly what it saw before, byte for byte (updated_at included).
    assert_eq!(snapshot(&world.a).await, before);
    // B's own same-named assets are untouched too, and nothing was audited as changed.
    assert_eq!(world.ids(&world.b, Kind::Asset).await.len(), ASSETS.len());
    let changes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action IN ('asset.updated', 'asset.deleted')",
    )
    .fetch_one(app.owner.pool())
    .await
    .unwrap();
    assert_eq!(changes, 0);
}

#[tokio::test]
async fn another_tenants_put_and_delete_leave_custom_frameworks_unchanged() {
    let world = World::build().await;
    let app = &world.app;
    // No refresh left to change a compliance view between the two snapshots.
    app.wait_for_posture(world.a.id).await;
    app.wait_for_posture(world.b.id).await;
    let a_ids = world.ids(&world.a, Kind::Framework).await;
    assert_eq!(a_ids.len(), FRAMEWORKS.len());
    let b_ids = world.ids(&world.b, Kind::Framework).await;
    assert_eq!(b_ids.len(), 1);
    // Each framework and its compliance view, as its owner sees them.
    let snapshot = |tenant: &TestTenant, ids: &BTreeSet<String>| {
        let key = tenant.admin_key.clone();
        let ids = ids.clone();
        async move {
            let mut views = Vec::new();
            for id in &ids {
                for path in [
                    format!("/v1/frameworks/{id}"),
                    format!("/v1/compliance/{id}"),
                ] {
                    let response = app.get(&path, &key).await;
                    views.push((response.status().as_u16(), response.text().await.unwrap()));
                }
            }
            views
        }
    };
    let a_before = snapshot(&world.a, &a_ids).await;
    let b_before = snapshot(&world.b, &b_ids).await;
    assert!(
        a_before.iter().all(|(status, _)| *status == 200),
        "{a_before:?}"
    );

    for id in &a_ids {
        let path = format!("/v1/frameworks/{id}");
        // Renames too, to a name B already uses and to one only A uses (a 409 would
        // reveal the row).
        for body in [
            framework_body(FRAMEWORKS[0], &[1]),
            framework_body(FRAMEWORKS[1], &[1]),
            framework_body("B's takeover", &[1]),
        ] {
            let response = send(app, "PUT", &path, &world.b.admin_key, Some(&body)).await;
            assert_problem(response, 404).await;
        }
        assert_problem(app.delete(&path, &world.b.admin_key).await, 404).await;
    }

    // A sees exactly what it saw before, byte for byte (revision and updated_at included),
    // and so does B of its own framework.
    assert_eq!(snapshot(&world.a, &a_ids).await, a_before);
    assert_eq!(snapshot(&world.b, &b_ids).await, b_before);
    assert_eq!(world.ids(&world.a, Kind::Framework).await, a_ids);
    let changes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action IN ('framework.replaced', 'framework.deleted')",
    )
    .fetch_one(app.owner.pool())
    .await
    .unwrap();
    assert_eq!(changes, 0);
}

#[tokio::test]
async fn compliance_shows_the_callers_frameworks_and_findings_only() {
    let world = World::build().await;
    let app = &world.app;
    // A also has findings the built-in catalog maps (CWE-89, CWE-79); B has only
    // `rule` findings, which nothing built in maps.
    let results: Vec<Value> = [("sqli", 1), ("sqli", 2), ("xss", 3)]
        .iter()
        .map(|(rule, line)| {
            json!({"ruleId": rule, "level": "error", "message": {"text": "issue"},
                   "locations": [{"physicalLocation": {"artifactLocation": {"uri": "web.py"}, "region": {"startLine": line}}}]})
        })
        .collect();
    let rules = json!([
        {"id": "sqli", "properties": {"tags": ["external/cwe/cwe-89"]}},
        {"id": "xss", "properties": {"tags": ["CWE-79"]}},
    ]);
    let report = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "codeql", "rules": rules}}, "results": results}]});
    let scan = app
        .ingest_sarif(
            &world.a.admin_key,
            "asset_kind=repository&asset_name=github.com/acme/web&scope=full",
            &report,
        )
        .await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    app.wait_for_posture(world.a.id).await;
    app.wait_for_posture(world.b.id).await;

    let a_frameworks = world.ids(&world.a, Kind::Framework).await;
    let b_frameworks = world.ids(&world.b, Kind::Framework).await;
    let a_findings = world.ids(&world.a, Kind::Finding).await;
    let b_findings = world.ids(&world.b, Kind::Finding).await;
    assert_eq!(a_findings.len(), b_findings.len() + 3);

    let overview = |tenant: &TestTenant| {
        let key = tenant.admin_key.clone();
        async move {
            let response = app.get("/v1/compliance", &key).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let custom_ids = |overview: &Value| -> BTreeSet<String> {
        overview["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["custom"] == true)
            .map(|entry| entry["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let failed_builtin = |overview: &Value| -> u64 {
        overview["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["custom"] == false)
            .map(|entry| entry["failed"].as_u64().unwrap())
            .sum()
    };
    let a_overview = overview(&world.a).await;
    let b_overview = overview(&world.b).await;
    // Each sees its own custom frameworks, never the other's.
    assert_eq!(custom_ids(&a_overview), a_frameworks, "{a_overview}");
    assert_eq!(custom_ids(&b_overview), b_frameworks, "{b_overview}");
    // A's mapped findings fail A's built-in controls, not B's: B's open findings are
    // exactly its unmapped ones, and nothing of B's fails.
    assert!(failed_builtin(&a_overview) > 0, "{a_overview}");
    assert_eq!(failed_builtin(&b_overview), 0, "{b_overview}");
    assert_eq!(b_overview["unmapped_findings"], b_findings.len());
    assert_eq!(a_overview["unmapped_findings"], b_findings.len());
    assert_eq!(b_overview["compliance_percent"], 100.0, "{b_overview}");

    // Each custom framework's control counts and lists its owner's findings only.
    for (tenant, frameworks, findings) in [
        (&world.a, &a_frameworks, &a_findings),
        (&world.b, &b_frameworks, &b_findings),
    ] {
        for id in frameworks {
            let path = format!("/v1/compliance/{id}/controls/SEC-01?limit=100");
            let detail: Value = app
                .get(&path, &tenant.admin_key)
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(detail["control"]["status"], "failed", "{path}: {detail}");
            assert_eq!(
                detail["control"]["failing_findings"],
                findings.len(),
                "{path}"
            );
            let listed: BTreeSet<String> = detail["findings"]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(&listed, findings, "{path}");
            let framework: Value = app
                .get(&format!("/v1/compliance/{id}"), &tenant.admin_key)
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(framework["controls"][0]["failing_findings"], findings.len());
        }
    }
    // A built-in control's drill-down: A's SQL injection findings, none for B.
    let path = "/v1/compliance/soc2/controls/CC7.1?limit=100";
    let a_page: Value = app
        .get(path, &world.a.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a_page["findings"]["data"].as_array().unwrap().len(), 3);
    let b_page: Value = app
        .get(path, &world.b.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b_page["control"]["status"], "passed", "{b_page}");
    assert_eq!(b_page["control"]["failing_findings"], 0);
    assert_eq!(b_page["findings"]["data"], json!([]));
}

#[tokio::test]
async fn lists_never_contain_another_tenants_ids() {
    let world = World::build().await;
    let app = &world.app;

    let mut a_ids = BTreeSet::new();
    let mut b_ids = BTreeSet::new();
    for kind in Kind::ALL {
        a_ids.extend(world.ids(&world.a, *kind).await);
        b_ids.extend(world.ids(&world.b, *kind).await);
    }
    assert!(
        a_ids.len() >= 3 && b_ids.len() >= 4,
        "A {a_ids:?}, B {b_ids:?}"
    );
    assert!(a_ids.is_disjoint(&b_ids));

    for route in LIST_ROUTES {
        for (viewer, own, other, who) in [
            (&world.b, &b_ids, &a_ids, "B"),
            (&world.a, &a_ids, &b_ids, "A"),
        ] {
            let listed = list_all(app, route, &viewer.admin_key).await;
            let leaked: Vec<_> = listed.intersection(other).collect();
            assert!(
                leaked.is_empty(),
                "{who}'s {route} lists the other tenant's ids: {leaked:?}"
            );
            assert!(
                listed.is_subset(own),
                "{who}'s {route} lists ids it does not own: {listed:?}"
            );
            // The listing is complete for the viewer (so "no leak" is not an empty list).
            if let Some(kind) = Kind::ALL.iter().find(|kind| kind.list_route() == *route) {
                let own_of_kind: BTreeSet<String> = own
                    .iter()
                    .filter(|id| id.starts_with(kind.id_prefix()))
                    .cloned()
                    .collect();
                assert_eq!(listed, own_of_kind, "{who}'s {route}");
                assert!(!listed.is_empty(), "{who}'s {route}");
            }
        }
        // The default page size shows the same thing as paging.
        let page: Value = app
            .get(route, &world.b.admin_key)
            .await
            .json()
            .await
            .unwrap();
        for item in page["data"].as_array().unwrap() {
            assert!(
                !a_ids.contains(item["id"].as_str().unwrap()),
                "B's {route} lists {item}"
            );
        }
        // A's cursors replayed by B page through B's data (or are refused), never A's.
        let a_cursors = cursors(app, route, &world.a.admin_key).await;
        assert!(
            !a_cursors.is_empty(),
            "A's {route} should span several pages"
        );
        for cursor in a_cursors {
            let path = format!("{route}?limit=2&cursor={cursor}");
            let response = app.get(&path, &world.b.admin_key).await;
            if response.status() == 422 {
                continue;
            }
            assert_eq!(response.status(), 200, "B: GET {path}");
            let page: Value = response.json().await.unwrap();
            for item in page["data"].as_array().unwrap() {
                let id = item["id"].as_str().unwrap();
                assert!(b_ids.contains(id), "B: GET {path} lists {item}");
            }
        }
    }

    for route in UNPAGED_LIST_ROUTES {
        let kind = Kind::ALL
            .iter()
            .find(|kind| kind.list_route() == *route)
            .expect("an unpaged route lists a kind");
        for (viewer, own, other, who) in [
            (&world.b, &b_ids, &a_ids, "B"),
            (&world.a, &a_ids, &b_ids, "A"),
        ] {
            let listed = list_unpaged(app, route, &viewer.admin_key).await;
            assert!(
                listed.is_disjoint(other),
                "{who}'s {route} lists the other tenant's ids: {listed:?}"
            );
            let own_of_kind: BTreeSet<String> = own
                .iter()
                .filter(|id| id.starts_with(kind.id_prefix()))
                .cloned()
                .collect();
            assert_eq!(listed, own_of_kind, "{who}'s {route}");
            assert!(!listed.is_empty(), "{who}'s {route}");
        }
    }
}

#[tokio::test]
async fn org_shows_the_callers_tenant_only() {
    let world = World::build().await;
    let app = &world.app;
    for (tenant, other, tier) in [
        (&world.b, &world.a, "premium"),
        (&world.a, &world.b, "enterprise"),
    ] {
        let mut keys = vec![tenant.admin_key.clone()];
        if tenant.id == world.a.id {
            keys.extend(world.a_extra.iter().map(|(_, token)| token.clone()));
        }
        for key in keys {
            let response = app.get("/v1/org", &key).await;
            assert_eq!(response.status(), 200);
            let org: Value = response.json().await.unwrap();
            assert_eq!(org["id"], tenant.id.to_string(), "{org}");
            assert_eq!(org["slug"], tenant.slug.as_str(), "{org}");
            assert_eq!(org["tier"], tier, "{org}");
            let text = org.to_string();
            assert!(
                !text.contains(&other.id.to_string()) && !text.contains(&other.slug),
                "{org}"
            );
        }
    }
}

/// Standard CRC-32 (IEEE 802.3, reflected, as `crc32fast` computes it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `token` with its tenant field replaced by `tenant` (a UUID) and a valid checksum.
fn with_tenant(token: &str, tenant: uuid::Uuid) -> String {
    const PREFIX: usize = "sp_live_".len();
    let tenant_field = base62::encode_fixed(tenant.as_u128(), base62::U128_WIDTH).unwrap();
    let rest = &token[PREFIX + base62::U128_WIDTH..token.len() - base62::U32_WIDTH];
    let payload = format!("{}{tenant_field}{rest}", &token[..PREFIX]);
    let checksum =
        base62::encode_fixed(u128::from(crc32(payload.as_bytes())), base62::U32_WIDTH).unwrap();
    payload + &checksum
}

#[test]
fn the_local_crc32_matches_the_token_format() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    let tenant = uuid::Uuid::new_v4();
    let token = ApiKeyToken::generate(
        posture_domain::TenantId::from_uuid(tenant),
        &mut rand::thread_rng(),
    )
    .expose();
    assert_eq!(
        with_tenant(&token, tenant),
        token,
        "recomputing the checksum must be the identity"
    );
}

#[tokio::test]
async fn a_key_rewritten_to_name_another_tenant_cannot_authenticate() {
    let world = World::build().await;
    let app = &world.app;
    let (a_key_id, a_token) = &world.a_extra[1]; // A's read key.
    assert_eq!(app.get("/v1/org", a_token).await.status(), 200);

    // A's key id and secret under B's tenant id, with a valid checksum.
    let forged = with_tenant(a_token, world.b.id.as_uuid());
    let parsed = ApiKeyToken::parse(&forged).expect("the forged token is well-formed");
    assert_eq!(parsed.tenant_id(), world.b.id);
    assert_eq!(parsed.key_id().to_string(), *a_key_id);
    for request in [
        app.client
            .get(format!("{}/v1/org", app.address))
            .bearer_auth(&forged),
        app.client
            .get(format!("{}/v1/org", app.address))
            .header("x-api-key", &forged),
    ] {
        let problem = assert_problem(request.send().await.unwrap(), 401).await;
        assert_eq!(problem["type"], "/problems/unauthenticated");
    }
    assert_problem(
        app.get(
            "/v1/api-keys",
            &with_tenant(&world.b.admin_key, world.a.id.as_uuid()),
        )
        .await,
        401,
    )
    .await;
    // Nor under a tenant that does not exist.
    assert_problem(
        app.get("/v1/org", &with_tenant(a_token, uuid::Uuid::new_v4()))
            .await,
        401,
    )
    .await;

    // And the original still works: the refusal was about the tenant, not the key.
    let org: Value = app.get("/v1/org", a_token).await.json().await.unwrap();
    assert_eq!(org["id"], world.a.id.to_string());
}

#[tokio::test]
async fn another_tenants_findings_and_assets_cannot_be_triaged_or_scanned_into() {
    let world = World::build().await;
    let a_findings: Vec<String> = world
        .ids(&world.a, Kind::Finding)
        .await
        .into_iter()
        .collect();
    assert!(!a_findings.is_empty());
    let triage = world
        .app
        .post_json(
            "/v1/findings/triage",
            &world.b.admin_key,
            &json!({ "ids": a_findings, "status": "false_positive", "reason": "b says so" }),
        )
        .await;
    assert_eq!(triage.status(), 200);
    let result: Value = triage.json().await.unwrap();
    assert_eq!(result["updated"], 0, "B changed A's findings: {result}");
    for id in &a_findings {
        let finding: Value = world
            .app
            .get(&format!("/v1/findings/{id}"), &world.a.admin_key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(finding["status"], "open", "{finding}");
    }

    // B cannot submit a scan into A's asset: the asset does not exist for B.
    let a_asset = world
        .ids(&world.a, Kind::Asset)
        .await
        .into_iter()
        .next()
        .unwrap();
    let response = world
        .app
        .client
        .post(format!(
            "{}/v1/scans?asset={a_asset}&scope=full",
            world.app.address
        ))
        .bearer_auth(&world.b.admin_key)
        .header("content-type", "application/sarif+json")
        .body(r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":[]}]}"#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422).await;
    assert_eq!(problem["errors"][0]["parameter"], "asset");
    // Nor list A's asset's scans or findings by filtering on it.
    for route in ["/v1/scans", "/v1/findings"] {
        let page: Value = world
            .app
            .get(&format!("{route}?asset={a_asset}"), &world.b.admin_key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(page["data"], json!([]), "{route}");
    }
}

#[tokio::test]
async fn settings_are_per_tenant() {
    let world = World::build().await;
    let changed = world
        .app
        .client
        .patch(format!("{}/v1/settings", world.app.address))
        .bearer_auth(&world.a.admin_key)
        .json(&json!({ "sla_days": { "critical": 2 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let b_settings: Value = world
        .app
        .get("/v1/settings", &world.b.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        b_settings["sla_days"]["critical"], 7,
        "A's change reached B: {b_settings}"
    );
    let a_settings: Value = world
        .app
        .get("/v1/settings", &world.a.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a_settings["sla_days"]["critical"], 2);
}

#[tokio::test]
async fn one_tenants_quota_and_usage_are_its_own() {
    let app = TestApp::spawn_with(|config| config.rate_limits_enabled = true).await;
    let a = app.create_tenant(Tier::Free).await;
    let b = app.create_tenant(Tier::Free).await;
    // A uses up its minute.
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(app.get("/v1/org", &a.admin_key).await.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 1);
    // B is untouched, and its usage shows only its own requests.
    let usage = app.get("/v1/usage", &b.admin_key).await;
    assert_eq!(usage.status(), 200);
    let usage: Value = usage.json().await.unwrap();
    assert_eq!(usage["policies"][0]["name"], "minute");
    assert_eq!(usage["policies"][0]["used"], 1, "{usage}");
    assert_eq!(usage["policies"][1]["used"], 1, "{usage}");
    // Another key of A shares A's quota (the tenant's), not a fresh one.
    let second_key = app.issue_key(a.id, &["read"]).await;
    assert_eq!(app.get("/v1/org", &second_key).await.status(), 429);
}

#[tokio::test]
async fn another_tenants_patch_rotate_and_delete_leave_webhooks_unchanged() {
    let world = World::build().await;
    let app = &world.app;
    let snapshot = || async {
        sqlx::query_as::<_, (uuid::Uuid, bool, String, Option<String>, String)>(
            "SELECT id, enabled, secret, previous_secret, url FROM webhooks
             WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(world.a.id.as_uuid())
        .fetch_all(app.owner.pool())
        .await
        .unwrap()
    };
    let before = snapshot().await;
    assert_eq!(before.len(), 3);
    for id in world.ids(&world.a, Kind::Webhook).await {
        let path = format!("/v1/webhooks/{id}");
        for (method, path, body) in [
            (
                "PATCH",
                path.clone(),
                Some(json!({ "enabled": false, "url": "https://hooks.example.test/b" })),
            ),
            (
                "POST",
                format!("{path}/rotate-secret"),
                Some(json!({ "overlap_seconds": 0 })),
            ),
            ("DELETE", path.clone(), None),
        ] {
            let response = send(app, method, &path, &world.b.admin_key, body.as_ref()).await;
            assert_eq!(response.status(), 404, "B: {method} {path}");
        }
    }
    assert_eq!(
        snapshot().await,
        before,
        "B's requests changed A's webhooks"
    );
}

#[tokio::test]
async fn another_tenant_can_neither_see_nor_trigger_webhook_deliveries() {
    let world = World::build().await;
    let app = &world.app;
    let a_webhooks: Vec<String> = world
        .ids(&world.a, Kind::Webhook)
        .await
        .into_iter()
        .collect();
    let b_webhook = world
        .ids(&world.b, Kind::Webhook)
        .await
        .into_iter()
        .next()
        .unwrap();
    // A pings each of its endpoints: one pending delivery each.
    let mut a_deliveries = Vec::new();
    for id in &a_webhooks {
        let ping = app
            .post_json(
                &format!("/v1/webhooks/{id}/test"),
                &world.a.admin_key,
                &json!({}),
            )
            .await;
        assert_eq!(ping.status(), 202);
        let delivery: Value = ping.json().await.unwrap();
        a_deliveries.push((id.clone(), delivery["id"].as_str().unwrap().to_owned()));
    }
    let snapshot = || async {
        sqlx::query_as::<
            _,
            (
                uuid::Uuid,
                String,
                i32,
                Option<i32>,
                Option<chrono::DateTime<chrono::Utc>>,
            ),
        >(
            "SELECT id, status, attempts, max_attempts, next_attempt_at FROM webhook_deliveries
             WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(world.a.id.as_uuid())
        .fetch_all(app.owner.pool())
        .await
        .unwrap()
    };
    let before = snapshot().await;
    assert_eq!(before.len(), 3);

    for (webhook, delivery) in &a_deliveries {
        // A sees its delivery, through its endpoint.
        let own = app
            .get(
                &format!("/v1/webhooks/{webhook}/deliveries/{delivery}"),
                &world.a.admin_key,
            )
            .await;
        assert_eq!(own.status(), 200);
        // B, through A's endpoint or its own, sees nothing and retries nothing.
        for through in [webhook.as_str(), b_webhook.as_str()] {
            let path = format!("/v1/webhooks/{through}/deliveries/{delivery}");
            assert_problem(app.get(&path, &world.b.admin_key).await, 404).await;
            let retry = send(
                app,
                "POST",
                &format!("{path}/retry"),
                &world.b.admin_key,
                None,
            )
            .await;
            assert_problem(retry, 404).await;
        }
    }
    // B's own log holds none of A's deliveries.
    let b_log = app
        .get(
            &format!("/v1/webhooks/{b_webhook}/deliveries"),
            &world.b.admin_key,
        )
        .await;
    assert_eq!(b_log.status(), 200);
    assert_eq!(b_log.json::<Value>().await.unwrap()["data"], json!([]));
    assert_eq!(
        snapshot().await,
        before,
        "B's requests changed A's deliveries"
    );
}
