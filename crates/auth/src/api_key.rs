//! API keys: `ids_<key id>_<secret>`, for example
//! `ids_01hzx3k7m2q8r9s0t1v2w3x4y5_mfrggzdfmztwq2lknnwg23tpobyxe43u`.
//!
//! - `ids_` marks the string as an idstream API key, for people and for secret scanners.
//! - The key id is the key's ULID in lower case (26 characters). It is not secret: it finds the
//!   stored digest in one lookup and names the key in logs and audit events.
//! - The secret is 160 random bits in lower-case unpadded base32 (32 characters). Base32 has no
//!   `_` or `-`, so the whole key is one "word" that a double click selects, and it splits
//!   unambiguously on its two underscores.
//!
//! Only the digest of the whole key is stored, so that a digest is bound to its key id.

use std::fmt;

use ulid::Ulid;
use zeroize::Zeroizing;

use crate::{TokenDigest, random_base32};

/// The prefix of every API key.
pub const API_KEY_PREFIX: &str = "ids_";
/// Random bytes in the secret part.
const SECRET_BYTES: usize = 20;
/// Characters of the secret part: 160 bits in base32.
const SECRET_CHARS: usize = 32;
const KEY_ID_CHARS: usize = 26;
const KEY_LEN: usize = API_KEY_PREFIX.len() + KEY_ID_CHARS + 1 + SECRET_CHARS;

/// A freshly generated API key. `Debug` shows the key id only.
pub struct ApiKeySecret {
    key_id: Ulid,
    text: Zeroizing<String>,
}

impl ApiKeySecret {
    /// A new key with the id `key_id` (which the caller records with the digest).
    pub fn generate(key_id: Ulid) -> ApiKeySecret {
        let secret = Zeroizing::new(random_base32(SECRET_BYTES));
        ApiKeySecret {
            key_id,
            text: Zeroizing::new(canonical(key_id, &secret)),
        }
    }

    pub fn key_id(&self) -> Ulid {
        self.key_id
    }

    /// The whole key, to be shown to its owner once and never stored.
    pub fn reveal(&self) -> &str {
        &self.text
    }

    /// What to store.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(&self.text)
    }

    /// The key id and digestable form of a presented key, or `None` if it does not have the shape
    /// of one (so that a request with garbage costs no storage lookup). Surrounding whitespace and
    /// letter case are ignored: base32 and ULIDs are case-insensitive.
    pub fn parse(presented: &str) -> Option<PresentedApiKey> {
        let presented = presented.trim();
        if presented.len() != KEY_LEN || !presented.is_ascii() {
            return None;
        }
        let lowered = Zeroizing::new(presented.to_ascii_lowercase());
        let rest = lowered.strip_prefix(API_KEY_PREFIX)?;
        let (key_id, secret) = rest.split_at(KEY_ID_CHARS);
        let secret = secret.strip_prefix('_')?;
        let key_id = Ulid::from_string(key_id).ok()?;
        let base32 = |b: u8| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b);
        if secret.len() != SECRET_CHARS || !secret.bytes().all(base32) {
            return None;
        }
        Some(PresentedApiKey {
            key_id,
            canonical: Zeroizing::new(canonical(key_id, secret)),
        })
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeySecret")
            .field("key_id", &format_args!("{}", self.key_id))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A key as presented by a client, already checked for shape. `Debug` shows the key id only.
pub struct PresentedApiKey {
    key_id: Ulid,
    canonical: Zeroizing<String>,
}

impl PresentedApiKey {
    /// The id to look the stored digest up by.
    pub fn key_id(&self) -> Ulid {
        self.key_id
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(&self.canonical)
    }

    /// The canonical text of the key: what a keyed digest (blind index) is computed over.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// Constant-time check against the digest stored for [`PresentedApiKey::key_id`].
    pub fn matches(&self, stored: &TokenDigest) -> bool {
        stored.matches(&self.canonical)
    }
}

impl fmt::Debug for PresentedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedApiKey")
            .field("key_id", &format_args!("{}", self.key_id))
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn canonical(key_id: Ulid, secret: &str) -> String {
    format!(
        "{API_KEY_PREFIX}{}_{secret}",
        key_id.to_string().to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_id() -> Ulid {
        Ulid::from_string("01HZX3K7M2Q8R9S0T1V2W3X4Y5").unwrap()
    }

    #[test]
    fn a_key_has_the_documented_shape() {
        let key = ApiKeySecret::generate(key_id());
        let text = key.reveal();
        assert_eq!(text.len(), KEY_LEN);
        assert!(
            text.starts_with("ids_01hzx3k7m2q8r9s0t1v2w3x4y5_"),
            "{}",
            &text[..31]
        );
        let parts: Vec<&str> = text.split('_').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].len(), 32);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
        assert_ne!(
            ApiKeySecret::generate(key_id()).reveal(),
            key.reveal(),
            "secrets are random"
        );
    }

    #[test]
    fn a_presented_key_parses_to_its_id_and_matches_its_digest() {
        let key = ApiKeySecret::generate(key_id());
        let stored = key.digest();
        for presented in [
            key.reveal().to_owned(),
            key.reveal().to_uppercase(),
            format!("  {}\n", key.reveal()),
        ] {
            let parsed = ApiKeySecret::parse(&presented).unwrap();
            assert_eq!(parsed.key_id(), key_id());
            assert!(parsed.matches(&stored));
            assert_eq!(parsed.digest(), stored);
        }

        let other = ApiKeySecret::generate(key_id());
        assert!(
            !ApiKeySecret::parse(other.reveal())
                .unwrap()
                .matches(&stored)
        );
    }

    #[test]
    fn a_digest_is_bound_to_the_key_id() {
        let key = ApiKeySecret::generate(key_id());
        let secret = &key.reveal()[31..];
        let moved = format!("ids_{}_{secret}", Ulid::nil().to_string().to_lowercase());
        let parsed = ApiKeySecret::parse(&moved).unwrap();
        assert!(!parsed.matches(&key.digest()));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let key = ApiKeySecret::generate(key_id());
        let text = key.reveal();
        let cases = [
            String::new(),
            "ids_".into(),
            text[..text.len() - 1].to_owned(),
            format!("{text}a"),
            text.replacen("ids_", "idx_", 1),
            text.replacen("ids_", "idr_", 1),
            format!("{}-{}", &text[..30], &text[31..]),
            format!("{}1{}", &text[..text.len() - 1], ""),
            format!("{}é", &text[..text.len() - 2]),
            // Not a ULID: 'u' is not in Crockford's alphabet.
            format!("ids_{}{}", "u".repeat(26), &text[30..]),
        ];
        for case in &cases {
            assert!(ApiKeySecret::parse(case).is_none(), "{case:?}");
        }
    }

    #[test]
    fn debug_shows_the_key_id_only() {
        let key = ApiKeySecret::generate(key_id());
        let secret = &key.reveal()[31..];
        for debug in [
            format!("{key:?}"),
            format!("{:?}", ApiKeySecret::parse(key.reveal()).unwrap()),
        ] {
            assert!(debug.contains("01HZX3K7M2Q8R9S0T1V2W3X4Y5"), "{debug}");
            assert!(!debug.contains(secret), "{debug}");
        }
    }
}
