//! The Standard Webhooks signature (<https://www.standardwebhooks.com>): the
//! HMAC-SHA256, keyed with the secret's bytes, of `"{id}.{timestamp}.{body}"`,
//! sent base64-encoded as `webhook-signature: v1,<signature>`. During a secret
//! rotation's overlap the header carries one signature per secret, separated
//! by spaces; a receiver accepts the message if any of them verifies.

use super::WebhookSecret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `v1,<base64 signature>` of one message with one secret.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let signature = mac(secret, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(signature))
}

/// The `webhook-signature` header value: one signature per secret.
pub fn signature_header(
    secrets: &[&WebhookSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| sign(secret, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any `v1` signature in `header` is `secret`'s for this message, and
/// `timestamp` is within `tolerance_secs` of `now` (replay protection).
/// Constant-time comparison.
pub fn verify(
    secret: &WebhookSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    if (now - timestamp).abs() > tolerance_secs {
        return false;
    }
    header.split(' ').any(|candidate| {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let Ok(signature) = STANDARD.decode(encoded) else {
            return false;
        };
        mac(secret, id, timestamp, body)
            .verify_slice(&signature)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn the_standard_webhooks_test_vector() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            body,
            &signature,
            1_614_265_330 + 60,
            300
        ));
    }

    #[test]
    fn any_signature_of_a_rotation_verifies_and_tampering_does_not() {
        let old = WebhookSecret::generate(&mut rand::rngs::OsRng);
        let new = WebhookSecret::generate(&mut rand::rngs::OsRng);
        let header = signature_header(&[&new, &old], "msg_1", 1_000, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&old, "msg_1", 1_000, b"{}", &header, 1_000, 300));
        assert!(verify(&new, "msg_1", 1_000, b"{}", &header, 1_000, 300));
        assert!(!verify(&new, "msg_1", 1_000, b"{ }", &header, 1_000, 300));
        assert!(!verify(&new, "msg_2", 1_000, b"{}", &header, 1_000, 300));
        // Too old: a replay.
        assert!(!verify(&new, "msg_1", 1_000, b"{}", &header, 2_000, 300));
        let stranger = WebhookSecret::generate(&mut rand::rngs::OsRng);
        assert!(!verify(
            &stranger, "msg_1", 1_000, b"{}", &header, 1_000, 300
        ));
    }
}
