//! The composition root: open the log (decrypting personal data) and the key store, start the
//! read models, build the app, start the tasks that run beside it (key upkeep, tamper-evidence
//! checkpoints, back-channel logout), and serve HTTP until shutdown.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use idstream_app::{App, Caller, IdentityConfig, IdentityServices, SystemClock};
use idstream_auth::{PasswordHasherPool, TokenDigest};
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_eventlog::jetstream::{JetStreamLog, JetStreamOptions};
use idstream_eventlog::{FanOutLog, SharedLog};
use idstream_keys::{
    FileKeyStore, JetStreamKeyStore, JetStreamKeyStoreOptions, KeyStore, Keys, PersonalDataLog,
    PersonalKeys, RotationPolicy,
};
use idstream_projection_runtime::ReadModels;

use idstream_server::metrics::Metrics;
use idstream_server::{AppState, StateParts};

use crate::config::Config;

/// Opens the configured log as the service uses it: personal data in events is encrypted with
/// per-user keys from the key store on the way in and decrypted on the way out
/// ([`PersonalDataLog`]). JetStream is retried until it answers, so a service started before its
/// NATS cluster waits for it instead of failing.
///
/// Also returns the personal-data keys it decrypts with: the read models seal personal data at
/// rest with the same keys ([`read_model_seal`]), sharing their cache.
pub async fn open_log(config: &Config) -> anyhow::Result<(SharedLog, Arc<PersonalKeys>)> {
    let log = open_raw_log(config).await?;
    let keys = Arc::new(PersonalKeys::new(key_store(config).await?));
    Ok((PersonalDataLog::wrap(log, keys.clone()), keys))
}

/// The seal of personal data in read models: `keys` (the log's, see [`open_log`]) and the
/// vault's blind index.
pub async fn read_model_seal(
    config: &Config,
    keys: Arc<PersonalKeys>,
) -> anyhow::Result<Arc<dyn idstream_projection_runtime::PersonalSeal>> {
    let vault = load_keys(config).await?.vault();
    Ok(idstream_keys::ReadModelSeal::shared(keys, vault))
}

/// The configured log exactly as stored: personal data stays encrypted. For tools that look at
/// the stored bytes (tamper evidence), never for projections.
pub async fn open_raw_log(config: &Config) -> anyhow::Result<SharedLog> {
    match &config.nats_url {
        None => {
            let dir = config.data_dir.join("log");
            let log = EmbeddedLog::open(&dir, EmbeddedOptions::default())
                .await
                .with_context(|| format!("opening the embedded log in {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), "embedded event log open");
            Ok(log)
        }
        Some(url) => Ok(Arc::new(connect_jetstream(config, url).await?)),
    }
}

/// Connects to the configured JetStream stream, creating it if it does not exist, and retries
/// until NATS answers.
async fn connect_jetstream(config: &Config, url: &str) -> anyhow::Result<JetStreamLog> {
    let options = JetStreamOptions {
        url: url.to_owned(),
        stream: config.stream.clone(),
        replicas: config.stream_replicas,
        ..JetStreamOptions::default()
    };
    let mut delay = Duration::from_millis(200);
    loop {
        match JetStreamLog::connect(options.clone()).await {
            Ok(log) => {
                tracing::info!(%url, stream = %config.stream, "JetStream event log connected");
                return Ok(log);
            }
            Err(idstream_eventlog::LogError::Unavailable(why)) => {
                tracing::warn!(%url, %why, retry_in_ms = delay.as_millis() as u64, "waiting for NATS");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "opening the JetStream stream {} at {url} with stream_replicas = {} \
                         (--stream-replicas, IDSTREAM_STREAM_REPLICAS or stream_replicas in the \
                         configuration file)",
                        config.stream, config.stream_replicas
                    )
                });
            }
        }
    }
}

