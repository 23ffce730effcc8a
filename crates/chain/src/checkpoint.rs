//! Checkpoints: what a `ChainCheckpointed` event records, the statement the service signs, and
//! the keys that sign and verify it.
//!
//! The signed statement is
//!
//! ```text
//! "idstream.chain.checkpoint.v2" 0x00 ‖ from u64 BE ‖ to u64 BE ‖ link (32 bytes)
//!   ‖ SHA-256(the short links of from..=to, concatenated) ‖ len(key id) u16 BE ‖ key id
//! ```
//!
//! The `v2` is the version of the chain format the links are computed in ([`crate::link`]):
//! a checkpoint of a version-1 chain does not verify as a version-2 one, and the verifier says so
//! rather than calling it forged ([`Checkpoint::signed_in_format_v1`]).
//!
//! signed with Ed25519 by the service's current signing key, the one that signs access tokens
//! (`Keys::signing()`). Reusing that key is safe: a JWS signature covers `base64url(header) "."
//! base64url(payload)`, which never starts with the statement's domain prefix, so neither kind
//! of signature can be passed off as the other.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use idstream_auth::KeyRing;
use idstream_domain::events::ChainCheckpointed;
use idstream_domain::{
    Actor, AggregateRef, AggregateType, DomainEvent, EventEnvelope, StreamKey, TenantId,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use ulid::Ulid;

use crate::link::{Hash, SHORT_LINK_LEN, ShortLink};
use idstream_eventlog::Position;

/// The id of the one chain aggregate.
pub const CHAIN_ID: &str = "log";

/// The subject checkpoints are stored under (`idstream.events._.chain.log`).
pub const CHAIN_SUBJECT: &str = "idstream.events._.chain.log";

/// The aggregate checkpoints are appended to, with the expected sequence of its last event so
/// that of two replicas checkpointing at once exactly one succeeds.
pub fn chain_stream() -> StreamKey {
    StreamKey::new(None, AggregateType::Chain, CHAIN_ID)
}

const STATEMENT_DOMAIN: &[u8] = b"idstream.chain.checkpoint.v2\0";

/// The statement's prefix in version 1 of the chain format, recognised only to explain why such a
/// checkpoint does not verify.
const STATEMENT_DOMAIN_V1: &[u8] = b"idstream.chain.checkpoint.v1\0";

/// The event type and version of a checkpoint in the envelope.
const EVENT_TYPE: &str = "ChainCheckpointed";
const EVENT_VERSION: u32 = 1;

/// A checkpoint, decoded: the chain's link after `to` and the short links after each of `from..=to`,
/// signed by the key `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub from: Position,
    pub to: Position,
    pub link: Hash,
    pub links: Vec<ShortLink>,
    pub key: String,
    pub public_key: VerifyingKey,
    pub signature: Signature,
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn statement(
        from: Position,
        to: Position,
        link: &Hash,
        links: &[ShortLink],
        key: &str,
    ) -> Vec<u8> {
        Checkpoint::statement_in(STATEMENT_DOMAIN, from, to, link, links, key)
    }

    fn statement_in(
        domain: &[u8],
        from: Position,
        to: Position,
        link: &Hash,
        links: &[ShortLink],
        key: &str,
    ) -> Vec<u8> {
        let links_hash: Hash = Sha256::digest(links.as_flattened()).into();
        let key_len = u16::try_from(key.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(domain.len() + 16 + 64 + 2 + key.len());
        out.extend_from_slice(domain);
        out.extend_from_slice(&from.to_be_bytes());
        out.extend_from_slice(&to.to_be_bytes());
        out.extend_from_slice(link);
        out.extend_from_slice(&links_hash);
        out.extend_from_slice(&key_len.to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// Whether the signature verifies with the public key the checkpoint carries. Whether that
    /// key is one to trust is the verifier's question ([`TrustedKeys`]).
    pub fn signature_is_valid(&self) -> bool {
        let statement =
            Checkpoint::statement(self.from, self.to, &self.link, &self.links, &self.key);
        self.public_key
            .verify_strict(&statement, &self.signature)
            .is_ok()
    }

    /// Whether the signature verifies as a checkpoint of version 1 of the chain format, which
    /// this version no longer computes (its links also hashed a domain prefix). Only asked of a
    /// checkpoint whose signature does not verify, to say why.
    pub fn signed_in_format_v1(&self) -> bool {
        let statement = Checkpoint::statement_in(
            STATEMENT_DOMAIN_V1,
            self.from,
            self.to,
            &self.link,
            &self.links,
            &self.key,
        );
        self.public_key
            .verify_strict(&statement, &self.signature)
            .is_ok()
    }

    /// The event payload that records this checkpoint.
    pub fn to_event(&self) -> ChainCheckpointed {
        ChainCheckpointed {
            from: self.from,
            to: self.to,
            link: hex::encode(self.link),
            links: STANDARD.encode(self.links.concat()),
            key: self.key.clone(),
            public_key: URL_SAFE_NO_PAD.encode(self.public_key.as_bytes()),
            signature: URL_SAFE_NO_PAD.encode(self.signature.to_bytes()),
        }
    }

    /// Reads a checkpoint from its event payload. Checks the shape (lengths, encodings, the
    /// range), not the signature.
    pub fn from_event(event: &ChainCheckpointed) -> Result<Checkpoint, String> {
        Checkpoint::from_fields(&Fields {
            from: event.from,
            to: event.to,
            link: &event.link,
            links: &event.links,
            key: &event.key,
            public_key: &event.public_key,
            signature: &event.signature,
        })
    }

    fn from_fields(event: &Fields<'_>) -> Result<Checkpoint, String> {
        Checkpoint::from_fields_with(event, None)
    }

    fn from_fields_with(
        event: &Fields<'_>,
        known_key: Option<&VerifyingKey>,
    ) -> Result<Checkpoint, String> {
        if event.from == 0 || event.to < event.from {
            return Err(format!(
                "it covers the impossible range {}..={}",
                event.from, event.to
            ));
        }
        let link: Hash = hex::decode(event.link)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or("its link is not 64 hex digits")?;
        let packed = STANDARD
            .decode(event.links)
            .map_err(|_| "its short links are not base64")?;
        let count = event.to - event.from + 1;
        if packed.len() as u64 != count.saturating_mul(SHORT_LINK_LEN as u64) {
            return Err(format!(
                "it holds {} bytes of short links for {count} events; {SHORT_LINK_LEN} per event were expected",
                packed.len()
            ));
        }
        let links = packed
            .chunks_exact(SHORT_LINK_LEN)
            .map(|chunk| chunk.try_into().expect("chunks of the short link length"))
            .collect();
        // Decompressing a key costs as much as decoding the rest; checkpoints in a row mostly
        // carry the same key, and the same bytes make the same key.
        let public_key = URL_SAFE_NO_PAD
            .decode(event.public_key)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .and_then(|bytes| match known_key {
                Some(known) if known.as_bytes() == &bytes => Some(*known),
                _ => VerifyingKey::from_bytes(&bytes).ok(),
            })
            .ok_or("its public key is not a base64url Ed25519 key")?;
        let signature = URL_SAFE_NO_PAD
            .decode(event.signature)
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .map(|bytes| Signature::from_bytes(&bytes))
            .ok_or("its signature is not a base64url Ed25519 signature")?;
        Ok(Checkpoint {
            from: event.from,
            to: event.to,
            link,
            links,
            key: event.key.to_owned(),
            public_key,
            signature,
        })
    }

    /// Reads a checkpoint from the stored bytes of an event on [`CHAIN_SUBJECT`].
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        Checkpoint::decode_with(bytes, None)
    }

    /// [`Checkpoint::decode`], taking the public key from `known_key` when the checkpoint
    /// carries that one.
    pub fn decode_with(
        bytes: &[u8],
        known_key: Option<&VerifyingKey>,
    ) -> Result<Checkpoint, String> {
        Checkpoint::decode_directly(bytes, known_key)
            .unwrap_or_else(|| Checkpoint::decode_generically(bytes))
    }

    /// The common case in one pass: a well-formed checkpoint envelope, its strings borrowed from
    /// `bytes`. `None` for anything else, which [`Checkpoint::decode_generically`] then explains.
    /// It accepts nothing that one refuses: the same fields with the same types, unknown fields
    /// refused, and the same checks of the aggregate, type and version.
    pub(crate) fn decode_directly(
        bytes: &[u8],
        known_key: Option<&VerifyingKey>,
    ) -> Option<Result<Checkpoint, String>> {
        let stored: StoredCheckpoint<'_> = serde_json::from_slice(bytes).ok()?;
        let is_checkpoint = stored.tenant.is_none()
            && stored.aggregate.kind == AggregateType::Chain
            && stored.aggregate.id == CHAIN_ID
            && stored.event_type == EVENT_TYPE
            && stored.version == EVENT_VERSION;
        is_checkpoint.then(|| {
            let data = &stored.data;
            let fields = Fields {
                from: data.from,
                to: data.to,
                link: &data.link,
                links: &data.links,
                key: &data.key,
                public_key: &data.public_key,
                signature: &data.signature,
            };
            Checkpoint::from_fields_with(&fields, known_key)
        })
    }

    /// Through the generic envelope and the domain's decoding: the reference, and the reasons.
    fn decode_generically(bytes: &[u8]) -> Result<Checkpoint, String> {
        let envelope: EventEnvelope = serde_json::from_slice(bytes)
            .map_err(|e| format!("it is not an event envelope ({e})"))?;
        if envelope.tenant.is_some()
            || envelope.aggregate.kind != AggregateType::Chain
            || envelope.aggregate.id != CHAIN_ID
        {
            return Err(format!(
                "it belongs to the aggregate {}, not to the chain",
                envelope.subject()
            ));
        }
        match DomainEvent::decode(&envelope) {
            Ok(DomainEvent::ChainCheckpointed(event)) => Checkpoint::from_event(&event),
            Ok(other) => Err(format!(
                "it is a {} event, not a checkpoint",
                other.event_type()
            )),
            Err(e) => Err(format!("it cannot be decoded ({e})")),
        }
    }
}

/// The fields of a `ChainCheckpointed` payload, borrowed.
struct Fields<'a> {
    from: Position,
    to: Position,
    link: &'a str,
    links: &'a str,
    key: &'a str,
    public_key: &'a str,
    signature: &'a str,
}

/// A checkpoint envelope as stored: [`EventEnvelope`] with [`ChainCheckpointed`] as its `data`,
/// field for field (the same names, types and `deny_unknown_fields`), its strings borrowed. It
/// saves the verifier the generic JSON value of the payload and two copies of the 10 kB of short
/// links per 1000 events.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCheckpoint<'a> {
    #[serde(rename = "id")]
    _id: Ulid,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    version: u32,
    #[serde(default)]
    tenant: Option<TenantId>,
    aggregate: AggregateRef,
    #[serde(rename = "actor")]
    _actor: Actor,
    #[serde(rename = "occurred_at", with = "time::serde::rfc3339")]
    _occurred_at: OffsetDateTime,
    #[serde(rename = "correlation_id", borrow)]
    _correlation_id: Cow<'a, str>,
    #[serde(rename = "causation_id", default, borrow)]
    _causation_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: StoredData<'a>,
}

