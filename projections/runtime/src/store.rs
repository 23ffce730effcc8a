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
    retire_written_before_sealing(dir)?;
    let opened = open_healing_as_is(dir, &mut prepare)?;
    mark_sealed(dir)?;
    Ok(opened)
}

/// The file that marks a store written since personal data is sealed in read models (see
/// [`crate::personal`]).
pub const SEALED_MARKER: &str = "personal-data-sealed";

/// Deletes a store written before personal data was sealed in read models, and its moved-aside
/// copy: their files may hold personal data in the clear, which a rebuild in place would not
/// overwrite (sled reuses file space, it does not wipe it). Everything in them comes from the
/// log. A store that another process holds is left alone ([`RuntimeError::Locked`]).
pub fn retire_written_before_sealing(dir: &Path) -> Result<(), RuntimeError> {
    let io = |source| RuntimeError::Io {
        path: dir.to_owned(),
        source,
    };
    let holds_store = dir.join("conf").exists() || dir.join("db").exists();
    if !holds_store || dir.join(SEALED_MARKER).exists() {
        return Ok(());
    }
    let probe = catch_unwind(AssertUnwindSafe(|| {
        sled::Config::new().path(dir).flush_every_ms(None).open()
    }));
    if let Ok(Err(sled::Error::Io(error))) = &probe
        && error.to_string().contains("could not acquire lock")
    {
        return Err(RuntimeError::Locked {
            path: dir.to_owned(),
            reason: error.to_string(),
        });
    }
    drop(probe);
    std::fs::remove_dir_all(dir).map_err(io)?;
    if let Some(name) = dir.file_name() {
        let mut aside = name.to_owned();
        aside.push(".broken");
        let aside = dir.with_file_name(aside);
        if aside.exists() {
            std::fs::remove_dir_all(&aside).map_err(io)?;
        }
    }
    tracing::warn!(
        path = %dir.display(),
        "deleted a read-model store written before personal data was sealed in read models; every read model is rebuilt from the event log"
    );
    Ok(())
}

/// Marks `dir` as written with personal data sealed.
pub fn mark_sealed(dir: &Path) -> Result<(), RuntimeError> {
    let marker = dir.join(SEALED_MARKER);
    if marker.exists() {
        return Ok(());
    }
    std::fs::write(
        &marker,
        "Personal data in this store is sealed with each person's key (see idstream's README, Erasure).\n",
    )
    .map_err(|source| RuntimeError::Io {
        path: marker,
        source,
    })
}

fn open_healing_as_is<T>(
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

    /// A store as this version writes it (marked: personal data sealed).
    fn filled_store(dir: &Path) {
        let db = sled::open(dir).unwrap();
        db.open_tree("counter").unwrap().insert("k", "v").unwrap();
        db.flush().unwrap();
        mark_sealed(dir).unwrap();
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

    #[test]
    fn a_store_written_before_sealing_is_deleted_with_its_copy_and_a_marked_one_kept() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("models");
        {
            let db = sled::open(&dir).unwrap();
            db.insert("user/1", "{\"email\":\"canary-old@example.com\"}")
                .unwrap();
            db.flush().unwrap();
        }
        std::fs::create_dir_all(parent.path().join("models.broken")).unwrap();
        std::fs::write(
            parent.path().join("models.broken/db"),
            "canary-old@example.com",
        )
        .unwrap();

        let (db, found) = open_healing(&dir, |db| db.get("user/1")).unwrap();
        assert_eq!(found, None, "the old store was not kept");
        assert!(dir.join(SEALED_MARKER).exists());
        assert!(!parent.path().join("models.broken").exists());
        db.insert("user/2", "sealed").unwrap();
        db.flush().unwrap();
        drop(db);
        assert_eq!(
            crate::personal::files_holding(parent.path(), &["canary-old@example.com"]),
            vec![]
        );

        // Marked: opened as it is.
        std::thread::sleep(Duration::from_millis(100));
        let (_db, kept) = open_healing(&dir, |db| db.get("user/2")).unwrap();
        assert_eq!(kept.as_deref(), Some(&b"sealed"[..]));
    }

    #[test]
    fn a_store_written_before_sealing_but_held_by_another_process_is_not_touched() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("models");
        let holder = sled::open(&dir).unwrap();
        holder.insert("k", "v").unwrap();
        let result = retire_written_before_sealing(&dir);
        assert!(
            matches!(result, Err(RuntimeError::Locked { .. })),
            "{result:?}"
        );
        assert_eq!(holder.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
