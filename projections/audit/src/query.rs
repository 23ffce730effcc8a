//! Answering audit queries.
//!
//! A query becomes a position window (the time range through the time index, narrowed by the
//! cursor), a set of candidate index paths (one per filter that has an index), and a direction.
//! The path that looks sparsest in that window is read, and every candidate it yields is
//! checked against all filters on its entry; so the answer never depends on which path was
//! chosen, only the cost does. A path's sparseness is measured by reading a few keys of each
//! candidate path from the start of the window: the one whose first keys reach furthest (or
//! that runs out first) lists the fewest events there.

use std::collections::{BTreeSet, HashSet};

use idstream_domain::events::CATALOGUE;
use idstream_domain::{ActorKind, AggregateType, UserId};
use idstream_eventlog::Position;

use crate::fold::{Clock, SessionFacts, Stored, USER_ERASED, bucket, nanos};
use crate::keys;
use crate::{
    AuditError, AuditFilter, AuditPage, AuditQuery, Cursor, MAX_LIMIT, Order, SCAN_BUDGET, Scope,
};

/// Keys read from each candidate path to tell which is sparsest.
const PROBE: usize = 16;

/// Whether the service writes events of this type (or it is the erasure event).
pub(crate) fn known_event_type(event_type: &str) -> bool {
    event_type == USER_ERASED || CATALOGUE.iter().any(|(name, _, _)| *name == event_type)
}

/// The event types of one aggregate type.
fn types_of(kind: AggregateType) -> BTreeSet<String> {
    let mut types: BTreeSet<String> = CATALOGUE
        .iter()
        .filter(|(_, _, aggregate)| *aggregate == kind)
        .map(|(name, _, _)| (*name).to_owned())
        .collect();
    if kind == AggregateType::User {
        types.insert(USER_ERASED.to_owned());
    }
    types
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Ascending positions: older to newer.
    Up,
    /// Descending positions: newer to older.
    Down,
}

/// A union of indexes (prefixes of blocks of positions, see `keys`), or the entries themselves
/// (`keys::ENTRIES`, blocks of entries).
type Path = Vec<Vec<u8>>;

/// One index of a path, read block by block in one direction within a window.
struct Head {
    blocks: sled::Iter,
    /// The current block's positions within the window, in reading order, reversed so that
    /// the next one is popped from the end.
    pending: Vec<Position>,
    /// The blocks are blocks of entries, not of an index.
    entries: bool,
    lo: Position,
    hi: Position,
    dir: Dir,
}

impl Head {
    fn new(tree: &sled::Tree, prefix: &[u8], lo: Position, hi: Position, dir: Dir) -> Head {
        let entries = prefix == keys::ENTRIES;
        let (first, last) = if entries {
            (lo / keys::ENTRY_SPAN, hi / keys::ENTRY_SPAN)
        } else {
            (keys::block_of(lo), keys::block_of(hi))
        };
        Head {
            blocks: tree.range(keys::at(prefix, first)..=keys::at(prefix, last)),
            pending: Vec::new(),
            entries,
            lo,
            hi,
            dir,
        }
    }

    fn next(&mut self) -> Result<Option<Position>, AuditError> {
        loop {
            if let Some(position) = self.pending.pop() {
                return Ok(Some(position));
            }
            let item = match self.dir {
                Dir::Up => self.blocks.next(),
                Dir::Down => self.blocks.next_back(),
            };
            let (key, value) = match item {
                None => return Ok(None),
                Some(item) => item?,
            };
            let corrupt = |reason: &str| AuditError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: reason.to_owned(),
            };
            let mut positions = if self.entries {
                entries_of(&key, &value)?
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect()
            } else {
                keys::block_positions(&key, &value)
                    .ok_or_else(|| corrupt("an index block that is not a list of positions"))?
            };
            positions.retain(|p| (self.lo..=self.hi).contains(p));
            if self.dir == Dir::Up {
                positions.reverse();
            }
            self.pending = positions;
        }
    }
}

