//! The commands and queries of the backbone: tenants, users and their roles.

use idstream_directory::{MembershipView, TenantView, UserView};
use idstream_domain::aggregate::{
    EmailClaimAggregate, MembershipAggregate, TenantAggregate, UserAggregate,
};
use idstream_domain::email::{self, CLAIM_DEADLINE, EmailClaimCommand, EmailClaimError};
use idstream_domain::envelope::{AggregateType, Metadata};
use idstream_domain::membership::{MembershipCommand, MembershipError};
use idstream_domain::tenant::TenantCommand;
use idstream_domain::user::{self, NewUser, User, UserCommand, UserError};
use idstream_domain::{Aggregate, DomainEvent, RoleName, StreamKey, TenantId, UserId};
use idstream_eventlog::{AppendError, Expected, Position};
use time::OffsetDateTime;
use ulid::Ulid;

use crate::{App, AppError, CommandContext, Outcome};
use idstream_domain::access::Action;

/// How often a claim is retried when other writers keep racing for the same address.
const CLAIM_ATTEMPTS: usize = 8;

/// `POST /v1/tenants/{tenant}/users`
#[derive(Debug, Clone)]
pub struct NewUserRequest {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub roles: Vec<RoleName>,
    /// Create the user as invited rather than active.
    pub invite: bool,
}

#[derive(Debug, Clone)]
pub struct SuspendRequest {
    pub until: Option<OffsetDateTime>,
    pub reason: Option<String>,
}

pub(crate) fn tenant_key(tenant: &TenantId) -> StreamKey {
    StreamKey::new(Some(tenant.clone()), AggregateType::Tenant, tenant.as_str())
}

pub(crate) fn user_key(user: UserId) -> StreamKey {
    StreamKey::new(None, AggregateType::User, user.to_string())
}

pub(crate) fn membership_key(tenant: &TenantId, user: UserId) -> StreamKey {
    StreamKey::new(
        Some(tenant.clone()),
        AggregateType::Membership,
        user.to_string(),
    )
}

/// The legacy claim aggregate of a normalised email address, named by its unkeyed hash: claims
/// made before claims were keyed (see `idstream_domain::email`). Only read and released.
pub(crate) fn legacy_claim_key(email: &str) -> StreamKey {
    StreamKey::new(None, AggregateType::Email, email::claim_id(email))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(e.to_string())
}

/// Tenants and users seen to exist. Neither is ever deleted (an erased user keeps its id and its
/// view), so a positive answer stays true, and the existence checks of the command path need not
/// read the directory again: sled 0.34 makes every read wait while any read model applies a batch
/// (one lock for the whole process), which put the folds of earlier commands into the latency of
/// the next. Bounded: a full set starts over.
#[derive(Default)]
pub(crate) struct KnownIds {
    tenants: std::sync::RwLock<std::collections::HashSet<TenantId>>,
    users: std::sync::RwLock<std::collections::HashSet<UserId>>,
}

impl KnownIds {
    const CAPACITY: usize = 1 << 20;

    fn has_tenant(&self, tenant: &TenantId) -> bool {
        self.tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(tenant)
    }

    fn has_user(&self, user: &UserId) -> bool {
        self.users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(user)
    }

    fn tenant_exists(&self, tenant: &TenantId) {
        let mut tenants = self
            .tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tenants.len() >= Self::CAPACITY {
            tenants.clear();
        }
        tenants.insert(tenant.clone());
    }

    fn user_exists(&self, user: UserId) {
        let mut users = self
            .users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if users.len() >= Self::CAPACITY {
            users.clear();
        }
        users.insert(user);
    }
}

impl App {
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// The claim aggregate of a normalised email address, named by a keyed hash of it (the
    /// vault's blind index, whose key is not in the log), so the log does not let anyone confirm
    /// a guessed address.
    pub(crate) fn claim_key(&self, email: &str) -> StreamKey {
        let index = self
            .id()
            .keys
            .vault()
            .blind_index(email::CLAIM_INDEX_PURPOSE, email);
        StreamKey::new(None, AggregateType::Email, email::keyed_claim_id(&index))
    }