/// Applies `stream_replicas` to the streams created with it: the event stream and the key
/// bucket's stream (`KV_idstream_keys`, if it exists yet). A stream keeps the replica count it
/// was created with unless something changes it, so the service does, when it starts; the other
/// subcommands only warn about a difference, so that a tool run with other settings never
/// changes a production stream. If the servers refuse (more replicas than servers), the
/// service refuses to start and says where the count is stored and what to do.
pub async fn apply_stream_replicas(config: &Config) -> anyhow::Result<()> {
    let Some(url) = &config.nats_url else {
        return Ok(());
    };
    let log = connect_jetstream(config, url).await?;
    let bucket = format!("KV_{}", JetStreamKeyStoreOptions::default().bucket);
    for stream in [config.stream.as_str(), bucket.as_str()] {
        match log.apply_replicas(stream, config.stream_replicas).await {
            Ok(Some(before)) => tracing::warn!(
                %stream,
                before,
                replicas = config.stream_replicas,
                "changed the stream's replica count to the configured stream_replicas"
            ),
            Ok(None) => {}
            Err(idstream_eventlog::LogError::Misconfigured(why)) => anyhow::bail!(
                "stream_replicas is {wanted} (--stream-replicas, IDSTREAM_STREAM_REPLICAS or \
                 stream_replicas in the configuration file), but {why}. The replica count is \
                 stored in the stream's configuration on the NATS servers at {url}; set \
                 stream_replicas to the count the servers can hold (1 on a single server, at \
                 most the number of servers in a cluster) and start again",
                wanted = config.stream_replicas
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("applying stream_replicas to {stream}"));
            }
        }
    }
    Ok(())
}

/// The key store: the data directory's `keys/` with the embedded log, a JetStream KV bucket
/// (shared by every replica) with JetStream.
pub async fn key_store(config: &Config) -> anyhow::Result<Arc<dyn KeyStore>> {
    match &config.nats_url {
        None => {
            let dir = config.data_dir.join("keys");
            let store = FileKeyStore::open(&dir)
                .with_context(|| format!("opening the key store in {}", dir.display()))?;
            Ok(Arc::new(store))
        }
        Some(url) => {
            let options = JetStreamKeyStoreOptions {
                replicas: config.stream_replicas,
                ..Default::default()
            };
            let store = JetStreamKeyStore::connect(url, &options)
                .await
                .context("opening the JetStream key store")?;
            Ok(Arc::new(store))
        }
    }
}

/// The configured access-token lifetime, checked.
fn code_ttl(config: &Config) -> anyhow::Result<time::Duration> {
    let ttl = time::Duration::try_from(config.authorization_code_ttl)
        .context("authorization_code_ttl_seconds is out of range")?;
    anyhow::ensure!(
        ttl >= time::Duration::seconds(1) && ttl <= time::Duration::minutes(10),
        "authorization_code_ttl_seconds must be between 1 and 600"
    );
    Ok(ttl)
}

fn access_ttl(config: &Config) -> anyhow::Result<time::Duration> {
    let access_ttl = time::Duration::try_from(config.access_token_ttl)
        .context("access_token_ttl is out of range")?;
    anyhow::ensure!(
        access_ttl >= time::Duration::seconds(30) && access_ttl <= time::Duration::hours(1),
        "access_token_ttl_seconds must be between 30 and 3600"
    );
    Ok(access_ttl)
}

/// The configured rotation of the signing keys, checked.
fn rotation_policy(config: &Config) -> anyhow::Result<RotationPolicy> {
    let lead = time::Duration::try_from(config.signing_key_lead)
        .context("signing_key_lead_seconds is out of range")?;
    anyhow::ensure!(
        lead >= time::Duration::seconds(1) && lead <= time::Duration::days(7),
        "signing_key_lead_seconds must be between 1 and 604800"
    );
    let period = config
        .signing_key_rotation
        .map(time::Duration::try_from)
        .transpose()
        .context("signing_key_rotation_days is out of range")?;
    if let Some(period) = period {
        anyhow::ensure!(
            period > lead,
            "signing_key_rotation_days must be longer than signing_key_lead_seconds"
        );
    }
    Ok(RotationPolicy { period, lead })
}

