//! The audit projection folded from real domain events, and its queries checked against a plain
//! filter over every entry.

use std::collections::BTreeSet;

use idstream_domain::access::{Permission, RecordAccess};
use idstream_domain::events::*;
use idstream_domain::identity::credentials::PasswordReason;
use idstream_domain::identity::session::{RevocationReason, SignInMethod};
use idstream_domain::secret::BlindIndex;
use idstream_domain::tenant::TenantSettings;
use idstream_domain::{
    Actor, ActorKind, AggregateType, DomainEvent, EventEnvelope, Metadata, StreamKey, TenantId,
    UserId,
};
use idstream_eventlog::{Position, RecordedEvent};
use idstream_projection_runtime::apply_events;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use ulid::Ulid;

use crate::fold::Stored;
use crate::query::matches;
use crate::*;

const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

fn u(n: u64) -> UserId {
    UserId::new(Ulid::from_parts(n, u128::from(n)))
}

fn t(name: &str) -> TenantId {
    name.parse().unwrap()
}

fn user_actor(n: u64) -> Actor {
    Actor {
        kind: ActorKind::User,
        id: u(n).to_string(),
    }
}

fn index(n: u8) -> BlindIndex {
    BlindIndex::from_bytes(&[n; 32])
}

fn temp_tree() -> sled::Tree {
    sled::Config::new()
        .temporary(true)
        .open()
        .unwrap()
        .open_tree(NAME)
        .unwrap()
}

/// A log being written: each event gets the next position and a time `seconds` after T0.
#[derive(Default)]
struct Log {
    events: Vec<RecordedEvent>,
}

impl Log {
    fn next_position(&self) -> Position {
        self.events.len() as Position + 1
    }

    fn push(
        &mut self,
        stream: StreamKey,
        actor: Actor,
        seconds: i64,
        event: DomainEvent,
    ) -> Position {
        let position = self.next_position();
        let meta = Metadata {
            actor,
            occurred_at: T0 + Duration::seconds(seconds),
            correlation_id: format!("c{position}"),
            causation_id: None,
        };
        let envelope = event.into_envelope(Ulid::from_parts(position, 1), &stream, &meta);
        self.push_envelope(envelope)
    }

    fn push_envelope(&mut self, envelope: EventEnvelope) -> Position {
        let position = self.next_position();
        self.events.push(RecordedEvent {
            position,
            envelope,
            msg_id: None,
        });
        position
    }

    fn tenant(&mut self, tenant: &str, actor: Actor, s: i64, event: DomainEvent) -> Position {
        let stream = StreamKey::new(Some(t(tenant)), AggregateType::Tenant, tenant);
        self.push(stream, actor, s, event)
    }

    fn user(&mut self, user: UserId, actor: Actor, s: i64, event: DomainEvent) -> Position {
        let stream = StreamKey::new(None, AggregateType::User, user.to_string());
        self.push(stream, actor, s, event)
    }

    fn member(
        &mut self,
        tenant: &str,
        user: UserId,
        actor: Actor,
        s: i64,
        event: DomainEvent,
    ) -> Position {
        let stream = StreamKey::new(Some(t(tenant)), AggregateType::Membership, user.to_string());
        self.push(stream, actor, s, event)
    }

    fn credentials(&mut self, user: UserId, s: i64, event: DomainEvent) -> Position {
        let stream = StreamKey::new(None, AggregateType::Credentials, user.to_string());
        self.push(stream, Actor::system("sign-in"), s, event)
    }

    fn session(&mut self, id: Ulid, actor: Actor, s: i64, event: DomainEvent) -> Position {
        let stream = StreamKey::new(None, AggregateType::Session, id.to_string());
        self.push(stream, actor, s, event)
    }

    fn api_key(
        &mut self,
        tenant: &str,
        id: Ulid,
        actor: Actor,
        s: i64,
        event: DomainEvent,
    ) -> Position {
        let stream = StreamKey::new(Some(t(tenant)), AggregateType::ApiKey, id.to_string());
        self.push(stream, actor, s, event)
    }

    fn record(&mut self, tenant: &str, actor: Actor, s: i64, event: DomainEvent) -> Position {
        let stream = StreamKey::new(Some(t(tenant)), AggregateType::Record, "invoice:r1");
        self.push(stream, actor, s, event)
    }

    /// A `UserErased` event as the lead's erasure will write it (the type is recognised by name).
    fn erased(&mut self, user: UserId, actor: Actor, s: i64) -> Position {
        let stream = StreamKey::new(None, AggregateType::User, user.to_string());
        let position = self.next_position();
        let mut envelope = DomainEvent::UserReinstated(UserReinstated {}).into_envelope(
            Ulid::from_parts(position, 1),
            &stream,
            &Metadata {
                actor,
                occurred_at: T0 + Duration::seconds(s),
                correlation_id: format!("c{position}"),
                causation_id: None,
            },
        );
        envelope.event_type = "UserErased".into();
        self.push_envelope(envelope)
    }
}

fn registered(email: &str, tenant: &str) -> DomainEvent {
    DomainEvent::UserRegistered(UserRegistered {
        email: email.into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        tenant: t(tenant),
    })
}

fn assigned(user: UserId, role: &str) -> DomainEvent {
    DomainEvent::RoleAssigned(RoleAssigned {
        user,
        role: role.parse().unwrap(),
        expires_at: None,
    })
}

fn started(user: UserId, tenant: &str, s: i64) -> DomainEvent {
    DomainEvent::SessionStarted(SessionStarted {
        user,
        tenant: t(tenant),
        method: SignInMethod::Password,
        refresh: index(1),
        at: T0 + Duration::seconds(s),
        expires_at: T0 + Duration::hours(10),
        idle_timeout_seconds: 1800,
        ip: None,
        user_agent: None,
        remembered: false,
    })
}

fn failed(failures: u32, s: i64) -> DomainEvent {
    DomainEvent::SignInFailed(SignInFailed {
        failures,
        at: T0 + Duration::seconds(s),
        ip: None,
        user_agent: None,
    })
}

