//! Given/when/then tests of the fold: recorded events built from real domain events go through
//! the runtime's commit path into a temporary sled tree, then the query API is asked.

use std::collections::BTreeSet;
use std::sync::Arc;

use idstream_domain::events::{
    EmailClaimed, RoleAssigned, RoleRevoked, SessionStarted, TenantCreated, TenantRenamed,
    TotpDisabled, TotpEnabled, UserInvited, UserRegistered, UserReinstated, UserSuspended,
};
use idstream_domain::identity::session::SignInMethod;
use idstream_domain::secret::BlindIndex;
use idstream_domain::{
    Actor, AggregateRef, AggregateType, DomainEvent, Metadata, StreamKey, TenantId, UserId,
};
use idstream_eventlog::{Position, RecordedEvent};
use idstream_projection_runtime::apply_events;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use ulid::Ulid;

use crate::seal;
use crate::search::PeopleIndex;
use crate::{
    Directory, DirectoryProjection, IdempotencyRecord, MembershipView, TenantView, UserStatus,
    UserView,
};

const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

/// An event as the log would record it at `position`, occurring `position` minutes after T0.
/// The stream key is the one the application uses for the event's aggregate.
struct At(Position);

impl At {
    fn record(self, stream: StreamKey, event: DomainEvent) -> RecordedEvent {
        let meta = Metadata {
            actor: Actor::system("test"),
            occurred_at: T0 + Duration::minutes(self.0 as i64),
            correlation_id: format!("c{}", self.0),
            causation_id: None,
        };
        let envelope = event.into_envelope(Ulid::from_parts(self.0, 0), &stream, &meta);
        RecordedEvent {
            position: self.0,
            envelope,
            msg_id: None,
        }
    }

    fn tenant_created(self, tenant: &str, name: &str) -> RecordedEvent {
        self.record(
            tenant_key(tenant),
            DomainEvent::TenantCreated(TenantCreated { name: name.into() }),
        )
    }

    fn tenant_renamed(self, tenant: &str, name: &str) -> RecordedEvent {
        self.record(
            tenant_key(tenant),
            DomainEvent::TenantRenamed(TenantRenamed { name: name.into() }),
        )
    }

    fn registered(self, user: UserId, email: &str, tenant: &str) -> RecordedEvent {
        let (first_name, last_name) = ("Ada".into(), "Lovelace".into());
        let e = UserRegistered {
            email: email.into(),
            first_name,
            last_name,
            tenant: t(tenant),
        };
        self.record(user_key(user), DomainEvent::UserRegistered(e))
    }

    fn invited(self, user: UserId, email: &str, tenant: &str) -> RecordedEvent {
        let (first_name, last_name) = ("Grace".into(), "Hopper".into());
        let e = UserInvited {
            email: email.into(),
            first_name,
            last_name,
            tenant: t(tenant),
        };
        self.record(user_key(user), DomainEvent::UserInvited(e))
    }

    fn suspended(
        self,
        user: UserId,
        until: Option<OffsetDateTime>,
        reason: Option<&str>,
    ) -> RecordedEvent {
        let e = UserSuspended {
            until,
            reason: reason.map(str::to_owned),
        };
        self.record(user_key(user), DomainEvent::UserSuspended(e))
    }

    fn reinstated(self, user: UserId) -> RecordedEvent {
        self.record(
            user_key(user),
            DomainEvent::UserReinstated(UserReinstated {}),
        )
    }

    fn assigned(self, tenant: &str, user: UserId, role: &str) -> RecordedEvent {
        let e = RoleAssigned {
            user,
            role: role.parse().unwrap(),
            expires_at: None,
        };
        self.record(membership_key(tenant, user), DomainEvent::RoleAssigned(e))
    }

    fn signed_in(self, user: UserId, tenant: &str) -> RecordedEvent {
        let at = T0 + Duration::minutes(self.0 as i64);
        let e = SessionStarted {
            user,
            tenant: t(tenant),
            method: SignInMethod::Password,
            refresh: BlindIndex::parse("0".repeat(64)).unwrap(),
            at,
            expires_at: at + Duration::hours(10),
            idle_timeout_seconds: 1800,
            ip: None,
            user_agent: None,
            remembered: false,
        };
        let session = StreamKey::new(
            None,
            AggregateType::Session,
            Ulid::from_parts(self.0, 7).to_string(),
        );
        self.record(session, DomainEvent::SessionStarted(e))
    }

