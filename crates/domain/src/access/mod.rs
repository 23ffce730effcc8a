//! Access control: the permission model, the role, entity and record aggregates, and the pure
//! access decision ([`check::check`]) that the access read model answers from.

pub mod admin_guard;
pub mod check;
pub mod entity;
pub mod model;
pub mod record;
pub mod role;

pub use check::{
    AccessFacts, Account, AccountStatus, CheckRequest, Decision, EntityFacts, FieldVisibility,
    Member, Reason, RecordStanding, RoleFacts, Subject, check, field_visibility, live,
    visible_fields,
};
pub use model::{
    AccessIdError, Action, EntityName, EntityPolicy, FieldName, MenuItem, Permission, Principal,
    PseudoRole, RecordAccess, RecordId, Resource, ResourceName,
};
