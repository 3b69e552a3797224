//! One delivery attempt against a local receiver (`webhooks::client`): the
//! receiver checks signatures with its own implementation of the Standard
//! Webhooks scheme; internal destinations are refused at delivery time, even
//! when the receiver is listening there; redirects are not followed; 410,
//! 429 with `Retry-After` and oversized answers are reported as they are.

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use posture::webhooks::client::{Message, Outcome, Timeouts, WebhookClient, MAX_RESPONSE_EXCERPT};
use posture::webhooks::destination::DestinationPolicy;
use posture_domain::webhook::{WebhookSecret, WebhookUrl};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the receiver saw: path, and whether each signature it was sent verified
/// against each of the secrets it knows.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    verified_by: Vec<bool>,
    signatures: usize,
}

/// The receiver's own check: HMAC-SHA256 over `id.timestamp.body`, keyed with
/// the secret's base64-decoded bytes, any `v1,` signature matching.
fn independently_verified(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    let signed = format!("{}.{}.", header("webhook-id"), header("webhook-timestamp"));
    header("webhook-signature").split(' ').any(|candidate| {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(signed.as_bytes());
        mac.update(body);
        mac.verify_slice(&STANDARD.decode(encoded).unwrap()).is_ok()
    })
}

struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Received>>>,
}

/// A receiver on 127.0.0.1 (port 0) knowing `secrets`.
async fn receiver(secrets: Vec<String>) -> Receiver {
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let record = {
        let seen = seen.clone();
        move |path: &'static str| {
            let (seen, secrets) = (seen.clone(), secrets.clone());
            move |headers: HeaderMap, body: axum::body::Bytes| async move {
                seen.lock().unwrap().push(Received {
                    path: path.to_owned(),
                    verified_by: secrets
                        .iter()
                        .map(|secret| independently_verified(secret, &headers, &body))
                        .collect(),
                    signatures: headers["webhook-signature"]
                        .to_str()
                        .unwrap()
                        .split(' ')
                        .count(),
                });
                match path {
                    "/gone" => StatusCode::GONE.into_response(),
                    "/busy" => {
                        (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "120")]).into_response()
                    }
                    "/redirect" => (StatusCode::TEMPORARY_REDIRECT, [("location", "/elsewhere")])
                        .into_response(),
                    "/big" => "x".repeat(1_000_000).into_response(),
                    _ => StatusCode::NO_CONTENT.into_response(),
                }
            }
        }
    };
    let app = Router::new()
        .route("/ok", post(record("/ok")))
        .route("/gone", post(record("/gone")))
        .route("/busy", post(record("/busy")))
        .route("/redirect", post(record("/redirect")))
        .route("/elsewhere", post(record("/elsewhere")))
        .route("/big", post(record("/big")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { port, seen }
}

fn client() -> WebhookClient {
    let policy = DestinationPolicy {
        allow_http: true,
        allowed_hosts: vec!["receiver.test".into()],
        resolve: DestinationPolicy::parse_resolve(
            "receiver.test=127.0.0.1, loop.test=127.0.0.1, internal.test=10.0.0.1, mapped.test=::ffff:127.0.0.1",
        )
        .unwrap(),
        resolve_timeout: Duration::from_secs(2),
    };
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        total: Duration::from_secs(5),
    };
    WebhookClient::new(policy, timeouts).unwrap()
}

fn url(host: &str, port: u16, path: &str) -> WebhookUrl {
    WebhookUrl::parse(&format!("http://{host}:{port}{path}"), true).unwrap()
}

fn message() -> Message {
    Message {
        id: "msg_0000000000000000000001".into(),
        body: br#"{"type":"ping","data":{}}"#.to_vec(),
    }
}

#[tokio::test]
async fn a_signed_delivery_verifies_with_every_secret_of_a_rotation() {
    let current = WebhookSecret::generate(&mut rand::rngs::OsRng);
    let previous = WebhookSecret::generate(&mut rand::rngs::OsRng);
    let stranger = WebhookSecret::generate(&mut rand::rngs::OsRng);
    let receiver = receiver(vec![current.expose(), previous.expose(), stranger.expose()]).await;
    let now = chrono::Utc::now().timestamp();

    let attempt = client()
        .attempt(
            &url("receiver.test", receiver.port, "/ok"),
            &[&current, &previous],
            &message(),
            now,
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Delivered { status: 204 });
    assert!(attempt.latency < Duration::from_secs(5));
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].signatures, 2);
    assert_eq!(seen[0].verified_by, [true, true, false]);

    // After the overlap, one secret signs.
    let attempt = client()
        .attempt(
            &url("receiver.test", receiver.port, "/ok"),
            &[&current],
            &message(),
            now,
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Delivered { status: 204 });
    let last = receiver.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last.signatures, last.verified_by),
        (1, vec![true, false, false])
    );
}

#[tokio::test]
async fn internal_destinations_are_refused_at_delivery_time() {
    let secret = WebhookSecret::generate(&mut rand::rngs::OsRng);
    let receiver = receiver(vec![secret.expose()]).await;
    // The receiver listens on 127.0.0.1, but only receiver.test is allowlisted:
    // the same address under other names (or an IPv4-mapped form) is refused
    // before any connection.
    for host in ["loop.test", "mapped.test", "internal.test", "localhost"] {
        let attempt = client()
            .attempt(&url(host, receiver.port, "/ok"), &[&secret], &message(), 0)
            .await;
        match &attempt.outcome {
            Outcome::Failed { error } => assert!(
                error.contains("not public") || error.contains("does not resolve"),
                "{host}: {error}"
            ),
            other => panic!("{host}: delivered anyway: {other:?}"),
        }
    }
    assert!(
        receiver.seen.lock().unwrap().is_empty(),
        "a refused destination was contacted"
    );
}

#[tokio::test]
async fn redirects_gone_busy_and_big_answers_are_reported_as_they_are() {
    let secret = WebhookSecret::generate(&mut rand::rngs::OsRng);
    let receiver = receiver(vec![secret.expose()]).await;
    let client = client();
    let send = |path: &'static str| {
        let (client, secret) = (client.clone(), secret.clone());
        let target = url("receiver.test", receiver.port, path);
        async move { client.attempt(&target, &[&secret], &message(), 0).await }
    };
    let redirected = send("/redirect").await;
    assert_eq!(
        redirected.outcome,
        Outcome::Refused {
            status: 307,
            retry_after: None,
            gone: false
        }
    );
    let gone = send("/gone").await;
    assert_eq!(
        gone.outcome,
        Outcome::Refused {
            status: 410,
            retry_after: None,
            gone: true
        }
    );
    let busy = send("/busy").await;
    assert_eq!(
        busy.outcome,
        Outcome::Refused {
            status: 429,
            retry_after: Some(Duration::from_secs(120)),
            gone: false
        }
    );
    let big = send("/big").await;
    assert_eq!(big.outcome, Outcome::Delivered { status: 200 });
    assert_eq!(big.response_excerpt.len(), MAX_RESPONSE_EXCERPT);
    let paths: Vec<String> = receiver
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        ["/redirect", "/gone", "/busy", "/big"],
        "the redirect was not followed"
    );
}