/// How often the service re-reads its keys and runs their upkeep: every minute, and at least
/// four times per lead time, so that every replica publishes a next key well before it signs.
pub fn key_upkeep_interval(config: &Config) -> Duration {
    (config.signing_key_lead / 4).clamp(Duration::from_millis(250), Duration::from_secs(60))
}

/// The service's keys from the configured key store (created if missing), the signing key
/// ring allowing the configured access-token lifetime.
pub async fn load_keys(config: &Config) -> anyhow::Result<Keys> {
    let access_ttl = access_ttl(config)?;
    let keys = Keys::load_or_create(
        key_store(config).await?,
        time::OffsetDateTime::now_utc(),
        access_ttl,
    )
    .await
    .context("loading the service keys")?;
    // The key ring was created with the lifetime configured then (by `bootstrap` or the first
    // start); raise its limit to what is configured now, so the setting means what it says.
    keys.allow_token_ttl(access_ttl)
        .await
        .context("applying access_token_ttl_seconds to the signing key ring")?;
    Ok(keys)
}

/// Keys, mailer, password hashing and token settings for identity.
pub async fn identity_services(config: &Config) -> anyhow::Result<IdentityServices> {
    let access_ttl = access_ttl(config)?;
    let signing_keys = rotation_policy(config)?;
    let keys = load_keys(config).await?;
    let mailer = idstream_mailer::build(&config.mail, &config.data_dir)
        .context("configuring mail delivery")?;
    let mail_templates =
        idstream_mailer::templates::MailTemplates::load(config.mail.templates.as_deref())
            .context("loading the mail templates")?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let public_url = config.public_url();
    Ok(IdentityServices {
        keys: Arc::new(keys),
        mailer,
        mail_templates: Arc::new(mail_templates),
        hasher: PasswordHasherPool::new(config.hash_concurrency.unwrap_or(cores)),
        config: IdentityConfig {
            issuer: public_url.clone(),
            audience: "idstream".into(),
            access_ttl,
            public_url,
            signing_keys,
            code_ttl: code_ttl(config)?,
            ..IdentityConfig::default()
        },
    })
}

/// The operator token's digest, if one is configured (`admin_token`): a system credential for
/// automation. Without it, people sign in (see `idstream bootstrap`). Never logged.
pub fn admin_token(config: &Config) -> anyhow::Result<Option<TokenDigest>> {
    match &config.admin_token {
        None => Ok(None),
        Some(token) => {
            anyhow::ensure!(
                token.len() >= 16,
                "admin_token must be at least 16 characters"
            );
            Ok(Some(TokenDigest::of(token)))
        }
    }
}

/// Starts the read models over `log` and builds the application on them; also returns the
/// read models' names. Stop the read models with [`ReadModels::shutdown`] when done.
///
/// The read models subscribe through one [`FanOutLog`] around `log` (which is the decrypting
/// [`PersonalDataLog`] in the service), so the backend delivers and the decorator decrypts each
/// event once for all of them; commands use `log` itself.
pub async fn open_app(
    config: &Config,
    log: SharedLog,
    keys: Arc<PersonalKeys>,
) -> anyhow::Result<(App, ReadModels, Vec<&'static str>)> {
    let seal = read_model_seal(config, keys).await?;
    let caches = idstream_app::Caches::new(seal.clone());
    let projections = idstream_app::projections(caches.clone());
    let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
    let read_models = ReadModels::start(
        &config.data_dir.join("readmodels"),
        FanOutLog::wrap(log.clone()),
        projections,
    )
    .await
    .context("starting the read models")?;
    let identity = identity_services(config).await?;
    let replays =
        idstream_app::replay::Replays::new(config.data_dir.join("replays"), log.clone(), seal);
    let app = App::new(
        log,
        read_models.clone(),
        caches,
        Arc::new(SystemClock),
        config.consistency_timeout,
        identity,
        replays,
    );
    Ok((app, read_models, names))
}

