//! [`PersonalDataLog`]: the event log as the service uses it, with personal data encrypted on the
//! way in and decrypted on the way out (see [`crate::personal`]).

use std::sync::Arc;

use futures::StreamExt;
use idstream_domain::{AggregateType, EventEnvelope, StreamKey};
use idstream_eventlog::{
    AppendError, Appended, EventLog, EventStream, Expected, LogError, Position, RawEvent,
    RecordedEvent, SharedLog,
};

use crate::personal::{PersonalDataError, PersonalKeys, open_envelope, seal_envelope};

/// The type of the event that destroys a user's key.
const ERASED: &str = "UserErased";

/// Wraps a log so that everything above it (application, projections, replays) works with clear
/// personal data while the log itself, and every subscriber of the raw stream, holds only
/// ciphertext.
///
/// It also carries out erasures: once a `UserErased` event is appended, and again whenever one
/// is read (so an erasure interrupted by a crash completes on the next read), the user's key is
/// destroyed. Events of an erased user read with placeholders from then on.
pub struct PersonalDataLog {
    inner: SharedLog,
    keys: Arc<PersonalKeys>,
}

impl PersonalDataLog {
    pub fn new(inner: SharedLog, keys: Arc<PersonalKeys>) -> PersonalDataLog {
        PersonalDataLog { inner, keys }
    }

    /// [`PersonalDataLog::new`], as the shared log the service passes around.
    pub fn wrap(inner: SharedLog, keys: Arc<PersonalKeys>) -> SharedLog {
        Arc::new(PersonalDataLog::new(inner, keys))
    }
}

fn erased_user(envelope: &EventEnvelope) -> Option<&str> {
    (envelope.aggregate.kind == AggregateType::User && envelope.event_type == ERASED)
        .then_some(envelope.aggregate.id.as_str())
}

async fn open(keys: &PersonalKeys, mut event: RecordedEvent) -> Result<RecordedEvent, LogError> {
    if let Some(user) = erased_user(&event.envelope)
        && !keys.known_erased(user)
    {
        keys.erase(user).await.map_err(unavailable)?;
    }
    open_envelope(keys, &mut event.envelope)
        .await
        .map_err(unavailable)?;
    Ok(event)
}

fn unavailable(error: PersonalDataError) -> LogError {
    LogError::Unavailable(format!("personal-data keys: {error}"))
}

#[async_trait::async_trait]
impl EventLog for PersonalDataLog {
    async fn append(
        &self,
        mut events: Vec<EventEnvelope>,
        expected: Expected,
        idempotency_key: Option<&str>,
    ) -> Result<Appended, AppendError> {
        for envelope in &mut events {
            seal_envelope(&self.keys, envelope)
                .await
                .map_err(|error| match error {
                    PersonalDataError::Erased(_)
                    | PersonalDataError::InvalidUser(_)
                    | PersonalDataError::NoOwner(_)
                    | PersonalDataError::TooLong => AppendError::Invalid(error.to_string()),
                    other => AppendError::Unavailable(other.to_string()),
                })?;
        }
        let erasures: Vec<String> = events
            .iter()
            .filter_map(|e| erased_user(e).map(str::to_owned))
            .collect();
        let appended = self.inner.append(events, expected, idempotency_key).await?;
        for user in erasures {
            // Readers of the event finish the job if this fails (see `open`).
            if let Err(error) = self.keys.erase(&user).await {
                tracing::warn!(%user, %error, "a user's personal-data key could not be destroyed yet; the next reader of the erasure will");
            }
        }
        Ok(appended)
    }

    /// Passed through as is: imported events are the stored bytes of another log, personal data
    /// already encrypted with keys that were copied with them.
    async fn import_raw(&self, events: Vec<RawEvent>) -> Result<Appended, AppendError> {
        self.inner.import_raw(events).await
    }

    async fn read_stream(&self, key: &StreamKey) -> Result<Vec<RecordedEvent>, LogError> {
        let mut opened = Vec::new();
        for event in self.inner.read_stream(key).await? {
            opened.push(open(&self.keys, event).await?);
        }
        Ok(opened)
    }

    async fn read_after(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let mut opened = Vec::new();
        for event in self.inner.read_after(after, max).await? {
            opened.push(open(&self.keys, event).await?);
        }
        Ok(opened)
    }

