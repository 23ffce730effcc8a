//! Access tokens: short-lived EdDSA (Ed25519) JWTs in the RFC 9068 profile, the key ring that signs
//! and verifies them, and the JWK Set (RFC 7517, RFC 8037) that publishes the public keys.
//!
//! Why Ed25519: signatures are small and deterministic (no per-signature randomness to get wrong),
//! keys are 32 bytes, and there is exactly one algorithm to accept, which makes algorithm-confusion
//! attacks (`alg: none`, HS256 keyed with the public key) impossible by construction: the verifier
//! looks at `alg` before anything else and accepts `EdDSA` only.
//!
//! Time never comes from the system clock here. `jsonwebtoken` would check `exp` against the
//! system clock, so that check is switched off and [`Issuer::verify`] compares `exp`, `nbf` and
//! `iat` with the `now` it is given, allowing [`CLOCK_LEEWAY`] for skew between nodes.

use std::collections::HashSet;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek as ed;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use ulid::Ulid;
use zeroize::Zeroizing;

/// How far `exp`, `nbf` and `iat` may be off before a token is refused: 30 seconds, enough for
/// the clock skew between the nodes of one deployment and small next to any sensible token
/// lifetime (minutes).
pub const CLOCK_LEEWAY: Duration = Duration::seconds(30);

/// The JOSE header `typ` of an access token (RFC 9068 §2.1). Compared case-insensitively, and the
/// long form `application/at+jwt` is accepted too (RFC 7515 §4.1.9).
pub const ACCESS_TOKEN_HEADER_TYPE: &str = "at+jwt";

/// The `typ` claim of an access token. A second, claim-level type keeps a token minted for another
/// purpose by the same keys (should there ever be one) from being accepted as an access token.
pub const ACCESS_TOKEN_CLAIM_TYPE: &str = "access";

/// The longest lifetime a key ring allows for its tokens. Access tokens should live minutes; this
/// bound only keeps a hand-edited key-ring document from pushing dates out of range.
pub const MAX_TOKEN_TTL: Duration = Duration::days(31);

/// Tokens longer than this are refused before any parsing; ours are a few hundred bytes.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The version of the persisted key-ring document written by [`KeyRing::to_json`].
const KEY_RING_FORMAT: u32 = 1;

/// Why a token was refused. Variants are meant for logs and metrics; none of them carries the
/// token or any part of it. Clients should be told only "invalid token".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWS compact serialisation with the expected claims")]
    Malformed,
    #[error("the token names no key, or a key this service does not hold")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is not signed with EdDSA")]
    WrongAlgorithm,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is not an access token")]
    WrongType,
}

/// Why a key or a persisted key ring could not be loaded. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error(
        "the key ring document is not valid JSON of the expected shape (line {line}, column {column})"
    )]
    Malformed { line: usize, column: usize },
    #[error("unsupported key ring format {0}")]
    UnsupportedFormat(u32),
    #[error("key id {0:?} is empty, too long or not printable ASCII")]
    InvalidKid(String),
    #[error("key {kid:?} is not a PKCS#8 Ed25519 private key")]
    InvalidPrivateKey { kid: String },
    #[error("key {kid:?} is not a base64url Ed25519 public key")]
    InvalidPublicKey { kid: String },
    #[error("key id {0:?} appears twice in the key ring")]
    DuplicateKid(String),
}

/// An Ed25519 private key with its key id (`kid`) and creation time. `Debug` shows the kid only.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    created_at: OffsetDateTime,
    key: ed::SigningKey,
    /// The same key in the form `jsonwebtoken` signs with (PKCS#8 DER), built once.
    encoding: EncodingKey,
}

impl SigningKey {
    /// A new random key whose kid is its RFC 7638 JWK thumbprint, so that a kid can never be
    /// reused for a different key.
    pub fn generate(now: OffsetDateTime) -> SigningKey {
        let mut seed = Zeroizing::new([0u8; ed::SECRET_KEY_LENGTH]);
        rand::rng().fill_bytes(&mut seed[..]);
        let key = ed::SigningKey::from_bytes(&seed);
        let kid = thumbprint(&key.verifying_key());
        SigningKey::from_parts(kid, now, key)
    }

    /// A key read back from the PEM written by [`SigningKey::to_pkcs8_pem`] (or by
    /// `openssl genpkey -algorithm ed25519`).
    pub fn from_pkcs8_pem(
        kid: impl Into<String>,
        created_at: OffsetDateTime,
        pem: &str,
    ) -> Result<SigningKey, KeyRingError> {
        let kid = valid_kid(kid.into())?;
        let key = ed::SigningKey::from_pkcs8_pem(pem)
            .map_err(|_| KeyRingError::InvalidPrivateKey { kid: kid.clone() })?;
        Ok(SigningKey::from_parts(kid, created_at, key))
    }

    fn from_parts(kid: String, created_at: OffsetDateTime, key: ed::SigningKey) -> SigningKey {
        let encoding = EncodingKey::from_ed_der(pkcs8_der(&key).as_bytes());
        SigningKey {
            kid,
            created_at,
            key,
            encoding,
        }
    }

