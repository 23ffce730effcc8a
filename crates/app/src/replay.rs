//! Point-in-time replay (F-AU-2) and the access review (F-AU-6).
//!
//! A replay rebuilds the directory, access and identity read models from the log up to one position into
//! a store of its own (`<replay dir>/<position>`), never touching the live one, and answers
//! explanations, "who could read this record" and access reviews against it. A moment in time
//! is turned into the position of the last event that happened at or before it. Built replays
//! are kept (the most recent [`KEEP`]) and reused.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use idstream_access::{Access, AccessProjection, AccessReview, Explanation, FactCache};
use idstream_directory::{Directory, DirectoryProjection};
use idstream_domain::access::{CheckRequest, Permission, RecordId, Subject};
use idstream_domain::{TenantId, UserId};
use idstream_eventlog::{Position, SharedLog};
use idstream_projection_runtime::{PersonalSeal, Projection, open_rebuilt, rebuild_offline_until};
use serde::Serialize;
use time::OffsetDateTime;

use crate::AppError;
use crate::core::internal;

/// Replay stores kept on disk and open.
pub const KEEP: usize = 4;

/// The file in a replay store that says it is complete: [`Marker`], as JSON.
const COMPLETE: &str = "complete.json";

/// What a complete replay store records about itself.
#[derive(serde::Deserialize, Serialize)]
struct Marker {
    digests: BTreeMap<String, String>,
    /// The last erasure in the log when it was built: a later erasure makes it stale (it may
    /// hold the erased user's personal data), and it is built again.
    erasures_through: Position,
}

/// A past moment: a log position, or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Position(Position),
    Time(OffsetDateTime),
}

/// Which moment a replay shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayInfo {
    /// The last event applied.
    pub position: Position,
    /// When that event happened (absent for position 0, the empty log).
    #[serde(with = "time::serde::rfc3339::option")]
    pub time: Option<OffsetDateTime>,
    /// Digest of each replayed read model, comparable with the live digests at that position.
    pub digests: BTreeMap<String, String>,
    /// The moment the answer's checks were decided at: the time asked for, or the replayed
    /// event's time for a position (temporary access that ended before it does not count).
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
}

/// The read models as they were at one position.
pub struct Replay {
    pub info: ReplayInfo,
    erasures_through: Position,
    pub access: Access,
    pub directory: Directory,
    pub identity: idstream_identity::Identity,
    _db: sled::Db,
}

impl Replay {
    /// The moment checks are decided at: when the last replayed event happened (timed
    /// suspensions lapse as they did then).
    pub fn now(&self) -> OffsetDateTime {
        self.info.time.unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// The moment checks are decided at for `as_of`: the time itself when a time was asked
    /// for (so temporary access that ended between the last event and that time does not
    /// count), the replayed event's time for a position.
    pub fn moment(&self, as_of: AsOf) -> OffsetDateTime {
        match as_of {
            AsOf::Time(at) => at.max(self.now()),
            AsOf::Position(_) => self.now(),
        }
    }

    /// This replay's description for answers decided at `at`.
    pub fn info_at(&self, at: OffsetDateTime) -> ReplayInfo {
        ReplayInfo {
            decided_at: Some(at),
            ..self.info.clone()
        }
    }
}

/// Builds and keeps replays.
pub struct Replays {
    dir: PathBuf,
    log: SharedLog,
    seal: Arc<dyn PersonalSeal>,
    open: tokio::sync::Mutex<Vec<Arc<Replay>>>,
}

/// The read models a replay rebuilds (personal data sealed by `seal`, as in the live ones).
pub fn replay_projections(seal: Arc<dyn PersonalSeal>) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(DirectoryProjection::without_search(seal.clone())),
        Arc::new(AccessProjection::new(Arc::default())),
        // Applications, consents and upstream providers as they were (OpenID Connect).
        Arc::new(idstream_identity::IdentityProjection::new(seal)),
    ]
}

