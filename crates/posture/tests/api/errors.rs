//! Every error leaves as RFC 9457 `application/problem+json` carrying the request id,
//! whichever layer produced it (router, body limit, extractors, authentication,
//! handlers); validation problems point at the offending field or parameter; and no
//! odd input, however hostile, produces a 5xx.

use crate::hostile_input::send_raw;
use crate::support::{assert_problem, TestApp};
use posture_domain::Tier;
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::{json, Value};

/// `POST /v1/api-keys` with `body` as raw bytes and the given content type.
pub(crate) async fn post_raw(
    app: &TestApp,
    key: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/v1/api-keys", app.address))
        .bearer_auth(key)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.expect("request")
}

/// The `errors` members of a validation problem as (pointer or parameter, detail).
fn field_errors(problem: &Value) -> Vec<(String, String)> {
    assert_eq!(problem["type"], "/problems/validation-failed", "{problem}");
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {problem}"))
        .iter()
        .map(|error| {
            let place = error["pointer"]
                .as_str()
                .or(error["parameter"].as_str())
                .expect("pointer or parameter");
            (
                place.to_owned(),
                error["detail"].as_str().expect("detail").to_owned(),
            )
        })
        .collect()
}

fn places(problem: &Value) -> Vec<String> {
    field_errors(problem)
        .into_iter()
        .map(|(place, _)| place)
        .collect()
}

