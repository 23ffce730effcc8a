//! The SMTP transport: each message goes to a relay over a new connection (lettre's
//! `AsyncSmtpTransport` on Tokio), with TLS by rustls and the `ring` provider, checking the
//! relay's certificate against the system's root store.
//!
//! A connection per message keeps no idle connection to the relay and needs no background task;
//! an identity service sends few emails, so pooling would buy little.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;

use crate::config::ConfigError;
use crate::{BodyEncoding, MailError, Mailbox, Mailer, Message, assemble};

/// How long one message may take, from connecting to the relay's acceptance, unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest timeout a configuration may ask for.
const MAX_TIMEOUT_SECONDS: u64 = 600;

/// Where and how to reach the SMTP relay. Its `Debug` output redacts the password.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults to the usual port of the TLS mode: 25, 587 or 465.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SmtpPassword>,
    #[serde(default)]
    pub tls: TlsMode,
    /// How long one message may take, from connecting to the relay's acceptance (1 to 600).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

fn default_timeout_seconds() -> u64 {
    DEFAULT_TIMEOUT.as_secs()
}

impl SmtpConfig {
    /// A relay at `host` with the defaults: STARTTLS on port 587, no credentials, 10 s.
    pub fn new(host: impl Into<String>) -> SmtpConfig {
        SmtpConfig {
            host: host.into(),
            port: None,
            username: None,
            password: None,
            tls: TlsMode::default(),
            timeout_seconds: default_timeout_seconds(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        })
    }
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text: for a relay on the same host or a local test server only.
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed (the default).
    #[default]
    Starttls,
    /// TLS from the first byte ("implicit TLS", usually port 465).
    Tls,
}

/// The SMTP password. It is shown only to the relay; `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SmtpPassword(String);

impl SmtpPassword {
    pub fn new(password: impl Into<String>) -> SmtpPassword {
        SmtpPassword(password.into())
    }

    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SmtpPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpPassword(<redacted>)")
    }
}

/// Sends each message through an SMTP relay, within a per-message timeout.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
    host: String,
    port: u16,
    tls: TlsMode,
}

impl SmtpMailer {
    /// Checks `config` and prepares the transport; nothing connects until the first message.
    /// Credentials are refused over a plain connection unless the relay is on a loopback address.
    pub fn new(config: &SmtpConfig, from: Mailbox) -> Result<SmtpMailer, ConfigError> {
        let host = config.host.trim();
        if host.is_empty() {
            return Err(ConfigError::EmptySmtpHost);
        }
        if !(1..=MAX_TIMEOUT_SECONDS).contains(&config.timeout_seconds) {
            return Err(ConfigError::SmtpTimeout(config.timeout_seconds));
        }
        let credentials = match (&config.username, &config.password) {
            (None, None) => None,
            (Some(username), Some(password)) => Some(Credentials::new(
                username.clone(),
                password.reveal().to_owned(),
            )),
            _ => return Err(ConfigError::PartialSmtpCredentials),
        };
        if credentials.is_some() && config.tls == TlsMode::None && !is_loopback(host) {
            return Err(ConfigError::SmtpCredentialsInTheClear);
        }
        let tls = match config.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(tls_parameters(host)?),
            TlsMode::Tls => Tls::Wrapper(tls_parameters(host)?),
        };
        let timeout = Duration::from_secs(config.timeout_seconds);
        let port = config.port();
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        Ok(SmtpMailer {
            transport: builder.build(),
            from,
            timeout,
            host: host.to_owned(),
            port,
            tls: config.tls,
        })
    }
}

fn tls_parameters(host: &str) -> Result<TlsParameters, ConfigError> {
    TlsParameters::new_rustls(host.to_owned()).map_err(ConfigError::SmtpTls)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        let email = assemble(message, &self.from, BodyEncoding::Automatic)?;
        // lettre's own timeout bounds connecting and each exchange; this one bounds the whole
        // message, so that a relay that answers slowly but steadily cannot hold a caller forever.
        match tokio::time::timeout(self.timeout, self.transport.send(email)).await {
            Err(_) => Err(MailError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(MailError::Smtp(e)),
            Ok(Ok(response)) => {
                tracing::debug!(
                    host = %self.host,
                    code = %response.code(),
                    subject = %message.subject,
                    "email accepted by the SMTP relay"
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
