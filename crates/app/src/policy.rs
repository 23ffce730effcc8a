//! The authorization policy: the one place that decides who may do what.
//!
//! Every public operation of every service takes a [`Caller`] first and asks one of the rules
//! below before it reads or writes anything. The HTTP layer only authenticates (turns a bearer
//! credential into a [`Principal`]); it never authorizes.
//!
//! **Who is who.**
//! - Nobody ([`Principal::Anonymous`]) and a refused credential ([`Principal::Refused`]) may only
//!   use the operations open to anyone (sign-in, password reset, invitation acceptance, …).
//! - The operator ([`Principal::Operator`]: the configured operator token, or the `idstream` CLI)
//!   and users flagged `platform_admin` (through a session) are platform administrators: every
//!   rule lets them through, in every tenant.
//! - A user acts through a session or an API key ([`Principal::User`]). An API key acts for its
//!   owner, only in its own tenant, and only within its restriction; never with its owner's
//!   platform-administrator powers.
//!
//! **Standing.** A caller has standing in a tenant when it is a platform administrator, a user
//! who is a member of it (holds a role or a custom permission there), or an API key of it.
//! Without standing, everything about the tenant answers as if it did not exist
//! ([`AppError::TenantNotFound`]), so tenant ids cannot be probed. A caller has standing over a
//! user when it is that user, a platform administrator, or shares a tenant with them; without
//! it, the user answers as if they did not exist ([`AppError::UserNotFound`]). With standing but
//! without the permission, the answer is a refusal naming what is missing.
//!
//! **Second factor first.** A session of a tenant that requires a second factor, opened by a
//! user who has none, may only set one up: every rule refuses it
//! ([`AppError::SecondFactorEnrolmentRequired`]) except those named `…_while_enrolling`.
//!
//! **Fresh answers.** A refusal is decided again once after the read models caught up with the
//! log, so a permission granted a moment ago (maybe on another replica) is honoured.
//!
//! What a command may change once it is allowed (the escalation rules: nobody gives a
//! permission they do not hold) is decided from [`Held`], which this module computes.

use std::collections::BTreeSet;

use idstream_domain::access::{Action, CheckRequest, Permission, Resource, Subject, live};
use idstream_domain::{Actor, ActorKind, TenantId, UserId};

use crate::core::{Core, internal};
use crate::identity::{Authenticated, Client, Credential};
use crate::{AppError, CommandContext};

/// Who a request speaks for, as the HTTP layer authenticated it.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No credential was presented.
    Anonymous,
    /// A credential was presented and refused (unknown, expired, revoked, of an inactive user).
    Refused,
    /// The operator token or the `idstream` CLI: a platform administrator.
    Operator,
    /// A user, through a session or an API key.
    User(Authenticated),
}

/// The caller of an operation: who it is, where the request came from, and the context its
/// events carry (actor, correlation id, idempotency key).
#[derive(Debug, Clone)]
pub struct Caller {
    principal: Principal,
    ctx: CommandContext,
    client: Client,
}

impl Caller {
    /// A caller for `principal`. The idempotency key is validated (1–255 visible ASCII
    /// characters) and scoped to the actor.
    pub fn new(
        principal: Principal,
        correlation_id: String,
        idempotency_key: Option<&str>,
        client: Client,
    ) -> Result<Caller, AppError> {
        let actor = match &principal {
            Principal::User(auth) => auth.actor(),
            // The audit trail names this actor "the operator".
            Principal::Operator => Actor {
                kind: ActorKind::System,
                id: "bootstrap-admin".into(),
            },
            Principal::Anonymous | Principal::Refused => Actor {
                kind: ActorKind::System,
                id: "anonymous".into(),
            },
        };
        let ctx = CommandContext::new(actor, correlation_id, idempotency_key)?;
        Ok(Caller {
            principal,
            ctx,
            client,
        })
    }

    /// Nobody in particular, from nowhere known: for tools and tests.
    pub fn anonymous() -> Caller {
        Caller {
            principal: Principal::Anonymous,
            ctx: crate::identity::system_ctx("anonymous"),
            client: Client::default(),
        }
    }

    /// The operator acting as `what` (a system actor, e.g. `bootstrap`): for the CLI and tests.
    pub fn system(what: &str) -> Caller {
        Caller {
            principal: Principal::Operator,
            ctx: crate::identity::system_ctx(what),
            client: Client::default(),
        }
    }

