//! Random identifiers and API keys, drawn from the operating system's random source.

use crate::{Result, ServerError};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Random characters in an object id after its prefix (`file-` + 24).
pub const ID_CHARS: usize = 24;
/// Random characters in an API key after `dck_`.
pub const KEY_CHARS: usize = 32;
/// The start of every API key.
pub const KEY_PREFIX: &str = "dck_";

/// `n` random base62 characters, uniform (bytes of 248 and more are drawn again, so no
/// character is likelier than another).
///
/// # Errors
/// [`ServerError::Random`] when the operating system's random source fails.
pub fn base62(n: usize) -> Result<String> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf).map_err(|e| ServerError::Random(e.to_string()))?;
        for b in buf {
            // 248 = 4 * 62: the largest multiple of 62 that fits a byte.
            if b < 248 && out.len() < n {
                out.push(char::from(BASE62[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// A new object id: `prefix` + 24 random base62 characters (e.g. `file-…`).
///
/// # Errors
/// [`ServerError::Random`] when the operating system's random source fails.
pub fn new_id(prefix: &str) -> Result<String> {
    Ok(format!("{prefix}{}", base62(ID_CHARS)?))
}

/// A new API key: `dck_` + 32 random base62 characters (about 190 bits).
///
/// # Errors
/// [`ServerError::Random`] when the operating system's random source fails.
pub fn new_api_key() -> Result<String> {
    Ok(format!("{KEY_PREFIX}{}", base62(KEY_CHARS)?))
}

/// Whether `s` is an id this server could have made with `prefix` (checked before any lookup).
#[must_use]
pub fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| rest.len() == ID_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_and_length_and_differ() {
        let a = new_id("file-").unwrap();
        let b = new_id("file-").unwrap();
        assert!(is_id(&a, "file-"), "{a}");
        assert_ne!(a, b);
        let k = new_api_key().unwrap();
        assert_eq!(k.len(), KEY_PREFIX.len() + KEY_CHARS);
        assert!(k[KEY_PREFIX.len()..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(!is_id("file-../../etc", "file-"));
    }

    #[test]
    fn every_base62_character_is_drawn() {
        let s = base62(20_000).unwrap();
        for c in BASE62 {
            let n = s.bytes().filter(|b| b == c).count();
            // Expected 322 each; a character never or rarely drawn means a broken mapping.
            assert!(n > 200, "{} drawn {n} times", char::from(*c));
        }
    }
}
