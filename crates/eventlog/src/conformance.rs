//! The conformance suite every [`EventLog`](crate::EventLog) backend must pass.
//!
//! Each check is a plain async function over a [`Backend`]; the root integration tests
//! (`tests/conformance.rs`) instantiate every check for the embedded log and for JetStream
//! against a real nats-server.

use crate::SharedLog;

/// How the suite gets at a backend.
#[async_trait::async_trait]
pub trait Backend: Send {
    /// Opens the log, creating it empty the first time.
    async fn open(&mut self) -> SharedLog;
    /// Stops the underlying store (the nats-server process, or the embedded log's files are
    /// closed) and starts it again with the same data, then opens the log anew. The caller has
    /// dropped every handle it had.
    async fn restart(&mut self) -> SharedLog;
}