    /// The private key as PKCS#8 PEM, for a file only the server can read (mode 0600).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        pkcs8_der(&self.key)
            .to_pem("PRIVATE KEY", LineEnding::LF)
            // Only a DER document longer than the PEM encoder's limits could fail, and a PKCS#8
            // Ed25519 key is 83 bytes.
            .expect("a PKCS#8 Ed25519 key always encodes as PEM")
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    fn verifying_key(&self) -> ed::VerifyingKey {
        self.key.verifying_key()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn pkcs8_der(key: &ed::SigningKey) -> ed::pkcs8::SecretDocument {
    // Encoding a 32-byte seed and its public key into a fixed-shape ASN.1 structure cannot fail.
    key.to_pkcs8_der()
        .expect("an Ed25519 key always encodes as PKCS#8")
}

/// The RFC 7638 thumbprint of an Ed25519 public key: base64url(SHA-256) of the JWK's required
/// members in lexicographic order.
fn thumbprint(key: &ed::VerifyingKey) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(key.as_bytes())
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Kids travel in token headers and JWKS documents: keep them short and printable.
fn valid_kid(kid: String) -> Result<String, KeyRingError> {
    let printable = kid.bytes().all(|b| b.is_ascii_graphic());
    if kid.is_empty() || kid.len() > 128 || !printable {
        return Err(KeyRingError::InvalidKid(kid));
    }
    Ok(kid)
}

/// A key that no longer signs but still verifies tokens it signed before it was retired. Only its
/// public half is kept.
#[derive(Debug, Clone)]
struct RetiredKey {
    kid: String,
    created_at: OffsetDateTime,
    retired_at: OffsetDateTime,
    public: ed::VerifyingKey,
}

/// The next signing key: published (in the JWK Set, and verifying) from the moment it is added,
/// signing from `signs_from`.
#[derive(Clone)]
struct NextKey {
    key: SigningKey,
    signs_from: OffsetDateTime,
}

/// The signing key in use, the next one (published before it signs, so that every verifier knows
/// it by then), and the retired keys that must still verify. A retired key is kept until every
/// token it can have signed has expired: `retired_at + max_token_ttl` (plus the leeway).
///
/// `Debug` shows kids only. The document from [`KeyRing::to_json`] holds the private keys: store
/// it like one (mode 0600), never in an event.
#[derive(Clone)]
pub struct KeyRing {
    current: SigningKey,
    next: Option<NextKey>,
    retired: Vec<RetiredKey>,
    max_token_ttl: Duration,
}

impl KeyRing {
    /// A ring around `current`. `max_token_ttl` is the longest lifetime of any token these keys
    /// sign; [`Issuer::sign`] never issues a token that outlives it. It is clamped to between zero
    /// and [`MAX_TOKEN_TTL`], which keeps the date arithmetic far from overflow.
    pub fn new(current: SigningKey, max_token_ttl: Duration) -> KeyRing {
        KeyRing {
            current,
            next: None,
            retired: Vec::new(),
            max_token_ttl: max_token_ttl.clamp(Duration::ZERO, MAX_TOKEN_TTL),
        }
    }

    /// A ring with a freshly generated key.
    pub fn generate(now: OffsetDateTime, max_token_ttl: Duration) -> KeyRing {
        KeyRing::new(SigningKey::generate(now), max_token_ttl)
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    pub fn max_token_ttl(&self) -> Duration {
        self.max_token_ttl
    }

    /// Lets these keys sign tokens that live `ttl` (clamped like [`KeyRing::new`]'s), raising
    /// `max_token_ttl` if it is shorter; returns whether it changed. It is never lowered: retired
    /// keys must keep verifying the longer-lived tokens already issued, and a shorter lifetime
    /// is the [`Issuer`]'s to choose. (A retired key then stays published for up to the longest
    /// lifetime ever allowed after its retirement, at most [`MAX_TOKEN_TTL`].)
    pub fn allow_token_ttl(&mut self, ttl: Duration) -> bool {
        let ttl = ttl.clamp(Duration::ZERO, MAX_TOKEN_TTL);
        if ttl <= self.max_token_ttl {
            return false;
        }
        self.max_token_ttl = ttl;
        true
    }

    /// The kids of every key that verifies, current first, then the next one, then the retired.
    pub fn kids(&self) -> Vec<&str> {
        std::iter::once(self.current.kid.as_str())
            .chain(self.next.iter().map(|n| n.key.kid.as_str()))
            .chain(self.retired.iter().map(|k| k.kid.as_str()))
            .collect()
    }

    /// The key that signs at `now`: the next key once its time has come (even before
    /// [`KeyRing::promote_due`] records that in the ring), the current one before.
    pub fn signing_key(&self, now: OffsetDateTime) -> &SigningKey {
        match &self.next {
            Some(next) if now >= next.signs_from => &next.key,
            _ => &self.current,
        }
    }

    /// The next key and the moment it starts signing, if one is staged.
    pub fn next(&self) -> Option<(&SigningKey, OffsetDateTime)> {
        self.next.as_ref().map(|n| (&n.key, n.signs_from))
    }

    /// Stages a new key that is published from now on and signs from `signs_from`; if a key is
    /// staged already, keeps it. Returns the staged key and when it signs.
    pub fn stage_next(
        &mut self,
        now: OffsetDateTime,
        signs_from: OffsetDateTime,
    ) -> (&SigningKey, OffsetDateTime) {
        let next = self.next.get_or_insert_with(|| NextKey {
            key: SigningKey::generate(now),
            signs_from: signs_from.max(now),
        });
        (&next.key, next.signs_from)
    }

    /// Makes the next key current once its time has come: the current one is retired as of the
    /// moment the next one started signing. Returns whether it did.
    pub fn promote_due(&mut self, now: OffsetDateTime) -> bool {
        match self.next.take() {
            Some(next) if now >= next.signs_from => {
                self.retire_current(next.key, next.signs_from);
                true
            }
            other => {
                self.next = other;
                false
            }
        }
    }

    /// Starts signing with a new key at once (the staged next key, if there is one); the old one
    /// is retired at `now` and verifies until pruned.
    pub fn rotate(&mut self, now: OffsetDateTime) -> &SigningKey {
        let next = match self.next.take() {
            Some(next) => next.key,
            None => SigningKey::generate(now),
        };
        self.retire_current(next, now);
        &self.current
    }

    fn retire_current(&mut self, next: SigningKey, retired_at: OffsetDateTime) {
        let old = std::mem::replace(&mut self.current, next);
        self.retired.push(RetiredKey {
            public: old.verifying_key(),
            kid: old.kid,
            created_at: old.created_at,
            retired_at,
        });
    }

    /// Drops the retired keys that can no longer have a valid token outstanding; returns how many.
    pub fn prune(&mut self, now: OffsetDateTime) -> usize {
        let before = self.retired.len();
        let keep_for = self.max_token_ttl + CLOCK_LEEWAY;
        self.retired
            .retain(|k| now < k.retired_at.saturating_add(keep_for));
        before - self.retired.len()
    }

    /// The public keys as a JWK Set (RFC 7517 §5, OKP keys per RFC 8037 §2), for
    /// `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .verifying_keys()
            .map(|(kid, key)| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
                    "kid": kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    fn verifying_keys(&self) -> impl Iterator<Item = (&str, ed::VerifyingKey)> {
        std::iter::once((self.current.kid.as_str(), self.current.verifying_key()))
            .chain(
                self.next
                    .iter()
                    .map(|n| (n.key.kid.as_str(), n.key.verifying_key())),
            )
            .chain(self.retired.iter().map(|k| (k.kid.as_str(), k.public)))
    }

    /// Whether a key with this id verifies.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.current.kid == kid
            || self.next.as_ref().is_some_and(|n| n.key.kid == kid)
            || self.retired.iter().any(|k| k.kid == kid)
    }

    fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        self.verifying_keys()
            .find(|(k, _)| *k == kid)
            .map(|(_, key)| DecodingKey::from_ed_der(key.as_bytes()))
    }

    /// The ring as a JSON document for persistence. It contains the current private key as PEM
    /// (retired keys are stored by their public key only): it is a secret.
    pub fn to_json(&self) -> Zeroizing<String> {
        let document = KeyRingDocument {
            format: KEY_RING_FORMAT,
            max_token_ttl_seconds: self.max_token_ttl.whole_seconds(),
            current: StoredSigningKey {
                kid: self.current.kid.clone(),
                created_at: self.current.created_at,
                private_key_pem: self.current.to_pkcs8_pem().to_string(),
            },
            next: self.next.as_ref().map(|n| StoredNextKey {
                key: StoredSigningKey {
                    kid: n.key.kid.clone(),
                    created_at: n.key.created_at,
                    private_key_pem: n.key.to_pkcs8_pem().to_string(),
                },
                signs_from: n.signs_from,
            }),
            retired: self
                .retired
                .iter()
                .map(|k| StoredRetiredKey {
                    kid: k.kid.clone(),
                    created_at: k.created_at,
                    retired_at: k.retired_at,
                    public_key: URL_SAFE_NO_PAD.encode(k.public.as_bytes()),
                })
                .collect(),
        };
        // Strings, integers and RFC 3339 dates always serialise.
        Zeroizing::new(
            serde_json::to_string_pretty(&document).expect("a key ring always serialises"),
        )
    }

    /// Reads a document written by [`KeyRing::to_json`]. Errors never quote the document.
    pub fn from_json(document: &str) -> Result<KeyRing, KeyRingError> {
        let document: KeyRingDocument =
            serde_json::from_str(document).map_err(|e| KeyRingError::Malformed {
                line: e.line(),
                column: e.column(),
            })?;
        if document.format != KEY_RING_FORMAT {
            return Err(KeyRingError::UnsupportedFormat(document.format));
        }
        let current = SigningKey::from_pkcs8_pem(
            document.current.kid,
            document.current.created_at,
            &document.current.private_key_pem,
        )?;
        let mut seen = HashSet::from([current.kid.clone()]);
        let next = match document.next {
            None => None,
            Some(stored) => {
                let key = SigningKey::from_pkcs8_pem(
                    stored.key.kid,
                    stored.key.created_at,
                    &stored.key.private_key_pem,
                )?;
                if !seen.insert(key.kid.clone()) {
                    return Err(KeyRingError::DuplicateKid(key.kid));
                }
                Some(NextKey {
                    key,
                    signs_from: stored.signs_from,
                })
            }
        };
        let mut retired = Vec::with_capacity(document.retired.len());
        for stored in document.retired {
            let kid = valid_kid(stored.kid)?;
            if !seen.insert(kid.clone()) {
                return Err(KeyRingError::DuplicateKid(kid));
            }
            let public = URL_SAFE_NO_PAD
                .decode(&stored.public_key)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .and_then(|bytes| ed::VerifyingKey::from_bytes(&bytes).ok())
                .ok_or_else(|| KeyRingError::InvalidPublicKey { kid: kid.clone() })?;
            retired.push(RetiredKey {
                kid,
                created_at: stored.created_at,
                retired_at: stored.retired_at,
                public,
            });
        }
        let mut ring = KeyRing::new(current, Duration::seconds(document.max_token_ttl_seconds));
        ring.retired = retired;
        ring.next = next;
        Ok(ring)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("kids", &self.kids())
            .field("max_token_ttl", &self.max_token_ttl)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyRingDocument {
    format: u32,
    max_token_ttl_seconds: i64,
    current: StoredSigningKey,
    /// Absent in documents written before next keys existed (and when none is staged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<StoredNextKey>,
    retired: Vec<StoredRetiredKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredNextKey {
    #[serde(flatten)]
    key: StoredSigningKey,
    #[serde(with = "time::serde::rfc3339")]
    signs_from: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct StoredSigningKey {
    kid: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    private_key_pem: String,
}

#[derive(Serialize, Deserialize)]
struct StoredRetiredKey {
    kid: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    retired_at: OffsetDateTime,
    /// base64url of the 32-byte public key, as in a JWK's `x`.
    public_key: String,
}

/// The claims of an access token (RFC 9068 §2.2 plus `tid`, `sid` and `typ`). Times are unix
/// seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user.
    pub sub: String,
    /// The tenant the token acts in.
    pub tid: String,
    /// The session the token was minted for, so that revoking a session can be checked. Empty
    /// (and left out) for an application's token for itself (client credentials).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// A unique id (ULID) for this token.
    pub jti: String,
    /// Always [`ACCESS_TOKEN_CLAIM_TYPE`].
    pub typ: String,
    /// How the session's sign-in proved who the user is (RFC 8176 authentication method
    /// references, as RFC 9068 §2.2.1 allows): `pwd`, `otp`, `pop` (a passkey), `mfa`. Absent
    /// when unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The application the token was issued to (RFC 9068 §2.2), for an OpenID Connect client's
    /// token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The scopes granted, space-separated (RFC 9068 §2.2.3), for an OpenID Connect client's
    /// token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Who an access token is for: the input to [`Issuer::sign`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessSubject {
    pub sub: String,
    pub tid: String,
    pub sid: String,
    /// The sign-in's authentication method references (the `amr` claim; empty: none).
    pub amr: Vec<String>,
    /// The OpenID Connect client the token is issued to, if any.
    pub client_id: Option<String>,
    /// The scopes granted to that client, space-separated.
    pub scope: Option<String>,
}

/// Signs and verifies access tokens for one issuer and one audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub iss: String,
    pub aud: String,
    /// The lifetime of a new token; capped at the key ring's `max_token_ttl`.
    pub ttl: Duration,
}

/// The part of the JOSE header looked at before the signature is checked. Parsed by hand rather
/// than through `jsonwebtoken::Header` so that `alg: none` and unknown algorithms are reported as
/// [`TokenError::WrongAlgorithm`] instead of an opaque parse failure.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

impl Issuer {
    pub fn new(iss: impl Into<String>, aud: impl Into<String>, ttl: Duration) -> Issuer {
        Issuer {
            iss: iss.into(),
            aud: aud.into(),
            ttl,
        }
    }

    /// A signed access token for `subject`, valid from `now` for `min(ttl, ring.max_token_ttl())`.
    pub fn sign(&self, ring: &KeyRing, subject: &AccessSubject, now: OffsetDateTime) -> String {
        let ttl = self.ttl.min(ring.max_token_ttl).max(Duration::ZERO);
        let iat = now.unix_timestamp();
        let claims = AccessClaims {
            iss: self.iss.clone(),
            aud: self.aud.clone(),
            sub: subject.sub.clone(),
            tid: subject.tid.clone(),
            sid: subject.sid.clone(),
            exp: now.saturating_add(ttl).unix_timestamp(),
            iat,
            nbf: None,
            jti: new_jti(now),
            typ: ACCESS_TOKEN_CLAIM_TYPE.to_owned(),
            amr: subject.amr.clone(),
            client_id: subject.client_id.clone(),
            scope: subject.scope.clone(),
        };
        let key = ring.signing_key(now);
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_HEADER_TYPE.to_owned());
        header.kid = Some(key.kid.clone());
        // The key was encoded by ed25519-dalek and is decoded by it again; the claims are strings
        // and integers. Neither step can fail.
        jsonwebtoken::encode(&header, &claims, &key.encoding)
            .expect("signing with a valid Ed25519 key cannot fail")
    }

    /// The claims of `token` if it is an access token from this issuer for this audience, signed
    /// by a key in `ring` with EdDSA, and valid at `now` (± [`CLOCK_LEEWAY`]).
    pub fn verify(
        &self,
        ring: &KeyRing,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, TokenError> {
        self.verify_signed(ring, token, now)
            .map(|(claims, _)| claims)
    }

    /// [`Issuer::verify`] through a cache of tokens verified before: a token seen before (the
    /// same bytes: the cache is keyed by their SHA-256) skips the signature check and the
    /// decoding, but is still refused once it has expired or once the key that signed it is no
    /// longer in `ring`. Only tokens that verified are cached. Revocation and suspension are the
    /// caller's to check on every request, cached or not, as with `verify`.
    pub fn verify_cached(
        &self,
        ring: &KeyRing,
        cache: &VerifiedTokens,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = cache.get(&digest) {
            if !ring.has_kid(&hit.kid) {
                cache.remove(&digest);
                return Err(TokenError::UnknownKey);
            }
            check_times(&hit.claims, now)?;
            return Ok(hit.claims.clone());
        }
        let (claims, kid) = self.verify_signed(ring, token, now)?;
        cache.insert(
            digest,
            Verified {
                claims: claims.clone(),
                kid,
            },
            now,
        );
        Ok(claims)
    }

    /// [`Issuer::verify`] for any audience: the caller checks `aud` (an OpenID Connect issuer's
    /// tokens are each for one of its clients).
    pub fn verify_any_audience(
        &self,
        ring: &KeyRing,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, TokenError> {
        self.verify_signed_for(ring, token, now, false)
            .map(|(claims, _)| claims)
    }

    /// The claims and the signing key's id of a valid token.
    fn verify_signed(
        &self,
        ring: &KeyRing,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(AccessClaims, String), TokenError> {
        self.verify_signed_for(ring, token, now, true)
    }

    fn verify_signed_for(
        &self,
        ring: &KeyRing,
        token: &str,
        now: OffsetDateTime,
        check_audience: bool,
    ) -> Result<(AccessClaims, String), TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: RawHeader = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenError::Malformed)?;

        // The algorithm is pinned before a key is even looked up.
        if header.alg.as_deref() != Some("EdDSA") {
            return Err(TokenError::WrongAlgorithm);
        }
        // `crit` names extensions the verifier must understand (RFC 7515 §4.1.11); we know none.
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| ring.decoding_key(kid))
            .ok_or(TokenError::UnknownKey)?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        // Every time and audience check below is ours, against `now`, not the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::MissingAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::UnsupportedAlgorithm => TokenError::WrongAlgorithm,
                _ => TokenError::Malformed,
            })?
            .claims;

        if !header
            .typ
            .as_deref()
            .is_some_and(is_access_token_header_type)
        {
            return Err(TokenError::WrongType);
        }
        if claims.typ != ACCESS_TOKEN_CLAIM_TYPE {
            return Err(TokenError::WrongType);
        }
        if claims.iss != self.iss {
            return Err(TokenError::WrongIssuer);
        }
        if check_audience && claims.aud != self.aud {
            return Err(TokenError::WrongAudience);
        }
        check_times(&claims, now)?;
        let kid = header.kid.unwrap_or_default();
        Ok((claims, kid))
    }
}

/// Signs `claims` with the ring's current key (EdDSA, `kid` set), with the header type `typ`:
/// an OpenID Connect ID token (`JWT`) or logout token (`logout+jwt`).
pub fn sign_jwt<T: Serialize>(
    ring: &KeyRing,
    typ: &str,
    claims: &T,
    now: OffsetDateTime,
) -> String {
    let key = ring.signing_key(now);
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(typ.to_owned());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding)
        .expect("signing JSON claims with a valid Ed25519 key cannot fail")
}

