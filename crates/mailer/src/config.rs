//! The mailer's configuration and the choice of transport at startup.
//!
//! ```toml
//! transport = "smtp"                       # or "file", the default
//! from = "Example <no-reply@example.com>"  # default "idstream <no-reply@localhost>"
//! dir = "/var/lib/idstream/mail"           # file transport only; default <data dir>/mail
//! templates = "/etc/idstream/mail"         # optional: en/<mail>.mail, fr/<mail>.mail replace built-in ones
//!
//! [smtp]                                   # needed by the smtp transport only
//! host = "smtp.example.com"
//! port = 587                               # default by tls: 25, 587 or 465
//! username = "idstream"
//! password = "…"
//! tls = "starttls"                         # "none", "starttls" (default) or "tls"
//! timeout_seconds = 10
//! ```
//!
//! A section that the chosen transport does not use (`dir` for SMTP, `smtp` for files) is
//! ignored, so switching transports is a one-line change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::{FileMailer, Mailbox, Mailer, SmtpConfig, SmtpMailer};

/// The sender address when none is configured.
pub const DEFAULT_FROM: &str = "idstream <no-reply@localhost>";

/// The folder of the file transport inside the data directory when `dir` is not set.
pub const DEFAULT_DIR_NAME: &str = "mail";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailerConfig {
    #[serde(default)]
    pub transport: Transport,
    /// The file transport's folder; a relative path is taken from the working directory.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// The `From` of every message, such as `Example <no-reply@example.com>`.
    #[serde(default = "default_from")]
    pub from: String,
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// A folder whose `en/<mail>.mail` and `fr/<mail>.mail` replace the built-in templates of
    /// the same name (see [`crate::templates`]).
    #[serde(default)]
    pub templates: Option<PathBuf>,
}

fn default_from() -> String {
    DEFAULT_FROM.to_owned()
}

impl Default for MailerConfig {
    fn default() -> MailerConfig {
        MailerConfig {
            transport: Transport::default(),
            dir: None,
            from: default_from(),
            smtp: None,
            templates: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One `.eml` file per message (see [`FileMailer`]).
    #[default]
    File,
    /// An SMTP relay (see [`SmtpMailer`]).
    Smtp,
}

impl MailerConfig {
    /// The parsed `from`.
    pub fn from_mailbox(&self) -> Result<Mailbox, ConfigError> {
        self.from.trim().parse().map_err(ConfigError::InvalidFrom)
    }

    /// The file transport's folder: `dir`, or `<data_dir>/mail`.
    pub fn file_dir(&self, data_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join(DEFAULT_DIR_NAME))
    }
}

/// The mailer that `config` describes. Nothing is created or connected yet: the file transport
/// makes its folder with the first message and the SMTP transport connects per message.
pub fn build(config: &MailerConfig, data_dir: &Path) -> Result<Arc<dyn Mailer>, ConfigError> {
    let from = config.from_mailbox()?;
    Ok(match config.transport {
        Transport::File => Arc::new(FileMailer::new(config.file_dir(data_dir), from)),
        Transport::Smtp => {
            let smtp = config.smtp.as_ref().ok_or(ConfigError::MissingSmtp)?;
            Arc::new(SmtpMailer::new(smtp, from)?)
        }
    })
}

/// Why a mailer configuration cannot be used. Never contains the SMTP password.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the mailer's `from` must be an address such as `Example <no-reply@example.com>`: {0}")]
    InvalidFrom(lettre::address::AddressError),
    #[error("the mailer's transport is \"smtp\" but its `smtp` section is missing")]
    MissingSmtp,
    #[error("the mailer's `smtp.host` is empty")]
    EmptySmtpHost,
    #[error("the mailer's `smtp.username` and `smtp.password` must be set together")]
    PartialSmtpCredentials,
    #[error(
        "the mailer would send SMTP credentials in the clear: set `smtp.tls` to \"starttls\" or \
         \"tls\" (only a relay on a loopback address may use \"none\" with credentials)"
    )]
    SmtpCredentialsInTheClear,
    #[error("the mailer's `smtp.timeout_seconds` must be from 1 to 600, not {0}")]
    SmtpTimeout(u64),
    #[error("the TLS settings for the SMTP relay could not be prepared: {0}")]
    SmtpTls(lettre::transport::smtp::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SmtpPassword, TlsMode};

    fn parse(text: &str) -> MailerConfig {
        toml::from_str(text).expect("a valid configuration")
    }

    #[test]
    fn nothing_configured_means_files_in_the_data_directory() {
        let config = parse("");
        assert_eq!(config, MailerConfig::default());
        assert_eq!(config.transport, Transport::File);
        assert_eq!(config.file_dir(Path::new("/data")), Path::new("/data/mail"));
        assert_eq!(
            config.from_mailbox().expect("valid").to_string(),
            "idstream <no-reply@localhost>"
        );
        build(&config, Path::new("/data")).expect("built");
    }

    #[test]
    fn a_full_smtp_configuration_is_read() {
        let config = parse(
            r#"
            transport = "smtp"
            from = "Example <no-reply@example.com>"
            [smtp]
            host = "smtp.example.com"
            port = 2525
            username = "idstream"
            password = "hunter2"
            tls = "tls"
            timeout_seconds = 5
            "#,
        );
        let smtp = config.smtp.as_ref().expect("an smtp section");
        assert_eq!(smtp.port(), 2525);
        assert_eq!(smtp.tls, TlsMode::Tls);
        assert_eq!(smtp.password, Some(SmtpPassword::new("hunter2")));
        assert!(!format!("{config:?}").contains("hunter2"));
        let mailer = build(&config, Path::new("/data")).expect("built");
        drop(mailer);
    }

    #[test]
    fn unknown_fields_and_transports_are_refused() {
        for text in [
            "transprot = \"file\"",
            "transport = \"carrier-pigeon\"",
            "[smtp]\nhost = \"h\"\ntls = \"ssl\"",
            "[smtp]\nhost = \"h\"\npasword = \"x\"",
        ] {
            assert!(toml::from_str::<MailerConfig>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn the_smtp_transport_needs_its_section_and_a_valid_sender() {
        let error = build(&parse("transport = \"smtp\""), Path::new("/data")).err();
        assert!(matches!(error, Some(ConfigError::MissingSmtp)));
        let error = build(&parse("from = \"nobody\""), Path::new("/data")).err();
        assert!(matches!(error, Some(ConfigError::InvalidFrom(_))));
    }

    #[test]
    fn the_file_transport_ignores_an_smtp_section_and_honours_its_folder() {
        let config = parse("dir = \"/srv/mail\"\n[smtp]\nhost = \"smtp.example.com\"");
        assert_eq!(config.file_dir(Path::new("/data")), Path::new("/srv/mail"));
        build(&config, Path::new("/data")).expect("built");
    }
}
