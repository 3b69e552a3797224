//! A webhook endpoint URL, parsed: `https` (or `http` where configuration
//! allows it), a host *name* (IP literals are refused, so the address check
//! cannot be sidestepped), no credentials, no fragment, at most 2,048
//! characters.

use std::fmt;
use url::{Host, Url};

/// The longest URL accepted.
pub const MAX_URL_LENGTH: usize = 2_048;

/// A valid endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is not an absolute URL")]
    Malformed,
    #[error("is longer than 2048 characters")]
    TooLong,
    #[error("must use https")]
    NotHttps,
    #[error("must name a host, not an IP address")]
    IpLiteral,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must not carry a fragment")]
    Fragment,
}

impl WebhookUrl {
    /// Parses `text`; `allow_http` admits plain `http` (configuration, for
    /// tests and on-premise receivers).
    pub fn parse(text: &str, allow_http: bool) -> Result<Self, UrlError> {
        if text.len() > MAX_URL_LENGTH {
            return Err(UrlError::TooLong);
        }
        let url = Url::parse(text.trim()).map_err(|_| UrlError::Malformed)?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            _ => return Err(UrlError::NotHttps),
        }
        match url.host() {
            Some(Host::Domain(_)) => {}
            Some(Host::Ipv4(_) | Host::Ipv6(_)) => return Err(UrlError::IpLiteral),
            None => return Err(UrlError::Malformed),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        if url.fragment().is_some() {
            return Err(UrlError::Fragment);
        }
        Ok(WebhookUrl(url))
    }

    /// The host name to resolve.
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    /// The port, explicit or the scheme's.
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_with_host_names_are_accepted() {
        let url = WebhookUrl::parse("https://hooks.example.com:8443/posture?x=1", false).unwrap();
        assert_eq!(url.host(), "hooks.example.com");
        assert_eq!(url.port(), 8443);
        assert_eq!(
            WebhookUrl::parse("https://example.com/h", false)
                .unwrap()
                .port(),
            443
        );
        assert!(WebhookUrl::parse("http://example.com/h", true).is_ok());
    }

    #[test]
    fn unsafe_or_malformed_urls_are_refused() {
        for (text, error) in [
            ("not a url", UrlError::Malformed),
            ("http://example.com/h", UrlError::NotHttps),
            ("ftp://example.com/h", UrlError::NotHttps),
            ("https://127.0.0.1/h", UrlError::IpLiteral),
            ("https://2130706433/h", UrlError::IpLiteral),
            ("https://0x7f.1/h", UrlError::IpLiteral),
            ("https://[::1]/h", UrlError::IpLiteral),
            ("https://[::ffff:10.0.0.1]/h", UrlError::IpLiteral),
            ("https://user:pw@example.com/h", UrlError::Credentials),
            ("https://example.com/h#frag", UrlError::Fragment),
        ] {
            assert_eq!(WebhookUrl::parse(text, false), Err(error), "{text}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LENGTH));
        assert_eq!(WebhookUrl::parse(&long, false), Err(UrlError::TooLong));
    }
}