    fn totp(self, user: UserId, on: bool) -> RecordedEvent {
        let credentials = StreamKey::new(None, AggregateType::Credentials, user.to_string());
        let event = if on {
            DomainEvent::TotpEnabled(TotpEnabled { step: 1 })
        } else {
            DomainEvent::TotpDisabled(TotpDisabled {})
        };
        self.record(credentials, event)
    }

    fn revoked(self, tenant: &str, user: UserId, role: &str) -> RecordedEvent {
        let e = RoleRevoked {
            user,
            role: role.parse().unwrap(),
        };
        self.record(membership_key(tenant, user), DomainEvent::RoleRevoked(e))
    }
}

fn with_key(mut event: RecordedEvent, msg_id: &str) -> RecordedEvent {
    event.msg_id = Some(msg_id.to_owned());
    event
}

fn t(tenant: &str) -> TenantId {
    tenant.parse().unwrap()
}

fn u(n: u64) -> UserId {
    UserId::new(Ulid::from_parts(n, u128::from(n)))
}

fn tenant_key(tenant: &str) -> StreamKey {
    StreamKey::new(Some(t(tenant)), AggregateType::Tenant, tenant)
}

fn user_key(user: UserId) -> StreamKey {
    StreamKey::new(None, AggregateType::User, user.to_string())
}

fn membership_key(tenant: &str, user: UserId) -> StreamKey {
    StreamKey::new(Some(t(tenant)), AggregateType::Membership, user.to_string())
}

fn at(position: Position) -> OffsetDateTime {
    T0 + Duration::minutes(position as i64)
}

/// Folds `given` and then `when` (as two batches, as a live runner might) into a fresh tree.
fn given_when(given: &[RecordedEvent], when: &[RecordedEvent]) -> Directory {
    let tree = sled::Config::new()
        .temporary(true)
        .open()
        .unwrap()
        .open_tree(crate::NAME)
        .unwrap();
    let people = Arc::new(PeopleIndex::new());
    let projection = DirectoryProjection::new(people.clone(), seal());
    apply_events(&projection, &tree, given).unwrap();
    apply_events(&projection, &tree, when).unwrap();
    Directory::new(tree, people, seal())
}

fn roles(names: &[&str]) -> BTreeSet<idstream_domain::RoleName> {
    names.iter().map(|r| r.parse().unwrap()).collect()
}

#[test]
fn a_created_tenant_is_listed_with_its_creation_and_a_rename_keeps_it() {
    let directory = given_when(
        &[At(1).tenant_created("acme", "Acme")],
        &[At(2).tenant_renamed("acme", "Acme Corp")],
    );
    assert_eq!(
        directory.tenant(&t("acme")).unwrap(),
        Some(TenantView {
            settings: Default::default(),
            attributes: Default::default(),
            id: t("acme"),
            name: "Acme Corp".into(),
            created_at: at(1),
            created_position: 1,
            updated_position: 2,
        })
    );
}