fn fold(events: &[RecordedEvent]) -> sled::Tree {
    let tree = temp_tree();
    apply_events(&AuditProjection, &tree, events).unwrap();
    tree
}

fn query(filter: AuditFilter) -> AuditQuery {
    AuditQuery {
        filter,
        cursor: None,
        order: Order::OldestFirst,
        limit: MAX_LIMIT,
    }
}

fn all(tree: &sled::Tree, filter: AuditFilter) -> Vec<AuditEntry> {
    let page = Audit::new(tree.clone()).query(&query(filter)).unwrap();
    assert!(page.next.is_none(), "more than one page");
    page.entries
}

fn of_type<'a>(entries: &'a [AuditEntry], event_type: &str) -> Vec<&'a AuditEntry> {
    entries
        .iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

fn tenant_scope(name: &str) -> AuditFilter {
    AuditFilter::scope(Scope::Tenant(t(name)))
}

const ADA_EMAIL: &str = "ada.canary@example.com";
const SUSPENSION_REASON: &str = "canary-reason-about-ada";
const KEY_NAME: &str = "canary key label";
const IMAGE: &str = "https://img.example.com/canary-ada.png";

/// Tenant acme with administrator u(1) and member u(2), who signs in, fails, is locked out,
/// gets a record grant, a key and a suspension; plus the settings of acme.
fn acme_story() -> (Log, Ulid, Ulid) {
    let mut log = Log::default();
    let op = Actor::system("bootstrap-admin");
    let admin = user_actor(1);
    log.tenant(
        "acme",
        op.clone(),
        0,
        DomainEvent::TenantCreated(TenantCreated {
            name: "Acme Corp".into(),
        }),
    );
    log.user(u(1), op.clone(), 1, registered("root@example.com", "acme"));
    log.member("acme", u(1), op.clone(), 2, assigned(u(1), "owner"));
    log.user(u(2), admin.clone(), 3, registered(ADA_EMAIL, "acme"));
    log.member("acme", u(2), admin.clone(), 4, assigned(u(2), "user"));
    log.push(
        StreamKey::new(
            None,
            AggregateType::Email,
            idstream_domain::email::claim_id(ADA_EMAIL),
        ),
        admin.clone(),
        4,
        DomainEvent::EmailClaimed(EmailClaimed {
            user: u(2),
            claimed_at: T0,
            request: None,
        }),
    );
    log.credentials(
        u(2),
        5,
        DomainEvent::PasswordSet(PasswordSet {
            password: idstream_domain::secret::Sealed::parse(format!("v1.k1.{}", "A".repeat(48)))
                .unwrap(),
            reason: PasswordReason::Initial,
        }),
    );
    let session = Ulid::from_parts(100, 1);
    log.session(session, user_actor(2), 6, started(u(2), "acme", 6));
    log.session(
        session,
        user_actor(2),
        7,
        DomainEvent::SessionRevoked(SessionRevoked {
            reason: RevocationReason::SignedOut,
        }),
    );
    for n in 1..=5 {
        log.credentials(u(2), 7 + n as i64, failed(n, 7 + n as i64));
    }
    log.credentials(
        u(2),
        13,
        DomainEvent::AccountLocked(AccountLocked {
            until: T0 + Duration::minutes(1),
            failures: 5,
        }),
    );
    log.user(
        u(2),
        admin.clone(),
        14,
        DomainEvent::UserProfileChanged(UserProfileChanged {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            image_url: Some(IMAGE.into()),
            notifications: Default::default(),
            phone: None,
            language: None,
        }),
    );
    log.record(
        "acme",
        admin.clone(),
        15,
        DomainEvent::RecordGranted(RecordGranted {
            entity: "invoice".parse().unwrap(),
            record: "r1".parse().unwrap(),
            user: u(2),
            access: RecordAccess::ReadOnly,
            expires_at: None,
        }),
    );
    let key = Ulid::from_parts(200, 1);
    log.api_key(
        "acme",
        key,
        admin.clone(),
        16,
        DomainEvent::ApiKeyIssued(ApiKeyIssued {
            owner: u(2),
            name: KEY_NAME.into(),
            secret: index(2),
            expires_at: None,
            restriction: Some(BTreeSet::from(["users:read"
                .parse::<Permission>()
                .unwrap()])),
        }),
    );
    log.api_key(
        "acme",
        key,
        Actor::system("api-key-use"),
        17,
        DomainEvent::ApiKeyUsed(ApiKeyUsed { at: T0 }),
    );
    let key_actor = Actor {
        kind: ActorKind::ApiKey,
        id: key.to_string(),
    };
    log.member("acme", u(3), key_actor, 18, assigned(u(3), "user"));
    log.user(
        u(2),
        admin.clone(),
        19,
        DomainEvent::UserSuspended(UserSuspended {
            until: Some(T0 + Duration::days(1)),
            reason: Some(SUSPENSION_REASON.into()),
        }),
    );
    let settings = TenantSettings {
        mfa_required: true,
        ..TenantSettings::default()
    };
    log.tenant(
        "acme",
        admin.clone(),
        20,
        DomainEvent::TenantSettingsChanged(TenantSettingsChanged { settings }),
    );
    (log, session, key)
}

