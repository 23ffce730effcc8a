//! How secret material appears in events: never in the clear, never as a plain hash.
//!
//! Events are a public format that subscribers read (GUIDE §3), so credentials are recorded in one
//! of two forms whose keys live outside the log (in the key store, see `idstream-keys`):
//!
//! - [`Sealed`]: authenticated encryption (XChaCha20-Poly1305) of a value the service must read back,
//!   such as a password's argon2id PHC string or a TOTP secret. Its text is
//!   `v1.<key id>.<base64url(nonce ‖ ciphertext)>`; the key id names the sealing key, so keys can be
//!   rotated while old events stay readable.
//! - [`BlindIndex`]: HMAC-SHA-256 of a random bearer token (refresh token, invitation, reset link,
//!   API key secret) under the index key. It is what a presented token is looked up by; without the
//!   key it cannot be checked against any guess, unlike a plain SHA-256 digest.
//!
//! This crate only carries and validates the shapes; sealing, opening and indexing are done by the
//! key holder outside the domain (the domain does no cryptography and no IO).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest sealed value accepted (a PHC string or TOTP secret seals to well under this).
pub const MAX_SEALED_LEN: usize = 4096;

/// An encrypted value: `v1.<kid>.<base64url>`. Its `Debug` output shows the key id only.
#[derive(Clone, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(
    transparent,
    description = "An encrypted secret: `v1.<key id>.<base64url of nonce and ciphertext>`. Readable only with the service's sealing key, which is not in the log."
)]
pub struct Sealed(
    #[schemars(regex(pattern = r"^v1\.[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{40,}$"))] String,
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sealed value (expected v1.<key id>.<base64url>)")]
pub struct SecretFormatError;

fn is_b64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Sealed {
    /// Checks the shape (`v1.<kid>.<payload>`); the payload is at least a 24-byte nonce and a
    /// 16-byte tag in base64url.
    pub fn parse(text: impl Into<String>) -> Result<Sealed, SecretFormatError> {
        let text = text.into();
        let valid = text.len() <= MAX_SEALED_LEN
            && {
                let mut parts = text.split('.');
                matches!(
                    (parts.next(), parts.next(), parts.next(), parts.next()),
                    (Some("v1"), Some(kid), Some(payload), None)
                        if kid.len() <= 64 && is_b64url(kid) && payload.len() >= 40 && is_b64url(payload)
                )
            };
        if valid {
            Ok(Sealed(text))
        } else {
            Err(SecretFormatError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the key that sealed this value.
    pub fn key_id(&self) -> &str {
        self.0.split('.').nth(1).unwrap_or_default()
    }

    /// The base64url payload (nonce followed by ciphertext and tag).
    pub fn payload(&self) -> &str {
        self.0.split('.').nth(2).unwrap_or_default()
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed(v1.{}.…)", self.key_id())
    }
}

impl Serialize for Sealed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Sealed::parse(text).map_err(serde::de::Error::custom)
    }
}

/// A keyed digest of a bearer token: 64 lower-case hex digits of HMAC-SHA-256.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[schemars(
    transparent,
    description = "HMAC-SHA-256 of a bearer token under the service's index key (not in the log), in hex."
)]
pub struct BlindIndex(#[schemars(regex(pattern = r"^[0-9a-f]{64}$"))] String);

impl BlindIndex {
    pub fn parse(text: impl Into<String>) -> Result<BlindIndex, SecretFormatError> {
        let text = text.into();
        if text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(BlindIndex(text))
        } else {
            Err(SecretFormatError)
        }
    }

    /// From the 32 bytes of the HMAC.
    pub fn from_bytes(bytes: &[u8; 32]) -> BlindIndex {
        BlindIndex(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindIndex({}…)", &self.0[..8])
    }
}

impl Serialize for BlindIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BlindIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        BlindIndex::parse(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_are_checked_for_shape_and_redacted() {
        let payload = "A".repeat(40);
        let sealed = Sealed::parse(format!("v1.k1.{payload}")).unwrap();
        assert_eq!(sealed.key_id(), "k1");
        assert_eq!(sealed.payload(), payload);
        assert_eq!(format!("{sealed:?}"), "Sealed(v1.k1.…)");
        for bad in [
            "",
            "v1.k1",
            "v2.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "v1.k1.short",
            "v1..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "v1.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.x",
            "v1.k 1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        ] {
            assert!(Sealed::parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&sealed).unwrap();
        assert_eq!(serde_json::from_str::<Sealed>(&json).unwrap(), sealed);
        assert!(serde_json::from_str::<Sealed>("\"plain text\"").is_err());
    }

    #[test]
    fn blind_indexes_are_64_hex_digits() {
        let index = BlindIndex::from_bytes(&[0xab; 32]);
        assert_eq!(index.as_str(), "ab".repeat(32));
        assert_eq!(BlindIndex::parse(index.as_str()).unwrap(), index);
        assert!(BlindIndex::parse("AB".repeat(32)).is_err());
        assert!(BlindIndex::parse("ab").is_err());
        assert_eq!(format!("{index:?}"), "BlindIndex(abababab…)");
    }
}
