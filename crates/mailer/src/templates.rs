//! The emails of the identity flows, in plain text. Each function takes the recipient, the link or
//! code the flow minted and its expiry, and returns a [`Message`]: the caller has already built
//! the full link (base URL, path, token) and recorded the event that made it.
//!
//! The link or code appears exactly once, in the body and never in the subject (subjects are
//! shown in notifications and kept in relay logs), so tests can find it with one search. Names
//! chosen by users (tenant names, inviter names) are reduced to one line of printable text, so they
//! cannot add lines that imitate the email's own instructions. Times are shown in UTC.

use time::{OffsetDateTime, UtcOffset};

use crate::Message;

/// The longest user-chosen name shown in an email, in characters.
const MAX_NAME_CHARS: usize = 80;

/// Invites `to` to join a tenant; `inviter` is the display name of whoever sent it, if known.
pub fn invitation(
    to: &str,
    tenant_name: &str,
    inviter: Option<&str>,
    link: &str,
    expires_at: OffsetDateTime,
) -> Message {
    let tenant = one_line(tenant_name);
    let opening = match inviter.map(one_line).filter(|name| !name.is_empty()) {
        Some(inviter) => format!("{inviter} has invited you to join {tenant}."),
        None => format!("You have been invited to join {tenant}."),
    };
    message(
        to,
        format!("Invitation to join {tenant}"),
        format!(
            "{opening}\n\n\
             To accept the invitation, open this link:\n\n\
             {link}\n\n\
             The link expires at {expires}. If you did not expect this invitation, you can ignore \
             this email.\n",
            expires = utc(expires_at),
        ),
    )
}

/// Lets `to` choose a new password.
pub fn password_reset(to: &str, link: &str, expires_at: OffsetDateTime) -> Message {
    message(
        to,
        "Reset your password".into(),
        format!(
            "Someone, hopefully you, asked to reset the password of your account.\n\n\
             To choose a new password, open this link:\n\n\
             {link}\n\n\
             The link can be used once and expires at {expires}. If you did not ask for this, \
             ignore this email: your password has not changed.\n",
            expires = utc(expires_at),
        ),
    )
}

/// Signs `to` in without a password.
pub fn magic_link(to: &str, link: &str, expires_at: OffsetDateTime) -> Message {
    message(
        to,
        "Your sign-in link".into(),
        format!(
            "To sign in, open this link:\n\n\
             {link}\n\n\
             The link can be used once and expires at {expires}. If you did not try to sign in, \
             you can ignore this email.\n",
            expires = utc(expires_at),
        ),
    )
}

/// A one-time code that `to` types in to prove they read this mailbox.
pub fn email_code(to: &str, code: &str, expires_at: OffsetDateTime) -> Message {
    message(
        to,
        "Your verification code".into(),
        format!(
            "Your verification code is:\n\n\
             {code}\n\n\
             The code can be used once and expires at {expires}. Never share it with anyone. If \
             you did not ask for a code, you can ignore this email.\n",
            expires = utc(expires_at),
        ),
    )
}

/// Confirms that `to` belongs to the account that gave it.
pub fn email_verification(to: &str, link: &str, expires_at: OffsetDateTime) -> Message {
    message(
        to,
        "Verify your email address".into(),
        format!(
            "To confirm that this email address is yours, open this link:\n\n\
             {link}\n\n\
             The link expires at {expires}. If you did not create an account or add this \
             address to one, you can ignore this email.\n",
            expires = utc(expires_at),
        ),
    )
}

/// Tells the account's current address that a change to `new_address` was requested. It has no
/// link: it warns the owner and leaves the action to a sign-in they start themselves.
pub fn email_change_notice(old_address: &str, new_address: &str) -> Message {
    message(
        old_address,
        "Your email address is being changed".into(),
        format!(
            "Someone asked to change the email address of your account from {old} to {new}.\n\n\
             If that was you, there is nothing to do here: confirm the change from the email sent \
             to the new address. If it was not you, sign in, change your password and review \
             your account's sessions, or contact your administrator.\n",
            old = one_line(old_address),
            new = one_line(new_address),
        ),
    )
}

