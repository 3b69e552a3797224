//! The public compliance catalog (`/v1/catalog/…`): no key needed, the same
//! for everyone, CDN-cacheable with a strong ETag, and consistent with itself.

use crate::caching::header;
use crate::support::TestApp;
use serde_json::Value;
use std::collections::BTreeMap;

/// `GET path` without credentials, with an optional `If-None-Match`.
async fn get_public(app: &TestApp, path: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{}{path}", app.address));
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn the_catalog_is_public_cacheable_and_answers_304() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/catalog/frameworks",
        "/v1/catalog/frameworks/soc2",
        "/v1/catalog/weakness-classes",
    ] {
        let response = get_public(&app, path, None).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), "application/json");
        let cache_control = header(&response, "cache-control").to_owned();
        assert!(
            cache_control.starts_with("public, max-age="),
            "{path}: {cache_control}"
        );
        let etag = header(&response, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
        let body = response.bytes().await.unwrap();

        // The same bytes and tag again, and for a caller with a key (the
        // catalog does not depend on who asks).
        let tenant = app.create_tenant(posture_domain::Tier::Free).await;
        let keyed = app.get(path, &tenant.admin_key).await;
        assert_eq!(header(&keyed, "etag"), etag);
        assert_eq!(keyed.bytes().await.unwrap(), body);

        let revalidated = get_public(&app, path, Some(&etag)).await;
        assert_eq!(revalidated.status(), 304, "{path}");
        assert_eq!(header(&revalidated, "etag"), etag);
        assert!(revalidated.bytes().await.unwrap().is_empty());
        let stale = get_public(&app, path, Some("\"not-the-tag\"")).await;
        assert_eq!(stale.status(), 200);
    }

    let unknown = get_public(&app, "/v1/catalog/frameworks/hipaa", None).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(header(&unknown, "content-type"), "application/problem+json");
}

#[tokio::test]
async fn the_catalog_lists_every_framework_and_its_mappings_consistently() {
    let app = TestApp::spawn().await;
    let list: Value = get_public(&app, "/v1/catalog/frameworks", None)
        .await
        .json()
        .await
        .unwrap();
    let counts: Vec<(String, u64)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                f["controls"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("soc2".to_owned(), 33),
            ("iso27001".to_owned(), 93),
            ("nist-800-53".to_owned(), 68),
            ("pci-dss".to_owned(), 49),
            ("cis-v8".to_owned(), 56),
        ]
    );

    // Every framework's controls, by id.
    let mut controls: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (id, count) in &counts {
        let framework: Value = get_public(&app, &format!("/v1/catalog/frameworks/{id}"), None)
            .await
            .json()
            .await
            .unwrap();
        let listed = framework["controls"].as_array().unwrap();
        assert_eq!(listed.len() as u64, *count, "{id}");
        controls.insert(
            id.clone(),
            listed
                .iter()
                .map(|c| (c["id"].as_str().unwrap().to_owned(), c.clone()))
                .collect(),
        );
    }
    let cc66 = &controls["soc2"]["CC6.6"];
    assert_eq!(
        cc66["title"],
        "Defenses against threats from outside the boundary"
    );
    assert!(cc66["mapping"]["classes"]
        .as_array()
        .unwrap()
        .contains(&Value::from("ssrf")));

    // Each weakness class names controls that exist, and each of those
    // controls lists the class and every CWE of the class.
    let classes: Value = get_public(&app, "/v1/catalog/weakness-classes", None)
        .await
        .json()
        .await
        .unwrap();
    let classes = classes["data"].as_array().unwrap();
    assert_eq!(classes.len(), 14);
    for class in classes {
        let class_id = class["id"].as_str().unwrap();
        let cwes = class["cwes"].as_array().unwrap();
        for (framework, ids) in class["controls"].as_object().unwrap() {
            for id in ids.as_array().unwrap() {
                let control = controls[framework]
                    .get(id.as_str().unwrap())
                    .unwrap_or_else(|| panic!("{class_id} names unknown {framework} {id}"));
                let mapping = &control["mapping"];
                assert!(
                    mapping["classes"]
                        .as_array()
                        .unwrap()
                        .contains(&Value::from(class_id)),
                    "{framework} {id} does not list {class_id}"
                );
                let control_cwes = mapping["cwes"].as_array().unwrap();
                assert!(
                    cwes.iter().all(|cwe| control_cwes.contains(cwe)),
                    "{framework} {id} lacks some CWEs of {class_id}"
                );
            }
        }
    }
}
