//! Moving a log between backends: `idstream migrate --to nats://…` (the embedded log and its key
//! store into a JetStream stream and key bucket) and `idstream log export` / `log import` (the
//! stored events to and from a file, `docs/log-file.md`).
//!
//! Every copy keeps positions, subjects, bytes and msg ids, so event ids, order, the
//! tamper-evidence chain and its signed checkpoints are those of the source. A target must be
//! empty or hold an interrupted copy of the same log (then the copy resumes after it); the
//! chain of the target is compared with the source's before success is reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use idstream_chain::{TrustedKeys, VerifyError, verify_log};
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_eventlog::jetstream::{JetStreamLog, JetStreamOptions};
use idstream_eventlog::{LogError, SharedLog};
use idstream_keys::{FileKeyStore, JetStreamKeyStore, JetStreamKeyStoreOptions, KeySet};

use crate::Common;
use crate::config::Config;
use crate::copy::{Copied, Copy, Source, chain_of, progress};
use crate::logfile;

#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    common: Common,
    /// The NATS server(s) of the new deployment, comma-separated (the seeds of a cluster). The
    /// stream (--stream) and the key bucket are created there; --stream-replicas sets their
    /// replicas.
    #[arg(long)]
    to: String,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    common: Common,
    /// The file to write; it must not exist.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    common: Common,
    /// A file written by `idstream log export`.
    #[arg(long)]
    from: PathBuf,
}

/// The embedded log of `data_dir`, which must exist; opened exclusively unless `read_only`.
pub(crate) async fn embedded_source(config: &Config, read_only: bool) -> anyhow::Result<SharedLog> {
    let dir = config.data_dir.join("log");
    anyhow::ensure!(
        EmbeddedLog::exists(&dir),
        "there is no embedded log in {}",
        dir.display()
    );
    let log = if read_only {
        EmbeddedLog::open_read_only(&dir).await
    } else {
        EmbeddedLog::open(&dir, EmbeddedOptions::default()).await
    };
    match log {
        Ok(log) => Ok(log),
        Err(LogError::Unavailable(why)) if why.contains("already open") => anyhow::bail!(
            "the embedded log in {} is in use by a running service: stop it first ({why})",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("opening the embedded log in {}", dir.display())),
    }
}

/// The configured log to read from while a service may run: a read-only snapshot of the
/// embedded log, or the JetStream stream.
pub(crate) async fn live_source(config: &Config) -> anyhow::Result<SharedLog> {
    match config.nats_url {
        None => embedded_source(config, true).await,
        Some(_) => crate::startup::open_raw_log(config).await,
    }
}

/// The configured log to write a copy into: the embedded log of `data_dir` (opened exclusively,
/// created if missing) or the JetStream stream (created if missing).
pub(crate) async fn target_log(config: &Config) -> anyhow::Result<SharedLog> {
    match config.nats_url {
        None => {
            let dir = config.data_dir.join("log");
            match EmbeddedLog::open(&dir, EmbeddedOptions::default()).await {
                Ok(log) => Ok(log),
                Err(LogError::Unavailable(why)) if why.contains("already open") => anyhow::bail!(
                    "the embedded log in {} is in use by a running service: stop it first",
                    dir.display()
                ),
                Err(e) => {
                    Err(e).with_context(|| format!("opening the embedded log in {}", dir.display()))
                }
            }
        }
        Some(_) => crate::startup::open_raw_log(config).await,
    }
}

/// Checks the copy in `target`: the chain over its stored events must be the source's, and, when
/// the signing keys are known, every signed checkpoint must verify (`idstream audit verify`).
/// Returns a sentence saying what was verified.
pub(crate) async fn verify_copy(
    target: SharedLog,
    keys: Option<&KeySet>,
    copied: &Copied,
) -> anyhow::Result<String> {
    let (last, chain) = chain_of(&target).await?;
    anyhow::ensure!(
        last == copied.last && chain == copied.chain,
        "the copy does not match the source: the target ends at position {last} with chain link {}, \
         the source at {} with {}",
        hex::encode(chain),
        copied.last,
        hex::encode(copied.chain)
    );
    let ring = keys
        .and_then(|keys| keys.get(idstream_keys::keys::SIGNING_DOCUMENT))
        .map(|document| {
            let text = std::str::from_utf8(document).context("the signing keys are not UTF-8")?;
            idstream_auth::KeyRing::from_json(text)
                .map_err(|e| anyhow::anyhow!("the signing keys cannot be read: {e}"))
        })
        .transpose()?;
    let Some(ring) = ring else {
        return Ok(format!(
            "chain link after position {last}: {} (same as the source; without the signing keys the \
             checkpoints' signatures were not checked: run `idstream audit verify --jwks …`)",
            hex::encode(chain)
        ));
    };
    let trusted = TrustedKeys::from_ring(&ring);
    match verify_log(target, trusted, |_, _| {}).await {
        Ok(summary) => Ok(format!(
            "chain verified: {} events, {} signed checkpoints, {} events after the last one; chain \
             link after position {last}: {}",
            summary.events,
            summary.checkpoints,
            summary.uncovered(),
            hex::encode(chain)
        )),
        Err(VerifyError::Mismatch(mismatch)) => anyhow::bail!(
            "the copy did NOT verify: first mismatch at position {}: {}",
            mismatch.position,
            mismatch.reason
        ),
        Err(VerifyError::Log(e)) => Err(e).context("verifying the copy"),
    }
}

