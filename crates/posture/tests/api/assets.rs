//! `/v1/assets`: CRUD, uniqueness per kind and name, validation pointers, scopes,
//! pagination with filters, PATCH semantics, cascading deletes, and the store's
//! race-safe `find_or_create` used by scan submission.

use crate::support::{assert_problem, TestApp, TestTenant};
use posture::store::assets;
use posture::store::{PoolSettings, Store};
use posture_domain::asset::{AssetKind, AssetName, Criticality};
use posture_domain::Tier;
use serde_json::{json, Value};

/// `PATCH path` with a JSON body.
async fn patch(app: &TestApp, path: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .patch(format!("{}{path}", app.address))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// Creates an asset, asserting 201; returns its body.
async fn create(app: &TestApp, key: &str, body: Value) -> Value {
    let response = app.post_json("/v1/assets", key, &body).await;
    assert_eq!(response.status(), 201, "creating {body}");
    response.json().await.unwrap()
}

/// The pointers of a 422 problem, in order.
async fn pointers(response: reqwest::Response) -> Vec<String> {
    let problem = assert_problem(response, 422).await;
    assert_eq!(problem["type"], "/problems/validation-failed", "{problem}");
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {problem}"))
        .iter()
        .map(|error| {
            error["pointer"]
                .as_str()
                .or(error["parameter"].as_str())
                .unwrap_or_else(|| panic!("error without pointer or parameter: {problem}"))
                .to_owned()
        })
        .collect()
}

/// Pages through `route` (which may carry filters) with `limit=2`; ids in order.
async fn ids_by_paging(app: &TestApp, route: &str, key: &str) -> Vec<String> {
    let separator = if route.contains('?') { '&' } else { '?' };
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _page in 0..50 {
        let path = match &cursor {
            Some(cursor) => format!("{route}{separator}limit=2&cursor={cursor}"),
            None => format!("{route}{separator}limit=2"),
        };
        let response = app.get(&path, key).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let body: Value = response.json().await.unwrap();
        let items = body["data"].as_array().unwrap();
        assert!(items.len() <= 2, "{body}");
        ids.extend(
            items
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
    panic!("{route}: the cursor does not advance");
}

async fn audit_actions(app: &TestApp, tenant: &TestTenant) -> Vec<(String, String, Value, String)> {
    sqlx::query_as(
        "SELECT action, target, details, request_id FROM audit_log
         WHERE tenant_id = $1 AND action LIKE 'asset.%' ORDER BY id",
    )
    .bind(tenant.id.as_uuid())
    .fetch_all(app.owner.pool())
    .await
    .unwrap()
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn assets_are_created_shown_listed_changed_and_deleted() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let writer = app.issue_key(tenant.id, &["write"]).await;

    let response = app
        .post_json(
            "/v1/assets",
            &writer,
            &json!({ "kind": "repository", "name": " github.com/acme/api ",
                     "tags": ["team-a", " prod ", "prod"] }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created_request = request_id(&response);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let asset: Value = response.json().await.unwrap();
    let id = asset["id"].as_str().unwrap();
    assert!(id.starts_with("ast_") && id.len() == 26, "{asset}");
    assert_eq!(location, format!("/v1/assets/{id}"));
    assert_eq!(asset["kind"], "repository");
    assert_eq!(asset["name"], "github.com/acme/api", "trimmed");
    assert_eq!(asset["criticality"], "medium", "the default");
    assert_eq!(asset["tags"], json!(["prod", "team-a"]), "normalized");
    assert_eq!(asset["created_at"], asset["updated_at"]);

    let shown: Value = app.get(&location, &writer).await.json().await.unwrap();
    assert_eq!(shown, asset);
    let page: Value = app.get("/v1/assets", &writer).await.json().await.unwrap();
    assert_eq!(page["data"], json!([asset]));
    assert!(page.get("next_cursor").is_none(), "{page}");

    let response = patch(
        &app,
        &location,
        &writer,
        &json!({ "criticality": "critical" }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let updated_request = request_id(&response);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["criticality"], "critical");
    assert_eq!(updated["name"], asset["name"]);
    assert_eq!(updated["tags"], asset["tags"]);
    assert_eq!(
        app.get(&location, &writer)
            .await
            .json::<Value>()
            .await
            .unwrap(),
        updated
    );

    let response = app.delete(&location, &tenant.admin_key).await;
    assert_eq!(response.status(), 204);
    let deleted_request = request_id(&response);
    assert_problem(app.get(&location, &writer).await, 404).await;
    assert_problem(app.delete(&location, &tenant.admin_key).await, 404).await;
    assert_problem(
        patch(&app, &location, &writer, &json!({ "tags": [] })).await,
        404,
    )
    .await;

    let entries = audit_actions(&app, &tenant).await;
    let summary: Vec<_> = entries
        .iter()
        .map(|(action, target, _, request)| (action.as_str(), target.as_str(), request.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("asset.created", id, created_request),
            ("asset.updated", id, updated_request),
            ("asset.deleted", id, deleted_request),
        ]
    );
    assert_eq!(entries[0].2["name"], "github.com/acme/api");
    assert_eq!(
        entries[1].2["changes"],
        json!({ "criticality": "critical" })
    );
    assert_eq!(entries[2].2["name"], "github.com/acme/api");
}

#[tokio::test]
async fn a_name_is_unique_per_kind() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let key = &tenant.admin_key;
    create(
        &app,
        key,
        json!({ "kind": "domain", "name": "acme.example" }),
    )
    .await;

    // The same name after trimming, same kind: 409 pointing at the name.
    for name in ["acme.example", "  acme.example\t"] {
        let response = app
            .post_json(
                "/v1/assets",
                key,
                &json!({ "kind": "domain", "name": name }),
            )
            .await;
        let problem = assert_problem(response, 409).await;
        assert_eq!(problem["type"], "/problems/conflict");
        assert_eq!(problem["errors"][0]["pointer"], "/name", "{problem}");
    }
    // Another kind, or a name differing in case, is another asset.
    create(&app, key, json!({ "kind": "url", "name": "acme.example" })).await;
    create(
        &app,
        key,
        json!({ "kind": "domain", "name": "ACME.example" }),
    )
    .await;
    // Another tenant may use the same kind and name.
    let other = app.create_tenant(Tier::Basic).await;
    create(
        &app,
        &other.admin_key,
        json!({ "kind": "domain", "name": "acme.example" }),
    )
    .await;

    let page: Value = app.get("/v1/assets", key).await.json().await.unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn invalid_fields_are_reported_with_pointers() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    let long_tag = "t".repeat(101);
    let many_tags: Vec<String> = (0..51).map(|i| format!("tag-{i}")).collect();
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({ "kind": "vm", "name": "x" }), vec!["/kind"]),
        (json!({ "kind": "Repository", "name": "x" }), vec!["/kind"]),
        (json!({ "kind": "host", "name": "" }), vec!["/name"]),
        (json!({ "kind": "host", "name": "   " }), vec!["/name"]),
        (
            json!({ "kind": "host", "name": "x".repeat(501) }),
            vec!["/name"],
        ),
        (json!({ "kind": "host", "name": "a\u{0}b" }), vec!["/name"]),
        (
            json!({ "kind": "host", "name": "x", "criticality": "urgent" }),
            vec!["/criticality"],
        ),
        (
            json!({ "kind": "host", "name": "x", "tags": ["ok", ""] }),
            vec!["/tags/1"],
        ),
        (
            json!({ "kind": "host", "name": "x", "tags": [long_tag, "ok", "a\nb"] }),
            vec!["/tags/0", "/tags/2"],
        ),
        (
            json!({ "kind": "host", "name": "x", "tags": many_tags }),
            vec!["/tags"],
        ),
        // Every invalid member at once, in body order.
        (
            json!({ "kind": "vm", "name": "", "criticality": "none", "tags": [" "] }),
            vec!["/kind", "/name", "/criticality", "/tags/0"],
        ),
        // Shape errors come from the JSON reader, also with a pointer.
        (json!({ "kind": 7, "name": "x" }), vec!["/kind"]),
        (
            json!({ "kind": "host", "name": "x", "tags": "prod" }),
            vec!["/tags"],
        ),
        (
            json!({ "kind": "host", "name": "x", "tags": ["a", 1] }),
            vec!["/tags/1"],
        ),
        (
            json!({ "kind": "host", "name": "x", "owner": "me" }),
            vec!["/owner"],
        ),
        (json!({ "name": "x" }), vec![""]),
    ];
    for (body, expected) in cases {
        let response = app.post_json("/v1/assets", key, &body).await;
        assert_eq!(pointers(response).await, expected, "{body}");
    }
    // Error lists stay small however many tags are bad.
    let bad_tags = vec![""; 1000];
    let response = app
        .post_json(
            "/v1/assets",
            key,
            &json!({ "kind": "host", "name": "x", "tags": bad_tags }),
        )
        .await;
    assert_eq!(pointers(response).await.len(), 10);

    // The bounds themselves are accepted: 500 characters (not bytes), 50 tags
    // (counted after de-duplication), 100-character tags.
    let name = "é".repeat(500);
    let mut tags: Vec<String> = (0..50).map(|i| format!("tag-{i}")).collect();
    tags.push("tag-0".into());
    tags.push("t".repeat(100));
    tags.retain(|tag| tag != "tag-49");
    let asset = create(
        &app,
        key,
        json!({ "kind": "saas_app", "name": name, "criticality": "low", "tags": tags }),
    )
    .await;
    assert_eq!(asset["name"], name);
    assert_eq!(asset["tags"].as_array().unwrap().len(), 50);
    for kind in AssetKind::ALL {
        create(
            &app,
            key,
            json!({ "kind": kind.as_str(), "name": "every-kind" }),
        )
        .await;
    }
    // Nothing invalid was stored.
    let page: Value = app
        .get("/v1/assets?limit=100", key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["data"].as_array().unwrap().len(),
        1 + AssetKind::ALL.len()
    );
}

#[tokio::test]
async fn scopes_decide_who_reads_writes_and_deletes() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let reader = app.issue_key(tenant.id, &["read"]).await;
    let writer = app.issue_key(tenant.id, &["write"]).await;
    let body = json!({ "kind": "host", "name": "db-1" });

    let problem = assert_problem(app.post_json("/v1/assets", &reader, &body).await, 403).await;
    assert_eq!(problem["type"], "/problems/forbidden");
    let asset = create(&app, &writer, body).await;
    let path = format!("/v1/assets/{}", asset["id"].as_str().unwrap());

    assert_eq!(app.get(&path, &reader).await.status(), 200);
    assert_eq!(app.get("/v1/assets", &reader).await.status(), 200);
    assert_problem(
        patch(&app, &path, &reader, &json!({ "criticality": "high" })).await,
        403,
    )
    .await;
    assert_problem(app.delete(&path, &reader).await, 403).await;
    // Write may change but not delete: deleting takes the asset's scans and findings.
    assert_eq!(
        patch(&app, &path, &writer, &json!({ "criticality": "high" }))
            .await
            .status(),
        200
    );
    assert_problem(app.delete(&path, &writer).await, 403).await;
    assert_eq!(app.get(&path, &reader).await.status(), 200, "still there");
    assert_eq!(app.delete(&path, &tenant.admin_key).await.status(), 204);
    // Without a key, 401 on every route.
    let response = app
        .client
        .get(format!("{}/v1/assets", app.address))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
}

#[tokio::test]
async fn lists_page_newest_first_and_filter_by_kind_and_tag() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    let specs = [
        ("repository", "repo-1", json!(["prod"])),
        ("host", "host-1", json!(["prod", "eu"])),
        ("repository", "repo-2", json!([])),
        ("host", "host-2", json!(["eu"])),
        ("host", "host-3", json!(["prod"])),
        ("repository", "repo-3", json!(["prod"])),
        ("url", "https://acme.example/", json!(["prod"])),
    ];
    let mut created = Vec::new();
    for (kind, name, tags) in &specs {
        let asset = create(
            &app,
            key,
            json!({ "kind": kind, "name": name, "tags": tags }),
        )
        .await;
        created.push((
            asset["id"].as_str().unwrap().to_owned(),
            *kind,
            tags.clone(),
        ));
    }
    let newest_first = |keep: &dyn Fn(&str, &Value) -> bool| -> Vec<String> {
        created
            .iter()
            .rev()
            .filter(|(_, kind, tags)| keep(kind, tags))
            .map(|(id, _, _)| id.clone())
            .collect()
    };
    let has = |tags: &Value, tag: &str| tags.as_array().unwrap().iter().any(|t| t == tag);

    assert_eq!(
        ids_by_paging(&app, "/v1/assets", key).await,
        newest_first(&|_, _| true)
    );
    assert_eq!(
        ids_by_paging(&app, "/v1/assets?kind=host", key).await,
        newest_first(&|kind, _| kind == "host")
    );
    assert_eq!(
        ids_by_paging(&app, "/v1/assets?tag=prod", key).await,
        newest_first(&|_, tags| has(tags, "prod"))
    );
    assert_eq!(
        ids_by_paging(&app, "/v1/assets?kind=repository&tag=prod", key).await,
        newest_first(&|kind, tags| kind == "repository" && has(tags, "prod"))
    );
    assert_eq!(
        ids_by_paging(&app, "/v1/assets?tag=%20eu%20", key).await,
        newest_first(&|_, tags| has(tags, "eu")),
        "the tag filter is normalized like tags"
    );
    assert!(ids_by_paging(&app, "/v1/assets?kind=domain", key)
        .await
        .is_empty());
    assert!(ids_by_paging(&app, "/v1/assets?tag=PROD", key)
        .await
        .is_empty());

    // A full page without more to come has no cursor.
    let page: Value = app
        .get("/v1/assets?kind=url&limit=1", key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert!(page.get("next_cursor").is_none(), "{page}");

    // Bad parameters are named.
    let forged = posture_cursor(&["99999999999999999", "ast_x"]);
    for (query, parameter) in [
        ("kind=vm", "kind"),
        ("kind=", "kind"),
        ("tag=", "tag"),
        ("tag=a%00b", "tag"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=many", "limit"),
        ("cursor=zz", "cursor"),
        (&format!("cursor={forged}"), "cursor"),
    ] {
        let response = app.get(&format!("/v1/assets?{query}"), key).await;
        assert_eq!(pointers(response).await, [parameter], "{query}");
    }
}

/// A cursor in the shape the API encodes them (hex of `|`-joined parts).
fn posture_cursor(parts: &[&str]) -> String {
    parts
        .join("|")
        .bytes()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[tokio::test]
async fn patch_changes_only_the_members_sent() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    let asset = create(
        &app,
        key,
        json!({ "kind": "container_image", "name": "acme/api", "criticality": "high",
                "tags": ["prod"] }),
    )
    .await;
    create(
        &app,
        key,
        json!({ "kind": "container_image", "name": "acme/worker" }),
    )
    .await;
    create(
        &app,
        key,
        json!({ "kind": "repository", "name": "acme/web" }),
    )
    .await;
    let path = format!("/v1/assets/{}", asset["id"].as_str().unwrap());

    let renamed: Value = patch(&app, &path, key, &json!({ "name": " acme/api-v2 " }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "acme/api-v2");
    assert_eq!(renamed["criticality"], "high");
    assert_eq!(renamed["tags"], json!(["prod"]));
    assert_eq!(renamed["kind"], "container_image");
    assert_eq!(renamed["created_at"], asset["created_at"]);
    let time =
        |value: &Value| chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap();
    assert!(
        time(&renamed["updated_at"]) > time(&asset["updated_at"]),
        "{renamed}"
    );

    let retagged: Value = patch(&app, &path, key, &json!({ "tags": ["b", "a", "b"] }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(retagged["tags"], json!(["a", "b"]));
    assert_eq!(retagged["name"], "acme/api-v2");
    let cleared: Value = patch(
        &app,
        &path,
        key,
        &json!({ "tags": [], "criticality": "low" }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(cleared["tags"], json!([]));
    assert_eq!(cleared["criticality"], "low");

    // Taking another asset's name within the kind is a conflict; across kinds it is not.
    let problem = assert_problem(
        patch(&app, &path, key, &json!({ "name": "acme/worker" })).await,
        409,
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/name", "{problem}");
    let moved = patch(&app, &path, key, &json!({ "name": "acme/web" })).await;
    assert_eq!(moved.status(), 200);

    for (body, expected) in [
        (json!({}), vec![""]),
        (json!({ "kind": "host" }), vec!["/kind"]),
        (json!({ "name": null }), vec!["/name"]),
        (json!({ "tags": null }), vec!["/tags"]),
        (json!({ "criticality": null }), vec!["/criticality"]),
        (json!({ "name": "" }), vec!["/name"]),
        (
            json!({ "criticality": "extreme", "tags": ["ok", ""] }),
            vec!["/criticality", "/tags/1"],
        ),
    ] {
        let response = patch(&app, &path, key, &body).await;
        assert_eq!(pointers(response).await, expected, "{body}");
    }
    // The merge-patch media type is accepted too.
    let response = app
        .client
        .patch(format!("{}{path}", app.address))
        .bearer_auth(key)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"criticality":"critical"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Refused patches changed nothing.
    let now: Value = app.get(&path, key).await.json().await.unwrap();
    assert_eq!(now["name"], "acme/web");
    assert_eq!(now["criticality"], "critical");
    assert_eq!(now["tags"], json!([]));
}

#[tokio::test]
async fn malformed_and_unknown_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    let asset = create(&app, key, json!({ "kind": "host", "name": "h" })).await;
    let id = asset["id"].as_str().unwrap();
    let scan_id = id.replacen("ast_", "scn_", 1);
    for bad in [
        "nope",
        "ast_",
        &format!("{id}x"),
        &scan_id,
        "ast_zzzzzzzzzzzzzzzzzzzzzz",
        "ast_0000000000000000000000",
    ] {
        let path = format!("/v1/assets/{bad}");
        assert_problem(app.get(&path, key).await, 404).await;
        assert_problem(patch(&app, &path, key, &json!({ "tags": [] })).await, 404).await;
        assert_problem(app.delete(&path, key).await, 404).await;
    }
    assert_eq!(
        app.get(&format!("/v1/assets/{id}"), key).await.status(),
        200
    );
}

#[tokio::test]
async fn deleting_an_asset_deletes_its_scans_and_findings() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    let key = &tenant.admin_key;
    let doomed = create(&app, key, json!({ "kind": "repository", "name": "doomed" })).await;
    let kept = create(&app, key, json!({ "kind": "repository", "name": "kept" })).await;
    let tenant_uuid = tenant.id.as_uuid();
    let uuid_of = |asset: &Value| {
        posture_domain::ids::AssetId::parse(asset["id"].as_str().unwrap())
            .unwrap()
            .as_uuid()
    };
    // A scan with its report and job, and a finding with its sighting and history,
    // on each asset (arranged as the owner).
    for asset in [uuid_of(&doomed), uuid_of(&kept)] {
        let scan = uuid::Uuid::now_v7();
        let finding = uuid::Uuid::now_v7();
        for statement in [
            "INSERT INTO scans (tenant_id, id, asset_id, format, scope, report_bytes)
             VALUES ($1, $3, $2, 'sarif', 'full', 10)",
            "INSERT INTO scan_reports (tenant_id, scan_id, content_type, encoding, body)
             VALUES ($1, $3, 'application/sarif+json', 'gzip', '\\x00')",
            "INSERT INTO jobs (tenant_id, id, kind, scan_id)
             VALUES ($1, gen_random_uuid(), 'process_scan', $3)",
            "INSERT INTO findings (tenant_id, id, asset_id, fingerprint, tool_name, rule_id,
                                   title, severity, first_seen_at, last_seen_at)
             VALUES ($1, $4, $2, 'v1:x', 'semgrep', 'r1', 't', 'high', now(), now())",
            "INSERT INTO finding_sightings (tenant_id, finding_id, tool_name, asset_id,
                                            last_scan_id, last_seen_at)
             VALUES ($1, $4, 'semgrep', $2, $3, now())",
            "INSERT INTO finding_events (tenant_id, id, finding_id, kind, actor)
             VALUES ($1, gen_random_uuid(), $4, 'created', 'test')",
        ] {
            sqlx::query(statement)
                .bind(tenant_uuid)
                .bind(asset)
                .bind(scan)
                .bind(finding)
                .execute(app.owner.pool())
                .await
                .unwrap_or_else(|error| panic!("{statement}: {error}"));
        }
    }

    let path = format!("/v1/assets/{}", doomed["id"].as_str().unwrap());
    assert_eq!(app.delete(&path, key).await.status(), 204);
    for table in [
        "scans",
        "scan_reports",
        "jobs",
        "findings",
        "finding_sightings",
        "finding_events",
    ] {
        // The deletion queues a posture refresh: a job of its own, not the asset's.
        let only_scans = if table == "jobs" {
            " WHERE kind = 'process_scan'"
        } else {
            ""
        };
        let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}{only_scans}"))
            .fetch_one(app.owner.pool())
            .await
            .unwrap();
        assert_eq!(left, 1, "{table}: only the kept asset's row remains");
    }
    let remaining: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT asset_id FROM scans")
        .fetch_all(app.owner.pool())
        .await
        .unwrap();
    assert_eq!(remaining, [uuid_of(&kept)]);
}

#[tokio::test]
async fn find_or_create_returns_one_asset_however_many_ask_at_once() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Basic).await;
    // As the application role, so row-level security applies as in production.
    // Enough connections for every concurrent transaction below.
    let settings = PoolSettings {
        max_connections: 8,
        acquire_timeout: std::time::Duration::from_secs(10),
        ..PoolSettings::for_command(&crate::support::test_config(&app.database))
    };
    let store = Store::connect_lazy(&app.database.app_url(), &settings).unwrap();
    let existing = create(
        &app,
        &tenant.admin_key,
        json!({ "kind": "repository", "name": "github.com/acme/api", "criticality": "critical" }),
    )
    .await;

    // An existing asset is found, criticality and all.
    let name = AssetName::parse("github.com/acme/api").unwrap();
    let mut tx = store.begin_tenant(tenant.id).await.unwrap();
    let found = assets::find_or_create(&mut tx, AssetKind::Repository, &name)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(found.id.to_string(), existing["id"].as_str().unwrap());
    assert_eq!(found.criticality, Criticality::Critical);

    // A new one is created once, with medium criticality, even when eight
    // transactions ask for it at the same moment.
    let image = AssetName::parse("registry.example/acme/api:1.2").unwrap();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, image, barrier) = (store.clone(), image.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut tx = store.begin_tenant(tenant.id).await.unwrap();
                barrier.wait().await;
                let record = assets::find_or_create(&mut tx, AssetKind::ContainerImage, &image)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                record
            })
        })
        .collect();
    let mut records = Vec::new();
    for task in tasks {
        records.push(task.await.unwrap());
    }
    assert!(
        records.iter().all(|record| record == &records[0]),
        "{records:?}"
    );
    assert_eq!(records[0].criticality, Criticality::Medium);
    assert_eq!(records[0].name, image.as_str());
    assert!(records[0].tags.is_empty());

    // The API shows it like any other asset.
    let shown = app
        .get(&format!("/v1/assets/{}", records[0].id), &tenant.admin_key)
        .await;
    assert_eq!(shown.status(), 200);
    let page: Value = app
        .get("/v1/assets?kind=container_image", &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    store.close().await;
}
