//! Event payloads: one struct per type and version, named in the past tense.
//!
//! The JSON of each payload is the `data` field of an [`EventEnvelope`]. A JSON Schema is generated
//! for every (type, version) into `schemas/` and checked in; see [`crate::schema`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use time::OffsetDateTime;
use ulid::Ulid;

use crate::envelope::{AggregateType, EventEnvelope, Metadata, StreamKey};
use crate::ids::{RoleName, TenantId, UserId};

/// A tenant was created with its display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantCreated {
    pub name: String,
}

/// A tenant's display name changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantRenamed {
    pub name: String,
}

/// An administrator created a user who is active at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    /// Normalised (trimmed, lower-case) email address: the user's identifier.
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// The tenant the user was created in.
    pub tenant: TenantId,
}

/// A user was created in the invited state; they become active when they accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInvited {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// The tenant the user was invited to.
    pub tenant: TenantId,
}

/// A user was suspended: they cannot sign in or use tokens until reinstated or until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSuspended {
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub until: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A suspension was lifted before its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserReinstated {}

/// A user was given a role in a tenant (the envelope's tenant; the aggregate is the membership).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleAssigned {
    pub user: UserId,
    pub role: RoleName,
}

/// A role was taken from a user in a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRevoked {
    pub user: UserId,
    pub role: RoleName,
}

/// An email address was claimed for a user (uniqueness across replicas). The aggregate id is a
/// hash of the normalised address, so the address itself is not in this event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailClaimed {
    pub user: UserId,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub claimed_at: OffsetDateTime,
    /// Hash of the request that claimed it, so a retry of that request recognises its own claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// Every event idstream writes, as a closed set. Decoding from an envelope goes through
/// [`DomainEvent::decode`], which is where old versions are upcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    TenantCreated(TenantCreated),
    TenantRenamed(TenantRenamed),
    UserRegistered(UserRegistered),
    UserInvited(UserInvited),
    UserSuspended(UserSuspended),
    UserReinstated(UserReinstated),
    RoleAssigned(RoleAssigned),
    RoleRevoked(RoleRevoked),
    EmailClaimed(EmailClaimed),
}

/// Why an envelope could not be turned into a [`DomainEvent`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type} version {version}")]
    Unknown { event_type: String, version: u32 },
    #[error("event {event_type} v{version} has an invalid payload: {source}")]
    Payload {
        event_type: String,
        version: u32,
        source: serde_json::Error,
    },
    #[error("event {event_type} belongs to a {expected:?} aggregate, not {actual:?}")]
    WrongAggregate {
        event_type: String,
        expected: AggregateType,
        actual: AggregateType,
    },
}

/// (type, current version, aggregate type) of every event: the catalogue the schemas and the
/// subscriber contract are generated from.
pub const CATALOGUE: &[(&str, u32, AggregateType)] = &[
    ("TenantCreated", 1, AggregateType::Tenant),
    ("TenantRenamed", 1, AggregateType::Tenant),
    ("UserRegistered", 1, AggregateType::User),
    ("UserInvited", 1, AggregateType::User),
    ("UserSuspended", 1, AggregateType::User),
    ("UserReinstated", 1, AggregateType::User),
    ("RoleAssigned", 1, AggregateType::Membership),
    ("RoleRevoked", 1, AggregateType::Membership),
    ("EmailClaimed", 1, AggregateType::Email),
];

