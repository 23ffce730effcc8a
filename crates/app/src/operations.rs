//! Operations: readiness, the read models' positions and digests, their online rebuild, and the
//! upkeep of the signing keys.

use std::collections::BTreeMap;
use std::time::Duration;

use idstream_eventlog::{Position, SharedLog};

use crate::core::internal;
use crate::policy::Caller;
use crate::{AppError, service};

service!(
    /// Operating the service: readiness, read models, key upkeep.
    Operations
);

/// Whether the service is ready, and where its read models and the log are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Every read model has applied the log as it was at start, and the directory's search
    /// index is loaded.
    pub ready: bool,
    /// The directory's search index is loaded (it loads in the background at start; until then
    /// directory searches wait and may answer `not_caught_up`).
    pub search_index_loaded: bool,
    /// The log's last position, if the log answered in time.
    pub log_position: Option<Position>,
    /// The position each read model has applied.
    pub read_models: BTreeMap<String, Position>,
}

/// A read model's position and the digest of its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModelState {
    pub position: Position,
    /// SHA-256 over the read model's sorted keys and values, its checkpoint included.
    pub digest: String,
}

/// Every read model's state, and the log backend they read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModelsReport {
    pub backend: String,
    pub read_models: BTreeMap<String, ReadModelState>,
}

impl Operations {
    /// The log commands append to (for the tasks the service runs beside the app, such as the
    /// tamper-evidence checkpoints).
    pub fn log(&self) -> &SharedLog {
        &self.log
    }

    /// Honours a client's consistency token for a query of the serving read models: waits
    /// (bounded) until they have applied `min` (`not_caught_up` after the consistency timeout;
    /// a token beyond the end of the log is refused at once). The audit trail's queries use
    /// [`crate::Audit::wait_for_token`].
    ///
    /// Who: anyone (it reveals nothing but how far the read models are).
    pub async fn wait_for_token(&self, min: Position) -> Result<(), AppError> {
        self.wait_for_token_of_serving_models(min).await
    }

    /// The position each read model has applied.
    ///
    /// Who: anyone (it is what `/readyz` and `/metrics` show).
    pub fn positions(&self, caller: &Caller) -> BTreeMap<String, Position> {
        self.open_to_anyone(caller);
        self.read_models
            .names()
            .into_iter()
            .map(|name| (name.to_owned(), self.read_models.position(name)))
            .collect()
    }

    /// The log's last position, or `None` when the log does not answer within `within`.
    ///
    /// Who: anyone.
    pub async fn log_position(&self, caller: &Caller, within: Duration) -> Option<Position> {
        self.open_to_anyone(caller);
        tokio::time::timeout(within, self.log.last_position())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Ready once every read model has applied `startup_target` (the log's end at start) and
    /// the directory's search index is loaded. While the log is unreachable the service stays
    /// ready: queries keep answering from the read models.
    ///
    /// Who: anyone.
    pub async fn readiness(&self, caller: &Caller, startup_target: Position) -> Readiness {
        let read_models = self.positions(caller);
        let log_position = self.log_position(caller, Duration::from_secs(2)).await;
        let search_index_loaded = self.directory().people().is_loaded();
        Readiness {
            ready: self.read_models.min_position() >= startup_target && search_index_loaded,
            search_index_loaded,
            log_position,
            read_models,
        }
    }

    /// Whether this replica can take commands now: it is ready (see [`Operations::readiness`])
    /// and the log says within `within` that it could store an append
    /// ([`idstream_eventlog::EventLog::write_check`]; with JetStream: the client is connected
    /// and the stream's leader sees a quorum of current replicas). Returns the log's last
    /// position.
    ///
    /// Unlike readiness, this fails while the log is unreachable: it is the probe for a load
    /// balancer that should send commands only to replicas that can append them.
    ///
    /// Who: anyone.
    pub async fn write_readiness(
        &self,
        caller: &Caller,
        startup_target: Position,
        within: Duration,
    ) -> Result<Position, AppError> {
        self.open_to_anyone(caller);
        let current = self.read_models.min_position();
        if current < startup_target {
            return Err(AppError::Stale {
                wanted: startup_target,
                current,
            });
        }
        if !self.directory().people().is_loaded() {
            return Err(AppError::SearchIndexLoading);
        }
        match tokio::time::timeout(within, self.log.write_check()).await {
            Ok(Ok(position)) => Ok(position),
            Ok(Err(e)) => Err(AppError::Unavailable(e.to_string())),
            Err(_) => Err(AppError::Unavailable(format!(
                "the log did not answer within {} ms",
                within.as_millis()
            ))),
        }
    }

    /// Every read model's position and digest.
    ///
    /// Who: platform administrators.
    pub async fn read_models(&self, caller: &Caller) -> Result<ReadModelsReport, AppError> {
        self.platform_admin(caller).await?;
        self.report().await
    }

    async fn report(&self) -> Result<ReadModelsReport, AppError> {
        let mut read_models = BTreeMap::new();
        for name in self.read_models.names() {
            let (position, digest) = self.read_models.digest(name).await.map_err(internal)?;
            read_models.insert(name.to_owned(), ReadModelState { position, digest });
        }
        Ok(ReadModelsReport {
            backend: self.log.backend().to_owned(),
            read_models,
        })
    }

    /// Rebuilds every read model from position 0 while the service keeps running: each is built
    /// beside the serving one, which answers every query meanwhile, and replaces it once it has
    /// caught up (see [`ReadModels::rebuild`](idstream_projection_runtime::ReadModels::rebuild)),
    /// so no query sees a partial read model. Answers once all have switched.
    ///
    /// Who: platform administrators.
    pub async fn rebuild(&self, caller: &Caller) -> Result<ReadModelsReport, AppError> {
        self.platform_admin(caller).await?;
        let end = self
            .log
            .last_position()
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?;
        let rebuilds = self
            .read_models
            .names()
            .into_iter()
            .map(|name| self.read_models.rebuild(name));
        for rebuilt in futures::future::join_all(rebuilds).await {
            rebuilt.map_err(internal)?;
        }
        self.wait_for_every_model(end).await?;
        self.report().await
    }

    /// Rotates the access-token signing keys when due and prunes retired ones.
    ///
    /// Who: the operator (the service's own upkeep task).
    pub async fn maintain_keys(&self, caller: &Caller) -> Result<(), AppError> {
        self.platform_admin(caller).await?;
        self.maintain_signing_keys().await
    }
}
