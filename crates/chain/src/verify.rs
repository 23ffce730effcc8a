//! The verifier: recomputes the chain from the log's stored bytes and checks every checkpoint.
//!
//! [`Verifier`] is fed events in position order and says where the log first stops matching;
//! it does no IO. [`verify_log`] drives it over a whole log. Memory is bounded by the events not
//! yet covered by a checkpoint (32 bytes each), which the checkpoint writer keeps to about
//! [`crate::writer::CheckpointPolicy::every_events`].
//!
//! A checkpoint's Ed25519 signature costs about as much as linking 120 events, an eighth of the
//! verifier's time at one checkpoint per 1000 events. [`Verifier::with_signature_thread`] (what
//! [`verify_log`] uses) checks signatures on a second thread, in order, while the chain goes on;
//! [`Verifier::new`] checks them in place. Both report the same first mismatch: see
//! [`Verifier::push`].
//!
//! What is checked, in order, as events arrive:
//! - positions run 1, 2, 3, … with none missing and none repeated;
//! - every event on the chain's subject is a well-formed checkpoint whose range ends before it;
//! - its signature verifies with the public key it carries, and if its key id is a trusted one,
//!   that key is the trusted key;
//! - it starts right after the range of the previous checkpoint;
//! - the short link after each event in its range is the one it recorded (this names the first
//!   event that was changed, removed, inserted or moved);
//! - the chain link after its last position is the one it recorded (this proves the whole
//!   prefix, through the previous links).
//!
//! Trust: checkpoints carry their public key, and a checkpoint signed by a trusted key vouches,
//! through the chain, for every event and checkpoint before it, including their keys. So keys
//! that have since been rotated out of the key ring need not be kept: what must be trusted is the
//! key of the last checkpoint (the writer re-signs right after a key rotation, and a retired key
//! stays in the ring until the next rotation). If the last checkpoints are signed by a key that
//! is not trusted, nothing after the last trusted checkpoint can be shown to be unchanged.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use ed25519_dalek::VerifyingKey;
use idstream_eventlog::{LogError, Position, SharedLog};

use crate::checkpoint::{CHAIN_SUBJECT, Checkpoint, TrustedKeys};
use crate::link::{Chain, Hash, short};

/// How many events [`verify_log`] reads at a time.
pub const PAGE: usize = 4096;

/// How many checkpoints may wait for the signature thread. When that many do, the thread is not
/// keeping up (the machine is busy), and the verifier checks the next signature itself rather
/// than wait for it.
const SIGNATURE_QUEUE: usize = 4;

/// The first position at which the log does not match its chain, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub position: Position,
    pub reason: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "position {}: {}", self.position, self.reason)
    }
}

/// What a verification that found nothing wrong saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Events verified (positions 1 to `last`).
    pub events: u64,
    pub last: Position,
    /// Checkpoints found and checked.
    pub checkpoints: u64,
    /// The last position covered by a checkpoint (0 when there is none).
    pub covered_to: Position,
    /// The position of the last checkpoint event, if any.
    pub last_checkpoint: Option<Position>,
}

impl Summary {
    /// Events after the last covered position: checked for gaps, but no checkpoint vouches for
    /// their bytes yet.
    pub fn uncovered(&self) -> u64 {
        self.last - self.covered_to
    }
}

/// Checks a log fed to it event by event, in position order.
pub struct Verifier {
    trusted: TrustedKeys,
    chain: Chain,
    /// The links after positions `covered_to + 1 ..= chain.position`.
    pending: VecDeque<Hash>,
    covered_to: Position,
    checkpoints: u64,
    last_checkpoint: Option<Position>,
    /// `to` of the last checkpoint signed by a trusted key.
    last_trusted_to: Option<Position>,
    /// The first checkpoint after the last trusted one that is signed by an untrusted key.
    untrusted_since: Option<(Position, String)>,
    signatures: Signatures,
    /// The public key of the last checkpoint, which the next one most likely carries too.
    last_key: Option<VerifyingKey>,
    /// The mismatch already reported, if any: the verifier stops there.
    failed: Option<Mismatch>,
}

impl Verifier {
    /// A verifier that checks every checkpoint's signature in place, on the calling thread.
    pub fn new(trusted: TrustedKeys) -> Verifier {
        Verifier::with(trusted, Signatures::Inline)
    }