/// The JOSE header `typ` of a logout token (OpenID Connect Back-Channel Logout 1.0 §2.4), which
/// keeps it from being taken for an ID token or an access token signed by the same keys.
pub const LOGOUT_TOKEN_HEADER_TYPE: &str = "logout+jwt";

/// The one member of a logout token's `events` claim (Back-Channel Logout §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How long a logout token is accepted: it is posted as soon as it is made, so two minutes are
/// plenty, and a copy that leaks is soon worthless.
pub const LOGOUT_TOKEN_TTL: Duration = Duration::minutes(2);

/// The claims of a logout token (Back-Channel Logout §2.4): who signed out (`sub`) of which
/// session (`sid`, the value the session's ID tokens carry), for which application (`aud`).
/// It never has a `nonce` (§2.4 forbids one, so that it cannot pass for an ID token). Times are
/// unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutClaims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// A unique id (ULID) for this token, so that an application can refuse a replay.
    pub jti: String,
    pub sub: String,
    pub sid: String,
    /// `{"http://schemas.openid.net/event/backchannel-logout": {}}`.
    pub events: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

impl LogoutClaims {
    /// The claims of a new logout token made at `now`, with its own `jti`.
    pub fn new(
        iss: impl Into<String>,
        aud: impl Into<String>,
        sub: impl Into<String>,
        sid: impl Into<String>,
        now: OffsetDateTime,
    ) -> LogoutClaims {
        LogoutClaims {
            iss: iss.into(),
            aud: aud.into(),
            iat: now.unix_timestamp(),
            exp: (now + LOGOUT_TOKEN_TTL).unix_timestamp(),
            jti: new_jti(now),
            sub: sub.into(),
            sid: sid.into(),
            events: [(BACKCHANNEL_LOGOUT_EVENT.to_owned(), serde_json::Map::new())]
                .into_iter()
                .collect(),
        }
    }