#[test]
fn every_event_becomes_an_entry_with_its_subject_tenant_and_summary() {
    let (log, session, key) = acme_story();
    let tree = fold(&log.events);
    let entries = all(&tree, AuditFilter::scope(Scope::All));
    assert_eq!(entries.len(), log.events.len());
    assert_eq!(
        entries.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=log.events.len() as u64).collect::<Vec<_>>()
    );

    let sign_in = of_type(&entries, "SessionStarted")[0];
    assert_eq!(sign_in.subject, Some(u(2)));
    assert_eq!(sign_in.tenant, None);
    assert_eq!(
        sign_in.summary,
        format!(
            "user {} signed in to tenant acme with a password (session {session})",
            u(2)
        )
    );
    let ended = of_type(&entries, "SessionRevoked")[0];
    assert_eq!(
        ended.subject,
        Some(u(2)),
        "the session's user comes from its start"
    );

    let failures = of_type(&entries, "SignInFailed");
    assert_eq!(failures.len(), 5);
    assert_eq!(
        failures[2].summary,
        format!("a sign-in of user {} failed (3 consecutive failures)", u(2))
    );
    let locked = of_type(&entries, "AccountLocked")[0];
    assert_eq!(
        locked.summary,
        format!(
            "user {} was locked out until 2026-03-01T12:01:00Z after 5 failed sign-ins",
            u(2)
        )
    );

    let granted = of_type(&entries, "RecordGranted")[0];
    assert_eq!(granted.subject, Some(u(2)));
    assert_eq!(
        granted.summary,
        format!(
            "user {} was granted read on record r1 of entity invoice by user {}",
            u(2),
            u(1)
        )
    );

    let used = of_type(&entries, "ApiKeyUsed")[0];
    assert_eq!(used.subject, Some(u(2)), "a key's use is about its owner");
    assert_eq!(
        used.summary,
        format!("API key {key} of user {} was used", u(2))
    );
    let by_key = entries
        .iter()
        .find(|e| e.actor.kind == ActorKind::ApiKey)
        .unwrap();
    assert_eq!(by_key.actor_owner, Some(u(2)));
    assert_eq!(
        by_key.summary,
        format!(
            "user {} was given the role user in tenant acme by API key {key} of user {}",
            u(3),
            u(2)
        )
    );

    let suspended = of_type(&entries, "UserSuspended")[0];
    assert_eq!(
        suspended.summary,
        format!(
            "user {} was suspended until 2026-03-02T12:00:00Z by user {} (a reason was given)",
            u(2),
            u(1)
        )
    );
    let settings = of_type(&entries, "TenantSettingsChanged")[0];
    assert_eq!(
        settings.summary,
        format!(
            "the settings of tenant acme were changed by user {}: mfa_required: false → true",
            u(1)
        )
    );
    let claim = of_type(&entries, "EmailClaimed")[0];
    assert_eq!(
        claim.aggregate_id, None,
        "an email claim's id is a hash of the address"
    );
    assert_eq!(claim.subject, Some(u(2)));
}

#[test]
fn no_personal_data_reaches_the_audit_tree() {
    let (log, _, _) = acme_story();
    let tree = fold(&log.events);
    let claim_id = idstream_domain::email::claim_id(ADA_EMAIL);
    let canaries = [
        ADA_EMAIL,
        "root@example.com",
        "Lovelace",
        "Ada",
        IMAGE,
        SUSPENSION_REASON,
        KEY_NAME,
        "Acme Corp",
        claim_id.as_str(),
    ];
    let mut keys = 0;
    for item in tree.iter() {
        let (key, value) = item.unwrap();
        keys += 1;
        for bytes in [key.as_ref(), value.as_ref()] {
            let text = String::from_utf8_lossy(bytes);
            for canary in canaries {
                assert!(
                    !text.contains(canary),
                    "{canary:?} is stored in the audit tree: {text}"
                );
            }
        }
    }
    assert!(keys > log.events.len() / 4, "the tree was not filled");
    assert_eq!(stored(&tree).len(), log.events.len(), "an entry per event");
    // …and none in the answers.
    let page = format!("{:?}", all(&tree, AuditFilter::scope(Scope::All)));
    for canary in canaries {
        assert!(!page.contains(canary), "{canary:?} is in an answer");
    }
}

#[test]
fn an_erasure_renames_the_user_in_old_and_new_entries() {
    let (mut log, _, _) = acme_story();
    log.erased(u(2), user_actor(1), 30);
    log.member(
        "acme",
        u(2),
        user_actor(1),
        31,
        DomainEvent::MemberRemoved(MemberRemoved { user: u(2) }),
    );
    let tree = fold(&log.events);
    let entries = all(
        &tree,
        AuditFilter {
            subject: Some(u(2)),
            ..AuditFilter::scope(Scope::All)
        },
    );
    let granted = of_type(&entries, "RecordGranted")[0];
    assert_eq!(
        granted.summary,
        format!(
            "erased user {} was granted read on record r1 of entity invoice by user {}",
            u(2),
            u(1)
        )
    );
    let erasure = of_type(&entries, "UserErased")[0];
    assert_eq!(
        erasure.summary,
        format!(
            "the personal data of erased user {} was erased by user {}",
            u(2),
            u(1)
        )
    );
    assert!(
        entries
            .iter()
            .all(|e| e.summary.contains(&format!("erased user {}", u(2)))),
        "{entries:#?}"
    );
    let removed = of_type(&entries, "MemberRemoved")[0];
    assert!(
        removed.summary.starts_with("erased user"),
        "{}",
        removed.summary
    );
    // Entries that name the erased user as the actor behind a key say so too.
    let by_key = all(&tree, AuditFilter::scope(Scope::All))
        .into_iter()
        .find(|e| e.actor.kind == ActorKind::ApiKey)
        .unwrap();
    assert!(
        by_key
            .summary
            .ends_with(&format!("of erased user {}", u(2))),
        "{}",
        by_key.summary
    );
    // Nobody else is renamed.
    let admin = all(
        &tree,
        AuditFilter {
            subject: Some(u(1)),
            ..AuditFilter::scope(Scope::All)
        },
    );
    assert!(admin.iter().all(|e| !e.summary.contains("erased")));
}