/// The entries of a block of entries (see `keys`).
fn entries_of<'v>(key: &[u8], value: &'v [u8]) -> Result<Vec<(Position, &'v [u8])>, AuditError> {
    keys::block_entries(key, value).ok_or_else(|| AuditError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "not a block of entries".into(),
    })
}

/// The positions of a path in a window, in one direction, merged across its indexes.
struct Positions {
    heads: Vec<(Head, Option<Position>)>,
    dir: Dir,
}

impl Positions {
    fn new(
        tree: &sled::Tree,
        path: &Path,
        lo: Position,
        hi: Position,
        dir: Dir,
    ) -> Result<Self, AuditError> {
        let mut heads = Vec::with_capacity(path.len());
        for prefix in path {
            let mut head = Head::new(tree, prefix, lo, hi, dir);
            let first = head.next()?;
            heads.push((head, first));
        }
        Ok(Positions { heads, dir })
    }

    fn next(&mut self) -> Result<Option<Position>, AuditError> {
        let best = self
            .heads
            .iter()
            .filter_map(|(_, head)| *head)
            .reduce(|a, b| match self.dir {
                Dir::Up => a.min(b),
                Dir::Down => a.max(b),
            });
        let Some(position) = best else {
            return Ok(None);
        };
        for (head, current) in &mut self.heads {
            if *current == Some(position) {
                *current = head.next()?;
            }
        }
        Ok(Some(position))
    }
}

/// What one scan of a path found.
struct Scanned {
    matched: Vec<Stored>,
    /// The last position examined.
    last: Option<Position>,
    /// The scan stopped at the budget, not at the end of the window or at `want` matches.
    partial: bool,
}

/// The query side of the audit read model. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    tree: sled::Tree,
    budget: usize,
}

impl Audit {
    /// Queries over the audit projection's tree.
    pub fn new(tree: sled::Tree) -> Audit {
        Audit {
            tree,
            budget: SCAN_BUDGET,
        }
    }

    /// The same, examining at most `budget` candidates per page (tests use small budgets).
    pub fn with_scan_budget(mut self, budget: usize) -> Audit {
        self.budget = budget.max(1);
        self
    }

    /// One page of the trail.
    pub fn query(&self, query: &AuditQuery) -> Result<AuditPage, AuditError> {
        let limit = query.limit.clamp(1, MAX_LIMIT);
        let display = match query.order {
            Order::NewestFirst => Dir::Down,
            Order::OldestFirst => Dir::Up,
        };
        let empty = AuditPage {
            entries: Vec::new(),
            next: None,
            prev: None,
            partial: false,
        };
        let filter = &query.filter;
        let Some(paths) = paths(&self.tree, filter)? else {
            return Ok(empty);
        };
        let Some((window_lo, window_hi)) = self.window(filter)? else {
            return Ok(empty);
        };
        let (dir, lo, hi) = match query.cursor {
            None => (display, window_lo, window_hi),
            Some(Cursor::OlderThan(p)) => {
                (Dir::Down, window_lo, window_hi.min(p.saturating_sub(1)))
            }
            Some(Cursor::NewerThan(p)) => (Dir::Up, window_lo.max(p.saturating_add(1)), window_hi),
        };

        let scanned = if lo <= hi {
            let path = self.choose(&paths, lo, hi, dir)?;
            self.scan(&path, filter, lo, hi, dir, limit + 1)?
        } else {
            Scanned {
                matched: Vec::new(),
                last: None,
                partial: false,
            }
        };
        let Scanned {
            mut matched,
            last,
            partial,
        } = scanned;
        let more = matched.len() > limit;
        matched.truncate(limit);
        let onward = |p: Position| match dir {
            Dir::Down => Cursor::OlderThan(p),
            Dir::Up => Cursor::NewerThan(p),
        };
        let forward = match (more, partial) {
            (true, _) => matched.last().map(|e| onward(e.position)),
            (false, true) => last.map(onward),
            (false, false) => None,
        };

        // The other side of the page: only after a cursor (a first page starts at an end), and
        // only if something there matches.
        let backward = match query.cursor {
            None => None,
            Some(cursor) => {
                let boundary = match (matched.first(), cursor) {
                    (Some(first), _) => match dir {
                        Dir::Down => Cursor::NewerThan(first.position),
                        Dir::Up => Cursor::OlderThan(first.position),
                    },
                    (None, Cursor::OlderThan(p)) => Cursor::NewerThan(p.saturating_sub(1)),
                    (None, Cursor::NewerThan(p)) => Cursor::OlderThan(p.saturating_add(1)),
                };
                let (back_dir, back_lo, back_hi) = match boundary {
                    Cursor::OlderThan(b) => {
                        (Dir::Down, window_lo, window_hi.min(b.saturating_sub(1)))
                    }
                    Cursor::NewerThan(b) => {
                        (Dir::Up, window_lo.max(b.saturating_add(1)), window_hi)
                    }
                };
                let exists = back_lo <= back_hi && {
                    let path = self.choose(&paths, back_lo, back_hi, back_dir)?;
                    let probe = self.scan(&path, filter, back_lo, back_hi, back_dir, 1)?;
                    !probe.matched.is_empty() || probe.partial
                };
                exists.then_some(boundary)
            }
        };

        let (next, prev) = if dir == display {
            (forward, backward)
        } else {
            matched.reverse();
            (backward, forward)
        };
        let erased = self.erased_among(&matched)?;
        let entries = matched
            .into_iter()
            .map(|stored| crate::summary::entry(stored, &erased))
            .collect();
        Ok(AuditPage {
            entries,
            next,
            prev,
            partial,
        })
    }