/// [`ChainCheckpointed`], field for field, its strings borrowed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredData<'a> {
    from: u64,
    to: u64,
    #[serde(borrow)]
    link: Cow<'a, str>,
    #[serde(borrow)]
    links: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    public_key: Cow<'a, str>,
    #[serde(borrow)]
    signature: Cow<'a, str>,
}

/// The service's current signing key, as the checkpoint writer uses it.
pub struct Signer {
    kid: String,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The current key of `ring`.
    pub fn from_ring(ring: &KeyRing) -> Result<Signer, String> {
        let current = ring.current();
        let pem = current.to_pkcs8_pem();
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|_| format!("signing key {} cannot be read", current.kid()))?;
        Ok(Signer {
            kid: current.kid().to_owned(),
            key,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// What an earlier build signed for `checkpoint`: its statement in chain format version 1.
    #[cfg(test)]
    pub(crate) fn sign_in_format_v1(&self, checkpoint: &Checkpoint) -> Signature {
        self.key.sign(&Checkpoint::statement_in(
            STATEMENT_DOMAIN_V1,
            checkpoint.from,
            checkpoint.to,
            &checkpoint.link,
            &checkpoint.links,
            &checkpoint.key,
        ))
    }

    /// Signs the checkpoint of `from..=to` whose link after `to` is `link`, with `links` the
    /// short links after each of those positions.
    pub fn sign(
        &self,
        from: Position,
        to: Position,
        link: Hash,
        links: Vec<ShortLink>,
    ) -> Checkpoint {
        let statement = Checkpoint::statement(from, to, &link, &links, &self.kid);
        Checkpoint {
            from,
            to,
            link,
            links,
            key: self.kid.clone(),
            public_key: self.key.verifying_key(),
            signature: self.key.sign(&statement),
        }
    }
}

/// The public keys a verifier trusts, by key id: the signing key ring's (current and retired,
/// from the key store) or a JWK Set the operator hands over (such as a saved copy of
/// `/.well-known/jwks.json`).
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: HashMap<String, VerifyingKey>,
}

impl TrustedKeys {
    /// Every key of a key ring.
    pub fn from_ring(ring: &KeyRing) -> TrustedKeys {
        TrustedKeys::from_jwks(&ring.jwks()).expect("a key ring's JWKS holds Ed25519 keys")
    }