    /// The stored bytes, personal data still encrypted: tamper evidence covers what is stored.
    async fn read_raw_after(&self, after: Position, max: usize) -> Result<Vec<RawEvent>, LogError> {
        self.inner.read_raw_after(after, max).await
    }

    async fn subscribe(&self, after: Position) -> Result<EventStream, LogError> {
        let keys = self.keys.clone();
        let inner = self.inner.subscribe(after).await?;
        Ok(inner
            .then(move |item| {
                let keys = keys.clone();
                async move {
                    match item {
                        Ok(event) => open(&keys, event).await,
                        Err(error) => Err(error),
                    }
                }
            })
            .boxed())
    }

    async fn last_position(&self) -> Result<Position, LogError> {
        self.inner.last_position().await
    }

    async fn write_check(&self) -> Result<Position, LogError> {
        self.inner.write_check().await
    }

    async fn log_id(&self) -> Result<String, LogError> {
        self.inner.log_id().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileKeyStore;
    use idstream_domain::{Actor, AggregateRef};
    use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
    use serde_json::json;

    const USER: &str = "01J00000000000000000000USR";

    fn event(event_type: &str, data: serde_json::Value) -> EventEnvelope {
        EventEnvelope {
            id: ulid::Ulid::new(),
            event_type: event_type.into(),
            version: 1,
            tenant: None,
            aggregate: AggregateRef {
                kind: AggregateType::User,
                id: USER.into(),
            },
            actor: Actor::system("test"),
            occurred_at: time::OffsetDateTime::UNIX_EPOCH,
            correlation_id: "c".into(),
            causation_id: None,
            data,
        }
    }

    #[tokio::test]
    async fn the_log_holds_ciphertext_readers_see_clear_text_until_the_user_is_erased() {
        let dir = tempfile::tempdir().unwrap();
        let raw = EmbeddedLog::open(&dir.path().join("log"), EmbeddedOptions::default())
            .await
            .unwrap();
        let keys = Arc::new(PersonalKeys::new(Arc::new(
            FileKeyStore::open(dir.path().join("keys")).unwrap(),
        )));
        let log = PersonalDataLog::wrap(raw.clone(), keys);
        let canary = "canary-7f3a@example.com";
        let registered = event(
            "UserRegistered",
            json!({"email": canary, "first_name": "Canary", "last_name": "Bird", "tenant": "acme"}),
        );
        let key = registered.stream_key();
        let first = log
            .append(vec![registered], Expected::NoEvents, None)
            .await
            .unwrap();

        let stored = raw.read_after(0, 10).await.unwrap();
        let stored = serde_json::to_string(&stored[0].envelope).unwrap();
        assert!(
            !stored.contains("canary") && !stored.contains("Canary"),
            "{stored}"
        );
        assert_eq!(
            log.read_stream(&key).await.unwrap()[0].envelope.data["email"],
            canary
        );

        let mut live = log.subscribe(0).await.unwrap();
        assert_eq!(
            live.next().await.unwrap().unwrap().envelope.data["first_name"],
            "Canary"
        );

        log.append(
            vec![event("UserErased", json!({}))],
            Expected::At(first.last),
            None,
        )
        .await
        .unwrap();
        // A reader that starts afresh (another replica, a replay) sees placeholders.
        let fresh_keys = Arc::new(PersonalKeys::new(Arc::new(
            FileKeyStore::open(dir.path().join("keys")).unwrap(),
        )));
        let fresh = PersonalDataLog::wrap(raw.clone(), fresh_keys);
        let events = fresh.read_after(0, 10).await.unwrap();
        let text = serde_json::to_string(&events[0].envelope).unwrap();
        assert!(!text.contains("anary"), "{text}");
        assert_eq!(events[1].envelope.event_type, "UserErased");
        assert!(live.next().await.unwrap().is_ok());

        // Nothing personal can be written for an erased user any more.
        let refused = log
            .append(
                vec![event(
                    "UserProfileChanged",
                    json!({"first_name": "Again", "last_name": "X", "notifications": {}}),
                )],
                Expected::Any,
                None,
            )
            .await;
        assert!(
            matches!(refused, Err(AppendError::Invalid(_))),
            "{refused:?}"
        );
    }
}
