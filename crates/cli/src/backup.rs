//! `idstream backup` and `idstream restore` (the format is documented in `docs/backup.md`).
//!
//! A backup is a directory: `log.jsonl` (the log up to a cut, in the log file format of
//! `log export`), `keys.sealed` (the whole key store, sealed with a pass phrase: argon2id and
//! XChaCha20-Poly1305, `idstream_keys::backup`) and `manifest.json`, written last, so a
//! directory without it is an incomplete backup.
//!
//! **Consistency while the service runs.** The cut is the log's last position when the backup
//! starts (a read-only snapshot of the embedded log, which takes no lock; the stream's last
//! sequence with JetStream). The key store is read after the log is copied. Keys are created
//! before the events that use them are appended and are never removed, only replaced by an
//! erasure's tombstone, so every key an event up to the cut needs is in the copy. Keys created
//! after the cut are extra and harmless. A person erased after the cut has a tombstone in the
//! copy while their `UserErased` event is not in it: the backup honours the erasure (their
//! personal data stays unreadable after a restore), and the manifest lists them under
//! `erased_after_cut` so the operator can erase them again in the restored deployment, which
//! records it in the log.
//!
//! The pass phrase comes from `IDSTREAM_BACKUP_PASSPHRASE` or the first line of
//! `--passphrase-file`, never from an argument, and is never printed.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use idstream_keys::KeySet;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Common;
use crate::copy::{Copy, Source, progress};
use crate::logfile;
use crate::migrate::write_log_file;
use crate::migrate::{describe_target, live_source, now_rfc3339, target_log, verify_copy};

const MANIFEST: &str = "manifest.json";
const LOG_FILE: &str = "log.jsonl";
const KEYS_FILE: &str = "keys.sealed";
const FORMAT: &str = "idstream-backup";
const VERSION: u32 = 1;
const PASSPHRASE_ENV: &str = "IDSTREAM_BACKUP_PASSPHRASE";

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    common: Common,
    /// The backup directory to create; it must not exist or be empty.
    #[arg(long)]
    out: PathBuf,
    /// Read the pass phrase from the first line of this file instead of the environment
    /// variable IDSTREAM_BACKUP_PASSPHRASE.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    common: Common,
    /// A backup directory written by `idstream backup`.
    #[arg(long)]
    from: PathBuf,
    /// Read the pass phrase from the first line of this file instead of the environment
    /// variable IDSTREAM_BACKUP_PASSPHRASE.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    created_at: String,
    source: SourceInfo,
    log: LogInfo,
    keys: KeysInfo,
}

#[derive(Debug, Serialize, Deserialize)]
struct SourceInfo {
    backend: String,
    log_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct LogInfo {
    file: String,
    /// Events in the backup: positions 1 to `last_position`.
    events: u64,
    last_position: u64,
    /// The tamper-evidence chain link after `last_position`, hex.
    chain: String,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeysInfo {
    file: String,
    count: usize,
    sha256: String,
    /// People whose key was destroyed after the cut: see the module documentation.
    erased_after_cut: Vec<String>,
}

/// What binds the sealed keys to their backup: a keys file of another backup does not open.
fn keys_context(log_id: &str, last: u64) -> String {
    format!("backup|{log_id}|{last}")
}

fn passphrase(file: Option<&Path>) -> anyhow::Result<Zeroizing<String>> {
    let text = match file {
        Some(path) => Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the pass phrase file {}", path.display()))?,
        ),
        None => Zeroizing::new(std::env::var(PASSPHRASE_ENV).map_err(|_| {
            anyhow::anyhow!(
                "set {PASSPHRASE_ENV} or pass --passphrase-file with the backup's pass phrase"
            )
        })?),
    };
    let line = Zeroizing::new(text.lines().next().unwrap_or("").to_owned());
    anyhow::ensure!(!line.is_empty(), "the pass phrase is empty");
    Ok(line)
}

/// The user erased by this stored event, if it is a `UserErased` (lower case, as key names).
fn erased_by(bytes: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"\"UserErased\"";
    if !bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
        return None;
    }
    #[derive(Deserialize)]
    struct Aggregate {
        #[serde(rename = "type")]
        kind: String,
        id: String,
    }
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "type")]
        event_type: String,
        aggregate: Aggregate,
    }
    let peek: Peek = serde_json::from_slice(bytes).ok()?;
    (peek.event_type == "UserErased" && peek.aggregate.kind == "user")
        .then(|| peek.aggregate.id.to_ascii_lowercase())
}

