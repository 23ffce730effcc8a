//! Tamper evidence for the event log (F-AU-3): a hash chain over the exact stored bytes of every
//! event in position order, signed checkpoints of it recorded in the log itself, the verifier
//! that recomputes the chain and names the first position that does not match, and the writer
//! task that `idstream serve` runs.
//!
//! - [`link`]: the chain, as pure functions (the formula is documented there).
//! - [`checkpoint`]: the `ChainCheckpointed` event decoded, the signed statement, the signing key
//!   and the trusted public keys.
//! - [`verify`]: [`Verifier`] (fed event by event, no IO; checkpoint signatures checked in place or
//!   on a thread of its own) and [`verify_log`] over a whole log.
//! - [`writer`]: [`Checkpointer`], the background task that writes checkpoints.
//!
//! **What this crate must never do:** re-serialise an event before hashing it (the chain is over
//! the bytes the backend stores, read with `EventLog::read_raw_after`), or write anything to the
//! log but `ChainCheckpointed` events on the chain aggregate.

pub mod checkpoint;
pub mod link;
pub mod verify;
pub mod writer;

pub use checkpoint::{CHAIN_SUBJECT, Checkpoint, Signer, TrustedKeys, chain_stream};
pub use link::{Chain, GENESIS, next_link};
pub use verify::{Mismatch, Summary, Verifier, VerifyError, verify_log};
pub use writer::{CheckpointPolicy, Checkpointer, WriterError};

#[cfg(test)]
mod tests;
