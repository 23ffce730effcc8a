//! Test harness: real processes only (nats-server, idstream), each on free ports with temp dirs.

pub mod browser;
pub mod cli;
pub mod cluster;
pub mod nats;
pub mod netns;
pub mod passkey;
pub mod service;
pub mod verify;
pub mod world;
