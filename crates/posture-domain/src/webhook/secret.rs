//! The signing secret: `whsec_` followed by the standard base64 of 24 to 64
//! random bytes (Standard Webhooks' format, so receivers' libraries accept it).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::{CryptoRng, Rng};
use std::fmt;

const PREFIX: &str = "whsec_";
/// Bytes of a generated secret.
const GENERATED_BYTES: usize = 32;

/// A webhook signing secret. Its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

/// Why a text is not a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretParseError {
    #[error("a webhook secret starts with whsec_")]
    WrongPrefix,
    #[error("a webhook secret is whsec_ followed by base64")]
    NotBase64,
    #[error("a webhook secret holds 24 to 64 bytes")]
    WrongLength,
}

impl WebhookSecret {
    /// A new random secret.
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = vec![0u8; GENERATED_BYTES];
        rng.fill_bytes(&mut bytes);
        WebhookSecret(bytes)
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, SecretParseError> {
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or(SecretParseError::WrongPrefix)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SecretParseError::NotBase64)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretParseError::WrongLength);
        }
        Ok(WebhookSecret(bytes))
    }

    /// The key bytes the HMAC uses.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_<base64>`: shown to the tenant once, stored for signing.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_round_trip_and_differ() {
        let a = WebhookSecret::generate(&mut rand::rngs::OsRng);
        let b = WebhookSecret::generate(&mut rand::rngs::OsRng);
        assert_ne!(a, b);
        assert!(a.expose().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&a.expose()), Ok(a.clone()));
        assert_eq!(a.as_bytes().len(), 32);
        assert_eq!(format!("{a:?}"), "WebhookSecret(..)");
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(
            WebhookSecret::parse("sk_abc"),
            Err(SecretParseError::WrongPrefix)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_***"),
            Err(SecretParseError::NotBase64)
        );
        // 16 bytes: too short.
        assert_eq!(
            WebhookSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAA=="),
            Err(SecretParseError::WrongLength)
        );
    }
}
