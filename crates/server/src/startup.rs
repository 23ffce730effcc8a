//! Wiring: open the log, start the read models, build the app, serve HTTP until shutdown.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use idstream_app::{App, SystemClock};
use idstream_auth::{SecretToken, TokenDigest};
use idstream_directory::DirectoryProjection;
use idstream_eventlog::SharedLog;
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_eventlog::jetstream::{JetStreamLog, JetStreamOptions};
use idstream_projection_runtime::{Projection, ReadModels};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::{AppState, router};

/// Every read model the service maintains.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(DirectoryProjection)]
}

/// Opens the configured log. JetStream is retried until it answers or `give_up` resolves, so a
/// service started before its NATS cluster waits for it instead of failing.
pub async fn open_log(config: &Config) -> anyhow::Result<SharedLog> {
    match &config.nats_url {
        None => {
            let dir = config.data_dir.join("log");
            let log = EmbeddedLog::open(&dir, EmbeddedOptions::default())
                .await
                .with_context(|| format!("opening the embedded log in {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), "embedded event log open");
            Ok(log)
        }
        Some(url) => {
            let options = JetStreamOptions {
                url: url.clone(),
                stream: config.stream.clone(),
                replicas: config.stream_replicas,
                ..JetStreamOptions::default()
            };
            let mut delay = Duration::from_millis(200);
            loop {
                match JetStreamLog::connect(options.clone()).await {
                    Ok(log) => {
                        tracing::info!(%url, stream = %config.stream, "JetStream event log connected");
                        return Ok(Arc::new(log));
                    }
                    Err(idstream_eventlog::LogError::Unavailable(why)) => {
                        tracing::warn!(%url, %why, retry_in_ms = delay.as_millis() as u64, "waiting for NATS");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => return Err(e).context("opening the JetStream event log"),
                }
            }
        }
    }
}

/// The admin token's digest: from configuration, else from `data_dir/admin-token`, which is
/// created with a new random token (mode 0600) on first start. The token itself is never logged.
pub fn admin_token(config: &Config) -> anyhow::Result<TokenDigest> {
    if let Some(token) = &config.admin_token {
        anyhow::ensure!(
            token.len() >= 16,
            "admin_token must be at least 16 characters"
        );
        return Ok(TokenDigest::of(token));
    }
    let path = config.data_dir.join("admin-token");
    if let Ok(text) = std::fs::read_to_string(&path) {
        tracing::info!(file = %path.display(), "bootstrap admin token read from file");
        return Ok(TokenDigest::of(text.trim()));
    }
    let token = SecretToken::generate(32);
    write_private(&path, token.reveal()).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(file = %path.display(), "generated a bootstrap admin token; read it from this file");
    Ok(token.digest())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
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
    let log = open_log(&config).await?;
    let startup_target = match log.last_position().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "the log's end is unknown at start; ready as soon as read models open");
            0
        }
    };
    let projections = projections();
    let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
    let read_models = ReadModels::start(
        &config.data_dir.join("readmodels"),
        log.clone(),
        projections,
    )
    .await
    .context("starting the read models")?;
    let app = App::new(
        log,
        read_models.clone(),
        Arc::new(SystemClock),
        config.consistency_timeout,
    );
    let state = AppState {
        app,
        admin_token: Arc::new(admin_token),
        metrics: Arc::new(Metrics::new()),
        startup_target,
        read_model_names: Arc::new(names),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    println!("idstream listening on http://{addr}");
    let _ = std::io::stdout().flush();
    axum::serve(listener, router(state, config.max_body_bytes))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("HTTP server stopped; stopping read models");
    read_models.shutdown().await;
    Ok(())
}
