//! Billing's own state file: the seat state and the last applied log position, replaced
//! atomically (write a temporary file, fsync it, rename it over the old one, fsync the directory),
//! so a crash leaves either the old or the new state, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::seats::Seats;

/// The current layout of the state file.
pub const FORMAT: u32 = 1;

/// What the state file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// The JetStream stream the positions refer to.
    pub stream: String,
    /// When that stream was created: a stream deleted and created again restarts its sequence
    /// numbers, and the saved position would then mean nothing.
    #[serde(with = "time::serde::rfc3339")]
    pub stream_created: OffsetDateTime,
    /// The durable consumer that delivers to billing.
    pub consumer: String,
    /// The stream sequence (log position) of the last event folded into `seats`.
    pub position: u64,
    pub seats: Seats,
}

impl State {
    pub fn new(stream: &str, stream_created: OffsetDateTime, consumer: &str) -> State {
        State {
            format: FORMAT,
            stream: stream.to_owned(),
            stream_created,
            consumer: consumer.to_owned(),
            position: 0,
            seats: Seats::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file {path} is not billing state (format {FORMAT}): {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the state file {path} has format {found}; this build reads format {FORMAT}")]
    Format { path: PathBuf, found: u32 },
    #[error("cannot write the state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads the state file; `None` if there is none yet.
pub fn load(path: &Path) -> Result<Option<State>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if state.format != FORMAT {
        return Err(StateError::Format {
            path: path.to_owned(),
            found: state.format,
        });
    }
    Ok(Some(state))
}

/// Replaces the state file with `state`, atomically and durably.
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let write_error = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec(state).expect("billing state serialises to JSON");
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(write_error)?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let temporary = dir.join(name);
    let mut file = std::fs::File::create(&temporary).map_err(write_error)?;
    file.write_all(&bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(write_error)?;
    // The rename is durable once the directory entry is.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_saved_state_reads_back_and_a_missing_file_is_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/billing.json");
        assert_eq!(load(&path).unwrap(), None);
        let mut state = State::new("IDSTREAM", datetime!(2026-03-01 12:00 UTC), "billing");
        state.position = 42;
        state.seats.tenants.insert("acme".into());
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state.clone()));
        state.position = 43;
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap().unwrap().position, 43);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("billing.json")]);
    }

    #[test]
    fn a_damaged_state_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("billing.json");
        std::fs::write(&path, b"{\"format\": 1, \"strea").unwrap();
        assert!(matches!(load(&path), Err(StateError::Parse { .. })));
    }
}
