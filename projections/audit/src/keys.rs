//! The layout of the audit tree. Every table has its own key prefix.
//!
//! **Entries** are kept in blocks of [`ENTRY_SPAN`] consecutive positions: the key is `e/`
//! followed by the block number (8 big-endian bytes), the value the block's entries in position
//! order, each as its offset in the block (1 byte), its length (4 bytes, big-endian) and its
//! JSON.
//!
//! **Indexes** are posting lists cut into blocks of [`BLOCK_SPAN`] log positions: the key is
//! the index's prefix followed by the block number (8 big-endian bytes), the value the positions
//! of that block listed in the index, ascending, each as its 2-byte big-endian offset from the
//! block's first position. A block's key depends only on the position, so the layout does not
//! depend on how events were batched, and a busy index (a tenant, a common event type) costs one
//! write per batch of events instead of one per event: sled 0.34 copies the leaf a key lands in
//! on every insert, so the number of keys written is what the fold's speed depends on.
//!
//! Text parts of keys are escaped (`%` → `%25`, `/` → `%2F`) so that `/` always separates parts
//! and one index's prefix never is a prefix of another index of the same table.
//!
//! | key | value | |
//! | --- | --- | --- |
//! | `e/<block>` | entries | the entries of a block of positions |
//! | `t/<tenant>/<block>` | positions | a tenant's entries |
//! | `T/<tenant>/<type>/<block>` | positions | a tenant's entries of one event type |
//! | `y/<type>/<block>` | positions | every entry of one event type |
//! | `u/<user>/<block>` | positions | the entries a user caused (as actor) or is the subject of |
//! | `a/<actor kind>/<actor id>/<block>` | positions | entries caused by API keys and the system |
//! | `g/<aggregate type>/<aggregate id>/<block>` | positions | by aggregate, except those found through their user (see [`through_user`]) |
//! | `m/<second>` | position | time index: first position whose high-water time reached that second |
//! | `c/clock` | [`crate::fold::Clock`] | high-water time and the largest step back in time |
//! | `mb/<user>/<tenant>` | membership | the tenants whose auditors see the user's global events |
//! | `ses/<session>` | user and tenant | |
//! | `inv/<invitation>` | user | |
//! | `key/<api key>` | owner | |
//! | `set/<tenant>` | settings (JSON) | the last settings, to say what a change changed |
//! | `x/<user>` | – | the user was erased |

use idstream_domain::{ActorKind, AggregateType, TenantId, UserId};
use idstream_eventlog::Position;
use ulid::Ulid;

/// The prefix of the entries.
pub(crate) const ENTRIES: &[u8] = b"e/";
/// The prefix of the time index.
pub(crate) const TIME: &[u8] = b"m/";
pub(crate) const CLOCK: &[u8] = b"c/clock";
/// The prefix of the erased users.
pub(crate) const ERASED: &[u8] = b"x/";

/// How many log positions one index block covers (offsets fit in 2 bytes). Unit tests use small
/// blocks so that their small logs cross many block boundaries.
#[cfg(not(test))]
pub(crate) const BLOCK_SPAN: Position = 1024;
#[cfg(test)]
pub(crate) const BLOCK_SPAN: Position = 16;

/// How many consecutive positions one block of entries holds (offsets fit in 1 byte).
#[cfg(not(test))]
pub(crate) const ENTRY_SPAN: Position = 16;
#[cfg(test)]
pub(crate) const ENTRY_SPAN: Position = 4;

/// Aggregates whose id is the user their events are about: the user index lists them, so the
/// aggregate index leaves out the events whose subject is that user.
pub(crate) fn user_keyed(kind: AggregateType) -> bool {
    matches!(
        kind,
        AggregateType::User | AggregateType::Credentials | AggregateType::Membership
    )
}

/// Aggregates found through their user: those named by the user, and sessions, invitations and
/// API keys, whose user the tables `ses/`, `inv/` and `key/` name. The aggregate index leaves
/// out their events whose subject is that user; a query for one such aggregate reads the user's
/// index (and the aggregate index, for events whose user was not known).
pub(crate) fn through_user(kind: AggregateType) -> bool {
    user_keyed(kind)
        || matches!(
            kind,
            AggregateType::Session | AggregateType::Invitation | AggregateType::ApiKey
        )
}

