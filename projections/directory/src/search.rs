//! The user directory's search index: who matches a text, a role, a status, a date range, in
//! which order. It is kept in memory only, beside the directory tree: built from the tree when
//! the directory's runner opens it, and changed by every batch the runner commits, so it never
//! holds anything the tree does not (and writes nothing to disk, so no copy of a name or address
//! outlives an erasure there).
//!
//! **Structure.** Each user gets an ordinal (a slot). Text is [folded](crate::text::fold) and
//! indexed by its n-grams of one, two and three characters, within each field (the email, and
//! the full name "first last"), as Roaring bitmaps of ordinals: a query of up to three
//! characters is answered by one bitmap exactly, a longer one by intersecting the bitmaps of its
//! trigrams and checking each candidate's text. Word-start n-grams (at the start of a field or
//! after a character that is not a letter or digit) serve autocomplete's prefix matches. A
//! tenant's members, each of its roles, each status and "verified" are bitmaps too. Each sort
//! column is an ordered set of (key, user id, ordinal), with each key's first eight bytes (or
//! its whole value, for times and statuses) in a dense array by ordinal beside it.
//!
//! **Queries.** The filters that are bitmaps are intersected into the candidates; the rest (a
//! long text, date ranges) are checked one candidate at a time. A page is then found one of two
//! ways, whichever is cheaper: walking the sort column from the cursor and keeping candidates
//! (when they are dense), or sorting the candidates by their key prefixes, reading a slot only
//! to break a tie (when they are few). Text matches often cluster in one part of an order (the
//! users of a name share the first letters of their addresses), so a walk that runs past four
//! times its estimate gives up and sorts instead. Cursors are the sort key and user id of the
//! last row (keyset pagination), so rows added between two pages are neither skipped nor
//! repeated; a row whose sort key changes between pages may move.
//!
//! **Field matches** ([`FieldMatch`], SCIM's `eq`, `sw`, `co` and `ew` of the address, user
//! name or a name) are decided exactly for users whose fields fold to their lower case: `eq`
//! and `sw` as a range of the field's sort column (its keys equal to, then starting with, the
//! value), `co` and `ew` by the n-grams and a comparison of the field alone; a user name that a
//! tenant's provisioning client gave (held lower-cased) is compared as it is. The other users
//! (a bitmap of them is kept) are narrowed as the text search narrows and left to the caller.
//!
//! **Totals** are exact when the candidates needed no one-by-one check, or at most
//! [`EXACT_TOTAL_CHECKS`] of them; past that, `total` counts the matches among those checked
//! and is a lower bound (`total_exact: false`).

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use idstream_domain::{RoleName, TenantId, UserId};
use roaring::RoaringBitmap;
use time::OffsetDateTime;

use idstream_projection_runtime::PersonalSeal;

use crate::text::fold;
use crate::{MembershipView, UserStatus, UserView, keys};

/// How many candidates a query checks one by one to count its matches exactly.
pub const EXACT_TOTAL_CHECKS: u64 = 50_000;

/// Separates the fields of a slot's folded text; [`fold`] drops control characters, so no
/// query contains it.
const FIELD_SEPARATOR: char = '\u{1}';

/// A column a directory listing is sorted by. Ties are broken by user id, in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortColumn {
    Email,
    FirstName,
    LastName,
    CreatedAt,
    /// Users who never signed in sort before everyone who did (they are the "oldest").
    LastSignIn,
    /// In the order invited, active, suspended, inactive, erased.
    Status,
}

impl SortColumn {
    pub const ALL: [SortColumn; 6] = [
        SortColumn::Email,
        SortColumn::FirstName,
        SortColumn::LastName,
        SortColumn::CreatedAt,
        SortColumn::LastSignIn,
        SortColumn::Status,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SortColumn::Email => "email",
            SortColumn::FirstName => "first_name",
            SortColumn::LastName => "last_name",
            SortColumn::CreatedAt => "created_at",
            SortColumn::LastSignIn => "last_sign_in",
            SortColumn::Status => "status",
        }
    }

    pub fn parse(name: &str) -> Option<SortColumn> {
        SortColumn::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// An order: a column and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: SortColumn,
    pub descending: bool,
}

impl Default for Sort {
    /// By email, ascending.
    fn default() -> Sort {
        Sort {
            column: SortColumn::Email,
            descending: false,
        }
    }
}

/// The sort key of the last row of a page, and its user: where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub sort: Sort,
    pub key: CursorKey,
    pub user: UserId,
}

impl Cursor {
    /// The cursor as an opaque token for clients: URL-safe base64 of
    /// `1|<column>|<a or d>|<user>|<key>`, the key being `t<text>`, `n` (no time), `T<unix
    /// nanoseconds>` or `s<status rank>`.
    pub fn encode(&self) -> String {
        use base64::Engine;
        let key = match &self.key {
            CursorKey::Text(text) => format!("t{text}"),
            CursorKey::Time(None) => "n".to_owned(),
            CursorKey::Time(Some(time)) => format!("T{}", time.unix_timestamp_nanos()),
            CursorKey::Status(rank) => format!("s{rank}"),
        };
        let direction = if self.sort.descending { "d" } else { "a" };
        let plain = format!(
            "1|{}|{direction}|{}|{key}",
            self.sort.column.name(),
            self.user
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(plain)
    }

    /// A token made by [`Cursor::encode`]; anything else is [`SearchError::MalformedCursor`].
    pub fn decode(token: &str) -> Result<Cursor, SearchError> {
        use base64::Engine;
        let malformed = SearchError::MalformedCursor;
        if token.len() > 2048 {
            return Err(malformed);
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| malformed.clone())?;
        let plain = String::from_utf8(bytes).map_err(|_| malformed.clone())?;
        let mut parts = plain.splitn(5, '|');
        let (Some("1"), Some(column), Some(direction), Some(user), Some(key)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed);
        };
        let column = SortColumn::parse(column).ok_or(malformed.clone())?;
        let descending = match direction {
            "a" => false,
            "d" => true,
            _ => return Err(malformed),
        };
        let user = user.parse::<UserId>().map_err(|_| malformed.clone())?;
        let mut chars = key.chars();
        let key = match (chars.next(), chars.as_str()) {
            (Some('t'), text) => CursorKey::Text(text.to_owned()),
            (Some('n'), "") => CursorKey::Time(None),
            (Some('T'), nanos) => {
                let nanos = nanos.parse::<i128>().map_err(|_| malformed.clone())?;
                let time = OffsetDateTime::from_unix_timestamp_nanos(nanos)
                    .map_err(|_| malformed.clone())?;
                CursorKey::Time(Some(time))
            }
            (Some('s'), rank) => CursorKey::Status(rank.parse().map_err(|_| malformed.clone())?),
            _ => return Err(malformed),
        };
        let cursor = Cursor {
            sort: Sort { column, descending },
            key,
            user,
        };
        let fits = matches!(
            (column, &cursor.key),
            (
                SortColumn::Email | SortColumn::FirstName | SortColumn::LastName,
                CursorKey::Text(_)
            ) | (SortColumn::CreatedAt, CursorKey::Time(Some(_)))
                | (SortColumn::LastSignIn, CursorKey::Time(_))
                | (SortColumn::Status, CursorKey::Status(_))
        );
        if fits { Ok(cursor) } else { Err(malformed) }
    }
}