#[tokio::test]
async fn unknown_paths_are_404_problems_with_or_without_a_key() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    for path in ["/nope", "/v1", "/v1/nope", "/v1/org/extra", "/health"] {
        let anonymous = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(anonymous, 404).await;
        assert_eq!(problem["type"], "/problems/not-found", "{path}: {problem}");
        assert_eq!(problem["instance"], path, "{problem}");
        let problem = assert_problem(app.get(path, &tenant.admin_key).await, 404).await;
        assert_eq!(problem["type"], "/problems/not-found", "{path}: {problem}");
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let cases: [(Method, &str, &[&str]); 4] = [
        (Method::PUT, "/health/live", &["GET"]),
        (Method::POST, "/health/ready", &["GET"]),
        (Method::PUT, "/v1/org", &["GET"]),
        (Method::PATCH, "/v1/api-keys", &["GET", "POST"]),
    ];
    for (method, path, allowed) in cases {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .bearer_auth(&tenant.admin_key)
            .send()
            .await
            .unwrap();
        let allow = response
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
            .to_str()
            .unwrap()
            .to_owned();
        let problem = assert_problem(response, 405).await;
        assert_eq!(problem["type"], "/problems/method-not-allowed", "{problem}");
        for method in allowed {
            assert!(
                allow.split(',').any(|m| m.trim() == *method),
                "{path}: Allow {allow:?} lacks {method}"
            );
        }
    }
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 1024).await;
    let tenant = app.create_tenant(Tier::Free).await;
    // Valid JSON, just too big: the size is what is refused.
    let big = json!({ "name": "x".repeat(2_000), "scopes": ["read"] });
    let problem = assert_problem(
        app.post_json("/v1/api-keys", &tenant.admin_key, &big).await,
        413,
    )
    .await;
    assert_eq!(problem["type"], "/problems/payload-too-large", "{problem}");
    // Garbage that is too big is also 413, not 400.
    let problem = assert_problem(
        post_raw(
            &app,
            &tenant.admin_key,
            Some("application/json"),
            vec![b'{'; 5_000],
        )
        .await,
        413,
    )
    .await;
    assert_eq!(problem["type"], "/problems/payload-too-large", "{problem}");
    // A chunked body (no Content-Length) that grows past the limit is 413 as well.
    let address = app.address.trim_start_matches("http://");
    let mut request = format!(
        "POST /v1/api-keys HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        tenant.admin_key
    )
    .into_bytes();
    for _ in 0..8 {
        request.extend_from_slice(format!("200\r\n{}\r\n", " ".repeat(0x200)).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let reply = send_raw(&app, &request).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(problem["type"], "/problems/payload-too-large", "{problem}");
    assert_eq!(problem["request_id"].as_str(), reply.request_id.as_deref());
    // Just under the limit is processed (422 for the too-long name: the body was read).
    let fits = json!({ "name": "x".repeat(900), "scopes": ["read"] });
    assert!(serde_json::to_vec(&fits).unwrap().len() < 1024);
    let problem = assert_problem(
        app.post_json("/v1/api-keys", &tenant.admin_key, &fits)
            .await,
        422,
    )
    .await;
    assert_eq!(places(&problem), ["/name"]);
}

#[tokio::test]
async fn a_body_that_is_not_json_by_content_type_is_415() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let valid = r#"{"name":"ci","scopes":["read"]}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        None,
    ] {
        let response = post_raw(&app, &tenant.admin_key, content_type, valid).await;
        let problem = assert_problem(response, 415).await;
        assert_eq!(
            problem["type"], "/problems/unsupported-media-type",
            "{content_type:?}: {problem}"
        );
    }
    // JSON media types with parameters or a +json suffix are accepted.
    for content_type in [
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let response = post_raw(&app, &tenant.admin_key, Some(content_type), valid).await;
        assert_eq!(response.status(), 201, "{content_type}");
    }
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    for body in [
        "",
        "{",
        r#"{"name":"#,
        r#"{"name":"ci","scopes":["read"]} trailing"#,
        "{'name': 'ci'}",
        "nul",
    ] {
        let response = post_raw(&app, &tenant.admin_key, Some("application/json"), body).await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(
            problem["type"], "/problems/malformed-json",
            "{body:?}: {problem}"
        );
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn validation_errors_point_at_the_field() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let key = &tenant.admin_key;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        // Missing member: the pointer names the object that lacks it (the root).
        (json!({ "scopes": ["read"] }), vec![""]),
        (json!({ "name": 5, "scopes": ["read"] }), vec!["/name"]),
        (json!({ "name": "ci", "scopes": "read" }), vec!["/scopes"]),
        (
            json!({ "name": "ci", "scopes": ["read", 7] }),
            vec!["/scopes/1"],
        ),
        (
            json!({ "name": "ci", "scopes": ["read", "write", "root"] }),
            vec!["/scopes/2"],
        ),
        (json!({ "name": "ci", "scopes": [] }), vec!["/scopes"]),
        (
            json!({ "name": "ci", "scopes": ["read"], "expires_at": "2000-01-01T00:00:00Z" }),
            vec!["/expires_at"],
        ),
        (
            json!({ "name": "ci", "scopes": ["read"], "expires_at": "tomorrow" }),
            vec!["/expires_at"],
        ),
        (
            json!({ "name": "", "scopes": ["read", "root"], "expires_at": "2000-01-01T00:00:00Z" }),
            vec!["/name", "/scopes/1", "/expires_at"],
        ),
        (
            json!({ "name": "x".repeat(101), "scopes": ["read"] }),
            vec!["/name"],
        ),
    ];
    for (body, expected) in cases {
        let problem = assert_problem(app.post_json("/v1/api-keys", key, &body).await, 422).await;
        assert_eq!(places(&problem), expected, "{body}: {problem}");
        for (_, detail) in field_errors(&problem) {
            assert!(!detail.is_empty(), "{problem}");
        }
    }
    // The missing member is named in the detail, since the pointer cannot name it.
    let problem = assert_problem(
        app.post_json("/v1/api-keys", key, &json!({ "scopes": ["read"] }))
            .await,
        422,
    )
    .await;
    assert!(field_errors(&problem)[0].1.contains("name"), "{problem}");
    // Unknown members are refused, not ignored.
    let problem = assert_problem(
        app.post_json(
            "/v1/api-keys",
            key,
            &json!({ "name": "ci", "scopes": ["read"], "admin": true }),
        )
        .await,
        422,
    )
    .await;
    assert!(field_errors(&problem)[0].1.contains("admin"), "{problem}");
    // Nothing was created by any of them.
    let listed: Value = app.get("/v1/api-keys", key).await.json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_refused() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    for body in [json!(null), json!("ci"), json!(7), json!(true)] {
        let problem = assert_problem(
            app.post_json("/v1/api-keys", &tenant.admin_key, &body)
                .await,
            422,
        )
        .await;
        assert_eq!(places(&problem), [""], "{body}: {problem}");
    }
    // serde's derived structs would also accept an array of the fields in order;
    // request bodies are documented as objects, so arrays are refused like any other
    // non-object body.
    for body in [json!([1, 2]), json!(["ci", ["read"], null])] {
        let problem = assert_problem(
            app.post_json("/v1/api-keys", &tenant.admin_key, &body)
                .await,
            422,
        )
        .await;
        assert_eq!(places(&problem), [""], "{body}: {problem}");
    }
    let listed: Value = app
        .get("/v1/api-keys", &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "a non-object body created a key: {listed}"
    );
}

