//! The idstream domain: identifiers, the event envelope, the versioned event payloads and the
//! aggregates with their pure `decide` and `evolve` functions.
//!
//! **Architecture invariant:** this crate depends on nothing else in the workspace and does no IO:
//! no clock, no randomness, no async. Time, ids and secrets come in as data inside commands.
//!
//! **API boundary:** the types in [`events`] and [`envelope`] are a public, versioned format that
//! subscribers rely on. Never change a published version; add a new version and upcast.

pub mod access;
pub mod aggregate;
pub mod attributes;
pub mod email;
pub mod envelope;
pub mod events;
pub mod identity;
pub mod ids;
pub mod membership;
pub mod schema;
pub mod secret;
pub mod tenant;
pub mod text;
pub mod user;

pub use aggregate::Aggregate;
pub use envelope::{
    Actor, ActorKind, AggregateRef, AggregateType, EventEnvelope, Metadata, StreamKey,
};
pub use events::{DecodeError, DomainEvent};
pub use ids::{IdError, RoleName, TenantId, UserId};
