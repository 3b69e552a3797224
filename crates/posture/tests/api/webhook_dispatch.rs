//! The dispatcher end to end: events written by scans, posture refreshes,
//! quotas and the platform itself reach a local receiver, signed (checked with
//! the receiver's own implementation of the scheme), once per successful
//! delivery; failures retry on a compressed schedule, honour `Retry-After`,
//! and end in a delivery log; 410 and days of failure disable an endpoint and
//! the organization is told; SSRF is refused at delivery time; no database
//! transaction stays open during an attempt.

use crate::caching::spawn_beside;
use crate::support::receiver::{Answer, Received, Receiver};
use crate::support::redis::RedisServer;
use crate::support::{TestApp, TestTenant};
use posture::config::Config;
use posture_domain::Tier;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Sends to `hooks.test` (127.0.0.1) over http, retries after 100, 200, 400 ms
/// without jitter, and polls every 20 ms.
fn dispatching(config: &mut Config) {
    config.webhook_allow_http = true;
    config.webhook_allowed_hosts = "hooks.test".into();
    config.webhook_resolve = "hooks.test=127.0.0.1".into();
    config.webhook_retry_schedule = "100ms,200ms,400ms".into();
    config.webhook_retry_jitter_percent = 0;
    config.webhook_poll_interval_ms = 20;
    config.webhook_timeout_ms = 5_000;
}

/// Registers `receiver` for `tenant` with `fields` (merged over a URL);
/// returns the webhook's id and tells the receiver its secret.
async fn register(
    app: &TestApp,
    tenant: &TestTenant,
    receiver: &Receiver,
    fields: Value,
) -> String {
    let mut body = json!({ "url": receiver.url("hooks.test") });
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let response = app
        .post_json("/v1/webhooks", &tenant.admin_key, &body)
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    receiver.set_secret(created["secret"].as_str().unwrap());
    created["id"].as_str().unwrap().to_owned()
}

/// An app configured by `adjust` (tests pass [`dispatching`] or a closure
/// that applies it), an enterprise tenant, and a receiver registered for
/// `scan.completed` (pings reach it whatever it subscribes to); returns them
/// with the webhook's id.
async fn one_endpoint(adjust: impl FnOnce(&mut Config)) -> (TestApp, TestTenant, Receiver, String) {
    let app = TestApp::spawn_with(adjust).await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let receiver = Receiver::start().await;
    let id = register(
        &app,
        &tenant,
        &receiver,
        json!({ "event_types": ["scan.completed"] }),
    )
    .await;
    (app, tenant, receiver, id)
}

/// A SARIF report with `results` (rule, line) of rules mapped to CWE-89 and CWE-79.
fn sarif(results: &[(&str, u32)]) -> Value {
    let results: Vec<Value> = results
        .iter()
        .map(|(rule, line)| {
            json!({"ruleId": rule, "level": "error", "message": {"text": format!("{rule} here")},
                   "locations": [{"physicalLocation": {"artifactLocation": {"uri": "web.py"}, "region": {"startLine": line}}}]})
        })
        .collect();
    let rules = json!([
        {"id": "sqli", "properties": {"tags": ["external/cwe/cwe-89"]}},
        {"id": "xss", "properties": {"tags": ["CWE-79"]}},
    ]);
    json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "codeql", "rules": rules}}, "results": results}]})
}

const SCAN_QUERY: &str = "asset_kind=repository&asset_name=github.com/acme/web&scope=full";

/// The deliveries of a webhook (first page, newest first).
async fn deliveries(app: &TestApp, key: &str, webhook: &str) -> Vec<Value> {
    let response = app
        .get(&format!("/v1/webhooks/{webhook}/deliveries?limit=100"), key)
        .await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    page["data"].as_array().unwrap().clone()
}

