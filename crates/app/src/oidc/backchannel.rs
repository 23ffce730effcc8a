//! OpenID Connect Back-Channel Logout 1.0: when an application's session ends, the application
//! is told so over a direct HTTP request from the service, so that it can end its own session
//! of the person even though no browser passes by.
//!
//! An application (a client) opts in with a `backchannel_logout_uri`. Whatever ends one of its
//! sessions — RP-initiated logout, signing out of the hosted pages (which ends the application
//! sessions issued through the browser's session), the person ending it from their account, an
//! administrator ending a person's sessions, a password change or reset, a reused refresh token
//! or authorization code, the application's own revocation — appends a `SessionRevoked` to the
//! session's stream. [`BackchannelLogout`] follows the log, finds in the identity read model
//! which application each ended session belonged to (`SessionView::client`) and posts a logout
//! token there (`application/x-www-form-urlencoded`, `logout_token=<JWT>`): EdDSA, signed by the
//! key ring that signs the ID tokens, header type `logout+jwt`, with the tenant's issuer, the
//! client as audience, the person as `sub` and the session as `sid` (what its ID tokens carry),
//! the back-channel logout event and no `nonce` (see `idstream_auth::LogoutClaims`).
//!
//! Delivery is driven by the log, not by the request that ended the session, so that no ending is
//! missed, however it came about: the follower keeps its place in a checkpoint file, written only
//! once the logouts up to it were delivered or given up on, so after a crash or a restart it
//! delivers again what it may not have delivered (at least once; a token's `jti` lets an
//! application notice a repeat, and a logout is idempotent anyway). A failed delivery (no
//! connection, a timeout, a 5xx or 429 answer) is retried a few times with a growing pause; an
//! application that answers with another status (a 4xx) has refused the token and gets no repeat.
//! Endpoints are served concurrently, each one's logouts in log order, so an application that is
//! down delays only the batch it is in, never the read models, which the follower only reads.
//!
//! Each replica of the service runs its own follower with its own checkpoint, so with several
//! replicas an application gets each logout once per replica. The service has no notion of one
//! replica acting for all (its mail is sent by the replica that served the request, which a
//! follower of the log does not know), and a repeated logout token changes nothing for the
//! application.
//!
//! Failures are logged with the client, the session and the endpoint's host, never with the
//! token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use idstream_auth::LogoutClaims;
use idstream_domain::envelope::AggregateType;
use idstream_eventlog::{LogError, Position, RecordedEvent};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::Oidc;
use crate::AppError;
use crate::policy::Caller;

/// The layout of the checkpoint file.
const FORMAT: u32 = 1;

/// How long the follower waits for something new before it looks again (a new event wakes it
/// at once).
const IDLE: Duration = Duration::from_secs(5);

/// The checkpoint is written at least this often while events without logouts go by (after a
/// batch with logouts, at once).
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// How deliveries are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts per logout token, the first included.
    pub attempts: u32,
    /// The pause before the second attempt; each later one waits twice as long as the one before.
    pub first_pause: Duration,
    /// The longest one request may take, connecting included.
    pub timeout: Duration,
    /// How many endpoints are posted to at once.
    pub endpoints_at_once: usize,
    /// Events read from the log at a time.
    pub batch: usize,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            attempts: 4,
            first_pause: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            endpoints_at_once: 16,
            batch: 256,
        }
    }
}

impl DeliveryPolicy {
    /// The pause after failed attempt number `attempt` (1-based).
    fn pause_after(&self, attempt: u32) -> Duration {
        self.first_pause
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
    }
}

/// The checkpoint file: the position up to which every logout was delivered or given up on, in
/// the log named by `log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    format: u32,
    log: String,
    position: Position,
}

/// Where the follower starts: its checkpoint, unless there is none that fits this log. Then it
/// starts at the log's end (`last`): a first start owes no application the logouts of the past,
/// and a log that was replaced or cut back (a restore) has positions the checkpoint does not
/// describe. The second value says why the checkpoint was not used.
fn start_at(saved: Option<&Saved>, log: &str, last: Position) -> (Position, Option<&'static str>) {
    match saved {
        None => (last, Some("no checkpoint yet")),
        Some(saved) if saved.log != log => (last, Some("the checkpoint is of another log")),
        Some(saved) if saved.position > last => {
            (last, Some("the checkpoint is beyond the log's end"))
        }
        Some(saved) => (saved.position, None),
    }
}

