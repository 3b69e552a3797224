//! `/v1/frameworks`: custom compliance frameworks (premium and above) — the tier
//! gate, scopes, validation, the lifecycle and its audit trail, the per-tenant
//! limit, and how a custom framework shows in `/v1/compliance`.

use crate::support::{assert_problem, TestApp, TestTenant};
use chrono::{DateTime, Utc};
use posture_domain::ids::FrameworkId;
use posture_domain::Tier;
use serde_json::{json, Value};

fn control(id: &str, cwes: &[u32], rules: &[&str]) -> Value {
    json!({"id": id, "title": format!("Control {id}"), "cwes": cwes, "rules": rules})
}

fn definition(name: &str, controls: &[Value]) -> Value {
    json!({"name": name, "description": "Our own rules", "controls": controls})
}

/// A valid definition with one control mapped to CWE-89.
fn minimal(name: &str) -> Value {
    definition(name, &[control("SEC-1", &[89], &[])])
}

async fn put_json(app: &TestApp, path: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(format!("{}{path}", app.address))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// Creates a framework, expects 201, returns its body.
async fn create(app: &TestApp, key: &str, body: &Value) -> Value {
    let response = app.post_json("/v1/frameworks", key, body).await;
    assert_eq!(response.status(), 201, "creating {body}");
    response.json().await.unwrap()
}

/// The actions recorded in the tenant's audit log for `target`, oldest first.
async fn audit_actions(
    app: &TestApp,
    tenant_id: posture_domain::TenantId,
    target: &str,
) -> Vec<(String, Value)> {
    sqlx::query_as(
        "SELECT action, details FROM audit_log WHERE tenant_id = $1 AND target = $2 ORDER BY id",
    )
    .bind(tenant_id.as_uuid())
    .bind(target)
    .fetch_all(app.owner.pool())
    .await
    .unwrap()
}

async fn assert_tier_required(response: reqwest::Response, current: &str) {
    let problem = assert_problem(response, 403).await;
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/problems/tier-required"),
        "{problem}"
    );
    assert_eq!(problem["required_tier"], "premium", "{problem}");
    assert_eq!(problem["current_tier"], current, "{problem}");
}

#[tokio::test]
async fn creating_and_replacing_need_premium_reading_and_deleting_do_not() {
    let app = TestApp::spawn().await;
    let unknown = format!("/v1/frameworks/{}", FrameworkId::new());
    for (tier, name) in [(Tier::Free, "free"), (Tier::Basic, "basic")] {
        let tenant = app.create_tenant(tier).await;
        let key = &tenant.admin_key;
        assert_tier_required(
            app.post_json("/v1/frameworks", key, &minimal("Ours")).await,
            name,
        )
        .await;
        // The gate comes first: the framework need not exist.
        assert_tier_required(put_json(&app, &unknown, key, &minimal("Ours")).await, name).await;
        // Reading is not gated.
        let list: Value = app.get("/v1/frameworks", key).await.json().await.unwrap();
        assert_eq!(list, json!({"data": []}));
    }
    for tier in [Tier::Premium, Tier::Enterprise] {
        let tenant = app.create_tenant(tier).await;
        let created = create(&app, &tenant.admin_key, &minimal("Ours")).await;
        assert_eq!(created["revision"], 1, "{created}");
    }

    // An operator moves a premium organization down to basic: it keeps sight of
    // its frameworks and can delete them, but cannot create or change any.
    let tenant = app.create_tenant(Tier::Premium).await;
    let created = create(&app, &tenant.admin_key, &minimal("Ours")).await;
    let path = format!("/v1/frameworks/{}", created["id"].as_str().unwrap());
    posture::store::operator::set_tier(&app.owner, tenant.id, Tier::Basic)
        .await
        .unwrap();
    // Verified key verdicts (with the tier) are cached for up to 5 s; a key the
    // server has not seen yet is looked up, so it sees the new tier at once.
    let key = app.issue_key(tenant.id, &["read", "write"]).await;
    let org: Value = app.get("/v1/org", &key).await.json().await.unwrap();
    assert_eq!(org["tier"], "basic", "{org}");
    let list: Value = app.get("/v1/frameworks", &key).await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(app.get(&path, &key).await.status(), 200);
    assert_tier_required(
        put_json(&app, &path, &key, &minimal("Changed")).await,
        "basic",
    )
    .await;
    assert_tier_required(
        app.post_json("/v1/frameworks", &key, &minimal("Another"))
            .await,
        "basic",
    )
    .await;
    let unchanged: Value = app.get(&path, &key).await.json().await.unwrap();
    assert_eq!(
        (unchanged["name"].as_str(), unchanged["revision"].as_i64()),
        (Some("Ours"), Some(1))
    );
    assert_eq!(app.delete(&path, &key).await.status(), 204);
    assert_eq!(app.get(&path, &key).await.status(), 404);
}

