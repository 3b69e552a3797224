//! The API key token format.
//!
//! ```text
//! sp_live_ <tenant: 22> <key id: 12> <secret: 32> <checksum: 6>
//! ```
//!
//! Every field is fixed-width base62, so the token is 80 characters of
//! `[0-9A-Za-z_]` that a double click selects whole. The fields:
//!
//! - **tenant**: the tenant's UUID as 22 base62 characters. A request can be
//!   attributed (or routed to a shard) before any lookup, and the lookup itself
//!   runs inside that tenant's row-level-security transaction; the stored key's
//!   tenant must match it.
//! - **key id**: the public identifier of the key (shown in listings and logs).
//! - **secret**: 32 random base62 characters (about 190 bits). Only its SHA-256 is
//!   stored.
//! - **checksum**: CRC32 of everything before it, as 6 base62 characters. Like
//!   GitHub's tokens, it lets secret scanners recognise leaked keys and lets the
//!   server reject a mistyped or truncated key without touching the database.

use crate::base62;
use crate::tenant::TenantId;
use rand::{CryptoRng, Rng};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// The prefix every live key starts with.
pub const KEY_PREFIX: &str = "sp_live_";
const KEY_ID_WIDTH: usize = 12;
const SECRET_WIDTH: usize = 32;
/// The full length of a token.
pub const TOKEN_LENGTH: usize =
    KEY_PREFIX.len() + base62::U128_WIDTH + KEY_ID_WIDTH + SECRET_WIDTH + base62::U32_WIDTH;
/// The prefix of an API key id as the HTTP API shows it.
pub const KEY_ID_DISPLAY_PREFIX: &str = "key_";

/// Why a presented token was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error("the key does not start with sp_live_")]
    WrongPrefix,
    #[error("the key has the wrong length")]
    WrongLength,
    #[error("the key contains characters outside base62")]
    NotBase62,
    #[error("the key's checksum does not match")]
    BadChecksum,
}

/// The public identifier of an API key: 12 base62 characters, held inline
/// (every authenticated request carries one; copying it allocates nothing).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiKeyId([u8; KEY_ID_WIDTH]);

impl ApiKeyId {
    /// A new random key id.
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        ApiKeyId(std::array::from_fn(|_| {
            base62::ALPHABET[rng.gen_range(0..62)]
        }))
    }

    /// Parses `key_XXXXXXXXXXXX` (the API form) or the bare 12 characters.
    pub fn parse(text: &str) -> Option<Self> {
        let bare = text.strip_prefix(KEY_ID_DISPLAY_PREFIX).unwrap_or(text);
        if !base62::is_base62(bare) {
            return None;
        }
        bare.as_bytes().try_into().ok().map(ApiKeyId)
    }

    /// The bare 12 characters, as stored in the database.
    pub fn as_str(&self) -> &str {
        // Only base62 characters (ASCII) are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ApiKeyId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_ID_DISPLAY_PREFIX}{}", self.as_str())
    }
}

impl Serialize for ApiKeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The SHA-256 of a key's secret: what the database stores.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Wraps stored bytes; `None` unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(SecretHash)
    }

    /// The raw digest, for storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Compares two hashes in constant time, so timing reveals nothing about how
    /// much of a guess was right.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// A complete API key token. Its `Debug` never prints the secret.
#[derive(Clone)]
pub struct ApiKeyToken {
    tenant_id: TenantId,
    key_id: ApiKeyId,
    secret: String,
}

impl ApiKeyToken {
    /// A new key for `tenant_id` with a random id and secret.
    pub fn generate<R: Rng + CryptoRng>(tenant_id: TenantId, rng: &mut R) -> Self {
        ApiKeyToken {
            tenant_id,
            key_id: ApiKeyId::generate(rng),
            secret: random_base62(rng, SECRET_WIDTH),
        }
    }