    /// A verifier that checks checkpoint signatures on a thread of its own, in the order of the
    /// checkpoints, while the caller goes on hashing. When that thread falls behind (the
    /// machine is busy), the verifier checks signatures in place instead of waiting for it. The
    /// thread ends with the verifier.
    pub fn with_signature_thread(trusted: TrustedKeys) -> Verifier {
        Verifier::with(trusted, Signatures::Thread(SignatureThread::start()))
    }

    fn with(trusted: TrustedKeys, signatures: Signatures) -> Verifier {
        Verifier {
            trusted,
            chain: Chain::default(),
            pending: VecDeque::new(),
            covered_to: 0,
            checkpoints: 0,
            last_checkpoint: None,
            last_trusted_to: None,
            untrusted_since: None,
            signatures,
            last_key: None,
            failed: None,
        }
    }

    /// The last position fed.
    pub fn position(&self) -> Position {
        self.chain.position
    }

    /// Feeds the event stored at `position` under `subject` as `bytes`.
    ///
    /// The mismatch is always the first one in the order of the checks listed in the module
    /// documentation, the same whether signatures are checked in place or on their own thread.
    /// With the thread, a bad signature is reported by a later call (at the latest by
    /// [`Verifier::finish`]), still naming its checkpoint; any other mismatch waits for the
    /// signatures of the checkpoints before it, so that an earlier bad one is named instead.
    /// Once a mismatch is reported, every later call reports it again.
    pub fn push(
        &mut self,
        position: Position,
        subject: &str,
        bytes: &[u8],
    ) -> Result<(), Mismatch> {
        if let Some(found) = &self.failed {
            return Err(found.clone());
        }
        self.step(position, subject, bytes)
            .map_err(|found| self.fail(found))
    }

    /// Records the verifier's result: `found`, unless a signature checked behind fails, whose
    /// checkpoint came first.
    fn fail(&mut self, found: Mismatch) -> Mismatch {
        let first = self.signatures.settle().err().unwrap_or(found);
        self.failed = Some(first.clone());
        first
    }