impl Replays {
    /// Replays under `dir` (created when needed) of `log` (the log as the service reads it,
    /// personal data decrypted where it still can be), storing personal data sealed by `seal`.
    ///
    /// Replays kept from before personal data was sealed in read models (their stores lack the
    /// marker) are deleted: they may hold personal data in the clear.
    pub fn new(dir: impl Into<PathBuf>, log: SharedLog, seal: Arc<dyn PersonalSeal>) -> Replays {
        let dir = dir.into();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let unsealed = path.is_dir()
                    && !path
                        .join(idstream_projection_runtime::SEALED_MARKER)
                        .exists();
                if unsealed && let Err(error) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(path = %path.display(), %error, "could not delete a replay written before personal data was sealed");
                }
            }
        }
        Replays {
            dir,
            log,
            seal,
            open: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// The position `as_of` stands for: a position is capped at the log's end; a time gives the
    /// last event that happened at or before it (events are found by binary search over
    /// positions, which assumes event times grow with positions — true up to the clock skew
    /// between replicas).
    pub async fn resolve(&self, as_of: AsOf) -> Result<Position, AppError> {
        let last = self.log.last_position().await.map_err(unavailable)?;
        match as_of {
            AsOf::Position(position) => Ok(position.min(last)),
            AsOf::Time(time) => {
                let (mut low, mut high) = (0, last);
                while low < high {
                    let middle = low + (high - low).div_ceil(2);
                    let found = self
                        .log
                        .read_after(middle - 1, 1)
                        .await
                        .map_err(unavailable)?;
                    match found.first() {
                        Some(event) if event.envelope.occurred_at <= time => {
                            low = event.position.min(high);
                        }
                        _ => high = middle - 1,
                    }
                }
                Ok(low)
            }
        }
    }

    /// The replay at `as_of`, built now if it was not before. `progress(done, target)` reports
    /// the build. `erasures_through` is the position of the last erasure known (see
    /// `Directory::last_erasure`): replays built before it are discarded and built again, so no
    /// replay keeps personal data that an erasure shredded.
    pub async fn at(
        &self,
        as_of: AsOf,
        erasures_through: Position,
        progress: impl FnMut(Position, Position),
    ) -> Result<Arc<Replay>, AppError> {
        let position = self.resolve(as_of).await?;
        let mut open = self.open.lock().await;
        let (stale, fresh): (Vec<_>, Vec<_>) = open
            .drain(..)
            .partition(|r| r.erasures_through < erasures_through);
        *open = fresh;
        for replay in stale {
            let _ = std::fs::remove_dir_all(self.dir.join(replay.info.position.to_string()));
        }
        if let Some(replay) = open.iter().find(|r| r.info.position == position) {
            return Ok(replay.clone());
        }
        let dir = self.dir.join(position.to_string());
        let marker = dir.join(COMPLETE);
        let digests = match std::fs::read(&marker)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Marker>(&bytes).ok())
            .filter(|m| m.erasures_through >= erasures_through)
        {
            Some(marker) => marker.digests,
            None => {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(internal)?;
                }
                std::fs::create_dir_all(&dir).map_err(internal)?;
                let digests = rebuild_offline_until(
                    &dir,
                    self.log.clone(),
                    replay_projections(self.seal.clone()),
                    Some(position),
                    progress,
                )
                .await
                .map_err(internal)?;
                let json = serde_json::to_vec(&Marker {
                    digests: digests.clone(),
                    erasures_through,
                })
                .map_err(internal)?;
                std::fs::write(&marker, json).map_err(internal)?;
                digests
            }
        };
        let db = open_rebuilt(&dir).await.map_err(internal)?;
        let time = if position == 0 {
            None
        } else {
            let events = self
                .log
                .read_after(position - 1, 1)
                .await
                .map_err(unavailable)?;
            events.first().map(|e| e.envelope.occurred_at)
        };
        let access_tree = db.open_tree(idstream_access::NAME).map_err(internal)?;
        let directory_tree = db.open_tree(idstream_directory::NAME).map_err(internal)?;
        let identity_tree = db.open_tree(idstream_identity::NAME).map_err(internal)?;
        let replay = Arc::new(Replay {
            erasures_through,
            info: ReplayInfo {
                position,
                time,
                digests,
                decided_at: None,
            },
            access: Access::new(access_tree, Arc::new(FactCache::default())),
            directory: Directory::new(directory_tree, Default::default(), self.seal.clone()),
            identity: idstream_identity::Identity::new(identity_tree, self.seal.clone()),
            _db: db,
        });
        open.push(replay.clone());
        while open.len() > KEEP {
            let evicted = open.remove(0);
            // Files of a store still open elsewhere stay readable until it is closed.
            let _ = std::fs::remove_dir_all(self.dir.join(evicted.info.position.to_string()));
        }
        Ok(replay)
    }
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    AppError::Unavailable(e.to_string())
}

/// One member who could do something, and why.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainedHolder {
    pub user: UserId,
    #[serde(flatten)]
    pub explanation: Explanation,
}

/// A review with the members' addresses as the directory had them (empty once erased).
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub review: AccessReview,
    pub emails: BTreeMap<UserId, String>,
    /// For a page of the review: whether people come before it.
    pub earlier: bool,
    /// For a page of the review: whether people come after it.
    pub later: bool,
}

/// Which people of a tenant an access review shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewWindow {
    /// Everyone who holds anything (all at once: for a large tenant, read it by page).
    Everyone,
    /// Up to `limit` people from a place in user-id order.
    Page {
        from: idstream_access::ReviewFrom,
        limit: usize,
    },
    /// One person (no one if they hold nothing).
    Person(UserId),
}