/// Writes `bytes` to a new file `path` (mode 0600) and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// `idstream backup --out DIR`.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let passphrase = passphrase(args.passphrase_file.as_deref())?;
    anyhow::ensure!(
        passphrase.chars().count() >= idstream_keys::backup::MIN_PASSPHRASE_LEN,
        "the pass phrase must be at least {} characters",
        idstream_keys::backup::MIN_PASSPHRASE_LEN
    );
    let config = args.common.config()?;
    // The cut: the log's last position now.
    let log = live_source(&config).await?;
    let cut = log.last_position().await.context("reading the log's end")?;
    let log_id = log.log_id().await.context("reading the log's id")?;
    let out = &args.out;
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_none();
        anyhow::ensure!(empty, "{} exists and is not empty", out.display());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .with_context(|| format!("creating {}", out.display()))?;

    let header = logfile::Header {
        format: logfile::FORMAT.into(),
        version: logfile::VERSION,
        log_id: log_id.clone(),
        backend: log.backend().into(),
        exported_at: now_rfc3339()?,
    };
    let log_path = out.join(LOG_FILE);
    let mut erased_in_log = HashSet::new();
    let end = write_log_file(&log_path, &header, log, cut, |event| {
        if let Some(user) = erased_by(&event.bytes) {
            erased_in_log.insert(user);
        }
    })
    .await?;

    // The keys as of now, after the cut (see the module documentation).
    let store = crate::startup::key_store(&config).await?;
    let keys = KeySet::read_from(store.as_ref())
        .await
        .context("reading the key store")?;
    let erased_after_cut: Vec<String> = keys
        .erased_users()
        .into_iter()
        .filter(|user| !erased_in_log.contains(user))
        .collect();
    let sealed = keys
        .seal(&passphrase, &keys_context(&log_id, end.last))
        .context("sealing the keys")?;
    let keys_path = out.join(KEYS_FILE);
    write_new(&keys_path, &sealed)?;

    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        created_at: now_rfc3339()?,
        source: SourceInfo {
            backend: header.backend.clone(),
            log_id: log_id.clone(),
        },
        log: LogInfo {
            file: LOG_FILE.into(),
            events: end.events,
            last_position: end.last,
            chain: hex::encode(end.chain),
            sha256: logfile::sha256_of(&log_path)?,
        },
        keys: KeysInfo {
            file: KEYS_FILE.into(),
            count: keys.len(),
            sha256: logfile::sha256_of(&keys_path)?,
            erased_after_cut: erased_after_cut.clone(),
        },
    };
    write_new(&out.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::File::open(out)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing {}", out.display()))?;

    println!(
        "backup of log {log_id} written to {}: {} events (positions 1 to {}) and {} keys; chain \
         link after position {}: {}",
        out.display(),
        end.events,
        end.last,
        keys.len(),
        end.last,
        hex::encode(end.chain)
    );
    if !erased_after_cut.is_empty() {
        println!(
            "note: {} people were erased after position {}; their keys are destroyed in the \
             backup too, but their erasure is not in its log: after a restore, erase them again \
             (their ids are under keys.erased_after_cut in {MANIFEST})",
            erased_after_cut.len(),
            end.last
        );
    }
    Ok(())
}

fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{} is not a complete backup: it has no {MANIFEST} (a backup writes it last)",
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a backup manifest", path.display()))?;
    anyhow::ensure!(
        manifest.format == FORMAT,
        "{} is not an idstream backup manifest (format {:?})",
        path.display(),
        manifest.format
    );
    anyhow::ensure!(
        manifest.version == VERSION,
        "the backup is version {} of the format; this build reads version {VERSION}",
        manifest.version
    );
    for (file, sha256) in [
        (&manifest.log.file, &manifest.log.sha256),
        (&manifest.keys.file, &manifest.keys.sha256),
    ] {
        anyhow::ensure!(
            !file.contains('/') && !file.contains(".."),
            "the manifest names a file outside the backup: {file:?}"
        );
        let actual = logfile::sha256_of(&dir.join(file))?;
        anyhow::ensure!(
            &actual == sha256,
            "{file} in {} is not the file the backup wrote (its SHA-256 differs from the manifest's)",
            dir.display()
        );
    }
    Ok(manifest)
}

/// `idstream restore --from DIR`.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let passphrase = passphrase(args.passphrase_file.as_deref())?;
    let config = args.common.config()?;
    let dir = &args.from;
    let manifest = read_manifest(dir)?;
    let sealed = std::fs::read(dir.join(&manifest.keys.file))
        .with_context(|| format!("reading {}", manifest.keys.file))?;
    let keys = KeySet::open(
        &sealed,
        &passphrase,
        &keys_context(&manifest.source.log_id, manifest.log.last_position),
    )?;
    anyhow::ensure!(
        keys.len() == manifest.keys.count,
        "the keys file holds {} keys; the manifest says {}",
        keys.len(),
        manifest.keys.count
    );
    let log_path = dir.join(&manifest.log.file);
    let (header, end) = logfile::Reader::check(&log_path)?;
    anyhow::ensure!(
        end.events == manifest.log.events
            && end.last == manifest.log.last_position
            && hex::encode(end.chain) == manifest.log.chain
            && header.log_id == manifest.source.log_id,
        "the backup's log file does not match its manifest"
    );

    let target = target_log(&config).await?;
    let store = crate::startup::key_store(&config).await?;
    let reader = logfile::Reader::open(&log_path)?;
    let copy = Copy::start(Source::File(Box::new(reader)), target.clone()).await?;
    copy.tell_resumed("restore", "backup", end.last);
    let written = keys
        .write_into(store.as_ref())
        .await
        .context("restoring the keys")?;
    let copied = copy.run(progress("restore", end.last)).await?;
    let verified = verify_copy(target, Some(&keys), &copied).await?;
    println!(
        "restored log {} ({} events, {} keys) from {} into {}",
        manifest.source.log_id,
        copied.last,
        written.created + written.present,
        dir.display(),
        describe_target(&config)
    );
    println!("{verified}");
    if !manifest.keys.erased_after_cut.is_empty() {
        println!(
            "note: {} people were erased after this backup's cut; erase them again to record it: {}",
            manifest.keys.erased_after_cut.len(),
            manifest.keys.erased_after_cut.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_user_erasure_names_an_erased_user() {
        let erased = br#"{"id":"01J","type":"UserErased","version":1,"aggregate":{"type":"user","id":"01ABC"},"data":{}}"#;
        assert_eq!(erased_by(erased).as_deref(), Some("01abc"));
        let other = br#"{"id":"01J","type":"UserRegistered","version":1,"aggregate":{"type":"user","id":"01ABC"},"data":{"note":"\"UserErased\""}}"#;
        assert_eq!(erased_by(other), None);
        assert_eq!(erased_by(b"\"UserErased\" but not json"), None);
    }
}
