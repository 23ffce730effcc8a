//! The file transport: one RFC 5322 `.eml` file per message in a folder, by default
//! `<data dir>/mail`. It is what `idstream serve` uses until an SMTP relay is configured, so every
//! emailed link of every flow can be followed on a laptop: open the newest file, copy the link.
//!
//! Files are named `<UTC timestamp>-<ULID>.eml`, so that sorting the names sorts them by the time
//! they were written. Each is written to a hidden temporary file and then renamed, so a reader
//! never sees half a message. The folder is created owner-only (0700) and each file is 0600,
//! because bodies carry secrets.
//!
//! The folder is a spool of personal data (addresses, names): erasing a user deletes the files
//! sent to or mentioning their addresses ([`Mailer::forget`]).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use time::OffsetDateTime;
use ulid::Ulid;

use crate::{BodyEncoding, MailError, Mailbox, Mailer, Message, assemble};

/// Writes each message as an `.eml` file into `dir`, which is created on first use.
#[derive(Debug, Clone)]
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl FileMailer {
    pub fn new(dir: impl Into<PathBuf>, from: Mailbox) -> FileMailer {
        FileMailer {
            dir: dir.into(),
            from,
        }
    }

    /// The folder the messages are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `.eml` files in `dir`, oldest first. A folder that does not exist yet holds none.
    pub fn messages(dir: &Path) -> io::Result<Vec<PathBuf>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Temporary files start with a dot and end in `.tmp`; only finished messages count.
            if !name.starts_with('.') && name.ends_with(".eml") && entry.file_type()?.is_file() {
                paths.push(entry.path());
            }
        }
        paths.sort();
        Ok(paths)
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        let raw = assemble(message, &self.from, BodyEncoding::PreferEightBit)?.formatted();
        let dir = self.dir.clone();
        let name = file_name(OffsetDateTime::now_utc(), Ulid::new());
        let path = tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &raw))
            .await
            .map_err(|e| MailError::Write {
                path: self.dir.clone(),
                source: io::Error::other(format!("the writing task failed: {e}")),
            })??;
        tracing::info!(path = %path.display(), subject = %message.subject, "email written to a file");
        Ok(())
    }

    async fn forget(&self, addresses: &[String]) -> Result<usize, MailError> {
        let dir = self.dir.clone();
        let addresses: Vec<String> = addresses
            .iter()
            .map(|a| a.trim().to_lowercase())
            .filter(|a| !a.is_empty())
            .collect();
        if addresses.is_empty() {
            return Ok(0);
        }
        let deleted = tokio::task::spawn_blocking(move || forget_in(&dir, &addresses))
            .await
            .map_err(|e| MailError::Forget {
                path: self.dir.clone(),
                source: io::Error::other(format!("the deleting task failed: {e}")),
            })??;
        if deleted > 0 {
            tracing::info!(dir = %self.dir.display(), deleted, "emails of an erased user deleted");
        }
        Ok(deleted)
    }
}

/// Deletes the files in `dir` (finished messages and leftover temporary files) sent to or
/// mentioning one of `addresses` (lower case). A folder that does not exist holds none.
fn forget_in(dir: &Path, addresses: &[String]) -> Result<usize, MailError> {
    let failed = |source| MailError::Forget {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(failed(e)),
    };
    let mut deleted = 0;
    for entry in entries {
        let entry = entry.map_err(failed)?;
        if !entry.file_type().map_err(failed)?.is_file() {
            continue;
        }
        let path = entry.path();
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            // Renamed or deleted meanwhile (a temporary file becoming its message, which the
            // listing may show next time round): nothing of it is left here to delete.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed(e)),
        };
        if concerns(&raw, addresses) {
            match fs::remove_file(&path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(failed(e)),
            }
        }
    }
    if deleted > 0 {
        sync_dir(dir).map_err(failed)?;
    }
    Ok(deleted)
}

