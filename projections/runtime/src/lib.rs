//! The projection runtime: folds the event log into read models kept in sled.
//!
//! A [`Projection`] is a deterministic fold. The runtime gives each one its own sled tree, feeds it
//! the log in order (catch-up, then live tail), and commits the projection's writes together with
//! the position of the last event they reflect (the *checkpoint*) in one atomic sled batch, so
//! data and checkpoint never diverge and a redelivered event is never applied twice.
//! [`ReadModels`] is the running service's handle: positions, read-your-writes waits
//! ([`ReadModels::wait_for`]), lag, digests and online rebuilds. [`rebuild_offline`] replays the
//! whole log into fresh read models for `idstream replay`.
//!
//! **Invariant:** the read models are a cache of the log. This crate never stores anything that
//! cannot be rebuilt from the log, and a rebuild from position 0 gives byte-identical trees (the
//! [digest](ReadModels::digest) proves it). Because of that it treats its sled directory as
//! disposable: a store that will not open is moved aside and rebuilt, never repaired.
//!
//! **Invariant:** a checkpoint never moves past an event that was not applied. An error or panic in
//! [`Projection::apply`] stops that projection at the event (loudly, in the logs) and it retries
//! from there; it never skips ahead on its own.
//!
//! Keys that begin with the byte `0` are the runtime's own metadata (checkpoint, projection
//! version, log id); projections use any other key.

mod apply;
mod filter;
mod meta;
mod models;
mod offline;
pub mod personal;
mod runner;
mod store;

pub use apply::{Applied, ApplyFailure, FailureCause, KeyValue, Staged, apply_events};
pub use idstream_eventlog::{Position, RecordedEvent};
pub use models::{ReadModels, Serving, Stale};
pub use offline::{open_rebuilt, rebuild_offline, rebuild_offline_until};
pub use personal::{PersonalSeal, SealError};
pub use store::SEALED_MARKER;

use idstream_eventlog::LogError;

/// A read model: a deterministic fold of the event log into one sled tree.
///
/// It is `Any` so that a query side can reach the in-memory state of the instance that serves
/// now ([`ReadModels::serving`]), which a rebuild replaces.
pub trait Projection: std::any::Any + Send + Sync + 'static {
    /// Names the projection and its sled tree; unique within one [`ReadModels`].
    fn name(&self) -> &'static str;

    /// The layout and logic version of the stored state. Bump it whenever either changes: a
    /// stored tree of another version is cleared and rebuilt from the log on start.
    fn version(&self) -> u32;

    /// Folds one event into the staged state.
    ///
    /// Must be deterministic: no clock, no randomness, no IO and no logging, because it runs again
    /// on retries and on every rebuild, and a rebuild must give identical bytes. Events it does not
    /// understand are skipped (return `Ok(())`, optionally noting why with [`Staged::skip`]).
    /// An `Err` means the event cannot be applied now; the runtime will not move past it.
    fn apply(&self, state: &mut Staged<'_>, event: &RecordedEvent) -> Result<(), ApplyError>;

    /// Called after a batch is committed with every key it wrote (with the value) or removed
    /// (`None`), so that a cache or in-memory index over the tree (kept by the projection's query
    /// side) can follow. Runs on the runner's thread right after the commit and before the new
    /// position is published; must be quick and must not fail.
    fn committed(&self, _writes: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) {}

    /// Called when the runtime clears the tree (rebuilds, self-healing), for the same caches.
    fn cleared(&self) {}

    /// A new instance of this projection with its own, empty in-memory state (caches, indexes)
    /// and otherwise the same configuration: an online rebuild folds the log into a tree beside
    /// the serving one with it, and serves both together once it has caught up, so queries never
    /// see a tree and an in-memory state of two different builds.
    fn beside(&self) -> std::sync::Arc<dyn Projection>;

    /// Called by each runner, under the write gate, once the stored tree has been checked against
    /// the log and before anything is applied: the moment to load an in-memory index from the
    /// tree, as no commit can happen meanwhile. Called again when a runner restarts.
    fn opened(&self, _tree: &sled::Tree) {}
}

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Reading the projection's own tree failed.
    #[error("read-model storage failed: {0}")]
    Storage(#[from] sled::Error),
    /// A stored value could not be decoded: the tree is damaged or of another layout.
    #[error("stored value at {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    /// Any other reason the projection refuses the event.
    #[error("{0}")]
    Rejected(String),
    /// A personal value could not be sealed: its person's key could not be had (yet).
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// Errors of the runtime as a whole (starting, rebuilding, digesting).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("read-model storage failed: {0}")]
    Storage(#[from] sled::Error),
    #[error("read-model directory {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Another process holds the store open; it is not touched.
    #[error("the read-model store in {path} is in use by another process: {reason}")]
    Locked {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Apply(#[from] ApplyFailure),
    #[error("two projections are named {0:?}")]
    DuplicateName(&'static str),
    #[error("no projection is named {0:?}")]
    UnknownProjection(String),
    /// An online rebuild gave up: the tree built beside the serving one stopped moving at
    /// `reached` before it caught up. The serving tree goes on unchanged.
    #[error(
        "the rebuild of read model {projection:?} stalled at position {reached}; the serving read model is unchanged"
    )]
    RebuildStalled {
        projection: &'static str,
        reached: Position,
    },
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