/// A sort key as a cursor carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorKey {
    Text(String),
    Time(Option<OffsetDateTime>),
    Status(u8),
}

/// The name under which [`Search::attributes`] finds a member by the external id their tenant's
/// provisioning client gave them (matched exactly, case included): it is no attribute name a
/// tenant can define.
pub const EXTERNAL_ID: &str = "\u{1}external_id";

/// The name under which [`Search::attributes`] finds a member by the user name their tenant's
/// provisioning client gave them, lower-cased ([`user_name_key`]).
pub const USER_NAME: &str = "\u{1}user_name";

/// The key a provisioned user name is found by: case does not count.
pub fn user_name_key(name: &str) -> String {
    name.to_lowercase()
}

/// Whom a search looks among.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The members of one tenant.
    Tenant(&'a TenantId),
    /// Every user (the platform directory).
    Everyone,
}

/// A search of the directory. Every filter given must hold.
#[derive(Debug, Clone)]
pub struct Search<'a> {
    pub scope: Scope<'a>,
    /// Matches anywhere in the email or the full name (folded), or the exact user id.
    pub text: Option<&'a str>,
    /// Any of these roles in the scope's tenant (ignored for [`Scope::Everyone`]).
    pub roles: &'a [RoleName],
    /// Any of these statuses, in effect at `now`.
    pub statuses: &'a [UserStatus],
    /// Created at or after, and before.
    pub created: (Option<OffsetDateTime>, Option<OffsetDateTime>),
    /// Last signed in at or after, and before (users who never signed in do not match a range).
    pub last_sign_in: (Option<OffsetDateTime>, Option<OffsetDateTime>),
    pub verified: Option<bool>,
    /// Attribute values in the scope's tenant: each `(name, key)` must hold, the key made by
    /// `idstream_domain::attributes::search_key` (ignored for [`Scope::Everyone`]).
    pub attributes: &'a [(String, String)],
    /// One field compared with a value as SCIM compares it ([`FieldMatch`]).
    pub field: Option<FieldMatch<'a>>,
    pub sort: Sort,
    pub after: Option<&'a Cursor>,
    pub limit: usize,
    pub now: OffsetDateTime,
}

/// A field of a user that a [`FieldMatch`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Email,
    /// The user name the scope's tenant knows the person by: their address, unless its
    /// provisioning client gave them a user name there ([`USER_NAME`], held lower-cased, so
    /// compared exactly, one such member at a time). For [`Scope::Everyone`], the address.
    UserName,
    FirstName,
    LastName,
}

/// How a [`FieldMatch`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    StartsWith,
    Contains,
    EndsWith,
}

/// A field compared with a value as SCIM compares text that is not case-exact: the field's
/// original lower-cased (`str::to_lowercase`) against the value lower-cased. An empty field
/// matches nothing (SCIM leaves an empty name out of a resource).
///
/// The index holds fields folded, which is their lower case for the users whose fields are
/// *plain* (no accents, ligatures, widths or case folds that differ): it decides those exactly,
/// from the sort column of the field (`eq`, `sw`: a range of keys) or the n-grams (`co`, `ew`)
/// and a comparison of the folded field; under [`Field::UserName`], whoever holds a provisioned
/// user name in the tenant is decided by that name. Everyone else is *undecided*: kept among the
/// candidates when their folded text contains the value folded and trimmed (as the text search
/// finds them), for the caller to check; [`SearchPage::undecided`] counts them.
#[derive(Debug, Clone, Copy)]
pub struct FieldMatch<'a> {
    pub field: Field,
    pub op: FieldOp,
    pub value: &'a str,
}

/// Whether a folded field holds `value` (lower-cased) under `op`; an empty field never does.
fn field_holds(field: &str, op: FieldOp, value: &str) -> bool {
    !field.is_empty()
        && match op {
            FieldOp::Equals => field == value,
            FieldOp::StartsWith => field.starts_with(value),
            FieldOp::Contains => field.contains(value),
            FieldOp::EndsWith => field.ends_with(value),
        }
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub users: Vec<UserId>,
    /// Where the next page starts, if there are more rows.
    pub next: Option<Cursor>,
    pub total: u64,
    pub total_exact: bool,
    /// Of `total`, the candidates a [`FieldMatch`] left undecided (none without one): the caller
    /// checks them. When none, `total` counts matches.
    pub undecided: u64,
}

/// Why a search cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("the cursor belongs to another sort order")]
    CursorOfAnotherSort,
    #[error("the cursor does not fit its sort column")]
    MalformedCursor,
}

/// The index. Cheap to share (`Arc`); reads take a shared lock for the length of one query.
#[derive(Debug, Default)]
pub struct PeopleIndex {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Whether the index holds the tree it follows: false from [`PeopleIndex::new`] until the
    /// first [`PeopleIndex::load`] (or [`PeopleIndex::clear`] of an emptied tree).
    loaded: bool,
    slots: Vec<Slot>,
    ordinals: HashMap<UserId, u32>,
    grams: HashMap<u64, RoaringBitmap>,
    word_starts: HashMap<u64, RoaringBitmap>,
    everyone: RoaringBitmap,
    tenants: HashMap<TenantId, Members>,
    statuses: HashMap<u8, RoaringBitmap>,
    verified: RoaringBitmap,
    /// Users by attribute value: (tenant, `name` NUL `search key`).
    attributes: HashMap<(TenantId, Box<str>), RoaringBitmap>,
    /// The attribute entries each user is in, to take them out when their values change.
    held_attributes: HashMap<u32, Vec<(TenantId, Box<str>)>>,
    /// The users holding a provisioned user name ([`USER_NAME`]), by tenant.
    named: HashMap<TenantId, RoaringBitmap>,
    /// The slots that are not `plain` (and those without a view yet): what a [`FieldMatch`]
    /// leaves undecided.
    unplain: RoaringBitmap,
    /// Suspensions with an end, by end: when it passes, the user counts as active.
    lapsing: BTreeSet<(OffsetDateTime, u32)>,
    by_email: BTreeSet<(Arc<str>, UserId, u32)>,
    by_first: BTreeSet<(Arc<str>, UserId, u32)>,
    by_last: BTreeSet<(Arc<str>, UserId, u32)>,
    by_name: BTreeSet<(Arc<str>, UserId, u32)>,
    by_created: BTreeSet<(OffsetDateTime, UserId, u32)>,
    by_sign_in: BTreeSet<(Option<OffsetDateTime>, UserId, u32)>,
    by_status: BTreeSet<(u8, UserId, u32)>,
    /// Each order's key prefixes by ordinal, for sorting candidates without reading their slots.
    prefixes: Prefixes,
}