    /// A signed-in user (or API key), as [`crate::Identity::authenticate`] found it.
    pub fn user(auth: Authenticated) -> Caller {
        let ctx = CommandContext::new(auth.actor(), ulid::Ulid::new().to_string(), None)
            .expect("no idempotency key to validate");
        Caller {
            principal: Principal::User(auth),
            ctx,
            client: Client::default(),
        }
    }

    /// The same caller deciding its command without carrying it out (`dry_run=true`).
    pub fn with_dry_run(mut self, dry_run: std::sync::Arc<crate::DryRun>) -> Caller {
        self.ctx = self.ctx.with_dry_run(dry_run);
        self
    }

    /// The same caller sending `key` as its idempotency key.
    pub fn with_idempotency_key(mut self, key: &str) -> Result<Caller, AppError> {
        self.ctx = CommandContext::new(self.ctx.actor.clone(), self.ctx.correlation_id, Some(key))?;
        Ok(self)
    }

    /// The same caller for one part of a request that makes several independent changes (one
    /// user of a bulk change): its idempotency key, if any, is extended by `part`, so that each
    /// part is deduplicated on its own.
    pub(crate) fn scoped(&self, part: &str) -> Caller {
        Caller {
            ctx: self.ctx.scoped(part),
            ..self.clone()
        }
    }

    /// The same caller at `client` (address and user agent).
    pub fn from_client(mut self, client: Client) -> Caller {
        self.client = client;
        self
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// What the caller's events carry.
    pub fn ctx(&self) -> &CommandContext {
        &self.ctx
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The user the caller acts for (a session's user or an API key's owner).
    pub fn user_id(&self) -> Option<UserId> {
        self.authenticated().map(|auth| auth.user)
    }

    /// The caller's authentication, when it is a user.
    pub fn authenticated(&self) -> Option<&Authenticated> {
        match &self.principal {
            Principal::User(auth) => Some(auth),
            _ => None,
        }
    }

    /// The session's id, when the caller is a session.
    pub fn session(&self) -> Option<ulid::Ulid> {
        self.authenticated().and_then(Authenticated::session)
    }
}

/// The tenants a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TenantScope {
    Every,
    Only(Vec<TenantId>),
}

/// What a caller holds in a tenant: what the escalation rules compare a change with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Held {
    /// A platform administrator: above the rules.
    pub(crate) platform: bool,
    /// A held role has global access (every permission).
    pub(crate) global: bool,
    pub(crate) permissions: BTreeSet<Permission>,
}

impl Held {
    pub(crate) fn covers(&self, permission: &Permission) -> bool {
        self.platform || self.global || self.permissions.contains(permission)
    }

    /// The permissions of `wanted` the caller does not hold (empty if it holds them all).
    pub(crate) fn missing<'a>(
        &self,
        wanted: impl IntoIterator<Item = &'a Permission>,
    ) -> Vec<String> {
        wanted
            .into_iter()
            .filter(|p| !self.covers(p))
            .map(|p| p.to_string())
            .collect()
    }

    /// Refuses unless the caller holds `global` access (if asked) and every permission of
    /// `wanted`: what giving someone a role, a permission or a key needs.
    pub(crate) fn require<'a>(
        &self,
        global: bool,
        wanted: impl IntoIterator<Item = &'a Permission>,
    ) -> Result<(), AppError> {
        let mut missing = Vec::new();
        if global && !(self.platform || self.global) {
            missing.push("global access".to_owned());
        }
        missing.extend(self.missing(wanted));
        if missing.is_empty() {
            Ok(())
        } else {
            Err(AppError::BeyondCallerPermissions(missing))
        }
    }
}

pub(crate) fn named(resource: &'static str, action: Action) -> Permission {
    Permission::new(Resource::Named(resource), action)
        .expect("the named resources of the policy are valid")
}

impl Core {
    // ----- who the caller is -----