#[test]
fn a_tenant_sees_its_own_events_and_the_global_events_of_its_members_while_they_are_members() {
    let mut log = Log::default();
    let op = Actor::system("bootstrap-admin");
    for tenant in ["acme", "globex"] {
        log.tenant(
            tenant,
            op.clone(),
            0,
            DomainEvent::TenantCreated(TenantCreated {
                name: tenant.into(),
            }),
        );
    }
    // u(1) is in acme; u(2) in globex; u(3) in both.
    log.user(u(1), op.clone(), 1, registered("a@example.com", "acme"));
    log.member("acme", u(1), op.clone(), 1, assigned(u(1), "user"));
    log.user(u(2), op.clone(), 1, registered("b@example.com", "globex"));
    log.member("globex", u(2), op.clone(), 1, assigned(u(2), "user"));
    log.user(u(3), op.clone(), 1, registered("c@example.com", "acme"));
    log.member("acme", u(3), op.clone(), 1, assigned(u(3), "user"));
    let before_globex = log.credentials(u(3), 2, failed(1, 2));
    log.member("globex", u(3), op.clone(), 3, assigned(u(3), "user"));
    let both = log.credentials(u(3), 4, failed(2, 4));
    let acme_session = Ulid::from_parts(1, 9);
    let globex_session = Ulid::from_parts(2, 9);
    let in_acme = log.session(acme_session, user_actor(3), 5, started(u(3), "acme", 5));
    let in_globex = log.session(globex_session, user_actor(3), 5, started(u(3), "globex", 5));
    let switched = log.session(
        acme_session,
        user_actor(3),
        6,
        DomainEvent::SessionTenantSwitched(SessionTenantSwitched {
            tenant: t("globex"),
            refresh: index(3),
            generation: 1,
            at: T0,
        }),
    );
    let refreshed_in_globex = log.session(
        acme_session,
        user_actor(3),
        7,
        DomainEvent::SessionRefreshed(SessionRefreshed {
            refresh: index(4),
            generation: 2,
            at: T0,
        }),
    );
    let of_u2 = log.credentials(u(2), 8, failed(1, 8));
    log.member(
        "acme",
        u(3),
        op.clone(),
        9,
        DomainEvent::MemberRemoved(MemberRemoved { user: u(3) }),
    );
    let after_leaving = log.credentials(u(3), 10, failed(1, 10));
    let tree = fold(&log.events);

    let positions = |filter: AuditFilter| -> BTreeSet<Position> {
        all(&tree, filter).iter().map(|e| e.position).collect()
    };
    let acme = positions(tenant_scope("acme"));
    let globex = positions(tenant_scope("globex"));
    for p in [before_globex, both, in_acme, switched] {
        assert!(acme.contains(&p), "acme misses {p}");
    }
    for p in [
        both,
        in_globex,
        switched,
        refreshed_in_globex,
        after_leaving,
    ] {
        assert!(globex.contains(&p), "globex misses {p}");
    }
    for p in [in_globex, refreshed_in_globex, of_u2, after_leaving] {
        assert!(!acme.contains(&p), "acme sees {p}");
    }
    for p in [before_globex, in_acme] {
        assert!(
            !globex.contains(&p),
            "globex sees {p} from before u3 joined it or in acme"
        );
    }
    // Every event without a tenant of its own is in the global scope, and only those.
    let global = all(&tree, AuditFilter::scope(Scope::Global));
    assert!(global.iter().all(|e| e.tenant.is_none()));
    let expected = log
        .events
        .iter()
        .filter(|e| e.envelope.tenant.is_none())
        .count();
    assert_eq!(global.len(), expected);
    // The tenant's own events are never shown elsewhere.
    let globex_entries = all(&tree, tenant_scope("globex"));
    assert!(
        globex_entries
            .iter()
            .all(|e| e.tenant.as_ref().is_none_or(|t| t.as_str() == "globex"))
    );
}

/// A deterministic pseudo-random world: three tenants, forty users, sessions, failures, roles,
/// grants, key uses and settings; times mostly rise but step back now and then.
fn big_world(events: usize) -> Log {
    let mut log = Log::default();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let tenants = ["acme", "globex", "initech"];
    let op = Actor::system("bootstrap-admin");
    let mut clock = 0i64;
    for tenant in tenants {
        log.tenant(
            tenant,
            op.clone(),
            clock,
            DomainEvent::TenantCreated(TenantCreated {
                name: tenant.into(),
            }),
        );
    }
    for n in 1..=40u64 {
        let home = tenants[(n % 3) as usize];
        log.user(
            u(n),
            op.clone(),
            clock,
            registered(&format!("u{n}@example.com"), home),
        );
        log.member(home, u(n), op.clone(), clock, assigned(u(n), "user"));
    }
    let keys: Vec<(Ulid, u64)> = (1..=6u64)
        .map(|n| (Ulid::from_parts(500 + n, 1), n))
        .collect();
    for (key, owner) in &keys {
        let home = tenants[(owner % 3) as usize];
        log.api_key(
            home,
            *key,
            user_actor(*owner),
            clock,
            DomainEvent::ApiKeyIssued(ApiKeyIssued {
                owner: u(*owner),
                name: "k".into(),
                secret: index(5),
                expires_at: None,
                restriction: None,
            }),
        );
    }
    let mut sessions: Vec<(Ulid, u64)> = Vec::new();
    while log.events.len() < events {
        clock += if next(10) == 0 { -3 } else { 1 };
        let n = next(40) + 1;
        let home = tenants[(n % 3) as usize];
        let actor = user_actor(next(5) + 1);
        match next(9) {
            0 => {
                let id = Ulid::from_parts(10_000 + log.events.len() as u64, 7);
                log.session(id, user_actor(n), clock, started(u(n), home, clock));
                sessions.push((id, n));
            }
            1 if !sessions.is_empty() => {
                let (id, owner) = sessions[next(sessions.len() as u64) as usize];
                log.session(
                    id,
                    user_actor(owner),
                    clock,
                    DomainEvent::SessionRefreshed(SessionRefreshed {
                        refresh: index(6),
                        generation: 1,
                        at: T0,
                    }),
                );
            }
            2 => {
                log.credentials(u(n), clock, failed(1 + next(4) as u32, clock));
            }
            3 => {
                let role = ["admin", "auditor", "billing"][next(3) as usize];
                let event = if next(2) == 0 {
                    assigned(u(n), role)
                } else {
                    DomainEvent::RoleRevoked(RoleRevoked {
                        user: u(n),
                        role: role.parse().unwrap(),
                    })
                };
                log.member(home, u(n), actor, clock, event);
            }
            4 => {
                log.record(
                    home,
                    actor,
                    clock,
                    DomainEvent::RecordGranted(RecordGranted {
                        entity: "invoice".parse().unwrap(),
                        record: "r1".parse().unwrap(),
                        user: u(n),
                        access: RecordAccess::ReadWrite,
                        expires_at: None,
                    }),
                );
            }
            5 => {
                let (key, owner) = keys[next(keys.len() as u64) as usize];
                let key_tenant = tenants[(owner % 3) as usize];
                log.api_key(
                    key_tenant,
                    key,
                    Actor::system("api-key-use"),
                    clock,
                    DomainEvent::ApiKeyUsed(ApiKeyUsed { at: T0 }),
                );
            }
            6 => {
                let settings = TenantSettings {
                    session_idle_minutes: 10 + next(50) as u32,
                    ..TenantSettings::default()
                };
                log.tenant(
                    home,
                    actor,
                    clock,
                    DomainEvent::TenantSettingsChanged(TenantSettingsChanged { settings }),
                );
            }
            7 => {
                let (key, owner) = keys[next(keys.len() as u64) as usize];
                let key_tenant = tenants[(owner % 3) as usize];
                let key_actor = Actor {
                    kind: ActorKind::ApiKey,
                    id: key.to_string(),
                };
                log.member(
                    key_tenant,
                    u(n),
                    key_actor,
                    clock,
                    DomainEvent::PermissionsGranted(PermissionsGranted {
                        user: u(n),
                        permissions: BTreeSet::from(["files:read".parse::<Permission>().unwrap()]),
                        expires_at: None,
                    }),
                );
            }
            _ => {
                let event = if next(2) == 0 {
                    DomainEvent::UserSuspended(UserSuspended {
                        until: None,
                        reason: None,
                    })
                } else {
                    DomainEvent::UserReinstated(UserReinstated {})
                };
                log.user(u(n), actor, clock, event);
            }
        }
    }
    log
}

