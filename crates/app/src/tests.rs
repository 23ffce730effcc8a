//! The application layer over the real embedded log and read models, with a scripted clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idstream_domain::Actor;
use idstream_eventlog::SharedLog;
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_projection_runtime::ReadModels;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::{App, AppError, Clock, CommandContext, NewUserRequest};

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

async fn app(dir: &std::path::Path) -> (App, Arc<ScriptedClock>) {
    let log: SharedLog = EmbeddedLog::open(&dir.join("log"), EmbeddedOptions::default())
        .await
        .unwrap();
    let access_cache = Arc::new(idstream_access::FactCache::default());
    let read_models = ReadModels::start(
        &dir.join("readmodels"),
        log.clone(),
        crate::projections(access_cache.clone()),
    )
    .await
    .unwrap();
    let clock = Arc::new(ScriptedClock(Mutex::new(VecDeque::from([T0]))));
    (
        App::new(
            log,
            read_models,
            access_cache,
            clock.clone(),
            Duration::from_secs(5),
            crate::IdentityServices::local(dir).await.unwrap(),
        ),
        clock,
    )
}

fn ctx() -> CommandContext {
    CommandContext::new(Actor::system("test"), "c".into(), None).unwrap()
}

fn ada() -> NewUserRequest {
    NewUserRequest {
        email: "ada@example.com".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        roles: vec!["user".parse().unwrap()],
        invite: false,
    }
}

#[tokio::test]
async fn a_claim_not_followed_by_its_user_in_time_is_abandoned_then_taken_over_once_stale() {
    let dir = tempfile::tempdir().unwrap();
    let (app, clock) = app(dir.path()).await;
    app.create_tenant(&ctx(), "acme".parse().unwrap(), "Acme".into())
        .await
        .unwrap();

    // The claim is taken at T0, but by the time the user would be appended the deadline passed.
    clock.set(&[T0, T0 + idstream_domain::email::CLAIM_DEADLINE]);
    let late = app
        .create_user(&ctx(), "acme".parse().unwrap(), ada())
        .await;
    assert!(matches!(late, Err(AppError::Unavailable(_))), "{late:?}");

    // Within the TTL the orphaned claim is still respected.
    clock.set(&[T0 + time::Duration::seconds(20)]);
    let early = app
        .create_user(&ctx(), "acme".parse().unwrap(), ada())
        .await;
    assert!(matches!(early, Err(AppError::EmailTaken)), "{early:?}");

    // Once stale, it is taken over and the user is created.
    clock.set(&[T0 + idstream_domain::email::CLAIM_TTL]);
    let created = app
        .create_user(&ctx(), "acme".parse().unwrap(), ada())
        .await
        .unwrap();
    app.wait_for(created.position).await.unwrap();
    let user = app.user(&created.id.parse().unwrap()).unwrap();
    assert_eq!(user.email, "ada@example.com");
    let again = app
        .create_user(&ctx(), "acme".parse().unwrap(), ada())
        .await;
    assert!(matches!(again, Err(AppError::EmailTaken)), "{again:?}");
}