    /// What a legacy claim of `email` says about claiming it for `claimant` (an existing user,
    /// or `None` for one about to be created by `request`): [`AppError::EmailTaken`] while
    /// someone else holds it by the rules of any claim (not stale), the claim itself when it is
    /// an earlier attempt of `request`, nothing otherwise. Nothing appends to a legacy claim but
    /// its release, so once free it stays free, and checking it before claiming is race-free.
    async fn legacy_claim(
        &self,
        email: &str,
        claimant: Option<UserId>,
        request: Option<&str>,
    ) -> Result<Option<Claim>, AppError> {
        let (state, _) = self
            .load::<EmailClaimAggregate>(&legacy_claim_key(email))
            .await?;
        let Some(holder) = state.holder else {
            return Ok(None);
        };
        if Some(holder.user) == claimant {
            return Ok(None);
        }
        let holder_exists = self
            .load::<UserAggregate>(&user_key(holder.user))
            .await?
            .0
            .holds_identity();
        let now = self.now();
        let stale = !holder_exists && now >= holder.claimed_at + email::CLAIM_TTL;
        if request.is_some() && holder.request.as_deref() == request && !stale {
            if holder_exists || now < holder.claimed_at + CLAIM_DEADLINE {
                return Ok(Some(Claim {
                    user: holder.user,
                    claimed_at: holder.claimed_at,
                    user_exists: holder_exists,
                }));
            }
            return Err(AppError::Unavailable(
                "an earlier attempt of this request is still settling; retry in a few seconds"
                    .into(),
            ));
        }
        if stale {
            Ok(None)
        } else {
            Err(AppError::EmailTaken)
        }
    }

    /// Whether another user holds `email` by a legacy claim (see [`App::legacy_claim`]).
    pub(crate) async fn check_legacy_claim(
        &self,
        email: &str,
        claimant: UserId,
    ) -> Result<(), AppError> {
        self.legacy_claim(email, Some(claimant), None)
            .await
            .map(drop)
    }

    /// `user` gives `email` up: its claim, and the legacy claim if they hold that. `step` names
    /// the appends for the request's idempotency key. Returns the last position written (or the
    /// claim's, if there was nothing to release).
    pub(crate) async fn release_email(
        &self,
        ctx: &CommandContext,
        user: UserId,
        email: &str,
        step: &str,
    ) -> Result<Position, AppError> {
        let release = || EmailClaimCommand::Release { user };
        let mut position = self
            .execute::<EmailClaimAggregate>(ctx, &self.claim_key(email), step, release())
            .await?
            .position;
        let legacy = legacy_claim_key(email);
        let (state, _) = self.load::<EmailClaimAggregate>(&legacy).await?;
        if state.holder.is_some_and(|holder| holder.user == user) {
            let released = self
                .execute::<EmailClaimAggregate>(ctx, &legacy, &format!("{step}-legacy"), release())
                .await?;
            position = position.max(released.position);
        }
        Ok(position)
    }

    /// Looks something up in the directory; if it is missing, waits for the read models to reach
    /// the end of the log (it may have been created a moment ago, maybe on another replica) and
    /// looks again.
    pub(crate) async fn find<T>(
        &self,
        lookup: impl Fn(&App) -> Result<Option<T>, AppError>,
    ) -> Result<Option<T>, AppError> {
        if let Some(found) = lookup(self)? {
            return Ok(Some(found));
        }
        // Always look again after the wait (which returns at once if the read models are there
        // already): they may have applied the thing between the first look and now.
        self.catch_up().await?;
        lookup(self)
    }

    /// The user with this address (any case or Unicode form), looking again after catching up
    /// with the log if absent.
    pub(crate) async fn find_user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<UserView>, AppError> {
        self.find(|app| app.inner.directory.user_by_email(email).map_err(internal))
            .await
    }

    /// The tenant's view from the directory, looking again after catching up if absent.
    pub(crate) async fn tenant_view(&self, tenant: &TenantId) -> Result<TenantView, AppError> {
        let view = self
            .find(|app| app.inner.directory.tenant(tenant).map_err(internal))
            .await?
            .ok_or(AppError::TenantNotFound)?;
        self.inner.known.tenant_exists(tenant);
        Ok(view)
    }

