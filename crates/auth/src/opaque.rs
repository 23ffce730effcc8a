//! Opaque bearer tokens with a recognisable prefix: `idr_…` refresh tokens, `idm_…` magic sign-in
//! links, `idp_…` password resets, `ide_…` email verifications, `idi_…` invitations, `idc_…`
//! authorization codes and `idcs_…` client secrets.
//!
//! The prefix tells people (and secret scanners) what a leaked token is, and lets a token of one
//! kind be refused at once where another kind is expected. The rest is 160 random bits in lower-case
//! base32. The store keeps only the [`TokenDigest`], which is also what a presented token is looked
//! up by: a random token needs no separate id.

use std::fmt;

use zeroize::Zeroizing;

use crate::{TokenDigest, random_base32};

const SECRET_BYTES: usize = 20;
const SECRET_CHARS: usize = 32;

/// What an opaque token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Refresh,
    MagicLink,
    PasswordReset,
    EmailVerification,
    Invitation,
    /// An OpenID Connect authorization code (after its session's id, see the app's `oidc`).
    AuthorizationCode,
    /// An OpenID Connect confidential client's secret.
    ClientSecret,
}

impl TokenKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Refresh => "idr_",
            TokenKind::MagicLink => "idm_",
            TokenKind::PasswordReset => "idp_",
            TokenKind::EmailVerification => "ide_",
            TokenKind::Invitation => "idi_",
            TokenKind::AuthorizationCode => "idc_",
            TokenKind::ClientSecret => "idcs_",
        }
    }
}

/// A freshly generated token. `Debug` shows the kind only.
pub struct OpaqueToken {
    kind: TokenKind,
    text: Zeroizing<String>,
}

impl OpaqueToken {
    pub fn generate(kind: TokenKind) -> OpaqueToken {
        let secret = Zeroizing::new(random_base32(SECRET_BYTES));
        OpaqueToken {
            kind,
            text: Zeroizing::new(format!("{}{}", kind.prefix(), secret.as_str())),
        }
    }

    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The token, to be handed to its owner once and never stored.
    pub fn reveal(&self) -> &str {
        &self.text
    }

    /// What to store and look the token up by.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(&self.text)
    }

    /// The digest to look `presented` up by, if it has the shape of a token of `kind`. Surrounding
    /// whitespace and letter case are ignored.
    pub fn digest_presented(kind: TokenKind, presented: &str) -> Option<TokenDigest> {
        Self::normalize_presented(kind, presented).map(|text| TokenDigest::of(&text))
    }

    /// The canonical text of `presented` (trimmed, lower-case) if it has the shape of a token of
    /// `kind`: what a keyed digest (blind index) is computed over.
    pub fn normalize_presented(kind: TokenKind, presented: &str) -> Option<Zeroizing<String>> {
        let presented = presented.trim();
        if presented.len() != kind.prefix().len() + SECRET_CHARS || !presented.is_ascii() {
            return None;
        }
        let lowered = Zeroizing::new(presented.to_ascii_lowercase());
        let secret = lowered.strip_prefix(kind.prefix())?;
        let base32 = |b: u8| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b);
        if !secret.bytes().all(base32) {
            return None;
        }
        Some(lowered)
    }
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpaqueToken({:?}, <redacted>)", self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [TokenKind; 5] = [
        TokenKind::Refresh,
        TokenKind::MagicLink,
        TokenKind::PasswordReset,
        TokenKind::EmailVerification,
        TokenKind::Invitation,
    ];

    #[test]
    fn a_token_carries_its_prefix_and_160_random_bits() {
        for kind in KINDS {
            let token = OpaqueToken::generate(kind);
            assert!(token.reveal().starts_with(kind.prefix()));
            assert_eq!(token.reveal().len(), 4 + 32);
            assert_ne!(token.reveal(), OpaqueToken::generate(kind).reveal());
        }
        let mut prefixes: Vec<&str> = KINDS.iter().map(|k| k.prefix()).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        assert_eq!(prefixes.len(), KINDS.len());
    }

    #[test]
    fn a_presented_token_is_found_by_its_digest_only_for_its_own_kind() {
        let token = OpaqueToken::generate(TokenKind::Refresh);
        assert_eq!(
            OpaqueToken::digest_presented(TokenKind::Refresh, token.reveal()),
            Some(token.digest())
        );
        assert_eq!(
            OpaqueToken::digest_presented(TokenKind::Refresh, &token.reveal().to_uppercase()),
            Some(token.digest())
        );
        assert_eq!(
            OpaqueToken::digest_presented(TokenKind::PasswordReset, token.reveal()),
            None
        );
        for bad in [
            "",
            "idr_",
            "idr_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            "idr_0000000000000000000000000000000a",
        ] {
            assert_eq!(
                OpaqueToken::digest_presented(TokenKind::Refresh, bad),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_is_redacted() {
        let token = OpaqueToken::generate(TokenKind::MagicLink);
        assert_eq!(format!("{token:?}"), "OpaqueToken(MagicLink, <redacted>)");
    }
}