/// Polls the webhook's deliveries until `condition` holds (10 s at most).
async fn wait_for_deliveries(
    app: &TestApp,
    key: &str,
    webhook: &str,
    what: &str,
    condition: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let list = deliveries(app, key, webhook).await;
        if condition(&list) {
            return list;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn webhook(app: &TestApp, key: &str, id: &str) -> Value {
    let response = app.get(&format!("/v1/webhooks/{id}"), key).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `POST /v1/webhooks/{id}/test` (a ping).
async fn send_ping(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.post_json(&format!("/v1/webhooks/{id}/test"), key, &json!({}))
        .await
}

/// `POST /v1/webhooks/{id}/deliveries/{delivery}/retry`.
async fn retry_delivery(app: &TestApp, key: &str, id: &str, delivery: &str) -> reqwest::Response {
    app.post_json(
        &format!("/v1/webhooks/{id}/deliveries/{delivery}/retry"),
        key,
        &json!({}),
    )
    .await
}

/// Counts received messages by type, among those answered 2xx.
fn delivered_types(seen: &[Received]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for received in seen.iter().filter(|r| (200..300).contains(&r.answered)) {
        *counts.entry(received.event_type().to_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn every_event_type_reaches_the_receiver_signed_and_once() {
    let redis = RedisServer::start().await;
    // Limits are off here (the test makes more than a free tenant's ten
    // requests a minute); a second server with them on raises the quota events.
    let app = TestApp::spawn_with(|config| {
        dispatching(config);
        config.job_max_attempts = 1;
    })
    .await;
    let tenant = app.create_tenant(Tier::Free).await;
    let everything = Receiver::start().await;
    let all_types = [
        "scan.completed",
        "scan.failed",
        "finding.created",
        "finding.reopened",
        "posture.score_changed",
        "compliance.control_failed",
        "quota.warning",
        "quota.exceeded",
        "webhook.disabled",
    ];
    let everything_id = register(
        &app,
        &tenant,
        &everything,
        json!({ "event_types": all_types, "min_severity": "info", "score_threshold": 1 }),
    )
    .await;

    // 1. Two findings on a new asset: scan.completed, 2 × finding.created,
    //    and the controls they fail (the tenant's first posture).
    let scan = app
        .ingest_sarif(
            &tenant.admin_key,
            SCAN_QUERY,
            &sarif(&[("sqli", 1), ("xss", 2)]),
        )
        .await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    app.wait_for_posture(tenant.id).await;
    everything
        .wait_until("the first scan's events", Duration::from_secs(10), |seen| {
            let types = delivered_types(seen);
            types.get("scan.completed") == Some(&1)
                && types.get("finding.created") == Some(&2)
                && types.contains_key("compliance.control_failed")
        })
        .await;

    // 2. A full scan without them resolves both (the score rises), 3. the
    //    next brings them back: finding.reopened, the score falls, the
    //    controls fail again.
    for results in [&[][..], &[("sqli", 1), ("xss", 2)][..]] {
        let scan = app
            .ingest_sarif(&tenant.admin_key, SCAN_QUERY, &sarif(results))
            .await;
        assert_eq!(scan["status"], "succeeded", "{scan}");
        app.wait_for_posture(tenant.id).await;
    }

    // 4. A second endpoint that is gone: disabled at its first delivery, and
    //    the first endpoint hears webhook.disabled. (The scan resolves both
    //    findings again.)
    let gone = Receiver::start().await;
    gone.script([Answer::Status(410, None)]);
    let gone_id = register(
        &app,
        &tenant,
        &gone,
        json!({ "event_types": ["scan.completed"] }),
    )
    .await;
    let scan = app
        .ingest_sarif(&tenant.admin_key, SCAN_QUERY, &sarif(&[]))
        .await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    app.wait_for_posture(tenant.id).await;

    // 5. A scan whose report is corrupted in storage fails (scan.failed):
    //    its only attempt cannot decompress it.
    let mut owner: sqlx::PgConnection = sqlx::Connection::connect(&app.database.owner_url())
        .await
        .unwrap();
    crate::jobs::corrupt_stored_reports(&mut owner).await;
    let failing = app
        .ingest_sarif(&tenant.admin_key, SCAN_QUERY, &sarif(&[("sqli", 9)]))
        .await;
    assert_eq!(failing["status"], "failed", "{failing}");

    // 6. Quotas (a free tenant: 1,000 requests a day, 10,000 a month).
    //    PostgreSQL holds 850 for today and 9,995 for the month (both past
    //    80 %: the count never sat on the mark itself); a server with limits
    //    on seeds from it. Its 1st request warns of both, its 5th uses the
    //    month's last, its 6th is refused.
    sqlx::query(
        "INSERT INTO api_usage (tenant_id, period, period_start, requests) VALUES
             ($1, 'day', (now() AT TIME ZONE 'utc')::date, 850),
             ($1, 'month', date_trunc('month', now() AT TIME ZONE 'utc')::date, 9995)",
    )
    .bind(tenant.id.as_uuid())
    .execute(&mut owner)
    .await
    .unwrap();
    let limited = spawn_beside(&app, |config| {
        dispatching(config);
        config.redis_url = posture::config::SecretUrl::new(redis.url());
        config.rate_limits_enabled = true;
        config.webhook_concurrency = 0;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            limited
                .get("/v1/org", &tenant.admin_key)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);

    // 7. A ping.
    let ping = send_ping(&app, &tenant.admin_key, &everything_id).await;
    assert_eq!(ping.status(), 202);

    let seen = everything
        .wait_until("every event type", Duration::from_secs(15), |seen| {
            let types = delivered_types(seen);
            all_types.iter().all(|t| types.contains_key(*t)) && types.contains_key("ping")
        })
        .await;
    let types = delivered_types(&seen);
    assert_eq!(types["scan.completed"], 4, "{types:?}");
    assert_eq!(types["scan.failed"], 1, "{types:?}");
    assert_eq!(types["finding.created"], 2, "{types:?}");
    assert_eq!(types["finding.reopened"], 2, "{types:?}");
    assert_eq!(types["webhook.disabled"], 1, "{types:?}");
    assert_eq!(types["quota.warning"], 2, "{types:?}");
    assert_eq!(types["quota.exceeded"], 1, "{types:?}");
    assert_eq!(types["ping"], 1, "{types:?}");
    // Every message verified with the receiver's own check, and no message
    // was delivered twice.
    assert!(seen.iter().all(|r| r.verified), "unverified: {seen:#?}");
    let ids: BTreeSet<&str> = seen.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), seen.len(), "a message arrived twice");
    assert!(seen.iter().all(|r| r.id.starts_with("msg_")));

    // The payloads: small, versioned, ids rather than reports.
    let of = |t: &'static str| seen.iter().filter(move |r| r.event_type() == t);
    for received in &seen {
        assert_eq!(received.body["version"], 1);
        assert_eq!(received.body["organization_id"], tenant.id.to_string());
        assert!(received.body["timestamp"].is_string());
        assert!(serde_json::to_vec(&received.body).unwrap().len() < 2_048);
    }
    let created: Vec<&Value> = of("finding.created").map(|r| &r.body["data"]).collect();
    assert!(created
        .iter()
        .all(|d| d["finding_id"].as_str().unwrap().starts_with("fnd_")));
    assert!(
        created.iter().all(|d| d["severity"] == "high"),
        "{created:?}"
    );
    let reopened: Vec<&Value> = of("finding.reopened").map(|r| &r.body["data"]).collect();
    assert!(
        reopened.iter().all(|d| d["previous_status"] == "resolved"),
        "{reopened:?}"
    );
    let completed: Vec<&Value> = of("scan.completed").map(|r| &r.body["data"]).collect();
    assert_eq!(completed[0]["counts"]["new"], 2);
    assert_eq!(completed[1]["counts"]["resolved"], 2);
    assert_eq!(completed[2]["counts"]["reopened"], 2);
    let failed = of("scan.failed").next().unwrap();
    assert_eq!(failed.body["data"]["error_kind"], "processing_failed");
    let changes: Vec<i64> = of("posture.score_changed")
        .map(|r| r.body["data"]["change"].as_i64().unwrap())
        .collect();
    assert!(
        changes.len() >= 2 && changes[0] > 0 && changes[1] < 0,
        "{changes:?}"
    );
    let controls: BTreeSet<String> = of("compliance.control_failed")
        .map(|r| {
            format!(
                "{}/{}",
                r.body["data"]["framework_id"].as_str().unwrap(),
                r.body["data"]["control_id"].as_str().unwrap()
            )
        })
        .collect();
    // Each control failed twice (first scan, then again after passing).
    assert_eq!(
        of("compliance.control_failed").count(),
        controls.len() * 2,
        "{controls:?}"
    );
    let disabled = of("webhook.disabled").next().unwrap();
    assert_eq!(disabled.body["data"]["webhook_id"], gone_id.as_str());
    assert_eq!(disabled.body["data"]["reason"], "gone");
    let warnings: BTreeSet<(String, u64, u64)> = of("quota.warning")
        .map(|r| {
            let data = &r.body["data"];
            (
                data["period"].as_str().unwrap().to_owned(),
                data["limit"].as_u64().unwrap(),
                data["used"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        warnings,
        BTreeSet::from([("day".into(), 1_000, 851), ("month".into(), 10_000, 9_996)])
    );
    let exceeded = &of("quota.exceeded").next().unwrap().body["data"];
    assert_eq!(
        (&exceeded["period"], &exceeded["limit"], &exceeded["used"]),
        (&json!("month"), &json!(10_000), &json!(10_000))
    );

    // The gone endpoint is disabled, says why, and got nothing more.
    let gone_view = webhook(&app, &tenant.admin_key, &gone_id).await;
    assert_eq!(gone_view["enabled"], false);
    assert_eq!(gone_view["disabled_reason"], "gone");
    assert!(gone_view["disabled_at"].is_string());
    assert_eq!(gone.seen().len(), 1);
    limited.stop().await;
}

/// The attempts of a delivery, from its detail.
async fn delivery_detail(app: &TestApp, key: &str, webhook: &str, delivery: &str) -> Value {
    let response = app
        .get(
            &format!("/v1/webhooks/{webhook}/deliveries/{delivery}"),
            key,
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_failing_delivery_retries_on_the_schedule_honours_retry_after_and_succeeds() {
    let (app, tenant, receiver, id) = one_endpoint(dispatching).await;
    // 500, then no answer in time, then 503 asking for 1 s, then 200.
    receiver.script([
        Answer::Status(500, None),
        Answer::Status(500, None),
        Answer::Status(503, Some(1)),
    ]);
    let ping = send_ping(&app, &tenant.admin_key, &id).await;
    assert_eq!(ping.status(), 202);
    let location = ping.headers()["location"].to_str().unwrap().to_owned();
    let queued: Value = ping.json().await.unwrap();
    assert_eq!(queued["status"], "pending");
    assert_eq!(queued["event_type"], "ping");

    let seen = receiver
        .wait_until("four attempts", Duration::from_secs(10), |seen| {
            seen.len() >= 4
        })
        .await;
    assert_eq!(
        seen.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 503, 200]
    );
    // The same message, signed afresh each time, on the schedule: 100 ms,
    // 200 ms, then the receiver's 1 s rather than the schedule's 400 ms.
    assert!(seen
        .iter()
        .all(|r| r.id == seen[0].id && r.body == seen[0].body && r.verified));
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(200), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_secs(1), "{gaps:?}");
    assert!(
        gaps[0] < Duration::from_secs(1) && gaps[1] < Duration::from_secs(1),
        "{gaps:?}"
    );

    // The delivery log.
    let delivery = queued["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/webhooks/{id}/deliveries/{delivery}"));
    let detail = loop {
        let detail = delivery_detail(&app, &tenant.admin_key, &id, delivery).await;
        if detail["status"] == "succeeded" {
            break detail;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "[delivery log] {}",
        serde_json::to_string_pretty(&detail).unwrap()
    );
    assert_eq!(detail["attempts"], 4);
    assert_eq!(detail["last_response_status"], 200);
    assert!(detail["next_attempt_at"].is_null());
    assert_eq!(detail["event_id"], seen[0].id.as_str());
    assert_eq!(detail["payload"], seen[0].body);
    let log = detail["attempts_log"].as_array().unwrap();
    assert_eq!(
        log.iter()
            .map(|a| (
                a["attempt"].as_i64().unwrap(),
                a["response_status"].as_i64().unwrap()
            ))
            .collect::<Vec<_>>(),
        [(1, 500), (2, 500), (3, 503), (4, 200)]
    );
    assert!(log.iter().all(|a| a["latency_ms"].as_i64().unwrap() >= 0));
    // The list shows it too, and filters by status.
    let listed = deliveries(&app, &tenant.admin_key, &id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], delivery);
    let failed = app
        .get(
            &format!("/v1/webhooks/{id}/deliveries?status=failed"),
            &tenant.admin_key,
        )
        .await;
    assert_eq!(failed.json::<Value>().await.unwrap()["data"], json!([]));
    // Bad filters and cursors are problems with the parameter named.
    for (query, parameter) in [
        ("status=lost", "status"),
        ("cursor=zz", "cursor"),
        ("cursor=6162", "cursor"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
    ] {
        let response = app
            .get(
                &format!("/v1/webhooks/{id}/deliveries?{query}"),
                &tenant.admin_key,
            )
            .await;
        let problem = crate::support::assert_problem(response, 422).await;
        assert!(
            problem.to_string().contains(parameter),
            "{query}: {problem}"
        );
    }
    // Unknown or malformed ids are 404.
    for path in [
        "/v1/webhooks/whk_0000000000000000000000/deliveries".to_owned(),
        format!("/v1/webhooks/{id}/deliveries/dlv_0000000000000000000000"),
        format!("/v1/webhooks/{id}/deliveries/not-an-id"),
    ] {
        crate::support::assert_problem(app.get(&path, &tenant.admin_key).await, 404).await;
    }
    // The endpoint is not failing any more.
    assert!(webhook(&app, &tenant.admin_key, &id).await["failing_since"].is_null());
}

#[tokio::test]
async fn an_exhausted_delivery_fails_and_a_manual_retry_sends_it_once_more() {
    let (app, tenant, receiver, id) = one_endpoint(|config| {
        dispatching(config);
        config.webhook_retry_schedule = "50ms".into();
    })
    .await;
    receiver.script([
        Answer::Status(500, None),
        Answer::Status(502, None),
        Answer::Status(500, None),
    ]);
    let ping: Value = send_ping(&app, &tenant.admin_key, &id)
        .await
        .json()
        .await
        .unwrap();
    let delivery = ping["id"].as_str().unwrap().to_owned();
    // Two attempts (one retry in the schedule), then failed.
    let listed = wait_for_deliveries(&app, &tenant.admin_key, &id, "the delivery fails", |list| {
        list.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    assert_eq!(listed[0]["attempts"], 2);
    assert_eq!(listed[0]["last_response_status"], 502);
    assert!(webhook(&app, &tenant.admin_key, &id).await["failing_since"].is_string());

    // One more attempt by hand: it fails (500) and stays failed, no further retries.
    let retry = retry_delivery(&app, &tenant.admin_key, &id, &delivery).await;
    assert_eq!(retry.status(), 202);
    wait_for_deliveries(
        &app,
        &tenant.admin_key,
        &id,
        "the retry is recorded",
        |list| list[0]["attempts"] == 3 && list[0]["status"] == "failed",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.seen().len(),
        3,
        "a manual retry allows one attempt"
    );

    // Again: now the receiver answers 200.
    let retry = retry_delivery(&app, &tenant.admin_key, &id, &delivery).await;
    assert_eq!(retry.status(), 202);
    wait_for_deliveries(&app, &tenant.admin_key, &id, "the retry succeeds", |list| {
        list[0]["status"] == "succeeded" && list[0]["attempts"] == 4
    })
    .await;
    assert_eq!(receiver.seen().len(), 4);
    assert!(webhook(&app, &tenant.admin_key, &id).await["failing_since"].is_null());
    // An unknown delivery is 404.
    let unknown = retry_delivery(&app, &tenant.admin_key, &id, "dlv_0000000000000000000000").await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn an_endpoint_failing_for_the_configured_time_is_disabled_and_the_organization_told() {
    let app = TestApp::spawn_with(|config| {
        dispatching(config);
        // "Five days", compressed to one second of failing.
        config.webhook_retry_schedule = "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms".into();
        config.webhook_disable_after_secs = 1;
    })
    .await;
    let tenant = app.create_tenant(Tier::Enterprise).await;
    let told = Receiver::start().await;
    register(
        &app,
        &tenant,
        &told,
        json!({ "event_types": ["webhook.disabled"] }),
    )
    .await;
    let failing = Receiver::start().await;
    failing.script(std::iter::repeat_n(Answer::Status(500, None), 100));
    let failing_id = register(
        &app,
        &tenant,
        &failing,
        json!({ "event_types": ["scan.completed"] }),
    )
    .await;
    let ping = send_ping(&app, &tenant.admin_key, &failing_id).await;
    assert_eq!(ping.status(), 202);

    let seen = told
        .wait_until("webhook.disabled", Duration::from_secs(10), |seen| {
            !seen.is_empty()
        })
        .await;
    assert_eq!(seen[0].event_type(), "webhook.disabled");
    assert!(seen[0].verified);
    let data = &seen[0].body["data"];
    assert_eq!(data["webhook_id"], failing_id.as_str());
    assert_eq!(data["reason"], "failing");
    assert!(data["failing_since"].is_string());
    let view = webhook(&app, &tenant.admin_key, &failing_id).await;
    assert_eq!(view["enabled"], false);
    assert_eq!(view["disabled_reason"], "failing");
    // Disabled after a second of failures, before the schedule's 16 attempts ran out.
    let attempts = failing.seen().len();
    assert!((2..16).contains(&attempts), "{attempts} attempts");
    let listed = deliveries(&app, &tenant.admin_key, &failing_id).await;
    assert_eq!(listed[0]["status"], "failed", "{listed:?}");
    // The audit log records it.
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'webhook.disabled' AND actor = 'platform'",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(app.owner.pool())
    .await
    .unwrap();
    assert_eq!(audited, 1);
    // Testing a disabled endpoint is refused; re-enabling clears the reason.
    let refused = send_ping(&app, &tenant.admin_key, &failing_id).await;
    assert_eq!(refused.status(), 409);
    let enabled = app
        .client
        .patch(format!("{}/v1/webhooks/{failing_id}", app.address))
        .bearer_auth(&tenant.admin_key)
        .json(&json!({ "enabled": true }))
        .send()
        .await
        .unwrap();
    let enabled: Value = enabled.json().await.unwrap();
    assert_eq!(enabled["enabled"], true);
    assert!(enabled["disabled_reason"].is_null() && enabled["disabled_at"].is_null());
    assert!(enabled["failing_since"].is_null());
}

#[tokio::test]
async fn internal_addresses_are_refused_at_delivery_time_when_the_dns_answer_changed() {
    // Registration: every host resolves to a public address. Delivery (a
    // second server on the same database): they resolve to internal ones.
    let hosts = ["a.test", "b.test", "c.test", "d.test", "e.test"];
    let internal = [
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
    ];
    let registrar = TestApp::spawn_with(|config| {
        dispatching(config);
        config.webhook_allowed_hosts = String::new();
        config.webhook_resolve = hosts
            .iter()
            .map(|host| format!("{host}=93.184.216.34"))
            .collect::<Vec<_>>()
            .join(",");
        config.webhook_concurrency = 0;
    })
    .await;
    let sender = spawn_beside(&registrar, |config| {
        dispatching(config);
        config.webhook_allowed_hosts = String::new();
        config.webhook_resolve = hosts
            .iter()
            .zip(internal)
            .map(|(host, address)| format!("{host}={address}"))
            .collect::<Vec<_>>()
            .join(",");
    })
    .await;
    let tenant = registrar.create_tenant(Tier::Enterprise).await;
    let receiver = Receiver::start().await;
    let mut ids = Vec::new();
    for host in hosts {
        let response = registrar
            .post_json(
                "/v1/webhooks",
                &tenant.admin_key,
                &json!({ "url": receiver.url(host), "event_types": ["scan.completed"] }),
            )
            .await;
        assert_eq!(response.status(), 201, "{host}");
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ping = send_ping(&registrar, &tenant.admin_key, &id).await;
        assert_eq!(ping.status(), 202);
        ids.push(id);
    }
    for (id, address) in ids.iter().zip(internal) {
        let listed = wait_for_deliveries(&sender, &tenant.admin_key, id, "an attempt", |list| {
            list.first()
                .is_some_and(|d| d["attempts"].as_i64() >= Some(1) && d["status"] != "sending")
        })
        .await;
        let error = listed[0]["last_error"].as_str().unwrap_or_default();
        assert!(
            listed[0]["last_response_status"].is_null(),
            "{address}: {listed:?}"
        );
        assert!(
            error.contains(&format!("not public ({address})")),
            "{address}: {error}"
        );
    }
    assert!(
        receiver.seen().is_empty(),
        "an internal address was reached"
    );
    sender.stop().await;
}

#[tokio::test]
async fn no_database_transaction_is_open_while_an_attempt_waits_for_the_receiver() {
    let (app, tenant, receiver, id) = one_endpoint(dispatching).await;
    receiver.script([Answer::Slow(Duration::from_millis(1_500))]);
    let ping = send_ping(&app, &tenant.admin_key, &id).await;
    assert_eq!(ping.status(), 202);
    // While the receiver holds the attempt, sample the app role's sessions.
    let sending = wait_for_deliveries(&app, &tenant.admin_key, &id, "the attempt starts", |list| {
        list[0]["status"] == "sending"
    })
    .await;
    assert!(sending[0]["next_attempt_at"].is_null(), "{sending:?}");
    // A retry of a delivery in flight is refused.
    let delivery = sending[0]["id"].as_str().unwrap();
    let in_flight = retry_delivery(&app, &tenant.admin_key, &id, delivery).await;
    let problem = crate::support::assert_problem(in_flight, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("in flight"),
        "{problem}"
    );
    // As the app role itself: other roles see no state of its sessions.
    let mut observer: sqlx::PgConnection = sqlx::Connection::connect(&app.database.app_url())
        .await
        .unwrap();
    let mut samples = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1_000) {
        let open: Vec<(String, String)> = sqlx::query_as(
            "SELECT state, left(query, 200) FROM pg_stat_activity
             WHERE datname = current_database() AND usename = 'posture_app'
               AND pid <> pg_backend_pid()
               AND state IN ('idle in transaction', 'idle in transaction (aborted)')",
        )
        .fetch_all(&mut observer)
        .await
        .unwrap();
        assert!(
            open.is_empty(),
            "a transaction is open during the attempt: {open:?}"
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(samples > 10);
    // The sampling can see the app's sessions at all.
    let visible: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND usename = 'posture_app' AND state IS NOT NULL",
    )
    .fetch_one(&mut observer)
    .await
    .unwrap();
    assert!(visible >= 2, "{visible}");
    wait_for_deliveries(
        &app,
        &tenant.admin_key,
        &id,
        "the slow attempt succeeds",
        |list| list[0]["status"] == "succeeded",
    )
    .await;
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn an_answer_with_a_nul_byte_is_logged_and_the_delivery_ends() {
    let (app, tenant, receiver, id) = one_endpoint(dispatching).await;
    receiver.script([Answer::Body(200, "ok\0done")]);
    let ping: Value = send_ping(&app, &tenant.admin_key, &id)
        .await
        .json()
        .await
        .unwrap();
    let listed = wait_for_deliveries(
        &app,
        &tenant.admin_key,
        &id,
        "the delivery succeeds",
        |list| list[0]["status"] == "succeeded",
    )
    .await;
    assert_eq!(listed[0]["attempts"], 1);
    let detail = delivery_detail(&app, &tenant.admin_key, &id, ping["id"].as_str().unwrap()).await;
    assert_eq!(
        detail["attempts_log"][0]["response_excerpt"],
        "ok\u{FFFD}done"
    );
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn a_slow_endpoint_takes_at_most_four_sending_slots() {
    // Six slots; one organization's endpoint hangs a second on each of ten messages.
    let app = TestApp::spawn_with(|config| {
        dispatching(config);
        config.webhook_concurrency = 6;
    })
    .await;
    let (slow_tenant, other_tenant) = (
        app.create_tenant(Tier::Enterprise).await,
        app.create_tenant(Tier::Enterprise).await,
    );
    let slow = Receiver::start().await;
    slow.script(std::iter::repeat_n(
        Answer::Slow(Duration::from_millis(1_000)),
        10,
    ));
    let slow_id = register(
        &app,
        &slow_tenant,
        &slow,
        json!({ "event_types": ["scan.completed"] }),
    )
    .await;
    let other = Receiver::start().await;
    let other_id = register(
        &app,
        &other_tenant,
        &other,
        json!({ "event_types": ["scan.completed"] }),
    )
    .await;
    for _ in 0..10 {
        assert_eq!(
            send_ping(&app, &slow_tenant.admin_key, &slow_id)
                .await
                .status(),
            202
        );
    }
    slow.wait_until(
        "the slow endpoint is busy",
        Duration::from_secs(5),
        |seen| !seen.is_empty() || slow.most_in_flight() >= 4,
    )
    .await;
    // The other organization's message does not wait for the slow one's.
    let sent = std::time::Instant::now();
    assert_eq!(
        send_ping(&app, &other_tenant.admin_key, &other_id)
            .await
            .status(),
        202
    );
    other
        .wait_until(
            "the other endpoint's ping",
            Duration::from_secs(5),
            |seen| !seen.is_empty(),
        )
        .await;
    let waited = sent.elapsed();
    assert!(waited < Duration::from_millis(700), "waited {waited:?}");
    slow.wait_until("all ten", Duration::from_secs(10), |seen| seen.len() == 10)
        .await;
    assert_eq!(slow.most_in_flight(), 4);
}
