//! The event envelope: the stable, versioned wrapper every event in the log travels in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use ulid::Ulid;

use crate::ids::TenantId;

/// Prefix of every log subject. A subject is
/// `idstream.events.<tenant or _>.<aggregate type>.<aggregate id>`.
pub const SUBJECT_PREFIX: &str = "idstream.events";

/// The subject token used for aggregates that belong to no tenant (users, email claims).
pub const GLOBAL_TENANT_TOKEN: &str = "_";

/// The kinds of aggregate. Each names one consistency boundary: appends to one aggregate are
/// ordered by optimistic concurrency on its subject.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AggregateType {
    Tenant,
    User,
    Membership,
    Email,
    Role,
    Entity,
    Record,
    Credentials,
    Session,
    Invitation,
    ApiKey,
    // The tamper-evidence hash chain over the whole log (one global aggregate, id `log`).
    Chain,
    // One per tenant (id: the tenant's id): orders the commands that take an administrator's
    // standing away, so the last administrator stays (see `access::admin_guard`).
    AdminGuard,
    // An OpenID Connect client of a tenant (id: the client id).
    Client,
    // One person's consent to one client (id: `<client id>_<user id>`).
    Consent,
    // An upstream OpenID Connect provider people sign in to a tenant through (id: its name).
    IdentityProvider,
    // An identity of an upstream provider and the user it signs in (id: the blind index of the
    // provider and the subject).
    ExternalIdentity,
}

impl AggregateType {
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateType::Tenant => "tenant",
            AggregateType::User => "user",
            AggregateType::Membership => "membership",
            AggregateType::Email => "email",
            AggregateType::Role => "role",
            AggregateType::Entity => "entity",
            AggregateType::Record => "record",
            AggregateType::Credentials => "credentials",
            AggregateType::Session => "session",
            AggregateType::Invitation => "invitation",
            AggregateType::ApiKey => "api_key",
            AggregateType::Chain => "chain",
            AggregateType::AdminGuard => "admin_guard",
            AggregateType::Client => "client",
            AggregateType::Consent => "consent",
            AggregateType::IdentityProvider => "identity_provider",
            AggregateType::ExternalIdentity => "external_identity",
        }
    }
}

/// Which aggregate an event belongs to. Together with the envelope's tenant it names the subject.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct AggregateRef {
    #[serde(rename = "type")]
    pub kind: AggregateType,
    pub id: String,
}

/// The identity of one aggregate stream: its tenant (None for global aggregates), type and id.
/// Ids are validated to subject-safe characters before they get here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub tenant: Option<TenantId>,
    pub aggregate: AggregateRef,
}

impl StreamKey {
    pub fn new(tenant: Option<TenantId>, kind: AggregateType, id: impl Into<String>) -> Self {
        StreamKey {
            tenant,
            aggregate: AggregateRef {
                kind,
                id: id.into(),
            },
        }
    }

    /// `idstream.events.<tenant or _>.<aggregate type>.<aggregate id>`
    pub fn subject(&self) -> String {
        let tenant = self
            .tenant
            .as_ref()
            .map(TenantId::as_str)
            .unwrap_or(GLOBAL_TENANT_TOKEN);
        format!(
            "{SUBJECT_PREFIX}.{tenant}.{}.{}",
            self.aggregate.kind.as_str(),
            self.aggregate.id
        )
    }
}

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    ApiKey,
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: ActorKind,
    pub id: String,
}

impl Actor {
    pub fn system(id: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::System,
            id: id.into(),
        }
    }
}

/// The envelope of every event (schema `schemas/envelope.v1.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    /// ULID of this event, unique in the log.
    #[schemars(with = "String")]
    pub id: Ulid,
    /// Past-tense event type, such as `RoleAssigned`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of `data` for this type.
    pub version: u32,
    /// The tenant the event belongs to; absent for global aggregates (users, email claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    pub aggregate: AggregateRef,
    pub actor: Actor,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub occurred_at: OffsetDateTime,
    /// Shared by every event caused by one request.
    pub correlation_id: String,
    /// The id of the event or request that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The type's payload, valid against `schemas/<type>.v<version>.json`.
    pub data: serde_json::Value,
}

impl EventEnvelope {
    pub fn stream_key(&self) -> StreamKey {
        StreamKey {
            tenant: self.tenant.clone(),
            aggregate: self.aggregate.clone(),
        }
    }

    pub fn subject(&self) -> String {
        self.stream_key().subject()
    }
}

/// What the application knows about a command when it turns the command's events into envelopes.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub actor: Actor,
    pub occurred_at: OffsetDateTime,
    pub correlation_id: String,
    pub causation_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_put_the_tenant_first_and_use_underscore_for_global_aggregates() {
        let t: TenantId = "acme".parse().unwrap();
        assert_eq!(
            StreamKey::new(
                Some(t),
                AggregateType::Membership,
                "01J0000000000000000000000A"
            )
            .subject(),
            "idstream.events.acme.membership.01J0000000000000000000000A"
        );
        assert_eq!(
            StreamKey::new(None, AggregateType::User, "X").subject(),
            "idstream.events._.user.X"
        );
    }
}