    fn step(&mut self, position: Position, subject: &str, bytes: &[u8]) -> Result<(), Mismatch> {
        let expected = self.chain.position + 1;
        if position < expected {
            return Err(Mismatch {
                position,
                reason: format!(
                    "position {position} comes again after position {}: a duplicated or reordered event",
                    self.chain.position
                ),
            });
        }
        if position > expected {
            let missing = if position == expected + 1 {
                format!("position {expected} is missing")
            } else {
                format!("positions {expected}..={} are missing", position - 1)
            };
            return Err(Mismatch {
                position: expected,
                reason: format!(
                    "{missing}: the log goes from position {} to {position} (an event was deleted or purged)",
                    self.chain.position
                ),
            });
        }
        let link = self.chain.push(position, subject, bytes);
        self.pending.push_back(link);
        if subject == CHAIN_SUBJECT {
            self.checkpoint(position, bytes)?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, at: Position, bytes: &[u8]) -> Result<(), Mismatch> {
        let checkpoint = Checkpoint::decode_with(bytes, self.last_key.as_ref()).map_err(|why| {
            Mismatch {
                position: at,
                reason: format!("the event at position {at} is stored under the chain's subject but is no valid checkpoint: {why}"),
            }
        })?;
        self.last_key = Some(checkpoint.public_key);
        let trusted = match self.trusted.get(&checkpoint.key) {
            Some(key) if *key != checkpoint.public_key => {
                return Err(Mismatch {
                    position: at,
                    reason: format!(
                        "the checkpoint at position {at} names the trusted key {} but carries another public key",
                        checkpoint.key
                    ),
                });
            }
            Some(_) => true,
            None => false,
        };
        // The signature comes first in meaning: a checkpoint that is not what its signer signed
        // cannot be used to locate anything, so when it fails, that is the mismatch. It comes
        // last in time (or on the signature thread) because it is most of a checkpoint's cost.
        if let Err(found) = self.compare(at, &checkpoint) {
            return Err(signature(at, &checkpoint).err().unwrap_or(found));
        }
        let to = checkpoint.to;
        self.pending.drain(..(to - self.covered_to) as usize);
        self.covered_to = to;
        self.checkpoints += 1;
        self.last_checkpoint = Some(at);
        if trusted {
            self.last_trusted_to = Some(to);
            self.untrusted_since = None;
        } else if self.untrusted_since.is_none() {
            self.untrusted_since = Some((at, checkpoint.key.clone()));
        }
        self.signatures.check(at, checkpoint)
    }

    /// Everything about the checkpoint at `at` but its signature, against the chain here.
    fn compare(&self, at: Position, checkpoint: &Checkpoint) -> Result<(), Mismatch> {
        let mismatch = |position: Position, reason: String| Mismatch { position, reason };
        let Checkpoint { from, to, .. } = *checkpoint;
        if from <= self.covered_to {
            return Err(mismatch(
                at,
                format!(
                    "the checkpoint at position {at} covers {from}..={to}, but positions up to {} were covered already: a duplicated or replayed checkpoint",
                    self.covered_to
                ),
            ));
        }
        let base = self.covered_to + 1;
        // Compare what is here (the checkpoint may have moved earlier, if events before it were
        // removed), so that the first event that differs is named rather than the checkpoint.
        for (i, recorded) in checkpoint.links.iter().enumerate() {
            let position = from + i as u64;
            if position >= at {
                break;
            }
            if short(&self.pending[(position - base) as usize]) != *recorded {
                return Err(mismatch(
                    position,
                    format!(
                        "the event at position {position} is not the one the checkpoint at position {at} recorded: it was changed, or events were removed, inserted or moved before it"
                    ),
                ));
            }
        }
        if to >= at {
            return Err(mismatch(
                at,
                format!(
                    "the checkpoint at position {at} claims to cover up to position {to}, which is not before it"
                ),
            ));
        }
        if from > base {
            return Err(mismatch(
                at,
                format!(
                    "the checkpoint at position {at} starts at {from}, but the previous one ends at {}: positions {base}..={} are covered by no checkpoint (one was removed)",
                    self.covered_to,
                    from - 1
                ),
            ));
        }
        if self.pending[(to - base) as usize] != checkpoint.link {
            return Err(mismatch(
                at,
                format!(
                    "the chain link after position {to} differs from the one the checkpoint at position {at} signed, although its first bytes match"
                ),
            ));
        }
        Ok(())
    }

    /// Ends the verification of a log whose last position is `end`.
    pub fn finish(mut self, end: Position) -> Result<Summary, Mismatch> {
        if let Some(found) = self.failed.take() {
            return Err(found);
        }
        self.signatures.settle()?;
        if self.chain.position < end {
            let first = self.chain.position + 1;
            return Err(Mismatch {
                position: first,
                reason: format!(
                    "positions {first}..={end} are missing: the log's last position is {end}, but its events end at {} (the tail was deleted or purged)",
                    self.chain.position
                ),
            });
        }
        if let Some((at, key)) = self.untrusted_since.take() {
            let from = self.last_trusted_to.map_or(1, |to| to + 1);
            return Err(Mismatch {
                position: from,
                reason: format!(
                    "the checkpoints from position {at} on are signed by key {key}, which is not a trusted key (not in the key store or the given JWK Set), so nothing from position {from} on can be shown to be unchanged"
                ),
            });
        }
        Ok(Summary {
            events: self.chain.position,
            last: self.chain.position,
            checkpoints: self.checkpoints,
            covered_to: self.covered_to,
            last_checkpoint: self.last_checkpoint,
        })
    }
}

/// Checks the signature of the checkpoint at `at`.
fn signature(at: Position, checkpoint: &Checkpoint) -> Result<(), Mismatch> {
    if checkpoint.signature_is_valid() {
        return Ok(());
    }
    let reason = if checkpoint.signed_in_format_v1() {
        format!(
            "the checkpoint at position {at} (key {}) was signed for version 1 of the chain format, written by an earlier build of idstream; this build computes version 2 and cannot check it",
            checkpoint.key
        )
    } else {
        format!(
            "the signature of the checkpoint at position {at} (key {}) does not verify: the checkpoint was altered or forged",
            checkpoint.key
        )
    };
    Err(Mismatch {
        position: at,
        reason,
    })
}

/// Where a verifier checks checkpoint signatures.
enum Signatures {
    Inline,
    Thread(SignatureThread),
}

impl Signatures {
    /// Checks the signature of the checkpoint at `at`, or queues it. A queued check that failed
    /// meanwhile is reported here: every check queued before it has passed, and every check
    /// made in place before this one too, so it is the first.
    fn check(&mut self, at: Position, checkpoint: Checkpoint) -> Result<(), Mismatch> {
        match self {
            Signatures::Inline => signature(at, &checkpoint),
            Signatures::Thread(thread) => {
                thread.poll()?;
                if thread.outstanding < SIGNATURE_QUEUE {
                    thread.queue(at, checkpoint);
                    Ok(())
                } else {
                    // A failure here is reported after the queued checks (see `Verifier::fail`).
                    signature(at, &checkpoint)
                }
            }
        }
    }