/// Every stored entry, decoded, in position order.
fn stored(tree: &sled::Tree) -> Vec<Stored> {
    let mut entries = Vec::new();
    for item in tree.scan_prefix(b"e/") {
        let (key, value) = item.unwrap();
        for (_, json) in crate::keys::block_entries(&key, &value).unwrap() {
            entries.push(serde_json::from_slice(json).unwrap());
        }
    }
    entries
}

/// Reads every page of `q` following `next`, then walks back from the last page following
/// `prev`; both must list exactly `expected` (in the query's order).
#[track_caller]
fn check_paging(audit: &Audit, q: &AuditQuery, expected: &[Position]) {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = audit
            .query(&AuditQuery {
                cursor,
                ..q.clone()
            })
            .unwrap();
        assert!(!page.partial);
        assert!(page.entries.len() <= q.limit);
        let next = page.next;
        if next.is_some() {
            assert_eq!(
                page.entries.len(),
                q.limit,
                "a page before the last is full: {q:?}"
            );
        }
        if cursor.is_some() {
            assert!(page.prev.is_some(), "a later page has a way back: {q:?}");
        } else {
            assert!(page.prev.is_none(), "a first page has no prev");
        }
        pages.push(page);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(
            pages.len() <= expected.len() + 1,
            "paging does not end: {q:?}"
        );
    }
    let forward: Vec<Position> = pages
        .iter()
        .flat_map(|p| p.entries.iter().map(|e| e.position))
        .collect();
    assert_eq!(forward, expected, "{q:?}");

    // Back from the last page to the first.
    let mut back: Vec<Vec<Position>> = vec![
        pages
            .last()
            .unwrap()
            .entries
            .iter()
            .map(|e| e.position)
            .collect(),
    ];
    let mut prev = pages.last().unwrap().prev;
    while let Some(cursor) = prev {
        let page = audit
            .query(&AuditQuery {
                cursor: Some(cursor),
                ..q.clone()
            })
            .unwrap();
        assert!(page.next.is_some(), "a page reached going back has a next");
        back.push(page.entries.iter().map(|e| e.position).collect());
        prev = page.prev;
        assert!(
            back.len() <= pages.len() + 1,
            "walking back does not end: {q:?}"
        );
    }
    back.reverse();
    assert_eq!(back.concat(), expected, "walking back: {q:?}");
}

#[test]
fn filtered_pages_list_exactly_what_a_plain_filter_finds_in_both_orders_and_both_directions() {
    let log = big_world(1500);
    let tree = fold(&log.events);
    let audit = Audit::new(tree.clone());
    let everything = stored(&tree);
    assert_eq!(everything.len(), log.events.len());
    let times: Vec<OffsetDateTime> = everything.iter().map(|e| e.time).collect();
    let (early, late) = (times[400], times[1100]);

    let key = Ulid::from_parts(501, 1);
    let filters = vec![
        AuditFilter::scope(Scope::All),
        AuditFilter::scope(Scope::Global),
        tenant_scope("acme"),
        AuditFilter {
            event_types: BTreeSet::from(["SessionStarted".into()]),
            ..tenant_scope("acme")
        },
        AuditFilter {
            event_types: BTreeSet::from(["SignInFailed".into(), "RecordGranted".into()]),
            ..tenant_scope("globex")
        },
        AuditFilter {
            actor: Some(user_actor(2)),
            ..AuditFilter::scope(Scope::All)
        },
        AuditFilter {
            actor: Some(user_actor(3)),
            event_types: BTreeSet::from(["UserSuspended".into()]),
            ..tenant_scope("initech")
        },
        AuditFilter {
            actor: Some(Actor {
                kind: ActorKind::ApiKey,
                id: key.to_string(),
            }),
            ..AuditFilter::scope(Scope::All)
        },
        AuditFilter {
            subject: Some(u(7)),
            ..AuditFilter::scope(Scope::All)
        },
        AuditFilter {
            subject: Some(u(7)),
            ..tenant_scope("acme")
        },
        AuditFilter {
            subject: Some(u(7)),
            ..tenant_scope("globex")
        },
        AuditFilter {
            aggregate_type: Some(AggregateType::Credentials),
            ..tenant_scope("acme")
        },
        AuditFilter {
            aggregate_type: Some(AggregateType::ApiKey),
            aggregate_id: Some(key.to_string()),
            ..AuditFilter::scope(Scope::All)
        },
        AuditFilter {
            aggregate_type: Some(AggregateType::Session),
            event_types: BTreeSet::from(["SignInFailed".into()]),
            ..AuditFilter::scope(Scope::All)
        },
        AuditFilter {
            from: Some(early),
            to: Some(late),
            ..tenant_scope("acme")
        },
        AuditFilter {
            from: Some(early),
            event_types: BTreeSet::from(["SessionRefreshed".into()]),
            ..AuditFilter::scope(Scope::All)
        },
        AuditFilter {
            to: Some(late),
            subject: Some(u(11)),
            ..AuditFilter::scope(Scope::All)
        },
        AuditFilter {
            from: Some(late),
            to: Some(late),
            ..AuditFilter::scope(Scope::All)
        },
        // Aggregates named by their user are found through the subject index.
        AuditFilter {
            aggregate_type: Some(AggregateType::Credentials),
            aggregate_id: Some(u(5).to_string()),
            ..AuditFilter::scope(Scope::All)
        },
        AuditFilter {
            aggregate_type: Some(AggregateType::Membership),
            aggregate_id: Some(u(9).to_string()),
            ..tenant_scope("acme")
        },
        AuditFilter {
            aggregate_type: Some(AggregateType::Session),
            subject: Some(u(4)),
            ..AuditFilter::scope(Scope::Global)
        },
    ];
    let mut non_empty = 0;
    for filter in filters {
        let mut expected: Vec<Position> = everything
            .iter()
            .filter(|e| matches(&filter, e))
            .map(|e| e.position)
            .collect();
        if !expected.is_empty() {
            non_empty += 1;
        }
        for limit in [1, 7, 50, 500] {
            for order in [Order::OldestFirst, Order::NewestFirst] {
                let mut want = expected.clone();
                if order == Order::NewestFirst {
                    want.reverse();
                }
                let q = AuditQuery {
                    filter: filter.clone(),
                    cursor: None,
                    order,
                    limit,
                };
                check_paging(&audit, &q, &want);
            }
        }
        expected.clear();
    }
    // Three find nothing on purpose: u(7) was never in acme, sessions have no SignInFailed, and
    // an empty time range.
    assert_eq!(non_empty, 18, "the other filters find something");
}

