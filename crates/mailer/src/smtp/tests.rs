//! The SMTP transport against a real SMTP server: Python's aiosmtpd, started per test on a free
//! loopback port, storing what it receives in a Maildir.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::config::ConfigError;
use crate::read_eml;

const INSTALL_HINT: &str = "the SMTP tests need Python's aiosmtpd: install it with \
     `apt-get install -y python3-aiosmtpd` (Debian) or `python3 -m pip install aiosmtpd`";

/// An aiosmtpd process; dropping it kills the process.
struct Aiosmtpd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Aiosmtpd {
    fn start() -> Aiosmtpd {
        let python = python_with_aiosmtpd();
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let log = File::create(dir.path().join("aiosmtpd.log")).expect("a log file");
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("maildir"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {python} -m aiosmtpd: {e}"));
        let mut server = Aiosmtpd { child, port, dir };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&mut self) {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("aiosmtpd exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen within 15 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("aiosmtpd.log")).unwrap_or_default()
    }

    /// The messages in the Maildir once there are `count` of them (waiting up to 10 s).
    fn received(&self, count: usize) -> Vec<PathBuf> {
        let new = self.dir.path().join("maildir").join("new");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let files: Vec<PathBuf> = fs::read_dir(&new)
                .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            if files.len() >= count {
                return files;
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd holds {} of {count} messages after 10 s:\n{}",
                files.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn config(&self) -> SmtpConfig {
        SmtpConfig {
            port: Some(self.port),
            tls: TlsMode::None,
            ..SmtpConfig::new("127.0.0.1")
        }
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first Python that can import aiosmtpd: the one on `PATH`, then Debian's (where the
/// `python3-aiosmtpd` package installs it, even when `PATH` leads to another Python first).
fn python_with_aiosmtpd() -> String {
    for python in ["python3", "/usr/bin/python3"] {
        let imported = Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if imported {
            return python.to_owned();
        }
    }
    panic!("{INSTALL_HINT}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn from() -> Mailbox {
    "idstream <no-reply@localhost>"
        .parse()
        .expect("a valid mailbox")
}

/// The value of `name` in the headers of the message at `path`.
fn header(path: &Path, name: &str) -> Option<String> {
    let raw = fs::read_to_string(path).ok()?;
    let prefix = format!("{name}:");
    raw.lines()
        .take_while(|line| !line.is_empty())
        .find(|line| {
            line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(&prefix)
        })
        .map(|line| line[prefix.len()..].trim().to_owned())
}

#[tokio::test]
async fn messages_reach_a_real_smtp_server() {
    let server = Aiosmtpd::start();
    let mailer = SmtpMailer::new(&server.config(), from()).expect("a mailer");
    // Long lines and `=` make lettre choose quoted-printable, which must decode to the same link.
    let link =
        "https://id.example.com/reset-password?token=Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0&x=1";
    let plain = crate::templates::MailTemplates::built_in().render(
        "alice@example.com",
        crate::templates::Lang::En,
        &crate::templates::Branding::neutral(),
        crate::templates::Mail::PasswordReset {
            link,
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
        },
    );
    let rich = Message {
        to: "bob@example.com".into(),
        subject: "Einladung für „Müller & Söhne“".into(),
        text: "Grüße! Öffne: https://id.example.com/i?t=äöü=1\n".into(),
        html: Some("<p>Grüße!</p>\n".into()),
    };
    mailer
        .send(&plain)
        .await
        .expect("the first message is accepted");
    mailer
        .send(&rich)
        .await
        .expect("the second message is accepted");

    let mut received: Vec<(Option<String>, crate::ParsedEml)> = server
        .received(2)
        .iter()
        .map(|path| (header(path, "X-RcptTo"), read_eml(path).expect("readable")))
        .collect();
    assert_eq!(received.len(), 2);
    received.sort_by(|a, b| a.1.to.cmp(&b.1.to));
    let (envelope, first) = &received[0];
    assert_eq!(envelope.as_deref(), Some("alice@example.com"));
    assert_eq!(first.to, plain.to);
    assert_eq!(first.subject, plain.subject);
    assert_eq!(first.text, plain.text.trim_end());
    assert_eq!(first.text.lines().filter(|line| *line == link).count(), 1);
    let (envelope, second) = &received[1];
    assert_eq!(envelope.as_deref(), Some("bob@example.com"));
    assert_eq!(second.to, rich.to);
    assert_eq!(second.subject, rich.subject);
    assert_eq!(second.text, rich.text.trim_end());
    assert_eq!(
        second.html.as_deref(),
        rich.html.as_deref().map(str::trim_end)
    );
}

#[tokio::test]
async fn a_closed_port_fails_quickly_without_revealing_the_body() {
    let config = SmtpConfig {
        port: Some(free_port()),
        tls: TlsMode::None,
        ..SmtpConfig::new("127.0.0.1")
    };
    let mailer = SmtpMailer::new(&config, from()).expect("a mailer");
    let message = Message {
        to: "alice@example.com".into(),
        subject: "Your sign-in link".into(),
        text: "https://id.example.com/magic?token=SECRET-TOKEN-4242".into(),
        html: Some("<a href=\"https://id.example.com/magic?token=SECRET-TOKEN-4242\">".into()),
    };
    let started = Instant::now();
    let error = mailer.send(&message).await.expect_err("nothing listens");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, MailError::Smtp(_)), "{error:?}");
    assert!(!error.is_permanent());
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("SECRET-TOKEN-4242"), "{shown}");
    }
}

#[tokio::test]
async fn a_relay_that_never_answers_times_out() {
    // Accepts connections (the kernel completes the handshake) but never sends a greeting.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let config = SmtpConfig {
        port: Some(listener.local_addr().expect("an address").port()),
        tls: TlsMode::None,
        timeout_seconds: 1,
        ..SmtpConfig::new("127.0.0.1")
    };
    let mailer = SmtpMailer::new(&config, from()).expect("a mailer");
    let message = Message {
        to: "alice@example.com".into(),
        subject: "Code".into(),
        text: "123456".into(),
        html: None,
    };
    let started = Instant::now();
    let error = mailer.send(&message).await.expect_err("no greeting");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let timed_out = match &error {
        MailError::Timeout(_) => true,
        MailError::Smtp(e) => e.is_timeout(),
        _ => false,
    };
    assert!(timed_out, "{error:?}");
    assert!(!error.is_permanent());
    drop(listener);
}

#[test]
fn every_tls_mode_can_be_prepared() {
    for tls in [TlsMode::None, TlsMode::Starttls, TlsMode::Tls] {
        let config = SmtpConfig {
            tls,
            ..SmtpConfig::new("smtp.example.com")
        };
        SmtpMailer::new(&config, from()).expect("a mailer");
    }
    assert_eq!(SmtpConfig::new("h").port(), 587);
}

#[test]
fn credentials_are_never_sent_in_the_clear_to_another_host() {
    let with_credentials = |host: &str, tls| SmtpConfig {
        username: Some("idstream".into()),
        password: Some(SmtpPassword::new("hunter2")),
        tls,
        ..SmtpConfig::new(host)
    };
    let refused = SmtpMailer::new(&with_credentials("smtp.example.com", TlsMode::None), from());
    assert!(matches!(
        refused,
        Err(ConfigError::SmtpCredentialsInTheClear)
    ));
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        SmtpMailer::new(&with_credentials(host, TlsMode::None), from()).expect("loopback");
    }
    let mailer = SmtpMailer::new(
        &with_credentials("smtp.example.com", TlsMode::Starttls),
        from(),
    )
    .expect("over TLS");
    assert!(!format!("{mailer:?}").contains("hunter2"));
    assert!(!format!("{:?}", with_credentials("h", TlsMode::Tls)).contains("hunter2"));
}

#[test]
fn half_a_configuration_is_refused() {
    let only_user = SmtpConfig {
        username: Some("idstream".into()),
        ..SmtpConfig::new("smtp.example.com")
    };
    assert!(matches!(
        SmtpMailer::new(&only_user, from()),
        Err(ConfigError::PartialSmtpCredentials)
    ));
    assert!(matches!(
        SmtpMailer::new(&SmtpConfig::new(" "), from()),
        Err(ConfigError::EmptySmtpHost)
    ));
    let no_timeout = SmtpConfig {
        timeout_seconds: 0,
        ..SmtpConfig::new("smtp.example.com")
    };
    assert!(matches!(
        SmtpMailer::new(&no_timeout, from()),
        Err(ConfigError::SmtpTimeout(0))
    ));
}