    /// The positions that can hold entries of the filter's time range: from the first position
    /// whose high-water time reached `from` (no earlier event can be as late) to the last one
    /// whose high-water time is below `to` plus the largest step back in time the log has shown
    /// (no later event can be that early). `None` when nothing can match.
    fn window(&self, filter: &AuditFilter) -> Result<Option<(Position, Position)>, AuditError> {
        let last = match self.tree.scan_prefix(keys::ENTRIES).next_back() {
            None => return Ok(None),
            Some(block) => {
                let (key, value) = block?;
                match entries_of(&key, &value)?.last() {
                    Some((position, _)) => *position,
                    None => return Ok(None),
                }
            }
        };
        let (mut lo, mut hi) = (1, last);
        if filter.from.is_none() && filter.to.is_none() {
            return Ok(Some((lo, hi)));
        }
        let clock = match self.tree.get(keys::CLOCK)? {
            None => Clock::default(),
            Some(bytes) => Clock::decode(&bytes).ok_or_else(|| AuditError::Corrupt {
                key: "c/clock".into(),
                reason: format!("{} bytes, not a clock", bytes.len()),
            })?,
        };
        if let Some(from) = filter.from {
            match self.first_reaching(bucket(nanos(from)))? {
                Some(position) => lo = lo.max(position),
                None => return Ok(None),
            }
        }
        if let Some(to) = filter.to {
            let limit = nanos(to).saturating_add(clock.max_skew_ns);
            let last = bucket(limit.saturating_sub(1));
            if last < i64::MAX
                && let Some(position) = self.first_reaching(last + 1)?
            {
                hi = hi.min(position.saturating_sub(1));
            }
        }
        Ok((lo <= hi).then_some((lo, hi)))
    }

    /// The first position whose high-water time reached the bucket.
    fn first_reaching(&self, bucket: i64) -> Result<Option<Position>, AuditError> {
        match self.tree.range(keys::time(bucket)..).next() {
            Some(found) => {
                let (key, value) = found?;
                if !key.starts_with(keys::TIME) {
                    return Ok(None);
                }
                let bytes: [u8; 8] =
                    value.as_ref().try_into().map_err(|_| AuditError::Corrupt {
                        key: String::from_utf8_lossy(&key).into_owned(),
                        reason: "a time index value is not a position".into(),
                    })?;
                Ok(Some(Position::from_be_bytes(bytes)))
            }
            None => Ok(None),
        }
    }

