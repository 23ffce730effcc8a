//! The hash chain itself: pure functions over bytes, no IO.
//!
//! ```text
//! link_0 = 32 zero bytes
//! link_n = SHA-256(link_{n-1} ‖ n as u64 BE ‖ kind ‖ len(text) as u16 BE ‖ text ‖ bytes_n)
//!
//! kind = 0x01, text = the subject after "idstream.events."   for a subject that starts so
//!                                                              (every subject the service writes)
//! kind = 0x00, text = the subject                            for any other
//! ```
//!
//! `bytes_n` are the exact bytes the backend stores for the event at position `n` (its envelope
//! JSON) and the subject is the one it is stored under, so a changed byte, a moved event or an
//! event shifted to another position changes `link_n` and every link after it. `kind` keeps the
//! subject's encoding unambiguous. Each event costs one SHA-256 over its bytes and 43 more
//! besides the text of its subject: no second hash per event.
//!
//! This is version 2 of the format. Version 1 also hashed the domain prefix
//! `"idstream.chain.v1" 0x00` and the whole subject into every link, 34 bytes that pushed most
//! events over one more 64-byte SHA-256 block. The version is in the statement a checkpoint
//! signs ([`crate::checkpoint`]), so a checkpoint of one format is never read as the other's. A
//! link needs no domain prefix: it is never signed or compared with anything but another link;
//! what is signed is the checkpoint statement, which has its own.
//!
//! Checkpoints record, besides the full link after their last event, the first
//! [`SHORT_LINK_LEN`] bytes of the link after *every* event they cover. Since a link depends on
//! everything before it, the first position whose short link differs is the first event that was
//! changed, removed, inserted or moved: that is how a verifier names it.

use sha2::{Digest, Sha256};

use idstream_domain::envelope::SUBJECT_PREFIX;
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

/// The fixed part of a link's input: the previous link, the position, the kind of subject and
/// the length of its text.
const HEAD: usize = 32 + 8 + 1 + 2;

/// SHA-256 works on 64-byte blocks.
const BLOCK: usize = 64;

/// How a subject is hashed: its kind and text (see the module documentation).
fn subject_text(subject: &str) -> (u8, &[u8]) {
    match subject
        .strip_prefix(SUBJECT_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
    {
        Some(rest) => (1, rest.as_bytes()),
        None => (0, subject.as_bytes()),
    }
}

/// The link after the event stored at `position` under `subject` as `bytes`, following
/// `previous`.
pub fn next_link(previous: &Hash, position: Position, subject: &str, bytes: &[u8]) -> Hash {
    let (kind, text) = subject_text(subject);
    // Subjects are bounded far below 64 KiB by both backends; a longer one is cut in the length
    // field only, never in the hashed text.
    let text_len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    // The head, the subject and the first bytes of the event go to the hasher as one piece of
    // whole blocks, so that it compresses them straight from this buffer and the rest of the
    // event straight from `bytes`, copying only the last partial block (1–3 % faster than three
    // updates in `cargo bench --bench chain`).
    let mut first = [0u8; 2 * BLOCK];
    first[..32].copy_from_slice(previous);
    first[32..40].copy_from_slice(&position.to_be_bytes());
    first[40] = kind;
    first[41..HEAD].copy_from_slice(&text_len.to_be_bytes());
    let mut hasher = Sha256::new();
    let prefix = HEAD + text.len();
    if prefix <= first.len() {
        first[HEAD..prefix].copy_from_slice(text);
        let whole = prefix.next_multiple_of(BLOCK);
        let take = (whole - prefix).min(bytes.len());
        first[prefix..prefix + take].copy_from_slice(&bytes[..take]);
        hasher.update(&first[..prefix + take]);
        hasher.update(&bytes[take..]);
    } else {
        hasher.update(&first[..HEAD]);
        hasher.update(text);
        hasher.update(bytes);
    }
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
        let text = b"acme.tenant.acme"; // SUBJECT after "idstream.events."
        let mut manual = Sha256::new();
        manual.update([0u8; 32]);
        manual.update(1u64.to_be_bytes());
        manual.update([1]);
        manual.update((text.len() as u16).to_be_bytes());
        manual.update(text);
        manual.update(bytes);
        let first: Hash = manual.finalize().into();
        assert_eq!(chain_of(&[(1, SUBJECT, bytes)]).link, first);

        let mut manual = Sha256::new();
        manual.update(first);
        manual.update(2u64.to_be_bytes());
        manual.update([1]);
        manual.update((text.len() as u16).to_be_bytes());
        manual.update(text);
        manual.update(bytes);
        let second: Hash = manual.finalize().into();
        assert_eq!(
            chain_of(&[(1, SUBJECT, bytes), (2, SUBJECT, bytes)]).link,
            second
        );

        // A subject outside the service's prefix is hashed whole.
        let mut manual = Sha256::new();
        manual.update([0u8; 32]);
        manual.update(1u64.to_be_bytes());
        manual.update([0]);
        manual.update(6u16.to_be_bytes());
        manual.update(b"other.");
        manual.update(bytes);
        let foreign: Hash = manual.finalize().into();
        assert_eq!(chain_of(&[(1, "other.", bytes)]).link, foreign);
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

    /// The formula, hashed the plain way.
    fn reference(previous: &Hash, position: Position, subject: &str, bytes: &[u8]) -> Hash {
        let (kind, text) = match subject.strip_prefix("idstream.events.") {
            Some(rest) => (1u8, rest),
            None => (0, subject),
        };
        let mut hasher = Sha256::new();
        hasher.update(previous);
        hasher.update(position.to_be_bytes());
        hasher.update([kind]);
        hasher.update((text.len() as u16).to_be_bytes());
        hasher.update(text);
        hasher.update(bytes);
        hasher.finalize().into()
    }

    #[test]
    fn every_length_of_subject_and_event_hashes_by_the_formula() {
        // Around every block boundary the buffered head can meet, and past the buffer.
        let text: String = (0..1100)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let mut previous = GENESIS;
        for text_len in [0, 1, 20, 21, 22, 84, 85, 86, 150, 300] {
            for prefix in ["", "idstream.events."] {
                let subject = format!("{prefix}{}", &text[..text_len]);
                for bytes_len in (0..200).chain([255, 256, 257, 1000]) {
                    let bytes = &text.as_bytes()[..bytes_len];
                    let position = (text_len * 1000 + bytes_len) as Position;
                    let link = next_link(&previous, position, &subject, bytes);
                    assert_eq!(
                        link,
                        reference(&previous, position, &subject, bytes),
                        "subject {subject:?}, event {bytes_len} bytes"
                    );
                    previous = link;
                }
            }
        }
    }

    #[test]
    fn a_subject_with_and_without_the_services_prefix_hash_differently() {
        let bytes = b"{}";
        let links = [
            "idstream.events.acme.tenant.acme",
            "acme.tenant.acme",
            "idstream.eventsacme.tenant.acme",
        ]
        .map(|subject| next_link(&GENESIS, 1, subject, bytes));
        assert_ne!(links[0], links[1]);
        assert_ne!(links[0], links[2]);
        assert_ne!(links[1], links[2]);
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
