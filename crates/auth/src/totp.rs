//! Time-based one-time passwords (RFC 6238) as authenticator apps implement them: HMAC-SHA1,
//! 6 digits, 30-second steps, one step of drift accepted either way.
//!
//! [`TotpSecret::verify`] returns the time step that matched. The caller stores it and passes it
//! back as `last_used_step` next time, so a code (or any earlier one) can never be used twice: a
//! code seen over someone's shoulder is worthless once its owner has signed in with it.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::RngCore;
use sha1::Sha1;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Digits in a code.
pub const TOTP_DIGITS: u32 = 6;
/// Seconds per time step.
pub const TOTP_PERIOD: u64 = 30;
/// Steps of clock drift accepted on either side of the current one.
pub const TOTP_SKEW: u64 = 1;
/// Bytes in a generated secret: 160 bits, the HMAC-SHA1 output size RFC 4226 §4 recommends.
const SECRET_BYTES: usize = 20;
/// RFC 4226 §4 requires at least 128 bits; longer imported secrets are accepted up to this size.
const MIN_SECRET_BYTES: usize = 16;
const MAX_SECRET_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("the TOTP secret is not valid base32")]
    NotBase32,
    #[error("the TOTP secret has {0} bytes; between 16 and 64 are accepted")]
    BadLength(usize),
}

/// A TOTP shared secret. `Debug` is redacted and the bytes are wiped when dropped.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// 20 random bytes.
    pub fn generate() -> TotpSecret {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        rand::rng().fill_bytes(&mut bytes);
        TotpSecret(bytes)
    }

    /// A secret in the base32 form that [`TotpSecret::to_base32`] writes and authenticator apps
    /// show. Case, spaces and `=` padding are ignored.
    pub fn from_base32(text: &str) -> Result<TotpSecret, TotpError> {
        let cleaned: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !c.is_whitespace() && *c != '=')
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        );
        let bytes = Zeroizing::new(
            BASE32_NOPAD
                .decode(cleaned.as_bytes())
                .map_err(|_| TotpError::NotBase32)?,
        );
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(TotpError::BadLength(bytes.len()));
        }
        Ok(TotpSecret(bytes))
    }

    /// The secret as unpadded upper-case base32: what is stored (encrypted at rest, never in an
    /// event) and what a user types into an app that cannot scan a QR code.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE32_NOPAD.encode(&self.0))
    }

    /// The `otpauth://totp/…` URI (Google Authenticator's Key URI Format) to show as a QR code.
    /// The label is `issuer:account`, each part percent-encoded; the parameters spell out the
    /// defaults so that no app has to guess.
    pub fn provisioning_uri(&self, issuer: &str, account: &str) -> Zeroizing<String> {
        let issuer = utf8_percent_encode(issuer, URI_COMPONENT);
        let account = utf8_percent_encode(account, URI_COMPONENT);
        Zeroizing::new(format!(
            "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_PERIOD}",
            self.to_base32().as_str()
        ))
    }

    /// The code for the time step containing `now`, as an authenticator app would show it.
    pub fn code_at(&self, now: OffsetDateTime) -> String {
        format_code(hotp(&self.0, time_step(now), TOTP_DIGITS), TOTP_DIGITS)
    }

    /// The time step whose code `code` is, if it is within [`TOTP_SKEW`] steps of `now` and later
    /// than `last_used_step`. Spaces in `code` are ignored; anything but 6 digits never matches.
    /// All candidate steps are compared in constant time, whichever of them matches.
    pub fn verify(
        &self,
        code: &str,
        now: OffsetDateTime,
        last_used_step: Option<u64>,
    ) -> Option<u64> {
        let presented: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if presented.len() != TOTP_DIGITS as usize || !presented.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let current = time_step(now);
        let mut matched = None;
        for step in current.saturating_sub(TOTP_SKEW)..=current.saturating_add(TOTP_SKEW) {
            let expected = format_code(hotp(&self.0, step, TOTP_DIGITS), TOTP_DIGITS);
            let equal: bool = expected.as_bytes().ct_eq(presented.as_bytes()).into();
            let fresh = last_used_step.is_none_or(|last| step > last);
            // The latest matching step wins, so that a rare collision between neighbouring steps
            // burns both.
            if equal && fresh {
                matched = Some(step);
            }
        }
        matched
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// Everything but RFC 3986's unreserved characters is percent-encoded, so a space becomes `%20`
/// (not `+`) and a colon in an issuer or account cannot be mistaken for the label's separator.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The RFC 6238 time step of `now` (T0 = the unix epoch). Instants before 1970 count as step 0.
pub fn time_step(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp()).unwrap_or(0) / TOTP_PERIOD
}

/// RFC 4226 HOTP with HMAC-SHA1 and dynamic truncation, reduced to `digits` digits.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC is defined for keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[hash.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