#[test]
fn time_ranges_find_events_whose_clocks_stepped_back() {
    let mut log = Log::default();
    let op = Actor::system("bootstrap-admin");
    log.tenant(
        "acme",
        op.clone(),
        0,
        DomainEvent::TenantCreated(TenantCreated { name: "a".into() }),
    );
    log.user(u(1), op.clone(), 0, registered("x@example.com", "acme"));
    log.member("acme", u(1), op.clone(), 0, assigned(u(1), "user"));
    // Seconds: 10, 20, 30, then an event from a replica whose clock is 25 s behind, then 40.
    let p10 = log.credentials(u(1), 10, failed(1, 10));
    let p20 = log.credentials(u(1), 20, failed(2, 20));
    let p30 = log.credentials(u(1), 30, failed(3, 30));
    let p5 = log.credentials(u(1), 5, failed(4, 5));
    let p40 = log.credentials(u(1), 40, failed(5, 40));
    let tree = fold(&log.events);
    let at = |s: i64| T0 + Duration::seconds(s);
    let found = |from: i64, to: i64| -> Vec<Position> {
        all(
            &tree,
            AuditFilter {
                from: Some(at(from)),
                to: Some(at(to)),
                ..tenant_scope("acme")
            },
        )
        .iter()
        .map(|e| e.position)
        .collect()
    };
    assert_eq!(found(4, 11), vec![p10, p5]);
    assert_eq!(
        found(5, 6),
        vec![p5],
        "an event far behind the high-water time is found"
    );
    assert_eq!(found(20, 31), vec![p20, p30]);
    assert_eq!(found(30, 30), Vec::<Position>::new(), "`to` is exclusive");
    assert_eq!(found(40, 41), vec![p40]);
    assert_eq!(found(41, 100), Vec::<Position>::new());
    assert_eq!(found(0, 1).len(), 3, "the first three events at T0");
}

#[test]
fn page_boundaries_and_cursors_at_the_ends() {
    let mut log = Log::default();
    let op = Actor::system("bootstrap-admin");
    log.tenant(
        "acme",
        op.clone(),
        0,
        DomainEvent::TenantCreated(TenantCreated { name: "a".into() }),
    );
    let failures: Vec<Position> = (1..=6)
        .map(|n| log.credentials(u(1), n, failed(n as u32, n)))
        .collect();
    let tree = fold(&log.events);
    let audit = Audit::new(tree);
    let filter = AuditFilter {
        subject: Some(u(1)),
        ..AuditFilter::scope(Scope::All)
    };
    let page = |cursor: Option<Cursor>, order: Order, limit: usize| {
        audit
            .query(&AuditQuery {
                filter: filter.clone(),
                cursor,
                order,
                limit,
            })
            .unwrap()
    };
    let positions = |p: &AuditPage| p.entries.iter().map(|e| e.position).collect::<Vec<_>>();

    // Exactly a page: no next.
    let exact = page(None, Order::OldestFirst, 6);
    assert_eq!(positions(&exact), failures);
    assert_eq!((exact.next, exact.prev), (None, None));
    // One less: next leads to the last one, whose prev leads back to the first page.
    let first = page(None, Order::OldestFirst, 5);
    assert_eq!(first.next, Some(Cursor::NewerThan(failures[4])));
    let second = page(first.next, Order::OldestFirst, 5);
    assert_eq!(positions(&second), vec![failures[5]]);
    assert_eq!(
        (second.next, second.prev),
        (None, Some(Cursor::OlderThan(failures[5])))
    );
    let back = page(second.prev, Order::OldestFirst, 5);
    assert_eq!(positions(&back), failures[..5].to_vec());
    assert_eq!(back.prev, None, "nothing before the first entry");
    assert_eq!(back.next, Some(Cursor::NewerThan(failures[4])));
    // Newest first.
    let newest = page(None, Order::NewestFirst, 4);
    assert_eq!(
        positions(&newest),
        vec![failures[5], failures[4], failures[3], failures[2]]
    );
    assert_eq!(newest.next, Some(Cursor::OlderThan(failures[2])));
    let older = page(newest.next, Order::NewestFirst, 4);
    assert_eq!(positions(&older), vec![failures[1], failures[0]]);
    assert_eq!(older.next, None);
    assert_eq!(older.prev, Some(Cursor::NewerThan(failures[1])));
    // A cursor past the end: an empty page whose prev goes back to the last entries.
    let beyond = page(Some(Cursor::NewerThan(1000)), Order::OldestFirst, 3);
    assert!(beyond.entries.is_empty());
    assert_eq!(beyond.next, None);
    let last = page(beyond.prev, Order::OldestFirst, 3);
    assert_eq!(positions(&last), failures[3..].to_vec());
    // Nothing matches: no cursors at all.
    let none = audit
        .query(&AuditQuery {
            filter: AuditFilter {
                subject: Some(u(9)),
                ..AuditFilter::scope(Scope::All)
            },
            cursor: Some(Cursor::OlderThan(3)),
            order: Order::NewestFirst,
            limit: 10,
        })
        .unwrap();
    assert_eq!((none.entries.len(), none.next, none.prev), (0, None, None));
    // Limits are clamped to 1..=MAX_LIMIT.
    assert_eq!(page(None, Order::OldestFirst, 0).entries.len(), 1);
    // An empty tree answers an empty page.
    let empty = Audit::new(temp_tree())
        .query(&query(AuditFilter::scope(Scope::All)))
        .unwrap();
    assert_eq!(
        (empty.entries.len(), empty.next, empty.prev, empty.partial),
        (0, None, None, false)
    );
}