#[tokio::test]
async fn only_write_keys_create_replace_and_delete() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let reader = app.issue_key(tenant.id, &["read"]).await;
    let writer = app.issue_key(tenant.id, &["write"]).await;

    let problem = assert_problem(
        app.post_json("/v1/frameworks", &reader, &minimal("Ours"))
            .await,
        403,
    )
    .await;
    assert_eq!(problem["type"], "/problems/forbidden", "{problem}");

    let created = create(&app, &writer, &minimal("Ours")).await;
    let path = format!("/v1/frameworks/{}", created["id"].as_str().unwrap());
    let problem = assert_problem(put_json(&app, &path, &reader, &minimal("Mine")).await, 403).await;
    assert_eq!(problem["type"], "/problems/forbidden", "{problem}");
    let problem = assert_problem(app.delete(&path, &reader).await, 403).await;
    assert_eq!(problem["type"], "/problems/forbidden", "{problem}");

    // A read key reads.
    assert_eq!(app.get(&path, &reader).await.status(), 200);
    let list: Value = app
        .get("/v1/frameworks", &reader)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let replaced = put_json(&app, &path, &writer, &minimal("Mine")).await;
    assert_eq!(replaced.status(), 200);
    assert_eq!(app.delete(&path, &writer).await.status(), 204);
}

