//! Hostile and malformed input, sent byte for byte over raw connections so no
//! client normalises it: whatever arrives, the answer is never a 5xx, and every
//! error is an RFC 9457 problem.

use crate::errors::post_raw;
use crate::support::TestApp;
use posture_domain::Tier;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response reduced to what the checks need.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    async fn from_response(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let (content_type, request_id) = (header("content-type"), header("x-request-id"));
        let body = response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Reply {
            status,
            content_type,
            request_id,
            body,
        }
    }
}

/// Sends `head` (request line and headers, without the final blank line) and `body`
/// over a fresh connection, byte for byte: no client normalises the path.
async fn raw(app: &TestApp, head: &str, body: &[u8]) -> Reply {
    let address = app.address.trim_start_matches("http://");
    let mut request = head.as_bytes().to_vec();
    request.extend_from_slice(
        format!(
            "\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    request.extend_from_slice(body);
    send_raw(app, &request).await
}

/// Writes `request` as is over a fresh connection and reads the whole answer.
pub(crate) async fn send_raw(app: &TestApp, request: &[u8]) -> Reply {
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut bytes = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut bytes),
    )
    .await
    .expect("the server answers and closes")
    .expect("read");
    let head = String::from_utf8_lossy(&request[..request.len().min(80)]).into_owned();
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{head}: no response head: {bytes:?}"));
    let head_text = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut content_type = None;
    let mut request_id = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.trim().to_owned();
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value),
            "x-request-id" => request_id = Some(value),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let mut body = bytes[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        content_type,
        request_id,
        body,
    }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&bytes[..end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&bytes[end + 2..end + 2 + size]);
        bytes = &bytes[end + 2 + size + 2..];
    }
    out
}

