//! One delivery attempt over HTTP, hardened against SSRF and slow or hostile
//! receivers:
//!
//! - the client's DNS resolver is [`DestinationPolicy::vet_host`], so a
//!   connection can only ever go to an address vetted at that moment (a DNS
//!   answer that changed since registration is caught; there is no window
//!   between checking an address and connecting to another);
//! - redirects are not followed, proxies are not used;
//! - connect and total timeouts; at most [`MAX_RESPONSE_EXCERPT`] bytes of the
//!   response body are read.
//!
//! Signing follows Standard Webhooks (`posture_domain::webhook`).

use super::destination::DestinationPolicy;
use posture_domain::webhook::{signature_header, WebhookSecret, WebhookUrl};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes of a response body kept (for the delivery log).
pub const MAX_RESPONSE_EXCERPT: usize = 1_024;

/// Timeouts of one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub total: Duration,
}

/// A message to send: the same id and body on every attempt.
#[derive(Debug, Clone)]
pub struct Message {
    /// `msg_…`, the `webhook-id`.
    pub id: String,
    pub body: Vec<u8>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// Any other answer. `retry_after` is the receiver's `Retry-After` (on
    /// 429 and 503); `gone` is a 410, which disables the endpoint.
    Refused {
        status: u16,
        retry_after: Option<Duration>,
        gone: bool,
    },
    /// No answer: the destination was refused (SSRF), or DNS, connection,
    /// TLS or a timeout failed.
    Failed { error: String },
}

/// One attempt's outcome with its timing and the start of the response body.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    pub latency: Duration,
    pub response_excerpt: String,
}

/// The resolver that vets every address before a connection can use it.
struct VettingResolver(Arc<DestinationPolicy>);

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let ips = policy
                .vet_host(name.as_str())
                .await
                .map_err(|refused| Box::new(refused) as Box<dyn std::error::Error + Send + Sync>)?;
            // The connector sets the URL's port.
            let addresses: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addresses)
        })
    }
}

/// The process's webhook HTTP client.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    policy: Arc<DestinationPolicy>,
}

impl WebhookClient {
    /// A client vetting destinations with `policy`.
    pub fn new(policy: DestinationPolicy, timeouts: Timeouts) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(VettingResolver(policy.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.total)
            .user_agent(concat!("Posture-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookClient { http, policy })
    }

    /// Sends `message` to `url`, signed with every secret in `secrets` (the
    /// current one first; two during a rotation's overlap), timestamped `now`.
    pub async fn attempt(
        &self,
        url: &WebhookUrl,
        secrets: &[&WebhookSecret],
        message: &Message,
        now: i64,
    ) -> Attempt {
        let started = Instant::now();
        // The URL's rules (https, a host name) may have tightened since it
        // was registered; the resolver checks the addresses.
        let url = match WebhookUrl::parse(url.as_str(), self.policy.allow_http) {
            Ok(url) => url,
            Err(error) => {
                return Attempt {
                    outcome: Outcome::Failed {
                        error: format!("the URL {error}"),
                    },
                    latency: started.elapsed(),
                    response_excerpt: String::new(),
                }
            }
        };
        let signature = signature_header(secrets, &message.id, now, &message.body);
        let sent = self
            .http
            .post(url.as_str())
            .header("content-type", "application/json")
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(message.body.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Attempt {
                    outcome: Outcome::Failed {
                        error: describe(&error),
                    },
                    latency: started.elapsed(),
                    response_excerpt: String::new(),
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let mut excerpt = Vec::new();
        // Read no more than the excerpt: a receiver may answer with anything.
        while excerpt.len() < MAX_RESPONSE_EXCERPT {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                _ => break,
            }
        }
        excerpt.truncate(MAX_RESPONSE_EXCERPT);
        let outcome = if (200..300).contains(&status) {
            Outcome::Delivered { status }
        } else {
            Outcome::Refused {
                status,
                retry_after: matches!(status, 429 | 503).then_some(retry_after).flatten(),
                gone: status == 410,
            }
        };
        Attempt {
            outcome,
            latency: started.elapsed(),
            response_excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not honoured: receivers
/// of webhooks send seconds).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(86_400)))
}

/// A failed request, with the cause (a refused destination included).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