/// A sort key's first eight bytes (or its whole value, for times and statuses) as a number, one
/// per ordinal and order: when `a < b` as keys, `prefix(a) <= prefix(b)`, so candidates are
/// ordered by these dense arrays first and read their slots only to break a tie.
#[derive(Debug, Default)]
struct Prefixes {
    email: Vec<u64>,
    first: Vec<u64>,
    last: Vec<u64>,
    name: Vec<u64>,
    created: Vec<u64>,
    sign_in: Vec<u64>,
    status: Vec<u64>,
}

fn set_prefix(prefixes: &mut Vec<u64>, ordinal: u32, prefix: u64) {
    let at = ordinal as usize;
    if prefixes.len() <= at {
        prefixes.resize(at + 1, 0);
    }
    prefixes[at] = prefix;
}

#[derive(Debug, Default)]
struct Members {
    all: RoaringBitmap,
    roles: HashMap<RoleName, RoaringBitmap>,
}

/// What the index knows of one user.
#[derive(Debug)]
struct Slot {
    id: UserId,
    /// Folded email, separator, folded "first last"; empty once erased.
    text: Box<str>,
    email: Arc<str>,
    first: Arc<str>,
    last: Arc<str>,
    name: Arc<str>,
    created: OffsetDateTime,
    sign_in: Option<OffsetDateTime>,
    /// The status in effect (a lapsed timed suspension reads active).
    status: u8,
    suspended_until: Option<OffsetDateTime>,
    verified: bool,
    /// The email and names fold to exactly their lower case (no accents, ligatures, widths or
    /// case folds that differ), so a case-insensitive comparison of the originals and one of
    /// the folded fields agree.
    plain: bool,
}

/// What the index holds of one user, folded ([`PeopleIndex::folded_rows`]).
#[derive(Debug, Clone)]
pub struct FoldedRow {
    pub email: Arc<str>,
    pub first: Arc<str>,
    pub last: Arc<str>,
    /// The status in effect.
    pub status: UserStatus,
    /// The email and names are their own lower case folded: comparing these without regard
    /// to case is comparing the originals.
    pub plain: bool,
    /// The user has a provisioned user name in the tenant asked about (an entry under
    /// [`USER_NAME`]).
    pub provisioned_name: bool,
}

fn status_of_rank(rank: u8) -> UserStatus {
    match rank {
        0 => UserStatus::Invited,
        1 => UserStatus::Active,
        2 => UserStatus::Suspended,
        3 => UserStatus::Inactive,
        _ => UserStatus::Erased,
    }
}

fn status_rank(status: UserStatus) -> u8 {
    match status {
        UserStatus::Invited => 0,
        UserStatus::Active => 1,
        UserStatus::Suspended => 2,
        UserStatus::Inactive => 3,
        UserStatus::Erased => 4,
    }
}

/// Packs up to three characters into one key; characters are never NUL after folding, so
/// n-grams of different lengths never share a key.
fn pack(chars: &[char]) -> u64 {
    chars
        .iter()
        .fold(0u64, |key, c| (key << 21) | u64::from(u32::from(*c)))
}

/// Every n-gram of one to three characters of each field, and those at word starts.
fn ngrams(text: &str, mut gram: impl FnMut(u64, bool)) {
    for field in text.split(FIELD_SEPARATOR) {
        let chars: Vec<char> = field.chars().collect();
        for start in 0..chars.len() {
            let word_start = start == 0 || !chars[start - 1].is_alphanumeric();
            for len in 1..=3 {
                if start + len > chars.len() {
                    break;
                }
                gram(pack(&chars[start..start + len]), word_start);
            }
        }
    }
}