    /// The tenant exists. Answered from memory once seen: tenants are never deleted.
    pub(crate) async fn require_tenant(&self, tenant: &TenantId) -> Result<(), AppError> {
        if self.inner.known.has_tenant(tenant) {
            return Ok(());
        }
        self.tenant_view(tenant).await.map(drop)
    }

    /// The user's view from the directory, looking again after catching up if absent.
    pub(crate) async fn require_user(&self, user: UserId) -> Result<UserView, AppError> {
        let view = self
            .find(|app| app.inner.directory.user(&user).map_err(internal))
            .await?
            .ok_or(AppError::UserNotFound)?;
        self.inner.known.user_exists(user);
        Ok(view)
    }

    /// The user exists (an erased user still does). Answered from memory once seen: users are
    /// never deleted.
    pub(crate) async fn require_user_exists(&self, user: UserId) -> Result<(), AppError> {
        if self.inner.known.has_user(&user) {
            return Ok(());
        }
        self.require_user(user).await.map(drop)
    }

    // ----- tenants -----

    pub async fn create_tenant(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        name: String,
    ) -> Result<Outcome, AppError> {
        self.authorize_platform_admin(ctx).await?;
        self.execute::<TenantAggregate>(
            ctx,
            &tenant_key(&tenant),
            "",
            TenantCommand::Create { name },
        )
        .await
    }