#[test]
fn a_page_stops_at_the_scan_budget_and_its_next_cursor_continues_where_it_stopped() {
    let log = big_world(600);
    let tree = fold(&log.events);
    let budgeted = Audit::new(tree.clone()).with_scan_budget(3);
    // A combination the chosen index does not answer alone: many candidates fail the filter.
    let filter = AuditFilter {
        actor: Some(user_actor(2)),
        event_types: BTreeSet::from(["UserSuspended".into()]),
        ..tenant_scope("acme")
    };
    let expected: Vec<Position> = stored(&tree)
        .iter()
        .filter(|e| matches(&filter, e))
        .map(|e| e.position)
        .collect();
    assert!(!expected.is_empty());
    let mut found = Vec::new();
    let mut cursor = None;
    let mut partial_pages = 0;
    for _ in 0..1000 {
        let page = budgeted
            .query(&AuditQuery {
                filter: filter.clone(),
                cursor,
                order: Order::OldestFirst,
                limit: 10,
            })
            .unwrap();
        partial_pages += usize::from(page.partial);
        if page.partial {
            assert!(page.next.is_some(), "a partial page says where to go on");
        }
        found.extend(page.entries.iter().map(|e| e.position));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(found, expected);
    assert!(partial_pages > 0, "the budget was never reached");
}

#[test]
fn folding_event_by_event_or_all_at_once_gives_identical_bytes() {
    let log = big_world(700);
    let at_once = fold(&log.events);
    let one_by_one = temp_tree();
    for event in &log.events {
        apply_events(&AuditProjection, &one_by_one, std::slice::from_ref(event)).unwrap();
    }
    let dump = |tree: &sled::Tree| -> Vec<(Vec<u8>, Vec<u8>)> {
        tree.iter()
            .map(|kv| {
                let (k, v) = kv.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    };
    assert_eq!(dump(&at_once), dump(&one_by_one));
}

#[test]
fn events_this_build_cannot_decode_are_recorded_from_their_envelope() {
    let mut log = Log::default();
    let stream = StreamKey::new(None, AggregateType::User, u(4).to_string());
    let position = log.next_position();
    let mut envelope = DomainEvent::UserReinstated(UserReinstated {}).into_envelope(
        Ulid::from_parts(position, 1),
        &stream,
        &Metadata {
            actor: user_actor(1),
            occurred_at: T0,
            correlation_id: "c".into(),
            causation_id: None,
        },
    );
    envelope.event_type = "UserTeleported".into();
    envelope.data = serde_json::json!({"email": "future@example.com"});
    log.push_envelope(envelope);
    let tree = fold(&log.events);
    let entries = all(&tree, AuditFilter::scope(Scope::All));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].subject, Some(u(4)));
    assert_eq!(
        entries[0].summary,
        format!("UserTeleported on user {} by user {}", u(4), u(1))
    );
    assert!(!format!("{:?}", stored(&tree)).contains("future@example.com"));
}

#[test]
fn query_parameters_parse_or_say_what_is_wrong() {
    assert_eq!("o42".parse::<Cursor>(), Ok(Cursor::OlderThan(42)));
    assert_eq!("n7".parse::<Cursor>(), Ok(Cursor::NewerThan(7)));
    assert_eq!(Cursor::OlderThan(42).to_string(), "o42");
    for bad in [
        "",
        "o",
        "x5",
        "o-1",
        "n1a",
        "ö1",
        "o99999999999999999999999",
    ] {
        assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_actor("user:01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap().kind,
        ActorKind::User
    );
    assert_eq!(parse_actor("system:sign-in").unwrap().id, "sign-in");
    for bad in ["user", "robot:x", "user:", "api_key: x"] {
        assert!(parse_actor(bad).is_err(), "{bad:?}");
    }
    assert_eq!("_".parse::<Scope>(), Ok(Scope::Global));
    assert_eq!("acme".parse::<Scope>(), Ok(Scope::Tenant(t("acme"))));
    assert!("Acme".parse::<Scope>().is_err());
    assert_eq!(
        parse_aggregate_type("api_key").unwrap(),
        AggregateType::ApiKey
    );
    assert!(parse_aggregate_type("spaceship").is_err());
    assert_eq!(
        parse_event_types("SessionStarted, SignInFailed,").unwrap(),
        BTreeSet::from(["SessionStarted".to_owned(), "SignInFailed".to_owned()])
    );
    assert!(parse_event_types("SessionStarted,Teleported").is_err());
    assert!(parse_event_types("UserErased").is_ok());
    assert!(parse_time("from", "2026-03-01T12:00:00Z").is_ok());
    assert!(parse_time("from", "yesterday").is_err());
    assert_eq!("newest".parse::<Order>(), Ok(Order::NewestFirst));
    assert!("sideways".parse::<Order>().is_err());

    let mut filter = AuditFilter::scope(Scope::All);
    filter.aggregate_id = Some("x".into());
    assert!(filter.validate().is_err(), "an aggregate id needs its type");
    filter.aggregate_type = Some(AggregateType::Role);
    assert!(filter.validate().is_ok());
    filter.from = Some(T0 + Duration::hours(1));
    filter.to = Some(T0);
    assert!(filter.validate().is_err());
}

/// The projection in the real runtime over the real embedded log.
mod live {
    use std::sync::Arc;
    use std::time::Duration;

    use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
    use idstream_eventlog::{Expected, SharedLog};
    use idstream_projection_runtime::{Projection, ReadModels, rebuild_offline};

    use super::*;

    fn projections() -> Vec<Arc<dyn Projection>> {
        vec![Arc::new(AuditProjection)]
    }

    #[tokio::test]
    async fn a_rebuild_online_or_offline_gives_the_live_digest() {
        let root = tempfile::tempdir().unwrap();
        let log: SharedLog =
            EmbeddedLog::open(&root.path().join("log"), EmbeddedOptions::default())
                .await
                .unwrap();
        let models = ReadModels::start(&root.path().join("models"), log.clone(), projections())
            .await
            .unwrap();
        let world = big_world(400);
        // One append per run of events of one aggregate, as the service appends them.
        let mut last = 0;
        for run in world
            .events
            .chunk_by(|a, b| a.envelope.subject() == b.envelope.subject())
        {
            let envelopes = run.iter().map(|e| e.envelope.clone()).collect();
            last = log
                .append(envelopes, Expected::Any, None)
                .await
                .unwrap()
                .last;
        }
        models
            .wait_for(last, Duration::from_secs(30))
            .await
            .unwrap();
        let audit = Audit::new(models.tree(NAME));
        let acme = audit.query(&query(tenant_scope("acme"))).unwrap();
        assert!(acme.entries.len() > 50);

        let (position, live) = models.digest(NAME).await.unwrap();
        assert_eq!(position, last);
        models.rebuild(NAME).await.unwrap();
        models
            .wait_for(last, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(models.digest(NAME).await.unwrap(), (last, live.clone()));
        assert_eq!(
            audit.query(&query(tenant_scope("acme"))).unwrap(),
            acme,
            "queries keep their tree"
        );

        let offline = rebuild_offline(
            &root.path().join("replay"),
            log.clone(),
            projections(),
            |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(offline.get(NAME), Some(&live));
        models.shutdown().await;
    }
}

/// The raw-bytes canary (issue 22): events carrying a person's address, names, picture, phone,
/// attribute values and sign-in sources leave none of them in the store's files.
#[test]
fn no_personal_value_reaches_the_store_files() {
    let root = tempfile::tempdir().unwrap();
    assert_eq!(
        idstream_projection_runtime::personal::personal_values_stored_by(
            &crate::AuditProjection,
            root.path()
        ),
        vec![]
    );
}

/// Passkeys in the trail: a sign-in tells its method and `amr`; a registration, a use, a
/// refusal for a counter that went backwards (with both counters) and an administrator's removal
/// are about the passkey's owner, naming the credential and never its (personal) name.
#[test]
fn passkey_sign_ins_and_refusals_are_told_with_their_method_and_counters() {
    let mut log = Log { events: Vec::new() };
    let session = Ulid::from_parts(70, 1);
    log.credentials(
        u(2),
        1,
        DomainEvent::PasskeyRegistered(PasskeyRegistered {
            credential: "cred-1".into(),
            name: "pd1.sealed-name".into(),
            public_key: "{}".into(),
            counter: 0,
            at: T0,
        }),
    );
    let mut passkey_sign_in = started(u(2), "acme", 2);
    if let DomainEvent::SessionStarted(e) = &mut passkey_sign_in {
        e.method = SignInMethod::Passkey;
    }
    log.session(session, Actor::system("sign-in"), 2, passkey_sign_in);
    log.credentials(
        u(2),
        3,
        DomainEvent::PasskeyUsed(PasskeyUsed {
            credential: "cred-1".into(),
            counter: 4,
            at: T0,
            ceremony_started_at: T0,
        }),
    );
    log.credentials(
        u(2),
        4,
        DomainEvent::PasskeyCounterRegressed(PasskeyCounterRegressed {
            credential: "cred-1".into(),
            stored: 4,
            presented: 2,
            at: T0,
        }),
    );
    let stream = StreamKey::new(None, AggregateType::Credentials, u(2).to_string());
    log.push(
        stream,
        Actor {
            kind: ActorKind::User,
            id: u(1).to_string(),
        },
        6,
        DomainEvent::PasskeyRemoved(PasskeyRemoved {
            credential: "cred-1".into(),
        }),
    );
    let tree = fold(&log.events);
    let entries = all(&tree, AuditFilter::scope(Scope::All));

    let sign_in = of_type(&entries, "SessionStarted")[0];
    assert_eq!(
        sign_in.summary,
        format!(
            "user {} signed in to tenant acme with a passkey (session {session})",
            u(2)
        )
    );
    assert_eq!(sign_in.details["method"], "passkey");
    assert_eq!(sign_in.details["amr"], "pop mfa");
    let registered = of_type(&entries, "PasskeyRegistered")[0];
    assert_eq!(registered.subject, Some(u(2)));
    assert_eq!(registered.details["credential"], "cred-1");
    assert!(
        !registered.details.values().any(|v| v.contains("pd1.")),
        "the name stays out of the trail: {:?}",
        registered.details
    );
    let regressed = of_type(&entries, "PasskeyCounterRegressed")[0];
    assert_eq!(
        regressed.summary,
        format!(
            "a sign-in of user {} with a passkey was refused: its signature counter went back \
             from 4 to 2 (a cloned authenticator?)",
            u(2)
        )
    );
    let removed = of_type(&entries, "PasskeyRemoved")[0];
    assert_eq!(
        removed.summary,
        format!("a passkey of user {} was removed by user {}", u(2), u(1))
    );
}
