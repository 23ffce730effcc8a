//! [`FileKeyStore`]: key documents as files in a private directory (embedded mode).
//!
//! The directory is mode 0700 and every file 0600. A value is written to a temporary file, synced,
//! and only then given its name, so a reader (or a restart after a crash) sees either no value or
//! a whole one:
//!
//! - `create` links the temporary file to its final name with `link(2)`, which fails if the name
//!   exists: of two racing creators, in one process or several, exactly one wins.
//! - `replace` compares and renames over the old file while holding an exclusive `flock` on the
//!   directory's `.lock` file, so two rotations cannot both succeed.
//!
//! A crash between writing a temporary file and removing it can leave a `.tmp-*` file (mode 0600)
//! behind; it is never read and can be deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::store::{KeyStore, KeyStoreError, check_name};

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
const LOCK_FILE: &str = ".lock";

/// Makes temporary file names unique within the process (the pid separates processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Key documents in a directory of their own, such as `<data dir>/keys`.
#[derive(Debug, Clone)]
pub struct FileKeyStore {
    dir: PathBuf,
}

impl FileKeyStore {
    /// Opens the store in `dir`, creating the directory (and its parents) if needed and setting
    /// its mode to 0700 (only the service's user may list or read it).
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileKeyStore, KeyStoreError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)
            .map_err(|e| io_error("create the directory", &dir, e))?;
        // `recursive(true)` accepts an existing directory, whatever its mode: tighten it.
        fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| io_error("restrict the permissions of", &dir, e))?;
        Ok(FileKeyStore { dir })
    }

    /// The directory holding the key files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn get_blocking(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
        read_value(&self.path(name))
    }

    fn create_blocking(&self, name: &str, value: &[u8]) -> Result<bool, KeyStoreError> {
        let target = self.path(name);
        let temp = self.write_temp(name, value)?;
        let linked = fs::hard_link(&temp, &target);
        remove_temp(&temp);
        match linked {
            Ok(()) => {
                sync_dir(&self.dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_error("create", &target, e)),
        }
    }

    fn replace_blocking(
        &self,
        name: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, KeyStoreError> {
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&lock_path)
            .map_err(|e| io_error("open the lock file", &lock_path, e))?;
        // Held until `lock` is dropped (closing the descriptor releases it), also on errors.
        lock.lock().map_err(|e| io_error("lock", &lock_path, e))?;

        let target = self.path(name);
        let Some(current) = read_value(&target)? else {
            return Ok(false);
        };
        if !bool::from(current.as_slice().ct_eq(expected)) {
            return Ok(false);
        }
        let temp = self.write_temp(name, new)?;
        if let Err(e) = fs::rename(&temp, &target) {
            remove_temp(&temp);
            return Err(io_error("replace", &target, e));
        }
        sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Writes `value` to a new temporary file (mode 0600) in the store's directory and syncs it.
    fn write_temp(&self, name: &str, value: &[u8]) -> Result<PathBuf, KeyStoreError> {
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let temp = self
                .dir
                .join(format!(".tmp-{name}-{}-{n}", std::process::id()));
            let mut file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&temp)
            {
                Ok(file) => file,
                // Left by a crashed process that had our pid: take the next number.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("create a temporary file in", &self.dir, e)),
            };
            let written = file
                .write_all(value)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error("write", &temp, e));
            if let Err(e) = written {
                remove_temp(&temp);
                return Err(e);
            }
            return Ok(temp);
        }
    }
}

#[async_trait]
impl KeyStore for FileKeyStore {
    async fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
        check_name(name)?;
        let store = self.clone();
        let name = name.to_owned();
        blocking(move || store.get_blocking(&name)).await
    }

    fn get_now(&self, name: &str) -> Option<Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError>> {
        Some(check_name(name).and_then(|()| self.get_blocking(name)))
    }

    async fn create(&self, name: &str, value: &[u8]) -> Result<bool, KeyStoreError> {
        check_name(name)?;
        let store = self.clone();
        let name = name.to_owned();
        let value = Zeroizing::new(value.to_vec());
        blocking(move || store.create_blocking(&name, &value)).await
    }

    async fn replace(
        &self,
        name: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, KeyStoreError> {
        check_name(name)?;
        let store = self.clone();
        let name = name.to_owned();
        let expected = Zeroizing::new(expected.to_vec());
        let new = Zeroizing::new(new.to_vec());
        blocking(move || store.replace_blocking(&name, &expected, &new)).await
    }

    /// Every `<name>.key` file of the directory whose name is a valid key name (temporary and
    /// lock files are not values).
    async fn names(&self) -> Result<Vec<String>, KeyStoreError> {
        let dir = self.dir.clone();
        blocking(move || {
            let listing = fs::read_dir(&dir).map_err(|e| io_error("list", &dir, e))?;
            let mut names = Vec::new();
            for entry in listing {
                let entry = entry.map_err(|e| io_error("list", &dir, e))?;
                let file_name = entry.file_name();
                if let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".key"))
                    && check_name(name).is_ok()
                {
                    names.push(name.to_owned());
                }
            }
            Ok(names)
        })
        .await
    }
}