/// `idstream migrate --to nats://…`.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let config = args.common.config()?;
    let source = embedded_source(&config, false).await?;
    let until = source.last_position().await?;
    let source_id = source.log_id().await?;
    let source_keys = FileKeyStore::open(config.data_dir.join("keys"))
        .context("opening the key store of the data directory")?;
    let keys = KeySet::read_from(&source_keys)
        .await
        .context("reading the key store of the data directory")?;

    let options = JetStreamOptions {
        url: args.to.clone(),
        stream: config.stream.clone(),
        replicas: config.stream_replicas,
        ..JetStreamOptions::default()
    };
    let target: SharedLog = Arc::new(
        JetStreamLog::connect(options)
            .await
            .with_context(|| format!("opening the stream {} at {}", config.stream, args.to))?,
    );
    let target_keys = JetStreamKeyStore::connect(
        &args.to,
        &JetStreamKeyStoreOptions {
            replicas: config.stream_replicas,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("opening the key bucket at {}", args.to))?;

    let copy = Copy::start(Source::log(source, until), target.clone()).await?;
    copy.tell_resumed("migrate", "log", until);
    // Keys first: an event must never be in the target without the key that opens it.
    let written = keys
        .write_into(&target_keys)
        .await
        .context("copying the keys into the key bucket")?;
    let copied = copy.run(progress("migrate", until)).await?;
    let verified = verify_copy(target, Some(&keys), &copied).await?;
    println!(
        "migrated log {source_id} ({} events; {} copied now, {} already there) and {} keys ({} \
         copied now) into stream {} at {}",
        copied.last,
        copied.copied,
        copied.already,
        keys.len(),
        written.created,
        config.stream,
        args.to
    );
    println!("{verified}");
    println!(
        "next: run the service with nats_url = {:?} (the read models rebuild from the stream)",
        args.to
    );
    Ok(())
}

/// `idstream log export --out FILE`.
pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let config = args.common.config()?;
    let log = live_source(&config).await?;
    let until = log.last_position().await?;
    let header = logfile::Header {
        format: logfile::FORMAT.into(),
        version: logfile::VERSION,
        log_id: log.log_id().await?,
        backend: log.backend().into(),
        exported_at: now_rfc3339()?,
    };
    let end = write_log_file(&args.out, &header, log, until, |_| {}).await?;
    println!(
        "exported {} events of log {} to {}; chain link after position {}: {}",
        end.events,
        header.log_id,
        args.out.display(),
        end.last,
        hex::encode(end.chain)
    );
    Ok(())
}

/// Writes `log` up to `until` into a new log file at `path`, showing each event to `each`.
pub(crate) async fn write_log_file(
    path: &Path,
    header: &logfile::Header,
    log: SharedLog,
    until: idstream_eventlog::Position,
    mut each: impl FnMut(&idstream_eventlog::RawEvent),
) -> anyhow::Result<logfile::End> {
    let mut writer = logfile::Writer::create(path, header)?;
    let written = async move {
        let mut source = Source::log(log, until);
        let mut report = progress("export", until);
        loop {
            let page = source.next_page().await?;
            let Some(last) = page.last().map(|e| e.position) else {
                break;
            };
            for event in &page {
                each(event);
                writer.write(event)?;
            }
            report(last);
        }
        writer.finish()
    }
    .await;
    if written.is_err() {
        // An incomplete file (it has no end line) is never left to be mistaken for an export.
        let _ = std::fs::remove_file(path);
    }
    written
}

/// `idstream log import --from FILE`.
pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let config = args.common.config()?;
    // The whole file is checked before the target is touched.
    let (header, end) = logfile::Reader::check(&args.from)?;
    let target = target_log(&config).await?;
    let reader = logfile::Reader::open(&args.from)?;
    let copy = Copy::start(Source::File(Box::new(reader)), target.clone()).await?;
    copy.tell_resumed("import", "file", end.last);
    let copied = copy.run(progress("import", end.last)).await?;
    anyhow::ensure!(
        copied.chain == end.chain && copied.last == end.last,
        "the imported events do not match the file's end line"
    );
    let verified = verify_copy(target.clone(), None, &copied).await?;
    println!(
        "imported {} events of log {} ({} copied now, {} already there) into {}",
        copied.last,
        header.log_id,
        copied.copied,
        copied.already,
        describe_target(&config)
    );
    println!("{verified}");
    Ok(())
}

pub(crate) fn describe_target(config: &Config) -> String {
    match &config.nats_url {
        None => format!(
            "the embedded log in {}",
            config.data_dir.join("log").display()
        ),
        Some(url) => format!("stream {} at {url}", config.stream),
    }
}

pub(crate) fn now_rfc3339() -> anyhow::Result<String> {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the time")
}
