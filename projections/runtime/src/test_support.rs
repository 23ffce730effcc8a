//! A test projection (events counted per tenant) and fabricated events built from real domain
//! events.

use idstream_domain::events::TenantRenamed;
use idstream_domain::{Actor, AggregateType, DomainEvent, EventEnvelope, Metadata, StreamKey};
use idstream_eventlog::{Position, RecordedEvent};
use time::macros::datetime;
use ulid::Ulid;

use crate::{ApplyError, Projection, Staged};

/// Counts events per tenant under `count/<tenant>` (u64, big-endian); named `counter` unless
/// `name` says otherwise. Deterministic ways to
/// misbehave, keyed on the tenant of the event: `fail_on` returns an error, `panic_on` panics,
/// and the tenant `skip-me` is skipped with a note.
#[derive(Default, Clone)]
pub(crate) struct Counter {
    pub name: Option<&'static str>,
    pub version: u32,
    pub fail_on: Option<&'static str>,
    pub panic_on: Option<&'static str>,
    /// Instances made by [`Projection::beside`] (online rebuilds) refuse this tenant's events.
    pub beside_fails_on: Option<&'static str>,
}

impl Projection for Counter {
    fn name(&self) -> &'static str {
        self.name.unwrap_or("counter")
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn beside(&self) -> std::sync::Arc<dyn Projection> {
        std::sync::Arc::new(Counter {
            fail_on: self.beside_fails_on.or(self.fail_on),
            ..self.clone()
        })
    }

    fn apply(&self, state: &mut Staged<'_>, event: &RecordedEvent) -> Result<(), ApplyError> {
        let tenant = event.envelope.tenant.as_ref().map_or("_", |t| t.as_str());
        if self.fail_on == Some(tenant) {
            return Err(ApplyError::Rejected(format!("tenant {tenant} is refused")));
        }
        if self.panic_on == Some(tenant) {
            panic!("tenant {tenant} makes apply panic");
        }
        if tenant == "skip-me" {
            state.skip(format!("tenant {tenant} is skipped"));
            return Ok(());
        }
        let key = format!("count/{tenant}");
        let count = match state.get(&key)? {
            None => 0,
            Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
                ApplyError::Corrupt {
                    key: key.clone(),
                    reason: format!("{} bytes, not 8", bytes.len()),
                }
            })?),
        };
        state.insert(key, (count + 1).to_be_bytes());
        Ok(())
    }
}

/// The envelope of a real `TenantRenamed` event of `tenant`.
pub(crate) fn envelope(n: u64, tenant: &str) -> EventEnvelope {
    let stream = StreamKey::new(Some(tenant.parse().unwrap()), AggregateType::Tenant, tenant);
    let meta = Metadata {
        actor: Actor::system("test"),
        occurred_at: datetime!(2026-03-01 12:00 UTC),
        correlation_id: format!("c{n}"),
        causation_id: None,
    };
    DomainEvent::TenantRenamed(TenantRenamed {
        name: format!("{tenant} #{n}"),
    })
    .into_envelope(Ulid::from_parts(n, n.into()), &stream, &meta)
}

/// A recorded event at `position`, as the log would deliver it.
pub(crate) fn event(position: Position, tenant: &str) -> RecordedEvent {
    RecordedEvent {
        position,
        envelope: envelope(position, tenant),
        msg_id: None,
    }
}

pub(crate) fn temp_tree() -> sled::Tree {
    sled::Config::new()
        .temporary(true)
        .open()
        .unwrap()
        .open_tree("counter")
        .unwrap()
}

/// The counts in a tree, by tenant.
pub(crate) fn counts(tree: &sled::Tree) -> Vec<(String, u64)> {
    tree.scan_prefix("count/")
        .map(|entry| {
            let (key, value) = entry.unwrap();
            let tenant = String::from_utf8(key[6..].to_vec()).unwrap();
            (
                tenant,
                u64::from_be_bytes(value.as_ref().try_into().unwrap()),
            )
        })
        .collect()
}