    /// The logout token: these claims signed like an ID token, with the header type
    /// [`LOGOUT_TOKEN_HEADER_TYPE`].
    pub fn sign(&self, ring: &KeyRing, now: OffsetDateTime) -> String {
        sign_jwt(ring, LOGOUT_TOKEN_HEADER_TYPE, self, now)
    }
}

/// The claims of a JWT of header type `typ` whose EdDSA signature verifies with a key of `ring`
/// (no time or audience check: for an `id_token_hint`, which may have expired).
pub fn verify_signature<T: serde::de::DeserializeOwned>(
    ring: &KeyRing,
    token: &str,
    typ: &str,
) -> Option<T> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let header: RawHeader = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|json| serde_json::from_slice(&json).ok())?;
    if header.alg.as_deref() != Some("EdDSA")
        || header.crit.is_some()
        || header.typ.as_deref() != Some(typ)
    {
        return None;
    }
    let key = ring.decoding_key(header.kid.as_deref()?)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    jsonwebtoken::decode::<T>(token, &key, &validation)
        .ok()
        .map(|data| data.claims)
}

/// Whether a token's claims are valid at `now` (± [`CLOCK_LEEWAY`]).
fn check_times(claims: &AccessClaims, now: OffsetDateTime) -> Result<(), TokenError> {
    let now = now.unix_timestamp();
    let leeway = CLOCK_LEEWAY.whole_seconds();
    if now >= claims.exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    let not_before = claims.nbf.unwrap_or(claims.iat).max(claims.iat);
    if not_before > now.saturating_add(leeway) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// A token that verified: its claims and the id of the key that signed it.
#[derive(Debug)]
pub struct Verified {
    claims: AccessClaims,
    kid: String,
}

/// Shards of [`VerifiedTokens`], so that concurrent requests rarely wait on one lock.
const SHARDS: usize = 16;

/// A bounded cache of verified access tokens for [`Issuer::verify_cached`], keyed by the
/// SHA-256 of the token (never the token itself). A full shard first drops its expired tokens and,
/// if that frees nothing, is emptied: the cache never holds more than its capacity, and a miss
/// costs one signature check.
pub struct VerifiedTokens {
    shards: Vec<std::sync::Mutex<std::collections::HashMap<[u8; 32], std::sync::Arc<Verified>>>>,
    per_shard: usize,
}

impl VerifiedTokens {
    /// A cache of at most `capacity` tokens (at least one per shard).
    pub fn new(capacity: usize) -> VerifiedTokens {
        VerifiedTokens {
            shards: (0..SHARDS).map(|_| Default::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(
        &self,
        digest: &[u8; 32],
    ) -> &std::sync::Mutex<std::collections::HashMap<[u8; 32], std::sync::Arc<Verified>>> {
        &self.shards[usize::from(digest[0]) % SHARDS]
    }

    fn get(&self, digest: &[u8; 32]) -> Option<std::sync::Arc<Verified>> {
        lock(self.shard(digest)).get(digest).cloned()
    }

    fn remove(&self, digest: &[u8; 32]) {
        lock(self.shard(digest)).remove(digest);
    }

    fn insert(&self, digest: [u8; 32], verified: Verified, now: OffsetDateTime) {
        let mut shard = lock(self.shard(&digest));
        if shard.len() >= self.per_shard {
            shard.retain(|_, v| check_times(&v.claims, now).is_ok());
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(digest, std::sync::Arc::new(verified));
    }
}

impl fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("len", &self.len())
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

/// A poisoned shard only means another thread panicked while holding it; its map is still a
/// valid cache.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_access_token_header_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case(ACCESS_TOKEN_HEADER_TYPE)
        || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// A ULID from `now` and 80 random bits.
fn new_jti(now: OffsetDateTime) -> String {
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut random = [0u8; 16];
    rand::rng().fill_bytes(&mut random);
    Ulid::from_parts(millis, u128::from_le_bytes(random)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn issuer() -> Issuer {
        Issuer::new("https://id.example.test", "idstream", Duration::minutes(15))
    }

    fn subject() -> AccessSubject {
        AccessSubject {
            sub: "01J0USER".into(),
            tid: "acme".into(),
            sid: "01J0SESSION".into(),
            amr: vec!["pop".into(), "mfa".into()],
            ..AccessSubject::default()
        }
    }

    fn ring() -> KeyRing {
        KeyRing::generate(T0, Duration::hours(1))
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn claims_at(now: OffsetDateTime) -> AccessClaims {
        AccessClaims {
            iss: "https://id.example.test".into(),
            aud: "idstream".into(),
            sub: "01J0USER".into(),
            tid: "acme".into(),
            sid: "01J0SESSION".into(),
            exp: (now + Duration::minutes(15)).unix_timestamp(),
            iat: now.unix_timestamp(),
            nbf: None,
            jti: new_jti(now),
            typ: ACCESS_TOKEN_CLAIM_TYPE.into(),
            amr: Vec::new(),
            client_id: None,
            scope: None,
        }
    }

    /// A token signed properly by `key` with any header `typ` and any claims.
    fn signed(key: &SigningKey, typ: Option<&str>, claims: &AccessClaims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = typ.map(str::to_owned);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    /// `header.payload.` plus a signature computed by hand.
    fn hand_made(
        header: serde_json::Value,
        claims: &AccessClaims,
        sign: impl Fn(&[u8]) -> Vec<u8>,
    ) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(serde_json::to_string(claims).unwrap().as_bytes())
        );
        let signature = sign(input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }

    #[test]
    fn a_token_carries_the_sign_in_methods_when_known_and_omits_the_claim_otherwise() {
        let ring = ring();
        let token = issuer().sign(&ring, &subject(), T0);
        let claims = issuer().verify(&ring, &token, T0).unwrap();
        assert_eq!(claims.amr, ["pop", "mfa"]);
        let unknown = AccessSubject {
            amr: Vec::new(),
            ..subject()
        };
        let token = issuer().sign(&ring, &unknown, T0);
        let payload = token.split('.').nth(1).unwrap();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert!(payload.get("amr").is_none(), "{payload}");
        assert!(issuer().verify(&ring, &token, T0).unwrap().amr.is_empty());
    }

    #[test]
    fn a_cached_verification_answers_like_a_full_one_until_the_token_expires() {
        let ring = ring();
        let cache = VerifiedTokens::new(64);
        let token = issuer().sign(&ring, &subject(), T0);
        let first = issuer().verify_cached(&ring, &cache, &token, T0).unwrap();
        assert_eq!(cache.len(), 1);
        let again = issuer()
            .verify_cached(&ring, &cache, &token, T0 + Duration::minutes(5))
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(first, issuer().verify(&ring, &token, T0).unwrap());
        // Past its expiry (and the leeway) the cached token is refused like any other.
        let late = T0 + Duration::minutes(15) + CLOCK_LEEWAY;
        assert_eq!(
            issuer().verify_cached(&ring, &cache, &token, late),
            Err(TokenError::Expired)
        );
        assert_eq!(
            issuer().verify(&ring, &token, late),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn the_cache_never_serves_a_token_it_did_not_verify() {
        let ring = ring();
        let cache = VerifiedTokens::new(64);
        let token = issuer().sign(&ring, &subject(), T0);
        issuer().verify_cached(&ring, &cache, &token, T0).unwrap();
        // The same claims with another signature, and a token of another ring: both checked.
        let (input, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{input}.{}", b64(&[7u8; 64]));
        assert_eq!(
            issuer().verify_cached(&ring, &cache, &forged, T0),
            Err(TokenError::BadSignature)
        );
        let other_ring = KeyRing::generate(T0, Duration::hours(1));
        let foreign = issuer().sign(&other_ring, &subject(), T0);
        assert_eq!(
            issuer().verify_cached(&ring, &cache, &foreign, T0),
            Err(TokenError::UnknownKey)
        );
        // Failures are not cached.
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_cached_token_dies_with_the_key_that_signed_it() {
        let mut ring = ring();
        let cache = VerifiedTokens::new(64);
        let token = issuer().sign(&ring, &subject(), T0);
        issuer().verify_cached(&ring, &cache, &token, T0).unwrap();
        ring.rotate(T0);
        // Retired but not pruned: still verifies.
        issuer().verify_cached(&ring, &cache, &token, T0).unwrap();
        let pruned_at = T0 + ring.max_token_ttl() + CLOCK_LEEWAY;
        assert_eq!(ring.prune(pruned_at), 1);
        assert_eq!(
            issuer().verify_cached(&ring, &cache, &token, T0),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(cache.len(), 0, "the dead entry was dropped");
    }

    #[test]
    fn the_cache_holds_no_more_than_its_capacity() {
        let ring = ring();
        let cache = VerifiedTokens::new(32);
        for n in 0..500 {
            let subject = AccessSubject {
                sub: format!("01J0USER{n}"),
                ..subject()
            };
            let token = issuer().sign(&ring, &subject, T0);
            issuer().verify_cached(&ring, &cache, &token, T0).unwrap();
            assert!(cache.len() <= 32, "{} cached", cache.len());
        }
        assert!(!cache.is_empty());
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_claims() {
        let ring = ring();
        let token = issuer().sign(&ring, &subject(), T0);
        let claims = issuer()
            .verify(&ring, &token, T0 + Duration::minutes(5))
            .unwrap();
        assert_eq!(claims.iss, "https://id.example.test");
        assert_eq!(claims.aud, "idstream");
        assert_eq!(claims.sub, "01J0USER");
        assert_eq!(claims.tid, "acme");
        assert_eq!(claims.sid, "01J0SESSION");
        assert_eq!(claims.iat, T0.unix_timestamp());
        assert_eq!(claims.exp, (T0 + Duration::minutes(15)).unix_timestamp());
        assert_eq!(claims.typ, "access");
        assert!(Ulid::from_string(&claims.jti).is_ok());

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(ring.current().kid()));
    }

    #[test]
    fn a_logout_token_carries_the_back_channel_logout_claims_and_no_nonce() {
        let ring = ring();
        let claims = LogoutClaims::new(
            "https://id.example.test/t/acme",
            "01J0CLIENT",
            "01J0USER",
            "01J0SESSION",
            T0,
        );
        let token = claims.sign(&ring, T0);

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
        assert_eq!(header.kid.as_deref(), Some(ring.current().kid()));
        // Signed by the ring, and only as a logout token.
        let verified: LogoutClaims =
            verify_signature(&ring, &token, LOGOUT_TOKEN_HEADER_TYPE).unwrap();
        assert_eq!(verified, claims);
        assert!(verify_signature::<LogoutClaims>(&ring, &token, "JWT").is_none());

        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(payload["iss"], "https://id.example.test/t/acme");
        assert_eq!(payload["aud"], "01J0CLIENT");
        assert_eq!(payload["sub"], "01J0USER");
        assert_eq!(payload["sid"], "01J0SESSION");
        assert_eq!(payload["iat"], T0.unix_timestamp());
        assert_eq!(payload["exp"], (T0 + Duration::minutes(2)).unix_timestamp());
        assert_eq!(
            payload["events"],
            serde_json::json!({"http://schemas.openid.net/event/backchannel-logout": {}})
        );
        assert!(Ulid::from_string(payload["jti"].as_str().unwrap()).is_ok());
        assert!(payload.get("nonce").is_none(), "{payload}");
        assert_eq!(payload.as_object().unwrap().len(), 8, "{payload}");
    }

    #[test]
    fn each_logout_token_gets_its_own_jti() {
        let a = LogoutClaims::new("i", "a", "u", "s", T0);
        let b = LogoutClaims::new("i", "a", "u", "s", T0);
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn each_token_gets_its_own_jti() {
        let ring = ring();
        let a = issuer()
            .verify(&ring, &issuer().sign(&ring, &subject(), T0), T0)
            .unwrap();
        let b = issuer()
            .verify(&ring, &issuer().sign(&ring, &subject(), T0), T0)
            .unwrap();
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn a_token_expires_after_its_ttl_plus_the_leeway_and_not_before() {
        let ring = ring();
        let token = issuer().sign(&ring, &subject(), T0);
        let exp = T0 + Duration::minutes(15);
        assert!(
            issuer()
                .verify(&ring, &token, exp + CLOCK_LEEWAY - Duration::seconds(1))
                .is_ok()
        );
        assert_eq!(
            issuer().verify(&ring, &token, exp + CLOCK_LEEWAY),
            Err(TokenError::Expired)
        );
        assert_eq!(
            issuer().verify(&ring, &token, exp + Duration::days(365)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn the_token_lifetime_never_exceeds_what_the_ring_keeps_retired_keys_for() {
        let ring = KeyRing::generate(T0, Duration::minutes(5));
        let token = issuer().sign(&ring, &subject(), T0);
        let claims = issuer().verify(&ring, &token, T0).unwrap();
        assert_eq!(claims.exp, (T0 + Duration::minutes(5)).unix_timestamp());
    }

    #[test]
    fn absurd_lifetimes_are_clamped_instead_of_overflowing() {
        assert_eq!(
            KeyRing::generate(T0, Duration::seconds(-5)).max_token_ttl(),
            Duration::ZERO
        );
        let mut ring = KeyRing::generate(T0, Duration::MAX);
        assert_eq!(ring.max_token_ttl(), MAX_TOKEN_TTL);
        let forever = Issuer::new("https://id.example.test", "idstream", Duration::MAX);
        let token = forever.sign(&ring, &subject(), T0);
        let claims = forever.verify(&ring, &token, T0).unwrap();
        assert_eq!(claims.exp, (T0 + MAX_TOKEN_TTL).unix_timestamp());
        ring.rotate(OffsetDateTime::new_utc(
            time::Date::MAX,
            time::Time::MIDNIGHT,
        ));
        assert_eq!(ring.prune(T0), 0);
    }

    #[test]
    fn a_token_from_the_future_is_not_valid_yet() {
        let ring = ring();
        let token = issuer().sign(&ring, &subject(), T0);
        assert!(issuer().verify(&ring, &token, T0 - CLOCK_LEEWAY).is_ok());
        assert_eq!(
            issuer().verify(&ring, &token, T0 - CLOCK_LEEWAY - Duration::seconds(1)),
            Err(TokenError::NotYetValid)
        );

        let mut claims = claims_at(T0);
        claims.nbf = Some((T0 + Duration::minutes(2)).unix_timestamp());
        let token = signed(ring.current(), Some("at+jwt"), &claims);
        assert_eq!(
            issuer().verify(&ring, &token, T0),
            Err(TokenError::NotYetValid)
        );
        assert!(
            issuer()
                .verify(&ring, &token, T0 + Duration::minutes(2))
                .is_ok()
        );
    }

    #[test]
    fn a_rotated_out_key_still_verifies_until_it_is_pruned() {
        let mut ring = ring();
        let old_token = issuer().sign(&ring, &subject(), T0);
        let old_kid = ring.current().kid().to_owned();

        let rotated_at = T0 + Duration::minutes(1);
        let new_kid = ring.rotate(rotated_at).kid().to_owned();
        assert_ne!(old_kid, new_kid);
        assert_eq!(ring.kids(), vec![new_kid.as_str(), old_kid.as_str()]);

        let new_token = issuer().sign(&ring, &subject(), rotated_at);
        let header = jsonwebtoken::decode_header(&new_token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
        assert!(issuer().verify(&ring, &old_token, rotated_at).is_ok());
        assert!(issuer().verify(&ring, &new_token, rotated_at).is_ok());

        // Still needed: a token signed just before the rotation may be outstanding.
        let keep_until = rotated_at + ring.max_token_ttl() + CLOCK_LEEWAY;
        assert_eq!(ring.prune(keep_until - Duration::seconds(1)), 0);
        assert_eq!(ring.prune(keep_until), 1);
        assert_eq!(ring.kids(), vec![new_kid.as_str()]);
        assert_eq!(
            issuer().verify(&ring, &old_token, rotated_at),
            Err(TokenError::UnknownKey)
        );
        assert!(issuer().verify(&ring, &new_token, rotated_at).is_ok());
    }

    #[test]
    fn a_staged_key_is_published_before_it_signs_and_the_one_it_replaces_verifies_until_pruned() {
        let mut ring = ring();
        let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let old_kid = ring.current().kid().to_owned();
        let before = issuer().sign(&ring, &subject(), T0);

        let signs_from = T0 + Duration::minutes(10);
        let (next, at) = ring.stage_next(T0, signs_from);
        let next_kid = next.kid().to_owned();
        assert_eq!(at, signs_from);
        // Published and verifying at once, signing only from its time.
        assert_eq!(ring.kids(), vec![old_kid.as_str(), next_kid.as_str()]);
        assert!(ring.jwks().to_string().contains(&next_kid));
        let waiting = issuer().sign(&ring, &subject(), signs_from - Duration::seconds(1));
        assert_eq!(kid_of(&waiting), old_kid);
        // Staging again keeps the staged key and its time.
        let (again, again_at) = ring.stage_next(T0 + Duration::minutes(1), T0 + Duration::hours(1));
        assert_eq!((again.kid(), again_at), (next_kid.as_str(), signs_from));
        // The stored ring keeps it.
        let stored = KeyRing::from_json(&ring.to_json()).unwrap();
        assert_eq!(
            stored.next().map(|(k, t)| (k.kid(), t)),
            Some((next_kid.as_str(), signs_from))
        );
        // From its time it signs, before the ring records the switch.
        let during = issuer().sign(&ring, &subject(), signs_from);
        assert_eq!(kid_of(&during), next_kid);

        assert!(!ring.promote_due(signs_from - Duration::seconds(1)));
        assert!(ring.promote_due(signs_from + Duration::minutes(1)));
        assert_eq!(ring.current().kid(), next_kid);
        assert!(ring.next().is_none());
        let after = issuer().sign(&ring, &subject(), signs_from + Duration::minutes(1));
        for token in [&before, &waiting, &during, &after] {
            assert!(
                issuer()
                    .verify(&ring, token, signs_from + Duration::minutes(2))
                    .is_ok()
            );
        }
        // Retired as of the moment it stopped signing, and pruned once its tokens expired.
        let keep_until = signs_from + ring.max_token_ttl() + CLOCK_LEEWAY;
        assert_eq!(ring.prune(keep_until - Duration::seconds(1)), 0);
        assert_eq!(ring.prune(keep_until), 1);
        assert!(!ring.has_kid(&old_kid));
        assert_eq!(
            issuer().verify(&ring, &waiting, signs_from),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_token_signed_by_a_foreign_key_is_refused() {
        let ours = ring();
        let theirs = ring();
        let token = issuer().sign(&theirs, &subject(), T0);
        assert_eq!(
            issuer().verify(&ours, &token, T0),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_token_without_a_kid_is_refused() {
        let ring = ring();
        let token = hand_made(
            serde_json::json!({"alg": "EdDSA", "typ": "at+jwt"}),
            &claims_at(T0),
            |input| {
                use ed::Signer;
                ring.current().key.sign(input).to_bytes().to_vec()
            },
        );
        assert_eq!(
            issuer().verify(&ring, &token, T0),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_foreign_key_claiming_our_kid_fails_the_signature_check() {
        let ring = ring();
        let impostor = SigningKey::generate(T0);
        let token = hand_made(
            serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ring.current().kid()}),
            &claims_at(T0),
            |input| {
                use ed::Signer;
                impostor.key.sign(input).to_bytes().to_vec()
            },
        );
        assert_eq!(
            issuer().verify(&ring, &token, T0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_payload_or_signature_fails_the_signature_check() {
        let ring = ring();
        let token = issuer().sign(&ring, &subject(), T0);
        let parts: Vec<&str> = token.split('.').collect();

        let mut claims = claims_at(T0);
        claims.sub = "someone-else".into();
        let forged_payload = b64(serde_json::to_string(&claims).unwrap().as_bytes());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            issuer().verify(&ring, &forged, T0),
            Err(TokenError::BadSignature)
        );

        let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        signature[0] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&signature));
        assert_eq!(
            issuer().verify(&ring, &flipped, T0),
            Err(TokenError::BadSignature)
        );

        let truncated = format!("{}.{}.{}", parts[0], parts[1], b64(&signature[..10]));
        assert_eq!(
            issuer().verify(&ring, &truncated, T0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let ring = ring();
        let kid = ring.current().kid().to_owned();
        for alg in ["none", "None", "NONE"] {
            let token = hand_made(
                serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": kid}),
                &claims_at(T0),
                |_| Vec::new(),
            );
            assert!(token.ends_with('.'));
            assert_eq!(
                issuer().verify(&ring, &token, T0),
                Err(TokenError::WrongAlgorithm),
                "{alg}"
            );
        }
        let no_alg = hand_made(
            serde_json::json!({"typ": "at+jwt", "kid": kid}),
            &claims_at(T0),
            |_| Vec::new(),
        );
        assert_eq!(
            issuer().verify(&ring, &no_alg, T0),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn an_hs256_token_keyed_with_our_public_key_is_refused() {
        // The classic algorithm-confusion attack: the attacker knows the public key from the JWKS
        // and uses it as an HMAC secret, hoping the verifier feeds "the key" to HS256.
        let ring = ring();
        let public = ring.current().verifying_key();
        let kid = ring.current().kid().to_owned();
        for secret in [
            public.as_bytes().to_vec(),
            ring.jwks().to_string().into_bytes(),
        ] {
            let token = hand_made(
                serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
                &claims_at(T0),
                |input| {
                    let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
                    mac.update(input);
                    mac.finalize().into_bytes().to_vec()
                },
            );
            assert_eq!(
                issuer().verify(&ring, &token, T0),
                Err(TokenError::WrongAlgorithm)
            );
        }
    }

    #[test]
    fn an_rs256_or_es256_token_is_refused() {
        let ring = ring();
        let kid = ring.current().kid().to_owned();
        for alg in ["RS256", "ES256", "PS256", "Ed25519", "eddsa"] {
            let token = hand_made(
                serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": kid}),
                &claims_at(T0),
                |_| vec![0u8; 64],
            );
            assert_eq!(
                issuer().verify(&ring, &token, T0),
                Err(TokenError::WrongAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn a_token_with_critical_extensions_is_refused() {
        let ring = ring();
        let token = hand_made(
            serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ring.current().kid(), "crit": ["exp"]}),
            &claims_at(T0),
            |input| {
                use ed::Signer;
                ring.current().key.sign(input).to_bytes().to_vec()
            },
        );
        assert_eq!(
            issuer().verify(&ring, &token, T0),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_token_for_another_audience_or_from_another_issuer_is_refused() {
        let ring = ring();
        let token = issuer().sign(&ring, &subject(), T0);

        let mut other_audience = issuer();
        other_audience.aud = "billing".into();
        assert_eq!(
            other_audience.verify(&ring, &token, T0),
            Err(TokenError::WrongAudience)
        );

        let mut other_issuer = issuer();
        other_issuer.iss = "https://evil.example.test".into();
        assert_eq!(
            other_issuer.verify(&ring, &token, T0),
            Err(TokenError::WrongIssuer)
        );
    }

    #[test]
    fn a_token_of_another_type_is_refused() {
        let ring = ring();
        let key = ring.current();

        // A properly signed token with the generic JWT header type, or none at all.
        for typ in [Some("JWT"), Some("at+jwt+x"), None] {
            let token = signed(key, typ, &claims_at(T0));
            assert_eq!(
                issuer().verify(&ring, &token, T0),
                Err(TokenError::WrongType),
                "{typ:?}"
            );
        }
        // The long media type form is the same type.
        let token = signed(key, Some("application/AT+JWT"), &claims_at(T0));
        assert!(issuer().verify(&ring, &token, T0).is_ok());

        // The right header but a different claim type.
        let mut claims = claims_at(T0);
        claims.typ = "refresh".into();
        let token = signed(key, Some("at+jwt"), &claims);
        assert_eq!(
            issuer().verify(&ring, &token, T0),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let ring = ring();
        let token = issuer().sign(&ring, &subject(), T0);
        let parts: Vec<&str> = token.split('.').collect();
        let too_long = format!("{token}{}", "a".repeat(MAX_TOKEN_LEN));
        let header_not_json = format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]);
        let payload_not_json = format!("{}.{}.{}", parts[0], b64(b"not json"), parts[2]);
        for garbage in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!!.???.###",
            &format!("{token}.extra"),
            &too_long,
            &header_not_json,
            // The signature covers the bytes as sent, so this fails there first.
            &payload_not_json,
        ] {
            let err = issuer().verify(&ring, garbage, T0).unwrap_err();
            assert!(
                matches!(err, TokenError::Malformed | TokenError::BadSignature),
                "{garbage:.40}: {err:?}"
            );
        }

        // Signed properly but missing required claims.
        let header =
            serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ring.current().kid()});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(br#"{"sub":"x"}"#)
        );
        let signature = {
            use ed::Signer;
            ring.current().key.sign(input.as_bytes()).to_bytes()
        };
        let token = format!("{input}.{}", b64(&signature));
        assert_eq!(
            issuer().verify(&ring, &token, T0),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn errors_never_echo_the_token() {
        let ring = ring();
        let token = issuer().sign(&ring, &subject(), T0);
        let err = issuer()
            .verify(&ring, &token, T0 + Duration::days(1))
            .unwrap_err();
        for part in token.split('.') {
            assert!(!format!("{err} {err:?}").contains(part));
        }
    }

    #[test]
    fn the_jwks_lists_every_verifying_key_in_rfc_8037_shape() {
        let mut ring = ring();
        ring.rotate(T0 + Duration::minutes(1));
        let jwks = ring.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for (jwk, kid) in keys.iter().zip(ring.kids()) {
            let object = jwk.as_object().unwrap();
            let mut members: Vec<&str> = object.keys().map(String::as_str).collect();
            members.sort_unstable();
            assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"]);
            assert_eq!(jwk["kty"], "OKP");
            assert_eq!(jwk["crv"], "Ed25519");
            assert_eq!(jwk["alg"], "EdDSA");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["kid"], kid);
            let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
            assert_eq!(x.len(), 32);
            // Generated kids are RFC 7638 thumbprints of the key.
            let public = ed::VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
            assert_eq!(thumbprint(&public), kid);
        }
        // No private member (`d`) anywhere.
        assert!(!jwks.to_string().contains("\"d\""));

        // A relying party can verify with nothing but the JWKS, through jsonwebtoken's own parser.
        let token = issuer().sign(&ring, &subject(), T0 + Duration::minutes(1));
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let key = DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.set_audience(&["idstream"]);
        assert!(jsonwebtoken::decode::<AccessClaims>(&token, &key, &validation).is_ok());
    }

    #[test]
    fn the_rfc_7638_thumbprint_matches_the_published_ed25519_example() {
        // RFC 8037 §A.3: the thumbprint of the Ed25519 key in §A.2.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = ed::VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            thumbprint(&key),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn a_signing_key_survives_pem_and_its_debug_is_redacted() {
        let key = SigningKey::generate(T0);
        let pem = key.to_pkcs8_pem();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{}",
            &pem[..30]
        );
        let back = SigningKey::from_pkcs8_pem(key.kid(), T0, &pem).unwrap();
        assert_eq!(back.key.to_bytes(), key.key.to_bytes());
        assert_eq!(back.kid(), key.kid());

        let debug = format!("{key:?}");
        assert!(debug.contains("<redacted>") && debug.contains(key.kid()));
        assert!(!debug.contains(&b64(&key.key.to_bytes())));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!debug.contains(&body));

        assert_eq!(
            SigningKey::from_pkcs8_pem("k", T0, "not a pem").unwrap_err(),
            KeyRingError::InvalidPrivateKey { kid: "k".into() }
        );
        assert!(matches!(
            SigningKey::from_pkcs8_pem("", T0, &pem),
            Err(KeyRingError::InvalidKid(_))
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_pem("has space", T0, &pem),
            Err(KeyRingError::InvalidKid(_))
        ));
    }

    #[test]
    fn a_key_ring_survives_its_json_document() {
        let mut ring = ring();
        let before_rotation = issuer().sign(&ring, &subject(), T0);
        ring.rotate(T0 + Duration::minutes(1));
        let after_rotation = issuer().sign(&ring, &subject(), T0 + Duration::minutes(1));

        let document = ring.to_json();
        let back = KeyRing::from_json(&document).unwrap();
        assert_eq!(back.kids(), ring.kids());
        assert_eq!(back.max_token_ttl(), ring.max_token_ttl());
        assert_eq!(back.jwks(), ring.jwks());
        let now = T0 + Duration::minutes(2);
        assert!(issuer().verify(&back, &before_rotation, now).is_ok());
        assert!(issuer().verify(&back, &after_rotation, now).is_ok());
        // The restored ring signs with the same key.
        let token = issuer().sign(&back, &subject(), now);
        assert!(issuer().verify(&ring, &token, now).is_ok());

        let value: serde_json::Value = serde_json::from_str(&document).unwrap();
        assert_eq!(value["format"], 1);
        assert!(
            value["current"]["private_key_pem"]
                .as_str()
                .unwrap()
                .contains("PRIVATE KEY")
        );
        assert!(value["retired"][0].get("private_key_pem").is_none());
        assert!(format!("{back:?}").contains(ring.current().kid()));
        assert!(!format!("{back:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_broken_key_ring_document_is_refused_without_quoting_it() {
        let ring = ring();
        let document: serde_json::Value = serde_json::from_str(&ring.to_json()).unwrap();
        let pem = document["current"]["private_key_pem"]
            .as_str()
            .unwrap()
            .to_owned();

        let err = KeyRing::from_json(&pem).unwrap_err();
        assert!(matches!(err, KeyRingError::Malformed { .. }));
        assert!(!err.to_string().contains("PRIVATE"));

        // A private key where a number is expected must not be echoed by serde's message.
        let mut wrong_type = document.clone();
        wrong_type["max_token_ttl_seconds"] = pem.clone().into();
        let err = KeyRing::from_json(&wrong_type.to_string()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("PRIVATE"));

        let mut future = document.clone();
        future["format"] = 2.into();
        assert_eq!(
            KeyRing::from_json(&future.to_string()).unwrap_err(),
            KeyRingError::UnsupportedFormat(2)
        );

        let mut bad_pem = document.clone();
        bad_pem["current"]["private_key_pem"] = "garbage".into();
        assert!(matches!(
            KeyRing::from_json(&bad_pem.to_string()),
            Err(KeyRingError::InvalidPrivateKey { .. })
        ));

        let mut rotated = ring.clone();
        rotated.rotate(T0);
        let mut duplicate: serde_json::Value = serde_json::from_str(&rotated.to_json()).unwrap();
        duplicate["retired"][0]["kid"] = rotated.current().kid().into();
        assert!(matches!(
            KeyRing::from_json(&duplicate.to_string()),
            Err(KeyRingError::DuplicateKid(_))
        ));

        let mut bad_public: serde_json::Value = serde_json::from_str(&rotated.to_json()).unwrap();
        bad_public["retired"][0]["public_key"] = "AAAA".into();
        assert!(matches!(
            KeyRing::from_json(&bad_public.to_string()),
            Err(KeyRingError::InvalidPublicKey { .. })
        ));
    }
}
