//! One interface over every aggregate so that the application layer can load, decide, append and
//! retry generically.

use crate::access::admin_guard::{
    self, AdminGuard, AdminGuardCommand, AdminGuardError, AdminGuardEvent,
};
use crate::access::entity::{self, Entity, EntityCommand, EntityError, EntityEvent};
use crate::access::record::{self, Record, RecordCommand, RecordError, RecordEvent};
use crate::access::role::{self, Role, RoleCommand, RoleError, RoleEvent};
use crate::email::{self, EmailClaim, EmailClaimCommand, EmailClaimError, EmailClaimEvent};
use crate::envelope::AggregateType;
use crate::events::DomainEvent;
use crate::identity::api_key::{self, ApiKey, ApiKeyCommand, ApiKeyError, ApiKeyEvent};
use crate::identity::client::{self, Client, ClientCommand, ClientError, ClientEvent};
use crate::identity::consent::{self, Consent, ConsentCommand, ConsentError, ConsentEvent};
use crate::identity::credentials::{
    self, Credentials, CredentialsCommand, CredentialsError, CredentialsEvent,
};
use crate::identity::invitation::{
    self, Invitation, InvitationCommand, InvitationError, InvitationEvent,
};
use crate::identity::session::{self, Session, SessionCommand, SessionError, SessionEvent};
use crate::identity::upstream::{
    self, ExternalIdentity, ExternalIdentityCommand, ExternalIdentityError, ExternalIdentityEvent,
    IdentityProvider, IdentityProviderCommand, IdentityProviderError, IdentityProviderEvent, link,
};
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

/// What a command is decided by: lets [`check`] find the aggregate from the command alone.
pub trait Command: Clone {
    type Aggregate: Aggregate<Command = Self>;
}