/// Tells `to` that sign-in is blocked until `until` after repeated failures.
pub fn account_locked(to: &str, until: OffsetDateTime) -> Message {
    message(
        to,
        "Your account is temporarily locked".into(),
        format!(
            "Your account was locked after too many failed sign-in attempts. You can sign in \
             again after {until}.\n\n\
             If these attempts were not yours, someone may be trying to guess your password: \
             once you can sign in, change it and turn on two-factor authentication.\n",
            until = utc(until),
        ),
    )
}

fn message(to: &str, subject: String, text: String) -> Message {
    Message {
        to: to.to_owned(),
        subject,
        text,
        html: None,
    }
}

/// `2025-01-02 03:04 UTC`. Written by hand rather than with a format description, which can fail.
fn utc(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// A user-chosen name as one line of at most [`MAX_NAME_CHARS`] printable characters: control
/// and direction-changing characters become spaces and runs of white space collapse.
fn one_line(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi { ' ' } else { c }
        })
        .collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let joined = words.join(" ");
    if joined.chars().count() <= MAX_NAME_CHARS {
        joined
    } else {
        let mut cut: String = joined.chars().take(MAX_NAME_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const LINK: &str = "https://id.example.com/flow?token=tok_5ecret-VALUE";
    const CODE: &str = "482913";
    const AT: OffsetDateTime = datetime!(2025-03-04 05:06:07 +02:00);

    #[track_caller]
    fn check_secret_once(message: &Message, secret: &str) {
        assert_eq!(message.text.matches(secret).count(), 1, "{}", message.text);
        assert!(!message.subject.contains(secret));
        assert_eq!(message.html, None);
        // Only the one secret: no other token-like string is in the body.
        let rest = message.text.replacen(secret, "", 1);
        assert!(!rest.contains("token="), "{rest}");
        assert!(!rest.contains("https://"), "{rest}");
    }

    #[test]
    fn each_flow_carries_its_link_or_code_exactly_once() {
        let cases = [
            (
                invitation("a@example.com", "Acme", Some("Bob"), LINK, AT),
                LINK,
            ),
            (invitation("a@example.com", "Acme", None, LINK, AT), LINK),
            (password_reset("a@example.com", LINK, AT), LINK),
            (magic_link("a@example.com", LINK, AT), LINK),
            (email_code("a@example.com", CODE, AT), CODE),
            (email_verification("a@example.com", LINK, AT), LINK),
        ];
        for (message, secret) in &cases {
            assert_eq!(message.to, "a@example.com");
            check_secret_once(message, secret);
            assert!(
                message.text.contains("2025-03-04 03:06 UTC"),
                "{}",
                message.text
            );
        }
    }

    #[test]
    fn an_invitation_names_the_tenant_and_the_inviter() {
        let message = invitation("a@example.com", "Acme", Some("Bob"), LINK, AT);
        assert_eq!(message.subject, "Invitation to join Acme");
        assert!(
            message
                .text
                .starts_with("Bob has invited you to join Acme.\n")
        );
        let anonymous = invitation("a@example.com", "Acme", Some(" "), LINK, AT);
        assert!(
            anonymous
                .text
                .starts_with("You have been invited to join Acme.\n")
        );
    }

    #[test]
    fn user_chosen_names_cannot_add_lines_or_reverse_text() {
        let message = invitation(
            "a@example.com",
            "Acme\n\nUrgent: open https://evil.example\u{202e}now",
            Some("Bob\r\nBcc: x"),
            LINK,
            AT,
        );
        let first = message.text.lines().next().expect("a first line");
        assert_eq!(
            first,
            "Bob Bcc: x has invited you to join Acme Urgent: open https://evil.example now."
        );
        assert!(!message.subject.contains('\n'));
        assert_eq!(one_line(&"x".repeat(200)).chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn the_change_notice_goes_to_the_old_address_and_has_no_link() {
        let message = email_change_notice("old@example.com", "new@example.com");
        assert_eq!(message.to, "old@example.com");
        assert!(
            message
                .text
                .contains("from old@example.com to new@example.com")
        );
        assert!(!message.text.contains("://"));
        assert_eq!(message.html, None);
    }

    #[test]
    fn the_lockout_notice_says_until_when_and_has_no_link() {
        let message = account_locked("a@example.com", AT);
        assert!(message.text.contains("after 2025-03-04 03:06 UTC"));
        assert!(!message.text.contains("://"));
    }
}