impl DomainEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            DomainEvent::TenantCreated(_) => "TenantCreated",
            DomainEvent::TenantRenamed(_) => "TenantRenamed",
            DomainEvent::UserRegistered(_) => "UserRegistered",
            DomainEvent::UserInvited(_) => "UserInvited",
            DomainEvent::UserSuspended(_) => "UserSuspended",
            DomainEvent::UserReinstated(_) => "UserReinstated",
            DomainEvent::RoleAssigned(_) => "RoleAssigned",
            DomainEvent::RoleRevoked(_) => "RoleRevoked",
            DomainEvent::EmailClaimed(_) => "EmailClaimed",
        }
    }

    /// The schema version this build writes.
    pub fn version(&self) -> u32 {
        1
    }

    pub fn aggregate_type(&self) -> AggregateType {
        let t = self.event_type();
        CATALOGUE
            .iter()
            .find(|(name, _, _)| *name == t)
            .map(|(_, _, a)| *a)
            .expect("every event is catalogued")
    }

    fn data(&self) -> serde_json::Value {
        let value = match self {
            DomainEvent::TenantCreated(e) => serde_json::to_value(e),
            DomainEvent::TenantRenamed(e) => serde_json::to_value(e),
            DomainEvent::UserRegistered(e) => serde_json::to_value(e),
            DomainEvent::UserInvited(e) => serde_json::to_value(e),
            DomainEvent::UserSuspended(e) => serde_json::to_value(e),
            DomainEvent::UserReinstated(e) => serde_json::to_value(e),
            DomainEvent::RoleAssigned(e) => serde_json::to_value(e),
            DomainEvent::RoleRevoked(e) => serde_json::to_value(e),
            DomainEvent::EmailClaimed(e) => serde_json::to_value(e),
        };
        // Serialising these plain structs into a Value cannot fail: no maps with non-string keys.
        value.expect("event payloads serialise to JSON")
    }

    /// Wraps this event for the log. The stream key must be of this event's aggregate type.
    pub fn into_envelope(self, id: Ulid, stream: &StreamKey, meta: &Metadata) -> EventEnvelope {
        debug_assert_eq!(stream.aggregate.kind, self.aggregate_type());
        EventEnvelope {
            id,
            event_type: self.event_type().to_owned(),
            version: self.version(),
            tenant: stream.tenant.clone(),
            aggregate: stream.aggregate.clone(),
            actor: meta.actor.clone(),
            occurred_at: meta.occurred_at,
            correlation_id: meta.correlation_id.clone(),
            causation_id: meta.causation_id.clone(),
            data: self.data(),
        }
    }

    /// Reads an envelope's payload, upcasting older versions to the current one.
    pub fn decode(envelope: &EventEnvelope) -> Result<DomainEvent, DecodeError> {
        fn payload<T: DeserializeOwned>(e: &EventEnvelope) -> Result<T, DecodeError> {
            T::deserialize(&e.data).map_err(|source| DecodeError::Payload {
                event_type: e.event_type.clone(),
                version: e.version,
                source,
            })
        }
        let event = match (envelope.event_type.as_str(), envelope.version) {
            ("TenantCreated", 1) => DomainEvent::TenantCreated(payload(envelope)?),
            ("TenantRenamed", 1) => DomainEvent::TenantRenamed(payload(envelope)?),
            ("UserRegistered", 1) => DomainEvent::UserRegistered(payload(envelope)?),
            ("UserInvited", 1) => DomainEvent::UserInvited(payload(envelope)?),
            ("UserSuspended", 1) => DomainEvent::UserSuspended(payload(envelope)?),
            ("UserReinstated", 1) => DomainEvent::UserReinstated(payload(envelope)?),
            ("RoleAssigned", 1) => DomainEvent::RoleAssigned(payload(envelope)?),
            ("RoleRevoked", 1) => DomainEvent::RoleRevoked(payload(envelope)?),
            ("EmailClaimed", 1) => DomainEvent::EmailClaimed(payload(envelope)?),
            (t, v) => {
                return Err(DecodeError::Unknown {
                    event_type: t.to_owned(),
                    version: v,
                });
            }
        };
        if event.aggregate_type() != envelope.aggregate.kind {
            return Err(DecodeError::WrongAggregate {
                event_type: envelope.event_type.clone(),
                expected: event.aggregate_type(),
                actual: envelope.aggregate.kind,
            });
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Actor;
    use time::macros::datetime;

    #[test]
    fn an_event_survives_the_trip_through_its_envelope_and_json() {
        let user = UserId::new(Ulid::from_parts(7, 7));
        let event = DomainEvent::RoleAssigned(RoleAssigned {
            user,
            role: "admin".parse().unwrap(),
        });
        let stream = StreamKey::new(
            Some("acme".parse().unwrap()),
            AggregateType::Membership,
            user.to_string(),
        );
        let meta = Metadata {
            actor: Actor::system("test"),
            occurred_at: datetime!(2026-03-01 12:00 UTC),
            correlation_id: "c1".into(),
            causation_id: None,
        };
        let envelope = event
            .clone()
            .into_envelope(Ulid::from_parts(1, 1), &stream, &meta);
        let json = serde_json::to_string(&envelope).unwrap();
        let back: EventEnvelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(DomainEvent::decode(&back).unwrap(), event);
        assert_eq!(
            back.subject(),
            format!("idstream.events.acme.membership.{user}")
        );
    }

    #[test]
    fn unknown_types_and_fields_are_rejected_not_guessed() {
        let stream = StreamKey::new(None, AggregateType::User, "X");
        let meta = Metadata {
            actor: Actor::system("test"),
            occurred_at: datetime!(2026-03-01 12:00 UTC),
            correlation_id: "c1".into(),
            causation_id: None,
        };
        let mut env = DomainEvent::UserReinstated(UserReinstated {}).into_envelope(
            Ulid::nil(),
            &stream,
            &meta,
        );
        env.data = serde_json::json!({"surprise": 1});
        assert!(matches!(
            DomainEvent::decode(&env),
            Err(DecodeError::Payload { .. })
        ));
        env.event_type = "UserTeleported".into();
        assert!(matches!(
            DomainEvent::decode(&env),
            Err(DecodeError::Unknown { .. })
        ));
    }
}