    /// Parses a presented token, checking its shape and checksum (no lookup).
    pub fn parse(text: &str) -> Result<Self, KeyParseError> {
        let body = text
            .strip_prefix(KEY_PREFIX)
            .ok_or(KeyParseError::WrongPrefix)?;
        if text.len() != TOKEN_LENGTH {
            return Err(KeyParseError::WrongLength);
        }
        if !base62::is_base62(body) {
            return Err(KeyParseError::NotBase62);
        }
        // All characters are ASCII from here on, so byte offsets are char offsets.
        let (payload, checksum) = text.split_at(TOKEN_LENGTH - base62::U32_WIDTH);
        if base62::decode(checksum) != Some(u128::from(crc32fast::hash(payload.as_bytes()))) {
            return Err(KeyParseError::BadChecksum);
        }
        let (tenant_text, rest) = body.split_at(base62::U128_WIDTH);
        let (key_id_text, rest) = rest.split_at(KEY_ID_WIDTH);
        let secret = &rest[..SECRET_WIDTH];
        // 22 base62 characters can exceed u128::MAX; such a token is malformed.
        let tenant = base62::decode(tenant_text).ok_or(KeyParseError::NotBase62)?;
        Ok(ApiKeyToken {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(tenant)),
            key_id: ApiKeyId::parse(key_id_text).ok_or(KeyParseError::NotBase62)?,
            secret: secret.to_owned(),
        })
    }

    /// The tenant the token names (still to be confirmed against the stored key).
    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// The key's public id.
    pub fn key_id(&self) -> &ApiKeyId {
        &self.key_id
    }

    /// The SHA-256 of the secret, to compare with the stored hash.
    pub fn secret_hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.secret.as_bytes()).into())
    }

    /// The full token text. Show it to its owner once; never log it.
    pub fn expose(&self) -> String {
        let payload = format!(
            "{KEY_PREFIX}{}{}{}",
            base62::encode_fixed(self.tenant_id.as_uuid().as_u128(), base62::U128_WIDTH)
                .expect("a u128 fits 22 base62 characters"),
            self.key_id.as_str(),
            self.secret
        );
        let checksum = base62::encode_fixed(
            u128::from(crc32fast::hash(payload.as_bytes())),
            base62::U32_WIDTH,
        )
        .expect("a u32 fits 6 base62 characters");
        payload + &checksum
    }
}

impl fmt::Debug for ApiKeyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyToken")
            .field("tenant_id", &self.tenant_id)
            .field("key_id", &self.key_id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

fn random_base62<R: Rng + CryptoRng>(rng: &mut R, width: usize) -> String {
    (0..width)
        .map(|_| char::from(base62::ALPHABET[rng.gen_range(0..62)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn sample(seed: u64) -> ApiKeyToken {
        ApiKeyToken::generate(TenantId::new_random(), &mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn generated_tokens_parse_back_to_the_same_parts() {
        let token = sample(1);
        let text = token.expose();
        assert_eq!(text.len(), TOKEN_LENGTH);
        assert_eq!(TOKEN_LENGTH, 80);
        let parsed = ApiKeyToken::parse(&text).unwrap();
        assert_eq!(parsed.tenant_id(), token.tenant_id());
        assert_eq!(parsed.key_id(), token.key_id());
        assert!(parsed.secret_hash().matches(&token.secret_hash()));
        assert_eq!(parsed.expose(), text);
    }

    #[test]
    fn malformed_tokens_are_refused_with_a_reason() {
        let text = sample(2).expose();
        assert_eq!(
            ApiKeyToken::parse("sk_live_abc").unwrap_err(),
            KeyParseError::WrongPrefix
        );
        assert_eq!(
            ApiKeyToken::parse(&text[..79]).unwrap_err(),
            KeyParseError::WrongLength
        );
        let with_dash = format!("{}-{}", &text[..40], &text[41..]);
        assert_eq!(
            ApiKeyToken::parse(&with_dash).unwrap_err(),
            KeyParseError::NotBase62
        );
        let mut flipped = text.clone().into_bytes();
        flipped[50] = if flipped[50] == b'a' { b'b' } else { b'a' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            ApiKeyToken::parse(&flipped).unwrap_err(),
            KeyParseError::BadChecksum
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let token = sample(3);
        let secret = &token.expose()[42..74];
        assert!(!format!("{token:?}").contains(secret));
    }

    #[test]
    fn key_ids_parse_with_or_without_prefix() {
        let id = sample(4).key_id().clone();
        assert_eq!(ApiKeyId::parse(&id.to_string()), Some(id.clone()));
        assert_eq!(ApiKeyId::parse(id.as_str()), Some(id));
        assert_eq!(ApiKeyId::parse("key_short"), None);
        assert_eq!(ApiKeyId::parse("key_!!!!!!!!!!!!"), None);
    }

    #[test]
    fn hashes_compare_by_value() {
        let a = sample(5).secret_hash();
        let b = sample(6).secret_hash();
        assert!(a.matches(&a.clone()));
        assert!(!a.matches(&b));
        assert!(SecretHash::from_slice(&[0; 31]).is_none());
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,100}") {
            let _ = ApiKeyToken::parse(&text);
        }

        #[test]
        fn any_single_character_change_is_caught(seed: u64, position in 8usize..80, replacement in 0usize..62) {
            let text = sample(seed).expose();
            let mut bytes = text.clone().into_bytes();
            let new = base62::ALPHABET[replacement];
            prop_assume!(bytes[position] != new);
            bytes[position] = new;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(ApiKeyToken::parse(&changed).is_err());
        }
    }
}
