//! The hash chain itself: pure functions over bytes, no IO.
//!
//! ```text
//! link_0 = 32 zero bytes
//! link_n = SHA-256("idstream.chain.v1" 0x00 ‖ link_{n-1} ‖ n as u64 BE ‖ len(subject) as u16 BE ‖ subject ‖ bytes_n)
//! ```
//!
//! `bytes_n` are the exact bytes the backend stores for the event at position `n` (its envelope
//! JSON) and `subject` is the subject it is stored under, so a changed byte, a moved event or an
//! event shifted to another position changes `link_n` and every link after it. Each event costs
//! one SHA-256 over its bytes and about 60 more: no second hash per event.
//!
//! Checkpoints record, besides the full link after their last event, the first
//! [`SHORT_LINK_LEN`] bytes of the link after *every* event they cover. Since a link depends on
//! everything before it, the first position whose short link differs is the first event that was
//! changed, removed, inserted or moved: that is how a verifier names it.

use sha2::{Digest, Sha256};

use idstream_eventlog::Position;

/// A SHA-256 value: a chain link.
pub type Hash = [u8; 32];

/// How many leading bytes of each link a checkpoint records per event. They locate a change; the
/// full 32-byte link (signed) is what proves the range unchanged.
pub const SHORT_LINK_LEN: usize = 8;

/// The first bytes of a link, as checkpoints record them for every event.
pub type ShortLink = [u8; SHORT_LINK_LEN];

/// The link before the first event.
pub const GENESIS: Hash = [0; 32];

const DOMAIN: &[u8] = b"idstream.chain.v1\0";

/// The link after the event stored at `position` under `subject` as `bytes`, following
/// `previous`.
pub fn next_link(previous: &Hash, position: Position, subject: &str, bytes: &[u8]) -> Hash {
    // Subjects are bounded far below 64 KiB by both backends; a longer one is cut in the length
    // field only, never in the hashed text.
    let subject_len = u16::try_from(subject.len()).unwrap_or(u16::MAX);
    // The fixed-size part in one piece: fewer, larger updates hash faster.
    let mut head = [0u8; DOMAIN.len() + 32 + 8 + 2];
    let (domain, rest) = head.split_at_mut(DOMAIN.len());
    domain.copy_from_slice(DOMAIN);
    rest[..32].copy_from_slice(previous);
    rest[32..40].copy_from_slice(&position.to_be_bytes());
    rest[40..].copy_from_slice(&subject_len.to_be_bytes());
    let mut hasher = Sha256::new();
    hasher.update(head);
    hasher.update(subject.as_bytes());
    hasher.update(bytes);
    hasher.finalize().into()
}

/// What a checkpoint records of the link after one event.
pub fn short(link: &Hash) -> ShortLink {
    let mut out = [0; SHORT_LINK_LEN];
    out.copy_from_slice(&link[..SHORT_LINK_LEN]);
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
    /// Adds the event at `position` and returns the new link. The caller checks that `position`
    /// is the next one; the chain hashes whatever position it is given.
    pub fn push(&mut self, position: Position, subject: &str, bytes: &[u8]) -> Hash {
        self.link = next_link(&self.link, position, subject, bytes);
        self.position = position;
        self.link
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
        manual.update(b"idstream.chain.v1\0");
        manual.update([0u8; 32]);
        manual.update(1u64.to_be_bytes());
        manual.update((SUBJECT.len() as u16).to_be_bytes());
        manual.update(SUBJECT);
        manual.update(bytes);
        let first: Hash = manual.finalize().into();
        assert_eq!(chain_of(&[(1, SUBJECT, bytes)]).link, first);

        let mut manual = Sha256::new();
        manual.update(b"idstream.chain.v1\0");
        manual.update(first);
        manual.update(2u64.to_be_bytes());
        manual.update((SUBJECT.len() as u16).to_be_bytes());
        manual.update(SUBJECT);
        manual.update(bytes);
        let second: Hash = manual.finalize().into();
        assert_eq!(
            chain_of(&[(1, SUBJECT, bytes), (2, SUBJECT, bytes)]).link,
            second
        );
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
        // link.
        assert_ne!(
            next_link(&GENESIS, 1, "idstream.events.a", b"b{}"),
            next_link(&GENESIS, 1, "idstream.events.ab", b"{}")
        );
    }
}