/// The given/when/then of every aggregate's tests: the state the `given` events fold into
/// decides `when`, which must answer `then`.
#[cfg(test)]
#[track_caller]
pub(crate) fn check<C: Command>(
    given: &[<C::Aggregate as Aggregate>::Event],
    when: C,
    then: Result<Vec<<C::Aggregate as Aggregate>::Event>, <C::Aggregate as Aggregate>::Error>,
) where
    <C::Aggregate as Aggregate>::Event: PartialEq + std::fmt::Debug,
    <C::Aggregate as Aggregate>::Error: PartialEq,
{
    let state = given.iter().fold(
        <C::Aggregate as Aggregate>::State::default(),
        <C::Aggregate as Aggregate>::evolve,
    );
    assert_eq!(<C::Aggregate as Aggregate>::decide(&state, when), then);
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

        impl Command for $command {
            type Aggregate = $marker;
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
    Created => TenantCreated, Renamed => TenantRenamed, SettingsChanged => TenantSettingsChanged,
    ResourceDefined => ResourceDefined, ResourceRemoved => ResourceRemoved,
    AttributeDefined => UserAttributeDefined, AttributeRemoved => UserAttributeRemoved,
});
aggregate!(UserAggregate, User, user, User, UserCommand, UserEvent, UserError, {
    Registered => UserRegistered, Invited => UserInvited, Suspended => UserSuspended, Reinstated => UserReinstated,
    Deactivated => UserDeactivated, Reactivated => UserReactivated, FlagsChanged => UserFlagsChanged,
    Activated => UserActivated, EmailVerified => EmailVerified, ProfileChanged => UserProfileChanged,
    EmailChangeRequested => EmailChangeRequested, EmailChanged => EmailChanged, Erased => UserErased,
    AttributesChanged => UserAttributesChanged, ProvisioningIdsChanged => UserProvisioningIdsChanged,
});
aggregate!(MembershipAggregate, Membership, membership, Membership, MembershipCommand, MembershipEvent, MembershipError, {
    Assigned => RoleAssigned, Revoked => RoleRevoked, PermissionsGranted => PermissionsGranted,
    PermissionsRevoked => PermissionsRevoked, Removed => MemberRemoved, RoleLapsed => RoleLapsed,
    PermissionsLapsed => PermissionsLapsed,
});
aggregate!(EmailClaimAggregate, Email, email, EmailClaim, EmailClaimCommand, EmailClaimEvent, EmailClaimError, {
    Claimed => EmailClaimed, Released => EmailReleased,
});
aggregate!(RoleAggregate, Role, role, Role, RoleCommand, RoleEvent, RoleError, {
    Defined => RoleDefined, Updated => RoleUpdated, MenuSet => RoleMenuSet, Deleted => RoleDeleted,
    Relabelled => RoleRelabelled,
});
aggregate!(EntityAggregate, Entity, entity, Entity, EntityCommand, EntityEvent, EntityError, {
    Registered => EntityRegistered, FieldsChanged => EntityFieldsChanged, RlsChanged => EntityRlsChanged,
    PolicyChanged => EntityPolicyChanged, FieldRulesChanged => FieldRulesChanged,
});
aggregate!(RecordAggregate, Record, record, Record, RecordCommand, RecordEvent, RecordError, {
    OwnerSet => RecordOwnerSet, Granted => RecordGranted, Revoked => RecordRevoked,
    LocalRoleAssigned => LocalRoleAssigned, LocalRoleRevoked => LocalRoleRevoked,
    GrantLapsed => RecordGrantLapsed, LocalRoleLapsed => LocalRoleLapsed,
});
aggregate!(CredentialsAggregate, Credentials, credentials, Credentials, CredentialsCommand, CredentialsEvent, CredentialsError, {
    PasswordSet => PasswordSet, SignInFailed => SignInFailed, AccountLocked => AccountLocked,
    FailuresCleared => SignInFailuresCleared, Unlocked => AccountUnlocked, TokenIssued => SecretTokenIssued,
    TokenRedeemed => SecretTokenRedeemed, TokenMissed => SecretTokenMissed, TotpEnrolmentStarted => TotpEnrolmentStarted, TotpEnabled => TotpEnabled,
    TotpCodeUsed => TotpCodeUsed, RecoveryCodesGenerated => RecoveryCodesGenerated, RecoveryCodeUsed => RecoveryCodeUsed,
    TotpDisabled => TotpDisabled, PasskeyRegistered => PasskeyRegistered, PasskeyUsed => PasskeyUsed,
    PasskeyRemoved => PasskeyRemoved, PasskeyCounterRegressed => PasskeyCounterRegressed,
});
aggregate!(SessionAggregate, Session, session, Session, SessionCommand, SessionEvent, SessionError, {
    CodeIssued => AuthorizationCodeIssued, Started => SessionStarted, Refreshed => SessionRefreshed, TenantSwitched => SessionTenantSwitched,
    Revoked => SessionRevoked,
});
aggregate!(InvitationAggregate, Invitation, invitation, Invitation, InvitationCommand, InvitationEvent, InvitationError, {
    Sent => InvitationSent, Resent => InvitationResent, Accepted => InvitationAccepted, Revoked => InvitationRevoked,
});
aggregate!(ApiKeyAggregate, ApiKey, api_key, ApiKey, ApiKeyCommand, ApiKeyEvent, ApiKeyError, {
    Issued => ApiKeyIssued, Revoked => ApiKeyRevoked, Used => ApiKeyUsed,
});
aggregate!(ClientAggregate, Client, client, Client, ClientCommand, ClientEvent, ClientError, {
    Registered => ClientRegistered, Updated => ClientUpdated, SecretRotated => ClientSecretRotated,
    Removed => ClientRemoved, CredentialsUsed => ClientCredentialsUsed,
});
aggregate!(ConsentAggregate, Consent, consent, Consent, ConsentCommand, ConsentEvent, ConsentError, {
    Granted => ConsentGranted, Revoked => ConsentRevoked,
});
aggregate!(IdentityProviderAggregate, IdentityProvider, upstream, IdentityProvider, IdentityProviderCommand, IdentityProviderEvent, IdentityProviderError, {
    Configured => IdentityProviderConfigured, Removed => IdentityProviderRemoved,
});
aggregate!(ExternalIdentityAggregate, ExternalIdentity, link, ExternalIdentity, ExternalIdentityCommand, ExternalIdentityEvent, ExternalIdentityError, {
    Linked => IdentityLinked, Unlinked => IdentityUnlinked,
});
aggregate!(AdminGuardAggregate, AdminGuard, admin_guard, AdminGuard, AdminGuardCommand, AdminGuardEvent, AdminGuardError, {
    Reserved => AdminRemovalReserved, Settled => AdminRemovalSettled,
});