fn format_code(code: u32, digits: u32) -> String {
    format!("{code:0width$}", width = digits as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    /// RFC 6238 Appendix B, the SHA-1 column: 8-digit codes for the ASCII seed
    /// "12345678901234567890".
    #[test]
    fn the_rfc_6238_sha1_test_vectors_pass() {
        let seed = b"12345678901234567890";
        let vectors: [(i64, &str); 6] = [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ];
        for (unix, expected) in vectors {
            let code = format_code(hotp(seed, time_step(at(unix)), 8), 8);
            assert_eq!(code, expected, "T = {unix}");
        }

        // The same seed through the public API gives the last six of those digits.
        let secret = TotpSecret(Zeroizing::new(seed.to_vec()));
        for (unix, expected) in vectors {
            assert_eq!(secret.code_at(at(unix)), expected[2..], "T = {unix}");
        }
    }

    #[test]
    fn the_rfc_4226_hotp_vectors_pass() {
        // RFC 4226 Appendix D, counters 0 to 9.
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            let got = format_code(hotp(b"12345678901234567890", counter as u64, 6), 6);
            assert_eq!(&got, code, "counter {counter}");
        }
    }

    #[test]
    fn a_code_verifies_within_one_step_of_drift_and_returns_its_step() {
        let secret = TotpSecret::generate();
        let now = at(1_700_000_000);
        let step = time_step(now);
        let code = secret.code_at(now);
        assert_eq!(secret.verify(&code, now, None), Some(step));
        assert_eq!(
            secret.verify(&code, now + Duration::seconds(30), None),
            Some(step)
        );
        assert_eq!(
            secret.verify(&code, now - Duration::seconds(30), None),
            Some(step)
        );
        assert_eq!(
            secret.verify(&code, now + Duration::seconds(60), None),
            None
        );
        assert_eq!(
            secret.verify(&code, now - Duration::seconds(60), None),
            None
        );
    }

    #[test]
    fn a_code_cannot_be_replayed_nor_an_older_one_used_after_it() {
        let secret = TotpSecret::generate();
        let now = at(1_700_000_000);
        let step = secret.verify(&secret.code_at(now), now, None).unwrap();
        assert_eq!(secret.verify(&secret.code_at(now), now, Some(step)), None);
        let previous = now - Duration::seconds(30);
        assert_eq!(
            secret.verify(&secret.code_at(previous), now, Some(step)),
            None
        );
        let next = now + Duration::seconds(30);
        assert_eq!(
            secret.verify(&secret.code_at(next), next, Some(step)),
            Some(step + 1)
        );
    }

    #[test]
    fn only_six_digits_are_accepted_with_spaces_ignored() {
        let secret = TotpSecret::generate();
        let now = at(1_700_000_000);
        let code = secret.code_at(now);
        let spaced = format!(" {} {} ", &code[..3], &code[3..]);
        assert!(secret.verify(&spaced, now, None).is_some());
        for bad in [
            "",
            "12345",
            "1234567",
            "abcdef",
            "１２３４５６",
            "12345\u{0}",
        ] {
            assert_eq!(secret.verify(bad, now, None), None, "{bad:?}");
        }
        // A different secret's code does not match (a 1-in-a-million collision aside, which this
        // fixed pair of secrets does not hit).
        let other = TotpSecret(Zeroizing::new(vec![7u8; 20]));
        let mine = TotpSecret(Zeroizing::new(vec![9u8; 20]));
        assert_eq!(mine.verify(&other.code_at(now), now, None), None);
    }

    #[test]
    fn the_secret_round_trips_through_base32_and_is_redacted() {
        let secret = TotpSecret::generate();
        let text = secret.to_base32();
        assert_eq!(text.len(), 32, "20 bytes are 32 base32 characters");
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        );
        let back = TotpSecret::from_base32(&text.to_lowercase()).unwrap();
        let now = at(1_700_000_000);
        assert_eq!(back.code_at(now), secret.code_at(now));

        let grouped: String = text
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(TotpSecret::from_base32(&grouped).is_ok());

        assert_eq!(format!("{secret:?}"), "TotpSecret(<redacted>)");
        assert_eq!(
            TotpSecret::from_base32("not base32!").unwrap_err(),
            TotpError::NotBase32
        );
        assert_eq!(
            TotpSecret::from_base32("GEZDGNBV").unwrap_err(),
            TotpError::BadLength(5)
        );
    }

    #[test]
    fn the_provisioning_uri_follows_the_key_uri_format() {
        let secret = TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        let uri = secret.provisioning_uri("Acme Corp", "ana+2fa@example.com");
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/Acme%20Corp:ana%2B2fa%40example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Corp\
             &algorithm=SHA1&digits=6&period=30"
        );
        let tricky = secret.provisioning_uri("a:b&c=d", "x/y?z#é");
        assert!(
            tricky.starts_with("otpauth://totp/a%3Ab%26c%3Dd:x%2Fy%3Fz%23%C3%A9?"),
            "{}",
            tricky.as_str()
        );
    }

    #[test]
    fn instants_before_the_epoch_do_not_panic() {
        let secret = TotpSecret::generate();
        let long_ago = at(-1_000_000);
        assert_eq!(time_step(long_ago), 0);
        let code = secret.code_at(long_ago);
        assert_eq!(secret.verify(&code, long_ago, None), Some(0));
    }
}
