//! Email delivery: the [`Mailer`] port that the application services call, and its transports:
//!
//! - [`FileMailer`] (the default) writes one RFC 5322 `.eml` file per message into a folder of
//!   the data directory, so that a newcomer can follow every emailed link without a mail server,
//!   and [`read_eml`] reads such a file back for tests;
//! - [`SmtpMailer`] hands each message to an SMTP relay (lettre over Tokio, TLS by rustls);
//! - [`templates`] builds the messages of the identity flows (invitations, password resets,
//!   magic links, one-time codes, address verification and change notices, lockouts);
//! - [`MailerConfig`] and [`build`] choose and configure a transport at startup.
//!
//! **Invariant (callers' duty):** a message is handed to a mailer only after the event that
//! caused it is in the log. An email is a side effect that cannot be taken back; sending it before
//! the append succeeds would let a rejected or conflicting command leave a working link behind.
//! A mailer failure therefore never undoes the event: the caller reports or retries the delivery.
//!
//! **Invariant:** message bodies are secret, because they carry sign-in links, reset links and
//! codes. Nothing here logs a body, and no error's `Display` or `Debug` output contains one. Files
//! written by [`FileMailer`] are readable by their owner only. The SMTP password is redacted
//! wherever it is printed.
//!
//! Nothing here decides *when* to send or retries a failed delivery; that belongs to the caller.

pub mod config;
pub mod file;
pub mod smtp;
pub mod templates;

pub use config::{ConfigError, MailerConfig, Transport, build};
pub use file::{FileMailer, ParsedEml, read_eml};
pub use lettre::message::Mailbox;
pub use smtp::{SmtpConfig, SmtpMailer, SmtpPassword, TlsMode};

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, MultiPart, SinglePart};

/// One email to one recipient. `text` is the plain-text body every message has; `html` an
/// optional alternative rendering of the same content. Its `Debug` output leaves out both bodies.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The recipient's email address, such as `alice@example.com`.
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("text", &"<redacted>")
            .field("html", &self.html.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The port through which application services send email. Each transport has its own sender
/// address (`From`), set when it is built.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Delivers `message`, or hands it to a relay that accepted it. Callers invoke this only
    /// after the message's event is in the log.
    async fn send(&self, message: &Message) -> Result<(), MailError>;

    /// Deletes every message this transport still keeps that was sent to one of `addresses`
    /// or mentions one (compared without regard to case), so that erasing a person leaves no
    /// copy of their address behind; returns how many were deleted. A transport that keeps
    /// nothing (SMTP hands each message on) has nothing to delete.
    async fn forget(&self, addresses: &[String]) -> Result<usize, MailError> {
        let _ = addresses;
        Ok(0)
    }
}

/// Why a message was not delivered. No variant carries the message body, so this error may be
/// logged as it is.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the recipient is not a valid email address: {0}")]
    InvalidRecipient(lettre::address::AddressError),
    #[error("the message could not be assembled: {0}")]
    Assemble(lettre::error::Error),
    #[error("the message could not be written to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the SMTP relay did not take the message: {0}")]
    Smtp(lettre::transport::smtp::Error),
    #[error("the SMTP relay did not take the message within {0:?}")]
    Timeout(Duration),
    #[error("the kept messages in {path} could not be deleted: {source}")]
    Forget {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl MailError {
    /// Whether sending the same message again cannot succeed: the message itself is at fault or
    /// the relay refused it for good. Every other failure may pass on a later attempt.
    pub fn is_permanent(&self) -> bool {
        match self {
            MailError::InvalidRecipient(_) | MailError::Assemble(_) => true,
            MailError::Smtp(e) => e.is_permanent(),
            MailError::Write { .. } | MailError::Timeout(_) | MailError::Forget { .. } => false,
        }
    }
}

/// How a body is put on the wire. Files prefer `8bit`, which leaves the text as it is so that a
/// person reading the `.eml` can copy a link from it (quoted-printable would turn `=` into `=3D`
/// and break long lines); SMTP lets lettre choose between `7bit`, quoted-printable and base64,
/// which every relay accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BodyEncoding {
    PreferEightBit,
    Automatic,
}

