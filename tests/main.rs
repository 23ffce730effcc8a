//! The one integration-test binary. Each module is one area; the harness in
//! `support` spawns real processes: nats-server on a free port with a temporary store, and the
//! `idstream` binary on port 0 with a temporary data directory.

mod access_admin;
mod access_check;
mod attributes;
mod audit;
mod backup;
mod chain;
mod cluster;
mod config;
mod conformance;
mod contract;
mod cors;
mod directory;
mod embedded_faults;
mod erasure;
mod faults;
mod identity;
mod jetstream;
mod keys;
mod mail;
mod migrate;
mod oidc;
mod pages;
mod passkeys;
mod preview;
mod replicas;
mod routes;
mod scim;
mod server;
mod subscribers;
mod support;
mod temporary;
mod upstream;
