//! Identity: the aggregates behind sign-in. Users themselves are in [`crate::user`]; here are
//! their [`credentials`], signed-in [`session`]s, [`invitation`]s and [`api_key`]s.

pub mod api_key;
pub mod client;
pub mod consent;
pub mod credentials;
pub mod invitation;
pub mod session;
pub mod upstream;
