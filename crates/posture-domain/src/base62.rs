//! Fixed-width base62 encoding (`0-9A-Za-z`), used for API key fields.
//!
//! Fixed width matters: the key format concatenates fields without separators,
//! so every field must always encode to the same number of characters.

/// The base62 alphabet in ascending value order.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters needed to encode any `u128` (62^22 > 2^128).
pub const U128_WIDTH: usize = 22;

/// Characters needed to encode any `u32` (62^6 > 2^32).
pub const U32_WIDTH: usize = 6;

/// 62^10, the largest power of 62 below 2^64: digits are produced ten at a
/// time from a `u64`, so a `u128` costs two 128-bit divisions instead of
/// one per digit (a 128-bit division is a library call; ids are encoded for
/// every finding of every page served).
const CHUNK: u128 = 839_299_365_868_340_224;
const CHUNK_DIGITS: usize = 10;

/// Writes `value` into `out` as exactly `out.len()` base62 characters,
/// left-padded with `0`; false when it does not fit.
pub fn encode_into(mut value: u128, out: &mut [u8]) -> bool {
    for chunk in out.rchunks_mut(CHUNK_DIGITS) {
        let mut digits = if chunk.len() == CHUNK_DIGITS {
            let low = (value % CHUNK) as u64;
            value /= CHUNK;
            low
        } else {
            // The leading, shorter chunk: what is left must fit in it.
            let room = 62u128.pow(chunk.len() as u32);
            if value >= room {
                return false;
            }
            let rest = value as u64;
            value = 0;
            rest
        };
        for slot in chunk.iter_mut().rev() {
            *slot = ALPHABET[(digits % 62) as usize];
            digits /= 62;
        }
    }
    value == 0
}

/// Encodes `value` as exactly `width` base62 characters, left-padded with `0`.
///
/// Returns `None` when the value does not fit in `width` characters.
pub fn encode_fixed(value: u128, width: usize) -> Option<String> {
    let mut digits = vec![b'0'; width];
    if !encode_into(value, &mut digits) {
        return None;
    }
    // Every byte comes from ALPHABET, which is ASCII.
    Some(String::from_utf8(digits).expect("base62 alphabet is ASCII"))
}

/// Decodes a base62 string into a `u128`; `None` on a foreign character or overflow.
pub fn decode(text: &str) -> Option<u128> {
    text.bytes().try_fold(0u128, |acc, byte| {
        let digit = digit_value(byte)?;
        acc.checked_mul(62)?.checked_add(u128::from(digit))
    })
}

/// True when every byte of `text` is a base62 character.
pub fn is_base62(text: &str) -> bool {
    text.bytes().all(|byte| digit_value(byte).is_some())
}

fn digit_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'Z' => Some(byte - b'A' + 10),
        b'a'..=b'z' => Some(byte - b'a' + 36),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition: one digit at a time.
    fn slow_encode(mut value: u128, width: usize) -> Option<String> {
        let mut digits = vec![b'0'; width];
        for slot in digits.iter_mut().rev() {
            *slot = ALPHABET[(value % 62) as usize];
            value /= 62;
        }
        (value == 0).then(|| String::from_utf8(digits).unwrap())
    }

    proptest! {
        #[test]
        fn chunked_encoding_matches_the_definition(value: u128, width in 0usize..30, shift in 0u32..128) {
            let value = value >> shift;
            prop_assert_eq!(encode_fixed(value, width), slow_encode(value, width));
        }
    }

    #[test]
    fn encodes_known_values_with_padding() {
        assert_eq!(encode_fixed(0, 3).unwrap(), "000");
        assert_eq!(encode_fixed(61, 2).unwrap(), "0z");
        assert_eq!(encode_fixed(62, 2).unwrap(), "10");
        assert_eq!(encode_fixed(62 * 62, 2), None);
    }

    #[test]
    fn max_values_fit_their_widths() {
        assert_eq!(
            encode_fixed(u128::MAX, U128_WIDTH).unwrap().len(),
            U128_WIDTH
        );
        assert_eq!(
            encode_fixed(u128::from(u32::MAX), U32_WIDTH).unwrap().len(),
            U32_WIDTH
        );
    }

    #[test]
    fn rejects_foreign_characters_and_overflow() {
        assert_eq!(decode("ab-c"), None);
        assert_eq!(decode(&"z".repeat(23)), None);
        assert!(!is_base62("abc_"));
    }

    proptest! {
        #[test]
        fn round_trips_any_u128(value: u128) {
            let text = encode_fixed(value, U128_WIDTH).unwrap();
            prop_assert_eq!(decode(&text), Some(value));
        }
    }
}
