//! Human-readable summaries, made when an entry is read from the ids and facts it stores, so
//! that an erasure recorded later changes how every earlier entry names that user.

use std::collections::HashSet;

use idstream_domain::{Actor, ActorKind, UserId};

use crate::AuditEntry;
use crate::fold::Stored;

/// The entry as a query returns it, with its summary.
pub(crate) fn entry(stored: Stored, erased: &HashSet<UserId>) -> AuditEntry {
    let summary = summarize(&stored, erased);
    AuditEntry {
        position: stored.position,
        id: stored.id,
        time: stored.time,
        event_type: stored.event_type,
        version: stored.version,
        tenant: stored.tenant,
        actor: stored.actor,
        actor_owner: stored.actor_owner,
        subject: stored.subject,
        aggregate_type: stored.aggregate_type,
        aggregate_id: stored.aggregate_id,
        summary,
        details: stored.facts,
    }
}

fn user(id: &UserId, erased: &HashSet<UserId>) -> String {
    if erased.contains(id) {
        format!("erased user {id}")
    } else {
        format!("user {id}")
    }
}

fn actor(actor: &Actor, owner: Option<&UserId>, erased: &HashSet<UserId>) -> String {
    match actor.kind {
        ActorKind::User => match actor.id.parse::<UserId>() {
            Ok(id) => user(&id, erased),
            Err(_) => format!("user {}", actor.id),
        },
        ActorKind::ApiKey => match owner {
            Some(owner) => format!("API key {} of {}", actor.id, user(owner, erased)),
            None => format!("API key {}", actor.id),
        },
        ActorKind::System if actor.id == "bootstrap-admin" => "the operator".to_owned(),
        ActorKind::System => format!("the system ({})", actor.id),
    }
}

fn method(name: &str) -> &str {
    match name {
        "password" => "a password",
        "password_and_totp" => "a password and a second factor",
        "magic_link" => "a magic link",
        "email_code" => "an emailed code",
        "invitation" => "an invitation",
        "passkey" => "a passkey",
        "password_and_passkey" => "a password and a passkey",
        other => other,
    }
}

fn purpose(name: &str) -> &str {
    match name {
        "password_reset" => "password reset link",
        "magic_link" => "magic link",
        "email_code" => "sign-in code",
        "email_verification" => "email verification link",
        "email_change" => "link confirming a new email address",
        other => other,
    }
}

fn revocation(name: &str) -> &str {
    match name {
        "signed_out" => "signed out",
        "revoked_by_user" => "revoked by the user",
        "revoked_by_admin" => "revoked by an administrator",
        "refresh_token_reused" => "a used refresh token was presented again",
        "password_reset" => "the password was reset",
        "password_changed" => "the password was changed",
        "authorization_code_reused" => "an application's code was presented again",
        "revoked_by_client" => "revoked by the application",
        other => other,
    }
}