/// Runs file IO (including a lock wait) off the async runtime's worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, KeyStoreError> + Send + 'static,
) -> Result<T, KeyStoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| KeyStoreError::Unavailable(format!("key store task failed: {e}")))?
}

fn read_value(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

/// Makes a new or renamed directory entry durable.
fn sync_dir(dir: &Path) -> Result<(), KeyStoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync the directory", dir, e))
}

fn remove_temp(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a temporary key file");
    }
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> KeyStoreError {
    KeyStoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_value_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::open(dir.path().join("keys")).unwrap();
        assert_eq!(store.get("vault").await.unwrap(), None);
        assert!(store.create("vault", b"first").await.unwrap());
        assert!(!store.create("vault", b"second").await.unwrap());
        assert_eq!(&store.get("vault").await.unwrap().unwrap()[..], b"first");
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["vault.key".to_owned()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_eight_racing_creators_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        // Separate store values, as separate processes would have.
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let store = FileKeyStore::open(dir.path()).unwrap();
                tokio::spawn(async move {
                    let created = store.create("vault", &[i; 100]).await.unwrap();
                    let read = store.get("vault").await.unwrap().unwrap();
                    (created, read.to_vec())
                })
            })
            .collect();
        let mut winners = 0;
        let mut values = Vec::new();
        for task in tasks {
            let (created, value) = task.await.unwrap();
            winners += usize::from(created);
            values.push(value);
        }
        assert_eq!(winners, 1);
        assert!(
            values.windows(2).all(|w| w[0] == w[1]),
            "all read the winner's value"
        );
        assert_eq!(values[0].len(), 100);
    }

    #[test]
    fn of_eight_racing_threads_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::open(dir.path()).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let created = store.create_blocking("signing", &[i; 64]).unwrap();
                    (
                        created,
                        store.get_blocking("signing").unwrap().unwrap().to_vec(),
                    )
                })
            })
            .collect();
        let results: Vec<(bool, Vec<u8>)> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|(created, _)| *created).count(), 1);
        let winner = results
            .iter()
            .find(|(created, _)| *created)
            .unwrap()
            .1
            .clone();
        assert!(results.iter().all(|(_, value)| *value == winner));
    }

    #[tokio::test]
    async fn replace_is_a_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::open(dir.path()).unwrap();
        assert!(
            !store.replace("signing", b"a", b"b").await.unwrap(),
            "absent"
        );
        store.create("signing", b"a").await.unwrap();
        assert!(!store.replace("signing", b"x", b"b").await.unwrap());
        assert_eq!(&store.get("signing").await.unwrap().unwrap()[..], b"a");
        assert!(store.replace("signing", b"a", b"b").await.unwrap());
        assert_eq!(&store.get("signing").await.unwrap().unwrap()[..], b"b");
        assert!(
            !store.replace("signing", b"a", b"c").await.unwrap(),
            "stale"
        );
        assert_eq!(mode(&store.path("signing")), 0o600);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_racing_replacements_of_one_value_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::open(dir.path()).unwrap();
        store.create("signing", b"v0").await.unwrap();
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.replace("signing", b"v0", &[i; 8]).await.unwrap() })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap());
        }
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn the_directory_is_private_and_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("data").join("keys");
        let store = FileKeyStore::open(&keys).unwrap();
        assert_eq!(mode(&keys), 0o700);
        store.create("vault", b"secret").await.unwrap();
        assert_eq!(mode(&store.path("vault")), 0o600);
        // An existing directory with a looser mode is tightened.
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o755)).unwrap();
        FileKeyStore::open(&keys).unwrap();
        assert_eq!(mode(&keys), 0o700);
    }

    #[tokio::test]
    async fn invalid_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::open(dir.path()).unwrap();
        for bad in ["", "../escape", "a/b", ".lock", "UPPER", &"x".repeat(65)] {
            assert!(matches!(
                store.create(bad, b"x").await,
                Err(KeyStoreError::InvalidName(_))
            ));
            assert!(matches!(
                store.get(bad).await,
                Err(KeyStoreError::InvalidName(_))
            ));
            assert!(matches!(
                store.replace(bad, b"x", b"y").await,
                Err(KeyStoreError::InvalidName(_))
            ));
        }
        assert!(!dir.path().parent().unwrap().join("escape.key").exists());
    }
}