impl PeopleIndex {
    pub fn new() -> PeopleIndex {
        PeopleIndex::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets everything (the tree was cleared): the index holds the empty tree.
    pub fn clear(&self) {
        *self.write() = Inner {
            loaded: true,
            ..Inner::default()
        };
    }

    /// Whether the index holds the tree it follows yet. The directory's runner loads it when it
    /// opens the tree, in the background: a search that finds it not loaded must wait (an empty
    /// answer would be wrong), while every other query of the read models is served.
    pub fn is_loaded(&self) -> bool {
        self.read().loaded
    }

    /// Loads the index from the directory tree (its users and memberships), opening each user's
    /// sealed fields with `seal` into memory.
    pub fn load(&self, tree: &sled::Tree, seal: &dyn PersonalSeal) {
        let mut inner = Inner::default();
        for (prefix, member) in [("user/", false), ("member/", true)] {
            for entry in tree.scan_prefix(prefix.as_bytes()) {
                let Ok((key, value)) = entry else { continue };
                if member {
                    inner.apply_member(&key, Some(&value));
                } else {
                    inner.apply_user(&value, seal);
                }
            }
        }
        inner.loaded = true;
        *self.write() = inner;
    }

    /// Follows a committed batch of the directory: every key it wrote or removed.
    pub fn apply(
        &self,
        writes: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>,
        seal: &dyn PersonalSeal,
    ) {
        let mut writes = writes
            .filter(|(key, _)| key.starts_with(b"user/") || key.starts_with(b"member/"))
            .peekable();
        if writes.peek().is_none() {
            return;
        }
        let mut inner = self.write();
        for (key, value) in writes {
            if key.starts_with(b"member/") {
                inner.apply_member(key, value);
            } else if let Some(value) = value {
                inner.apply_user(value, seal);
            }
        }
    }

    /// What the index holds of each of `ids` (in order; `None` for an id it does not know), for
    /// checking a filter on the email and names without reading the users' views. Call after a
    /// [`PeopleIndex::search`] at the same `now` (which moved lapsed suspensions to active).
    pub fn folded_rows(&self, tenant: &TenantId, ids: &[UserId]) -> Vec<Option<FoldedRow>> {
        let inner = self.read();
        ids.iter()
            .map(|id| {
                let ordinal = *inner.ordinals.get(id)?;
                let slot = inner.slots.get(ordinal as usize)?;
                let provisioned_name = inner.held_attributes.get(&ordinal).is_some_and(|held| {
                    held.iter()
                        .any(|(t, key)| t == tenant && key.starts_with(USER_NAME))
                });
                Some(FoldedRow {
                    email: slot.email.clone(),
                    first: slot.first.clone(),
                    last: slot.last.clone(),
                    status: status_of_rank(slot.status),
                    plain: slot.plain,
                    provisioned_name,
                })
            })
            .collect()
    }

    /// How many users the index holds.
    pub fn len(&self) -> usize {
        self.read().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One page of users matching `search`, in its order.
    pub fn search(&self, search: &Search<'_>) -> Result<SearchPage, SearchError> {
        self.lapse(search.now);
        let inner = self.read();
        inner.search(search)
    }

    /// The best `limit` matches of `text` among the members of `tenant` for a picker: users
    /// with a word that starts with the text first, then those who contain it elsewhere; each
    /// group by full name (then email, then id).
    pub fn autocomplete(&self, tenant: &TenantId, text: &str, limit: usize) -> Vec<UserId> {
        let inner = self.read();
        inner.autocomplete(tenant, text, limit)
    }

    /// Moves users whose timed suspension has ended to the active status.
    fn lapse(&self, now: OffsetDateTime) {
        let due = self
            .read()
            .lapsing
            .first()
            .is_some_and(|(end, _)| *end <= now);
        if due {
            self.write().lapse(now);
        }
    }
}

impl Inner {
    fn slot_of(&mut self, id: UserId) -> u32 {
        if let Some(ordinal) = self.ordinals.get(&id) {
            return *ordinal;
        }
        let ordinal = u32::try_from(self.slots.len()).expect("fewer than 2^32 users");
        let empty: Arc<str> = Arc::from("");
        self.slots.push(Slot {
            id,
            text: Box::from(""),
            email: empty.clone(),
            first: empty.clone(),
            last: empty.clone(),
            name: empty,
            created: OffsetDateTime::UNIX_EPOCH,
            sign_in: None,
            status: status_rank(UserStatus::Invited),
            suspended_until: None,
            verified: false,
            plain: false,
        });
        self.ordinals.insert(id, ordinal);
        self.everyone.insert(ordinal);
        self.unplain.insert(ordinal);
        self.insert_orders(ordinal);
        self.statuses
            .entry(status_rank(UserStatus::Invited))
            .or_default()
            .insert(ordinal);
        ordinal
    }

    fn remove_orders(&mut self, ordinal: u32) {
        let slot = &self.slots[ordinal as usize];
        let id = slot.id;
        self.by_email.remove(&(slot.email.clone(), id, ordinal));
        self.by_first.remove(&(slot.first.clone(), id, ordinal));
        self.by_last.remove(&(slot.last.clone(), id, ordinal));
        self.by_name.remove(&(slot.name.clone(), id, ordinal));
        self.by_created.remove(&(slot.created, id, ordinal));
        self.by_sign_in.remove(&(slot.sign_in, id, ordinal));
        self.by_status.remove(&(slot.status, id, ordinal));
    }

    fn insert_orders(&mut self, ordinal: u32) {
        let slot = &self.slots[ordinal as usize];
        let id = slot.id;
        self.by_email.insert((slot.email.clone(), id, ordinal));
        self.by_first.insert((slot.first.clone(), id, ordinal));
        self.by_last.insert((slot.last.clone(), id, ordinal));
        self.by_name.insert((slot.name.clone(), id, ordinal));
        self.by_created.insert((slot.created, id, ordinal));
        self.by_sign_in.insert((slot.sign_in, id, ordinal));
        self.by_status.insert((slot.status, id, ordinal));
        let prefixes = &mut self.prefixes;
        set_prefix(&mut prefixes.email, ordinal, slot.email.prefix());
        set_prefix(&mut prefixes.first, ordinal, slot.first.prefix());
        set_prefix(&mut prefixes.last, ordinal, slot.last.prefix());
        set_prefix(&mut prefixes.name, ordinal, slot.name.prefix());
        set_prefix(&mut prefixes.created, ordinal, slot.created.prefix());
        set_prefix(&mut prefixes.sign_in, ordinal, slot.sign_in.prefix());
        set_prefix(&mut prefixes.status, ordinal, slot.status.prefix());
    }

    /// Indexes a user view as stored. If its fields cannot be opened (the person's key could not
    /// be had: the key store did not answer), the user is indexed without text, found by id
    /// only, until their view changes again.
    fn apply_user(&mut self, value: &[u8], seal: &dyn PersonalSeal) {
        let Ok(stored) = serde_json::from_slice::<UserView>(value) else {
            return;
        };
        let view = match crate::open_user(seal, stored.clone()) {
            Ok(view) => view,
            Err(_) => UserView {
                email: String::new(),
                first_name: String::new(),
                last_name: String::new(),
                ..stored
            },
        };
        let ordinal = self.slot_of(view.id);
        let erased = view.status == UserStatus::Erased;
        let (email, first, last) = if erased {
            (String::new(), String::new(), String::new())
        } else {
            (
                fold(&view.email),
                fold(&view.first_name),
                fold(&view.last_name),
            )
        };
        let plain = email == view.email.to_lowercase()
            && first == view.first_name.to_lowercase()
            && last == view.last_name.to_lowercase();
        let name = match (first.is_empty(), last.is_empty()) {
            (false, false) => format!("{first} {last}"),
            (false, true) => first.clone(),
            (true, _) => last.clone(),
        };
        let text = format!("{email}{FIELD_SEPARATOR}{name}");

        self.remove_orders(ordinal);
        let old_text = std::mem::take(&mut self.slots[ordinal as usize].text);
        if *old_text != *text {
            self.unindex_text(&old_text, ordinal);
            self.index_text(&text, ordinal);
        }
        let old = &self.slots[ordinal as usize];
        let (old_status, old_until) = (old.status, old.suspended_until);
        if let Some(until) = old_until {
            self.lapsing.remove(&(until, ordinal));
        }
        if let Some(set) = self.statuses.get_mut(&old_status) {
            set.remove(ordinal);
        }
        let slot = &mut self.slots[ordinal as usize];
        slot.text = text.into_boxed_str();
        slot.email = Arc::from(email);
        slot.first = Arc::from(first);
        slot.last = Arc::from(last);
        slot.name = Arc::from(name);
        slot.created = view.created_at;
        slot.sign_in = view.last_sign_in;
        slot.status = status_rank(view.status);
        slot.suspended_until = match view.status {
            UserStatus::Suspended => view.suspended_until,
            _ => None,
        };
        slot.verified = view.email_verified;
        slot.plain = plain;
        let (status, until) = (slot.status, slot.suspended_until);
        if plain {
            self.unplain.remove(ordinal);
        } else {
            self.unplain.insert(ordinal);
        }
        if let Some(until) = until {
            self.lapsing.insert((until, ordinal));
        }
        self.statuses.entry(status).or_default().insert(ordinal);
        if view.email_verified {
            self.verified.insert(ordinal);
        } else {
            self.verified.remove(ordinal);
        }
        self.insert_orders(ordinal);
        self.index_attributes(&view, ordinal);
    }

    /// Files the user under each attribute value they hold (none once erased).
    fn index_attributes(&mut self, view: &UserView, ordinal: u32) {
        let mut entries: Vec<(TenantId, Box<str>)> = Vec::new();
        if view.status != UserStatus::Erased {
            for (tenant, values) in &view.attributes {
                for (name, value) in values.iter().filter(|(_, v)| !v.is_null()) {
                    let key = idstream_domain::attributes::search_key(value);
                    entries.push((tenant.clone(), format!("{name}\0{key}").into()));
                }
            }
            for (tenant, id) in &view.external_ids {
                entries.push((tenant.clone(), format!("{EXTERNAL_ID}\0{id}").into()));
            }
            for (tenant, name) in &view.user_names {
                let key = user_name_key(name);
                entries.push((tenant.clone(), format!("{USER_NAME}\0{key}").into()));
            }
        }
        let old = self.held_attributes.remove(&ordinal).unwrap_or_default();
        if old == entries {
            if !entries.is_empty() {
                self.held_attributes.insert(ordinal, entries);
            }
            return;
        }
        let named = |entries: &[(TenantId, Box<str>)]| -> Vec<TenantId> {
            entries
                .iter()
                .filter(|(_, key)| key.starts_with(USER_NAME))
                .map(|(tenant, _)| tenant.clone())
                .collect()
        };
        for tenant in named(&old) {
            if let Some(set) = self.named.get_mut(&tenant) {
                set.remove(ordinal);
                if set.is_empty() {
                    self.named.remove(&tenant);
                }
            }
        }
        for tenant in named(&entries) {
            self.named.entry(tenant).or_default().insert(ordinal);
        }
        for entry in old {
            if let Some(set) = self.attributes.get_mut(&entry) {
                set.remove(ordinal);
                if set.is_empty() {
                    self.attributes.remove(&entry);
                }
            }
        }
        for entry in &entries {
            self.attributes
                .entry(entry.clone())
                .or_default()
                .insert(ordinal);
        }
        if !entries.is_empty() {
            self.held_attributes.insert(ordinal, entries);
        }
    }

    fn index_text(&mut self, text: &str, ordinal: u32) {
        let (grams, starts) = (&mut self.grams, &mut self.word_starts);
        ngrams(text, |gram, word_start| {
            grams.entry(gram).or_default().insert(ordinal);
            if word_start {
                starts.entry(gram).or_default().insert(ordinal);
            }
        });
    }

    fn unindex_text(&mut self, text: &str, ordinal: u32) {
        let (grams, starts) = (&mut self.grams, &mut self.word_starts);
        ngrams(text, |gram, word_start| {
            remove_from(grams, gram, ordinal);
            if word_start {
                remove_from(starts, gram, ordinal);
            }
        });
    }

    /// `member/<tenant>/<user>`: the membership, or `None` when it was removed.
    fn apply_member(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Some((tenant, user)) = keys::parse_member(key) else {
            return;
        };
        let ordinal = self.slot_of(user);
        let members = self.tenants.entry(tenant.clone()).or_default();
        for set in members.roles.values_mut() {
            set.remove(ordinal);
        }
        let membership =
            value.and_then(|value| serde_json::from_slice::<MembershipView>(value).ok());
        match membership {
            Some(membership) => {
                members.all.insert(ordinal);
                for role in membership.roles {
                    members.roles.entry(role).or_default().insert(ordinal);
                }
            }
            None => {
                members.all.remove(ordinal);
            }
        }
        members.roles.retain(|_, set| !set.is_empty());
        if members.all.is_empty() {
            self.tenants.remove(&tenant);
        }
    }

    fn lapse(&mut self, now: OffsetDateTime) {
        while let Some(&(end, ordinal)) = self.lapsing.first() {
            if end > now {
                break;
            }
            self.lapsing.pop_first();
            self.remove_orders(ordinal);
            let slot = &mut self.slots[ordinal as usize];
            let old = slot.status;
            slot.status = status_rank(UserStatus::Active);
            slot.suspended_until = None;
            if let Some(set) = self.statuses.get_mut(&old) {
                set.remove(ordinal);
            }
            self.statuses
                .entry(status_rank(UserStatus::Active))
                .or_default()
                .insert(ordinal);
            self.insert_orders(ordinal);
        }
    }

    /// The ordinals whose text contains `query` (folded, not empty), and whether each still
    /// needs its text checked (queries longer than three characters).
    fn text_matches(&self, query: &[char]) -> (RoaringBitmap, bool) {
        if query.len() <= 3 {
            let found = self.grams.get(&pack(query)).cloned().unwrap_or_default();
            return (found, false);
        }
        let mut bitmaps: Vec<&RoaringBitmap> = Vec::new();
        for window in query.windows(3) {
            match self.grams.get(&pack(window)) {
                Some(bitmap) => bitmaps.push(bitmap),
                None => return (RoaringBitmap::new(), false),
            }
        }
        bitmaps.sort_by_key(|b| b.len());
        let mut found = bitmaps[0].clone();
        for bitmap in &bitmaps[1..] {
            if found.len() < 64 {
                break;
            }
            found &= *bitmap;
        }
        (found, true)
    }

    /// Among `base`, the users a [`FieldMatch`] decides that match, and those it leaves
    /// undecided (whose folded text contains the value folded).
    fn field_matches(
        &self,
        base: &RoaringBitmap,
        scope: Scope<'_>,
        field: &FieldMatch<'_>,
    ) -> (RoaringBitmap, RoaringBitmap) {
        let (named, tenant) = match (field.field, scope) {
            (Field::UserName, Scope::Tenant(tenant)) => (self.named.get(tenant), Some(tenant)),
            _ => (None, None),
        };
        // Whoever holds a provisioned user name in the tenant is known by it, lower-cased
        // ([`user_name_key`], exactly SCIM's comparison): decided from it, plain or not.
        let mut unsure = base & &self.unplain;
        let mut by_name = RoaringBitmap::new();
        if let (Some(named), Some(tenant)) = (named, tenant) {
            unsure -= named;
            let value = field.value.to_lowercase();
            by_name = (base & named)
                .iter()
                .filter(|ordinal| {
                    self.user_name_of(*ordinal, tenant)
                        .is_some_and(|name| field_holds(name, field.op, &value))
                })
                .collect();
        }
        let query: Vec<char> = fold(field.value.trim()).chars().collect();
        if !unsure.is_empty() && !query.is_empty() {
            let (matches, check) = self.text_matches(&query);
            unsure &= matches;
            if check {
                let needle: String = query.iter().collect();
                unsure = unsure
                    .iter()
                    .filter(|ordinal| self.slots[*ordinal as usize].text.contains(&needle))
                    .collect();
            }
        }

        let value = field.value.to_lowercase();
        let key: fn(&Slot) -> &Arc<str> = match field.field {
            Field::Email | Field::UserName => |slot| &slot.email,
            Field::FirstName => |slot| &slot.first,
            Field::LastName => |slot| &slot.last,
        };
        let decides = |ordinal: u32| {
            let slot = &self.slots[ordinal as usize];
            slot.plain
                && !named.is_some_and(|named| named.contains(ordinal))
                && field_holds(key(slot), field.op, &value)
        };
        let decided = match field.op {
            // The keys equal to the value, then those it starts, are one range of the order.
            FieldOp::Equals | FieldOp::StartsWith => {
                let order = match field.field {
                    Field::Email | Field::UserName => &self.by_email,
                    Field::FirstName => &self.by_first,
                    Field::LastName => &self.by_last,
                };
                let start = (Arc::<str>::from(value.as_str()), lowest_user(), 0);
                let within = |key: &str| match field.op {
                    FieldOp::Equals => key == value,
                    _ => key.starts_with(value.as_str()),
                };
                // The range holds everyone of the index; past as many entries as `base` has,
                // checking `base` itself is cheaper.
                let budget = base.len().saturating_add(64);
                let mut found = Vec::new();
                let mut walked = 0u64;
                let mut complete = true;
                for (key, _, ordinal) in order.range(start..) {
                    if !within(key) {
                        break;
                    }
                    walked += 1;
                    if walked > budget {
                        complete = false;
                        break;
                    }
                    if base.contains(*ordinal) && decides(*ordinal) {
                        found.push(*ordinal);
                    }
                }
                if complete {
                    found.sort_unstable();
                    RoaringBitmap::from_sorted_iter(found).unwrap_or_default()
                } else {
                    base.iter().filter(|ordinal| decides(*ordinal)).collect()
                }
            }
            // A plain field that contains the value has each of its n-grams.
            FieldOp::Contains | FieldOp::EndsWith => {
                let chars: Vec<char> = value.chars().collect();
                if chars.is_empty() {
                    RoaringBitmap::new()
                } else {
                    let (mut grams, _) = self.text_matches(&chars);
                    grams &= base;
                    grams.iter().filter(|ordinal| decides(*ordinal)).collect()
                }
            }
        };
        (decided | by_name, unsure)
    }

    /// The user name (lower-cased) that `tenant`'s provisioning client gave the user in slot
    /// `ordinal`, if any.
    fn user_name_of(&self, ordinal: u32, tenant: &TenantId) -> Option<&str> {
        self.held_attributes
            .get(&ordinal)?
            .iter()
            .filter(|(held, _)| held == tenant)
            .find_map(|(_, key)| key.strip_prefix(USER_NAME)?.strip_prefix('\0'))
    }

    fn search(&self, search: &Search<'_>) -> Result<SearchPage, SearchError> {
        if let Some(cursor) = search.after
            && cursor.sort != search.sort
        {
            return Err(SearchError::CursorOfAnotherSort);
        }
        let empty = RoaringBitmap::new();
        let mut candidates = match search.scope {
            Scope::Everyone => self.everyone.clone(),
            Scope::Tenant(tenant) => match self.tenants.get(tenant) {
                None => RoaringBitmap::new(),
                Some(members) if search.roles.is_empty() => members.all.clone(),
                Some(members) => search
                    .roles
                    .iter()
                    .map(|role| members.roles.get(role).unwrap_or(&empty))
                    .fold(RoaringBitmap::new(), |acc, set| acc | set),
            },
        };
        if !search.statuses.is_empty() {
            let wanted = search
                .statuses
                .iter()
                .map(|s| self.statuses.get(&status_rank(*s)).unwrap_or(&empty))
                .fold(RoaringBitmap::new(), |acc, set| acc | set);
            candidates &= wanted;
        }
        match search.verified {
            Some(true) => candidates &= &self.verified,
            Some(false) => candidates -= &self.verified,
            None => {}
        }
        if let Scope::Tenant(tenant) = search.scope {
            for (name, key) in search.attributes {
                let entry = (tenant.clone(), Box::from(format!("{name}\0{key}")));
                candidates &= self.attributes.get(&entry).unwrap_or(&empty);
            }
        }
        let mut undecided = 0;
        if let Some(field) = &search.field {
            let (decided, unsure) = self.field_matches(&candidates, search.scope, field);
            undecided = unsure.len();
            candidates = decided | unsure;
        }

        // The text: its n-gram matches, and the user it names by id.
        let query: Vec<char> = search
            .text
            .map(|t| fold(t.trim()).chars().collect())
            .unwrap_or_default();
        let mut check_text = false;
        let mut by_id = None;
        if !query.is_empty() {
            let named = search
                .text
                .and_then(|t| t.trim().to_ascii_uppercase().parse::<UserId>().ok())
                .and_then(|id| self.ordinals.get(&id).copied())
                .filter(|ordinal| candidates.contains(*ordinal));
            let (matches, check) = self.text_matches(&query);
            candidates &= matches;
            check_text = check;
            if let Some(ordinal) = named {
                candidates.insert(ordinal);
                by_id = Some(ordinal);
            }
        }
        let needle: String = query.iter().collect();
        let checks_needed =
            check_text || search.created != (None, None) || search.last_sign_in != (None, None);
        let accept = |ordinal: u32| -> bool {
            if !checks_needed {
                return true;
            }
            let slot = &self.slots[ordinal as usize];
            (!check_text || Some(ordinal) == by_id || slot.text.contains(needle.as_str()))
                && in_range(Some(slot.created), search.created)
                && (search.last_sign_in == (None, None)
                    || in_range(slot.sign_in, search.last_sign_in))
        };

        let (total, total_exact) = if checks_needed {
            let mut total = 0;
            let mut exact = true;
            for (checked, ordinal) in candidates.iter().enumerate() {
                if checked as u64 == EXACT_TOTAL_CHECKS {
                    exact = false;
                    break;
                }
                if accept(ordinal) {
                    total += 1;
                }
            }
            (total, exact)
        } else {
            (candidates.len(), true)
        };

        let limit = search.limit.max(1);
        let (users, more) = match search.sort.column {
            SortColumn::Email => self.page(
                &self.by_email,
                &self.prefixes.email,
                |s| &s.email,
                search,
                &candidates,
                &accept,
                limit,
            )?,
            SortColumn::FirstName => self.page(
                &self.by_first,
                &self.prefixes.first,
                |s| &s.first,
                search,
                &candidates,
                &accept,
                limit,
            )?,
            SortColumn::LastName => self.page(
                &self.by_last,
                &self.prefixes.last,
                |s| &s.last,
                search,
                &candidates,
                &accept,
                limit,
            )?,
            SortColumn::CreatedAt => self.page(
                &self.by_created,
                &self.prefixes.created,
                |s| &s.created,
                search,
                &candidates,
                &accept,
                limit,
            )?,
            SortColumn::LastSignIn => self.page(
                &self.by_sign_in,
                &self.prefixes.sign_in,
                |s| &s.sign_in,
                search,
                &candidates,
                &accept,
                limit,
            )?,
            SortColumn::Status => self.page(
                &self.by_status,
                &self.prefixes.status,
                |s| &s.status,
                search,
                &candidates,
                &accept,
                limit,
            )?,
        };
        let next = match (more, users.last()) {
            (true, Some(&last)) => Some(self.cursor_at(search.sort, last)),
            _ => None,
        };
        Ok(SearchPage {
            users: users
                .iter()
                .map(|ordinal| self.slots[*ordinal as usize].id)
                .collect(),
            next,
            total,
            total_exact,
            undecided,
        })
    }

    fn cursor_at(&self, sort: Sort, ordinal: u32) -> Cursor {
        let slot = &self.slots[ordinal as usize];
        let key = match sort.column {
            SortColumn::Email => CursorKey::Text(slot.email.to_string()),
            SortColumn::FirstName => CursorKey::Text(slot.first.to_string()),
            SortColumn::LastName => CursorKey::Text(slot.last.to_string()),
            SortColumn::CreatedAt => CursorKey::Time(Some(slot.created)),
            SortColumn::LastSignIn => CursorKey::Time(slot.sign_in),
            SortColumn::Status => CursorKey::Status(slot.status),
        };
        Cursor {
            sort,
            key,
            user: slot.id,
        }
    }

    /// Up to `limit` ordinals after the search's cursor in `order`, among `candidates` that
    /// `accept`; and whether more follow. `prefixes` are the order's key prefixes by ordinal.
    #[allow(clippy::too_many_arguments)]
    fn page<K: SortKey>(
        &self,
        order: &BTreeSet<(K, UserId, u32)>,
        prefixes: &[u64],
        key_of: fn(&Slot) -> &K,
        search: &Search<'_>,
        candidates: &RoaringBitmap,
        accept: &dyn Fn(u32) -> bool,
        limit: usize,
    ) -> Result<(Vec<u32>, bool), SearchError> {
        let after = match search.after {
            Some(cursor) => Some((
                K::from_cursor(&cursor.key).ok_or(SearchError::MalformedCursor)?,
                cursor.user,
            )),
            None => None,
        };
        let descending = search.sort.descending;
        let mut rows = Vec::with_capacity(limit + 1);
        // Walking the order visits about |order| × limit ÷ |candidates| entries when the
        // candidates are spread evenly over it; picking the least `limit` of the candidates
        // ([`least`]: a selection, linear) reads each candidate's key prefix once, at random,
        // which costs about two steps of a walk. A text filter, though, often gathers its
        // candidates in one part of the order (the users of a name share the first letters of
        // their addresses), where an even spread would put them everywhere: so a walk gives up
        // after four times its estimate, starts again at the least key among the candidates
        // (from their prefixes), and if that fails too the candidates are picked instead.
        let dense = candidates.len().max(1);
        let walk = order.len() as u64 * (limit as u64 + 1) / dense;
        let sort = dense.saturating_mul(2);
        let mut walked = false;
        if walk <= sort {
            let budget = walk.saturating_mul(4).saturating_add(64);
            let after_entry = after
                .as_ref()
                .map(|(key, user)| (key.clone(), *user, u32::MAX));
            // Walks from `start` (or the cursor, whichever is later); whether the page is found.
            let attempt = |start: Option<(K, UserId, u32)>, rows: &mut Vec<u32>| {
                rows.clear();
                let mut steps = 0;
                // Whether to stop: the page is full, or the walk is over its budget.
                let mut visit = |&(_, _, ordinal): &(K, UserId, u32)| {
                    steps += 1;
                    if candidates.contains(ordinal) && accept(ordinal) {
                        rows.push(ordinal);
                    }
                    rows.len() > limit || steps >= budget
                };
                let stopped = if descending {
                    let upper = match &after {
                        Some((key, user)) => Bound::Excluded((key.clone(), *user, 0)),
                        None => Bound::Unbounded,
                    };
                    order.range((Bound::Unbounded, upper)).rev().any(&mut visit)
                } else {
                    let lower = match (start, &after_entry) {
                        (Some(start), Some(after)) if start > *after => Bound::Included(start),
                        (Some(start), None) => Bound::Included(start),
                        (_, Some(after)) => Bound::Excluded(after.clone()),
                        (None, None) => Bound::Unbounded,
                    };
                    order.range((lower, Bound::Unbounded)).any(&mut visit)
                };
                !stopped || rows.len() > limit
            };
            walked = attempt(None, &mut rows);
            if !walked && !descending {
                let least = candidates
                    .iter()
                    .map(|ordinal| prefixes[ordinal as usize])
                    .min();
                if let Some(floor) = least.and_then(K::floor) {
                    walked = attempt(Some((floor, lowest_user(), 0)), &mut rows);
                }
            }
        }
        if !walked {
            rows.clear();
            let full = |ordinal: u32| {
                let slot = &self.slots[ordinal as usize];
                (key_of(slot), &slot.id)
            };
            let after = after
                .as_ref()
                .map(|(key, user)| (key.prefix(), (key, user)));
            let candidates = candidates.iter().filter(|&ordinal| match &after {
                None => true,
                Some((prefix, there)) => {
                    let here = prefixes[ordinal as usize]
                        .cmp(prefix)
                        .then_with(|| full(ordinal).cmp(there));
                    if descending {
                        here.is_lt()
                    } else {
                        here.is_gt()
                    }
                }
            });
            // Slots are read only where two prefixes tie.
            let compare = |a: &(u64, u32), b: &(u64, u32)| {
                let order = a.0.cmp(&b.0).then_with(|| full(a.1).cmp(&full(b.1)));
                if descending { order.reverse() } else { order }
            };
            let keyed = least(
                candidates.map(|ordinal| (prefixes[ordinal as usize], ordinal)),
                limit + 1,
                descending,
                compare,
                accept,
            );
            rows.extend(keyed.into_iter().map(|(_, ordinal)| ordinal));
        }
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok((rows, more))
    }

    fn autocomplete(&self, tenant: &TenantId, text: &str, limit: usize) -> Vec<UserId> {
        let query: Vec<char> = fold(text.trim()).chars().collect();
        let Some(members) = self.tenants.get(tenant) else {
            return Vec::new();
        };
        if query.is_empty() || limit == 0 {
            return Vec::new();
        }
        let (mut matches, check) = self.text_matches(&query);
        matches &= &members.all;
        let needle: String = query.iter().collect();
        let mut prefixed = self
            .word_starts
            .get(&pack(&query[..query.len().min(3)]))
            .cloned()
            .unwrap_or_default();
        prefixed &= &matches;
        let starts_a_word = |ordinal: u32| {
            let text = &self.slots[ordinal as usize].text;
            text.match_indices(needle.as_str()).any(|(at, _)| {
                text[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric())
            })
        };
        let contains = |ordinal: u32| !check || self.slots[ordinal as usize].text.contains(&needle);
        let by_name = Search {
            scope: Scope::Everyone,
            text: None,
            roles: &[],
            statuses: &[],
            created: (None, None),
            last_sign_in: (None, None),
            verified: None,
            attributes: &[],
            field: None,
            sort: Sort::default(),
            after: None,
            limit,
            now: OffsetDateTime::UNIX_EPOCH,
        };
        let name: fn(&Slot) -> &Arc<str> = |slot| &slot.name;
        // Up to three characters, the word-start n-gram alone tells that a word starts with the
        // text; a longer text is checked.
        let prefix_match = |ordinal: u32| !check || starts_a_word(ordinal);
        // A word that starts with the text first; then the text anywhere else.
        let (mut found, _) = self
            .page(
                &self.by_name,
                &self.prefixes.name,
                name,
                &by_name,
                &prefixed,
                &prefix_match,
                limit,
            )
            .unwrap_or_default();
        if found.len() < limit {
            let (rest, elsewhere): (RoaringBitmap, &dyn Fn(u32) -> bool) = if check {
                (matches, &|ordinal| {
                    contains(ordinal) && !starts_a_word(ordinal)
                })
            } else {
                (&matches - &prefixed, &contains)
            };
            let (more, _) = self
                .page(
                    &self.by_name,
                    &self.prefixes.name,
                    name,
                    &by_name,
                    &rest,
                    elsewhere,
                    limit - found.len(),
                )
                .unwrap_or_default();
            found.extend(more);
        }
        found
            .into_iter()
            .map(|ordinal| self.slots[ordinal as usize].id)
            .collect()
    }
}

/// The `take` first of `keyed` (prefix, ordinal) pairs under `compare` that `accept`, in order.
///
/// One pass that keeps the best so far in a buffer of twice `take`, cut back to `take` by a
/// selection whenever it fills: a candidate whose prefix falls behind the worst one kept is
/// dropped without reading its slot (`compare` reads slots only where prefixes tie) and without
/// `accept` (which may read its text). Tens of thousands of candidates cost one read of a dense
/// array each, where sorting them broke every tie of their prefixes by reading both slots.
fn least(
    keyed: impl Iterator<Item = (u64, u32)>,
    take: usize,
    descending: bool,
    compare: impl Fn(&(u64, u32), &(u64, u32)) -> std::cmp::Ordering,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<(u64, u32)> {
    let mut kept: Vec<(u64, u32)> = Vec::with_capacity(2 * take);
    let mut worst: Option<(u64, u32)> = None;
    if take == 0 {
        return kept;
    }
    for entry in keyed {
        if let Some(worst) = &worst {
            let behind = if descending {
                entry.0 < worst.0
            } else {
                entry.0 > worst.0
            };
            if behind || (entry.0 == worst.0 && compare(&entry, worst).is_ge()) {
                continue;
            }
        }
        if !accept(entry.1) {
            continue;
        }
        kept.push(entry);
        if kept.len() == 2 * take {
            kept.select_nth_unstable_by(take - 1, &compare);
            kept.truncate(take);
            worst = Some(kept[take - 1]);
        }
    }
    kept.sort_unstable_by(&compare);
    kept.truncate(take);
    kept
}

fn remove_from(map: &mut HashMap<u64, RoaringBitmap>, gram: u64, ordinal: u32) {
    if let Some(set) = map.get_mut(&gram) {
        set.remove(ordinal);
        if set.is_empty() {
            map.remove(&gram);
        }
    }
}

fn in_range(
    value: Option<OffsetDateTime>,
    (from, to): (Option<OffsetDateTime>, Option<OffsetDateTime>),
) -> bool {
    match value {
        None => from.is_none() && to.is_none(),
        Some(value) => from.is_none_or(|from| value >= from) && to.is_none_or(|to| value < to),
    }
}

/// A sort column's key type, as a cursor carries it.
trait SortKey: Ord + Clone {
    fn from_cursor(key: &CursorKey) -> Option<Self>;

    /// A number that orders as the key does, or ties: `a < b` implies
    /// `a.prefix() <= b.prefix()`.
    fn prefix(&self) -> u64;

    /// A key at or before every key whose prefix is at least `prefix`, if there is one worth
    /// starting a walk at.
    fn floor(prefix: u64) -> Option<Self>;
}

/// The least user id, to start a walk at the first entry of a key.
fn lowest_user() -> UserId {
    "00000000000000000000000000"
        .parse()
        .expect("the nil ULID is a user id")
}

impl SortKey for Arc<str> {
    fn from_cursor(key: &CursorKey) -> Option<Self> {
        match key {
            CursorKey::Text(text) => Some(Arc::from(text.as_str())),
            _ => None,
        }
    }

    /// The first eight bytes, big-endian, padded with zeros (strings compare byte-wise).
    fn prefix(&self) -> u64 {
        let mut bytes = [0; 8];
        let head = &self.as_bytes()[..self.len().min(8)];
        bytes[..head.len()].copy_from_slice(head);
        u64::from_be_bytes(bytes)
    }

    /// The prefix's bytes up to the padding, cut to whole characters: a prefix of every key
    /// with this prefix, and before every key with a greater one.
    fn floor(prefix: u64) -> Option<Self> {
        let bytes = prefix.to_be_bytes();
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(8);
        let text = match std::str::from_utf8(&bytes[..end]) {
            Ok(text) => text,
            Err(error) => std::str::from_utf8(&bytes[..error.valid_up_to()]).ok()?,
        };
        Some(Arc::from(text))
    }
}

impl SortKey for OffsetDateTime {
    fn from_cursor(key: &CursorKey) -> Option<Self> {
        match key {
            CursorKey::Time(time) => *time,
            _ => None,
        }
    }

    /// Unix nanoseconds (clamped to 64 bits), with the sign bit flipped so that they order
    /// as unsigned numbers.
    fn prefix(&self) -> u64 {
        let nanos = self
            .unix_timestamp_nanos()
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        (nanos as u64) ^ (1 << 63)
    }

    /// The time itself, unless the prefix was clamped.
    fn floor(prefix: u64) -> Option<Self> {
        let nanos = (prefix ^ (1 << 63)) as i64;
        if nanos == i64::MIN || nanos == i64::MAX {
            return None;
        }
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).ok()
    }
}

impl SortKey for Option<OffsetDateTime> {
    fn from_cursor(key: &CursorKey) -> Option<Self> {
        match key {
            CursorKey::Time(time) => Some(*time),
            _ => None,
        }
    }

    /// No time first.
    fn prefix(&self) -> u64 {
        self.map_or(0, |time| time.prefix().saturating_add(1))
    }

    fn floor(prefix: u64) -> Option<Self> {
        match prefix {
            0 => Some(None),
            _ => OffsetDateTime::floor(prefix - 1).map(Some),
        }
    }
}

impl SortKey for u8 {
    fn from_cursor(key: &CursorKey) -> Option<Self> {
        match key {
            CursorKey::Status(status) => Some(*status),
            _ => None,
        }
    }

    fn prefix(&self) -> u64 {
        u64::from(*self)
    }

    fn floor(prefix: u64) -> Option<Self> {
        u8::try_from(prefix).ok()
    }
}

#[cfg(test)]
mod least_tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::least;

    /// Given candidates with many tied prefixes, some refused, in either direction and for any
    /// number taken, then the kept ones are exactly the first of a full sort of the accepted.
    #[test]
    fn least_keeps_what_a_full_sort_of_the_accepted_candidates_puts_first() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..400 {
            let count = rng.random_range(0..300);
            let keyed: Vec<(u64, u32)> = (0..count)
                .map(|ordinal| (rng.random_range(0..8u64), ordinal))
                .collect();
            // The tie-breaker stands for the slot's full key: unrelated to the ordinal.
            let tie = |ordinal: u32| ordinal.wrapping_mul(2_654_435_761) % 97;
            let descending = round % 2 == 1;
            let compare = |a: &(u64, u32), b: &(u64, u32)| {
                let order =
                    a.0.cmp(&b.0)
                        .then_with(|| (tie(a.1), a.1).cmp(&(tie(b.1), b.1)));
                if descending { order.reverse() } else { order }
            };
            let refused = rng.random_range(1..5u32);
            let accept = |ordinal: u32| !ordinal.is_multiple_of(refused) || refused == 1;
            let take = rng.random_range(0..40);
            let mut expected: Vec<(u64, u32)> =
                keyed.iter().copied().filter(|e| accept(e.1)).collect();
            expected.sort_by(compare);
            expected.truncate(take);
            let kept = least(keyed.into_iter(), take, descending, compare, &accept);
            assert_eq!(kept, expected, "round {round}");
        }
    }
}
