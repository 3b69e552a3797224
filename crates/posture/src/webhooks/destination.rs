//! Where a webhook may be delivered: the endpoint's host is resolved and every
//! address it resolves to must be public (`is_forbidden_address`), unless the
//! host is on the configured allowlist (tests, on-premise receivers). Checked
//! when an endpoint is registered or changed, and again before every delivery,
//! since a DNS answer can change in between.

use posture_domain::webhook::{is_forbidden_address, WebhookUrl};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How destinations are vetted.
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    /// Plain `http://` URLs are accepted.
    pub allow_http: bool,
    /// Hosts exempt from the address check (exact names, lowercase).
    pub allowed_hosts: Vec<String>,
    /// Host → addresses, used instead of DNS (like curl's `--resolve`).
    pub resolve: HashMap<String, Vec<IpAddr>>,
    /// Longest wait for DNS.
    pub resolve_timeout: Duration,
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("the host resolves to an address that is not public ({0})")]
    Forbidden(IpAddr),
}

impl DestinationPolicy {
    /// Reads `host=address` pairs separated by commas; a host named more
    /// than once resolves to all of its addresses.
    pub fn parse_resolve(text: &str) -> Result<HashMap<String, Vec<IpAddr>>, String> {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (host, address) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not host=address"))?;
            let ip: IpAddr = address
                .trim()
                .parse()
                .map_err(|_| format!("{address:?} is not an IP address"))?;
            map.entry(host.trim().to_ascii_lowercase())
                .or_default()
                .push(ip);
        }
        Ok(map)
    }

    /// The addresses `url` may be delivered to, all of them public (or the
    /// host allowlisted); an error if any is not.
    pub async fn vet(&self, url: &WebhookUrl) -> Result<Vec<SocketAddr>, DestinationError> {
        let port = url.port();
        let ips = self.vet_host(url.host()).await?;
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    /// The addresses of `host` a delivery may connect to (see [`Self::vet`]).
    pub async fn vet_host(&self, host: &str) -> Result<Vec<IpAddr>, DestinationError> {
        let host = host.to_ascii_lowercase();
        let ips: Vec<IpAddr> = match self.resolve.get(&host) {
            Some(ips) => ips.clone(),
            None => {
                // The port does not matter for the lookup.
                let lookup = tokio::net::lookup_host((host.as_str(), 443));
                match tokio::time::timeout(self.resolve_timeout, lookup).await {
                    Ok(Ok(found)) => found.map(|address| address.ip()).collect(),
                    _ => return Err(DestinationError::Unresolvable),
                }
            }
        };
        if ips.is_empty() {
            return Err(DestinationError::Unresolvable);
        }
        if self.allowed_hosts.contains(&host) {
            return Ok(ips);
        }
        // One internal address is enough to refuse: a client picking among
        // the answers could reach it.
        if let Some(forbidden) = ips.iter().copied().find(|ip| is_forbidden_address(*ip)) {
            return Err(DestinationError::Forbidden(forbidden));
        }
        Ok(ips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(resolve: &str, allowed: &[&str]) -> DestinationPolicy {
        DestinationPolicy {
            allow_http: false,
            allowed_hosts: allowed.iter().map(|h| h.to_string()).collect(),
            resolve: DestinationPolicy::parse_resolve(resolve).unwrap(),
            resolve_timeout: Duration::from_secs(2),
        }
    }

    fn url(text: &str) -> WebhookUrl {
        WebhookUrl::parse(text, false).unwrap()
    }

    #[tokio::test]
    async fn internal_answers_are_refused_and_public_ones_kept() {
        let policy = policy(
            "mixed.test=8.8.8.8, mixed.test=10.0.0.1, public.test=1.1.1.1, metadata.test=169.254.169.254",
            &[],
        );
        assert_eq!(
            policy.vet(&url("https://mixed.test/h")).await,
            Err(DestinationError::Forbidden("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            policy.vet(&url("https://public.test:8443/h")).await,
            Ok(vec!["1.1.1.1:8443".parse().unwrap()])
        );
        assert!(policy.vet(&url("https://metadata.test/h")).await.is_err());
        // Real DNS: localhost is loopback.
        assert!(matches!(
            policy.vet(&url("https://localhost/h")).await,
            Err(DestinationError::Forbidden(_))
        ));
    }

    #[tokio::test]
    async fn the_allowlist_exempts_a_host() {
        let policy = policy("receiver.test=127.0.0.1", &["receiver.test"]);
        assert!(policy.vet(&url("https://receiver.test/h")).await.is_ok());
        assert!(DestinationPolicy::parse_resolve("nonsense").is_err());
        assert!(DestinationPolicy::parse_resolve("a.test=not-ip").is_err());
    }
}