#[tokio::test]
async fn invalid_definitions_are_refused_with_pointers() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    let sql = [control("SEC-1", &[89], &[])];
    let cases = [
        (definition("", &sql), "/name"),
        (definition("   ", &sql), "/name"),
        (definition(&"n".repeat(201), &sql), "/name"),
        (definition("Ours", &[]), "/controls"),
        (
            definition("Ours", &[sql[0].clone(), control("SEC-1", &[79], &[])]),
            "/controls/1/id",
        ),
        (
            definition("Ours", &[control("bad id", &[79], &[])]),
            "/controls/0/id",
        ),
        (
            definition("Ours", &[control("SEC-1", &[], &[])]),
            "/controls/0",
        ),
        (
            definition("Ours", &[control("SEC-1", &[0], &[])]),
            "/controls/0/cwes/0",
        ),
        (
            definition("Ours", &[control("SEC-1", &[], &["a*b"])]),
            "/controls/0/rules/0",
        ),
        (
            definition("Ours", &[control("SEC-1", &[], &["*"])]),
            "/controls/0/rules/0",
        ),
        (
            json!({"name": "Ours", "description": "", "controls": sql}),
            "/description",
        ),
        (
            json!({"name": "Ours", "controls": [{"id": "SEC-1", "title": " ", "cwes": [89]}]}),
            "/controls/0/title",
        ),
        // Shapes serde refuses: a negative CWE id, a string for the list.
        (
            json!({"name": "Ours", "controls": [{"id": "SEC-1", "title": "t", "cwes": [-1]}]}),
            "/controls/0/cwes/0",
        ),
        (json!({"name": "Ours", "controls": "SEC-1"}), "/controls"),
    ];
    for (body, pointer) in &cases {
        let problem = assert_problem(app.post_json("/v1/frameworks", key, body).await, 422).await;
        assert_eq!(problem["type"], "/problems/validation-failed", "{problem}");
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|error| error["pointer"].as_str())
            .collect();
        assert!(
            pointers.contains(pointer),
            "{body}: expected {pointer} in {problem}"
        );
    }

    // Every problem is reported at once.
    let problem = assert_problem(
        app.post_json(
            "/v1/frameworks",
            key,
            &definition("", &[control("SEC-1", &[0], &["a*b"])]),
        )
        .await,
        422,
    )
    .await;
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/name", "/controls/0/cwes/0", "/controls/0/rules/0"],
        "{problem}"
    );

    // Unknown members are refused (deny_unknown_fields), in the body and in a control.
    for (body, pointer) in [
        (
            json!({"name": "Ours", "controls": sql, "owner": "me"}),
            "/owner",
        ),
        (
            json!({"name": "Ours", "controls": [{"id": "SEC-1", "title": "t", "cwes": [89], "severity": "high"}]}),
            "/controls/0/severity",
        ),
    ] {
        let problem = assert_problem(app.post_json("/v1/frameworks", key, &body).await, 422).await;
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
        let detail = problem["errors"][0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("unknown field"), "{body}: {problem}");
    }
    // Missing required members.
    for body in [json!({"controls": sql}), json!({"name": "Ours"})] {
        assert_problem(app.post_json("/v1/frameworks", key, &body).await, 422).await;
    }

    // Not JSON at all: 400; not declared as JSON: 415.
    let malformed = app
        .client
        .post(format!("{}/v1/frameworks", app.address))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(r#"{"name": "Ours", "controls": ["#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(malformed, 400).await;
    assert_eq!(problem["type"], "/problems/malformed-json", "{problem}");
    let text = app
        .client
        .post(format!("{}/v1/frameworks", app.address))
        .bearer_auth(key)
        .header("content-type", "text/plain")
        .body(minimal("Ours").to_string())
        .send()
        .await
        .unwrap();
    assert_problem(text, 415).await;

    // Replacing validates the same way.
    let created = create(&app, key, &minimal("Ours")).await;
    let path = format!("/v1/frameworks/{}", created["id"].as_str().unwrap());
    let problem = assert_problem(
        put_json(&app, &path, key, &definition("Ours", &[])).await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/controls", "{problem}");

    // Nothing invalid was stored; the one valid framework is unchanged.
    let list: Value = app.get("/v1/frameworks", key).await.json().await.unwrap();
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{list}");
    assert_eq!(data[0]["revision"], 1);
}

#[tokio::test]
async fn frameworks_are_created_read_replaced_and_deleted_with_an_audit_trail() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    let controls = [
        control("SEC-1", &[89], &[]),
        control("SEC-2", &[79, 80], &["py.xss", "semgrep.xss.*"]),
    ];
    let response = app
        .post_json(
            "/v1/frameworks",
            key,
            &definition("  Internal AppSec  ", &controls),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("cfw_") && FrameworkId::parse(&id).is_some(),
        "{created}"
    );
    assert_eq!(location, format!("/v1/frameworks/{id}"));
    assert_eq!(created["name"], "Internal AppSec", "the name is trimmed");
    assert_eq!(created["description"], "Our own rules");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["controls"], json!(controls));
    assert_eq!(created["created_at"], created["updated_at"]);

    let fetched: Value = app.get(&location, key).await.json().await.unwrap();
    assert_eq!(fetched, created);
    let list: Value = app.get("/v1/frameworks", key).await.json().await.unwrap();
    assert_eq!(list, json!({"data": [created.clone()]}));

    // Names are unique per organization (after trimming).
    let problem = assert_problem(
        app.post_json("/v1/frameworks", key, &minimal("Internal AppSec"))
            .await,
        409,
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/name", "{problem}");
    let problem = assert_problem(
        app.post_json("/v1/frameworks", key, &minimal(" Internal AppSec "))
            .await,
        409,
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/name", "{problem}");
    // ...but not across organizations.
    let other = app.create_tenant(Tier::Premium).await;
    create(&app, &other.admin_key, &minimal("Internal AppSec")).await;

    // Replace: the controls are replaced, the revision increases.
    let replacement =
        json!({"name": "Internal AppSec v2", "controls": [control("SEC-9", &[22], &[])]});
    let response = put_json(&app, &location, key, &replacement).await;
    assert_eq!(response.status(), 200);
    let replaced: Value = response.json().await.unwrap();
    assert_eq!(replaced["id"], id.as_str());
    assert_eq!(replaced["revision"], 2);
    assert_eq!(replaced["name"], "Internal AppSec v2");
    assert_eq!(replaced["description"], Value::Null);
    assert_eq!(replaced["controls"], json!([control("SEC-9", &[22], &[])]));
    assert_eq!(replaced["created_at"], created["created_at"]);
    let time = |view: &Value, member: &str| -> DateTime<Utc> {
        view[member].as_str().unwrap().parse().unwrap()
    };
    assert!(
        time(&replaced, "updated_at") > time(&created, "updated_at"),
        "{replaced}"
    );
    let fetched: Value = app.get(&location, key).await.json().await.unwrap();
    assert_eq!(fetched, replaced);

    // Replacing with another framework's name is a conflict; the old name is free again.
    let second = create(&app, key, &minimal("Internal AppSec")).await;
    let second_path = format!("/v1/frameworks/{}", second["id"].as_str().unwrap());
    let problem = assert_problem(
        put_json(&app, &second_path, key, &minimal("Internal AppSec v2")).await,
        409,
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/name", "{problem}");
    // Keeping its own name is no conflict.
    let response = put_json(&app, &second_path, key, &minimal("Internal AppSec")).await;
    assert_eq!(response.status(), 200);

    // Unknown ids (well-formed, malformed, another organization's) are 404.
    let other_framework: Value = app
        .get("/v1/frameworks", &other.admin_key)
        .await
        .json()
        .await
        .unwrap();
    let other_path = format!(
        "/v1/frameworks/{}",
        other_framework["data"][0]["id"].as_str().unwrap()
    );
    for path in [
        format!("/v1/frameworks/{}", FrameworkId::new()),
        "/v1/frameworks/cfw_nope".to_owned(),
        "/v1/frameworks/soc2".to_owned(),
        other_path.clone(),
    ] {
        assert_problem(put_json(&app, &path, key, &minimal("X")).await, 404).await;
        assert_problem(app.get(&path, key).await, 404).await;
        assert_problem(app.delete(&path, key).await, 404).await;
    }
    assert_eq!(app.get(&other_path, &other.admin_key).await.status(), 200);

    // Delete: 204, then gone.
    assert_eq!(app.delete(&location, key).await.status(), 204);
    assert_problem(app.get(&location, key).await, 404).await;
    assert_problem(app.delete(&location, key).await, 404).await;
    assert_problem(put_json(&app, &location, key, &minimal("Back")).await, 404).await;
    let list: Value = app.get("/v1/frameworks", key).await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");

    // The audit log has each change, by whom, with the request id.
    let actions = audit_actions(&app, tenant.id, &id).await;
    let names: Vec<&str> = actions.iter().map(|(action, _)| action.as_str()).collect();
    assert_eq!(
        names,
        [
            "framework.created",
            "framework.replaced",
            "framework.deleted"
        ],
        "{actions:?}"
    );
    assert_eq!(
        actions[0].1,
        json!({"name": "Internal AppSec", "controls": 2})
    );
    assert_eq!(
        actions[1].1,
        json!({"name": "Internal AppSec v2", "revision": 2, "controls": 1})
    );
    let (actor, request_id): (String, Option<String>) = sqlx::query_as(
        "SELECT actor, request_id FROM audit_log
         WHERE tenant_id = $1 AND target = $2 AND action = 'framework.created'",
    )
    .bind(tenant.id.as_uuid())
    .bind(&id)
    .fetch_one(app.owner.pool())
    .await
    .unwrap();
    assert!(actor.starts_with("key:"), "{actor}");
    assert!(request_id.is_some_and(|r| !r.is_empty()));
    // Refused requests (conflicts, 404s) leave no trace.
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action LIKE 'framework.%'",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(app.owner.pool())
    .await
    .unwrap();
    assert_eq!(
        recorded,
        3 + 2,
        "three for the first framework, two for the second"
    );
}

#[tokio::test]
async fn a_create_retried_with_an_idempotency_key_creates_one_framework() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let send = || {
        app.client
            .post(format!("{}/v1/frameworks", app.address))
            .bearer_auth(&tenant.admin_key)
            .header("idempotency-key", "create-framework-1")
            .json(&minimal("Ours"))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    let location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), 201, "a replay, not a name conflict");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    let list: Value = app
        .get("/v1/frameworks", &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let created = audit_actions(&app, tenant.id, first["id"].as_str().unwrap()).await;
    assert_eq!(created.len(), 1, "{created:?}");
}

#[tokio::test]
async fn an_organization_has_at_most_twenty_frameworks() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let key = &tenant.admin_key;
    let mut first = None;
    for number in 1..=20 {
        let created = create(&app, key, &minimal(&format!("Framework {number}"))).await;
        first.get_or_insert(created);
    }
    let problem = assert_problem(
        app.post_json("/v1/frameworks", key, &minimal("Framework 21"))
            .await,
        409,
    )
    .await;
    assert_eq!(problem["type"], "/problems/conflict", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("20"),
        "{problem}"
    );
    let list: Value = app.get("/v1/frameworks", key).await.json().await.unwrap();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|framework| framework["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 20);
    assert_eq!(names[0], "Framework 1", "oldest first");
    assert_eq!(names[19], "Framework 20");

    // Replacing one at the limit is fine; deleting one makes room.
    let path = format!("/v1/frameworks/{}", first.unwrap()["id"].as_str().unwrap());
    assert_eq!(
        put_json(&app, &path, key, &minimal("Framework 1b"))
            .await
            .status(),
        200
    );
    assert_eq!(app.delete(&path, key).await.status(), 204);
    create(&app, key, &minimal("Framework 21")).await;
}

fn sarif(results: &[(&str, u32, &[&str])]) -> Value {
    let results: Vec<Value> = results
        .iter()
        .map(|(rule, line, tags)| {
            json!({"ruleId": rule, "level": "error", "message": {"text": rule},
                   "properties": {"tags": tags},
                   "locations": [{"physicalLocation": {"artifactLocation": {"uri": "app.py"},
                                                       "region": {"startLine": line}}}]})
        })
        .collect();
    json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": results}]})
}

async fn compliance_entry(app: &TestApp, tenant: &TestTenant, id: &str) -> Option<Value> {
    let overview: Value = app
        .get("/v1/compliance", &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    overview["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|framework| framework["id"] == id)
        .cloned()
}

async fn control_ids(app: &TestApp, tenant: &TestTenant, path: &str) -> Vec<(String, u64)> {
    let detail: Value = app.get(path, &tenant.admin_key).await.json().await.unwrap();
    detail["controls"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {detail}"))
        .iter()
        .map(|control| {
            (
                control["id"].as_str().unwrap().to_owned(),
                control["failing_findings"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn custom_frameworks_are_assessed_in_compliance() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Premium).await;
    let key = &tenant.admin_key;
    let created = create(
        &app,
        key,
        &definition(
            "Internal AppSec",
            &[
                control("SQL", &[89], &[]),
                control("XSS", &[79], &[]),
                control("LINT", &[], &["custom.lint.*"]),
            ],
        ),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let detail_path = format!("/v1/compliance/{id}");

    // Read at once (before the background refresh may have run), it is evaluated on the spot.
    let detail: Value = app.get(&detail_path, key).await.json().await.unwrap();
    assert_eq!(detail["controls"].as_array().unwrap().len(), 3, "{detail}");

    // Nothing scanned yet: nothing assessed.
    app.wait_for_posture(tenant.id).await;
    let entry = compliance_entry(&app, &tenant, &id)
        .await
        .expect("the custom framework is listed");
    assert_eq!(entry["custom"], true, "{entry}");
    assert_eq!(entry["name"], "Internal AppSec");
    assert_eq!(entry["version"], "revision 1");
    assert_eq!(
        (&entry["passed"], &entry["failed"], &entry["not_assessed"]),
        (&json!(0), &json!(0), &json!(3)),
        "{entry}"
    );
    assert_eq!(entry["percent"], Value::Null);

    // A scan with a CWE-89 result and a custom lint result.
    let report = sarif(&[
        ("py.sqli", 1, &["security", "external/cwe/cwe-89"]),
        ("custom.lint.todo", 2, &[]),
    ]);
    let scan = app
        .ingest_sarif(
            key,
            "asset_kind=repository&asset_name=acme/api&scope=full",
            &report,
        )
        .await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    app.wait_for_posture(tenant.id).await;

    let entry = compliance_entry(&app, &tenant, &id).await.unwrap();
    assert_eq!(
        (&entry["passed"], &entry["failed"], &entry["not_assessed"]),
        (&json!(1), &json!(2), &json!(0)),
        "{entry}"
    );
    assert_eq!(entry["percent"], 33.3, "{entry}");
    assert_eq!(
        control_ids(&app, &tenant, &format!("{detail_path}?status=failed")).await,
        [("SQL".to_owned(), 1), ("LINT".to_owned(), 1)]
    );
    assert_eq!(
        control_ids(&app, &tenant, &format!("{detail_path}?status=passed")).await,
        [("XSS".to_owned(), 0)],
        "a control no open finding maps passes once an asset was scanned"
    );
    assert_eq!(
        control_ids(&app, &tenant, &format!("{detail_path}?status=not_assessed")).await,
        []
    );

    // The drill-down shows the evidence.
    let drill: Value = app
        .get(&format!("{detail_path}/controls/SQL"), key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(drill["control"]["status"], "failed", "{drill}");
    assert_eq!(drill["mapping"]["cwes"], json!([89]));
    let findings = drill["findings"]["data"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{drill}");
    assert_eq!(findings[0]["rule_id"], "py.sqli");

    // Replacing the framework re-assesses it.
    let path = format!("/v1/frameworks/{id}");
    let response = put_json(
        &app,
        &path,
        key,
        &definition("Internal AppSec", &[control("XSS", &[79], &[])]),
    )
    .await;
    assert_eq!(response.status(), 200);
    app.wait_for_posture(tenant.id).await;
    let entry = compliance_entry(&app, &tenant, &id).await.unwrap();
    assert_eq!(entry["version"], "revision 2");
    assert_eq!(
        (&entry["passed"], &entry["failed"], &entry["percent"]),
        (&json!(1), &json!(0), &json!(100.0)),
        "{entry}"
    );

    // Custom frameworks do not move the built-in compliance %.
    let posture: Value = app.get("/v1/posture", key).await.json().await.unwrap();
    let overview: Value = app.get("/v1/compliance", key).await.json().await.unwrap();
    assert_eq!(
        posture["compliance_percent"], overview["compliance_percent"],
        "{posture} {overview}"
    );

    // Deleted: gone from the overview and its detail.
    assert_eq!(app.delete(&path, key).await.status(), 204);
    assert_problem(app.get(&detail_path, key).await, 404).await;
    app.wait_for_posture(tenant.id).await;
    assert!(compliance_entry(&app, &tenant, &id).await.is_none());

    // Another organization cannot read it through /v1/compliance either.
    let other = app.create_tenant(Tier::Premium).await;
    let kept = create(&app, key, &minimal("Kept")).await;
    let kept_detail = format!("/v1/compliance/{}", kept["id"].as_str().unwrap());
    assert_eq!(app.get(&kept_detail, key).await.status(), 200);
    assert_problem(app.get(&kept_detail, &other.admin_key).await, 404).await;
    assert_problem(
        app.get(&format!("{kept_detail}/controls/SEC-1"), &other.admin_key)
            .await,
        404,
    )
    .await;
}