/// Whether a stored message was sent to, or mentions, one of `addresses` (lower case): in its
/// raw bytes, or in its decoded headers and bodies (an encoded body hides them from the first).
fn concerns(raw: &[u8], addresses: &[String]) -> bool {
    let raw_text = String::from_utf8_lossy(raw).to_lowercase();
    if addresses.iter().any(|a| raw_text.contains(a.as_str())) {
        return true;
    }
    let Some(parsed) = mail_parser::MessageParser::default().parse(raw) else {
        return false;
    };
    let mut decoded = String::new();
    if let Some(to) = parsed.to() {
        for address in to.iter() {
            if let Some(address) = address.address() {
                decoded.push_str(address);
                decoded.push('\n');
            }
        }
    }
    decoded.push_str(parsed.subject().unwrap_or_default());
    for part in 0..parsed.text_body_count() {
        if let Some(text) = parsed.body_text(part) {
            decoded.push_str(&text);
        }
    }
    for part in 0..parsed.html_body_count() {
        if let Some(html) = parsed.body_html(part) {
            decoded.push_str(&html);
        }
    }
    let decoded = decoded.to_lowercase();
    addresses.iter().any(|a| decoded.contains(a.as_str()))
}

/// `20250102T030405.123456789Z-01JG….eml`: fixed width, so names sort by time.
fn file_name(now: OffsetDateTime, id: Ulid) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z-{id}.eml",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond(),
    )
}

fn write_atomically(dir: &Path, name: &str, raw: &[u8]) -> Result<PathBuf, MailError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MailError::Write { path, source }
    };
    create_private_dir(dir).map_err(failed(dir))?;
    let temporary = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let written =
        write_new_private_file(&temporary, raw).and_then(|()| fs::rename(&temporary, &path));
    if let Err(e) = written {
        // Best effort: a leftover temporary file is ignored by readers and holds a secret.
        let _ = fs::remove_file(&temporary);
        return Err(failed(&path)(e));
    }
    // The message is in place; failing to make its directory entry durable must not report it
    // as unsent (the caller could send it twice), so that failure is only logged.
    if let Err(e) = sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not sync the mail directory");
    }
    Ok(path)
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_new_private_file(path: &Path, raw: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(raw)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// What [`read_eml`] finds in a message: the first recipient's address, the decoded subject and
/// the decoded bodies, with line endings turned into `\n` and without the line breaks at their
/// end (transports add some there, so how many the sender wrote cannot be known).
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedEml {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl std::fmt::Debug for ParsedEml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedEml")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("text", &"<redacted>")
            .field("html", &self.html.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Reads an RFC 5322 message such as those [`FileMailer`] writes, decoding encoded-word headers
/// and 7bit, 8bit, quoted-printable and base64 bodies. Tests use it to take links and codes out of
/// emails. A file that is not such a message, or has no `To` or no plain-text body, is an
/// `InvalidData` error.
pub fn read_eml(path: &Path) -> io::Result<ParsedEml> {
    let raw = fs::read(path)?;
    parse_eml(&raw).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not an email with a recipient and a plain-text body",
                path.display()
            ),
        )
    })
}

fn parse_eml(raw: &[u8]) -> Option<ParsedEml> {
    let parsed = mail_parser::MessageParser::default().parse(raw)?;
    let to = parsed.to()?.first()?.address()?.to_owned();
    let subject = parsed.subject().unwrap_or_default().to_owned();
    // mail-parser renders a missing alternative from the other one; only real parts count here.
    let text = parsed
        .text_part(0)
        .filter(|part| part.is_text() && !part.is_text_html())?
        .text_contents()?;
    let html = parsed
        .html_part(0)
        .filter(|part| part.is_text_html())
        .and_then(|part| part.text_contents());
    Some(ParsedEml {
        to,
        subject,
        text: normalize(text),
        html: html.map(normalize),
    })
}

