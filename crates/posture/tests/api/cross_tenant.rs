//! Cross-tenant isolation through the HTTP API: tenant B must never see, change or
//! even learn of the existence of tenant A's objects.
//!
//! The suite is table driven so every new route joins it with one line:
//!
//! - [`ID_ROUTES`]: routes addressing one object. Each is called by B with every one
//!   of A's ids of that kind and must answer exactly what an unknown id gets (404).
//! - [`LIST_ROUTES`]: collection routes. B pages through each with a small limit and
//!   must find none of A's ids (while finding its own, so the check is not vacuous).
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
}

impl Kind {
    const ALL: &'static [Kind] = &[Kind::ApiKey];

    /// The placeholder in path templates.
    fn placeholder(self) -> &'static str {
        match self {
            Kind::ApiKey => "{api_key}",
        }
    }

    /// The list route that enumerates this kind for a tenant.
    fn list_route(self) -> &'static str {
        match self {
            Kind::ApiKey => "/v1/api-keys",
        }
    }

    /// A well-formed id that exists in no tenant: the baseline 404.
    fn unknown_id(self) -> &'static str {
        match self {
            Kind::ApiKey => "key_000000000000",
        }
    }
}

/// Routes that address one object: method, path template, and the kind of id.
/// Mutating routes belong here too: B's attempt must fail and change nothing.
const ID_ROUTES: &[(&str, &str, Kind)] = &[
    ("GET", "/v1/api-keys/{api_key}", Kind::ApiKey),
    ("DELETE", "/v1/api-keys/{api_key}", Kind::ApiKey),
];

/// Collection routes (paginated with `limit`/`cursor`, items carry `id`).
const LIST_ROUTES: &[&str] = &["/v1/api-keys"];

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
        let app = TestApp::spawn().await;
        let a = app.create_tenant(Tier::Premium).await;
        let b = app.create_tenant(Tier::Basic).await;
        let mut a_extra = Vec::new();
        for (name, scopes) in [("a-ci", json!(["write"])), ("a-reader", json!(["read"]))] {
            let created = create_key(&app, &a.admin_key, name, scopes).await;
            a_extra.push(created);
        }
        // B has data of its own too, enough for several pages at limit 2.
        for name in ["b-one", "b-two", "b-three"] {
            create_key(&app, &b.admin_key, name, json!(["read"])).await;
        }
        World { app, a, b, a_extra }
    }

    /// Every id of `kind` that `tenant` owns, as its own listing shows them.
    async fn ids(&self, tenant: &TestTenant, kind: Kind) -> BTreeSet<String> {
        list_all(&self.app, kind.list_route(), &tenant.admin_key).await
    }
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

async fn send(app: &TestApp, method: &str, path: &str, key: &str) -> reqwest::Response {
    app.client
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", app.address),
        )
        .bearer_auth(key)
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
            // What an id that exists nowhere gets: B must get exactly this for A's ids.
            let unknown = template.replace(kind.placeholder(), kind.unknown_id());
            let baseline = problem_shape(
                assert_problem(send(app, method, &unknown, &world.b.admin_key).await, 404).await,
            );
            assert_eq!(baseline["type"], "/problems/not-found");

            for id in &a_ids {
                let path = template.replace(kind.placeholder(), id);
                // A itself can reach the object (so the 404 below is about B, not the route).
                if *method == "GET" {
                    let own = send(app, method, &path, &world.a.admin_key).await;
                    assert_eq!(own.status(), 200, "A: {method} {path}");
                }
                let response = send(app, method, &path, &world.b.admin_key).await;
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
            if *route == Kind::ApiKey.list_route() {
                assert_eq!(&listed, own, "{who}'s {route}");
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
}

#[tokio::test]
async fn org_shows_the_callers_tenant_only() {
    let world = World::build().await;
    let app = &world.app;
    for (tenant, other, tier) in [
        (&world.b, &world.a, "basic"),
        (&world.a, &world.b, "premium"),
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
