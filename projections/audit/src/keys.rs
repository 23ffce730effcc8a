//! The layout of the audit tree. Every table has its own key prefix; index keys end in the
//! event's position as 8 big-endian bytes, so each index lists its events in log order and a
//! position range of an index is one sled range.
//!
//! Text parts of keys are escaped (`%` → `%25`, `/` → `%2F`) so that `/` always separates parts
//! and one index's prefix never is a prefix of another index of the same table.
//!
//! | key | value | |
//! | --- | --- | --- |
//! | `e/<pos>` | the entry (JSON) | |
//! | `t/<tenant>/<pos>` | – | a tenant's entries |
//! | `T/<tenant>/<type>/<pos>` | – | a tenant's entries of one event type |
//! | `y/<type>/<pos>` | – | every entry of one event type |
//! | `a/<actor kind>/<actor id>/<pos>` | – | by actor |
//! | `s/<user>/<pos>` | – | by subject user |
//! | `g/<aggregate type>/<aggregate id>/<pos>` | – | by aggregate, except those named by their subject user (see [`user_keyed`]) |
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

/// Aggregates whose id is the user their events are about: the subject index lists them, so
/// the aggregate index leaves out the events whose subject is that user.
pub(crate) fn user_keyed(kind: AggregateType) -> bool {
    matches!(
        kind,
        AggregateType::User | AggregateType::Credentials | AggregateType::Membership
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

/// `prefix` followed by the position.
pub(crate) fn at(prefix: &[u8], position: Position) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// The position at the end of an index key or entry key.
pub(crate) fn position_of(key: &[u8]) -> Option<Position> {
    let tail = key.len().checked_sub(8).map(|start| &key[start..])?;
    Some(Position::from_be_bytes(tail.try_into().ok()?))
}

pub(crate) fn entry(position: Position) -> Vec<u8> {
    at(ENTRIES, position)
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

pub(crate) fn subject(user: &UserId) -> Vec<u8> {
    prefix("s", &[&user.to_string()])
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
    fn positions_come_back_from_keys() {
        assert_eq!(position_of(&at(&scope("acme"), 42)), Some(42));
        assert_eq!(position_of(b"short"), None);
    }
}
