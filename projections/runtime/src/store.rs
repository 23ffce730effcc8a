//! Opening the sled store, and healing it by starting over when it will not open.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::RuntimeError;

/// Runs blocking work (sled, file system) off the async workers. A panic in `work` is resumed
/// in the caller.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Why a store could not be used as it is.
pub(crate) enum Broken {
    /// Another process holds it: leave it alone.
    Locked(String),
    /// Damaged or unreadable: it may be thrown away, since everything in it comes from the log.
    Damaged(String),
}

/// Opens the store in `dir`, then `prepare`s it. If either finds it damaged (an error or a panic
/// inside sled), the directory is moved aside to `<dir>.broken` (replacing an older one, so they do
/// not pile up) and both run again on an empty store, from which the read models rebuild from the
/// log. A store locked by another process is never touched.
pub(crate) fn open_healing<T>(
    dir: &Path,
    mut prepare: impl FnMut(&sled::Db) -> Result<T, sled::Error>,
) -> Result<(sled::Db, T), RuntimeError> {
    let reason = match attempt_patiently(dir, &mut prepare) {
        Ok(opened) => return Ok(opened),
        Err(Broken::Locked(reason)) => {
            return Err(RuntimeError::Locked {
                path: dir.to_owned(),
                reason,
            });
        }
        Err(Broken::Damaged(reason)) => reason,
    };
    let aside = move_aside(dir)?;
    tracing::warn!(
        path = %dir.display(),
        moved_to = %aside.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(deleted)".into()),
        %reason,
        "the read-model store could not be opened; it was moved aside and every read model is rebuilt from the event log"
    );
    attempt_patiently(dir, &mut prepare).map_err(|broken| match broken {
        Broken::Locked(reason) => RuntimeError::Locked {
            path: dir.to_owned(),
            reason,
        },
        Broken::Damaged(reason) => RuntimeError::Io {
            path: dir.to_owned(),
            source: std::io::Error::other(format!(
                "a fresh read-model store cannot be opened either: {reason}"
            )),
        },
    })
}

/// How long a lock on the store is waited for before it counts as held by another process. A
/// store closed a moment ago (by this process's previous read models, or by a process that is
/// exiting) releases its lock only when sled's last background thread lets go of it.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// [`attempt`], waiting up to [`LOCK_PATIENCE`] for a lock that is about to be released.
fn attempt_patiently<T>(
    dir: &Path,
    prepare: &mut impl FnMut(&sled::Db) -> Result<T, sled::Error>,
) -> Result<(sled::Db, T), Broken> {
    let started = Instant::now();
    loop {
        match attempt(dir, prepare) {
            Err(Broken::Locked(_)) if started.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn attempt<T>(
    dir: &Path,
    prepare: &mut impl FnMut(&sled::Db) -> Result<T, sled::Error>,
) -> Result<(sled::Db, T), Broken> {
    // sled 0.34 panics on some kinds of damage instead of returning an error.
    let opened = catch_unwind(AssertUnwindSafe(|| {
        // Read models are rebuildable, so favour throughput over space, and let sled's background
        // flusher run less often: a crash loses at most the last second of applied batches, and
        // the runner re-applies them from the log (sled recovers to a consistent prefix, and the
        // checkpoint lives in the same batches as the data).
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(1000))
            .open()?;
        let prepared = prepare(&db)?;
        Ok::<_, sled::Error>((db, prepared))
    }));
    match opened {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(sled::Error::Io(error))) if error.to_string().contains("could not acquire lock") => {
            Err(Broken::Locked(error.to_string()))
        }
        Ok(Err(error)) => Err(Broken::Damaged(error.to_string())),
        Err(_) => Err(Broken::Damaged(
            "sled panicked while opening the store".into(),
        )),
    }
}

/// Moves `dir` to `<dir>.broken`; deletes it where it cannot be moved. Returns where it went.
fn move_aside(dir: &Path) -> Result<Option<PathBuf>, RuntimeError> {
    let io = |source| RuntimeError::Io {
        path: dir.to_owned(),
        source,
    };
    if let Some(name) = dir.file_name() {
        let mut aside_name = name.to_owned();
        aside_name.push(".broken");
        let aside = dir.with_file_name(aside_name);
        if aside.exists() {
            std::fs::remove_dir_all(&aside).map_err(io)?;
        }
        if std::fs::rename(dir, &aside).is_ok() {
            return Ok(Some(aside));
        }
    }
    std::fs::remove_dir_all(dir).map_err(io)?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled_store(dir: &Path) {
        let db = sled::open(dir).unwrap();
        db.open_tree("counter").unwrap().insert("k", "v").unwrap();
        db.flush().unwrap();
    }

    #[test]
    fn a_store_with_a_damaged_config_is_moved_aside_and_started_afresh() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("models");
        filled_store(&dir);
        std::fs::write(dir.join("conf"), b"\xff\xfe not a sled config").unwrap();

        let (db, found) = open_healing(&dir, |db| db.open_tree("counter")?.get("k")).unwrap();
        assert_eq!(found, None, "the fresh store is empty");
        assert!(
            parent.path().join("models.broken").join("conf").exists(),
            "the damaged store was kept aside"
        );
        drop(db);
    }

    #[test]
    fn garbage_in_the_data_files_never_surfaces_as_data() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("models");
        filled_store(&dir);
        let garbage: Vec<u8> = (0..64 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(dir.join("db"), &garbage).unwrap();
        for entry in std::fs::read_dir(dir.join("snap.0000000000000000"))
            .into_iter()
            .flatten()
            .flatten()
        {
            std::fs::write(entry.path(), &garbage).unwrap();
        }

        // sled either refuses the files (and the store is moved aside) or discards what fails its
        // checksums; both leave an empty, usable store that is rebuilt from the log.
        let (db, found) = open_healing(&dir, |db| db.open_tree("counter")?.get("k")).unwrap();
        assert_eq!(found, None);
        db.insert("usable", "yes").unwrap();
        assert_eq!(db.get("usable").unwrap().as_deref(), Some(&b"yes"[..]));
    }

    #[test]
    fn a_store_locked_by_another_process_is_left_alone() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("models");
        let _holder = sled::open(&dir).unwrap();
        // sled's lock is a process-wide flock: a second open in the same process conflicts too.
        let result = open_healing(&dir, |_| Ok(()));
        assert!(
            matches!(result, Err(RuntimeError::Locked { .. })),
            "{:?}",
            result.err()
        );
        assert!(!parent.path().join("models.broken").exists());
    }
}