fn push_part(key: &mut Vec<u8>, part: &str) {
    for byte in part.bytes() {
        match byte {
            b'%' => key.extend_from_slice(b"%25"),
            b'/' => key.extend_from_slice(b"%2F"),
            other => key.push(other),
        }
    }
    key.push(b'/');
}

fn prefix(table: &str, parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(table.as_bytes());
    key.push(b'/');
    for part in parts {
        push_part(&mut key, part);
    }
    key
}

/// `prefix` followed by a number (a position or a block), big-endian.
pub(crate) fn at(prefix: &[u8], number: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// The block of an index that holds `position`.
pub(crate) fn block_of(position: Position) -> u64 {
    position / BLOCK_SPAN
}

/// The key of the block of index `prefix` that holds `position`.
pub(crate) fn block(prefix: &[u8], position: Position) -> Vec<u8> {
    at(prefix, block_of(position))
}

/// Adds `position` to a block's value; positions come in ascending order.
pub(crate) fn push_offset(value: &mut Vec<u8>, position: Position) {
    let offset = (position % BLOCK_SPAN) as u16;
    value.extend_from_slice(&offset.to_be_bytes());
}

/// The positions a block's value lists, ascending; `None` for a value that is not a list of
/// offsets.
pub(crate) fn block_positions(key: &[u8], value: &[u8]) -> Option<Vec<Position>> {
    let base = position_of(key)?.checked_mul(BLOCK_SPAN)?;
    if !value.len().is_multiple_of(2) {
        return None;
    }
    Some(
        value
            .chunks_exact(2)
            .map(|pair| base + Position::from(u16::from_be_bytes([pair[0], pair[1]])))
            .collect(),
    )
}

/// The number at the end of a key: an entry's position or an index key's block.
pub(crate) fn position_of(key: &[u8]) -> Option<Position> {
    let tail = key.len().checked_sub(8).map(|start| &key[start..])?;
    Some(Position::from_be_bytes(tail.try_into().ok()?))
}

/// The key of the block of entries that holds `position`.
pub(crate) fn entry_block(position: Position) -> Vec<u8> {
    at(ENTRIES, position / ENTRY_SPAN)
}

/// Adds an entry to its block's value; positions come in ascending order.
pub(crate) fn push_entry(value: &mut Vec<u8>, position: Position, json: &[u8]) {
    value.push((position % ENTRY_SPAN) as u8);
    value.extend_from_slice(&(json.len() as u32).to_be_bytes());
    value.extend_from_slice(json);
}

/// The entries of a block, `(position, JSON)` in position order; `None` for a value that is not
/// a block of entries.
pub(crate) fn block_entries<'v>(
    key: &[u8],
    mut value: &'v [u8],
) -> Option<Vec<(Position, &'v [u8])>> {
    let base = position_of(key)?.checked_mul(ENTRY_SPAN)?;
    let mut entries = Vec::new();
    while let Some((&offset, rest)) = value.split_first() {
        let (length, rest) = rest.split_at_checked(4)?;
        let length = u32::from_be_bytes(length.try_into().ok()?) as usize;
        let (json, rest) = rest.split_at_checked(length)?;
        if Position::from(offset) >= ENTRY_SPAN {
            return None;
        }
        entries.push((base + Position::from(offset), json));
        value = rest;
    }
    Some(entries)
}

pub(crate) fn scope(scope: &str) -> Vec<u8> {
    prefix("t", &[scope])
}

pub(crate) fn scope_type(scope: &str, event_type: &str) -> Vec<u8> {
    prefix("T", &[scope, event_type])
}

pub(crate) fn event_type(event_type: &str) -> Vec<u8> {
    prefix("y", &[event_type])
}

pub(crate) fn actor_kind(kind: ActorKind) -> &'static str {
    match kind {
        ActorKind::User => "user",
        ActorKind::ApiKey => "api_key",
        ActorKind::System => "system",
    }
}

