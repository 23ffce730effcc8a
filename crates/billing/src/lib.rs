//! idstream-billing: an example subscriber that counts **seats per tenant** (active members)
//! straight from idstream's JetStream event stream, as the subscriber contract
//! (`schemas/README.md`) describes.
//!
//! It reads the stream through its own durable pull consumer ([`consumer`]), folds user,
//! membership and tenant events into a small model ([`seats`]), keeps that model and the last
//! applied position in its own state file, replaced atomically before the messages are
//! acknowledged ([`state`]), and serves the counts as of now over HTTP ([`http`]). After a
//! restart it resumes from its durable consumer with the same counts.
//!
//! It must never write to the log or call the service: the stream is its only input. It uses the
//! domain crate only to decode events (which is where old versions are upcast); personal data in
//! events is neither needed nor read.

pub mod cli;
pub mod consumer;
pub mod http;
pub mod seats;
pub mod state;

pub use cli::main;