#[test]
fn tenants_are_paged_in_id_order() {
    let directory = given_when(
        &[
            At(1).tenant_created("globex", "Globex"),
            At(2).tenant_created("acme", "Acme"),
        ],
        &[
            At(3).tenant_created("acme-2", "Acme 2"),
            At(4).tenant_created("initech", "Initech"),
        ],
    );
    let ids = |views: Vec<TenantView>| {
        views
            .into_iter()
            .map(|v| v.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(directory.tenants(None, 2).unwrap()), ["acme", "acme-2"]);
    assert_eq!(
        ids(directory.tenants(Some(&t("acme-2")), 2).unwrap()),
        ["globex", "initech"]
    );
    assert_eq!(
        ids(directory.tenants(Some(&t("initech")), 2).unwrap()),
        Vec::<String>::new()
    );
}

#[test]
fn a_rename_of_a_tenant_that_was_never_created_is_skipped() {
    let tree = sled::Config::new()
        .temporary(true)
        .open()
        .unwrap()
        .open_tree(crate::NAME)
        .unwrap();
    let applied = apply_events(
        &DirectoryProjection::without_search(seal()),
        &tree,
        &[At(1).tenant_renamed("ghost", "Ghost")],
    )
    .unwrap();
    assert_eq!(
        applied.checkpoint, 1,
        "skipping is applying: the checkpoint moves on"
    );
    assert_eq!(applied.skipped.len(), 1);
    assert_eq!(
        Directory::new(tree, Default::default(), seal())
            .tenant(&t("ghost"))
            .unwrap(),
        None
    );
}

#[test]
fn a_registered_user_is_active_and_found_by_email_in_any_case() {
    let directory = given_when(
        &[At(1).tenant_created("acme", "Acme")],
        &[At(2).registered(u(1), "ada@example.com", "acme")],
    );
    let expected = UserView {
        flags: Default::default(),
        email_verified: false,
        activated: true,
        id: u(1),
        email: "ada@example.com".into(),
        email_index: None,
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        image_url: None,
        notifications: Default::default(),
        phone: None,
        language: None,
        attributes: Default::default(),
        external_ids: Default::default(),
        user_names: Default::default(),
        updated_at: None,
        status: UserStatus::Active,
        suspended_until: None,
        suspension_reason: None,
        created_at: at(2),
        last_sign_in: None,
        two_factor: false,
        created_in: t("acme"),
        position: 2,
    };
    assert_eq!(directory.user(&u(1)).unwrap(), Some(expected.clone()));
    assert_eq!(
        directory.user_by_email("  ADA@example.com ").unwrap(),
        Some(expected)
    );
    assert_eq!(directory.user_by_email("bob@example.com").unwrap(), None);
}

#[test]
fn the_last_sign_in_and_the_second_factor_are_noted_without_moving_the_users_position() {
    let directory = given_when(
        &[
            At(1).tenant_created("acme", "Acme"),
            At(2).registered(u(1), "ada@example.com", "acme"),
        ],
        &[
            At(3).signed_in(u(1), "acme"),
            At(4).totp(u(1), true),
            At(5).signed_in(u(1), "acme"),
        ],
    );
    let user = directory.user(&u(1)).unwrap().unwrap();
    assert_eq!(user.last_sign_in, Some(at(5)));
    assert!(user.two_factor);
    assert_eq!(user.position, 2);

    let directory = given_when(
        &[
            At(1).tenant_created("acme", "Acme"),
            At(2).registered(u(1), "ada@example.com", "acme"),
            At(3).totp(u(1), true),
        ],
        &[At(4).totp(u(1), false)],
    );
    let user = directory.user(&u(1)).unwrap().unwrap();
    assert_eq!(user.last_sign_in, None);
    assert!(!user.two_factor);
}

#[test]
fn an_invited_user_is_invited() {
    let directory = given_when(&[], &[At(1).invited(u(2), "grace@example.com", "acme")]);
    assert_eq!(
        directory.user(&u(2)).unwrap().map(|v| v.status),
        Some(UserStatus::Invited)
    );
}

#[test]
fn a_suspension_records_its_end_and_reason_and_reinstatement_clears_them() {
    let until = datetime!(2026-04-01 0:00 UTC);
    let given = [At(1).registered(u(1), "ada@example.com", "acme")];
    let suspended = given_when(
        &given,
        &[At(2).suspended(u(1), Some(until), Some("chargeback"))],
    );
    let view = suspended.user(&u(1)).unwrap().unwrap();
    assert_eq!(
        (
            view.status,
            view.suspended_until,
            view.suspension_reason.as_deref(),
            view.position
        ),
        (UserStatus::Suspended, Some(until), Some("chargeback"), 2)
    );
    assert_eq!(
        view.status_at(until - Duration::seconds(1)),
        UserStatus::Suspended
    );
    assert_eq!(
        view.status_at(until),
        UserStatus::Active,
        "a timed suspension lapses by itself"
    );

    let reinstated = given_when(
        &given,
        &[At(2).suspended(u(1), None, None), At(3).reinstated(u(1))],
    );
    let view = reinstated.user(&u(1)).unwrap().unwrap();
    assert_eq!(
        (
            view.status,
            view.suspended_until,
            view.suspension_reason,
            view.position
        ),
        (UserStatus::Active, None, None, 3)
    );
}

#[test]
fn a_suspension_of_a_user_who_was_never_created_is_skipped() {
    let directory = given_when(&[], &[At(1).suspended(u(9), None, None)]);
    assert_eq!(directory.user(&u(9)).unwrap(), None);
}

#[test]
fn assigned_roles_accumulate_per_tenant_and_are_indexed_by_user() {
    let directory = given_when(
        &[
            At(1).registered(u(1), "ada@example.com", "acme"),
            At(2).assigned("acme", u(1), "user"),
        ],
        &[
            At(3).assigned("acme", u(1), "admin"),
            At(4).assigned("globex", u(1), "user"),
        ],
    );
    assert_eq!(
        directory.membership(&t("acme"), &u(1)).unwrap(),
        Some(MembershipView {
            custom_permissions: Default::default(),
            tenant: t("acme"),
            user: u(1),
            roles: roles(&["admin", "user"]),
            position: 3
        })
    );
    assert_eq!(
        directory.user_tenants(&u(1)).unwrap(),
        vec![t("acme"), t("globex")]
    );
}

#[test]
fn revoking_the_last_role_removes_the_membership() {
    let given = [
        At(1).registered(u(1), "ada@example.com", "acme"),
        At(2).assigned("acme", u(1), "user"),
        At(3).assigned("acme", u(1), "admin"),
        At(4).assigned("globex", u(1), "user"),
    ];
    let one_left = given_when(&given, &[At(5).revoked("acme", u(1), "admin")]);
    assert_eq!(
        one_left
            .membership(&t("acme"), &u(1))
            .unwrap()
            .map(|m| (m.roles, m.position)),
        Some((roles(&["user"]), 5))
    );

    let none_left = given_when(
        &given,
        &[
            At(5).revoked("acme", u(1), "admin"),
            At(6).revoked("acme", u(1), "user"),
        ],
    );
    assert_eq!(none_left.membership(&t("acme"), &u(1)).unwrap(), None);
    assert_eq!(none_left.user_tenants(&u(1)).unwrap(), vec![t("globex")]);
}

#[test]
fn members_are_paged_in_user_id_order_with_their_users() {
    let mut given = Vec::new();
    for n in [3, 1, 2] {
        given.push(At(given.len() as u64 + 1).registered(
            u(n),
            &format!("user{n}@example.com"),
            "acme",
        ));
        given.push(At(given.len() as u64 + 1).assigned("acme", u(n), "user"));
    }
    let directory = given_when(&given, &[At(7).assigned("globex", u(1), "admin")]);
    let page = |after, limit| {
        directory
            .members(&t("acme"), after, limit)
            .unwrap()
            .into_iter()
            .map(|(user, membership)| {
                assert_eq!(user.id, membership.user);
                user.id
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(page(None, 2), vec![u(1), u(2)]);
    assert_eq!(page(Some(u(2)), 2), vec![u(3)]);
    assert_eq!(page(Some(u(3)), 2), vec![]);
    assert_eq!(directory.members(&t("globex"), None, 10).unwrap().len(), 1);
}

#[test]
fn each_idempotency_key_remembers_the_last_position_and_the_aggregate_of_its_append() {
    let directory = given_when(
        &[with_key(
            At(1).tenant_created("acme", "Acme"),
            "create-acme:0",
        )],
        &[
            with_key(
                At(2).registered(u(1), "ada@example.com", "acme"),
                "req:42:0",
            ),
            with_key(At(3).suspended(u(1), None, None), "req:42:1"),
            with_key(At(4).assigned("acme", u(1), "user"), "malformed"),
        ],
    );
    assert_eq!(
        directory.idempotency("create-acme").unwrap(),
        Some(IdempotencyRecord {
            position: 1,
            aggregate: AggregateRef {
                kind: AggregateType::Tenant,
                id: "acme".into()
            },
            tenant: Some(t("acme")),
        })
    );
    assert_eq!(
        directory.idempotency("req:42").unwrap(),
        Some(IdempotencyRecord {
            position: 3,
            aggregate: AggregateRef {
                kind: AggregateType::User,
                id: u(1).to_string()
            },
            tenant: None,
        })
    );
    assert_eq!(directory.idempotency("malformed").unwrap(), None);
}

#[test]
fn email_claims_change_nothing_in_the_directory() {
    let claim = At(1).record(
        StreamKey::new(
            None,
            AggregateType::Email,
            idstream_domain::email::claim_id("ada@example.com"),
        ),
        DomainEvent::EmailClaimed(EmailClaimed {
            user: u(1),
            claimed_at: T0,
            request: None,
        }),
    );
    let tree = sled::Config::new()
        .temporary(true)
        .open()
        .unwrap()
        .open_tree(crate::NAME)
        .unwrap();
    let applied = apply_events(
        &DirectoryProjection::without_search(seal()),
        &tree,
        &[claim],
    )
    .unwrap();
    assert_eq!((applied.checkpoint, applied.skipped.len()), (1, 0));
    assert!(
        tree.iter().all(|entry| entry.unwrap().0.starts_with(b"\0")),
        "only the runtime's checkpoint"
    );
}

#[test]
fn an_event_of_an_unknown_version_is_skipped_with_a_note() {
    let mut newer = At(1).tenant_created("acme", "Acme");
    newer.envelope.version = 2;
    let tree = sled::Config::new()
        .temporary(true)
        .open()
        .unwrap()
        .open_tree(crate::NAME)
        .unwrap();
    let applied = apply_events(
        &DirectoryProjection::without_search(seal()),
        &tree,
        &[newer],
    )
    .unwrap();
    assert_eq!(applied.checkpoint, 1);
    assert!(
        applied.skipped[0].1.contains("TenantCreated"),
        "{:?}",
        applied.skipped
    );
    assert_eq!(
        Directory::new(tree, Default::default(), seal())
            .tenant(&t("acme"))
            .unwrap(),
        None
    );
}

#[test]
fn views_serialise_as_snake_case_json_with_rfc3339_times() {
    let directory = given_when(
        &[],
        &[
            At(1).registered(u(1), "ada@example.com", "acme"),
            At(2).suspended(u(1), Some(at(60)), None),
        ],
    );
    let json = serde_json::to_value(directory.user(&u(1)).unwrap().unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": u(1).to_string(),
            "email": "ada@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "image_url": null,
            "notifications": {},
            "status": "suspended",
            "suspended_until": "2026-03-01T13:00:00Z",
            "suspension_reason": null,
            "flags": {"dashboard_access": true, "api_access": true, "platform_admin": false},
            "email_verified": false,
            "activated": true,
            "created_at": "2026-03-01T12:01:00Z",
            "last_sign_in": null,
            "two_factor": false,
            "created_in": "acme",
            "updated_at": "2026-03-01T12:02:00Z",
            "position": 2
        })
    );
}

#[test]
fn one_batch_or_event_by_event_the_fold_gives_the_same_bytes() {
    let events = vec![
        At(1).tenant_created("acme", "Acme"),
        with_key(At(2).registered(u(1), "ada@example.com", "acme"), "k:0"),
        At(3).assigned("acme", u(1), "admin"),
        At(4).assigned("acme", u(1), "user"),
        At(5).revoked("acme", u(1), "admin"),
        At(6).suspended(u(1), None, Some("audit")),
        At(7).tenant_renamed("acme", "Acme Corp"),
    ];
    let dump = |tree: &sled::Tree| tree.iter().map(|e| e.unwrap()).collect::<Vec<_>>();
    let open = || {
        sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree(crate::NAME)
            .unwrap()
    };

    let batched = open();
    apply_events(
        &DirectoryProjection::without_search(seal()),
        &batched,
        &events,
    )
    .unwrap();
    let stepwise = open();
    for event in &events {
        apply_events(
            &DirectoryProjection::without_search(seal()),
            &stepwise,
            std::slice::from_ref(event),
        )
        .unwrap();
    }
    assert_eq!(dump(&batched), dump(&stepwise));
}

/// The directory running in the real runtime over the real embedded log.
mod live {
    use std::sync::Arc;
    use std::time::Duration;

    use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
    use idstream_eventlog::{Expected, SharedLog};
    use idstream_projection_runtime::{Projection, ReadModels, rebuild_offline};

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(20);

    fn projections() -> Vec<Arc<dyn Projection>> {
        vec![Arc::new(DirectoryProjection::without_search(seal()))]
    }

    #[tokio::test]
    async fn the_live_directory_answers_queries_records_idempotency_keys_and_rebuilds_to_the_same_digest()
     {
        let root = tempfile::tempdir().unwrap();
        let log: SharedLog =
            EmbeddedLog::open(&root.path().join("log"), EmbeddedOptions::default())
                .await
                .unwrap();
        let models = ReadModels::start(&root.path().join("models"), log.clone(), projections())
            .await
            .unwrap();
        let directory = Directory::new(models.tree(crate::NAME), Default::default(), seal());

        let append = |event: RecordedEvent, key: Option<&'static str>| {
            let log = log.clone();
            async move {
                log.append(vec![event.envelope], Expected::Any, key)
                    .await
                    .unwrap()
            }
        };
        append(At(1).tenant_created("acme", "Acme"), Some("create-acme")).await;
        append(
            At(2).registered(u(1), "ada@example.com", "acme"),
            Some("create-ada"),
        )
        .await;
        let last = append(At(3).assigned("acme", u(1), "admin"), None)
            .await
            .last;

        models.wait_for(last, PATIENCE).await.unwrap();
        assert_eq!(
            directory
                .idempotency("create-ada")
                .unwrap()
                .map(|r| r.position),
            Some(2)
        );
        assert_eq!(
            directory
                .user_by_email("ada@example.com")
                .unwrap()
                .map(|v| v.id),
            Some(u(1))
        );
        assert_eq!(directory.members(&t("acme"), None, 10).unwrap().len(), 1);

        let (position, live) = models.digest(crate::NAME).await.unwrap();
        assert_eq!(position, last);
        models.rebuild(crate::NAME).await.unwrap();
        models.wait_for(last, PATIENCE).await.unwrap();
        assert_eq!(
            models.digest(crate::NAME).await.unwrap(),
            (last, live.clone())
        );
        assert_eq!(
            directory.user(&u(1)).unwrap().map(|v| v.position),
            Some(2),
            "queries keep their tree handle"
        );

        let offline = rebuild_offline(
            &root.path().join("replay"),
            log.clone(),
            projections(),
            |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(offline.get(crate::NAME), Some(&live));
        models.shutdown().await;
    }
}

/// The raw-bytes canary (issue 22): a person's address, names, picture, phone and attribute
/// values go through every event that carries them, and then no file of the store holds any of
/// them in the clear, while the queries still answer them.
#[test]
fn no_personal_value_reaches_the_store_files_in_the_clear() {
    use idstream_domain::events::{EmailChanged, UserAttributesChanged, UserProfileChanged};
    use idstream_projection_runtime::personal::files_holding;

    let canaries = [
        "canary-dir-4e1b@example.com",
        "canary-dir-changed-4e1b@example.com",
        "Zoë-Canary",
        "Canaryson",
        "https://img.example.com/canary-4e1b.png",
        "+33612344e1b",
        "canary-attribute-4e1b",
    ];
    let root = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(root.path()).open().unwrap();
    let tree = db.open_tree(crate::NAME).unwrap();
    let people = Arc::new(PeopleIndex::new());
    let projection = DirectoryProjection::new(people.clone(), seal());
    let user = u(41);
    let mut values = std::collections::BTreeMap::new();
    values.insert("badge".to_owned(), serde_json::json!(canaries[6]));
    let events = [
        At(1).tenant_created("acme", "Acme"),
        At(2).record(
            user_key(user),
            DomainEvent::UserRegistered(UserRegistered {
                email: canaries[0].into(),
                first_name: canaries[2].into(),
                last_name: canaries[3].into(),
                tenant: t("acme"),
            }),
        ),
        At(3).record(
            user_key(user),
            DomainEvent::UserProfileChanged(UserProfileChanged {
                first_name: canaries[2].into(),
                last_name: canaries[3].into(),
                image_url: Some(canaries[4].into()),
                notifications: Default::default(),
                phone: Some(canaries[5].into()),
                language: None,
            }),
        ),
        At(4).record(
            user_key(user),
            DomainEvent::UserAttributesChanged(UserAttributesChanged {
                tenant: t("acme"),
                values,
            }),
        ),
        At(5).record(
            user_key(user),
            DomainEvent::EmailChanged(EmailChanged {
                email: canaries[1].into(),
            }),
        ),
    ];
    apply_events(&projection, &tree, &events).unwrap();

    let directory = Directory::new(tree.clone(), people.clone(), seal());
    let view = directory.user(&user).unwrap().unwrap();
    assert_eq!(view.email, canaries[1]);
    assert_eq!(
        (view.first_name.as_str(), view.last_name.as_str()),
        (canaries[2], canaries[3])
    );
    assert_eq!(view.image_url.as_deref(), Some(canaries[4]));
    assert_eq!(view.phone.as_deref(), Some(canaries[5]));
    assert_eq!(
        view.attributes[&t("acme")]["badge"],
        serde_json::json!(canaries[6])
    );
    assert_eq!(
        directory.user_by_email(canaries[1]).unwrap().map(|v| v.id),
        Some(user)
    );
    assert_eq!(directory.user_by_email(canaries[0]).unwrap(), None);

    db.flush().unwrap();
    drop((directory, tree, db));
    assert_eq!(files_holding(root.path(), &canaries), vec![]);
}

#[test]
fn an_external_id_finds_its_member_in_its_own_tenant_only_and_goes_with_a_change_or_erasure() {
    use crate::search::{EXTERNAL_ID, Scope, Search, Sort};
    use idstream_domain::events::{UserErased, UserProvisioningIdsChanged};
    let xid = |position: Position, tenant: &str, id: Option<&str>| {
        At(position).record(
            user_key(u(1)),
            DomainEvent::UserProvisioningIdsChanged(UserProvisioningIdsChanged {
                tenant: t(tenant),
                external_id: id.map(str::to_owned),
                user_name: id.map(|id| format!("Name-{id}")),
            }),
        )
    };
    // Members of a tenant by an entry of the index (`name`: EXTERNAL_ID or USER_NAME).
    let by = |directory: &Directory, tenant: &str, name: &str, key: String| {
        let tenant = t(tenant);
        let wanted = [(name.to_owned(), key)];
        directory
            .people()
            .search(&Search {
                scope: Scope::Tenant(&tenant),
                text: None,
                roles: &[],
                statuses: &[],
                created: (None, None),
                last_sign_in: (None, None),
                verified: None,
                attributes: &wanted,
                field: None,
                sort: Sort::default(),
                after: None,
                limit: 10,
                now: T0,
            })
            .unwrap()
            .users
    };
    let found = |directory: &Directory, tenant: &str, id: &str| {
        by(directory, tenant, EXTERNAL_ID, id.to_owned())
    };
    let by_name = |directory: &Directory, tenant: &str, name: &str| {
        by(
            directory,
            tenant,
            crate::search::USER_NAME,
            crate::search::user_name_key(name),
        )
    };
    let given = [
        At(1).registered(u(1), "ada@example.com", "acme"),
        At(2).assigned("acme", u(1), "user"),
        At(3).assigned("beta", u(1), "user"),
        At(4).registered(u(2), "bob@example.com", "acme"),
        At(5).assigned("acme", u(2), "user"),
    ];
    let directory = given_when(&given, &[xid(6, "acme", Some("E-1"))]);
    assert_eq!(found(&directory, "acme", "E-1"), vec![u(1)]);
    // Exactly: case counts, and another tenant's client does not know it.
    assert!(found(&directory, "acme", "e-1").is_empty());
    assert!(found(&directory, "beta", "E-1").is_empty());
    // The user name, without regard to case.
    assert_eq!(by_name(&directory, "acme", "NAME-e-1"), vec![u(1)]);
    assert!(by_name(&directory, "beta", "Name-E-1").is_empty());
    let view = directory.user(&u(1)).unwrap().unwrap();
    assert_eq!(
        view.external_ids.get(&t("acme")).map(String::as_str),
        Some("E-1")
    );
    assert_eq!(view.updated_at, Some(at(6)));
    // Sealed in the tree like the rest of the person's data.
    let stored = directory.user_sealed(&u(1)).unwrap().unwrap();
    assert_ne!(stored.external_ids[&t("acme")], "E-1");
    assert_eq!(view.user_names[&t("acme")], "Name-E-1");
    assert_ne!(stored.user_names[&t("acme")], "Name-E-1");

    let changed = given_when(
        &given,
        &[xid(6, "acme", Some("E-1")), xid(7, "acme", Some("E-2"))],
    );
    assert!(found(&changed, "acme", "E-1").is_empty());
    assert_eq!(found(&changed, "acme", "E-2"), vec![u(1)]);
    let cleared = given_when(&given, &[xid(6, "acme", Some("E-1")), xid(7, "acme", None)]);
    assert!(found(&cleared, "acme", "E-1").is_empty());
    assert!(
        cleared
            .user(&u(1))
            .unwrap()
            .unwrap()
            .external_ids
            .is_empty()
    );
    let erased = given_when(
        &given,
        &[
            xid(6, "acme", Some("E-1")),
            At(7).record(user_key(u(1)), DomainEvent::UserErased(UserErased {})),
        ],
    );
    assert!(found(&erased, "acme", "E-1").is_empty());
    assert!(erased.user(&u(1)).unwrap().unwrap().external_ids.is_empty());
    assert!(erased.user(&u(1)).unwrap().unwrap().user_names.is_empty());
}

#[test]
fn folded_rows_say_whose_fields_fold_to_their_lower_case_and_who_has_a_provisioned_name() {
    use idstream_domain::events::{UserProfileChanged, UserProvisioningIdsChanged};
    let renamed = |position: Position, user: UserId, first: &str, last: &str| {
        At(position).record(
            user_key(user),
            DomainEvent::UserProfileChanged(UserProfileChanged {
                first_name: first.into(),
                last_name: last.into(),
                image_url: None,
                notifications: Default::default(),
                phone: None,
                language: None,
            }),
        )
    };
    let directory = given_when(
        &[
            At(1).registered(u(1), "ada@example.com", "acme"),
            At(2).assigned("acme", u(1), "user"),
            At(3).registered(u(2), "jose@example.com", "acme"),
            At(4).assigned("acme", u(2), "user"),
            renamed(5, u(2), "José", "Ñúñez"),
            At(6).registered(u(3), "mac@example.com", "acme"),
            At(7).assigned("acme", u(3), "user"),
            renamed(8, u(3), "Angus", "MacDonald"),
        ],
        &[At(9).record(
            user_key(u(3)),
            DomainEvent::UserProvisioningIdsChanged(UserProvisioningIdsChanged {
                tenant: t("acme"),
                external_id: None,
                user_name: Some("angus.m".into()),
            }),
        )],
    );
    let rows = directory
        .people()
        .folded_rows(&t("acme"), &[u(1), u(2), u(3), u(4)]);
    let ada = rows[0].as_ref().unwrap();
    assert!(ada.plain && !ada.provisioned_name);
    assert_eq!((&*ada.first, &*ada.last), ("ada", "lovelace"));
    assert_eq!(ada.status, UserStatus::Active);
    let jose = rows[1].as_ref().unwrap();
    assert!(!jose.plain, "José folds to jose, not to its lower case");
    let angus = rows[2].as_ref().unwrap();
    assert!(angus.plain, "MacDonald folds to its lower case");
    assert!(angus.provisioned_name);
    assert_eq!(&*angus.last, "macdonald");
    assert!(rows[3].is_none(), "an unknown id");
    // Another tenant's name for someone is not this tenant's.
    let elsewhere = directory.people().folded_rows(&t("beta"), &[u(3)]);
    assert!(!elsewhere[0].as_ref().unwrap().provisioned_name);
}
