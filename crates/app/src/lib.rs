//! Application services: the operations of idstream, each authorized, then carried out on the
//! log.
//!
//! [`App`] is a set of services over one shared core: [`Tenants`], [`Users`], [`Memberships`],
//! [`AccessAdmin`], [`AccessQueries`], [`Identity`], [`Audit`] and [`Operations`]. Every public
//! operation takes the [`Caller`] first and asks the [policy](policy) whether it may go on
//! before it reads anything; the policy module is the only place that decides who may do what.
//!
//! A command loads an aggregate's state and the position of its last event, calls the pure
//! `decide`, and appends the events with that position as the expected sequence. On a conflict
//! it reloads from the log and retries a bounded number of times, then reports a conflict. The
//! result carries the log position of the last event, the client's consistency token.
//!
//! Cross-aggregate rules that a log alone cannot see (one user per email address) are kept with
//! claim aggregates (see `idstream_domain::email`), so they hold across service replicas.
//!
//! **Invariant:** nothing here writes to a read model; the log is the only thing written.
//! Read models are consulted for existence checks and for answering retried commands.

mod access_admin;
mod access_queries;
#[cfg(test)]
mod access_tests;
mod admin_rules;
mod audit;
pub mod chain_status;
mod core;
mod engine;
mod error;
#[cfg(test)]
mod escalation_tests;
pub mod identity;
mod import;
mod memberships;
pub mod oidc;
mod operations;
mod people;
pub mod policy;
#[cfg(test)]
mod preview_tests;
pub mod replay;
pub mod scim;
mod tenants;
#[cfg(test)]
mod tests;
pub mod upstream;
mod users;
mod views;

pub use access_admin::{AccessAdmin, NewEntityRequest, RoleRequest, TenantDifference};
pub use access_queries::{AccessQueries, CatalogueEntry, CheckQuery};
pub use audit::{Applications, Audit};
pub use engine::{CommandContext, DryRun, Outcome};
pub use error::AppError;
pub use identity::{Authenticated, Client, Credential, Identity, IdentityConfig, IdentityServices};
/// The languages mails and pages are written in.
pub use idstream_mailer::templates::Lang;
pub use import::{ImportRow, RowPlan};
pub use memberships::Memberships;
pub use operations::{Operations, ReadModelState, ReadModelsReport, Readiness};
pub use people::{
    BulkOperation, BulkOutcome, BulkResult, MAX_BULK_OPERATIONS, People, PeoplePage, PeopleQuery,
    PersonRow, Suggestion, TenantAccess, search_page,
};
pub use policy::{Caller, Principal};
pub use tenants::Tenants;
pub use users::{NewUserRequest, SuspendRequest, Users};

use std::sync::Arc;
use std::time::Duration;

use idstream_access::{AccessProjection, FactCache};
use idstream_directory::DirectoryProjection;
use idstream_directory::search::PeopleIndex;
use idstream_eventlog::SharedLog;
use idstream_identity::IdentityProjection;
use idstream_projection_runtime::{PersonalSeal, Projection, ReadModels};
use time::OffsetDateTime;

use crate::core::Core;

/// What read models share with the services that read them: the in-memory structures kept
/// beside their trees (the access facts cache, the directory's search index) and the seal of
/// personal data at rest (see `idstream_projection_runtime::personal`). The same `Caches` goes to
/// [`projections`] and to [`App::new`]; offline rebuilds may pass fresh ones.
#[derive(Clone)]
pub struct Caches {
    pub access: Arc<FactCache>,
    pub people: Arc<PeopleIndex>,
    pub seal: Arc<dyn PersonalSeal>,
}

impl Caches {
    /// Empty caches, sealing personal data with `seal`.
    pub fn new(seal: Arc<dyn PersonalSeal>) -> Caches {
        Caches {
            access: Arc::default(),
            people: Arc::default(),
            seal,
        }
    }