    /// Waits for every queued check; the first that failed, if any.
    fn settle(&mut self) -> Result<(), Mismatch> {
        match self {
            Signatures::Inline => Ok(()),
            Signatures::Thread(thread) => thread.settle(),
        }
    }
}

/// A thread that checks signatures in the order they are queued, and answers in that order.
struct SignatureThread {
    jobs: Option<SyncSender<(Position, Checkpoint)>>,
    verdicts: Receiver<Result<(), Mismatch>>,
    /// Checks queued and not answered yet.
    outstanding: usize,
    handle: Option<JoinHandle<()>>,
}

impl SignatureThread {
    fn start() -> SignatureThread {
        let (jobs, queue) = sync_channel::<(Position, Checkpoint)>(SIGNATURE_QUEUE);
        let (answer, verdicts) = sync_channel(SIGNATURE_QUEUE);
        let handle = std::thread::Builder::new()
            .name("chain-signatures".into())
            .spawn(move || {
                for (at, checkpoint) in queue {
                    if answer.send(signature(at, &checkpoint)).is_err() {
                        break;
                    }
                }
            })
            .expect("a thread can be started");
        SignatureThread {
            jobs: Some(jobs),
            verdicts,
            outstanding: 0,
            handle: Some(handle),
        }
    }

    /// Queues a check; there is room (fewer than `SIGNATURE_QUEUE` are outstanding, and both
    /// channels hold that many), so neither thread ever waits for the other here.
    fn queue(&mut self, at: Position, checkpoint: Checkpoint) {
        let jobs = self.jobs.as_ref().expect("open until dropped");
        if jobs.send((at, checkpoint)).is_err() {
            self.resume_panic();
            unreachable!("the signature thread ends only when the verifier does");
        }
        self.outstanding += 1;
    }

    /// Takes the answers that are in, without waiting.
    fn poll(&mut self) -> Result<(), Mismatch> {
        while self.outstanding > 0 {
            match self.verdicts.try_recv() {
                Ok(verdict) => self.take(verdict)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.resume_panic(),
            }
        }
        Ok(())
    }

    fn settle(&mut self) -> Result<(), Mismatch> {
        while self.outstanding > 0 {
            self.answer()?;
        }
        Ok(())
    }

    /// Waits for the next answer.
    fn answer(&mut self) -> Result<(), Mismatch> {
        match self.verdicts.recv() {
            Ok(verdict) => self.take(verdict),
            Err(_) => {
                self.resume_panic();
                unreachable!("the signature thread ends only when the verifier does");
            }
        }
    }

    fn take(&mut self, verdict: Result<(), Mismatch>) -> Result<(), Mismatch> {
        self.outstanding -= 1;
        if verdict.is_err() {
            // The first failure; later answers cannot come before it.
            self.outstanding = 0;
        }
        verdict
    }