/// Starts the task that records signed tamper-evidence checkpoints in the log
/// (`idstream_chain::Checkpointer`). It loads the signing keys from the key store itself and
/// re-reads them every minute, so it sees the rotations of this replica's key upkeep and of others.
pub async fn start_chain_checkpoints(
    config: &Config,
    log: SharedLog,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let ttl = time::Duration::try_from(config.access_token_ttl)
        .context("access_token_ttl is out of range")?;
    let keys = Keys::load_or_create(
        key_store(config).await?,
        time::OffsetDateTime::now_utc(),
        ttl,
    )
    .await
    .context("loading the signing keys for chain checkpoints")?;
    let defaults = idstream_chain::CheckpointPolicy::default();
    let policy = idstream_chain::CheckpointPolicy {
        every_events: config.chain_checkpoint_events.max(1),
        every: config.chain_checkpoint_interval,
        poll: defaults.poll.min(
            config
                .chain_checkpoint_interval
                .max(Duration::from_millis(100)),
        ),
        ..defaults
    };
    let writer = idstream_chain::Checkpointer::new(log, Arc::new(keys), policy);
    Ok(tokio::spawn(writer.run()))
}

/// Runs the service until `shutdown` resolves, then drains requests and stops the read models.
/// Prints `idstream listening on http://ADDR` on stdout once the socket is bound.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let admin_token = admin_token(&config)?;
    apply_stream_replicas(&config).await?;
    let (log, personal_keys) = open_log(&config).await?;
    let startup_target = match log.last_position().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "the log's end is unknown at start; ready as soon as read models open");
            0
        }
    };
    let (app, read_models, _) = open_app(&config, log, personal_keys).await?;
    let upkeep = {
        let operations = app.operations.clone();
        let every = key_upkeep_interval(&config);
        tokio::spawn(async move {
            let upkeep = Caller::system("key-upkeep");
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(error) = operations.maintain_keys(&upkeep).await {
                    tracing::warn!(%error, "key upkeep failed; retrying");
                }
            }
        })
    };
    let lapses = {
        let access_admin = app.access_admin.clone();
        tokio::spawn(async move {
            // Temporary access stops counting at its end by itself; this records each lapse in
            // the log within about a second of it, for the trail and the listings.
            let upkeep = Caller::system("access-lapse");
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // While it fails (the log unreachable), it says so once a minute, not every second.
            let mut last_warning: Option<tokio::time::Instant> = None;
            loop {
                tick.tick().await;
                match access_admin.record_lapses(&upkeep, 100).await {
                    Ok(_) => last_warning = None,
                    Err(error) => {
                        let due =
                            last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
                        if due {
                            last_warning = Some(tokio::time::Instant::now());
                            tracing::warn!(%error, "recording lapsed temporary access failed; retrying every second");
                        } else {
                            tracing::debug!(%error, "recording lapsed temporary access failed again");
                        }
                    }
                }
            }
        })
    };
    let chain = start_chain_checkpoints(&config, app.operations.log().clone()).await?;
    // Found its place in the log before the first request, so no session ended from now on is
    // missed.
    let backchannel = app
        .oidc
        .backchannel_logout(
            &Caller::system("backchannel-logout"),
            config.data_dir.join("backchannel-logout.json"),
        )
        .await
        .context("starting back-channel logout")?;
    let backchannel = tokio::spawn(backchannel.run());
    let identity = app.identity.clone();
    let state = AppState::new(StateParts {
        app,
        admin_token: admin_token.map(Arc::new),
        metrics: Arc::new(Metrics::new()),
        startup_target,
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        cors_origins: config.cors_origins.clone(),
        account_pages: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    println!("idstream listening on http://{addr}");
    let _ = std::io::stdout().flush();
    idstream_server::serve(listener, state, config.max_body_bytes, shutdown).await?;
    // Failures of wrong passwords are recorded after their answers: let them land.
    if !identity.settle(Duration::from_secs(10)).await {
        tracing::warn!("stopping before every failed sign-in was recorded");
    }
    upkeep.abort();
    lapses.abort();
    chain.abort();
    backchannel.abort();
    tracing::info!("HTTP server stopped; stopping read models");
    read_models.shutdown().await;
    Ok(())
}