    /// The Ed25519 keys (`kty` `OKP`, `crv` `Ed25519`) of a JWK Set; other keys are refused.
    pub fn from_jwks(jwks: &serde_json::Value) -> Result<TrustedKeys, String> {
        let keys = jwks["keys"]
            .as_array()
            .ok_or("a JWK Set is an object with a \"keys\" array")?;
        let mut trusted = TrustedKeys::default();
        for key in keys {
            let kid = key["kid"].as_str().ok_or("a key without \"kid\"")?;
            if key["kty"] != "OKP" || key["crv"] != "Ed25519" {
                return Err(format!("key {kid:?} is not an Ed25519 (OKP) key"));
            }
            let public = key["x"]
                .as_str()
                .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
                .ok_or_else(|| format!("key {kid:?} has no valid \"x\""))?;
            trusted.keys.insert(kid.to_owned(), public);
        }
        Ok(trusted)
    }

    /// Adds one key.
    pub fn insert(&mut self, kid: impl Into<String>, key: VerifyingKey) {
        self.keys.insert(kid.into(), key);
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ring() -> KeyRing {
        KeyRing::generate(datetime!(2026-01-01 00:00 UTC), time::Duration::minutes(5))
    }

    #[test]
    fn the_chain_subject_is_the_chain_aggregates() {
        assert_eq!(chain_stream().subject(), CHAIN_SUBJECT);
    }

    #[test]
    fn a_signed_checkpoint_survives_its_event_and_verifies() {
        let ring = ring();
        let signer = Signer::from_ring(&ring).unwrap();
        let checkpoint = signer.sign(3, 5, [7; 32], vec![[1; 8], [2; 8], [3; 8]]);
        assert!(checkpoint.signature_is_valid());
        assert_eq!(checkpoint.key, ring.current().kid());
        let back = Checkpoint::from_event(&checkpoint.to_event()).unwrap();
        assert_eq!(back, checkpoint);
        let trusted = TrustedKeys::from_ring(&ring);
        assert_eq!(trusted.get(&checkpoint.key), Some(&checkpoint.public_key));
    }

    #[test]
    fn any_change_to_a_signed_field_breaks_the_signature() {
        let signer = Signer::from_ring(&ring()).unwrap();
        let original = signer.sign(1, 2, [7; 32], vec![[1; 8], [2; 8]]);
        let mut changes = vec![original.clone(); 5];
        changes[0].from = 2;
        changes[1].to = 3;
        changes[2].link[0] ^= 1;
        changes[3].links[1][7] ^= 1;
        changes[4].key = "another".into();
        for changed in changes {
            assert!(!changed.signature_is_valid(), "{changed:?}");
        }
        let mut other_key = original.clone();
        other_key.public_key = Signer::from_ring(&ring()).unwrap().key.verifying_key();
        assert!(!other_key.signature_is_valid());
    }

    #[test]
    fn malformed_checkpoint_events_are_refused_with_a_reason() {
        let signer = Signer::from_ring(&ring()).unwrap();
        let good = signer.sign(1, 2, [7; 32], vec![[1; 8], [2; 8]]).to_event();
        let mut bad = vec![good.clone(); 5];
        bad[0].to = 0;
        bad[1].link = "zz".into();
        bad[2].links = STANDARD.encode([0u8; 9]);
        bad[3].public_key = "AAAA".into();
        bad[4].signature = "!".into();
        for event in bad {
            assert!(Checkpoint::from_event(&event).is_err(), "{event:?}");
        }
    }

    fn envelope_of(checkpoint: &Checkpoint) -> serde_json::Value {
        let meta = idstream_domain::Metadata {
            actor: idstream_domain::Actor::system("chain"),
            occurred_at: datetime!(2026-03-01 12:00 UTC),
            correlation_id: "c".into(),
            causation_id: None,
        };
        let envelope = DomainEvent::ChainCheckpointed(checkpoint.to_event()).into_envelope(
            Ulid::from_parts(1, 1),
            &chain_stream(),
            &meta,
        );
        serde_json::to_value(&envelope).unwrap()
    }

    #[test]
    fn a_stored_checkpoint_is_read_in_one_pass_as_the_domain_reads_it() {
        let signer = Signer::from_ring(&ring()).unwrap();
        let checkpoint = signer.sign(1, 3, [7; 32], vec![[1; 8], [2; 8], [3; 8]]);
        let bytes = serde_json::to_vec(&envelope_of(&checkpoint)).unwrap();
        assert_eq!(
            Checkpoint::decode_directly(&bytes, None),
            Some(Ok(checkpoint.clone()))
        );
        assert_eq!(
            Checkpoint::decode_generically(&bytes),
            Ok(checkpoint.clone())
        );
        assert_eq!(Checkpoint::decode(&bytes), Ok(checkpoint.clone()));
        let other = Signer::from_ring(&ring()).unwrap().key.verifying_key();
        assert_eq!(
            Checkpoint::decode_with(&bytes, Some(&other)),
            Ok(checkpoint.clone())
        );

        // Escaped characters are read, not borrowed.
        let first = checkpoint.key.chars().next().unwrap();
        let key = format!("\\u{:04x}{}", u32::from(first), &checkpoint.key[1..]);
        let escaped = String::from_utf8(bytes)
            .unwrap()
            .replace(&checkpoint.key, &key);
        assert!(escaped.contains(r"\u00"));
        assert_eq!(
            Checkpoint::decode_directly(escaped.as_bytes(), Some(&checkpoint.public_key)),
            Some(Ok(checkpoint))
        );
    }

    #[test]
    fn what_the_one_pass_refuses_is_decoded_and_explained_as_before() {
        let signer = Signer::from_ring(&ring()).unwrap();
        let checkpoint = signer.sign(1, 2, [7; 32], vec![[1; 8], [2; 8]]);
        let good = envelope_of(&checkpoint);
        type Change = fn(&mut serde_json::Value);
        let changes: Vec<(&str, Change)> = vec![
            ("an unknown envelope field", |v| v["extra"] = 1.into()),
            ("an unknown payload field", |v| {
                v["data"]["extra"] = 1.into()
            }),
            ("a missing payload field", |v| {
                v["data"].as_object_mut().unwrap().remove("links");
            }),
            ("a tenant", |v| v["tenant"] = "acme".into()),
            ("another aggregate id", |v| {
                v["aggregate"]["id"] = "other".into()
            }),
            ("another aggregate type", |v| {
                v["aggregate"]["type"] = "tenant".into()
            }),
            ("another event type", |v| v["type"] = "TenantRenamed".into()),
            ("another version", |v| v["version"] = 2.into()),
            ("a negative position", |v| v["data"]["from"] = (-1).into()),
            ("a position as text", |v| v["data"]["to"] = "2".into()),
            ("a bad ULID", |v| v["id"] = "not a ulid".into()),
            ("a bad time", |v| v["occurred_at"] = "yesterday".into()),
            ("a short link too many", |v| v["data"]["to"] = 3.into()),
            ("a bad link", |v| v["data"]["link"] = "zz".into()),
        ];
        for (what, change) in changes {
            let mut value = good.clone();
            change(&mut value);
            let bytes = serde_json::to_vec(&value).unwrap();
            let generic = Checkpoint::decode_generically(&bytes);
            assert!(generic.is_err(), "{what}: {generic:?}");
            match Checkpoint::decode_directly(&bytes, None) {
                None => {}
                Some(direct) => assert_eq!(direct, generic, "{what}"),
            }
            assert_eq!(Checkpoint::decode(&bytes), generic, "{what}");
        }
        assert!(Checkpoint::decode(b"not json").is_err());
    }

    #[test]
    fn a_checkpoint_of_the_first_chain_format_is_recognised_as_such() {
        let signer = Signer::from_ring(&ring()).unwrap();
        let mut checkpoint = signer.sign(1, 2, [7; 32], vec![[1; 8], [2; 8]]);
        assert!(!checkpoint.signed_in_format_v1());
        checkpoint.signature = signer.sign_in_format_v1(&checkpoint);
        assert!(!checkpoint.signature_is_valid());
        assert!(checkpoint.signed_in_format_v1());
    }

    #[test]
    fn a_jwks_yields_its_ed25519_keys_and_refuses_others() {
        let ring = ring();
        let trusted = TrustedKeys::from_jwks(&ring.jwks()).unwrap();
        assert_eq!(trusted.len(), 1);
        assert!(trusted.get(ring.current().kid()).is_some());
        let rsa = serde_json::json!({"keys": [{"kid": "r", "kty": "RSA", "n": "x", "e": "AQAB"}]});
        assert!(TrustedKeys::from_jwks(&rsa).is_err());
        assert!(TrustedKeys::from_jwks(&serde_json::json!({})).is_err());
    }
}
