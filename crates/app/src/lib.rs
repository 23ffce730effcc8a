//! Application services: the write path of idstream.
//!
//! A service loads an aggregate's state and the position of its last event, calls the pure
//! `decide`, and appends the events with that position as the expected sequence. On a conflict
//! it reloads from the log and retries a bounded number of times, then reports a conflict. The
//! result carries the log position of the last event, the client's consistency token.
//!
//! Cross-aggregate rules that a log alone cannot see (one user per email address) are kept with
//! claim aggregates (see `idstream_domain::email`), so they hold across service replicas.
//!
//! **Invariant:** nothing here writes to a read model; the log is the only thing written.
//! Read models are consulted for existence checks and for answering retried commands.

mod access;
mod audit;
mod authz;
mod engine;
mod error;
pub mod identity;
pub mod replay;
mod services;
#[cfg(test)]
mod tests;

pub use access::{NewEntityRequest, RoleRequest};
pub use authz::CheckQuery;
pub use engine::{CommandContext, Outcome};
pub use error::AppError;
pub use identity::{Authenticated, Client, Credential, IdentityConfig, IdentityServices};
pub use services::{NewUserRequest, SuspendRequest};

use std::sync::Arc;
use std::time::Duration;

use idstream_access::AccessProjection;
use idstream_access::{Access, FactCache};
use idstream_directory::Directory;
use idstream_directory::DirectoryProjection;
use idstream_eventlog::{Position, SharedLog};
use idstream_identity::{Identity, IdentityProjection};
use idstream_projection_runtime::{Projection, ReadModels};
use time::OffsetDateTime;

/// Every read model the service maintains, the access projection sharing `access_cache` with
/// [`App::new`]. Offline rebuilds may pass a fresh cache.
pub fn projections(access_cache: Arc<FactCache>) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(DirectoryProjection),
        Arc::new(AccessProjection::new(access_cache)),
        Arc::new(IdentityProjection),
        Arc::new(idstream_audit::AuditProjection),
    ]
}

/// The read models that commands, sign-in and every query except the audit trail's read. Their
/// waits (read-your-writes after a command, a client's consistency token) cover only these, so a
/// stuck audit read model (an event it cannot apply) does not stop the rest of the service; the
/// audit trail's own queries wait for it as well ([`App::wait_for_audit_token`]).
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

/// The application: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    log: SharedLog,
    read_models: ReadModels,
    directory: Directory,
    access: Access,
    cache: engine::StateCache,
    /// Tenants and users seen to exist (see [`services::KnownIds`]).
    known: services::KnownIds,
    identity: identity::IdentityParts,
    clock: Arc<dyn Clock>,
    /// How long a query or an existence check waits for read models to reach a position.
    consistency_timeout: Duration,
}

impl App {
    /// `access_cache` must be the cache given to the access projection among `read_models`
    /// (see [`projections`]), so that every change drops the facts it touched.
    pub fn new(
        log: SharedLog,
        read_models: ReadModels,
        access_cache: Arc<FactCache>,
        clock: Arc<dyn Clock>,
        consistency_timeout: Duration,
        identity: IdentityServices,
    ) -> App {
        let directory = Directory::new(read_models.tree("directory"));
        let identity = identity::IdentityParts::new(
            Identity::new(read_models.tree(idstream_identity::NAME)),
            identity,
        );
        let access = Access::new(read_models.tree(idstream_access::NAME), access_cache);
        App {
            inner: Arc::new(Inner {
                log,
                read_models,
                directory,
                access,
                cache: engine::StateCache::new(100_000),
                known: services::KnownIds::default(),
                identity,
                clock,
                consistency_timeout,
            }),
        }
    }

    pub fn log(&self) -> &SharedLog {
        &self.inner.log
    }

    pub fn read_models(&self) -> &ReadModels {
        &self.inner.read_models
    }

    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    pub fn consistency_timeout(&self) -> Duration {
        self.inner.consistency_timeout
    }

    /// Waits until the serving read models ([`SERVING_READ_MODELS`]) have applied everything the
    /// log holds now, so that a lookup that follows sees what any replica wrote before this call.
    pub async fn catch_up(&self) -> Result<(), AppError> {
        let end = self
            .inner
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
    pub async fn wait_for_token(&self, min: Position) -> Result<(), AppError> {
        self.honour_token(min, &SERVING_READ_MODELS).await
    }

    /// [`App::wait_for_token`] for a query of the audit trail: the audit read model too.
    pub async fn wait_for_audit_token(&self, min: Position) -> Result<(), AppError> {
        let mut models = SERVING_READ_MODELS.to_vec();
        models.push(idstream_audit::NAME);
        self.honour_token(min, &models).await
    }

    async fn honour_token(&self, min: Position, models: &[&str]) -> Result<(), AppError> {
        if self.inner.read_models.min_position_of(models) >= min {
            return Ok(());
        }
        if let Ok(end) = self.inner.log.last_position().await
            && min > end
        {
            return Err(AppError::PositionBeyondLog { wanted: min, end });
        }
        self.wait_for_models(min, models).await
    }

    /// Waits until the serving read models ([`SERVING_READ_MODELS`]) have applied `min`: what a
    /// command does before it answers when its answer must already hold for the next request.
    pub async fn wait_for(&self, min: Position) -> Result<(), AppError> {
        self.wait_for_models(min, &SERVING_READ_MODELS).await
    }

    /// Waits until every read model, the audit trail's included, has applied `min`.
    pub async fn wait_for_every_model(&self, min: Position) -> Result<(), AppError> {
        let names = self.inner.read_models.names();
        self.wait_for_models(min, &names).await
    }

    async fn wait_for_models(&self, min: Position, models: &[&str]) -> Result<(), AppError> {
        self.inner
            .read_models
            .wait_for_some(models, min, self.inner.consistency_timeout)
            .await
            .map_err(|stale| AppError::Stale {
                wanted: min,
                current: stale.current,
            })
    }
}