    /// Empty caches sealing with the personal-data keys of `services`' key store (for tests,
    /// benchmarks and tools that run without the decrypting log; the service shares the log's
    /// [`idstream_keys::PersonalKeys`] instead, see [`idstream_keys::ReadModelSeal::new`]).
    pub fn local(services: &IdentityServices) -> Caches {
        let keys = Arc::new(idstream_keys::PersonalKeys::new(services.keys.store()));
        Caches::new(idstream_keys::ReadModelSeal::shared(
            keys,
            services.keys.vault(),
        ))
    }
}

/// Every read model the service maintains, each keeping its part of `caches` up to date.
pub fn projections(caches: Caches) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(DirectoryProjection::new(caches.people, caches.seal.clone())),
        Arc::new(AccessProjection::new(caches.access)),
        Arc::new(IdentityProjection::new(caches.seal)),
        Arc::new(idstream_audit::AuditProjection),
    ]
}

/// The same read models for offline rebuilds (`idstream replay`, benchmarks): the same folds and
/// digests, without the in-memory structures that only serve queries (the directory's search
/// index, which the serving process loads from the rebuilt tree when it opens it).
pub fn offline_projections(seal: Arc<dyn PersonalSeal>) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(DirectoryProjection::without_search(seal.clone())),
        Arc::new(AccessProjection::new(Arc::default())),
        Arc::new(IdentityProjection::new(seal)),
        Arc::new(idstream_audit::AuditProjection),
    ]
}

/// The read models that commands, sign-in and every query except the audit trail's read. Their
/// waits (read-your-writes after a command, a client's consistency token) cover only these, so a
/// stuck audit read model (an event it cannot apply) does not stop the rest of the service; the
/// audit trail's own queries wait for it as well.
pub const SERVING_READ_MODELS: [&str; 3] = [
    idstream_directory::NAME,
    idstream_access::NAME,
    idstream_identity::NAME,
];

/// Where the application gets the time from; tests can pin it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Declares a service: a handle on the shared core (cheap to clone) that reaches the core's
/// helpers through `Deref`.
macro_rules! service {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(pub(crate) std::sync::Arc<crate::core::Core>);

        impl std::ops::Deref for $name {
            type Target = crate::core::Core;

            fn deref(&self) -> &crate::core::Core {
                &self.0
            }
        }
    };
}
pub(crate) use service;

/// The application: every service, over one shared core. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub tenants: Tenants,
    pub users: Users,
    pub memberships: Memberships,
    pub access_admin: AccessAdmin,
    pub access: AccessQueries,
    pub identity: Identity,
    pub audit: Audit,
    pub operations: Operations,
    pub people: People,
    pub scim: scim::Scim,
    pub oidc: oidc::Oidc,
    pub upstream: upstream::Upstream,
}

impl App {
    /// `caches` must be those given to the projections among `read_models` (see
    /// [`projections`]), so that every change reaches what the services read. Point-in-time
    /// replays are kept in `replays` (see [`replay::Replays`]).
    pub fn new(
        log: SharedLog,
        read_models: ReadModels,
        caches: Caches,
        clock: Arc<dyn Clock>,
        consistency_timeout: Duration,
        identity: IdentityServices,
        replays: replay::Replays,
    ) -> App {
        let identity = identity::IdentityParts::new(identity);
        let views = views::Views::new(read_models.clone(), caches);
        let core = Arc::new(Core {
            log,
            read_models,
            views,
            cache: engine::StateCache::new(100_000),
            known: core::KnownIds::default(),
            identity,
            replays: Arc::new(replays),
            clock,
            consistency_timeout,
        });
        App {
            tenants: Tenants(core.clone()),
            users: Users(core.clone()),
            memberships: Memberships(core.clone()),
            access_admin: AccessAdmin(core.clone()),
            access: AccessQueries(core.clone()),
            identity: Identity(core.clone()),
            audit: Audit(core.clone()),
            operations: Operations(core.clone()),
            people: People(core.clone()),
            scim: scim::Scim(core.clone()),
            oidc: oidc::Oidc(core.clone()),
            upstream: upstream::Upstream(core),
        }
    }
}

#[cfg(test)]
impl App {
    /// The shared core, for tests that look behind the services.
    pub(crate) fn core(&self) -> &Core {
        &self.operations
    }
}