fn normalize(body: &str) -> String {
    body.replace("\r\n", "\n").trim_end_matches('\n').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> Mailbox {
        "idstream <no-reply@localhost>"
            .parse()
            .expect("a valid mailbox")
    }

    fn message(to: &str, subject: &str, text: &str) -> Message {
        Message {
            to: to.into(),
            subject: subject.into(),
            text: text.into(),
            html: None,
        }
    }

    async fn send_and_read(message: &Message) -> ParsedEml {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mailer = FileMailer::new(dir.path().join("mail"), from());
        mailer.send(message).await.expect("written");
        let files = FileMailer::messages(mailer.dir()).expect("listed");
        assert_eq!(files.len(), 1);
        read_eml(&files[0]).expect("readable")
    }

    #[tokio::test]
    async fn a_message_is_written_listed_and_read_back() {
        let sent = message(
            "alice@example.com",
            "Reset your password",
            "Open this link:\n\nhttps://id.example.com/reset?token=abc_DEF-123&x=1\n",
        );
        let read = send_and_read(&sent).await;
        assert_eq!(read.to, "alice@example.com");
        assert_eq!(read.subject, sent.subject);
        assert_eq!(read.text, sent.text.trim_end());
        assert_eq!(read.html, None);
    }

    #[tokio::test]
    async fn non_ascii_subjects_and_bodies_survive() {
        let sent = message(
            "zoë@example.com",
            "Einladung für „Müller & Söhne“ — 日本語",
            "Grüße aus Köln! ✉️\nLiebe Zoë, klicke hier: https://id.example.com/i/ÄÖÜ?t=1\n",
        );
        let read = send_and_read(&sent).await;
        assert_eq!(read.to, "zoë@example.com");
        assert_eq!(read.subject, sent.subject);
        assert_eq!(read.text, sent.text.trim_end());
    }

    #[tokio::test]
    async fn a_file_is_readable_as_it_is_so_a_person_can_copy_the_link() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mailer = FileMailer::new(dir.path(), from());
        let link = "https://id.example.com/accept-invitation?token=Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0&tenant=acme";
        let sent = crate::templates::MailTemplates::built_in().render(
            "bob@example.com",
            crate::templates::Lang::En,
            &crate::templates::Branding::named("Müller & Söhne"),
            crate::templates::Mail::Invitation {
                inviter: Some("Zoë"),
                link,
                expires_at: OffsetDateTime::UNIX_EPOCH,
            },
        );
        mailer.send(&sent).await.expect("written");
        let files = FileMailer::messages(dir.path()).expect("listed");
        let raw = fs::read_to_string(&files[0]).expect("utf-8");
        assert!(raw.contains(&format!("\r\n{link}\r\n")), "{raw}");
        assert!(
            raw.contains("Zoë has invited you to join Müller & Söhne."),
            "{raw}"
        );
        assert!(raw.contains("Content-Transfer-Encoding: 8bit"), "{raw}");
        assert!(raw.contains("Message-ID: <"), "{raw}");
        assert!(raw.contains("@localhost>"), "{raw}");
        assert_eq!(
            read_eml(&files[0]).expect("readable").text,
            sent.text.trim_end()
        );
    }

    #[tokio::test]
    async fn a_very_long_line_falls_back_to_an_encoding_that_is_still_read_back() {
        let long = format!("https://id.example.com/t?token={}", "x".repeat(2000));
        let read = send_and_read(&message("bob@example.com", "Long", &long)).await;
        assert_eq!(read.text, long);
    }

    #[tokio::test]
    async fn an_html_alternative_is_written_beside_the_text() {
        let mut sent = message("carol@example.com", "Hello", "plain text\n");
        sent.html = Some("<p>html text</p>\n".into());
        let read = send_and_read(&sent).await;
        assert_eq!(read.text, "plain text");
        assert_eq!(read.html.as_deref(), Some("<p>html text</p>"));
    }

    #[tokio::test]
    async fn messages_are_listed_oldest_first_and_unfinished_files_are_skipped() {
        let dir = tempfile::tempdir().expect("a temp dir");
        assert!(
            FileMailer::messages(&dir.path().join("absent"))
                .expect("listed")
                .is_empty()
        );
        let mailer = FileMailer::new(dir.path(), from());
        for subject in ["first", "second", "third"] {
            mailer
                .send(&message("dave@example.com", subject, "body"))
                .await
                .expect("written");
        }
        fs::write(
            dir.path().join(".00000000T000000.000000000Z-x.eml.tmp"),
            "partial",
        )
        .expect("written");
        let subjects: Vec<String> = FileMailer::messages(dir.path())
            .expect("listed")
            .iter()
            .map(|path| read_eml(path).expect("readable").subject)
            .collect();
        assert_eq!(subjects, ["first", "second", "third"]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_folder_and_the_files_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("a temp dir");
        let mail = dir.path().join("data").join("mail");
        let mailer = FileMailer::new(&mail, from());
        mailer
            .send(&message("erin@example.com", "Code", "123456"))
            .await
            .expect("written");
        let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&mail), 0o700);
        let files = FileMailer::messages(&mail).expect("listed");
        assert_eq!(mode(&files[0]), 0o600);
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_created_is_an_error_naming_no_body() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let blocker = dir.path().join("file");
        fs::write(&blocker, "not a folder").expect("written");
        let mailer = FileMailer::new(blocker.join("mail"), from());
        let error = mailer
            .send(&message("frank@example.com", "Code", "secret 424242"))
            .await
            .expect_err("the folder is a file");
        assert!(matches!(error, MailError::Write { .. }));
        assert!(!error.to_string().contains("424242"));
        assert!(!format!("{error:?}").contains("424242"));
    }

    #[test]
    fn file_names_sort_by_time() {
        let earlier =
            OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_001).expect("in range");
        let later =
            OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_100_000_000).expect("in range");
        let (a, b) = (
            file_name(earlier, Ulid::new()),
            file_name(later, Ulid::new()),
        );
        assert!(a.starts_with("20231114T221320.000000001Z-"), "{a}");
        assert!(a < b);
    }

    #[tokio::test]
    async fn forgetting_addresses_deletes_the_messages_sent_to_or_mentioning_them_only() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mailer = FileMailer::new(dir.path().join("mail"), from());
        assert_eq!(
            mailer.forget(&["nobody@example.com".into()]).await.unwrap(),
            0,
            "no folder yet"
        );
        mailer
            .send(&message("Ada@Example.com", "Reset", "https://x/reset?t=1"))
            .await
            .unwrap();
        // The body of this one is encoded (a line too long for 8bit) and mentions the new
        // address, which only decoding finds.
        let long = format!("new address: ada.new@example.com {}", "x".repeat(1200));
        mailer
            .send(&message("ada@example.com", "Changed", &long))
            .await
            .unwrap();
        mailer
            .send(&message("zoë@example.com", "Hello", "for Zoë"))
            .await
            .unwrap();
        mailer
            .send(&message("bob@example.com", "Code", "123456"))
            .await
            .unwrap();
        fs::write(
            mailer.dir().join(".00000000T000000.000000000Z-x.eml.tmp"),
            "To: ada@example.com\r\n\r\npartial",
        )
        .unwrap();

        let deleted = mailer
            .forget(&[" ada@example.com ".into(), "ZOË@example.com".into()])
            .await
            .unwrap();
        assert_eq!(deleted, 4);
        let left: Vec<String> = FileMailer::messages(mailer.dir())
            .unwrap()
            .iter()
            .map(|p| read_eml(p).unwrap().to)
            .collect();
        assert_eq!(left, ["bob@example.com"]);
        assert_eq!(fs::read_dir(mailer.dir()).unwrap().count(), 1);

        let deleted = mailer
            .forget(&["ada.new@example.com".into()])
            .await
            .unwrap();
        assert_eq!(
            deleted, 0,
            "already gone with the message that mentioned it"
        );
    }

    #[test]
    fn text_that_is_not_an_email_is_invalid_data() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("junk.eml");
        fs::write(&path, "hello").expect("written");
        let error = read_eml(&path).expect_err("not an email");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
