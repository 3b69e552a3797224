//! A local webhook receiver for dispatcher tests: it records every request
//! with its arrival time, checks signatures with its own implementation of the
//! Standard Webhooks scheme, and answers from a script (then 200).

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This status, optionally with `Retry-After` seconds.
    Status(u16, Option<u64>),
    /// 200 after this long.
    Slow(Duration),
    /// This status with this body.
    Body(u16, &'static str),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// The `webhook-id` header.
    pub id: String,
    pub timestamp: i64,
    pub body: Value,
    /// Whether a signature verified against the secret known then.
    pub verified: bool,
    /// The status it answered.
    pub answered: u16,
}

impl Received {
    /// The message's `type`.
    pub fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct Shared {
    secret: Option<String>,
    script: VecDeque<Answer>,
    seen: Vec<Received>,
    /// Requests being answered now, and the most there ever were.
    in_flight: usize,
    most_in_flight: usize,
}

/// A receiver on 127.0.0.1, port 0, path `/hook`.
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
}

/// HMAC-SHA256 over `id.timestamp.body` keyed with the secret's decoded
/// bytes; any `v1,` signature of the header may match.
pub fn verifies(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
    else {
        return false;
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signed = format!("{}.{}.", header("webhook-id"), header("webhook-timestamp"));
    header("webhook-signature").split(' ').any(|candidate| {
        let Some(signature) = candidate
            .strip_prefix("v1,")
            .and_then(|encoded| STANDARD.decode(encoded).ok())
        else {
            return false;
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(signed.as_bytes());
        mac.update(body);
        mac.verify_slice(&signature).is_ok()
    })
}

impl Receiver {
    /// Starts listening.
    pub async fn start() -> Receiver {
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let handler = {
            let shared = shared.clone();
            move |headers: HeaderMap, body: axum::body::Bytes| {
                let shared = shared.clone();
                async move {
                    let at = Instant::now();
                    let answer = {
                        let mut state = shared.lock().unwrap();
                        state.in_flight += 1;
                        state.most_in_flight = state.most_in_flight.max(state.in_flight);
                        state.script.pop_front()
                    };
                    if let Some(Answer::Slow(delay)) = answer {
                        tokio::time::sleep(delay).await;
                    }
                    let (status, retry_after, body_sent) = match answer {
                        Some(Answer::Status(status, retry_after)) => (status, retry_after, ""),
                        Some(Answer::Body(status, text)) => (status, None, text),
                        _ => (200, None, ""),
                    };
                    let mut state = shared.lock().unwrap();
                    state.in_flight -= 1;
                    let verified = state
                        .secret
                        .as_deref()
                        .is_some_and(|secret| verifies(secret, &headers, &body));
                    state.seen.push(Received {
                        at,
                        id: headers
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        timestamp: headers
                            .get("webhook-timestamp")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or_default(),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        verified,
                        answered: status,
                    });
                    let status = StatusCode::from_u16(status).unwrap();
                    match retry_after {
                        Some(seconds) => {
                            (status, [("retry-after", seconds.to_string())]).into_response()
                        }
                        None => (status, body_sent).into_response(),
                    }
                }
            }
        };
        let app = Router::new().route("/hook", post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { port, shared }
    }

    /// The URL to register, through a host name the test configuration
    /// resolves to 127.0.0.1 and allows.
    pub fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/hook", self.port)
    }

    /// The secret signatures are checked against from now on.
    pub fn set_secret(&self, secret: &str) {
        self.shared.lock().unwrap().secret = Some(secret.to_owned());
    }

    /// Answers for the next requests, in order (then 200).
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.lock().unwrap().script.extend(answers);
    }

    /// The most requests it was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.shared.lock().unwrap().most_in_flight
    }

    /// Everything received so far.
    pub fn seen(&self) -> Vec<Received> {
        self.shared.lock().unwrap().seen.clone()
    }

    /// Waits (polling every 20 ms, at most `limit`) until `condition` holds of
    /// what was received; panics with what was received otherwise.
    pub async fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        condition: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let seen = self.seen();
            if condition(&seen) {
                return seen;
            }
            assert!(
                started.elapsed() < limit,
                "timed out waiting until {what}; received: {:#?}",
                seen.iter()
                    .map(|r| (r.event_type().to_owned(), r.answered))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
