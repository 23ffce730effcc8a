//! Recovery codes: single-use codes a user writes down when enabling two-factor authentication and
//! types instead of a TOTP code when the authenticator is lost.
//!
//! A code is 10 characters from Crockford's base32 alphabet in lower case
//! (`0-9 a-z` without `i l o u`), shown as `xxxxx-xxxxx`: 50 random bits. The alphabet has no pair
//! that is easy to misread, and [`normalise`] maps the usual misreadings (`o` → `0`, `i`/`l` → `1`)
//! as well as ignoring case, spaces and dashes, so a code read aloud or retyped still matches.
//!
//! Only digests are stored. Because 50 bits are few enough to brute-force offline against one
//! fast hash, each digest also covers the owner's id: a leaked table then has to be attacked one
//! user at a time rather than all codes of all users in a single pass.

use std::fmt;

use rand::RngCore;

use crate::TokenDigest;

/// How many codes [`generate`] makes unless asked otherwise.
pub const DEFAULT_RECOVERY_CODE_COUNT: usize = 10;

/// Crockford's base32 alphabet, lower case.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters per code (5 bits each).
const CODE_CHARS: usize = 10;

/// One freshly generated recovery code, formatted `xxxxx-xxxxx`. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    /// A new code of 50 random bits.
    pub fn generate() -> RecoveryCode {
        // The low 50 bits of a uniform u64 are uniform; each 5-bit group picks one character.
        let bits = rand::rng().next_u64();
        let chars: String = (0..CODE_CHARS)
            .map(|i| char::from(ALPHABET[((bits >> (5 * i)) & 0x1f) as usize]))
            .collect();
        RecoveryCode(format!("{}-{}", &chars[..5], &chars[5..]))
    }

    /// The code, to be shown to its owner once and never stored.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// What to store for this code of the user (or other principal) `owner`.
    pub fn digest(&self, owner: &str) -> TokenDigest {
        digest_for(owner, &self.0)
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

/// `count` distinct new codes (a set of codes with a repeat would waste one).
pub fn generate(count: usize) -> Vec<RecoveryCode> {
    let mut codes: Vec<RecoveryCode> = Vec::with_capacity(count);
    while codes.len() < count {
        let code = RecoveryCode::generate();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// A typed code in canonical form: lower case, without whitespace or dashes, with `o` read as `0`
/// and `i`/`l` as `1`. Other characters are kept, so that they simply fail to match.
pub fn normalise(input: &str) -> String {
    input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            other => other,
        })
        .collect()
}

/// The digest a stored code of `owner` has if `presented` is that code.
pub fn digest_for(owner: &str, presented: &str) -> TokenDigest {
    // The owner's length goes first so that no (owner, code) pair can collide with another.
    TokenDigest::of(&format!(
        "idstream-recovery-code:{}:{owner}:{}",
        owner.len(),
        normalise(presented)
    ))
}

/// The index of the stored digest that `presented` matches, if any. Every stored digest is
/// compared, in constant time each, so the timing does not tell which one matched or how many
/// are left. The caller removes the matched digest: a code works once.
pub fn find_match(owner: &str, stored: &[TokenDigest], presented: &str) -> Option<usize> {
    let candidate = digest_for(owner, presented);
    let mut found = None;
    for (index, digest) in stored.iter().enumerate() {
        if digest.ct_eq(&candidate) {
            found = Some(index);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_documented_shape_and_are_distinct() {
        let codes = generate(DEFAULT_RECOVERY_CODE_COUNT);
        assert_eq!(codes.len(), 10);
        for code in &codes {
            let text = code.reveal();
            assert_eq!(text.len(), 11, "{text}");
            assert_eq!(&text[5..6], "-");
            assert!(
                text.bytes()
                    .filter(|b| *b != b'-')
                    .all(|b| ALPHABET.contains(&b)),
                "{text}"
            );
            assert!(!text.contains(['i', 'l', 'o', 'u']));
        }
        let mut texts: Vec<&str> = codes.iter().map(RecoveryCode::reveal).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), 10);
        assert_eq!(generate(0).len(), 0);
        assert_eq!(generate(25).len(), 25);
    }

    #[test]
    fn every_character_of_the_alphabet_turns_up() {
        // A cheap check that all 5 bits of each position are used.
        let seen: std::collections::HashSet<char> = generate(200)
            .iter()
            .flat_map(|c| c.reveal().chars().collect::<Vec<_>>())
            .filter(|c| *c != '-')
            .collect();
        assert_eq!(seen.len(), 32);
    }

    #[test]
    fn a_code_matches_however_it_is_typed() {
        let code = RecoveryCode("0a1bc-d2ef3".into());
        let digest = code.digest("user-1");
        for typed in [
            "0a1bc-d2ef3",
            "0A1BC-D2EF3",
            "0a1bcd2ef3",
            " 0a1bc d2ef3 ",
            "oa1bc-d2ef3",
            "0aibc-d2ef3",
            "0albc-d2ef3",
            "0a-1b-c-d2-ef3",
        ] {
            assert_eq!(digest_for("user-1", typed), digest, "{typed}");
        }
        for wrong in ["0a1bc-d2ef4", "0a1bc-d2ef", "", "0a1bc_d2ef3"] {
            assert_ne!(digest_for("user-1", wrong), digest, "{wrong}");
        }
    }

    #[test]
    fn a_digest_is_bound_to_its_owner() {
        let code = RecoveryCode::generate();
        assert_ne!(code.digest("user-1"), code.digest("user-2"));
        // The length prefix keeps ("ab", "c:…") and ("a", "b:c…") apart.
        assert_ne!(digest_for("ab", "c"), digest_for("a", "b:c"));
    }

    #[test]
    fn find_match_returns_the_index_of_the_matching_code() {
        let codes = generate(10);
        let stored: Vec<TokenDigest> = codes.iter().map(|c| c.digest("u")).collect();
        assert_eq!(find_match("u", &stored, codes[7].reveal()), Some(7));
        assert_eq!(
            find_match("u", &stored, &codes[3].reveal().to_uppercase()),
            Some(3)
        );
        assert_eq!(find_match("someone-else", &stored, codes[7].reveal()), None);
        assert_eq!(find_match("u", &stored, "zzzzz-zzzzz"), None);
        assert_eq!(find_match("u", &[], codes[0].reveal()), None);
    }

    #[test]
    fn normalise_ignores_case_spaces_and_dashes() {
        assert_eq!(normalise(" AbCdE-fGhJk "), "abcdefghjk");
        assert_eq!(normalise("O-I-L"), "011");
        assert_eq!(normalise("a\tb\nc"), "abc");
    }

    #[test]
    fn debug_is_redacted() {
        let code = RecoveryCode::generate();
        assert_eq!(format!("{code:?}"), "RecoveryCode(<redacted>)");
    }
}
