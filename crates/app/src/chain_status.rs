//! The tamper-evidence chain's status, for platform administrators: whether the log still matches
//! its hash chain and signed checkpoints (`idstream_chain`), how far that was checked, when, and
//! the first break found.
//!
//! Verifying the whole log on every request would cost about a second per three million events,
//! so the service keeps one verification per log in memory and moves it on: each request for the
//! status first verifies the events appended since the last one (usually a handful, in
//! microseconds), in the background, and answers with what is known after at most
//! [`STATUS_WAIT`]; a long backlog (the first request after a start, on a large log) goes on in
//! the background and the answer says how far it got. Events checked once are not read again by
//! later requests, so a change made to them afterwards would go unseen: the verification starts
//! over from position 1 once its pass is older than [`FULL_PASS_EVERY`] (and with every start of
//! the service). `idstream audit verify` remains the check an auditor runs on a copy.
//!
//! The verifier's own trust rule (only checkpoints signed by a trusted key vouch for anything,
//! and the last one must be) is judged here with the signing keys as they are at each request,
//! re-read when a checkpoint names a key this replica has not seen yet, because a verifier lives
//! across key rotations while [`Verifier`] keeps the keys it was made with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use idstream_chain::{CHAIN_SUBJECT, Checkpoint, Mismatch, TrustedKeys, Verifier};
use idstream_eventlog::{LogError, Position, RawEvent};
use time::OffsetDateTime;

use crate::core::Core;
use crate::policy::Caller;
use crate::{AppError, Operations};

/// How long a request for the status waits for the verification to reach the log's end before
/// answering with how far it got.
pub const STATUS_WAIT: Duration = Duration::from_secs(2);

/// How old a pass from position 1 may get before the next request starts another one.
pub const FULL_PASS_EVERY: time::Duration = time::Duration::hours(1);

/// How many events are read and verified at a time.
const PAGE: usize = 4096;

/// What is known of the chain: see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    /// The log's last position when the verification last looked.
    pub log_end: Position,
    /// Positions `1..=verified` are verified (in the current pass).
    pub verified: Position,
    /// Checkpoints found and checked.
    pub checkpoints: u64,
    /// The last position a checkpoint covers (0 when there is none).
    pub covered_to: Position,
    /// The position of the last checkpoint and the key that signed it.
    pub last_checkpoint: Option<(Position, String)>,
    /// When the current pass from position 1 began.
    pub pass_started: Option<OffsetDateTime>,
    /// When the verification last reached the log's end.
    pub checked_at: Option<OffsetDateTime>,
    /// The first break found: the position where the log stops matching its chain, and why.
    pub broken: Option<Mismatch>,
    /// Why the log could not be read the last time it was tried, if it could not.
    pub unreadable: Option<String>,
    /// The verification is still on its way to the log's end.
    pub running: bool,
}

impl ChainStatus {
    /// Verified up to the log's end, and nothing found.
    pub fn verifies(&self) -> bool {
        self.broken.is_none() && self.unreadable.is_none() && self.verified >= self.log_end
    }

    /// Verified events after the last checkpoint: checked for gaps only until a checkpoint
    /// vouches for their bytes.
    pub fn uncovered(&self) -> u64 {
        self.verified.saturating_sub(self.covered_to)
    }
}

impl Operations {
    /// The chain's status, after verifying what was appended since the last request (waiting at
    /// most [`STATUS_WAIT`] for it); see the module documentation.
    ///
    /// Who: platform administrators.
    pub async fn chain_status(&self, caller: &Caller) -> Result<ChainStatus, AppError> {
        self.platform_admin(caller).await?;
        let watch = watch_of(&self.0).await?;
        let started = watch.start(self.0.clone());
        if started || watch.snapshot().running {
            // The pass holds the lock while it runs: taking it means it is done.
            let _ = tokio::time::timeout(STATUS_WAIT, watch.pass.lock()).await;
        }
        Ok(watch.snapshot())
    }
}

/// The verification of one log, shared by every request for its status.
struct Watch {
    /// What requests see, updated after each page.
    seen: Mutex<ChainStatus>,
    /// The pass, held by the task that moves it on.
    pass: Arc<tokio::sync::Mutex<Option<Pass>>>,
}

/// One verification from position 1.
struct Pass {
    verifier: Verifier,
    tally: Tally,
    started: OffsetDateTime,
    /// The first mismatch the verifier found; it stops there.
    mismatch: Option<Mismatch>,
}

/// The checkpoints seen, and the trust rule of `idstream_chain::verify` judged with the signing
/// keys of the moment.
#[derive(Default)]
struct Tally {
    checkpoints: u64,
    covered_to: Position,
    last: Option<(Position, String)>,
    /// `to` of the last checkpoint signed by a trusted key.
    last_trusted_to: Option<Position>,
    /// The first checkpoint after the last trusted one that is signed by a key not trusted.
    untrusted_since: Option<(Position, String)>,
}