    /// The thread stopped answering: it can only have panicked. The panic goes on here.
    fn resume_panic(&mut self) {
        if let Some(handle) = self.handle.take()
            && let Err(panic) = handle.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for SignatureThread {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the check it is on.
        self.jobs = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Why a verification did not end with a [`Summary`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// The log does not match its chain.
    #[error("the log does not match its chain at {0}")]
    Mismatch(Mismatch),
    /// The log could not be read. [`LogError::Corrupt`] is the backend refusing bytes it
    /// considers damaged (a frame whose checksum fails, for the embedded log): also a failed
    /// verification, located by the backend's message.
    #[error("the log cannot be read: {0}")]
    Log(#[from] LogError),
}

/// Verifies the whole of `log`: every event from position 1 to the log's last position when
/// the call started (and any appended while it runs). `progress(done, end)` is called after
/// each page.
pub async fn verify_log(
    log: SharedLog,
    trusted: TrustedKeys,
    mut progress: impl FnMut(Position, Position),
) -> Result<Summary, VerifyError> {
    let end = log.last_position().await?;
    let mut verifier = Verifier::with_signature_thread(trusted);
    let read = |after: Position| {
        let log = log.clone();
        tokio::spawn(async move { log.read_raw_after(after, PAGE).await })
    };
    let mut next = read(0);
    loop {
        let page = next
            .await
            .map_err(|e| LogError::Unavailable(format!("a log read panicked: {e}")))??;
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        // Read the next page while this one is hashed.
        next = read(last);
        for event in &page {
            verifier
                .push(event.position, &event.subject, &event.bytes)
                .map_err(VerifyError::Mismatch)?;
        }
        progress(last, end.max(last));
    }
    verifier.finish(end).map_err(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use idstream_auth::KeyRing;
    use idstream_domain::events::TenantRenamed;
    use idstream_domain::{Actor, AggregateType, DomainEvent, Metadata, StreamKey};
    use time::macros::datetime;
    use ulid::Ulid;

    use super::*;
    use crate::checkpoint::{Signer, chain_stream};
    use crate::link::Chain;

    /// An event as a log stores it.
    #[derive(Debug, Clone, PartialEq)]
    struct Stored {
        position: Position,
        subject: String,
        bytes: Vec<u8>,
    }

    fn meta() -> Metadata {
        Metadata {
            actor: Actor::system("test"),
            occurred_at: datetime!(2026-03-01 12:00 UTC),
            correlation_id: "c".into(),
            causation_id: None,
        }
    }

    fn tenant_event(i: u64) -> (String, Vec<u8>) {
        let stream = StreamKey::new(Some("acme".parse().unwrap()), AggregateType::Tenant, "acme");
        let envelope = DomainEvent::TenantRenamed(TenantRenamed {
            name: format!("name {i}"),
        })
        .into_envelope(Ulid::from_parts(i, 1), &stream, &meta());
        (envelope.subject(), serde_json::to_vec(&envelope).unwrap())
    }

    /// Builds a log: `events` plain events, with a checkpoint signed by `signers[k]` after every
    /// `every` events (the signer changes at the given indexes).
    struct Log {
        events: Vec<Stored>,
        chain: Chain,
        pending: Vec<Hash>,
        covered_to: Position,
    }

    impl Log {
        fn new() -> Log {
            Log {
                events: Vec::new(),
                chain: Chain::default(),
                pending: Vec::new(),
                covered_to: 0,
            }
        }

        fn push(&mut self, subject: String, bytes: Vec<u8>) -> Position {
            let position = self.chain.position + 1;
            let link = self.chain.push(position, &subject, &bytes);
            self.pending.push(link);
            self.events.push(Stored {
                position,
                subject,
                bytes,
            });
            position
        }

        fn events(&mut self, n: u64) {
            for _ in 0..n {
                let (subject, bytes) = tenant_event(self.chain.position + 1);
                self.push(subject, bytes);
            }
        }

        /// Checkpoints everything so far; returns the checkpoint's position.
        fn checkpoint(&mut self, signer: &Signer) -> Position {
            let from = self.covered_to + 1;
            let to = self.chain.position;
            let links = self.pending.iter().map(short).collect();
            let link = *self.pending.last().unwrap();
            let checkpoint = signer.sign(from, to, link, links);
            let envelope = DomainEvent::ChainCheckpointed(checkpoint.to_event()).into_envelope(
                Ulid::new(),
                &chain_stream(),
                &meta(),
            );
            self.pending.clear();
            self.covered_to = to;
            self.push(envelope.subject(), serde_json::to_vec(&envelope).unwrap())
        }
    }

    fn ring() -> KeyRing {
        KeyRing::generate(datetime!(2026-01-01 00:00 UTC), time::Duration::minutes(5))
    }

    fn run_one(
        mut verifier: Verifier,
        events: &[Stored],
        end: Position,
    ) -> Result<Summary, Mismatch> {
        for e in events {
            if let Err(found) = verifier.push(e.position, &e.subject, &e.bytes) {
                // The verifier stops at its first mismatch.
                assert_eq!(
                    verifier.push(e.position + 1, &e.subject, &e.bytes),
                    Err(found.clone())
                );
                return Err(found);
            }
        }
        verifier.finish(end)
    }

    /// Verifies with signatures checked in place and on their own thread: the same result.
    fn run(events: &[Stored], trusted: &TrustedKeys, end: Position) -> Result<Summary, Mismatch> {
        let inline = run_one(Verifier::new(trusted.clone()), events, end);
        let threaded = run_one(
            Verifier::with_signature_thread(trusted.clone()),
            events,
            end,
        );
        assert_eq!(inline, threaded);
        inline
    }

    /// Renumbers events 1, 2, 3… as an attacker who rewrites a log must to keep it readable.
    fn renumbered(mut events: Vec<Stored>) -> Vec<Stored> {
        for (i, e) in events.iter_mut().enumerate() {
            e.position = i as u64 + 1;
        }
        events
    }

    /// 25 events, checkpoints after 10 and 20 (at positions 11 and 22), then 3 more: 28 events.
    fn sample(signer: &Signer) -> Vec<Stored> {
        let mut log = Log::new();
        log.events(10);
        assert_eq!(log.checkpoint(signer), 11);
        log.events(10);
        assert_eq!(log.checkpoint(signer), 22);
        log.events(3);
        log.events
    }

    fn at(result: Result<Summary, Mismatch>) -> Position {
        match result {
            Err(m) => m.position,
            Ok(summary) => panic!("expected a mismatch, got {summary:?}"),
        }
    }

    #[test]
    fn an_untouched_log_verifies_and_reports_what_is_not_covered_yet() {
        let ring = ring();
        let events = sample(&Signer::from_ring(&ring).unwrap());
        let trusted = TrustedKeys::from_ring(&ring);
        let summary = run(&events, &trusted, 25).unwrap();
        assert_eq!(
            summary,
            Summary {
                events: 25,
                last: 25,
                checkpoints: 2,
                covered_to: 21,
                last_checkpoint: Some(22),
            }
        );
        assert_eq!(summary.uncovered(), 4);
    }

    #[test]
    fn a_log_without_checkpoints_verifies_its_positions_only() {
        let mut log = Log::new();
        log.events(5);
        let summary = run(&log.events, &TrustedKeys::default(), 5).unwrap();
        assert_eq!((summary.checkpoints, summary.uncovered()), (0, 5));
    }

    #[test]
    fn a_changed_event_is_named() {
        let ring = ring();
        let trusted = TrustedKeys::from_ring(&ring);
        let original = sample(&Signer::from_ring(&ring).unwrap());
        for victim in [1, 7, 10, 11, 15, 21] {
            let mut events = original.clone();
            let bytes = &mut events[victim as usize - 1].bytes;
            let at_brace = bytes.len() - 3;
            bytes[at_brace] ^= 1;
            assert_eq!(at(run(&events, &trusted, 25)), victim, "changed {victim}");
        }
        // Beyond the last checkpoint a change cannot be seen yet.
        let mut events = original.clone();
        events[23].bytes.push(b' ');
        assert!(run(&events, &trusted, 25).is_ok());
    }

    #[test]
    fn a_removed_or_reordered_event_is_named_where_the_log_first_differs() {
        let ring = ring();
        let trusted = TrustedKeys::from_ring(&ring);
        let original = sample(&Signer::from_ring(&ring).unwrap());

        let mut removed = original.clone();
        removed.remove(4);
        assert_eq!(at(run(&renumbered(removed), &trusted, 24)), 5);

        let mut swapped = original.clone();
        swapped.swap(13, 16);
        assert_eq!(at(run(&renumbered(swapped), &trusted, 25)), 14);

        // A removed checkpoint: the next one finds its position holding another event.
        let mut removed = original.clone();
        removed.remove(10);
        assert_eq!(at(run(&renumbered(removed), &trusted, 24)), 11);
    }

    #[test]
    fn missing_and_repeated_positions_are_named() {
        let ring = ring();
        let trusted = TrustedKeys::from_ring(&ring);
        let original = sample(&Signer::from_ring(&ring).unwrap());

        let mut gap = original.clone();
        gap.remove(6); // position 7 deleted, positions kept (JetStream)
        let found = run(&gap, &trusted, 25).unwrap_err();
        assert_eq!(found.position, 7);
        assert!(found.reason.contains("position 7 is missing"), "{found}");

        let mut repeated = original.clone();
        repeated.insert(3, original[2].clone());
        assert_eq!(at(run(&repeated, &trusted, 25)), 3);

        // The tail deleted: the log's last position says more than its events.
        let tail = &original[..24];
        let found = run(tail, &trusted, 25).unwrap_err();
        assert_eq!(found.position, 25);
    }

    #[test]
    fn a_forged_or_altered_checkpoint_is_named() {
        let ring = ring();
        let trusted = TrustedKeys::from_ring(&ring);
        let original = sample(&Signer::from_ring(&ring).unwrap());

        // An attacker changes event 5 and rewrites the checkpoint's links to match,
        // but cannot sign: the checkpoint at 11 is named.
        let mut events = original.clone();
        events[4].bytes.push(b' ');
        let mut rebuilt = Log::new();
        for e in &events[..10] {
            rebuilt.push(e.subject.clone(), e.bytes.clone());
        }
        let forger = Signer::from_ring(&KeyRing::generate(
            datetime!(2026-01-01 00:00 UTC),
            time::Duration::minutes(5),
        ))
        .unwrap();
        rebuilt.checkpoint(&forger);
        let mut forged: serde_json::Value =
            serde_json::from_slice(&rebuilt.events[10].bytes).unwrap();
        // Keep the real key id and public key, with the forger's signature.
        let real: serde_json::Value = serde_json::from_slice(&original[10].bytes).unwrap();
        forged["data"]["key"] = real["data"]["key"].clone();
        forged["data"]["public_key"] = real["data"]["public_key"].clone();
        events[10].bytes = serde_json::to_vec(&forged).unwrap();
        let found = run(&events, &trusted, 25).unwrap_err();
        assert_eq!(found.position, 11, "{found}");
        assert!(found.reason.contains("signature"), "{found}");

        // The same with the forger's own key: everything verifies but the trust, which names
        // the first position the trusted checkpoints no longer vouch for.
        let mut events = original.clone();
        events[4].bytes.push(b' ');
        let mut rebuilt = Log::new();
        for e in &events[..10] {
            rebuilt.push(e.subject.clone(), e.bytes.clone());
        }
        rebuilt.checkpoint(&forger);
        for e in &events[11..21] {
            rebuilt.push(e.subject.clone(), e.bytes.clone());
        }
        rebuilt.checkpoint(&forger);
        let found = run(&rebuilt.events, &trusted, 22).unwrap_err();
        assert_eq!(found.position, 1, "{found}");
        assert!(found.reason.contains("not a trusted key"), "{found}");

        // Something that is no checkpoint on the chain's subject.
        let mut events = original.clone();
        events[10].bytes = tenant_event(99).1;
        assert_eq!(at(run(&events, &trusted, 25)), 11);
    }

    /// A log of `checkpoints` checkpoints after every 3 events, and the position of each.
    fn long_log(signer: &Signer, checkpoints: usize) -> (Vec<Stored>, Vec<Position>) {
        let mut log = Log::new();
        let at = (0..checkpoints)
            .map(|_| {
                log.events(3);
                log.checkpoint(signer)
            })
            .collect();
        (log.events, at)
    }

    /// The checkpoint stored as `bytes`, its signature replaced by one that does not verify.
    fn unsigned(bytes: &[u8]) -> Vec<u8> {
        let mut value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let other = Signer::from_ring(&ring())
            .unwrap()
            .sign(1, 1, [0; 32], vec![[0; 8]]);
        value["data"]["signature"] = other.to_event().signature.into();
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn the_first_bad_signature_is_named_however_many_checkpoints_wait_for_theirs() {
        let ring = ring();
        let trusted = TrustedKeys::from_ring(&ring);
        // More checkpoints than the signature thread queues.
        let (original, stored_at) =
            long_log(&Signer::from_ring(&ring).unwrap(), 2 * SIGNATURE_QUEUE + 8);
        let end = original.len() as Position;
        assert!(run(&original, &trusted, end).is_ok());
        for k in [
            1,
            SIGNATURE_QUEUE - 1,
            SIGNATURE_QUEUE,
            2 * SIGNATURE_QUEUE + 5,
        ] {
            let victim = stored_at[k];
            let mut events = original.clone();
            let i = victim as usize - 1;
            events[i].bytes = unsigned(&events[i].bytes);
            let found = run(&events, &trusted, end).unwrap_err();
            assert_eq!(found.position, victim, "{found}");
            assert!(found.reason.contains("does not verify"), "{found}");

            // Also when later checkpoints are bad too, and when events are changed after it:
            // its checkpoint is read first.
            let later = stored_at[(k + 7).min(stored_at.len() - 1)];
            let j = later as usize - 1;
            events[j].bytes = unsigned(&events[j].bytes);
            events[j - 2].bytes.push(b' ');
            let found = run(&events, &trusted, end).unwrap_err();
            assert_eq!(found.position, victim, "{found}");

            // An event changed in its own range is named after the signature: a checkpoint
            // that is not what its signer signed cannot locate anything.
            let mut events = original.clone();
            events[i].bytes = unsigned(&events[i].bytes);
            events[i - 2].bytes.push(b' ');
            assert_eq!(at(run(&events, &trusted, end)), victim);
        }
        // Only an event changed: named, after every signature before it has been checked.
        let mut events = original.clone();
        events[stored_at[2 * SIGNATURE_QUEUE] as usize - 3]
            .bytes
            .push(b' ');
        assert_eq!(
            at(run(&events, &trusted, end)),
            stored_at[2 * SIGNATURE_QUEUE] - 2
        );
        // A tail cut off after a bad signature: the signature comes first.
        let mut events = original.clone();
        let i = stored_at[3] as usize - 1;
        events[i].bytes = unsigned(&events[i].bytes);
        events.truncate(i + 3);
        assert_eq!(at(run(&events, &trusted, end)), stored_at[3]);
    }

    #[test]
    fn a_checkpoint_of_the_first_chain_format_is_named_as_such() {
        // What an earlier build wrote: the same fields, signed for chain format version 1.
        let ring = ring();
        let trusted = TrustedKeys::from_ring(&ring);
        let signer = Signer::from_ring(&ring).unwrap();
        let mut log = Log::new();
        log.events(3);
        let position = log.checkpoint(&signer);
        let i = position as usize - 1;
        let mut checkpoint = Checkpoint::decode(&log.events[i].bytes).unwrap();
        checkpoint.signature = signer.sign_in_format_v1(&checkpoint);
        let mut value: serde_json::Value = serde_json::from_slice(&log.events[i].bytes).unwrap();
        value["data"]["signature"] = checkpoint.to_event().signature.into();
        log.events[i].bytes = serde_json::to_vec(&value).unwrap();
        let found = run(&log.events, &trusted, position).unwrap_err();
        assert_eq!(found.position, position);
        assert!(
            found.reason.contains("version 1 of the chain format"),
            "{found}"
        );
    }

    #[test]
    fn old_checkpoints_of_a_rotated_key_are_vouched_for_by_the_newest_one() {
        let old = ring();
        let mut ring = old.clone();
        let mut log = Log::new();
        log.events(4);
        log.checkpoint(&Signer::from_ring(&ring).unwrap());
        ring.rotate(datetime!(2026-01-02 00:00 UTC));
        // The old key is pruned from the ring: only the new one is trusted.
        ring.prune(datetime!(2026-02-01 00:00 UTC));
        assert_eq!(ring.kids().len(), 1);
        log.events(4);
        log.checkpoint(&Signer::from_ring(&ring).unwrap());
        let trusted = TrustedKeys::from_ring(&ring);
        let summary = run(&log.events, &trusted, 10).unwrap();
        assert_eq!((summary.checkpoints, summary.covered_to), (2, 9));

        // Had the newest checkpoint been signed by the pruned key, nothing would be vouched for.
        let mut log = Log::new();
        log.events(4);
        log.checkpoint(&Signer::from_ring(&old).unwrap());
        let found = run(&log.events, &trusted, 5).unwrap_err();
        assert_eq!(found.position, 1);
    }
}
