//! The application layer over the real embedded log and read models, with a scripted clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idstream_eventlog::SharedLog;
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_projection_runtime::ReadModels;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::{App, AppError, Caller, Clock, NewUserRequest};

const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

/// Answers the instants it is given in turn, then keeps answering the last one.
struct ScriptedClock(Mutex<VecDeque<OffsetDateTime>>);

impl ScriptedClock {
    fn set(&self, instants: &[OffsetDateTime]) {
        *self.0.lock().unwrap() = instants.iter().copied().collect();
    }
}

impl Clock for ScriptedClock {
    fn now(&self) -> OffsetDateTime {
        let mut queue = self.0.lock().unwrap();
        if queue.len() > 1 {
            queue.pop_front().unwrap()
        } else {
            *queue.front().unwrap()
        }
    }
}

/// Always the same instant.
pub(crate) struct FixedClock(pub(crate) OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// The wall clock moved forward by what a test says: for lifetimes measured in minutes or days.
#[derive(Default)]
pub(crate) struct ShiftedClock(AtomicI64);

impl ShiftedClock {
    pub(crate) fn advance(&self, by: time::Duration) {
        self.0.fetch_add(by.whole_seconds(), Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.0.load(Ordering::SeqCst))
    }
}

/// An app over a new embedded log and read models in `dir`, with `clock` and `services`.
pub(crate) async fn app_in(
    dir: &std::path::Path,
    clock: Arc<dyn Clock>,
    services: crate::IdentityServices,
) -> App {
    let log: SharedLog = EmbeddedLog::open(&dir.join("log"), EmbeddedOptions::default())
        .await
        .unwrap();
    let caches = crate::Caches::local(&services);
    let read_models = ReadModels::start(
        &dir.join("readmodels"),
        log.clone(),
        crate::projections(caches.clone()),
    )
    .await
    .unwrap();
    let replays =
        crate::replay::Replays::new(dir.join("replays"), log.clone(), caches.seal.clone());
    App::new(
        log,
        read_models,
        caches,
        clock,
        Duration::from_secs(5),
        services,
        replays,
    )
}

async fn app(dir: &std::path::Path) -> (App, Arc<ScriptedClock>) {
    let clock = Arc::new(ScriptedClock(Mutex::new(VecDeque::from([T0]))));
    let services = crate::IdentityServices::local(dir).await.unwrap();
    (app_in(dir, clock.clone(), services).await, clock)
}

fn ctx() -> Caller {
    Caller::system("test")
}

/// A signed-in user of `tenant` (through a session that authentication would have found).
pub(crate) fn as_user(user: idstream_domain::UserId, tenant: &str) -> Caller {
    Caller::user(crate::Authenticated {
        user,
        tenant: tenant.parse().unwrap(),
        via: crate::Credential::Session(ulid::Ulid::new()),
        must_enrol_second_factor: false,
    })
}

fn ada() -> NewUserRequest {
    NewUserRequest {
        email: "ada@example.com".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        roles: vec!["user".parse().unwrap()],
        invite: false,
        phone: None,
        attributes: None,
    }
}

#[tokio::test]
async fn a_claim_not_followed_by_its_user_in_time_is_abandoned_then_taken_over_once_stale() {
    let dir = tempfile::tempdir().unwrap();
    let (app, clock) = app(dir.path()).await;
    app.tenants
        .create(&ctx(), "acme".parse().unwrap(), "Acme".into())
        .await
        .unwrap();

    // The claim is taken at T0, but by the time the user would be appended the deadline passed.
    clock.set(&[T0, T0 + idstream_domain::email::CLAIM_DEADLINE]);
    let late = app
        .users
        .create(&ctx(), "acme".parse().unwrap(), ada())
        .await;
    assert!(matches!(late, Err(AppError::Unavailable(_))), "{late:?}");

    // Within the TTL the orphaned claim is still respected.
    clock.set(&[T0 + time::Duration::seconds(20)]);
    let early = app
        .users
        .create(&ctx(), "acme".parse().unwrap(), ada())
        .await;
    assert!(matches!(early, Err(AppError::EmailTaken)), "{early:?}");

    // Once stale, it is taken over and the user is created.
    clock.set(&[T0 + idstream_domain::email::CLAIM_TTL]);
    let created = app
        .users
        .create(&ctx(), "acme".parse().unwrap(), ada())
        .await
        .unwrap();
    app.core().wait_for(created.position).await.unwrap();
    let user = app.core().user_now(&created.id.parse().unwrap()).unwrap();
    assert_eq!(user.email, "ada@example.com");
    let again = app
        .users
        .create(&ctx(), "acme".parse().unwrap(), ada())
        .await;
    assert!(matches!(again, Err(AppError::EmailTaken)), "{again:?}");
}

fn person(email: &str) -> NewUserRequest {
    NewUserRequest {
        email: email.into(),
        first_name: "Some".into(),
        last_name: "One".into(),
        roles: vec![],
        invite: false,
        phone: None,
        attributes: None,
    }
}

#[tokio::test]
async fn claims_are_keyed_and_a_held_legacy_claim_blocks_its_address_until_released() {
    use idstream_domain::email;
    use idstream_domain::envelope::{AggregateType, Metadata, StreamKey};
    use idstream_domain::events::{EmailClaimed, UserRegistered};
    use idstream_domain::{DomainEvent, UserId};
    use idstream_eventlog::Expected;
    use ulid::Ulid;

    let dir = tempfile::tempdir().unwrap();
    let (app, clock) = app(dir.path()).await;
    let acme: idstream_domain::TenantId = "acme".parse().unwrap();
    app.tenants
        .create(&ctx(), acme.clone(), "Acme".into())
        .await
        .unwrap();

    // A user created by an earlier version, whose claim is named by the unkeyed hash.
    let old = UserId::new(Ulid::new());
    let meta = Metadata {
        actor: idstream_domain::Actor::system("earlier-version"),
        occurred_at: T0,
        correlation_id: "earlier".into(),
        causation_id: None,
    };
    let legacy = StreamKey::new(
        None,
        AggregateType::Email,
        email::claim_id("old@example.com"),
    );
    let claimed = DomainEvent::EmailClaimed(EmailClaimed {
        user: old,
        claimed_at: T0,
        request: None,
    });
    app.core()
        .log()
        .append(
            vec![claimed.into_envelope(Ulid::new(), &legacy, &meta)],
            Expected::NoEvents,
            None,
        )
        .await
        .unwrap();
    let registered = DomainEvent::UserRegistered(UserRegistered {
        email: "old@example.com".into(),
        first_name: "Old".into(),
        last_name: "Timer".into(),
        tenant: acme.clone(),
    });
    let user_stream = StreamKey::new(None, AggregateType::User, old.to_string());
    let appended = app
        .core()
        .log()
        .append(
            vec![registered.into_envelope(Ulid::new(), &user_stream, &meta)],
            Expected::NoEvents,
            None,
        )
        .await
        .unwrap();
    app.core().wait_for(appended.last).await.unwrap();

    // A day later (its user exists, so the claim never goes stale) the address is still taken,
    // for a new user and for an email change of another user alike.
    clock.set(&[T0 + time::Duration::days(1)]);
    let taken = app
        .users
        .create(&ctx(), acme.clone(), person("old@example.com"))
        .await;
    assert!(matches!(taken, Err(AppError::EmailTaken)), "{taken:?}");

    // New claims are named by the keyed hash, not the one anyone can compute from a guess.
    let created = app.users.create(&ctx(), acme.clone(), ada()).await.unwrap();
    let ada_id: UserId = created.id.parse().unwrap();
    assert!(matches!(
        app.core()
            .check_legacy_claim("old@example.com", ada_id)
            .await,
        Err(AppError::EmailTaken)
    ));
    app.core()
        .check_legacy_claim("old@example.com", old)
        .await
        .unwrap();
    let keyed = email::keyed_claim_id(
        &app.core()
            .id()
            .keys
            .vault()
            .blind_index(email::CLAIM_INDEX_PURPOSE, "ada@example.com"),
    );
    assert_ne!(keyed, email::claim_id("ada@example.com"));
    let claims = |events: &[idstream_eventlog::RecordedEvent]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.envelope.event_type == "EmailClaimed")
            .map(|e| e.envelope.aggregate.id.clone())
            .collect()
    };
    let events = app.core().log().read_after(0, usize::MAX).await.unwrap();
    assert_eq!(
        claims(&events),
        [legacy.aggregate.id.clone(), keyed.clone()]
    );
    // The keyed claim holds like any other.
    let twice = app.users.create(&ctx(), acme.clone(), ada()).await;
    assert!(matches!(twice, Err(AppError::EmailTaken)), "{twice:?}");

    // Erasing the old user releases their legacy claim: the address is free again.
    let erased = app.users.erase(&ctx(), old).await.unwrap();
    app.core().wait_for(erased.position).await.unwrap();
    let events = app.core().log().read_after(0, usize::MAX).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.envelope.event_type == "EmailReleased"
                && e.envelope.aggregate.id == legacy.aggregate.id),
        "the legacy claim is released"
    );
    let reused = app
        .users
        .create(&ctx(), acme, person("old@example.com"))
        .await
        .unwrap();
    app.core().wait_for(reused.position).await.unwrap();
    assert_eq!(
        app.core()
            .user_now(&reused.id.parse().unwrap())
            .unwrap()
            .email,
        "old@example.com"
    );
}