/// The RFC 5322 form of `message`, from `from`. Only lettre's checked builder makes it, so a
/// subject or address cannot inject headers.
pub(crate) fn assemble(
    message: &Message,
    from: &Mailbox,
    encoding: BodyEncoding,
) -> Result<lettre::Message, MailError> {
    let to: lettre::Address = message
        .to
        .trim()
        .parse()
        .map_err(MailError::InvalidRecipient)?;
    // The Message-ID names the sender's domain rather than this host, whose name is private.
    let message_id = format!("<{}@{}>", ulid::Ulid::new(), from.email.domain());
    let builder = lettre::Message::builder()
        .message_id(Some(message_id))
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(message.subject.as_str());
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(body(&message.text, encoding));
    let built = match &message.html {
        None => builder.singlepart(text),
        Some(html) => builder.multipart(
            MultiPart::alternative().singlepart(text).singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(body(html, encoding)),
            ),
        ),
    };
    built.map_err(MailError::Assemble)
}

fn body(content: &str, encoding: BodyEncoding) -> Body {
    match encoding {
        BodyEncoding::PreferEightBit => {
            eight_bit(content).unwrap_or_else(|| Body::new(content.to_owned()))
        }
        BodyEncoding::Automatic => Body::new(content.to_owned()),
    }
}

/// The longest line RFC 5322 allows, in octets, without its CRLF.
const MAX_LINE_OCTETS: usize = 998;

/// `content` as an `8bit` body with CRLF line endings, or `None` when it cannot be one: a line
/// longer than RFC 5322 allows, a NUL or a lone CR (RFC 2045 §2.8). lettre's own `8bit` choice
/// also refuses lines over 76 characters, which every link with a token exceeds, so the body is
/// checked and encoded here.
fn eight_bit(content: &str) -> Option<Body> {
    let mut crlf = String::with_capacity(content.len() + content.len() / 16 + 2);
    for (i, line) in content.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > MAX_LINE_OCTETS || line.contains(['\r', '\0']) {
            return None;
        }
        if i > 0 {
            crlf.push_str("\r\n");
        }
        crlf.push_str(line);
    }
    Some(Body::dangerous_pre_encoded(
        crlf.into_bytes(),
        ContentTransferEncoding::EightBit,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> Mailbox {
        "idstream <no-reply@localhost>"
            .parse()
            .expect("a valid mailbox")
    }

    fn message(to: &str) -> Message {
        Message {
            to: to.into(),
            subject: "Subject".into(),
            text: "the secret body".into(),
            html: None,
        }
    }

    #[test]
    fn an_invalid_recipient_is_refused_without_echoing_the_body() {
        let error = assemble(&message("not an address"), &from(), BodyEncoding::Automatic)
            .expect_err("an invalid recipient");
        assert!(matches!(error, MailError::InvalidRecipient(_)));
        assert!(error.is_permanent());
        assert!(!error.to_string().contains("secret"));
        assert!(!format!("{error:?}").contains("secret"));
    }

    #[test]
    fn a_message_debug_output_leaves_out_the_bodies() {
        let mut message = message("alice@example.com");
        message.html = Some("<p>the secret body</p>".into());
        let debug = format!("{message:?}");
        assert!(debug.contains("alice@example.com"));
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn eight_bit_bodies_keep_long_lines_and_refuse_what_rfc_5322_forbids() {
        let link = format!("https://id.example.com/magic?token={}", "x".repeat(200));
        let body = eight_bit(&format!("Grüße\n\n{link}\r\n")).expect("8bit");
        assert_eq!(body.encoding(), ContentTransferEncoding::EightBit);
        assert_eq!(
            body.into_vec(),
            format!("Grüße\r\n\r\n{link}\r\n").into_bytes()
        );
        assert!(eight_bit(&"x".repeat(MAX_LINE_OCTETS)).is_some());
        assert!(eight_bit(&"x".repeat(MAX_LINE_OCTETS + 1)).is_none());
        assert!(eight_bit("a\rb").is_none());
        assert!(eight_bit("a\0b").is_none());
    }

    #[test]
    fn a_subject_with_line_breaks_cannot_add_headers() {
        let mut message = message("alice@example.com");
        message.subject = "Hello\r\nBcc: mallory@example.com".into();
        let raw = assemble(&message, &from(), BodyEncoding::PreferEightBit)
            .expect("assembled")
            .formatted();
        let raw = String::from_utf8_lossy(&raw);
        assert!(!raw.lines().any(|line| line.starts_with("Bcc:")), "{raw}");
    }
}