/// No 5xx; an error is a problem with the request id of its header.
fn check(label: &str, reply: &Reply, failures: &mut Vec<String>) {
    if reply.status >= 500 {
        failures.push(format!(
            "{label}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ));
        return;
    }
    if reply.status < 400 {
        return;
    }
    if reply.content_type.as_deref() != Some("application/problem+json") {
        failures.push(format!(
            "{label}: {} with content type {:?}",
            reply.status, reply.content_type
        ));
        return;
    }
    let Ok(problem) = serde_json::from_slice::<Value>(&reply.body) else {
        failures.push(format!(
            "{label}: {} body is not JSON: {:?}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ));
        return;
    };
    let id = reply.request_id.as_deref();
    if problem["status"] != reply.status
        || !problem["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/"))
        || !problem["title"].is_string()
        || id.is_none()
        || problem["request_id"].as_str() != id
    {
        failures.push(format!(
            "{label}: {} bad problem {problem} (x-request-id {id:?})",
            reply.status
        ));
    }
}

#[tokio::test]
async fn odd_inputs_never_produce_a_5xx_and_errors_are_always_problems() {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 64 * 1024).await;
    let tenant = app.create_tenant(Tier::Free).await;
    let key = tenant.admin_key.clone();
    let mut failures = Vec::new();
    let mut tried = 0;

    // Bodies, as JSON, to POST /v1/api-keys.
    let seed = 0x5eed_f00d;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bodies: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            let len = [0, 1, 7, 64, 1_000, 20_000, 60_000][i % 7];
            (
                format!("random bytes #{i} (seed {seed:#x}, {len} bytes)"),
                (0..len).map(|_| rng.gen::<u8>()).collect(),
            )
        })
        .collect();
    let fixed: Vec<(&str, Vec<u8>)> = vec![
        ("10k [", "[".repeat(10_000).into_bytes()),
        (
            "10k [ closed",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ),
        ("10k nested objects", "{\"a\":".repeat(10_000).into_bytes()),
        (
            "nested scopes",
            format!(
                r#"{{"name":"x","scopes":{}"read"{}}}"#,
                "[".repeat(5_000),
                "]".repeat(5_000)
            )
            .into_bytes(),
        ),
        (
            "invalid UTF-8 in a string",
            b"{\"name\":\"\xff\xfe\xc3\",\"scopes\":[\"read\"]}".to_vec(),
        ),
        (
            "invalid UTF-8 bare",
            b"\xc3\x28\xa0\xa1\xe2\x28\xa1".to_vec(),
        ),
        ("UTF-16 BOM", b"\xfe\xff\x00{\x00}".to_vec()),
        (
            "UTF-8 BOM",
            b"\xef\xbb\xbf{\"name\":\"x\",\"scopes\":[\"read\"]}".to_vec(),
        ),
        (
            "NUL bytes",
            b"{\"name\":\"a\x00b\",\"scopes\":[\"read\"]}".to_vec(),
        ),
        (
            "escaped NUL in name",
            br#"{"name":"a\u0000b","scopes":["read"]}"#.to_vec(),
        ),
        (
            "lone surrogate",
            br#"{"name":"\ud800","scopes":["read"]}"#.to_vec(),
        ),
        (
            "huge number name",
            br#"{"name":1e999999,"scopes":["read"]}"#.to_vec(),
        ),
        (
            "huge integer scope",
            br#"{"name":"x","scopes":[18446744073709551616]}"#.to_vec(),
        ),
        (
            "huge expires_at number",
            br#"{"name":"x","scopes":["read"],"expires_at":1e400}"#.to_vec(),
        ),
        (
            "year 275760",
            br#"{"name":"x","scopes":["read"],"expires_at":"+275760-09-13T00:00:00Z"}"#.to_vec(),
        ),
        (
            "year 9999",
            br#"{"name":"x","scopes":["read"],"expires_at":"9999-12-31T23:59:59Z"}"#.to_vec(),
        ),
        (
            "year 10000",
            br#"{"name":"x","scopes":["read"],"expires_at":"10000-01-01T00:00:00Z"}"#.to_vec(),
        ),
        (
            "year -1",
            br#"{"name":"x","scopes":["read"],"expires_at":"-0001-01-01T00:00:00Z"}"#.to_vec(),
        ),
        (
            "long name",
            format!(r#"{{"name":"{}","scopes":["read"]}}"#, "n".repeat(50_000)).into_bytes(),
        ),
        (
            "control chars in name",
            br#"{"name":"a\u0007\u001bb","scopes":["read"]}"#.to_vec(),
        ),
        (
            "many scopes",
            format!(
                r#"{{"name":"x","scopes":[{}"read"]}}"#,
                "\"read\",".repeat(5_000)
            )
            .into_bytes(),
        ),
        (
            "duplicate members",
            br#"{"name":"x","name":"y","scopes":["read"]}"#.to_vec(),
        ),
        ("null", b"null".to_vec()),
        ("string", b"\"str\"".to_vec()),
        ("empty object", b"{}".to_vec()),
        ("number", b"0".to_vec()),
        (
            "null members",
            br#"{"name":null,"scopes":null,"expires_at":null}"#.to_vec(),
        ),
    ];
    bodies.extend(
        fixed
            .into_iter()
            .map(|(label, body)| (label.to_owned(), body)),
    );
    for (label, body) in bodies {
        for content_type in ["application/json", "text/plain"] {
            let reply =
                Reply::from_response(post_raw(&app, &key, Some(content_type), body.clone()).await)
                    .await;
            check(
                &format!("POST body {label} as {content_type}"),
                &reply,
                &mut failures,
            );
            tried += 1;
        }
    }

    // Paths and query strings, byte for byte (a client would normalise `..`).
    let long_segment = "a".repeat(10_000);
    let paths = [
        "/v1/api-keys/%00".to_owned(),
        "/v1/api-keys/../org".to_owned(),
        "/v1/api-keys/..%2forg".to_owned(),
        "/v1/api-keys/%2e%2e/org".to_owned(),
        "/v1/api-keys/%ff%fe".to_owned(),
        "/v1/api-keys/key_%00%00%00%00%00%00%00%00%00%00%00%00".to_owned(),
        "/v1/api-keys/key_%F0%9F%92%A9%F0%9F%92%A9%F0%9F%92%A9".to_owned(),
        "/v1/api-keys/%".to_owned(),
        "/v1/api-keys/%zz".to_owned(),
        "/v1/api-keys/key_AAAAAAAAAAAA/extra".to_owned(),
        format!("/v1/api-keys/{long_segment}"),
        format!("/v1/api-keys/key_{long_segment}"),
        format!("/{long_segment}"),
        "//v1//org".to_owned(),
        "/v1/org/".to_owned(),
        "/V1/ORG".to_owned(),
        "/v1/org;jsessionid=1".to_owned(),
        "/v1/api-keys?limit=%ff".to_owned(),
        "/v1/api-keys?limit=1&limit=2".to_owned(),
        "/v1/api-keys?limit=".to_owned(),
        "/v1/api-keys?cursor=".to_owned(),
        "/v1/api-keys?cursor=%00%00".to_owned(),
        format!("/v1/api-keys?cursor={}", "ab".repeat(300)),
        format!("/v1/api-keys?cursor={}", "7c".repeat(200)),
        "/v1/api-keys?%%%=&&&==".to_owned(),
        "/v1/api-keys?limit[]=1".to_owned(),
        format!("/v1/api-keys?{long_segment}={long_segment}"),
        "*".to_owned(),
        "http://evil.example/v1/org".to_owned(),
        "/v1/compliance/%00".to_owned(),
        "/v1/compliance/%ff%fe/controls/x".to_owned(),
        "/v1/compliance/soc2/controls/%00".to_owned(),
        "/v1/compliance/soc2/controls/..%2f..%2forg".to_owned(),
        format!("/v1/compliance/soc2/controls/{long_segment}"),
        format!("/v1/compliance/cfw_{long_segment}"),
        "/v1/compliance/soc2?status=%00".to_owned(),
        "/v1/compliance/soc2/controls/CC7.1?cursor=%00%00&limit=-1".to_owned(),
        "/v1/compliance/soc2/controls/CC7.1?limit=99999999999999999999".to_owned(),
        "/v1/posture/history?days=-1".to_owned(),
        "/v1/posture/history?days=99999999999999999999".to_owned(),
        "/v1/posture/history?days=1e3".to_owned(),
        "/v1/frameworks/%00".to_owned(),
        format!("/v1/frameworks/cfw_{long_segment}"),
    ];
    for path in &paths {
        for method in ["GET", "DELETE", "POST"] {
            let head = format!("{method} {path} HTTP/1.1\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json");
            let reply = raw(&app, &head, b"{}").await;
            check(&format!("{method} {:.80}", path), &reply, &mut failures);
            tried += 1;
        }
    }

    // Authorization headers.
    let long_token = format!("Bearer {}", "A".repeat(10 * 1024));
    let lower = format!("bearer {key}");
    let padded = format!("Bearer   {key}  ");
    let no_space = format!("Bearer{key}");
    let truncated = format!("Bearer {}", &key[..key.len() - 1]);
    let prefixed_only = format!("Bearer sp_live_{}", "0".repeat(72));
    let authorizations: Vec<(String, HeaderMap)> = [
        "Bearer",
        "Bearer ",
        "Basic xxx",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "",
        " ",
        "Bearer sp_live_",
        "Bearer null",
        long_token.as_str(),
        lower.as_str(),
        padded.as_str(),
        no_space.as_str(),
        truncated.as_str(),
        prefixed_only.as_str(),
    ]
    .into_iter()
    .map(|value| {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(value).unwrap());
        (format!("Authorization {:.40?}", value), headers)
    })
    .chain([
        (
            "Authorization with invalid UTF-8".to_owned(),
            header_map(&[("authorization", b"Bearer \xff\xfe")]),
        ),
        (
            "two Authorization headers".to_owned(),
            header_map(&[
                ("authorization", b"Basic x"),
                ("authorization", key.as_bytes()),
            ]),
        ),
        (
            "X-API-Key garbage".to_owned(),
            header_map(&[("x-api-key", b"garbage")]),
        ),
        (
            "X-API-Key empty".to_owned(),
            header_map(&[("x-api-key", b"")]),
        ),
        (
            "X-API-Key invalid UTF-8".to_owned(),
            header_map(&[("x-api-key", b"\xff")]),
        ),
        (
            "long X-API-Key".to_owned(),
            header_map(&[("x-api-key", "z".repeat(10_240).as_bytes())]),
        ),
    ])
    .collect();
    for (label, headers) in authorizations {
        for path in ["/v1/org", "/v1/api-keys", "/nope"] {
            let response = app
                .client
                .get(format!("{}{path}", app.address))
                .headers(headers.clone())
                .send()
                .await
                .expect("request");
            check(
                &format!("GET {path} with {label}"),
                &Reply::from_response(response).await,
                &mut failures,
            );
            tried += 1;
        }
    }

    // Methods and content types.
    for method in ["OPTIONS", "TRACE", "PATCH", "PUT", "CONNECTX", "FOO"] {
        for path in [
            "/v1/org",
            "/v1/api-keys",
            "/v1/api-keys/key_000000000000",
            "/health/live",
            "/",
        ] {
            let response = app
                .client
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{}{path}", app.address),
                )
                .bearer_auth(&key)
                .send()
                .await
                .expect("request");
            check(
                &format!("{method} {path}"),
                &Reply::from_response(response).await,
                &mut failures,
            );
            tried += 1;
        }
    }
    for content_type in [
        "application/json; charset=utf-16",
        "application/",
        "application/+json",
        "APPLICATION/JSON",
        ";",
        "\u{1}",
    ] {
        let Ok(value) = HeaderValue::from_str(content_type) else {
            continue;
        };
        let response = app
            .client
            .post(format!("{}/v1/api-keys", app.address))
            .bearer_auth(&key)
            .header("content-type", value)
            .body(r#"{"name":"ct","scopes":["read"]}"#)
            .send()
            .await
            .expect("request");
        check(
            &format!("content type {content_type:?}"),
            &Reply::from_response(response).await,
            &mut failures,
        );
        tried += 1;
    }

    assert!(tried > 150, "only {tried} inputs tried");
    assert!(
        failures.is_empty(),
        "{} of {tried} odd inputs misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // And the server is still healthy afterwards.
    assert_eq!(app.get("/v1/org", &key).await.status(), 200);
}

fn header_map(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    headers
}
