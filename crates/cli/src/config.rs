//! Service configuration, layered: defaults, then a TOML file, then `IDSTREAM_…` environment
//! variables and command-line flags (merged by the CLI).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use idstream_server::client::{IpNet, TrustedProxies};
use idstream_server::cors::{CorsOrigins, Origin};

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// JetStream when set; the embedded log in `data_dir/log` otherwise.
    pub nats_url: Option<String>,
    pub stream: String,
    pub stream_replicas: usize,
    /// The operator token: a system credential for automation, accepted only when configured.
    pub admin_token: Option<String>,
    /// How long a query waits for its minimum position.
    pub consistency_timeout: Duration,
    pub max_body_bytes: usize,
    /// The service's public base URL: the `iss` of access tokens and the base of links in
    /// emails. Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// How long an OpenID Connect authorization code may be exchanged.
    pub authorization_code_ttl: Duration,
    /// The signing key is replaced after this long (`None`: only by `idstream keys rotate`).
    pub signing_key_rotation: Option<Duration>,
    /// How long a next signing key is published before it signs.
    pub signing_key_lead: Duration,
    /// argon2 hashes run at once (each holds 19 MiB). Defaults to the number of cores.
    pub hash_concurrency: Option<usize>,
    /// Mail delivery: a file per message in `data_dir/mail` unless configured otherwise.
    pub mail: idstream_mailer::MailerConfig,
    /// Tamper evidence: a signed chain checkpoint once this many events follow the last one…
    pub chain_checkpoint_events: u64,
    /// …or once this long has passed since it, if anything was appended.
    pub chain_checkpoint_interval: Duration,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the client; none by
    /// default, so the socket peer is the client (see [`idstream_server::client`]).
    pub trusted_proxies: TrustedProxies,
    /// Origins (`https://app.example.com`) whose pages may call the API from a browser; none by
    /// default, so no response carries CORS headers (see [`idstream_server::cors`]).
    pub cors_origins: CorsOrigins,
}

impl Config {
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            nats_url: None,
            stream: "IDSTREAM".into(),
            stream_replicas: 1,
            admin_token: None,
            consistency_timeout: Duration::from_secs(2),
            max_body_bytes: 64 * 1024,
            public_url: None,
            access_token_ttl: Duration::from_secs(300),
            authorization_code_ttl: Duration::from_secs(60),
            signing_key_rotation: Some(Duration::from_secs(30 * 24 * 3600)),
            signing_key_lead: Duration::from_secs(3600),
            hash_concurrency: None,
            mail: Default::default(),
            chain_checkpoint_events: 1000,
            chain_checkpoint_interval: Duration::from_secs(60),
            trusted_proxies: TrustedProxies::default(),
            cors_origins: CorsOrigins::default(),
        }
    }
}

/// The TOML file: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub nats_url: Option<String>,
    pub stream: Option<String>,
    pub stream_replicas: Option<usize>,
    pub admin_token: Option<String>,
    pub consistency_timeout_ms: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub public_url: Option<String>,
    pub access_token_ttl_seconds: Option<u64>,
    pub authorization_code_ttl_seconds: Option<u64>,
    /// Days between automatic signing-key rotations; 0 turns them off.
    pub signing_key_rotation_days: Option<u64>,
    pub signing_key_lead_seconds: Option<u64>,
    pub hash_concurrency: Option<usize>,
    pub mail: Option<idstream_mailer::MailerConfig>,
    pub chain_checkpoint_events: Option<u64>,
    pub chain_checkpoint_seconds: Option<u64>,
    /// `["10.0.0.0/8", "192.0.2.7"]`
    pub trusted_proxies: Option<Vec<IpNet>>,
    /// `["https://app.example.com", "http://localhost:5173"]`
    pub cors_origins: Option<Vec<Origin>>,
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// Applies the file over the defaults.
    pub fn apply(self, mut config: Config) -> Config {
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if self.nats_url.is_some() {
            config.nats_url = self.nats_url;
        }
        if let Some(v) = self.stream {
            config.stream = v;
        }
        if let Some(v) = self.stream_replicas {
            config.stream_replicas = v;
        }
        if self.admin_token.is_some() {
            config.admin_token = self.admin_token;
        }
        if let Some(v) = self.consistency_timeout_ms {
            config.consistency_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.max_body_bytes {
            config.max_body_bytes = v;
        }
        if self.public_url.is_some() {
            config.public_url = self.public_url;
        }
        if let Some(v) = self.access_token_ttl_seconds {
            config.access_token_ttl = Duration::from_secs(v);
        }
        if let Some(v) = self.authorization_code_ttl_seconds {
            config.authorization_code_ttl = Duration::from_secs(v);
        }
        if let Some(days) = self.signing_key_rotation_days {
            config.signing_key_rotation =
                (days > 0).then(|| Duration::from_secs(days.saturating_mul(24 * 3600)));
        }
        if let Some(v) = self.signing_key_lead_seconds {
            config.signing_key_lead = Duration::from_secs(v);
        }
        if self.hash_concurrency.is_some() {
            config.hash_concurrency = self.hash_concurrency;
        }
        if let Some(v) = self.mail {
            config.mail = v;
        }
        if let Some(v) = self.chain_checkpoint_events {
            config.chain_checkpoint_events = v;
        }
        if let Some(v) = self.chain_checkpoint_seconds {
            config.chain_checkpoint_interval = Duration::from_secs(v);
        }
        if let Some(v) = self.trusted_proxies {
            config.trusted_proxies = TrustedProxies(v);
        }
        if let Some(v) = self.cors_origins {
            config.cors_origins = CorsOrigins(v);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_only_what_it_sets() {
        let file = FileConfig::parse("nats_url = \"nats://127.0.0.1:4222\"\nstream_replicas = 3\n")
            .unwrap();
        let config = file.apply(Config::default());
        assert_eq!(config.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(config.stream_replicas, 3);
        assert_eq!(config.listen, Config::default().listen);
    }

    #[test]
    fn trusted_proxies_are_addresses_or_blocks_and_none_by_default() {
        assert_eq!(Config::default().trusted_proxies, TrustedProxies::default());
        let config = FileConfig::parse("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n")
            .unwrap()
            .apply(Config::default());
        assert_eq!(config.trusted_proxies.0.len(), 2);
        assert!(FileConfig::parse("trusted_proxies = [\"10.0.0.0/40\"]\n").is_err());
    }

    #[test]
    fn cors_origins_are_origins_and_none_by_default() {
        assert!(Config::default().cors_origins.is_empty());
        let config = FileConfig::parse(
            "cors_origins = [\"https://app.example.com/\", \"http://localhost:5173\"]\n",
        )
        .unwrap()
        .apply(Config::default());
        let origins: Vec<&str> = config.cors_origins.0.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            origins,
            ["https://app.example.com", "http://localhost:5173"]
        );
        assert!(FileConfig::parse("cors_origins = [\"*\"]\n").is_err());
        assert!(FileConfig::parse("cors_origins = [\"https://app.example.com/x\"]\n").is_err());
    }

    #[test]
    fn unknown_keys_are_an_error() {
        assert!(FileConfig::parse("listne = \"x\"").is_err());
    }
}