    /// The sparsest of the candidate paths in the window (see the module documentation).
    fn choose(
        &self,
        paths: &[Path],
        lo: Position,
        hi: Position,
        dir: Dir,
    ) -> Result<Path, AuditError> {
        if paths.len() == 1 {
            return Ok(paths[0].clone());
        }
        let span = (hi - lo).saturating_add(1) as f64;
        let mut best: Option<(f64, usize)> = None;
        for (index, path) in paths.iter().enumerate() {
            let mut positions = Positions::new(&self.tree, path, lo, hi, dir)?;
            let (mut seen, mut reach) = (0usize, None);
            while seen < PROBE {
                match positions.next()? {
                    Some(position) => {
                        seen += 1;
                        reach = Some(position);
                    }
                    None => break,
                }
            }
            let covered = match (seen < PROBE, reach) {
                (false, Some(reach)) => match dir {
                    Dir::Up => (reach - lo).saturating_add(1) as f64,
                    Dir::Down => (hi - reach).saturating_add(1) as f64,
                },
                _ => span,
            };
            let density = seen as f64 / covered;
            if best.is_none_or(|(lowest, _)| density < lowest) {
                best = Some((density, index));
            }
        }
        Ok(paths[best.map_or(0, |(_, index)| index)].clone())
    }

    /// Reads `path` in the window and keeps the entries that pass the filter, up to `want`.
    fn scan(
        &self,
        path: &Path,
        filter: &AuditFilter,
        lo: Position,
        hi: Position,
        dir: Dir,
        want: usize,
    ) -> Result<Scanned, AuditError> {
        let mut positions = Positions::new(&self.tree, path, lo, hi, dir)?;
        let mut scanned = Scanned {
            matched: Vec::new(),
            last: None,
            partial: false,
        };
        let mut examined = 0;
        // The block of entries read last: consecutive candidates often share one.
        let mut block: Option<(Vec<u8>, sled::IVec)> = None;
        while let Some(position) = positions.next()? {
            if examined == self.budget {
                scanned.partial = true;
                break;
            }
            examined += 1;
            scanned.last = Some(position);
            let key = keys::entry_block(position);
            if block.as_ref().is_none_or(|(k, _)| *k != key) {
                block = self.tree.get(&key)?.map(|value| (key, value));
            }
            // Index keys and entries are committed in one batch: an index key without an entry
            // is damage.
            let missing = || AuditError::Corrupt {
                key: format!("e/{position}"),
                reason: "indexed but missing".into(),
            };
            let (key, value) = block.as_ref().ok_or_else(missing)?;
            let json = entries_of(key, value)?
                .into_iter()
                .find_map(|(p, json)| (p == position).then_some(json))
                .ok_or_else(missing)?;
            let stored: Stored = serde_json::from_slice(json).map_err(|e| AuditError::Corrupt {
                key: format!("e/{position}"),
                reason: e.to_string(),
            })?;
            if matches(filter, &stored) {
                scanned.matched.push(stored);
                if scanned.matched.len() >= want {
                    break;
                }
            }
        }
        Ok(scanned)
    }

    /// The users among those the entries name who were erased.
    fn erased_among(&self, entries: &[Stored]) -> Result<HashSet<UserId>, AuditError> {
        let mut erased = HashSet::new();
        if entries.is_empty() || self.tree.scan_prefix(keys::ERASED).next().is_none() {
            return Ok(erased);
        }
        let mut named = HashSet::new();
        for entry in entries {
            named.extend(entry.subject);
            named.extend(entry.actor_owner);
            if entry.actor.kind == ActorKind::User
                && let Ok(user) = entry.actor.id.parse::<UserId>()
            {
                named.insert(user);
            }
        }
        for user in named {
            if self.tree.contains_key(keys::erased(&user))? {
                erased.insert(user);
            }
        }
        Ok(erased)
    }
}