impl Tally {
    fn checkpoint(&mut self, at: Position, checkpoint: &Checkpoint, trusted: bool) {
        self.checkpoints += 1;
        self.covered_to = checkpoint.to;
        self.last = Some((at, checkpoint.key.clone()));
        if trusted {
            self.last_trusted_to = Some(checkpoint.to);
            self.untrusted_since = None;
        } else if self.untrusted_since.is_none() {
            self.untrusted_since = Some((at, checkpoint.key.clone()));
        }
    }

    /// The break the trust rule finds at the end of what was verified, worded as
    /// `idstream audit verify` words it.
    fn untrusted(&self) -> Option<Mismatch> {
        let (at, key) = self.untrusted_since.as_ref()?;
        let from = self.last_trusted_to.map_or(1, |to| to + 1);
        Some(Mismatch {
            position: from,
            reason: format!(
                "the checkpoints from position {at} on are signed by key {key}, which is not a trusted key (not in the key store), so nothing from position {from} on can be shown to be unchanged"
            ),
        })
    }
}

/// The verification of each log this process serves, by log id. A verification is a property
/// of the log (its stored bytes and the signing keys), so apps over the same log share one.
fn watches() -> &'static Mutex<HashMap<String, Arc<Watch>>> {
    static WATCHES: OnceLock<Mutex<HashMap<String, Arc<Watch>>>> = OnceLock::new();
    WATCHES.get_or_init(Default::default)
}

async fn watch_of(core: &Core) -> Result<Arc<Watch>, AppError> {
    let id = core
        .log
        .log_id()
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    let mut watches = watches().lock().unwrap_or_else(|e| e.into_inner());
    Ok(watches
        .entry(id)
        .or_insert_with(|| {
            Arc::new(Watch {
                seen: Mutex::new(ChainStatus {
                    log_end: 0,
                    verified: 0,
                    checkpoints: 0,
                    covered_to: 0,
                    last_checkpoint: None,
                    pass_started: None,
                    checked_at: None,
                    broken: None,
                    unreadable: None,
                    running: false,
                }),
                pass: Arc::default(),
            })
        })
        .clone())
}