/// One logout token to post.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Notice {
    /// The client's `backchannel_logout_uri`.
    uri: String,
    /// The tenant's issuer (`iss`).
    issuer: String,
    /// The client id (`aud`).
    client: String,
    /// The person (`sub`).
    user: String,
    /// The application session that ended (`sid`).
    session: String,
}

/// The notices grouped by endpoint, each group in the order given (the log's), the groups in the
/// order their endpoints first appear.
fn by_endpoint(notices: Vec<Notice>) -> Vec<Vec<Notice>> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<Notice>> = BTreeMap::new();
    for notice in notices {
        if !groups.contains_key(&notice.uri) {
            order.push(notice.uri.clone());
        }
        groups.entry(notice.uri.clone()).or_default().push(notice);
    }
    order
        .into_iter()
        .filter_map(|uri| groups.remove(&uri))
        .collect()
}

/// What an attempt's outcome means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Delivered,
    /// The endpoint could not take it now: try again later.
    Retry,
    /// The application refused the token: sending it again would change nothing.
    Refused,
}

/// The verdict on an HTTP answer's status (Back-Channel Logout §2.8: 200 when the logout
/// succeeded, 400 when it did not; any 2xx counts as success here).
fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Refused,
    }
}

/// The host (and port) of `uri`, for logs: the path and query may hold what only the application
/// should see.
fn endpoint_host(uri: &str) -> String {
    url::Url::parse(uri)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| {
                u.port()
                    .map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))
            })
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// A request's failure with its causes, without its URL.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("the event log: {0}")]
    Log(#[from] LogError),
    #[error("the identity read model: {0}")]
    Identity(#[from] idstream_identity::IdentityError),
    #[error("the checkpoint file {}: {source}", path.display())]
    Checkpoint {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The follower that posts logout tokens (see the module's documentation). Made by
/// [`Oidc::backchannel_logout`]; [`BackchannelLogout::run`] runs it until it is dropped.
pub struct BackchannelLogout {
    oidc: Oidc,
    checkpoint: PathBuf,
    http: reqwest::Client,
    policy: DeliveryPolicy,
    /// Every logout up to here was delivered or given up on; `None` until the log has answered.
    position: Option<Position>,
    /// The position in the checkpoint file.
    saved: Option<Position>,
    saved_at: tokio::time::Instant,
}

impl Oidc {
    /// The back-channel logout follower, keeping its place in the file `checkpoint`, with the
    /// default [`DeliveryPolicy`]. It finds where to start before it answers (when the log
    /// answers), so that a service that starts it before serving misses no session that ends
    /// afterwards.
    ///
    /// Who: the operator (the service's own task).
    pub async fn backchannel_logout(
        &self,
        caller: &Caller,
        checkpoint: PathBuf,
    ) -> Result<BackchannelLogout, AppError> {
        self.backchannel_logout_with(caller, checkpoint, DeliveryPolicy::default())
            .await
    }

    /// [`Oidc::backchannel_logout`] with a delivery policy of its own.
    ///
    /// Who: the operator.
    pub async fn backchannel_logout_with(
        &self,
        caller: &Caller,
        checkpoint: PathBuf,
        policy: DeliveryPolicy,
    ) -> Result<BackchannelLogout, AppError> {
        self.platform_admin(caller).await?;
        let http = reqwest::Client::builder()
            // A redirect would turn the POST into a GET elsewhere: the application must answer
            // at the URI it registered.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .user_agent("idstream back-channel logout")
            .build()
            .map_err(|e| AppError::Internal(format!("the back-channel HTTP client: {e}")))?;
        let mut follower = BackchannelLogout {
            oidc: self.clone(),
            checkpoint,
            http,
            policy,
            position: None,
            saved: None,
            saved_at: tokio::time::Instant::now(),
        };
        if let Err(error) = follower.find_start().await {
            // Nothing can end a session while the log does not answer; the follower finds its
            // start as soon as it does.
            tracing::warn!(%error, "back-channel logout: where to start is not known yet; retrying");
        }
        Ok(follower)
    }
}

impl BackchannelLogout {
    /// Follows the log for ever, delivering logout tokens. Errors (the log or a read model
    /// unavailable, the checkpoint not writable) are logged and the same events tried again.
    pub async fn run(mut self) {
        let mut last_warning: Option<tokio::time::Instant> = None;
        loop {
            match self.step().await {
                Ok(()) => last_warning = None,
                Err(error) => {
                    let due = last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
                    if due {
                        last_warning = Some(tokio::time::Instant::now());
                        tracing::warn!(%error, "back-channel logout is held up; retrying every second");
                    } else {
                        tracing::debug!(%error, "back-channel logout is still held up");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Where the follower starts (see [`start_at`]), recorded at once when it is not the
    /// checkpoint.
    async fn find_start(&mut self) -> Result<Position, FollowError> {
        if let Some(position) = self.position {
            return Ok(position);
        }
        let saved = match load(&self.checkpoint).await {
            Ok(saved) => saved,
            Err(error) => {
                tracing::warn!(%error, "back-channel logout: the checkpoint cannot be read; starting at the log's end");
                None
            }
        };
        let log = self.oidc.log.log_id().await?;
        let last = self.oidc.log.last_position().await?;
        let (position, why) = start_at(saved.as_ref(), &log, last);
        if let Some(why) = why {
            tracing::info!(position, why, "back-channel logout starts at the log's end");
            self.save(position).await?;
        } else {
            self.saved = Some(position);
        }
        self.position = Some(position);
        Ok(position)
    }

    /// Handles the next batch of events the identity read model has applied, or waits a while
    /// for one.
    async fn step(&mut self) -> Result<(), FollowError> {
        let position = self.find_start().await?;
        let identity = [idstream_identity::NAME];
        let models = self.oidc.read_models();
        if models
            .wait_for_some(&identity, position + 1, IDLE)
            .await
            .is_err()
        {
            return self.save_if_due().await;
        }
        // Only events the identity read model has applied, so that each session is found as
        // its revocation left it.
        let reached = models.position(idstream_identity::NAME);
        let mut events = self
            .oidc
            .log
            .read_after(position, self.policy.batch)
            .await?;
        events.retain(|e| e.position <= reached);
        let Some(last) = events.last().map(|e| e.position) else {
            // The log did not hand out what the read model has applied (a lagging source):
            // look again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Ok(());
        };
        let notices = self.notices(&events)?;
        let delivered = !notices.is_empty();
        self.deliver_all(notices).await;
        self.position = Some(last);
        if delivered {
            self.save(last).await
        } else {
            self.save_if_due().await
        }
    }

    /// The logout tokens `events` call for: one per application session they end, whose
    /// client (still registered) has a back-channel logout URI.
    fn notices(&self, events: &[RecordedEvent]) -> Result<Vec<Notice>, FollowError> {
        let mut notices = Vec::new();
        for event in events {
            let envelope = &event.envelope;
            if envelope.event_type != "SessionRevoked"
                || envelope.aggregate.kind != AggregateType::Session
            {
                continue;
            }
            let Ok(session) = envelope.aggregate.id.parse::<Ulid>() else {
                continue;
            };
            // A session whose code was never exchanged has no view: its application never
            // learnt of it.
            let Some(view) = self.oidc.identity().session(&session)? else {
                continue;
            };
            let Some(client) = view.client.as_deref().and_then(|c| c.parse::<Ulid>().ok()) else {
                continue;
            };
            let Some(client) = self
                .oidc
                .identity()
                .client(&view.tenant, &client)?
                .filter(|c| c.removed_at.is_none())
            else {
                continue;
            };
            let Some(uri) = client.settings.backchannel_logout_uri else {
                continue;
            };
            // Registered while the service ran on localhost, and it no longer does: its own
            // machine is not posted to for a tenant.
            let on_this_machine = url::Url::parse(&uri)
                .ok()
                .and_then(|u| u.host_str().map(crate::core::is_loopback_host))
                .unwrap_or(true);
            if on_this_machine && !self.oidc.local_targets_allowed() {
                tracing::warn!(client = %client.id, "a back-channel logout URI on this machine is skipped");
                continue;
            }
            notices.push(Notice {
                uri,
                issuer: self.oidc.issuer_of(&view.tenant),
                client: client.id.to_string(),
                user: view.user.to_string(),
                session: session.to_string(),
            });
        }
        Ok(notices)
    }

    /// Delivers every notice: endpoints concurrently, each one's notices in order.
    async fn deliver_all(&self, notices: Vec<Notice>) {
        let groups = by_endpoint(notices);
        futures::stream::iter(groups)
            .map(|group| async move {
                for notice in &group {
                    self.deliver(notice).await;
                }
            })
            .buffer_unordered(self.policy.endpoints_at_once.max(1))
            .collect::<Vec<()>>()
            .await;
    }

    /// Posts one logout token (a new one each attempt, so that none is stale), retrying while
    /// the endpoint cannot take it, up to the policy's attempts.
    async fn deliver(&self, notice: &Notice) {
        let host = endpoint_host(&notice.uri);
        let attempts = self.policy.attempts.max(1);
        for attempt in 1..=attempts {
            let now = self.oidc.now();
            let token = LogoutClaims::new(
                &notice.issuer,
                &notice.client,
                &notice.user,
                &notice.session,
                now,
            )
            .sign(&self.oidc.id().keys.signing(), now);
            let body = serde_urlencoded::to_string([("logout_token", &token)])
                .expect("a form of one text field serialises");
            let sent = self
                .http
                .post(&notice.uri)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
                .send()
                .await;
            let (verdict, outcome) = match sent {
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    (verdict(status), format!("answered {status}"))
                }
                Err(error) => (Verdict::Retry, describe(error)),
            };
            match verdict {
                Verdict::Delivered => {
                    tracing::debug!(client = %notice.client, session = %notice.session, endpoint = %host, "logout token delivered");
                    return;
                }
                Verdict::Refused => {
                    tracing::warn!(client = %notice.client, session = %notice.session, endpoint = %host, %outcome, "the application refused a logout token; it is not sent again");
                    return;
                }
                Verdict::Retry if attempt < attempts => {
                    let pause = self.policy.pause_after(attempt);
                    tracing::info!(client = %notice.client, session = %notice.session, endpoint = %host, attempt, %outcome, ?pause, "a logout token was not delivered; trying again");
                    tokio::time::sleep(pause).await;
                }
                Verdict::Retry => {
                    tracing::warn!(client = %notice.client, session = %notice.session, endpoint = %host, attempts, %outcome, "a logout token could not be delivered; giving up");
                }
            }
        }
    }

    async fn save_if_due(&mut self) -> Result<(), FollowError> {
        match self.position {
            Some(position)
                if self.saved != Some(position) && self.saved_at.elapsed() >= SAVE_EVERY =>
            {
                self.save(position).await
            }
            _ => Ok(()),
        }
    }

    async fn save(&mut self, position: Position) -> Result<(), FollowError> {
        let saved = Saved {
            format: FORMAT,
            log: self.oidc.log.log_id().await?,
            position,
        };
        let path = self.checkpoint.clone();
        tokio::task::spawn_blocking(move || store(&path, &saved))
            .await
            .map_err(|e| FollowError::Checkpoint {
                path: self.checkpoint.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(|source| FollowError::Checkpoint {
                path: self.checkpoint.clone(),
                source,
            })?;
        self.saved = Some(position);
        self.saved_at = tokio::time::Instant::now();
        Ok(())
    }
}

/// The checkpoint in `path`, if there is one.
async fn load(path: &Path) -> Result<Option<Saved>, FollowError> {
    let failed = |source| FollowError::Checkpoint {
        path: path.to_owned(),
        source,
    };
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    let saved: Saved = serde_json::from_slice(&bytes)
        .map_err(|e| failed(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    if saved.format != FORMAT {
        return Err(failed(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("format {}, expected {FORMAT}", saved.format),
        )));
    }
    Ok(Some(saved))
}

/// Replaces the checkpoint in `path` atomically and durably (a temporary file, fsynced, renamed
/// over the old one, the directory fsynced), so a crash leaves the old one or the new one.
fn store(path: &Path, saved: &Saved) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let temporary = dir.join(name);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(log: &str, position: Position) -> Saved {
        Saved {
            format: FORMAT,
            log: log.to_owned(),
            position,
        }
    }

    fn notice(uri: &str, session: &str) -> Notice {
        Notice {
            uri: uri.to_owned(),
            issuer: "https://id.example/t/acme".to_owned(),
            client: "01J0CLIENT".to_owned(),
            user: "01J0USER".to_owned(),
            session: session.to_owned(),
        }
    }

    #[test]
    fn the_follower_resumes_at_its_checkpoint_of_this_log_and_otherwise_at_the_log_end() {
        assert_eq!(start_at(Some(&saved("L1", 40)), "L1", 90), (40, None));
        assert_eq!(start_at(Some(&saved("L1", 90)), "L1", 90), (90, None));
        for (checkpoint, why) in [
            (None, "no checkpoint yet"),
            (Some(saved("L0", 40)), "the checkpoint is of another log"),
            (
                Some(saved("L1", 95)),
                "the checkpoint is beyond the log's end",
            ),
        ] {
            assert_eq!(start_at(checkpoint.as_ref(), "L1", 90), (90, Some(why)));
        }
    }

    #[test]
    fn a_checkpoint_is_replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("backchannel-logout.json");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(runtime.block_on(load(&path)).unwrap().is_none());
        store(&path, &saved("L1", 7)).unwrap();
        store(&path, &saved("L1", 8)).unwrap();
        assert_eq!(runtime.block_on(load(&path)).unwrap(), Some(saved("L1", 8)));
        std::fs::write(&path, b"{\"format\":2,\"log\":\"L1\",\"position\":1}").unwrap();
        assert!(runtime.block_on(load(&path)).is_err(), "an unknown format");
    }

    #[test]
    fn server_errors_and_unreachable_endpoints_are_retried_refusals_are_not() {
        for status in [200, 204] {
            assert_eq!(verdict(status), Verdict::Delivered, "{status}");
        }
        for status in [429, 500, 502, 503, 504] {
            assert_eq!(verdict(status), Verdict::Retry, "{status}");
        }
        for status in [301, 303, 400, 401, 404, 405] {
            assert_eq!(verdict(status), Verdict::Refused, "{status}");
        }
    }

    #[test]
    fn each_retry_waits_twice_as_long_as_the_one_before() {
        let policy = DeliveryPolicy::default();
        let pauses: Vec<Duration> = (1..policy.attempts)
            .map(|a| policy.pause_after(a))
            .collect();
        assert_eq!(
            pauses,
            [1, 2, 4].map(Duration::from_secs),
            "three retries after the first attempt"
        );
        assert!(policy.timeout <= Duration::from_secs(5));
        assert_eq!(
            policy.pause_after(100),
            Duration::from_secs(1 << 16),
            "bounded"
        );
    }

    #[test]
    fn notices_are_grouped_by_endpoint_keeping_the_log_order_within_each() {
        let groups = by_endpoint(vec![
            notice("https://b.example/logout", "s1"),
            notice("https://a.example/logout", "s2"),
            notice("https://b.example/logout", "s3"),
            notice("https://a.example/logout", "s4"),
            notice("https://c.example/logout", "s5"),
        ]);
        let sessions: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|n| n.session.as_str()).collect())
            .collect();
        assert_eq!(sessions, [vec!["s1", "s3"], vec!["s2", "s4"], vec!["s5"]]);
    }

    #[test]
    fn logs_name_the_endpoint_by_its_host_only() {
        assert_eq!(
            endpoint_host("https://app.example/logout?key=secret"),
            "app.example"
        );
        assert_eq!(
            endpoint_host("http://127.0.0.1:9000/logout"),
            "127.0.0.1:9000"
        );
        assert_eq!(endpoint_host("not a uri"), "?");
    }
}
