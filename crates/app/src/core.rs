//! The core every service shares: the log, the read models and their waits, the state cache
//! of the command loop, the clock, the identity parts, and the lookups the services build on
//! (existence checks that wait for the read models before answering "absent", the email claims).
//!
//! Nothing here authorizes: the services call the [policy](crate::policy) before they call any
//! of this.

use crate::views::View;
use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use idstream_access::Access;
use idstream_directory::{Directory, TenantView, UserView};
use idstream_domain::aggregate::{EmailClaimAggregate, UserAggregate};
use idstream_domain::email::{self, CLAIM_DEADLINE, EmailClaimCommand, EmailClaimError};
use idstream_domain::envelope::{AggregateType, Metadata};
use idstream_domain::user::UserError;
use idstream_domain::{Aggregate, DomainEvent, StreamKey, TenantId, UserId};
use idstream_eventlog::{AppendError, Expected, Position, SharedLog};
use idstream_projection_runtime::ReadModels;
use time::OffsetDateTime;
use ulid::Ulid;

use crate::replay::Replays;
use crate::{AppError, Clock, CommandContext, SERVING_READ_MODELS, engine, identity};

/// How often a claim is retried when other writers keep racing for the same address.
const CLAIM_ATTEMPTS: usize = 8;

/// What the services share (one per process, behind an `Arc`). Public only so that the services
/// can reach it through `Deref`; it cannot be named outside this crate, and nothing of it is
/// public.
pub struct Core {
    pub(crate) log: SharedLog,
    pub(crate) read_models: ReadModels,
    /// The directory, access and identity query sides over the serving read models.
    pub(crate) views: crate::views::Views,
    pub(crate) cache: engine::StateCache,
    /// Tenants and users seen to exist (see [`KnownIds`]).
    pub(crate) known: KnownIds,
    pub(crate) identity: identity::IdentityParts,
    pub(crate) replays: Arc<Replays>,
    pub(crate) clock: Arc<dyn Clock>,
    /// How long a query or an existence check waits for read models to reach a position.
    pub(crate) consistency_timeout: Duration,
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

pub(crate) fn user_not_found(e: AppError) -> AppError {
    match e {
        AppError::User(UserError::NotFound) => AppError::UserNotFound,
        other => other,
    }
}

/// Tenants and users seen to exist. Neither is ever deleted (an erased user keeps its id and its
/// view), so a positive answer stays true, and the existence checks of the command path need not
/// read the directory again: sled 0.34 makes every read wait while any read model applies a batch
/// (one lock for the whole process), which put the folds of earlier commands into the latency of
/// the next. Bounded: a full set starts over.
#[derive(Default)]
pub(crate) struct KnownIds {
    tenants: RwLock<HashSet<TenantId>>,
    users: RwLock<HashSet<UserId>>,
}

impl KnownIds {
    const CAPACITY: usize = 1 << 20;

    fn has_tenant(&self, tenant: &TenantId) -> bool {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(tenant)
    }

    fn has_user(&self, user: &UserId) -> bool {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(user)
    }

    fn tenant_exists(&self, tenant: &TenantId) {
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        if tenants.len() >= Self::CAPACITY {
            tenants.clear();
        }
        tenants.insert(tenant.clone());
    }

    fn user_exists(&self, user: UserId) {
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        if users.len() >= Self::CAPACITY {
            users.clear();
        }
        users.insert(user);
    }
}

/// An email claim held for a user being created.
pub(crate) struct Claim {
    pub(crate) user: UserId,
    pub(crate) claimed_at: OffsetDateTime,
    /// Whether the user already exists (an earlier attempt of the same request created it).
    pub(crate) user_exists: bool,
}

// ----- waits: read-your-writes and consistency tokens -----

impl Core {
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    #[cfg(test)]
    pub(crate) fn log(&self) -> &SharedLog {
        &self.log
    }

    pub(crate) fn directory(&self) -> View<Directory> {
        self.views.directory()
    }

    pub(crate) fn access_view(&self) -> View<Access> {
        self.views.access()
    }

    pub(crate) fn read_models(&self) -> &ReadModels {
        &self.read_models
    }

    /// Waits until the serving read models ([`SERVING_READ_MODELS`]) have applied everything the
    /// log holds now, so that a lookup that follows sees what any replica wrote before this call.
    pub(crate) async fn catch_up(&self) -> Result<(), AppError> {
        let end = self
            .log
            .last_position()
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?;
        self.wait_for(end).await
    }

    /// Honours a client's consistency token for a query of the serving read models: waits
    /// (bounded) until they have applied `min`. A token beyond the end of the log was never
    /// issued by it (the log is shared by all replicas, so no replica can be behind it) and is
    /// refused rather than waited for.
    pub(crate) async fn wait_for_token_of_serving_models(
        &self,
        min: Position,
    ) -> Result<(), AppError> {
        self.honour_token(min, &SERVING_READ_MODELS).await
    }

    /// [`Core::wait_for_token_of_serving_models`] for a query of the audit trail: the audit read model too.
    pub(crate) async fn wait_for_audit_token(&self, min: Position) -> Result<(), AppError> {
        let mut models = SERVING_READ_MODELS.to_vec();
        models.push(idstream_audit::NAME);
        self.honour_token(min, &models).await
    }

    async fn honour_token(&self, min: Position, models: &[&str]) -> Result<(), AppError> {
        if self.read_models.min_position_of(models) >= min {
            return Ok(());
        }
        if let Ok(end) = self.log.last_position().await
            && min > end
        {
            return Err(AppError::PositionBeyondLog { wanted: min, end });
        }
        self.wait_for_models(min, models).await
    }

