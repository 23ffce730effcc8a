//! idstream-hr-sync: an example of inbound provisioning. It reads an HR feed (a CSV or JSON file
//! of employees, [`feed`]) and drives idstream's HTTP API with an API key or access token
//! ([`api`]) so the tenant matches it: joiners are invited, changed names are updated, leavers
//! are deactivated. It is idempotent: a second run with the same feed changes nothing.
//!
//! Which people it may touch is decided in [`plan`], a pure function: only members holding the
//! *marker role* (`hr_managed`) that the sync gives the people it invites or finds in the feed.
//! Administrators, service accounts and anyone else added by hand are never deactivated, nor is
//! the account the sync runs as.
//!
//! It must never read the event log or write anything but through the public HTTP API, so every
//! rule of the service (permissions, the last-administrator rule, idempotency) applies to it.
//!
//! A rename keeps the user's picture URL and notification choices: the profile endpoint replaces
//! the whole profile, so they are read and sent back unchanged.

pub mod api;
pub mod cli;
pub mod feed;
pub mod plan;
pub mod sync;

pub use cli::main;