    pub async fn rename_tenant(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        name: String,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "settings", Action::Update)
            .await?;
        self.execute::<TenantAggregate>(
            ctx,
            &tenant_key(&tenant),
            "",
            TenantCommand::Rename { name },
        )
        .await
        .map_err(|e| match e {
            AppError::Tenant(idstream_domain::tenant::TenantError::NotFound) => {
                AppError::TenantNotFound
            }
            other => other,
        })
    }

    pub fn tenant(&self, tenant: &TenantId) -> Result<TenantView, AppError> {
        self.inner
            .directory
            .tenant(tenant)
            .map_err(internal)?
            .ok_or(AppError::TenantNotFound)
    }

    pub fn tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantView>, AppError> {
        self.inner.directory.tenants(after, limit).map_err(internal)
    }

    // ----- users -----

    /// Creates a user in a tenant with the given roles. The email address is claimed first so
    /// that two replicas creating the same address at once yield exactly one user.
    pub async fn create_user(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        request: NewUserRequest,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "users", Action::Create)
            .await?;
        self.require_tenant(&tenant).await?;
        for role in &request.roles {
            self.require_role(&tenant, role).await?;
            self.check_owner_only(ctx, &tenant, role).await?;
        }
        let new_user = NewUser {
            email: request.email,
            first_name: request.first_name,
            last_name: request.last_name,
            tenant: tenant.clone(),
        };
        let command = if request.invite {
            UserCommand::Invite(new_user)
        } else {
            UserCommand::Register(new_user)
        };
        // Validate the profile before claiming, so a malformed request never holds an address.
        let validated = user::decide(&User::default(), command.clone())?;
        let email = match validated.first() {
            Some(user::UserEvent::Registered(e)) => e.email.clone(),
            Some(user::UserEvent::Invited(e)) => e.email.clone(),
            _ => return Err(internal("creating a user yields its creation event")),
        };

        let claim = self.claim_email(ctx, &email).await?;
        // A claim may be taken over once it is older than its TTL and its user does not exist.
        // Appending the user long after claiming could then create a second user with this
        // address, so past the deadline (well inside the TTL) this attempt gives up instead.
        if !claim.user_exists && self.now() >= claim.claimed_at + CLAIM_DEADLINE {
            return Err(AppError::Unavailable(
                "creating the user took too long after claiming its email address; retry".into(),
            ));
        }
        let user = claim.user;
        let key = user_key(user);
        let mut outcome = match self
            .execute::<UserAggregate>(ctx, &key, "user", command)
            .await
        {
            Ok(outcome) => outcome,
            // Our own claim from an earlier attempt whose user was created already.
            Err(AppError::User(UserError::AlreadyExists)) => {
                let (_, last) = self.load::<UserAggregate>(&key).await?;
                Outcome {
                    position: last,
                    id: user.to_string(),
                    replayed: true,
                }
            }
            Err(e) => return Err(e),
        };
        for role in request.roles {
            let step = format!("role-{role}");
            let command = MembershipCommand::Assign { user, role };
            match self
                .execute::<MembershipAggregate>(ctx, &membership_key(&tenant, user), &step, command)
                .await
            {
                Ok(assigned) => outcome.position = outcome.position.max(assigned.position),
                Err(AppError::Membership(MembershipError::AlreadyAssigned)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(outcome)
    }

    /// Claims a normalised email address for a new user; or finds the claim of an earlier
    /// attempt of the same request.
    async fn claim_email(&self, ctx: &CommandContext, email: &str) -> Result<Claim, AppError> {
        let key = self.claim_key(email);
        let request = ctx.request_hash();
        if let Some(claim) = self.legacy_claim(email, None, request.as_deref()).await? {
            return Ok(claim);
        }
        for _ in 0..CLAIM_ATTEMPTS {
            // Claims are always read from the log: they are rare, and a stale view would only
            // cost a conflict anyway.
            let (state, last) = self.load::<EmailClaimAggregate>(&key).await?;
            let now = self.now();
            let mut holder_exists = true;
            if let Some(holder) = &state.holder {
                let same_request = request.is_some() && holder.request == request;
                // Whether the holder's user exists matters only for a retry of the same request
                // or once the claim is old enough to be stale; otherwise skip the read.
                if same_request || now >= holder.claimed_at + email::CLAIM_TTL {
                    holder_exists = self
                        .load::<UserAggregate>(&user_key(holder.user))
                        .await?
                        .0
                        .holds_identity();
                }
                if same_request {
                    if holder_exists || now < holder.claimed_at + CLAIM_DEADLINE {
                        return Ok(Claim {
                            user: holder.user,
                            claimed_at: holder.claimed_at,
                            user_exists: holder_exists,
                        });
                    }
                    if holder.claimed_at + email::CLAIM_TTL > now {
                        return Err(AppError::Unavailable(
                            "an earlier attempt of this request is still settling; retry in a few seconds".into(),
                        ));
                    }
                }
            }
            let user = UserId::new(Ulid::new());
            let command = EmailClaimCommand::Claim {
                user,
                request: request.clone(),
                now,
                holder_exists,
            };
            let events = match EmailClaimAggregate::decide(&state, command) {
                Ok(events) => events,
                Err(EmailClaimError::Taken { .. }) => return Err(AppError::EmailTaken),
            };
            let meta = Metadata {
                actor: ctx.actor.clone(),
                occurred_at: now,
                correlation_id: ctx.correlation_id.clone(),
                causation_id: None,
            };
            let envelopes = events
                .into_iter()
                .map(|e| DomainEvent::from(e).into_envelope(Ulid::new(), &key, &meta))
                .collect();
            // No idempotency key here: the claim itself records the request, and a takeover by
            // the same request must not be mistaken for a duplicate of its first claim.
            match self
                .inner
                .log
                .append(envelopes, Expected::from_last(last), None)
                .await
            {
                Ok(_) => {
                    return Ok(Claim {
                        user,
                        claimed_at: now,
                        user_exists: false,
                    });
                }
                Err(AppendError::WrongExpectedSequence { .. }) => continue,
                Err(AppendError::Unavailable(why)) => return Err(AppError::Unavailable(why)),
                Err(AppendError::Invalid(why)) => return Err(AppError::Internal(why)),
            }
        }
        Err(AppError::Conflict)
    }

    /// Suspends a user (until a time, or until reinstated). Answers once this replica's read
    /// models hold the suspension, so the user's access tokens, refresh tokens and API keys are
    /// refused from the next request on.
    pub async fn suspend_user(
        &self,
        ctx: &CommandContext,
        user: UserId,
        request: SuspendRequest,
    ) -> Result<Outcome, AppError> {
        self.authorize_user_admin(ctx, &user).await?;
        let command = UserCommand::Suspend {
            until: request.until,
            reason: request.reason,
            now: self.now(),
        };
        let outcome = self
            .execute::<UserAggregate>(ctx, &user_key(user), "", command)
            .await
            .map_err(user_not_found)?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// Ends a suspension. Like a suspension, it is in force on this replica when it answers.
    pub async fn reinstate_user(
        &self,
        ctx: &CommandContext,
        user: UserId,
    ) -> Result<Outcome, AppError> {
        self.authorize_user_admin(ctx, &user).await?;
        let outcome = self
            .execute::<UserAggregate>(ctx, &user_key(user), "", UserCommand::Reinstate)
            .await
            .map_err(user_not_found)?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    pub fn user(&self, user: &UserId) -> Result<UserView, AppError> {
        self.inner
            .directory
            .user(user)
            .map_err(internal)?
            .ok_or(AppError::UserNotFound)
    }

    /// The tenants a user belongs to.
    pub fn user_tenants(&self, user: &UserId) -> Result<Vec<TenantId>, AppError> {
        self.inner.directory.user_tenants(user).map_err(internal)
    }

    // ----- memberships -----

    /// Gives a user a role in a tenant: a built-in role or one defined there. Only owners give
    /// the owner role (F-AZ-7).
    ///
    /// Needs: role.<role>:assign
    pub async fn assign_role(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        user: UserId,
        role: RoleName,
    ) -> Result<Outcome, AppError> {
        self.authorize_role(ctx, &tenant, &role, Action::Assign)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_role(&tenant, &role).await?;
        self.require_user_exists(user).await?;
        self.check_owner_only(ctx, &tenant, &role).await?;
        let outcome = self
            .execute::<MembershipAggregate>(
                ctx,
                &membership_key(&tenant, user),
                "",
                MembershipCommand::Assign {
                    user,
                    role: role.clone(),
                },
            )
            .await?;
        self.confirm_assigned_role(ctx, &tenant, user, &role)
            .await?;
        Ok(outcome)
    }

    /// Takes a role from a user in a tenant, keeping the admin rules of F-AZ-7: nobody gives up
    /// their own owner role, only owners take it, and the last admin stays one.
    ///
    /// Needs: role.<role>:revoke
    pub async fn revoke_role(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        user: UserId,
        role: RoleName,
    ) -> Result<Outcome, AppError> {
        self.authorize_role(ctx, &tenant, &role, Action::Revoke)
            .await?;
        self.require_tenant(&tenant).await?;
        let guarded = if self
            .check_role_revocation(ctx, &tenant, user, &role)
            .await?
        {
            vec![tenant.clone()]
        } else {
            Vec::new()
        };
        let key = membership_key(&tenant, user);
        let revocation = self.execute::<MembershipAggregate>(
            ctx,
            &key,
            "",
            MembershipCommand::Revoke { user, role },
        );
        self.guarded_admin_removal(ctx, &guarded, user, revocation)
            .await
    }

    pub fn membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<MembershipView>, AppError> {
        self.tenant(tenant)?;
        self.inner
            .directory
            .membership(tenant, user)
            .map_err(internal)
    }

    /// Members of a tenant ordered by user id, `limit` after the cursor `after`.
    pub fn members(
        &self,
        tenant: &TenantId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<(UserView, MembershipView)>, AppError> {
        self.tenant(tenant)?;
        self.inner
            .directory
            .members(tenant, after, limit)
            .map_err(internal)
    }

    /// The position every read model has applied.
    pub fn applied_position(&self) -> Position {
        self.inner.read_models.min_position()
    }
}

/// An email claim held for a user being created.
struct Claim {
    user: UserId,
    claimed_at: OffsetDateTime,
    /// Whether the user already exists (an earlier attempt of the same request created it).
    user_exists: bool,
}

pub(crate) fn user_not_found(e: AppError) -> AppError {
    match e {
        AppError::User(UserError::NotFound) => AppError::UserNotFound,
        other => other,
    }
}