impl Watch {
    fn snapshot(&self) -> ChainStatus {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn publish(&self, change: impl FnOnce(&mut ChainStatus)) {
        change(&mut self.seen.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Starts moving the verification on in the background, unless a task already does.
    fn start(self: &Arc<Self>, core: Arc<Core>) -> bool {
        let Ok(pass) = self.pass.clone().try_lock_owned() else {
            return false;
        };
        self.publish(|seen| seen.running = true);
        let watch = self.clone();
        tokio::spawn(async move { watch.advance(core, pass).await });
        true
    }

    /// Verifies from where the pass is to the log's end (a new pass from position 1 when there
    /// is none or it is older than [`FULL_PASS_EVERY`]), publishing after each page.
    async fn advance(
        self: Arc<Self>,
        core: Arc<Core>,
        mut guard: tokio::sync::OwnedMutexGuard<Option<Pass>>,
    ) {
        let now = core.clock.now();
        if guard
            .as_ref()
            .is_none_or(|pass| now - pass.started > FULL_PASS_EVERY)
        {
            let ring = core.identity.keys.signing();
            *guard = Some(Pass {
                verifier: Verifier::new(TrustedKeys::from_ring(&ring)),
                tally: Tally::default(),
                started: now,
                mismatch: None,
            });
        }
        let pass = guard.as_mut().expect("set above");
        let outcome = verify_to_end(&self, &core, pass).await;
        let checked_at = core.clock.now();
        self.publish(|seen| {
            let before = std::mem::replace(seen, pass.status());
            match outcome {
                Ok(end) => {
                    seen.log_end = seen.log_end.max(end);
                    seen.checked_at = Some(checked_at);
                }
                Err(why) => {
                    // What was known stays; the next request tries again.
                    seen.log_end = seen.log_end.max(before.log_end);
                    seen.checked_at = before.checked_at;
                    seen.unreadable = Some(why);
                }
            }
        });
    }
}

/// The pass moved on to the log's last position; returns that position.
async fn verify_to_end(watch: &Watch, core: &Core, pass: &mut Pass) -> Result<Position, String> {
    let end = core.log.last_position().await.map_err(|e| e.to_string())?;
    let mut trusted = TrustedKeys::from_ring(&core.identity.keys.signing());
    let mut reloaded = false;
    while pass.mismatch.is_none() && pass.verifier.position() < end {
        let after = pass.verifier.position();
        let page = match core.log.read_raw_after(after, PAGE).await {
            Ok(page) => page,
            // A backend refusing bytes it considers damaged is a break, not an outage.
            Err(LogError::Corrupt(why)) => {
                pass.mismatch = Some(Mismatch {
                    position: after + 1,
                    reason: format!("the log is damaged: {why}"),
                });
                break;
            }
            Err(e) => return Err(e.to_string()),
        };
        if page.is_empty() {
            let first = after + 1;
            pass.mismatch = Some(Mismatch {
                position: first,
                reason: format!(
                    "positions {first}..={end} are missing: the log's last position is {end}, but its events end at {after} (the tail was deleted or purged)"
                ),
            });
            break;
        }
        // A checkpoint signed by a key this replica has not seen may come from a replica that
        // rotated: read the keys again, once per round, before calling it untrusted.
        if !reloaded && names_unknown_key(&page, &trusted) {
            reloaded = true;
            if core.identity.keys.reload().await.is_ok() {
                trusted = TrustedKeys::from_ring(&core.identity.keys.signing());
            }
        }
        // Hashing is CPU work: off the runtime's threads.
        let verifier = std::mem::replace(&mut pass.verifier, Verifier::new(TrustedKeys::default()));
        let checked = trusted.clone();
        let (verifier, seen, mismatch) = tokio::task::spawn_blocking(move || {
            let mut verifier = verifier;
            let mut seen = Vec::new();
            for event in &page {
                if let Err(found) = verifier.push(event.position, &event.subject, &event.bytes) {
                    return (verifier, seen, Some(found));
                }
                if event.subject == CHAIN_SUBJECT
                    && let Ok(checkpoint) = Checkpoint::decode(&event.bytes)
                {
                    let trusted = checked.get(&checkpoint.key).is_some();
                    seen.push((event.position, checkpoint, trusted));
                }
            }
            (verifier, seen, None)
        })
        .await
        .map_err(|e| format!("the verification stopped: {e}"))?;
        pass.verifier = verifier;
        for (at, checkpoint, trusted) in &seen {
            pass.tally.checkpoint(*at, checkpoint, *trusted);
        }
        pass.mismatch = mismatch;
        let status = pass.status();
        watch.publish(|seen| {
            *seen = ChainStatus {
                running: true,
                log_end: end,
                checked_at: seen.checked_at,
                ..status
            }
        });
    }
    Ok(end)
}

fn names_unknown_key(page: &[RawEvent], trusted: &TrustedKeys) -> bool {
    page.iter().any(|event| {
        event.subject == CHAIN_SUBJECT
            && Checkpoint::decode(&event.bytes).is_ok_and(|c| trusted.get(&c.key).is_none())
    })
}

impl Pass {
    fn status(&self) -> ChainStatus {
        let verified = self.verifier.position();
        ChainStatus {
            log_end: verified,
            verified: match &self.mismatch {
                Some(found) => found.position.saturating_sub(1).min(verified),
                None => verified,
            },
            checkpoints: self.tally.checkpoints,
            covered_to: self.tally.covered_to,
            last_checkpoint: self.tally.last.clone(),
            pass_started: Some(self.started),
            checked_at: None,
            broken: self.mismatch.clone().or_else(|| self.tally.untrusted()),
            unreadable: None,
            running: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use idstream_auth::KeyRing;
    use idstream_chain::{Chain, CheckpointPolicy, Checkpointer, Signer, chain_stream};
    use idstream_domain::{Actor, DomainEvent, Metadata};
    use idstream_eventlog::{Expected, SharedLog};
    use time::macros::datetime;

    use crate::tests::{FixedClock, app_in, as_user};
    use crate::{App, AppError, Caller};

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    use super::*;

    /// An app over a new log in `dir`, its signing keys, and `tenants` tenants created.
    async fn app_with(dir: &std::path::Path, tenants: usize) -> (App, Arc<idstream_keys::Keys>) {
        let services = crate::IdentityServices::local(dir).await.unwrap();
        let keys = services.keys.clone();
        let app = app_in(dir, Arc::new(FixedClock(NOW)), services).await;
        for i in 0..tenants {
            app.tenants
                .create(
                    &Caller::system("test"),
                    format!("t{i}").parse().unwrap(),
                    "T".into(),
                )
                .await
                .unwrap();
        }
        (app, keys)
    }

    /// Appends `checkpoint` to the chain aggregate, whose last event is at `after_chain`.
    async fn append(log: &SharedLog, checkpoint: &Checkpoint, after_chain: Position) -> Position {
        let meta = Metadata {
            actor: Actor::system("chain"),
            occurred_at: NOW,
            correlation_id: ulid::Ulid::new().to_string(),
            causation_id: None,
        };
        let envelope = DomainEvent::ChainCheckpointed(checkpoint.to_event()).into_envelope(
            ulid::Ulid::new(),
            &chain_stream(),
            &meta,
        );
        log.append(vec![envelope], Expected::from_last(after_chain), None)
            .await
            .unwrap()
            .last
    }

    /// The chain over every event of `log`: the link after the last, and the short links.
    async fn links(log: &SharedLog) -> (Position, [u8; 32], Vec<[u8; 8]>) {
        let mut chain = Chain::default();
        let mut shorts = Vec::new();
        let mut last = [0; 32];
        for event in log.read_raw_after(0, 10_000).await.unwrap() {
            last = chain.push(event.position, &event.subject, &event.bytes);
            shorts.push(idstream_chain::link::short(&last));
        }
        (chain.position, last, shorts)
    }

    #[tokio::test]
    async fn an_untouched_log_verifies_incrementally_for_platform_administrators_only() {
        let dir = tempfile::tempdir().unwrap();
        let (app, keys) = app_with(dir.path(), 3).await;
        let log = app.operations.log().clone();

        // Nobody but a platform administrator learns anything.
        let member = as_user(idstream_domain::UserId::new(ulid::Ulid::new()), "t0");
        assert!(matches!(
            app.operations.chain_status(&member).await,
            Err(AppError::PlatformAdminOnly)
        ));
        assert!(
            app.operations
                .chain_status(&Caller::anonymous())
                .await
                .is_err()
        );

        let admin = Caller::system("test");
        let status = app.operations.chain_status(&admin).await.unwrap();
        let end = log.last_position().await.unwrap();
        assert!(end > 0);
        assert!(status.verifies(), "{status:?}");
        assert_eq!((status.verified, status.log_end), (end, end));
        assert_eq!((status.checkpoints, status.uncovered()), (0, end));
        assert_eq!(status.checked_at, Some(NOW));
        assert_eq!(status.pass_started, Some(NOW));

        let mut writer = Checkpointer::new(log.clone(), keys.clone(), CheckpointPolicy::default());
        let written = writer.checkpoint_now().await.unwrap();
        assert_eq!(written.len(), 1);
        app.tenants
            .create(&admin, "later".parse().unwrap(), "Later".into())
            .await
            .unwrap();
        let status = app.operations.chain_status(&admin).await.unwrap();
        let end = log.last_position().await.unwrap();
        assert!(status.verifies(), "{status:?}");
        assert_eq!(status.verified, end);
        assert_eq!(status.checkpoints, 1);
        assert_eq!(status.covered_to, written[0] - 1);
        let kid = keys.signing().current().kid().to_owned();
        assert_eq!(status.last_checkpoint, Some((written[0], kid)));
        assert!(status.uncovered() > 0);
    }

    #[tokio::test]
    async fn a_checkpoint_that_does_not_match_the_log_is_named_as_a_break() {
        let dir = tempfile::tempdir().unwrap();
        let (app, keys) = app_with(dir.path(), 2).await;
        let log = app.operations.log().clone();
        let admin = Caller::system("test");
        assert!(
            app.operations
                .chain_status(&admin)
                .await
                .unwrap()
                .verifies()
        );

        // Signed with the service's own key, but recording links the log never had: what a
        // changed event looks like to the verifier.
        let (to, _, shorts) = links(&log).await;
        let signer = Signer::from_ring(&keys.signing()).unwrap();
        let forged = signer.sign(1, to, [7; 32], vec![[7; 8]; shorts.len()]);
        let at = append(&log, &forged, 0).await;
        let status = app.operations.chain_status(&admin).await.unwrap();
        assert!(!status.verifies(), "{status:?}");
        let broken = status.broken.clone().unwrap();
        assert_eq!(broken.position, 1, "{broken}");
        assert!(
            broken.reason.contains("not the one the checkpoint"),
            "{broken}"
        );
        assert_eq!(status.verified, 0);
        // A break stays reported.
        let again = app.operations.chain_status(&admin).await.unwrap();
        assert_eq!(again.broken, status.broken);
        assert!(at > to);
    }

    #[tokio::test]
    async fn a_checkpoint_signed_by_a_key_the_service_does_not_trust_is_a_break() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _keys) = app_with(dir.path(), 2).await;
        let log = app.operations.log().clone();
        let admin = Caller::system("test");

        // The right links, signed by someone else's key.
        let (to, link, shorts) = links(&log).await;
        let stranger = KeyRing::generate(NOW, time::Duration::minutes(5));
        let checkpoint = Signer::from_ring(&stranger)
            .unwrap()
            .sign(1, to, link, shorts);
        append(&log, &checkpoint, 0).await;
        let status = app.operations.chain_status(&admin).await.unwrap();
        let broken = status
            .broken
            .clone()
            .unwrap_or_else(|| panic!("{status:?}"));
        assert_eq!(broken.position, 1, "{broken}");
        assert!(broken.reason.contains("not a trusted key"), "{broken}");
        assert_eq!(status.checkpoints, 1);
    }
}