/// Everyone in `tenant` who could use `permission` on `record` in `replay` at `at`, with why.
pub fn holders(
    replay: &Replay,
    at: OffsetDateTime,
    tenant: &TenantId,
    permission: &Permission,
    record: &RecordId,
) -> Result<Vec<ExplainedHolder>, AppError> {
    let review = replay.access.access_review(tenant, at).map_err(internal)?;
    let mut holders = Vec::new();
    for member in &review.members {
        let explanation = replay
            .access
            .explain(CheckRequest {
                tenant,
                subject: Subject::User(member.user),
                permission,
                record: Some(record),
                restriction: None,
                now: at,
            })
            .map_err(internal)?;
        if explanation.decision.allowed {
            holders.push(ExplainedHolder {
                user: member.user,
                explanation,
            });
        }
    }
    Ok(holders)
}

/// The access review of `tenant` in `replay` at `at`, with the addresses as they were then.
pub fn review_of(
    replay: &Replay,
    at: OffsetDateTime,
    tenant: &TenantId,
) -> Result<Review, AppError> {
    let review = replay.access.access_review(tenant, at).map_err(internal)?;
    let emails = emails(&replay.directory, &review)?;
    Ok(Review {
        review,
        emails,
        earlier: false,
        later: false,
    })
}

/// The members' addresses in `directory`.
pub fn emails(
    directory: &Directory,
    review: &AccessReview,
) -> Result<BTreeMap<UserId, String>, AppError> {
    let mut emails = BTreeMap::new();
    for member in &review.members {
        if let Some(user) = directory.user(&member.user).map_err(internal)? {
            emails.insert(member.user, user.email);
        }
    }
    Ok(emails)
}

/// The review's members as JSON, each with their address as the directory had it.
pub fn review_members_json(review: &Review) -> serde_json::Value {
    let members = review
        .review
        .members
        .iter()
        .map(|member| {
            let mut value = serde_json::to_value(member).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert(
                    "email".into(),
                    review.emails.get(&member.user).cloned().into(),
                );
            }
            value
        })
        .collect();
    serde_json::Value::Array(members)
}

/// The first line of the review's CSV.
pub const REVIEW_CSV_HEADER: &str = "tenant,user,email,status,kind,name,entity,record,access,granted_position,granted_at,granted_by\n";

/// The review as CSV: one row per holding, with the event that established it.
pub fn review_csv(review: &Review) -> String {
    let mut out = String::from(REVIEW_CSV_HEADER);
    out.push_str(&review_csv_rows(review));
    out
}

/// The rows of [`review_csv`] without its header (for a review read page by page).
pub fn review_csv_rows(review: &Review) -> String {
    let mut out = String::new();
    let tenant = review.review.tenant.as_str();
    for member in &review.review.members {
        let user = member.user.to_string();
        let email = review.emails.get(&member.user).cloned().unwrap_or_default();
        let status = member
            .status
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut row = |kind: &str,
                       name: &str,
                       entity: &str,
                       record: &str,
                       access: &str,
                       source: Option<&idstream_access::Source>| {
            let (position, at, by) =
                source.map_or((String::new(), String::new(), String::new()), |s| {
                    (
                        s.position.to_string(),
                        s.occurred_at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default(),
                        format!("{}:{}", actor_kind(s.actor.kind), s.actor.id),
                    )
                });
            let fields = [
                tenant, &user, &email, &status, kind, name, entity, record, access, &position, &at,
                &by,
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        };
        for role in &member.roles {
            row("role", &role.name, "", "", "", role.source.as_ref());
        }
        for permission in &member.custom_permissions {
            row(
                "custom_permission",
                &permission.name,
                "",
                "",
                "",
                permission.source.as_ref(),
            );
        }
        for holding in &member.records {
            if let Some((access, source)) = &holding.grant {
                let access = serde_json::to_value(access)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                row(
                    "record_grant",
                    "",
                    &holding.entity,
                    &holding.record,
                    &access,
                    source.as_ref(),
                );
            }
            for role in &holding.local_roles {
                row(
                    "local_role",
                    &role.name,
                    &holding.entity,
                    &holding.record,
                    "",
                    role.source.as_ref(),
                );
            }
            if let Some(source) = &holding.owner {
                row(
                    "record_owner",
                    "",
                    &holding.entity,
                    &holding.record,
                    "",
                    source.as_ref(),
                );
            }
        }
    }
    out
}

fn actor_kind(kind: idstream_domain::ActorKind) -> &'static str {
    match kind {
        idstream_domain::ActorKind::User => "user",
        idstream_domain::ActorKind::ApiKey => "api_key",
        idstream_domain::ActorKind::System => "system",
    }
}

/// RFC 4180 quoting, and a leading `'` before `=`, `+`, `-`, `@` so a spreadsheet never runs a
/// cell as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }
}