pub(crate) fn actor(kind: ActorKind, id: &str) -> Vec<u8> {
    prefix("a", &[actor_kind(kind), id])
}

pub(crate) fn user(user: &UserId) -> Vec<u8> {
    prefix("u", &[&user.to_string()])
}

pub(crate) fn aggregate(kind: AggregateType, id: &str) -> Vec<u8> {
    prefix("g", &[kind.as_str(), id])
}

/// A time bucket (see `fold::bucket`), ordered as unsigned big-endian bytes.
pub(crate) fn time(bucket: i64) -> Vec<u8> {
    let mut key = TIME.to_vec();
    key.extend_from_slice(&((bucket as u64) ^ (1 << 63)).to_be_bytes());
    key
}

pub(crate) fn memberships_of(user: &UserId) -> Vec<u8> {
    prefix("mb", &[&user.to_string()])
}

pub(crate) fn membership(user: &UserId, tenant: &TenantId) -> Vec<u8> {
    prefix("mb", &[&user.to_string(), tenant.as_str()])
}

pub(crate) fn session(id: &str) -> Vec<u8> {
    prefix("ses", &[id])
}

pub(crate) fn invitation(id: &str) -> Vec<u8> {
    prefix("inv", &[id])
}

pub(crate) fn api_key(id: &Ulid) -> Vec<u8> {
    prefix("key", &[&id.to_string()])
}

pub(crate) fn settings(tenant: &TenantId) -> Vec<u8> {
    prefix("set", &[tenant.as_str()])
}

pub(crate) fn erased(user: &UserId) -> Vec<u8> {
    prefix("x", &[&user.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_index_prefix_is_never_the_prefix_of_another() {
        assert!(!actor(ActorKind::System, "a/b").starts_with(&actor(ActorKind::System, "a")));
        assert!(!scope("acme-2").starts_with(&scope("acme")));
        assert_eq!(
            actor(ActorKind::System, "a/b%"),
            b"a/system/a%2Fb%25/".to_vec()
        );
    }

    #[test]
    fn time_keys_sort_like_the_times_they_stand_for() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        let keys: Vec<Vec<u8>> = times.iter().map(|t| time(*t)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn numbers_come_back_from_keys() {
        assert_eq!(position_of(&at(ENTRIES, 42)), Some(42));
        assert_eq!(position_of(b"short"), None);
    }

    #[test]
    fn a_block_of_entries_gives_back_what_was_put_in() {
        let first = 5 * ENTRY_SPAN + 1;
        let key = entry_block(first);
        assert_eq!(key, entry_block(6 * ENTRY_SPAN - 1));
        let mut value = Vec::new();
        push_entry(&mut value, first, b"{}");
        push_entry(&mut value, 6 * ENTRY_SPAN - 1, br#"{"a":1}"#);
        assert_eq!(
            block_entries(&key, &value),
            Some(vec![
                (first, &b"{}"[..]),
                (6 * ENTRY_SPAN - 1, &br#"{"a":1}"#[..])
            ])
        );
        assert_eq!(block_entries(&key, &value[..value.len() - 1]), None);
        assert_eq!(block_entries(&key, &[ENTRY_SPAN as u8, 0, 0, 0, 0]), None);
    }

    #[test]
    fn a_block_lists_its_positions_in_order() {
        let prefix = scope("acme");
        let first = 3 * BLOCK_SPAN + 7;
        let key = block(&prefix, first);
        assert_eq!(key, block(&prefix, 4 * BLOCK_SPAN - 1));
        assert_ne!(key, block(&prefix, 4 * BLOCK_SPAN));
        let mut value = Vec::new();
        for position in [first, first + 1, 4 * BLOCK_SPAN - 1] {
            push_offset(&mut value, position);
        }
        assert_eq!(
            block_positions(&key, &value),
            Some(vec![first, first + 1, 4 * BLOCK_SPAN - 1])
        );
        assert_eq!(block_positions(&key, &[1, 2, 3]), None);
    }
}