fn summarize(e: &Stored, erased: &HashSet<UserId>) -> String {
    let fact = |name: &str| e.facts.get(name).map(String::as_str).unwrap_or("");
    let or_none = |value: &str| {
        if value.is_empty() {
            "none".to_owned()
        } else {
            value.to_owned()
        }
    };
    let subject = e
        .subject
        .as_ref()
        .map(|s| user(s, erased))
        .unwrap_or_else(|| "an unknown user".to_owned());
    let by = format!(" by {}", actor(&e.actor, e.actor_owner.as_ref(), erased));
    let tenant = e.tenant.as_ref().map(|t| t.as_str()).unwrap_or("_");
    let aggregate = e.aggregate_id.as_deref().unwrap_or("-");
    let record = format!("record {} of entity {}", fact("record"), fact("entity"));
    match e.event_type.as_str() {
        "TenantCreated" => format!("tenant {tenant} was created{by}"),
        "TenantRenamed" => format!("tenant {tenant} was renamed{by}"),
        "ResourceDefined" => format!(
            "the resource {} was defined in tenant {tenant}{by}",
            fact("resource")
        ),
        "ResourceRemoved" => format!(
            "the resource {} was removed from tenant {tenant}{by}",
            fact("resource")
        ),
        "TenantSettingsChanged" => match fact("changes") {
            "" => format!("the settings of tenant {tenant} were saved unchanged{by}"),
            changes => format!("the settings of tenant {tenant} were changed{by}: {changes}"),
        },
        "UserRegistered" => format!("{subject} was created in tenant {}{by}", fact("tenant")),
        "UserInvited" => format!(
            "{subject} was created as an invitee of tenant {}{by}",
            fact("tenant")
        ),
        "UserSuspended" => {
            let until = match fact("until") {
                "" => String::new(),
                until => format!(" until {until}"),
            };
            let reason = if fact("reason_given") == "true" {
                " (a reason was given)"
            } else {
                ""
            };
            format!("{subject} was suspended{until}{by}{reason}")
        }
        "UserReinstated" => format!("{subject} was reinstated{by}"),
        "UserDeactivated" => format!("{subject} was deactivated{by}"),
        "UserReactivated" => format!("{subject} was reactivated{by}"),
        "UserFlagsChanged" => format!(
            "the flags of {subject} were set to {}{by}",
            or_none(fact("flags"))
        ),
        "UserActivated" => format!("{subject} accepted an invitation and became active"),
        "EmailVerified" => format!("{subject} verified their email address"),
        "UserProfileChanged" => format!("the profile of {subject} was changed{by}"),
        "UserAttributesChanged" => format!(
            "the attributes of {subject} in tenant {} were changed{by}",
            fact("tenant")
        ),
        "UserProvisioningIdsChanged" => format!(
            "the provisioning ids of {subject} in tenant {} were changed{by}",
            fact("tenant")
        ),
        "UserAttributeDefined" => format!(
            "the user attribute {} was defined in tenant {tenant}{by}",
            fact("attribute")
        ),
        "UserAttributeRemoved" => format!(
            "the user attribute {} was removed from tenant {tenant}{by}",
            fact("attribute")
        ),
        "EmailChangeRequested" => format!("{subject} asked to change their email address"),
        "EmailChanged" => format!("the email address of {subject} was changed{by}"),
        "UserErased" => format!("the personal data of {subject} was erased{by}"),
        "RoleAssigned" => format!(
            "{subject} was given the role {} in tenant {tenant}{}{by}",
            fact("role"),
            until(fact("until"))
        ),
        "RoleLapsed" => format!(
            "the temporary role {} of {subject} in tenant {tenant} ended at {}",
            fact("role"),
            fact("expired_at")
        ),
        "PermissionsLapsed" => format!(
            "the temporary permissions {} of {subject} in tenant {tenant} ended at {}",
            fact("permissions"),
            fact("expired_at")
        ),
        "RecordGrantLapsed" => format!(
            "the temporary access of {subject} to {record} ended at {}",
            fact("expired_at")
        ),
        "LocalRoleLapsed" => format!(
            "the temporary local role {} of {subject} on {record} ended at {}",
            fact("role"),
            fact("expired_at")
        ),
        "RoleRevoked" => format!(
            "{subject} lost the role {} in tenant {tenant}{by}",
            fact("role")
        ),
        "PermissionsGranted" => format!(
            "{subject} was granted the permissions {} in tenant {tenant}{}{by}",
            fact("permissions"),
            until(fact("until"))
        ),
        "PermissionsRevoked" => format!(
            "{subject} lost the permissions {} in tenant {tenant}{by}",
            fact("permissions")
        ),
        "MemberRemoved" => format!("{subject} was removed from tenant {tenant}{by}"),
        "EmailClaimed" => format!("an email address was claimed for {subject}{by}"),
        "EmailReleased" => format!("an email address of {subject} was released{by}"),
        "AdminRemovalReserved" => format!(
            "taking away the administrator standing of {subject} in tenant {tenant} was reserved{by}"
        ),
        "AdminRemovalSettled" => format!(
            "the reserved removal of the administrator standing of {subject} in tenant {tenant} is over{by}"
        ),
        "RoleDefined" => {
            let global = if fact("global_access") == "true" {
                " with global access"
            } else {
                ""
            };
            format!("the role {aggregate} was defined in tenant {tenant}{global}{by}")
        }
        "RoleUpdated" => format!("the role {aggregate} of tenant {tenant} was changed{by}"),
        "RoleMenuSet" => format!("the menu of role {aggregate} in tenant {tenant} was set{by}"),
        "RoleDeleted" => format!("the role {aggregate} was deleted from tenant {tenant}{by}"),
        "RoleRelabelled" => match fact("label") {
            "" => format!("the label of role {aggregate} in tenant {tenant} was removed{by}"),
            label => format!("the role {aggregate} of tenant {tenant} was labelled {label:?}{by}"),
        },
        "EntityRegistered" => {
            format!("the entity {aggregate} was registered in tenant {tenant}{by}")
        }
        "EntityFieldsChanged" => format!("the fields of entity {aggregate} were changed{by}"),
        "EntityRlsChanged" => {
            let state = if fact("rls") == "true" { "on" } else { "off" };
            format!("row-level security of entity {aggregate} was turned {state}{by}")
        }
        "EntityPolicyChanged" => format!("the policy of entity {aggregate} was changed{by}"),
        "FieldRulesChanged" => {
            let search = match fact("unsearchable") {
                "" => String::new(),
                fields => format!(", and those it may not search by to {fields}"),
            };
            format!(
                "the fields of entity {aggregate} hidden from role {} were set to {}{search}{by}",
                fact("role"),
                or_none(fact("hidden"))
            )
        }
        "RecordOwnerSet" => format!("{subject} became the owner of {record}{by}"),
        "RecordGranted" => {
            let access = match fact("access") {
                "read_write" => "read and write",
                "read_only" => "read",
                other => other,
            };
            format!(
                "{subject} was granted {access} on {record}{}{by}",
                until(fact("until"))
            )
        }
        "RecordRevoked" => format!("the access of {subject} to {record} was withdrawn{by}"),
        "LocalRoleAssigned" => format!(
            "{subject} was given the local role {} on {record}{}{by}",
            fact("role"),
            until(fact("until"))
        ),
        "LocalRoleRevoked" => format!(
            "{subject} lost the local role {} on {record}{by}",
            fact("role")
        ),
        "PasswordSet" => match fact("reason") {
            "initial" => format!("{subject} set a first password"),
            "changed" => format!("{subject} changed their password"),
            "reset" => format!("the password of {subject} was reset through an emailed link"),
            other => format!("the password of {subject} was set ({other})"),
        },
        "SignInFailed" => format!(
            "a sign-in of {subject} failed ({} consecutive failures)",
            fact("failures")
        ),
        "AccountLocked" => format!(
            "{subject} was locked out until {} after {} failed sign-ins",
            fact("until"),
            fact("failures")
        ),
        "SignInFailuresCleared" => {
            format!("the failed sign-ins of {subject} were cleared by a successful sign-in")
        }
        "AccountUnlocked" => format!("{subject} was unlocked{by}"),
        "SecretTokenIssued" => {
            format!("a {} was emailed to {subject}", purpose(fact("purpose")))
        }
        "SecretTokenRedeemed" => format!("{subject} used their {}", purpose(fact("purpose"))),
        "SecretTokenMissed" => format!(
            "a wrong {} was presented for {subject} ({} so far)",
            purpose(fact("purpose")),
            fact("misses")
        ),
        "TotpEnrolmentStarted" => {
            format!("{subject} started setting up two-factor authentication")
        }
        "TotpEnabled" => format!("{subject} turned two-factor authentication on"),
        "TotpCodeUsed" => format!("{subject} used a two-factor code"),
        "TotpDisabled" => format!("two-factor authentication of {subject} was turned off{by}"),
        "RecoveryCodesGenerated" => format!("new recovery codes were generated for {subject}"),
        "RecoveryCodeUsed" => format!("{subject} used a recovery code"),
        "PasskeyRegistered" => format!("a passkey was registered for {subject}"),
        "PasskeyUsed" => format!("{subject} signed in with a passkey"),
        "PasskeyRemoved" => format!("a passkey of {subject} was removed{by}"),
        "PasskeyCounterRegressed" => format!(
            "a sign-in of {subject} with a passkey was refused: its signature counter went back from {} to {} (a cloned authenticator?)",
            fact("stored"),
            fact("presented")
        ),
        "SessionStarted" => format!(
            "{subject} signed in to tenant {} with {} (session {aggregate})",
            fact("tenant"),
            method(fact("method"))
        ),
        "SessionRefreshed" => format!("session {aggregate} of {subject} was refreshed"),
        "SessionTenantSwitched" => format!(
            "session {aggregate} of {subject} moved from tenant {} to tenant {}",
            fact("from"),
            fact("to")
        ),
        "SessionRevoked" => format!(
            "session {aggregate} of {subject} ended ({}){by}",
            revocation(fact("reason"))
        ),
        "InvitationSent" => format!(
            "{subject} was invited to tenant {tenant} with the roles {}{by}",
            fact("roles")
        ),
        "InvitationResent" => {
            format!("the invitation of {subject} to tenant {tenant} was sent again{by}")
        }
        "InvitationAccepted" => {
            format!("{subject} accepted the invitation to tenant {tenant}")
        }
        "InvitationRevoked" => {
            format!("the invitation of {subject} to tenant {tenant} was withdrawn{by}")
        }
        "ApiKeyIssued" => {
            let restricted = match fact("restricted_to") {
                "" => String::new(),
                permissions => format!(", restricted to {permissions}"),
            };
            format!(
                "API key {aggregate} was issued to {subject} in tenant {tenant}{restricted}{by}"
            )
        }
        "ApiKeyRevoked" => format!("API key {aggregate} of {subject} was revoked{by}"),
        "ApiKeyUsed" => format!("API key {aggregate} of {subject} was used"),
        "AuthorizationCodeIssued" => format!(
            "application {} was given a code for {subject} in tenant {tenant} (scopes {}, session {aggregate})",
            fact("client"),
            fact("scopes")
        ),
        "ClientRegistered" => format!(
            "application {:?} was registered as {} client {aggregate} ({}; scopes {}){by}",
            fact("name"),
            fact("kind"),
            fact("grants"),
            fact("scopes")
        ),
        "ClientUpdated" => format!("application {aggregate} was changed{by}"),
        "ClientSecretRotated" => format!("the secret of application {aggregate} was replaced{by}"),
        "ClientRemoved" => format!("application {aggregate} was removed{by}"),
        "ClientCredentialsUsed" => {
            format!("application {aggregate} obtained tokens for itself (client credentials)")
        }
        "ConsentGranted" => format!(
            "{subject} allowed application {} to receive {}",
            fact("client"),
            fact("scopes")
        ),
        "ConsentRevoked" => format!(
            "{subject} took back the consent to application {}",
            fact("client")
        ),
        "IdentityProviderConfigured" => format!(
            "sign-in through {:?} ({}) was set up as identity provider {aggregate}{by}",
            fact("name"),
            fact("issuer")
        ),
        "IdentityProviderRemoved" => format!("identity provider {aggregate} was removed{by}"),
        "IdentityLinked" => format!(
            "{subject}'s identity at provider {} was linked ({}){by}",
            fact("provider"),
            match fact("via") {
                "verified_email" => "by their verified address",
                "provisioned" => "as a new member",
                "account" => "from their account",
                other => other,
            }
        ),
        "IdentityUnlinked" => format!(
            "{subject}'s identity at provider {} was unlinked{by}",
            fact("provider")
        ),
        "ChainCheckpointed" => format!(
            "the hash chain over positions {} to {} was checkpointed and signed{by}",
            fact("from"),
            fact("to")
        ),
        other => format!("{other} on {} {aggregate}{by}", e.aggregate_type.as_str()),
    }
}

/// " until <end>" when a fact gives an end.
fn until(end: &str) -> String {
    if end.is_empty() {
        String::new()
    } else {
        format!(" until {end}")
    }
}