    /// Refuses callers that are not signed in, and sessions that must set up a second factor
    /// first.
    fn signed_in<'c>(&self, caller: &'c Caller) -> Result<&'c Principal, AppError> {
        let principal = self.signed_in_while_enrolling(caller)?;
        if let Principal::User(auth) = principal
            && auth.must_enrol_second_factor
        {
            return Err(AppError::SecondFactorEnrolmentRequired);
        }
        Ok(principal)
    }

    fn signed_in_while_enrolling<'c>(&self, caller: &'c Caller) -> Result<&'c Principal, AppError> {
        match &caller.principal {
            Principal::Anonymous | Principal::Refused => Err(AppError::Unauthenticated),
            principal => Ok(principal),
        }
    }

    /// Whether the caller is a platform administrator: the operator, or a user flagged
    /// `platform_admin` acting through a session (an API key never is one).
    fn is_platform(&self, caller: &Caller) -> Result<bool, AppError> {
        match &caller.principal {
            Principal::Operator => Ok(true),
            Principal::User(auth) if matches!(auth.via, Credential::Session(_)) => self
                .access_view()
                .is_platform_admin(&auth.user)
                .map_err(internal),
            _ => Ok(false),
        }
    }

    /// Whether the caller has standing in the tenant (see the module documentation). Platform
    /// administrators have it everywhere.
    fn has_standing(&self, caller: &Caller, tenant: &TenantId) -> Result<bool, AppError> {
        if self.is_platform(caller)? {
            return Ok(true);
        }
        match &caller.principal {
            Principal::User(auth) => match &auth.via {
                Credential::ApiKey { .. } => Ok(&auth.tenant == tenant),
                Credential::Session(_) => self
                    .access_view()
                    .is_member(tenant, &auth.user)
                    .map_err(internal),
            },
            _ => Ok(false),
        }
    }

    /// Whether the caller may use `permission` in `tenant` now, as the read models say.
    fn permitted(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        permission: &Permission,
    ) -> Result<bool, AppError> {
        if self.is_platform(caller)? {
            return Ok(true);
        }
        let Principal::User(auth) = &caller.principal else {
            return Ok(false);
        };
        let restriction = match &auth.via {
            Credential::ApiKey { restriction, .. } => {
                if &auth.tenant != tenant {
                    return Ok(false);
                }
                restriction.as_ref()
            }
            Credential::Session(_) => None,
        };
        let decision = self
            .access_view()
            .check(CheckRequest {
                tenant,
                subject: Subject::User(auth.user),
                permission,
                record: None,
                restriction,
                now: self.now(),
            })
            .map_err(internal)?;
        Ok(decision.allowed)
    }

    /// Whether the caller may administer `user` in `tenant` with `action` (update or delete):
    /// `users:<action>` there, or, scoped to the holders of given roles, `members.<role>:<action>`
    /// for every role the user holds there now (at least one) while every custom permission the
    /// user holds there is one the caller holds too (nobody administers someone above them).
    pub(crate) fn permitted_over(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: UserId,
        action: Action,
    ) -> Result<bool, AppError> {
        if self.permitted(caller, tenant, &named("users", action))? {
            return Ok(true);
        }
        let Some(member) = self
            .access_view()
            .member_record(tenant, &user)
            .map_err(internal)?
        else {
            return Ok(false);
        };
        let now = self.now();
        let mut roles = member
            .roles
            .iter()
            .filter(|role| live(member.role_expiry.get(*role).map(|end| &end.0), now))
            .peekable();
        if roles.peek().is_none() {
            return Ok(false);
        }
        for role in roles {
            let scoped =
                Permission::new(Resource::Members(role.clone()), action).map_err(internal)?;
            if !self.permitted(caller, tenant, &scoped)? {
                return Ok(false);
            }
        }
        for permission in &member.custom {
            let held_now = live(member.custom_expiry.get(permission).map(|end| &end.0), now);
            if held_now && !self.permitted(caller, tenant, permission)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `users:<action>` in the tenant, or the scoped `members.<role>:<action>` over `user` (see
    /// [`Core::permitted_over`]): removing someone from a tenant. The refusal names
    /// `users:<action>`.
    pub(crate) async fn over_member(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: UserId,
        action: Action,
    ) -> Result<(), AppError> {
        self.signed_in(caller)?;
        let allowed = |core: &Core| core.permitted_over(caller, tenant, user, action);
        if self.fresh(allowed).await? {
            return Ok(());
        }
        if !self.has_standing(caller, tenant)? {
            return Err(AppError::TenantNotFound);
        }
        Err(AppError::Forbidden(named("users", action)))
    }

    /// `decide` now; if it refuses, once more after the read models caught up with the log.
    async fn fresh(
        &self,
        decide: impl Fn(&Core) -> Result<bool, AppError>,
    ) -> Result<bool, AppError> {
        if decide(self)? {
            return Ok(true);
        }
        self.catch_up().await?;
        decide(self)
    }

    // ----- the rules -----

    /// Operations open to anyone (sign-in, password reset, invitation acceptance, …): there is
    /// nothing to check, and saying so keeps every operation's rule in one place.
    pub(crate) fn open_to_anyone(&self, _caller: &Caller) {}

    /// Any signed-in caller (a user, an API key or the operator).
    pub(crate) fn any_signed_in(&self, caller: &Caller) -> Result<(), AppError> {
        self.signed_in(caller).map(drop)
    }

    /// The signed-in user acting on their own account through a session (not an API key: a key
    /// cannot change its owner's credentials; not the operator, who has no account).
    pub(crate) fn own_session<'c>(
        &self,
        caller: &'c Caller,
    ) -> Result<&'c Authenticated, AppError> {
        self.signed_in(caller)?;
        self.own_session_while_enrolling(caller)
    }

    /// [`Core::own_session`] for the steps a session that must set up a second factor may take
    /// (setting up TOTP, signing out).
    pub(crate) fn own_session_while_enrolling<'c>(
        &self,
        caller: &'c Caller,
    ) -> Result<&'c Authenticated, AppError> {
        match self.signed_in_while_enrolling(caller)? {
            Principal::User(auth) if auth.session().is_some() => Ok(auth),
            _ => Err(AppError::SessionOnly),
        }
    }

    /// The signed-in user (session or API key) reading their own account; allowed while a
    /// second factor must be set up, so that the client can tell.
    pub(crate) fn own_account_while_enrolling<'c>(
        &self,
        caller: &'c Caller,
    ) -> Result<&'c Authenticated, AppError> {
        match self.signed_in_while_enrolling(caller)? {
            Principal::User(auth) => Ok(auth),
            _ => Err(AppError::SessionOnly),
        }
    }

    /// Platform administrators only.
    pub(crate) async fn platform_admin(&self, caller: &Caller) -> Result<(), AppError> {
        self.signed_in(caller)?;
        if self.fresh(|core| core.is_platform(caller)).await? {
            Ok(())
        } else {
            Err(AppError::PlatformAdminOnly)
        }
    }

    /// Platform administrators only, acting on `user`: a caller who shares no tenant with the
    /// user finds no such user (as everywhere under `/v1/users/{user}`); anyone else who is not
    /// a platform administrator is refused.
    pub(crate) async fn platform_admin_over_user(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<(), AppError> {
        match self.platform_admin(caller).await {
            Err(AppError::PlatformAdminOnly) if !self.has_standing_over(caller, user)? => {
                Err(AppError::UserNotFound)
            }
            other => other,
        }
    }

    /// Standing in the tenant: enough to read what every member may read (its name).
    pub(crate) async fn tenant_standing(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<(), AppError> {
        self.signed_in(caller)?;
        if self.fresh(|core| core.has_standing(caller, tenant)).await? {
            Ok(())
        } else {
            Err(AppError::TenantNotFound)
        }
    }

    /// `permission` in the tenant.
    pub(crate) async fn permission(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        permission: &Permission,
    ) -> Result<(), AppError> {
        self.any_permission(caller, tenant, std::slice::from_ref(permission))
            .await
    }

    /// `<resource>:<action>` in the tenant.
    pub(crate) async fn named_permission(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        resource: &'static str,
        action: Action,
    ) -> Result<(), AppError> {
        self.permission(caller, tenant, &named(resource, action))
            .await
    }

    /// Any one of `permissions` in the tenant. Without standing there the tenant is not found;
    /// with standing the refusal names the first permission.
    pub(crate) async fn any_permission(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        permissions: &[Permission],
    ) -> Result<(), AppError> {
        self.signed_in(caller)?;
        let allowed = |core: &Core| -> Result<bool, AppError> {
            for permission in permissions {
                if core.permitted(caller, tenant, permission)? {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        if self.fresh(allowed).await? {
            return Ok(());
        }
        if !self.has_standing(caller, tenant)? {
            return Err(AppError::TenantNotFound);
        }
        Err(AppError::Forbidden(
            permissions
                .first()
                .cloned()
                .unwrap_or(named("users", Action::Read)),
        ))
    }

    /// Asking about `user`'s standing in the tenant (their roles, permissions, menu): the user
    /// themselves (a member of it), or any of `permissions` there.
    pub(crate) async fn about_member(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: UserId,
        permissions: &[Permission],
    ) -> Result<(), AppError> {
        self.signed_in(caller)?;
        if self.is_self(caller, user) {
            return self.tenant_standing(caller, tenant).await;
        }
        self.any_permission(caller, tenant, permissions).await
    }

    /// Whether `user` is the caller (a session's user, or an API key's owner).
    fn is_self(&self, caller: &Caller, user: UserId) -> bool {
        caller.user_id() == Some(user)
    }

    /// Whether the caller shares a tenant with `user` (or is them, or a platform administrator).
    fn has_standing_over(&self, caller: &Caller, user: UserId) -> Result<bool, AppError> {
        if self.is_self(caller, user) || self.is_platform(caller)? {
            return Ok(true);
        }
        for tenant in self.user_tenants(&user)? {
            if self.has_standing(caller, &tenant)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Administering a user, who is one identity across tenants: `users:<action>` (or the scoped
    /// `members.<role>:<action>`, see [`Core::permitted_over`]) in every tenant the user belongs
    /// to (an administrator of one tenant cannot lock someone out of another), or a platform
    /// administrator. A caller who shares no tenant with the user finds
    /// no such user.
    pub(crate) async fn over_user(
        &self,
        caller: &Caller,
        user: UserId,
        action: Action,
    ) -> Result<(), AppError> {
        self.signed_in(caller)?;
        let permission = named("users", action);
        let allowed = |core: &Core| -> Result<bool, AppError> {
            if core.is_platform(caller)? {
                return Ok(true);
            }
            let tenants = core.user_tenants(&user)?;
            if tenants.is_empty() {
                return Ok(false);
            }
            for tenant in &tenants {
                if !core.permitted_over(caller, tenant, user, action)? {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        if self.fresh(allowed).await? {
            return Ok(());
        }
        if self.has_standing_over(caller, user)? {
            Err(AppError::Forbidden(permission))
        } else {
            Err(AppError::UserNotFound)
        }
    }

    /// The user themselves through a session, or [`Core::over_user`] with `users:update`:
    /// changing a profile.
    pub(crate) async fn self_or_over_user(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<(), AppError> {
        self.signed_in(caller)?;
        if self.is_self(caller, user) && caller.session().is_some() {
            return Ok(());
        }
        self.over_user(caller, user, Action::Update).await
    }

    /// Reading a user: which of their tenants the caller may see. The user themselves sees all
    /// (an API key only its own tenant), platform administrators too; anyone else sees the
    /// tenants of the user where they hold `users:read`.
    pub(crate) async fn user_scope(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<TenantScope, AppError> {
        self.signed_in(caller)?;
        if self.is_platform(caller)? {
            return Ok(TenantScope::Every);
        }
        if let Some(auth) = caller.authenticated()
            && auth.user == user
        {
            return Ok(match &auth.via {
                Credential::Session(_) => TenantScope::Every,
                Credential::ApiKey { .. } => TenantScope::Only(vec![auth.tenant.clone()]),
            });
        }
        let permission = named("users", Action::Read);
        let visible = |core: &Core| -> Result<Vec<TenantId>, AppError> {
            let mut visible = Vec::new();
            for tenant in core.user_tenants(&user)? {
                if core.permitted(caller, &tenant, &permission)? {
                    visible.push(tenant);
                }
            }
            Ok(visible)
        };
        let mut tenants = visible(self)?;
        if tenants.is_empty() {
            self.catch_up().await?;
            tenants = visible(self)?;
        }
        if !tenants.is_empty() {
            return Ok(TenantScope::Only(tenants));
        }
        if self.has_standing_over(caller, user)? {
            Err(AppError::Forbidden(permission))
        } else {
            Err(AppError::UserNotFound)
        }
    }

    /// The tenants where the caller holds `permission` (every tenant for platform
    /// administrators): what it may see of someone else's tenants.
    pub(crate) fn tenants_with(
        &self,
        caller: &Caller,
        permission: &Permission,
    ) -> Result<TenantScope, AppError> {
        let mine = match self.tenant_scope(caller)? {
            TenantScope::Every => return Ok(TenantScope::Every),
            TenantScope::Only(mine) => mine,
        };
        let mut with = Vec::new();
        for tenant in mine {
            if self.permitted(caller, &tenant, permission)? {
                with.push(tenant);
            }
        }
        Ok(TenantScope::Only(with))
    }

    /// The tenants a caller may list: their own (an API key's: its tenant); every tenant for
    /// platform administrators.
    pub(crate) fn tenant_scope(&self, caller: &Caller) -> Result<TenantScope, AppError> {
        self.signed_in(caller)?;
        if self.is_platform(caller)? {
            return Ok(TenantScope::Every);
        }
        match &caller.principal {
            Principal::User(auth) => match &auth.via {
                Credential::ApiKey { .. } => Ok(TenantScope::Only(vec![auth.tenant.clone()])),
                Credential::Session(_) => Ok(TenantScope::Only(self.user_tenants(&auth.user)?)),
            },
            _ => Ok(TenantScope::Only(Vec::new())),
        }
    }

    /// Asking an access question about `subject` in the tenant: about oneself (with standing
    /// there), or about anyone with `permissions:read`. An API key asking about its own owner
    /// in its own tenant asks about itself: the answer is narrowed to the key's restriction,
    /// which is returned (`Some(None)`: an unrestricted key); `None` for every other question.
    pub(crate) async fn subject(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        subject: Subject,
    ) -> Result<Option<Option<BTreeSet<Permission>>>, AppError> {
        self.signed_in(caller)?;
        if let (Some(auth), Subject::User(user)) = (caller.authenticated(), subject)
            && auth.user == user
        {
            self.tenant_standing(caller, tenant).await?;
            return Ok(match &auth.via {
                Credential::ApiKey { restriction, .. } => Some(restriction.clone()),
                Credential::Session(_) => None,
            });
        }
        self.named_permission(caller, tenant, "permissions", Action::Read)
            .await?;
        Ok(None)
    }

    /// Refuses unless the caller holds `global` access (if asked) and every permission of
    /// `wanted` in the tenant (see [`Held::require`]); a refusal is decided again once after
    /// the read models caught up with the log, like every rule here.
    pub(crate) async fn require_held<'a>(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        global: bool,
        wanted: impl IntoIterator<Item = &'a Permission> + Clone,
    ) -> Result<(), AppError> {
        self.require_defined_resources(tenant, wanted.clone())
            .await?;
        if self
            .held(caller, tenant)?
            .require(global, wanted.clone())
            .is_ok()
        {
            return Ok(());
        }
        self.catch_up().await?;
        self.held(caller, tenant)?.require(global, wanted)
    }

    /// Every resource the tenant defines that `permissions` name is defined (read after
    /// catching up with the log when one seems missing): nobody gives a permission on a resource
    /// that does not exist, not even a platform administrator.
    pub(crate) async fn require_defined_resources<'a>(
        &self,
        tenant: &TenantId,
        permissions: impl IntoIterator<Item = &'a Permission>,
    ) -> Result<(), AppError> {
        for permission in permissions {
            let Some(name) = permission.custom_resource() else {
                continue;
            };
            let defined = |core: &Core| {
                idstream_domain::access::AccessFacts::resource_defined(
                    &*core.access_view(),
                    tenant,
                    &name,
                )
                .map_err(internal)
            };
            if !defined(self)?
                && !{
                    self.catch_up().await?;
                    defined(self)?
                }
            {
                return Err(AppError::UnknownResource(name));
            }
        }
        Ok(())
    }

    /// What the caller holds in the tenant, for the escalation rules (see [`Held`]).
    pub(crate) fn held(&self, caller: &Caller, tenant: &TenantId) -> Result<Held, AppError> {
        if self.is_platform(caller)? {
            return Ok(Held {
                platform: true,
                ..Held::default()
            });
        }
        let Principal::User(auth) = &caller.principal else {
            return Ok(Held::default());
        };
        let (global, permissions) = self
            .access_view()
            .effective_permissions(tenant, &auth.user)
            .map_err(internal)?;
        Ok(match &auth.via {
            Credential::ApiKey { .. } if &auth.tenant != tenant => Held::default(),
            Credential::ApiKey {
                restriction: Some(restriction),
                ..
            } => Held {
                platform: false,
                global: false,
                permissions: restriction
                    .iter()
                    .filter(|p| global || permissions.contains(*p))
                    .cloned()
                    .collect(),
            },
            _ => Held {
                platform: false,
                global,
                permissions,
            },
        })
    }
}