/// The candidate index paths of a filter (always at least one); `None` when no event type can
/// match.
fn paths(tree: &sled::Tree, filter: &AuditFilter) -> Result<Option<Vec<Path>>, AuditError> {
    let types: Option<BTreeSet<String>> = match filter.aggregate_type {
        None if filter.event_types.is_empty() => None,
        None => Some(filter.event_types.clone()),
        Some(kind) => {
            let of_kind = types_of(kind);
            let types: BTreeSet<String> = if filter.event_types.is_empty() {
                of_kind
            } else {
                of_kind.intersection(&filter.event_types).cloned().collect()
            };
            if types.is_empty() {
                return Ok(None);
            }
            Some(types)
        }
    };
    // The global scope has no index of its own: its events are found through the others (or
    // the entries), and the scope is checked on each.
    let scope = match &filter.scope {
        Scope::All | Scope::Global => None,
        Scope::Tenant(tenant) => Some(tenant.as_str()),
    };
    let mut paths: Vec<Path> = Vec::new();
    match (scope, &types) {
        (Some(scope), Some(types)) => {
            paths.push(types.iter().map(|t| keys::scope_type(scope, t)).collect())
        }
        (Some(scope), None) => paths.push(vec![keys::scope(scope)]),
        (None, Some(types)) => paths.push(types.iter().map(|t| keys::event_type(t)).collect()),
        (None, None) => {}
    }
    if let Some(actor) = &filter.actor {
        match actor.kind {
            // The fold lists a user actor under the user's index, or, were its id not a user
            // id, under the index of other actors.
            ActorKind::User if let Ok(user) = actor.id.parse::<UserId>() => {
                paths.push(vec![keys::user(&user)])
            }
            kind => paths.push(vec![keys::actor(kind, &actor.id)]),
        }
    }
    if let Some(subject) = &filter.subject {
        paths.push(vec![keys::user(subject)]);
    }
    if let (Some(kind), Some(id)) = (filter.aggregate_type, &filter.aggregate_id) {
        let mut path = vec![keys::aggregate(kind, id)];
        // The events of an aggregate found through its user are listed under that user.
        if keys::through_user(kind)
            && let Some(user) = aggregate_user(tree, kind, id)?
        {
            path.push(keys::user(&user));
        }
        paths.push(path);
    }
    if paths.is_empty() {
        paths.push(vec![keys::ENTRIES.to_vec()]);
    }
    Ok(Some(paths))
}

/// The user the fold lists an aggregate's events under (see `keys::through_user`), if known.
fn aggregate_user(
    tree: &sled::Tree,
    kind: AggregateType,
    id: &str,
) -> Result<Option<UserId>, AuditError> {
    let key = match kind {
        AggregateType::Session => keys::session(id),
        AggregateType::Invitation => keys::invitation(id),
        AggregateType::ApiKey => match id.parse::<ulid::Ulid>() {
            Ok(id) => keys::api_key(&id),
            Err(_) => return Ok(None),
        },
        _ => return Ok(id.parse().ok()),
    };
    let Some(bytes) = tree.get(&key)? else {
        return Ok(None);
    };
    if kind == AggregateType::Session {
        return Ok(serde_json::from_slice::<SessionFacts>(&bytes)
            .ok()
            .map(|facts| facts.user));
    }
    Ok(std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.parse().ok()))
}

/// Whether an entry passes every filter.
pub(crate) fn matches(filter: &AuditFilter, entry: &Stored) -> bool {
    let in_scope = match &filter.scope {
        Scope::All => true,
        Scope::Global => entry.tenant.is_none(),
        Scope::Tenant(tenant) => entry.tenants.contains(tenant),
    };
    in_scope
        && filter
            .actor
            .as_ref()
            .is_none_or(|a| a.kind == entry.actor.kind && a.id == entry.actor.id)
        && filter.subject.is_none_or(|s| entry.subject == Some(s))
        && filter
            .aggregate_type
            .is_none_or(|k| entry.aggregate_type == k)
        && filter
            .aggregate_id
            .as_ref()
            .is_none_or(|id| entry.aggregate_id.as_ref() == Some(id))
        && (filter.event_types.is_empty() || filter.event_types.contains(&entry.event_type))
        && filter.from.is_none_or(|from| entry.time >= from)
        && filter.to.is_none_or(|to| entry.time < to)
}