#[tokio::test]
async fn bad_query_parameters_are_422_naming_the_parameter() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let cases = [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("cursor=zz", "cursor"),
        ("cursor=78", "cursor"), // hex of "x": decodes, but is not this endpoint's cursor
        ("cursor=7c7c7c", "cursor"), // "|||"
        ("limit=10&cursor=abc", "cursor"),
    ];
    // Well-formed cursors carrying times Postgres cannot store (forged) are the
    // client's mistake too, not a 500.
    let forged: Vec<String> = [
        "-3000000000000000000|AAAAAAAAAAAA",
        "9223372036854775807|AAAAAAAAAAAA",
    ]
    .iter()
    .map(|text| text.bytes().map(|b| format!("{b:02x}")).collect())
    .collect();
    let forged: Vec<(String, &str)> = forged
        .into_iter()
        .map(|c| (format!("cursor={c}"), "cursor"))
        .collect();
    let cases: Vec<(&str, &str)> = cases
        .into_iter()
        .chain(forged.iter().map(|(q, p)| (q.as_str(), *p)))
        .collect();
    for (query, parameter) in cases {
        let problem = assert_problem(
            app.get(&format!("/v1/api-keys?{query}"), &tenant.admin_key)
                .await,
            422,
        )
        .await;
        assert_eq!(places(&problem), [parameter], "{query}: {problem}");
    }
    // Unknown parameters are ignored and good ones work.
    let response = app
        .get("/v1/api-keys?limit=1&colour=blue", &tenant.admin_key)
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_missing_or_bad_key_is_401_with_a_challenge() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        (Method::GET, "/v1/org"),
        (Method::GET, "/v1/api-keys"),
        (Method::POST, "/v1/api-keys"),
        (Method::DELETE, "/v1/api-keys/key_000000000000"),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            challenge
                .as_deref()
                .is_some_and(|c| c.starts_with("Bearer")),
            "{method} {path}: {challenge:?}"
        );
        let problem = assert_problem(response, 401).await;
        assert_eq!(problem["type"], "/problems/unauthenticated", "{problem}");
    }
    let problem = assert_problem(app.get("/v1/org", "sp_live_not-a-key").await, 401).await;
    assert_eq!(problem["type"], "/problems/unauthenticated", "{problem}");
}

#[tokio::test]
async fn a_read_key_is_403_on_admin_routes() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let read = app.issue_key(tenant.id, &["read"]).await;
    assert_eq!(app.get("/v1/org", &read).await.status(), 200);
    let responses = [
        app.get("/v1/api-keys", &read).await,
        app.get("/v1/api-keys/key_000000000000", &read).await,
        app.post_json(
            "/v1/api-keys",
            &read,
            &json!({ "name": "escalate", "scopes": ["admin"] }),
        )
        .await,
        app.delete("/v1/api-keys/key_000000000000", &read).await,
    ];
    for response in responses {
        let problem = assert_problem(response, 403).await;
        assert_eq!(problem["type"], "/problems/forbidden", "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("admin"),
            "{problem}"
        );
    }
    let listed: Value = app
        .get("/v1/api-keys", &tenant.admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        2,
        "the read key created a key: {listed}"
    );
}

#[tokio::test]
async fn a_well_formed_request_id_is_echoed_and_an_ill_formed_one_replaced() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let get = |path: &str, id: HeaderValue| {
        app.client
            .get(format!("{}{path}", app.address))
            .bearer_auth(&tenant.admin_key)
            .header("x-request-id", id)
            .send()
    };

    for id in [
        "abc-123_X.y",
        "0123456789abcdef0123456789abcdef",
        &"a".repeat(64),
    ] {
        // On an error...
        let problem = assert_problem(
            get("/nope", HeaderValue::from_str(id).unwrap())
                .await
                .unwrap(),
            404,
        )
        .await;
        assert_eq!(problem["request_id"], id);
        // ...and on a success.
        let response = get("/v1/org", HeaderValue::from_str(id).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-request-id"], id);
    }

    let long = "a".repeat(200);
    let ill_formed: Vec<HeaderValue> = vec![
        HeaderValue::from_str(&long).unwrap(),
        HeaderValue::from_static("has spaces in it"),
        HeaderValue::from_static("semi;colon"),
        HeaderValue::from_static("a/b"),
        HeaderValue::from_static(""),
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
    ];
    let mut seen = std::collections::HashSet::new();
    for id in ill_formed {
        let sent = String::from_utf8_lossy(id.as_bytes()).into_owned();
        let problem = assert_problem(get("/nope", id).await.unwrap(), 404).await;
        let assigned = problem["request_id"].as_str().unwrap().to_owned();
        assert_ne!(assigned, sent);
        assert!(
            (1..=64).contains(&assigned.len())
                && assigned.bytes().all(|b| b.is_ascii_alphanumeric()),
            "replacement id {assigned:?}"
        );
        assert!(seen.insert(assigned), "replacement ids must be unique");
    }
    // Without a header every response still gets a fresh id.
    let first = app
        .client
        .get(format!("{}/health/live", app.address))
        .send()
        .await
        .unwrap();
    let second = app
        .client
        .get(format!("{}/health/live", app.address))
        .send()
        .await
        .unwrap();
    let (first, second) = (
        &first.headers()["x-request-id"],
        &second.headers()["x-request-id"],
    );
    assert!(!first.is_empty());
    assert_ne!(first, second);
}