    /// Waits until the serving read models ([`SERVING_READ_MODELS`]) have applied `min`: what a
    /// command does before it answers when its answer must already hold for the next request.
    pub(crate) async fn wait_for(&self, min: Position) -> Result<(), AppError> {
        self.wait_for_models(min, &SERVING_READ_MODELS).await
    }

    /// Waits until every read model, the audit trail's included, has applied `min`.
    pub(crate) async fn wait_for_every_model(&self, min: Position) -> Result<(), AppError> {
        let names = self.read_models.names();
        self.wait_for_models(min, &names).await
    }

    async fn wait_for_models(&self, min: Position, models: &[&str]) -> Result<(), AppError> {
        self.read_models
            .wait_for_some(models, min, self.consistency_timeout)
            .await
            .map_err(|stale| AppError::Stale {
                wanted: min,
                current: stale.current,
            })
    }
}

// ----- lookups -----

impl Core {
    /// Looks something up in the read models; if it is missing, waits for them to reach the end
    /// of the log (it may have been created a moment ago, maybe on another replica) and looks
    /// again.
    pub(crate) async fn find<T>(
        &self,
        lookup: impl Fn(&Core) -> Result<Option<T>, AppError>,
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
        self.find(|core| core.directory().user_by_email(email).map_err(internal))
            .await
    }

    /// The tenant's view from the directory, looking again after catching up if absent.
    pub(crate) async fn tenant_view(&self, tenant: &TenantId) -> Result<TenantView, AppError> {
        let view = self
            .find(|core| core.directory().tenant(tenant).map_err(internal))
            .await?
            .ok_or(AppError::TenantNotFound)?;
        self.known.tenant_exists(tenant);
        Ok(view)
    }

    /// The tenant exists. Answered from memory once seen: tenants are never deleted.
    pub(crate) async fn require_tenant(&self, tenant: &TenantId) -> Result<(), AppError> {
        if self.known.has_tenant(tenant) {
            return Ok(());
        }
        self.tenant_view(tenant).await.map(drop)
    }

    /// The user's view from the directory, looking again after catching up if absent.
    pub(crate) async fn require_user(&self, user: UserId) -> Result<UserView, AppError> {
        let view = self
            .find(|core| core.directory().user(&user).map_err(internal))
            .await?
            .ok_or(AppError::UserNotFound)?;
        self.known.user_exists(user);
        Ok(view)
    }

    /// The user exists (an erased user still does). Answered from memory once seen: users are
    /// never deleted.
    pub(crate) async fn require_user_exists(&self, user: UserId) -> Result<(), AppError> {
        if self.known.has_user(&user) {
            return Ok(());
        }
        self.require_user(user).await.map(drop)
    }

    /// The tenant's view as the directory has it now (no wait).
    pub(crate) fn tenant_now(&self, tenant: &TenantId) -> Result<TenantView, AppError> {
        self.directory()
            .tenant(tenant)
            .map_err(internal)?
            .ok_or(AppError::TenantNotFound)
    }

    /// The user's view as the directory has it now (no wait).
    pub(crate) fn user_now(&self, user: &UserId) -> Result<UserView, AppError> {
        self.directory()
            .user(user)
            .map_err(internal)?
            .ok_or(AppError::UserNotFound)
    }

    /// The tenants a user belongs to.
    pub(crate) fn user_tenants(&self, user: &UserId) -> Result<Vec<TenantId>, AppError> {
        self.directory().user_tenants(user).map_err(internal)
    }
}

// ----- email claims (F-LOG-5) -----

impl Core {
    /// The claim aggregate of a normalised email address, named by a keyed hash of it (the
    /// vault's blind index, whose key is not in the log), so the log does not let anyone confirm
    /// a guessed address.
    pub(crate) fn claim_key(&self, email: &str) -> StreamKey {
        let index = self
            .identity
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

    /// Whether another user holds `email` by a legacy claim (see [`Core::legacy_claim`]).
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

    /// Claims a normalised email address for a new user; or finds the claim of an earlier
    /// attempt of the same request.
    pub(crate) async fn claim_email(
        &self,
        ctx: &CommandContext,
        email: &str,
    ) -> Result<Claim, AppError> {
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
            let new_state = events.iter().fold(state, EmailClaimAggregate::evolve);
            let envelopes = events
                .into_iter()
                .map(|e| DomainEvent::from(e).into_envelope(Ulid::new(), &key, &meta))
                .collect();
            // A dry run takes no claim: it records what it would append.
            if let Some(dry_run) = ctx.dry_run() {
                dry_run.record::<EmailClaimAggregate>(key.subject(), new_state, last, envelopes);
                return Ok(Claim {
                    user,
                    claimed_at: now,
                    user_exists: false,
                });
            }
            // No idempotency key here: the claim itself records the request, and a takeover by
            // the same request must not be mistaken for a duplicate of its first claim.
            match self
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
}

/// Whether `host` (a URL's host) names this machine: `localhost`, an address of 127.0.0.0/8, or
/// `[::1]`.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

impl Core {
    /// Whether the service may call its own machine for a tenant (an upstream provider's
    /// endpoints, a back-channel logout URI): only while it runs there itself, its public URL
    /// naming the loopback address (development, tests).
    pub(crate) fn local_targets_allowed(&self) -> bool {
        url::Url::parse(&self.identity.config.public_url)
            .ok()
            .and_then(|u| u.host_str().map(is_loopback_host))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod loopback_tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts_are_this_machine_in_every_spelling() {
        for host in [
            "localhost",
            "LOCALHOST",
            "app.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "0.0.0.0",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1",
            "localhost.example.com",
            "[2001:db8::1]",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
