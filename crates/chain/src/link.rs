//! The hash chain itself: pure functions over bytes, no IO.
//!
//! ```text
//! digest_n = SHA-256("idstream.chain.event.v1" 0x00 ‖ n as u64 BE ‖ len(subject) as u16 BE ‖ subject ‖ bytes_n)
//! link_0   = 32 zero bytes
//! link_n   = SHA-256("idstream.chain.link.v1" 0x00 ‖ link_{n-1} ‖ digest_n)
//! ```
//!
//! `bytes_n` are the exact bytes the backend stores for the event at position `n` (its envelope
//! JSON) and `subject` is the subject it is stored under, so a changed byte, a moved event or an
//! event shifted to another position all change `digest_n`, and through the chain every later
//! link. Hashing each event once into a digest and chaining the digests costs one extra
//! 64-byte block per event over hashing the bytes alone, and it gives checkpoints a per-event
//! value to record (the first [`SHORT_DIGEST_LEN`] bytes of each digest) with which a verifier
//! names the first event that changed, not only the checkpoint that no longer matches.

use sha2::{Digest, Sha256};

use idstream_eventlog::Position;

/// A SHA-256 value: an event digest or a chain link.
pub type Hash = [u8; 32];

/// How many leading bytes of each event digest a checkpoint records. They locate a change; the
/// full 32-byte link (signed) is what proves the range unchanged.
pub const SHORT_DIGEST_LEN: usize = 8;

/// The first bytes of an event digest, as recorded in checkpoints.
pub type ShortDigest = [u8; SHORT_DIGEST_LEN];

/// The link before the first event.
pub const GENESIS: Hash = [0; 32];

const EVENT_DOMAIN: &[u8] = b"idstream.chain.event.v1\0";
const LINK_DOMAIN: &[u8] = b"idstream.chain.link.v1\0";

/// The digest of the event stored at `position` under `subject` as `bytes`.
pub fn event_digest(position: Position, subject: &str, bytes: &[u8]) -> Hash {
    // Subjects are bounded far below 64 KiB by both backends; a longer one is cut in the length
    // field only, never in the hashed text, so it still cannot collide with a shorter one.
    let subject_len = u16::try_from(subject.len()).unwrap_or(u16::MAX);
    let mut hasher = Sha256::new();
    hasher.update(EVENT_DOMAIN);
    hasher.update(position.to_be_bytes());
    hasher.update(subject_len.to_be_bytes());
    hasher.update(subject.as_bytes());
    hasher.update(bytes);
    hasher.finalize().into()
}

/// The link after an event whose digest is `digest`, following `previous`.
pub fn next_link(previous: &Hash, digest: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(LINK_DOMAIN);
    hasher.update(previous);
    hasher.update(digest);
    hasher.finalize().into()
}

/// What a checkpoint records of one event.
pub fn short(digest: &Hash) -> ShortDigest {
    let mut out = [0; SHORT_DIGEST_LEN];
    out.copy_from_slice(&digest[..SHORT_DIGEST_LEN]);
    out
}

/// The running state of a chain: the link after `position` (0 and [`GENESIS`] at the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub position: Position,
    pub link: Hash,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            position: 0,
            link: GENESIS,
        }
    }
}

impl Chain {
    /// Adds the event at `position` and returns its digest. The caller checks that `position`
    /// is the next one; the chain hashes whatever position it is given.
    pub fn push(&mut self, position: Position, subject: &str, bytes: &[u8]) -> Hash {
        let digest = event_digest(position, subject, bytes);
        self.link = next_link(&self.link, &digest);
        self.position = position;
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "idstream.events.acme.tenant.acme";

    fn chain_of(events: &[(Position, &str, &[u8])]) -> Chain {
        let mut chain = Chain::default();
        for (position, subject, bytes) in events {
            chain.push(*position, subject, bytes);
        }
        chain
    }

    #[test]
    fn the_link_follows_the_documented_formula() {
        let bytes = br#"{"a":1}"#;
        let mut manual = Sha256::new();
        manual.update(b"idstream.chain.event.v1\0");
        manual.update(1u64.to_be_bytes());
        manual.update((SUBJECT.len() as u16).to_be_bytes());
        manual.update(SUBJECT);
        manual.update(bytes);
        let digest: Hash = manual.finalize().into();
        assert_eq!(event_digest(1, SUBJECT, bytes), digest);

        let mut manual = Sha256::new();
        manual.update(b"idstream.chain.link.v1\0");
        manual.update([0u8; 32]);
        manual.update(digest);
        let link: Hash = manual.finalize().into();
        assert_eq!(chain_of(&[(1, SUBJECT, bytes)]).link, link);
    }

    #[test]
    fn a_changed_byte_position_subject_or_order_changes_the_link() {
        let a: &[u8] = br#"{"n":"a"}"#;
        let b: &[u8] = br#"{"n":"b"}"#;
        let original = chain_of(&[(1, SUBJECT, a), (2, SUBJECT, b)]).link;
        let changed: &[u8] = br#"{"n":"c"}"#;
        for other in [
            chain_of(&[(1, SUBJECT, a), (2, SUBJECT, changed)]),
            chain_of(&[(1, SUBJECT, b), (2, SUBJECT, a)]),
            chain_of(&[(1, SUBJECT, a), (3, SUBJECT, b)]),
            chain_of(&[(1, SUBJECT, a), (2, "idstream.events.acme.tenant.other", b)]),
            chain_of(&[(1, SUBJECT, a)]),
        ] {
            assert_ne!(other.link, original, "{other:?}");
        }
        assert_eq!(chain_of(&[(1, SUBJECT, a), (2, SUBJECT, b)]).link, original);
    }

    #[test]
    fn subject_and_bytes_cannot_trade_characters() {
        // The subject's length is hashed, so moving a character across the boundary changes the
        // digest.
        assert_ne!(
            event_digest(1, "idstream.events.a", b"b{}"),
            event_digest(1, "idstream.events.ab", b"{}")
        );
    }
}
