//! One interface over every aggregate so that the application layer can load, decide, append and
//! retry generically.

use crate::email::{self, EmailClaim, EmailClaimCommand, EmailClaimError, EmailClaimEvent};
use crate::envelope::AggregateType;
use crate::events::DomainEvent;
use crate::membership::{self, Membership, MembershipCommand, MembershipError, MembershipEvent};
use crate::tenant::{self, Tenant, TenantCommand, TenantError, TenantEvent};
use crate::user::{self, User, UserCommand, UserError, UserEvent};

pub trait Aggregate: 'static {
    type State: Default + Clone + Send + Sync + 'static;
    type Command: Clone + Send;
    type Event: Clone + Into<DomainEvent> + Send;
    type Error: std::error::Error + Clone + Send + Sync + 'static;
    const KIND: AggregateType;

    fn decide(state: &Self::State, command: Self::Command)
    -> Result<Vec<Self::Event>, Self::Error>;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
    /// The event as this aggregate's type, or None if it belongs to another aggregate.
    fn from_domain(event: DomainEvent) -> Option<Self::Event>;
}

macro_rules! aggregate {
    ($marker:ident, $kind:ident, $module:ident, $state:ty, $command:ty, $event:ident, $error:ty, { $($variant:ident => $domain:ident),* $(,)? }) => {
        pub struct $marker;

        impl Aggregate for $marker {
            type State = $state;
            type Command = $command;
            type Event = $event;
            type Error = $error;
            const KIND: AggregateType = AggregateType::$kind;

            fn decide(state: &$state, command: $command) -> Result<Vec<$event>, $error> {
                $module::decide(state, command)
            }
            fn evolve(state: $state, event: &$event) -> $state {
                $module::evolve(state, event)
            }
            fn from_domain(event: DomainEvent) -> Option<$event> {
                match event {
                    $(DomainEvent::$domain(e) => Some($event::$variant(e)),)*
                    _ => None,
                }
            }
        }

        impl From<$event> for DomainEvent {
            fn from(event: $event) -> DomainEvent {
                match event {
                    $($event::$variant(e) => DomainEvent::$domain(e),)*
                }
            }
        }
    };
}

aggregate!(TenantAggregate, Tenant, tenant, Tenant, TenantCommand, TenantEvent, TenantError, {
    Created => TenantCreated, Renamed => TenantRenamed,
});
aggregate!(UserAggregate, User, user, User, UserCommand, UserEvent, UserError, {
    Registered => UserRegistered, Invited => UserInvited, Suspended => UserSuspended, Reinstated => UserReinstated,
});
aggregate!(MembershipAggregate, Membership, membership, Membership, MembershipCommand, MembershipEvent, MembershipError, {
    Assigned => RoleAssigned, Revoked => RoleRevoked,
});
aggregate!(EmailClaimAggregate, Email, email, EmailClaim, EmailClaimCommand, EmailClaimEvent, EmailClaimError, {
    Claimed => EmailClaimed,
});
