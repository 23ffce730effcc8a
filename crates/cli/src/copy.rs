//! Copying a log's stored events into another log at the same positions: the engine of
//! `idstream migrate`, `log import` and `restore`.
//!
//! The target must be empty, or hold a prefix of the source, byte for byte (a copy that was
//! interrupted): [`Copy::start`] compares every event the target holds with the source's at the
//! same position before anything is written, and refuses a target that holds anything else.
//! The copy then continues after the target's last event with `EventLog::import_raw`. Along the
//! way it computes the tamper-evidence chain over the source's events, which the callers compare
//! with the target's own afterwards.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::Context;
use idstream_chain::Chain;
use idstream_eventlog::{Position, RawEvent, SharedLog};

use crate::logfile;

/// How many events are read or imported at a time.
const PAGE: usize = 1024;

/// Where the events come from.
pub enum Source {
    /// A log, from position 1 up to and including `until`.
    Log {
        log: SharedLog,
        until: Position,
        after: Position,
    },
    /// A log file, checked as it is read.
    File(Box<logfile::Reader>),
}

impl Source {
    /// The log `log` up to `until` (its last position when the copy starts, for instance).
    pub fn log(log: SharedLog, until: Position) -> Source {
        Source::Log {
            log,
            until,
            after: 0,
        }
    }

    /// The next page of events, checked to follow the previous one; empty at the end.
    pub async fn next_page(&mut self) -> anyhow::Result<Vec<RawEvent>> {
        match self {
            Source::Log { log, until, after } => {
                if *after >= *until {
                    return Ok(Vec::new());
                }
                let max = usize::try_from(*until - *after)
                    .unwrap_or(usize::MAX)
                    .min(PAGE);
                let page = log
                    .read_raw_after(*after, max)
                    .await
                    .context("reading the source log")?;
                anyhow::ensure!(
                    !page.is_empty(),
                    "the source log ends at position {after}, before {until}"
                );
                for event in &page {
                    anyhow::ensure!(
                        event.position == *after + 1,
                        "the source log has a gap: position {} follows {after}",
                        event.position
                    );
                    *after = event.position;
                }
                Ok(page)
            }
            Source::File(reader) => reader.next_page(PAGE),
        }
    }
}

/// What a finished copy did.
#[derive(Debug, Clone, Copy)]
pub struct Copied {
    /// Events the target held already (an interrupted copy resumed).
    pub already: Position,
    /// Events written now.
    pub copied: u64,
    /// The last position, in source and target.
    pub last: Position,
    /// The tamper-evidence chain link after `last`, computed over the source's events.
    pub chain: [u8; 32],
}

/// A copy in progress; see the module documentation.
pub struct Copy {
    source: Source,
    target: SharedLog,
    chain: Chain,
    /// Source events read but not yet written.
    pending: VecDeque<RawEvent>,
    already: Position,
}

impl Copy {
    /// Checks that the target is empty or a prefix of the source. Writes nothing.
    pub async fn start(mut source: Source, target: SharedLog) -> anyhow::Result<Copy> {
        let target_last = target
            .last_position()
            .await
            .context("reading the target log's last position")?;
        let mut chain = Chain::default();
        let mut pending = VecDeque::new();
        let mut cursor = 0;
        while cursor < target_last {
            let theirs = target
                .read_raw_after(cursor, PAGE)
                .await
                .context("reading the target log")?;
            anyhow::ensure!(
                !theirs.is_empty(),
                "the target log ends before its last position"
            );
            for held in theirs {
                let ours = match pending.pop_front() {
                    Some(event) => event,
                    None => {
                        pending.extend(source.next_page().await?);
                        pending.pop_front().ok_or_else(|| {
                            anyhow::anyhow!(
                                "the target is not empty: it holds {target_last} events, more than \
                                 the {cursor} of the source; refusing to write into it"
                            )
                        })?
                    }
                };
                if ours != held {
                    anyhow::bail!(
                        "the target is not empty and is no interrupted copy of this log: its event \
                         at position {} differs from the source's; refusing to write into it \
                         (use a new stream or an empty data directory)",
                        held.position
                    );
                }
                chain.push(ours.position, &ours.subject, &ours.bytes);
                cursor = held.position;
            }
        }
        Ok(Copy {
            source,
            target,
            chain,
            pending,
            already: target_last,
        })
    }

    /// Says on standard error that the target held events already, if it did: `what` is the
    /// kind of copy ("migration", "import", "restore").
    pub fn tell_resumed(&self, label: &str, what: &str, total: Position) {
        if self.already == 0 {
            return;
        }
        if self.already == total {
            eprintln!(
                "{label}: the target already holds all {total} events of this {what}: nothing to copy"
            );
        } else {
            eprintln!(
                "{label}: the target already holds the first {} events of this {what} (an \
                 interrupted {label}): continuing after them",
                self.already
            );
        }
    }

    /// Copies the rest of the source. `progress(position)` is called after each page.
    pub async fn run(mut self, mut progress: impl FnMut(Position)) -> anyhow::Result<Copied> {
        let mut copied = 0;
        loop {
            if self.pending.is_empty() {
                self.pending.extend(self.source.next_page().await?);
            }
            if self.pending.is_empty() {
                break;
            }
            let page: Vec<RawEvent> = self.pending.drain(..).collect();
            for event in &page {
                self.chain
                    .push(event.position, &event.subject, &event.bytes);
            }
            let (first, count) = (page[0].position, page.len() as u64);
            self.target
                .import_raw(page)
                .await
                .map_err(|e| anyhow::anyhow!("writing positions {first}.. into the target: {e}"))?;
            copied += count;
            progress(self.chain.position);
        }
        Ok(Copied {
            already: self.already,
            copied,
            last: self.chain.position,
            chain: self.chain.link,
        })
    }
}

/// The tamper-evidence chain over `log` as stored: its last position and the link after it.
pub async fn chain_of(log: &SharedLog) -> anyhow::Result<(Position, [u8; 32])> {
    let mut chain = Chain::default();
    loop {
        let page = log
            .read_raw_after(chain.position, PAGE)
            .await
            .context("reading the log")?;
        if page.is_empty() {
            return Ok((chain.position, chain.link));
        }
        for event in page {
            anyhow::ensure!(
                event.position == chain.position + 1,
                "the log has a gap: position {} follows {}",
                event.position,
                chain.position
            );
            chain.push(event.position, &event.subject, &event.bytes);
        }
    }
}

/// Progress on standard error, at most every two seconds.
pub fn progress(label: &'static str, total: Position) -> impl FnMut(Position) {
    let mut last = Instant::now();
    move |done| {
        if last.elapsed().as_secs() >= 2 || done == total {
            last = Instant::now();
            eprintln!("{label}: {done}/{total} events");
        }
    }
}
