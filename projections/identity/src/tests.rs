//! Given/when/then tests of the fold: recorded events built from real domain events go through
//! the runtime's commit path into a temporary sled tree, then the query API is asked.

use std::collections::BTreeSet;

use idstream_domain::access::Permission;
use idstream_domain::events::{
    AccountLocked, AccountUnlocked, ApiKeyIssued, ApiKeyRevoked, ApiKeyUsed, InvitationAccepted,
    InvitationDelivery, InvitationResent, InvitationRevoked, InvitationSent,
    PasskeyCounterRegressed, PasskeyRegistered, PasskeyRemoved, PasskeyUsed, PasswordSet,
    RecoveryCodeUsed, RecoveryCodesGenerated, SecretTokenIssued, SecretTokenRedeemed,
    SessionRefreshed, SessionRevoked, SessionStarted, SessionTenantSwitched, SignInFailed,
    SignInFailuresCleared, TenantCreated, TotpCodeUsed, TotpDisabled, TotpEnabled,
    TotpEnrolmentStarted, UserErased,
};
use idstream_domain::identity::credentials::{
    self, Credentials, CredentialsEvent, PasswordReason, TokenPurpose,
};
use idstream_domain::identity::session::{RevocationReason, SignInMethod};
use idstream_domain::secret::{BlindIndex, Sealed};
use idstream_domain::{
    Actor, ActorKind, AggregateType, DomainEvent, Metadata, RoleName, StreamKey, TenantId, UserId,
};
use idstream_eventlog::{Position, RecordedEvent};
use idstream_projection_runtime::{Applied, apply_events};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use ulid::Ulid;

use crate::seal;
use crate::{
    ApiKeyView, CredentialsView, Identity, IdentityProjection, InvitationStatus, InvitationView,
    SessionStanding, SessionView,
};

const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

/// An event as the log would record it at `position`, occurring `position` minutes after T0.
/// The stream key is the one the application uses for the event's aggregate.
struct At(Position);

impl At {
    fn record(self, stream: StreamKey, event: DomainEvent) -> RecordedEvent {
        self.record_by(Actor::system("test"), stream, event)
    }

    fn record_by(self, actor: Actor, stream: StreamKey, event: DomainEvent) -> RecordedEvent {
        let meta = Metadata {
            actor,
            occurred_at: at(self.0),
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

    fn credentials(self, user: UserId, event: CredentialsEvent) -> RecordedEvent {
        self.record(
            StreamKey::new(None, AggregateType::Credentials, user.to_string()),
            event.into(),
        )
    }

    fn started(self, session: Ulid, user: UserId, tenant: &str, refresh: u8) -> RecordedEvent {
        let e = SessionStarted {
            user,
            tenant: t(tenant),
            method: SignInMethod::Password,
            refresh: index(refresh),
            at: at(self.0),
            expires_at: at(self.0) + Duration::days(30),
            idle_timeout_seconds: 3600,
            ip: Some(format!("192.0.2.{refresh}")),
            user_agent: Some(format!("Browser/{refresh}")),
            remembered: false,
        };
        self.record(session_key(session), DomainEvent::SessionStarted(e))
    }

    /// An application's code for `user`, issued through the browser session `browser`.
    fn code_issued(
        self,
        session: Ulid,
        user: UserId,
        client: &str,
        browser: Ulid,
    ) -> RecordedEvent {
        let e = idstream_domain::events::AuthorizationCodeIssued {
            code: index(99),
            client: client.into(),
            redirect_uri: "https://app.example/cb".into(),
            scopes: ["openid".to_owned()].into(),
            nonce: None,
            code_challenge: None,
            user,
            tenant: t("acme"),
            method: SignInMethod::Password,
            auth_time: at(self.0),
            browser_session: browser.to_string(),
            at: at(self.0),
            expires_at: at(self.0) + Duration::minutes(1),
        };
        self.record(
            session_key(session),
            DomainEvent::AuthorizationCodeIssued(e),
        )
    }

    fn erased(self, user: UserId) -> RecordedEvent {
        self.record(
            StreamKey::new(None, AggregateType::User, user.to_string()),
            DomainEvent::UserErased(UserErased {}),
        )
    }

    fn refreshed(self, session: Ulid, refresh: u8, generation: u32) -> RecordedEvent {
        let e = SessionRefreshed {
            refresh: index(refresh),
            generation,
            at: at(self.0),
        };
        self.record(session_key(session), DomainEvent::SessionRefreshed(e))
    }

    fn switched(self, session: Ulid, tenant: &str, refresh: u8, generation: u32) -> RecordedEvent {
        let e = SessionTenantSwitched {
            tenant: t(tenant),
            refresh: index(refresh),
            generation,
            at: at(self.0),
        };
        self.record(session_key(session), DomainEvent::SessionTenantSwitched(e))
    }

    fn session_revoked(self, session: Ulid, reason: RevocationReason) -> RecordedEvent {
        self.record(
            session_key(session),
            DomainEvent::SessionRevoked(SessionRevoked { reason }),
        )
    }

    fn invited(self, tenant: &str, id: Ulid, user: UserId, token: u8) -> RecordedEvent {
        let e = InvitationSent {
            user,
            roles: roles(&["user"]),
            token: index(token),
            expires_at: at(self.0) + Duration::days(7),
            delivery: InvitationDelivery::Email,
        };
        self.record_by(
            admin(),
            invitation_key(tenant, id),
            DomainEvent::InvitationSent(e),
        )
    }

    fn resent(self, tenant: &str, id: Ulid, token: u8) -> RecordedEvent {
        let e = InvitationResent {
            token: index(token),
            expires_at: at(self.0) + Duration::days(7),
        };
        self.record(invitation_key(tenant, id), DomainEvent::InvitationResent(e))
    }

    fn accepted(self, tenant: &str, id: Ulid) -> RecordedEvent {
        self.record(
            invitation_key(tenant, id),
            DomainEvent::InvitationAccepted(InvitationAccepted {}),
        )
    }

    fn invitation_revoked(self, tenant: &str, id: Ulid) -> RecordedEvent {
        self.record(
            invitation_key(tenant, id),
            DomainEvent::InvitationRevoked(InvitationRevoked {}),
        )
    }

    fn issued(
        self,
        tenant: &str,
        id: Ulid,
        owner: UserId,
        expires_at: Option<OffsetDateTime>,
    ) -> RecordedEvent {
        let e = ApiKeyIssued {
            owner,
            name: format!("key {id}"),
            secret: index(id.0 as u8),
            expires_at,
            restriction: None,
        };
        self.record_by(
            admin(),
            api_key_key(tenant, id),
            DomainEvent::ApiKeyIssued(e),
        )
    }

    fn key_used(self, tenant: &str, id: Ulid) -> RecordedEvent {
        let e = ApiKeyUsed { at: at(self.0) };
        self.record(api_key_key(tenant, id), DomainEvent::ApiKeyUsed(e))
    }

    fn key_revoked(self, tenant: &str, id: Ulid) -> RecordedEvent {
        self.record(
            api_key_key(tenant, id),
            DomainEvent::ApiKeyRevoked(ApiKeyRevoked {}),
        )
    }
}

fn at(position: Position) -> OffsetDateTime {
    T0 + Duration::minutes(position as i64)
}

fn t(tenant: &str) -> TenantId {
    tenant.parse().unwrap()
}

fn u(n: u64) -> UserId {
    UserId::new(Ulid::from_parts(n, u128::from(n)))
}

/// A ULID minted `n` milliseconds into the epoch: ids of larger `n` are newer.
fn id(n: u64) -> Ulid {
    Ulid::from_parts(1_000 + n, u128::from(n))
}

fn index(byte: u8) -> BlindIndex {
    BlindIndex::from_bytes(&[byte; 32])
}

fn sealed(tag: char) -> Sealed {
    Sealed::parse(format!("v1.k1.{}", tag.to_string().repeat(48))).unwrap()
}

fn roles(names: &[&str]) -> BTreeSet<RoleName> {
    names.iter().map(|r| r.parse().unwrap()).collect()
}

fn admin() -> Actor {
    Actor {
        kind: ActorKind::User,
        id: u(99).to_string(),
    }
}

fn session_key(session: Ulid) -> StreamKey {
    StreamKey::new(None, AggregateType::Session, session.to_string())
}

fn invitation_key(tenant: &str, id: Ulid) -> StreamKey {
    StreamKey::new(Some(t(tenant)), AggregateType::Invitation, id.to_string())
}

fn api_key_key(tenant: &str, id: Ulid) -> StreamKey {
    StreamKey::new(Some(t(tenant)), AggregateType::ApiKey, id.to_string())
}

fn open() -> sled::Tree {
    sled::Config::new()
        .temporary(true)
        .open()
        .unwrap()
        .open_tree(crate::NAME)
        .unwrap()
}

/// Folds `given` and then `when` (as two batches, as a live runner might) into a fresh tree.
fn given_when(given: &[RecordedEvent], when: &[RecordedEvent]) -> Identity {
    given_when_applied(given, when).0
}

/// Like [`given_when`], also returning what applying `when` did (skip notes).
fn given_when_applied(given: &[RecordedEvent], when: &[RecordedEvent]) -> (Identity, Applied) {
    let tree = open();
    apply_events(&IdentityProjection::new(seal()), &tree, given).unwrap();
    let applied = apply_events(&IdentityProjection::new(seal()), &tree, when).unwrap();
    (Identity::new(tree, seal()), applied)
}

// ---- credentials -------------------------------------------------------------------------------

fn password_set(tag: char, reason: PasswordReason) -> CredentialsEvent {
    CredentialsEvent::PasswordSet(PasswordSet {
        password: sealed(tag),
        reason,
    })
}

fn failed(failures: u32, position: Position) -> CredentialsEvent {
    CredentialsEvent::SignInFailed(SignInFailed {
        failures,
        at: at(position),
        ip: None,
        user_agent: None,
    })
}

fn locked(until: OffsetDateTime) -> CredentialsEvent {
    CredentialsEvent::AccountLocked(AccountLocked { until, failures: 5 })
}

fn totp_enabled_with_codes(codes: &[u8]) -> [CredentialsEvent; 3] {
    [
        CredentialsEvent::TotpEnrolmentStarted(TotpEnrolmentStarted {
            secret: sealed('T'),
        }),
        CredentialsEvent::TotpEnabled(TotpEnabled { step: 10 }),
        CredentialsEvent::RecoveryCodesGenerated(RecoveryCodesGenerated {
            codes: codes.iter().copied().map(index).collect(),
        }),
    ]
}

/// Records credentials events of user 1 from position `first` on.
fn credentials_events(first: Position, events: Vec<CredentialsEvent>) -> Vec<RecordedEvent> {
    events
        .into_iter()
        .zip(first..)
        .map(|(event, position)| At(position).credentials(u(1), event))
        .collect()
}

#[test]
fn a_first_password_creates_the_credentials_with_the_time_it_was_set() {
    let identity = given_when(
        &[],
        &[At(1).credentials(u(1), password_set('A', PasswordReason::Initial))],
    );
    assert_eq!(
        identity.credentials(&u(1)).unwrap(),
        Some(CredentialsView {
            user: u(1),
            password: Some(sealed('A')),
            password_set_at: Some(at(1)),
            totp_pending: None,
            totp: None,
            totp_last_step: 0,
            recovery_codes: vec![],
            passkeys: vec![],
            failures: 0,
            last_failure_at: None,
            locked_until: None,
            lockouts: 0,
            position: 1,
        })
    );
    assert_eq!(identity.credentials(&u(2)).unwrap(), None);
}

#[test]
fn failures_lock_the_account_and_an_unlock_lifts_the_lock_but_keeps_the_lockout_count() {
    let until = at(10);
    let given = credentials_events(
        1,
        vec![
            password_set('A', PasswordReason::Initial),
            failed(4, 2),
            failed(5, 3),
            locked(until),
        ],
    );
    let identity = given_when(&given, &[]);
    let view = identity.credentials(&u(1)).unwrap().unwrap();
    assert_eq!(
        (
            view.failures,
            view.last_failure_at,
            view.locked_until,
            view.lockouts
        ),
        (0, Some(at(3)), Some(until), 1),
        "a lock-out starts a fresh count"
    );
    assert!(view.is_locked_at(until - Duration::seconds(1)));
    assert!(!view.is_locked_at(until), "a lock-out lapses by itself");

    let unlocked = given_when(
        &given,
        &[At(5).credentials(u(1), CredentialsEvent::Unlocked(AccountUnlocked {}))],
    );
    let view = unlocked.credentials(&u(1)).unwrap().unwrap();
    assert_eq!(
        (
            view.failures,
            view.locked_until,
            view.lockouts,
            view.position
        ),
        (0, None, 1, 5)
    );
    assert!(!view.is_locked_at(at(5)));
}

#[test]
fn a_successful_sign_in_clears_failures_lock_and_lockouts() {
    let given = credentials_events(1, vec![failed(5, 1), locked(at(10)), failed(1, 3)]);
    let identity = given_when(
        &given,
        &[At(4).credentials(
            u(1),
            CredentialsEvent::FailuresCleared(SignInFailuresCleared {}),
        )],
    );
    let view = identity.credentials(&u(1)).unwrap().unwrap();
    assert_eq!(
        (
            view.failures,
            view.locked_until,
            view.lockouts,
            view.position
        ),
        (0, None, 0, 4)
    );
    assert_eq!(
        view.last_failure_at,
        Some(at(3)),
        "the last failure is history, kept as the aggregate keeps it"
    );
}

#[test]
fn a_password_reset_changes_the_password_and_nothing_else() {
    let mut events = vec![password_set('A', PasswordReason::Initial)];
    events.extend(totp_enabled_with_codes(&[7, 8]));
    events.push(failed(2, 5));
    events.push(CredentialsEvent::TokenIssued(SecretTokenIssued {
        purpose: TokenPurpose::PasswordReset,
        index: index(1),
        expires_at: at(60),
    }));
    let given = credentials_events(1, events);
    let before = given_when(&given, &[]).credentials(&u(1)).unwrap().unwrap();

    let when = credentials_events(
        7,
        vec![
            CredentialsEvent::TokenRedeemed(SecretTokenRedeemed {
                purpose: TokenPurpose::PasswordReset,
            }),
            password_set('B', PasswordReason::Reset),
        ],
    );
    let after = given_when(&given, &when)
        .credentials(&u(1))
        .unwrap()
        .unwrap();
    assert_eq!(
        after,
        CredentialsView {
            password: Some(sealed('B')),
            password_set_at: Some(at(8)),
            position: 8,
            ..before
        }
    );
    assert!(after.totp_enabled());
}

#[test]
fn totp_is_pending_until_confirmed_spends_steps_and_codes_and_disabling_clears_it() {
    let given = credentials_events(1, totp_enabled_with_codes(&[7, 8]).to_vec());
    let enabled = given_when(&given[..1], &[]);
    let view = enabled.credentials(&u(1)).unwrap().unwrap();
    assert!(!view.totp_enabled());
    assert_eq!((view.totp_pending, view.totp), (Some(sealed('T')), None));

    let used = given_when(
        &given,
        &credentials_events(
            4,
            vec![
                CredentialsEvent::TotpCodeUsed(TotpCodeUsed { step: 12 }),
                CredentialsEvent::RecoveryCodeUsed(RecoveryCodeUsed { code: index(7) }),
            ],
        ),
    );
    let view = used.credentials(&u(1)).unwrap().unwrap();
    assert!(view.totp_enabled());
    assert_eq!(
        (
            view.totp_pending,
            view.totp,
            view.totp_last_step,
            view.recovery_codes
        ),
        (None, Some(sealed('T')), 12, vec![index(8)])
    );

    let disabled = given_when(
        &given,
        &[At(4).credentials(u(1), CredentialsEvent::TotpDisabled(TotpDisabled {}))],
    );
    let view = disabled.credentials(&u(1)).unwrap().unwrap();
    assert_eq!(
        (view.totp_pending, view.totp, view.recovery_codes),
        (None, None, vec![])
    );
    assert_eq!(
        view.totp_last_step, 10,
        "spent steps stay spent, as in the aggregate"
    );
}

/// A deterministic stream of arbitrary credentials events, every kind included, in any order
/// (`evolve` is total, so the view must follow even sequences `decide` would never produce).
fn arbitrary_credentials_events(count: usize) -> Vec<CredentialsEvent> {
    let mut seed: u64 = 0x1d57_2ea3;
    let mut next = move |bound: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % bound
    };
    let purposes = [
        TokenPurpose::PasswordReset,
        TokenPurpose::MagicLink,
        TokenPurpose::EmailCode,
        TokenPurpose::EmailVerification,
    ];
    let reasons = [
        PasswordReason::Initial,
        PasswordReason::Changed,
        PasswordReason::Reset,
    ];
    (0..count)
        .map(|n| {
            let when = at(n as u64) + Duration::seconds(next(60) as i64);
            let tag = char::from(b'A' + next(26) as u8);
            match next(13) {
                0 => password_set(tag, reasons[next(3) as usize]),
                1 => CredentialsEvent::SignInFailed(SignInFailed {
                    failures: next(7) as u32,
                    at: when,
                    ip: Some("192.0.2.1".into()),
                    user_agent: None,
                }),
                2 => CredentialsEvent::AccountLocked(AccountLocked {
                    until: when + Duration::minutes(next(16) as i64),
                    failures: 5,
                }),
                3 => CredentialsEvent::FailuresCleared(SignInFailuresCleared {}),
                4 => CredentialsEvent::Unlocked(AccountUnlocked {}),
                5 => CredentialsEvent::TokenIssued(SecretTokenIssued {
                    purpose: purposes[next(4) as usize],
                    index: index(next(255) as u8),
                    expires_at: when + Duration::minutes(10),
                }),
                6 => CredentialsEvent::TokenRedeemed(SecretTokenRedeemed {
                    purpose: purposes[next(4) as usize],
                }),
                7 => CredentialsEvent::TotpEnrolmentStarted(TotpEnrolmentStarted {
                    secret: sealed(tag),
                }),
                8 => CredentialsEvent::TotpEnabled(TotpEnabled { step: next(1000) }),
                9 => CredentialsEvent::TotpCodeUsed(TotpCodeUsed { step: next(1000) }),
                10 => CredentialsEvent::TotpDisabled(TotpDisabled {}),
                11 => CredentialsEvent::RecoveryCodesGenerated(RecoveryCodesGenerated {
                    codes: (0..next(5)).map(|_| index(next(6) as u8)).collect(),
                }),
                _ => CredentialsEvent::RecoveryCodeUsed(RecoveryCodeUsed {
                    code: index(next(6) as u8),
                }),
            }
        })
        .collect()
}

/// The fields the view shares with the domain's `Credentials`.
type Common = (
    Option<Sealed>,
    Option<Sealed>,
    Option<Sealed>,
    u64,
    Vec<BlindIndex>,
    u32,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
    u32,
);

fn common_of_domain(c: &Credentials) -> Common {
    (
        c.password.clone(),
        c.totp_pending.clone(),
        c.totp.clone(),
        c.totp_last_step,
        c.recovery_codes.clone(),
        c.failures,
        c.last_failure_at,
        c.locked_until,
        c.lockouts,
    )
}

fn common_of_view(v: &CredentialsView) -> Common {
    (
        v.password.clone(),
        v.totp_pending.clone(),
        v.totp.clone(),
        v.totp_last_step,
        v.recovery_codes.clone(),
        v.failures,
        v.last_failure_at,
        v.locked_until,
        v.lockouts,
    )
}

#[test]
fn the_credentials_view_agrees_with_the_domain_evolve_after_every_event() {
    let events = arbitrary_credentials_events(300);
    let kinds: BTreeSet<_> = events
        .iter()
        .map(|e| DomainEvent::from(e.clone()).event_type())
        .collect();
    assert_eq!(
        kinds.len(),
        13,
        "every kind of credentials event is covered"
    );

    let tree = open();
    let identity = Identity::new(tree.clone(), seal());
    let mut domain = Credentials::default();
    for (event, position) in events.iter().zip(1..) {
        domain = credentials::evolve(domain, event);
        let recorded = At(position).credentials(u(1), event.clone());
        let applied = apply_events(&IdentityProjection::new(seal()), &tree, &[recorded]).unwrap();
        assert!(applied.skipped.is_empty(), "{:?}", applied.skipped);
        let view = identity.credentials(&u(1)).unwrap().unwrap();
        assert_eq!(
            common_of_view(&view),
            common_of_domain(&domain),
            "after event {position}: {event:?}"
        );
        assert_eq!(view.position, position);
        assert_eq!(
            view.is_locked_at(at(position)),
            domain.is_locked_at(at(position))
        );
    }
}

// ---- sessions ----------------------------------------------------------------------------------

#[test]
fn a_started_session_is_found_by_id_refresh_token_and_user() {
    let identity = given_when(&[], &[At(1).started(id(1), u(1), "acme", 1)]);
    let expected = SessionView {
        id: id(1),
        user: u(1),
        tenant: t("acme"),
        method: SignInMethod::Password,
        started_at: at(1),
        last_active_at: at(1),
        expires_at: at(1) + Duration::days(30),
        idle_timeout_seconds: 3600,
        remembered: false,
        generation: 0,
        refresh: index(1),
        revoked: None,
        revoked_at: None,
        ip: Some("192.0.2.1".into()),
        user_agent: Some("Browser/1".into()),
        position: 1,
        client: None,
        browser_session: None,
    };
    assert_eq!(identity.session(&id(1)).unwrap(), Some(expected.clone()));
    assert_eq!(identity.session_by_refresh(&index(1)).unwrap(), Some(id(1)));
    assert_eq!(identity.session_by_refresh(&index(2)).unwrap(), None);
    assert_eq!(identity.sessions_of(&u(1)).unwrap(), vec![expected]);
    assert_eq!(identity.last_sign_in(&u(1)).unwrap(), Some(at(1)));
    assert_eq!(identity.last_sign_in(&u(2)).unwrap(), None);
    assert_eq!(identity.sessions_of(&u(2)).unwrap(), vec![]);
}

#[test]
fn refreshes_and_switches_rotate_the_token_and_rotated_tokens_still_name_the_session() {
    let identity = given_when(
        &[At(1).started(id(1), u(1), "acme", 1)],
        &[
            At(2).refreshed(id(1), 2, 1),
            At(3).switched(id(1), "globex", 3, 2),
        ],
    );
    let view = identity.session(&id(1)).unwrap().unwrap();
    assert_eq!(
        (
            view.tenant.clone(),
            view.refresh.clone(),
            view.generation,
            view.started_at,
            view.last_active_at,
            view.position
        ),
        (t("globex"), index(3), 2, at(1), at(3), 3)
    );
    for rotated_or_live in [1, 2, 3] {
        assert_eq!(
            identity
                .session_by_refresh(&index(rotated_or_live))
                .unwrap(),
            Some(id(1)),
            "token {rotated_or_live}"
        );
    }
    assert_ne!(
        view.refresh,
        index(1),
        "the caller tells reuse by comparing with the live token"
    );
    assert_eq!(
        identity.last_sign_in(&u(1)).unwrap(),
        Some(at(1)),
        "a refresh is not a sign-in"
    );
}

#[test]
fn a_revoked_session_keeps_its_first_revocation_and_is_no_longer_live() {
    let identity = given_when(
        &[At(1).started(id(1), u(1), "acme", 1)],
        &[
            At(2).session_revoked(id(1), RevocationReason::RefreshTokenReused),
            At(3).session_revoked(id(1), RevocationReason::SignedOut),
        ],
    );
    let view = identity.session(&id(1)).unwrap().unwrap();
    assert_eq!(
        (view.revoked, view.revoked_at, view.position),
        (Some(RevocationReason::RefreshTokenReused), Some(at(2)), 3)
    );
    assert!(!view.is_live_at(at(2)));
    assert_eq!(identity.sessions_of(&u(1)).unwrap(), vec![view]);
}

#[test]
fn a_session_ends_after_its_idle_timeout_or_its_absolute_end() {
    let identity = given_when(
        &[At(1).started(id(1), u(1), "acme", 1)],
        &[At(50).refreshed(id(1), 2, 1)],
    );
    let view = identity.session(&id(1)).unwrap().unwrap();
    assert!(view.is_live_at(at(50) + Duration::minutes(59)));
    assert!(
        !view.is_live_at(at(50) + Duration::hours(1)),
        "idle for an hour"
    );
    let busy = SessionView {
        last_active_at: view.expires_at - Duration::seconds(1),
        ..view.clone()
    };
    assert!(busy.is_live_at(busy.expires_at - Duration::milliseconds(1)));
    assert!(!busy.is_live_at(busy.expires_at), "past its absolute end");
    let forever = SessionView {
        idle_timeout_seconds: i64::MAX,
        ..view
    };
    assert!(
        forever.is_live_at(at(60)),
        "an unaddable timeout never runs out"
    );
}

#[test]
fn erasing_a_user_forgets_where_their_sessions_came_from_and_nothing_else() {
    let given = [
        At(1).started(id(1), u(1), "acme", 1),
        At(2).started(id(2), u(1), "globex", 2),
        At(3).started(id(3), u(2), "acme", 3),
    ];
    let before = given_when(&given, &[]).session(&id(1)).unwrap().unwrap();
    let identity = given_when(&given, &[At(4).erased(u(1))]);
    for session in [id(1), id(2)] {
        let view = identity.session(&session).unwrap().unwrap();
        assert_eq!((view.ip, view.user_agent), (None, None), "{session}");
        assert_eq!(view.user, u(1));
    }
    let kept = identity.session(&id(1)).unwrap().unwrap();
    assert_eq!(
        kept,
        SessionView {
            ip: None,
            user_agent: None,
            ..before
        }
    );
    // Another user's sessions keep theirs.
    let other = identity.session(&id(3)).unwrap().unwrap();
    assert_eq!(other.ip.as_deref(), Some("192.0.2.3"));
    // A session started before sources were recorded (version 1) has none.
    let mut old = At(5).started(id(5), u(3), "acme", 5);
    old.envelope.version = 1;
    let data = old.envelope.data.as_object_mut().unwrap();
    data.remove("ip");
    data.remove("user_agent");
    data.remove("remembered");
    let identity = given_when(&[], &[old]);
    let view = identity.session(&id(5)).unwrap().unwrap();
    assert_eq!((view.ip, view.user_agent), (None, None));
    assert_eq!(view.user, u(3));
}

#[test]
fn a_remembered_session_says_so_and_one_started_before_remembering_existed_is_not() {
    let mut remembered = At(1).started(id(1), u(1), "acme", 1);
    remembered.envelope.data["remembered"] = true.into();
    let mut older = At(2).started(id(2), u(1), "acme", 2);
    older.envelope.version = 2;
    older
        .envelope
        .data
        .as_object_mut()
        .unwrap()
        .remove("remembered");
    let identity = given_when(
        &[],
        &[remembered, older, At(3).started(id(3), u(1), "acme", 3)],
    );
    let of = |session| identity.session(&session).unwrap().unwrap().remembered;
    assert_eq!((of(id(1)), of(id(2)), of(id(3))), (true, false, false));
}

#[test]
fn a_users_sessions_are_listed_newest_first_and_the_last_sign_in_is_the_latest_start() {
    let identity = given_when(
        &[
            At(1).started(id(2), u(1), "acme", 2),
            At(2).started(id(9), u(2), "acme", 9),
        ],
        &[
            At(3).started(id(3), u(1), "globex", 3),
            At(4).started(id(1), u(1), "acme", 1),
            At(5).session_revoked(id(3), RevocationReason::SignedOut),
        ],
    );
    let ids = |user| {
        identity
            .sessions_of(&user)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(u(1)), vec![id(3), id(2), id(1)]);
    assert_eq!(ids(u(2)), vec![id(9)]);
    assert_eq!(identity.last_sign_in(&u(1)).unwrap(), Some(at(4)));
    assert_eq!(identity.last_sign_in(&u(2)).unwrap(), Some(at(2)));
}

#[test]
fn a_sign_in_recorded_late_with_an_earlier_time_does_not_move_the_last_sign_in_back() {
    let mut late = At(3).started(id(1), u(1), "acme", 1);
    let DomainEvent::SessionStarted(mut e) = DomainEvent::decode(&late.envelope).unwrap() else {
        unreachable!()
    };
    e.at = at(1);
    late.envelope.data = serde_json::to_value(e).unwrap();
    let identity = given_when(&[At(2).started(id(2), u(1), "acme", 2)], &[late]);
    assert_eq!(identity.last_sign_in(&u(1)).unwrap(), Some(at(2)));
    assert_eq!(
        identity.session(&id(1)).unwrap().map(|s| s.started_at),
        Some(at(1))
    );
}

#[test]
fn a_session_that_starts_twice_keeps_its_first_start() {
    let (identity, applied) = given_when_applied(
        &[At(1).started(id(1), u(1), "acme", 1)],
        &[At(2).started(id(1), u(2), "globex", 2)],
    );
    assert_eq!(applied.skipped.len(), 1, "{:?}", applied.skipped);
    let view = identity.session(&id(1)).unwrap().unwrap();
    assert_eq!((view.user, view.position), (u(1), 1));
    assert_eq!(identity.session_by_refresh(&index(2)).unwrap(), None);
    assert_eq!(identity.sessions_of(&u(2)).unwrap(), vec![]);
}

// ---- invitations -------------------------------------------------------------------------------

#[test]
fn a_sent_invitation_is_found_by_id_token_and_as_the_users_open_invitation() {
    let identity = given_when(&[], &[At(1).invited("acme", id(1), u(1), 1)]);
    let expected = InvitationView {
        id: id(1),
        tenant: t("acme"),
        user: u(1),
        roles: roles(&["user"]),
        status: InvitationStatus::Sent,
        token: index(1),
        sent_at: at(1),
        expires_at: at(1) + Duration::days(7),
        resent: 0,
        accepted_at: None,
        revoked_at: None,
        invited_by: admin(),
        position: 1,
        sent_position: 1,
        delivery: InvitationDelivery::Email,
    };
    assert_eq!(
        identity.invitation(&t("acme"), &id(1)).unwrap(),
        Some(expected.clone())
    );
    assert_eq!(identity.invitation(&t("globex"), &id(1)).unwrap(), None);
    assert_eq!(
        identity.invitation_by_token(&index(1)).unwrap(),
        Some((t("acme"), id(1)))
    );
    assert_eq!(identity.invitation_by_token(&index(2)).unwrap(), None);
    assert_eq!(
        identity.open_invitation_of(&t("acme"), &u(1)).unwrap(),
        Some(expected)
    );
    assert_eq!(
        identity.open_invitation_of(&t("globex"), &u(1)).unwrap(),
        None
    );
    assert_eq!(
        identity.open_invitation_of(&t("acme"), &u(2)).unwrap(),
        None
    );
}

#[test]
fn a_resend_replaces_the_token_and_restarts_the_clock_while_the_old_token_still_maps() {
    let identity = given_when(
        &[At(1).invited("acme", id(1), u(1), 1)],
        &[At(100).resent("acme", id(1), 2)],
    );
    let view = identity.invitation(&t("acme"), &id(1)).unwrap().unwrap();
    assert_eq!(
        (
            view.token.clone(),
            view.sent_at,
            view.expires_at,
            view.resent,
            view.position
        ),
        (index(2), at(1), at(100) + Duration::days(7), 1, 100)
    );
    assert_eq!(
        identity.invitation_by_token(&index(1)).unwrap(),
        Some((t("acme"), id(1))),
        "the superseded token still names the invitation; the application refuses it"
    );
    assert_eq!(
        identity.invitation_by_token(&index(2)).unwrap(),
        Some((t("acme"), id(1)))
    );
    assert_eq!(
        identity.open_invitation_of(&t("acme"), &u(1)).unwrap(),
        Some(view)
    );
}

#[test]
fn accepting_or_revoking_closes_the_invitation() {
    let given = [At(1).invited("acme", id(1), u(1), 1)];
    let accepted = given_when(&given, &[At(2).accepted("acme", id(1))]);
    let view = accepted.invitation(&t("acme"), &id(1)).unwrap().unwrap();
    assert_eq!(
        (
            view.status,
            view.accepted_at,
            view.revoked_at,
            view.position
        ),
        (InvitationStatus::Accepted, Some(at(2)), None, 2)
    );
    assert_eq!(view.status_at(view.expires_at), InvitationStatus::Accepted);
    assert_eq!(
        accepted.open_invitation_of(&t("acme"), &u(1)).unwrap(),
        None
    );

    let revoked = given_when(&given, &[At(2).invitation_revoked("acme", id(1))]);
    let view = revoked.invitation(&t("acme"), &id(1)).unwrap().unwrap();
    assert_eq!(
        (
            view.status,
            view.accepted_at,
            view.revoked_at,
            view.position
        ),
        (InvitationStatus::Revoked, None, Some(at(2)), 2)
    );
    assert_eq!(revoked.open_invitation_of(&t("acme"), &u(1)).unwrap(), None);
    assert_eq!(
        revoked.invitation_by_token(&index(1)).unwrap(),
        Some((t("acme"), id(1)))
    );
}

#[test]
fn a_users_newest_open_invitation_is_the_open_one_until_it_closes() {
    let identity = given_when(
        &[
            At(1).invited("acme", id(1), u(1), 1),
            At(2).invited("acme", id(2), u(1), 2),
        ],
        &[At(3).accepted("acme", id(2))],
    );
    assert_eq!(
        identity
            .open_invitation_of(&t("acme"), &u(1))
            .unwrap()
            .map(|v| v.id),
        Some(id(1))
    );
}

#[test]
fn a_sent_invitation_expires_when_read_after_its_end() {
    let identity = given_when(&[], &[At(1).invited("acme", id(1), u(1), 1)]);
    let view = identity.invitation(&t("acme"), &id(1)).unwrap().unwrap();
    assert_eq!(
        view.status_at(view.expires_at - Duration::seconds(1)),
        InvitationStatus::Sent
    );
    assert_eq!(view.status_at(view.expires_at), InvitationStatus::Expired);
    assert_eq!(
        view.status,
        InvitationStatus::Sent,
        "expiry is never recorded"
    );
}

#[test]
fn a_tenants_invitations_are_paged_in_id_order() {
    let mut given = Vec::new();
    for n in [3, 1, 2] {
        given.push(At(given.len() as u64 + 1).invited("acme", id(n), u(n), n as u8));
    }
    let identity = given_when(&given, &[At(4).invited("acme-2", id(4), u(1), 4)]);
    let page = |after, limit| {
        identity
            .invitations(&t("acme"), after, limit)
            .unwrap()
            .into_iter()
            .map(|v| v.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(None, 2), vec![id(1), id(2)]);
    assert_eq!(page(Some(id(2)), 2), vec![id(3)]);
    assert_eq!(page(Some(id(3)), 2), vec![]);
    assert_eq!(page(None, 0), vec![]);
    assert_eq!(
        identity
            .invitations(&t("acme-2"), None, 10)
            .unwrap()
            .into_iter()
            .map(|v| v.id)
            .collect::<Vec<_>>(),
        vec![id(4)]
    );
}

// ---- API keys ----------------------------------------------------------------------------------

#[test]
fn an_issued_key_records_its_uses_and_is_usable_until_it_expires_or_is_revoked() {
    let ends = at(1) + Duration::days(90);
    let identity = given_when(
        &[At(1).issued("acme", id(1), u(1), Some(ends))],
        &[At(2).key_used("acme", id(1)), At(5).key_used("acme", id(1))],
    );
    let view = identity.api_key(&id(1)).unwrap().unwrap();
    assert_eq!(
        view,
        ApiKeyView {
            id: id(1),
            tenant: t("acme"),
            owner: u(1),
            name: format!("key {}", id(1)),
            secret: index(id(1).0 as u8),
            restriction: None,
            created_at: at(1),
            expires_at: Some(ends),
            revoked_at: None,
            last_used_at: Some(at(5)),
            created_by: admin(),
            position: 5,
        }
    );
    assert!(view.is_usable_at(ends - Duration::seconds(1)));
    assert!(!view.is_usable_at(ends));

    let revoked = given_when(
        &[At(1).issued("acme", id(1), u(1), None)],
        &[
            At(2).key_revoked("acme", id(1)),
            At(3).key_revoked("acme", id(1)),
        ],
    );
    let view = revoked.api_key(&id(1)).unwrap().unwrap();
    assert_eq!((view.revoked_at, view.position), (Some(at(2)), 3));
    assert!(!view.is_usable_at(at(1)));
}

#[test]
fn a_keys_restriction_is_kept() {
    let restriction: BTreeSet<Permission> = ["users:read", "roles:read"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let mut event = At(1).issued("acme", id(1), u(1), None);
    event.envelope.data["restriction"] = serde_json::to_value(&restriction).unwrap();
    let identity = given_when(&[], &[event]);
    assert_eq!(
        identity.api_key(&id(1)).unwrap().unwrap().restriction,
        Some(restriction)
    );
}

#[test]
fn keys_are_listed_per_tenant_or_per_owner_oldest_first() {
    let identity = given_when(
        &[
            At(1).issued("acme", id(3), u(1), None),
            At(2).issued("acme", id(1), u(2), None),
            At(3).issued("acme", id(2), u(1), None),
        ],
        &[
            At(4).issued("globex", id(4), u(1), None),
            At(5).key_revoked("acme", id(2)),
        ],
    );
    let ids = |views: Vec<ApiKeyView>| views.into_iter().map(|v| v.id).collect::<Vec<_>>();
    assert_eq!(
        ids(identity.api_keys(&t("acme"), None).unwrap()),
        vec![id(1), id(2), id(3)]
    );
    assert_eq!(
        ids(identity.api_keys(&t("acme"), Some(&u(1))).unwrap()),
        vec![id(2), id(3)],
        "revoked keys are listed"
    );
    assert_eq!(
        ids(identity.api_keys(&t("globex"), Some(&u(1))).unwrap()),
        vec![id(4)]
    );
    assert_eq!(
        ids(identity.api_keys(&t("globex"), Some(&u(2))).unwrap()),
        vec![]
    );
}

#[test]
fn a_key_event_in_another_tenants_stream_is_skipped() {
    let (identity, applied) = given_when_applied(
        &[At(1).issued("acme", id(1), u(1), None)],
        &[At(2).key_revoked("globex", id(1))],
    );
    assert_eq!(applied.skipped.len(), 1, "{:?}", applied.skipped);
    let view = identity.api_key(&id(1)).unwrap().unwrap();
    assert_eq!((view.revoked_at, view.position), (None, 1));
}

// ---- what cannot be placed ---------------------------------------------------------------------

#[test]
fn events_the_identity_cannot_place_are_skipped_with_a_note_and_write_nothing() {
    let mut newer = At(1).started(id(1), u(1), "acme", 1);
    newer.envelope.version = 6;
    let mut unknown = At(2).started(id(2), u(1), "acme", 2);
    unknown.envelope.event_type = "SessionTeleported".into();
    let mut garbage = At(3).started(id(3), u(1), "acme", 3);
    garbage.envelope.data = serde_json::json!({"refresh": "not hex"});
    let bad_session_id = At(4).record(
        StreamKey::new(None, AggregateType::Session, "not-a-ulid"),
        DomainEvent::SessionRevoked(SessionRevoked {
            reason: RevocationReason::SignedOut,
        }),
    );
    let lower_case_id = At(5).started(id(5), u(1), "acme", 5);
    let mut lower_case_id = lower_case_id;
    lower_case_id.envelope.aggregate.id = id(5).to_string().to_lowercase();
    let bad_user_id = At(6).record(
        StreamKey::new(None, AggregateType::Credentials, "nobody"),
        password_set('A', PasswordReason::Initial).into(),
    );
    let mut no_tenant = At(7).invited("acme", id(7), u(1), 7);
    no_tenant.envelope.tenant = None;
    let events = [
        newer,
        unknown,
        garbage,
        bad_session_id,
        lower_case_id,
        bad_user_id,
        no_tenant,
        At(8).refreshed(id(8), 8, 1),
        At(9).accepted("acme", id(9)),
        At(10).resent("acme", id(10), 10),
        At(11).key_used("acme", id(11)),
        At(12).key_revoked("acme", id(12)),
    ];
    let tree = open();
    let applied = apply_events(&IdentityProjection::new(seal()), &tree, &events).unwrap();
    assert_eq!(applied.checkpoint, 12, "skipping is applying");
    let positions: Vec<_> = applied.skipped.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        positions,
        (1..=12).collect::<Vec<_>>(),
        "{:?}",
        applied.skipped
    );
    assert!(
        applied.skipped[0].1.contains("SessionStarted"),
        "{:?}",
        applied.skipped
    );
    assert!(
        tree.iter().all(|entry| entry.unwrap().0.starts_with(b"\0")),
        "only the runtime's checkpoint"
    );
}

#[test]
fn other_read_models_events_change_nothing_here() {
    let tenant_created = At(1).record(
        StreamKey::new(Some(t("acme")), AggregateType::Tenant, "acme"),
        DomainEvent::TenantCreated(TenantCreated {
            name: "Acme".into(),
        }),
    );
    let tree = open();
    let applied = apply_events(&IdentityProjection::new(seal()), &tree, &[tenant_created]).unwrap();
    assert_eq!((applied.checkpoint, applied.skipped.len()), (1, 0));
    assert!(tree.iter().all(|entry| entry.unwrap().0.starts_with(b"\0")));
}

// ---- format and determinism --------------------------------------------------------------------

#[test]
fn views_serialise_as_snake_case_json_with_rfc3339_times() {
    let identity = given_when(
        &[At(1).started(id(1), u(1), "acme", 1)],
        &[At(2).session_revoked(id(1), RevocationReason::PasswordReset)],
    );
    let json = serde_json::to_value(identity.session(&id(1)).unwrap().unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": id(1).to_string(),
            "user": u(1).to_string(),
            "tenant": "acme",
            "method": "password",
            "started_at": "2026-03-01T12:01:00Z",
            "last_active_at": "2026-03-01T12:01:00Z",
            "expires_at": "2026-03-31T12:01:00Z",
            "idle_timeout_seconds": 3600,
            "remembered": false,
            "generation": 0,
            "refresh": "01".repeat(32),
            "revoked": "password_reset",
            "revoked_at": "2026-03-01T12:02:00Z",
            "ip": "192.0.2.1",
            "user_agent": "Browser/1",
            "position": 2
        })
    );
}

/// One of everything, in an order that makes later events read what earlier ones wrote.
fn a_day_of_events() -> Vec<RecordedEvent> {
    let mut events = vec![
        At(1).credentials(u(1), password_set('A', PasswordReason::Initial)),
        At(2).credentials(u(1), failed(1, 2)),
        At(3).started(id(1), u(1), "acme", 1),
        At(4).refreshed(id(1), 2, 1),
        At(5).switched(id(1), "globex", 3, 2),
        At(6).started(id(2), u(1), "acme", 4),
        At(7).session_revoked(id(1), RevocationReason::SignedOut),
        At(8).invited("acme", id(3), u(2), 5),
        At(9).resent("acme", id(3), 6),
        At(10).accepted("acme", id(3)),
        At(11).invited("acme", id(4), u(3), 7),
        At(12).issued("acme", id(5), u(1), Some(at(100))),
        At(13).key_used("acme", id(5)),
        At(14).key_revoked("acme", id(5)),
        At(15).refreshed(id(9), 9, 1),
    ];
    events.extend(
        arbitrary_credentials_events(20)
            .into_iter()
            .zip(16..)
            .map(|(event, position)| At(position).credentials(u(2), event)),
    );
    events
}

/// The standing of every session and the TOTP flag of every user agree with the full views,
/// after every event of a day (the standing is decoded from the same JSON, skipping the rest).
#[test]
fn a_sessions_standing_and_a_users_totp_flag_agree_with_their_views_after_every_event() {
    let mut events = a_day_of_events();
    events.extend(
        totp_enabled_with_codes(&[1, 2])
            .into_iter()
            .zip(100..)
            .map(|(event, position)| At(position).credentials(u(1), event)),
    );
    events.push(At(110).credentials(u(1), CredentialsEvent::TotpDisabled(TotpDisabled {})));
    events.push(At(111).session_revoked(id(2), RevocationReason::RevokedByAdmin));
    let tree = open();
    let identity = Identity::new(tree.clone(), seal());
    let mut totp_seen = false;
    for event in &events {
        apply_events(
            &IdentityProjection::new(seal()),
            &tree,
            std::slice::from_ref(event),
        )
        .unwrap();
        for session in [id(1), id(2), id(9)] {
            let view = identity.session(&session).unwrap();
            let standing = identity.session_standing(&session).unwrap();
            assert_eq!(standing, view.as_ref().map(SessionStanding::from));
            if let (Some(view), Some(standing)) = (view, standing) {
                for later in [0, 30, 59, 60, 61, 60 * 24 * 31] {
                    let now = view.last_active_at + Duration::minutes(later);
                    assert_eq!(
                        standing.is_live_at(now),
                        view.is_live_at(now),
                        "{view:?} {now}"
                    );
                }
            }
        }
        for user in [u(1), u(2), u(3)] {
            let view = identity.credentials(&user).unwrap();
            let enabled = identity.second_factor(&user).unwrap();
            assert_eq!(
                enabled,
                view.as_ref().map(CredentialsView::has_second_factor)
            );
            totp_seen |= enabled == Some(true);
        }
    }
    assert!(totp_seen, "a user had TOTP on at some point");
    assert!(
        !identity
            .session_standing(&id(2))
            .unwrap()
            .unwrap()
            .is_live_at(at(112))
    );
}

fn dump(tree: &sled::Tree) -> Vec<(sled::IVec, sled::IVec)> {
    tree.iter().map(|entry| entry.unwrap()).collect()
}

#[test]
fn a_rebuild_gives_the_same_bytes_in_one_batch_or_event_by_event() {
    let events = a_day_of_events();
    let batched = open();
    apply_events(&IdentityProjection::new(seal()), &batched, &events).unwrap();
    let rebuilt = open();
    apply_events(&IdentityProjection::new(seal()), &rebuilt, &events).unwrap();
    let stepwise = open();
    for event in &events {
        apply_events(
            &IdentityProjection::new(seal()),
            &stepwise,
            std::slice::from_ref(event),
        )
        .unwrap();
    }
    assert!(dump(&batched).len() > 20, "the events wrote something");
    assert_eq!(dump(&batched), dump(&rebuilt));
    assert_eq!(dump(&batched), dump(&stepwise));
}

/// The identity read model running in the real runtime over the real embedded log.
mod live {
    use std::sync::Arc;
    use std::time::Duration;

    use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
    use idstream_eventlog::{Expected, SharedLog};
    use idstream_projection_runtime::{Projection, ReadModels, rebuild_offline};

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(20);

    fn projections() -> Vec<Arc<dyn Projection>> {
        vec![Arc::new(IdentityProjection::new(seal()))]
    }

    /// An embedded log in `root` with the identity read model running live over it.
    async fn live(root: &std::path::Path) -> (SharedLog, ReadModels, Identity) {
        let log: SharedLog = EmbeddedLog::open(&root.join("log"), EmbeddedOptions::default())
            .await
            .unwrap();
        let models = ReadModels::start(&root.join("models"), log.clone(), projections())
            .await
            .unwrap();
        let identity = Identity::new(models.tree(crate::NAME), seal());
        (log, models, identity)
    }

    /// The session's standing through `cache`, tagged with the position the model has
    /// published (read first), and whether the tree had to be read.
    fn cached_standing(
        cache: &crate::ViewCache<Ulid, SessionStanding>,
        models: &ReadModels,
        identity: &Identity,
        session: Ulid,
    ) -> (Option<SessionStanding>, bool) {
        let position = models.position(crate::NAME);
        let mut read = false;
        let standing = cache
            .get_or_load(&session, position, || {
                read = true;
                identity.session_standing(&session)
            })
            .unwrap();
        (standing, read)
    }

    async fn append(log: &SharedLog, models: &ReadModels, event: RecordedEvent) {
        let last = log
            .append(vec![event.envelope], Expected::Any, None)
            .await
            .unwrap()
            .last;
        models.wait_for(last, PATIENCE).await.unwrap();
    }

    /// A cache of standings tagged with the published position answers exactly what the model
    /// holds once it has applied a refresh, a tenant switch, a revocation, an unrelated event
    /// or a rebuild, and from memory in between.
    #[tokio::test]
    async fn cached_standings_follow_every_change_the_live_model_applies() {
        let root = tempfile::tempdir().unwrap();
        let (log, models, identity) = live(root.path()).await;
        let cache = crate::ViewCache::new(1024);
        let standing = |session| cached_standing(&cache, &models, &identity, session);

        assert_eq!(standing(id(1)), (None, true));
        append(&log, &models, At(1).started(id(1), u(1), "acme", 1)).await;
        let (first, read) = standing(id(1));
        let first = first.unwrap();
        assert!(read);
        assert!(first.is_live_at(at(2)));
        assert_eq!(first.tenant, t("acme"));
        assert_eq!(standing(id(1)), (Some(first.clone()), false), "from memory");

        // A refresh moves the idle deadline: a standing read before it would end too early.
        append(&log, &models, At(50).refreshed(id(1), 2, 1)).await;
        let (refreshed, read) = standing(id(1));
        assert!(read);
        assert!(refreshed.as_ref().unwrap().is_live_at(at(100)));
        assert!(!first.is_live_at(at(100)));

        append(&log, &models, At(51).switched(id(1), "globex", 3, 2)).await;
        assert_eq!(standing(id(1)).0.unwrap().tenant, t("globex"));

        // Another session's start, or a user's credentials, change nothing of this one, but it
        // is read again (once) all the same.
        append(&log, &models, At(52).started(id(2), u(2), "acme", 4)).await;
        let (unrelated, read) = standing(id(1));
        assert!(read);
        assert_eq!(standing(id(1)), (unrelated.clone(), false));

        append(
            &log,
            &models,
            At(53).session_revoked(id(1), RevocationReason::SignedOut),
        )
        .await;
        let (revoked, read) = standing(id(1));
        assert!(read);
        assert!(!revoked.unwrap().is_live_at(at(53)));
        assert!(standing(id(2)).0.unwrap().is_live_at(at(53)));

        // A rebuild clears the tree and goes through every position again.
        let last = models.position(crate::NAME);
        models.rebuild(crate::NAME).await.unwrap();
        models.wait_for(last, PATIENCE).await.unwrap();
        let (rebuilt, _) = standing(id(1));
        assert!(!rebuilt.unwrap().is_live_at(at(53)));
        models.shutdown().await;
    }

    #[tokio::test]
    async fn the_live_identity_answers_queries_and_rebuilds_to_the_same_digest() {
        let root = tempfile::tempdir().unwrap();
        let (log, models, identity) = live(root.path()).await;

        let mut last = 0;
        for event in a_day_of_events() {
            last = log
                .append(vec![event.envelope], Expected::Any, None)
                .await
                .unwrap()
                .last;
        }
        models.wait_for(last, PATIENCE).await.unwrap();
        assert_eq!(identity.session_by_refresh(&index(2)).unwrap(), Some(id(1)));
        assert_eq!(
            identity
                .sessions_of(&u(1))
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>(),
            vec![id(2), id(1)]
        );
        assert_eq!(
            identity
                .open_invitation_of(&t("acme"), &u(3))
                .unwrap()
                .map(|v| v.id),
            Some(id(4))
        );

        let (position, live) = models.digest(crate::NAME).await.unwrap();
        assert_eq!(position, last);
        models.rebuild(crate::NAME).await.unwrap();
        models.wait_for(last, PATIENCE).await.unwrap();
        assert_eq!(
            models.digest(crate::NAME).await.unwrap(),
            (last, live.clone())
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

/// The raw-bytes canary (issue 22): where a sign-in (or a failed one) came from, address and user
/// agent, never reaches the store's files in the clear; the session still tells them.
#[test]
fn no_sign_in_source_reaches_the_store_files_in_the_clear() {
    use idstream_projection_runtime::personal::files_holding;

    let canaries = ["203.0.113.222", "CanaryBrowser/4e1b (Zoë)"];
    let root = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(root.path()).open().unwrap();
    let tree = db.open_tree(crate::NAME).unwrap();
    let user = u(7);
    let session = Ulid::from_parts(90, 1);
    let mut started = At(2).started(session, user, "acme", 1);
    started.envelope.data["ip"] = serde_json::json!(canaries[0]);
    started.envelope.data["user_agent"] = serde_json::json!(canaries[1]);
    let failed = At(1).credentials(
        user,
        CredentialsEvent::SignInFailed(SignInFailed {
            failures: 1,
            at: at(1),
            ip: Some(canaries[0].into()),
            user_agent: Some(canaries[1].into()),
        }),
    );
    apply_events(&IdentityProjection::new(seal()), &tree, &[failed, started]).unwrap();

    let identity = Identity::new(tree.clone(), seal());
    let view = identity.session(&session).unwrap().unwrap();
    assert_eq!(view.ip.as_deref(), Some(canaries[0]));
    assert_eq!(view.user_agent.as_deref(), Some(canaries[1]));
    assert_eq!(
        identity.sessions_of(&user).unwrap()[0].ip.as_deref(),
        Some(canaries[0])
    );

    db.flush().unwrap();
    drop((identity, tree, db));
    assert_eq!(files_holding(root.path(), &canaries), vec![]);
}

// ---- passkeys -----------------------------------------------------------------------------------

fn passkey_registered(credential: &str, name: &str, position: Position) -> CredentialsEvent {
    CredentialsEvent::PasskeyRegistered(PasskeyRegistered {
        credential: credential.into(),
        name: name.into(),
        public_key: format!("{{\"cred\":\"{credential}\"}}"),
        counter: 1,
        at: at(position),
    })
}

#[test]
fn passkeys_are_listed_with_their_use_and_a_second_factor_counts_them() {
    let given = credentials_events(
        1,
        vec![
            passkey_registered("A", "Laptop", 1),
            passkey_registered("B", "YubiKey", 2),
            CredentialsEvent::RecoveryCodesGenerated(RecoveryCodesGenerated {
                codes: vec![index(7)],
            }),
            CredentialsEvent::PasskeyUsed(PasskeyUsed {
                credential: "A".into(),
                counter: 5,
                at: at(4),
                ceremony_started_at: at(3),
            }),
            // A refusal changes nothing but the position.
            CredentialsEvent::PasskeyCounterRegressed(PasskeyCounterRegressed {
                credential: "A".into(),
                stored: 5,
                presented: 2,
                at: at(5),
            }),
        ],
    );
    let identity = given_when(&given, &[]);
    let view = identity.credentials(&u(1)).unwrap().unwrap();
    assert!(view.has_second_factor());
    assert_eq!(identity.second_factor(&u(1)).unwrap(), Some(true));
    let names: Vec<_> = view.passkeys.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Laptop", "YubiKey"]);
    let a = view.passkey("A").unwrap();
    assert_eq!(
        (a.counter, a.last_used_at, a.last_ceremony, a.created_at),
        (5, Some(at(4)), Some(at(3)), at(1))
    );
    assert_eq!(view.position, 5);

    // Removing one keeps the codes; removing the last takes them.
    let removed = |c: &str| {
        CredentialsEvent::PasskeyRemoved(PasskeyRemoved {
            credential: c.into(),
        })
    };
    let identity = given_when(&given, &credentials_events(6, vec![removed("A")]));
    let view = identity.credentials(&u(1)).unwrap().unwrap();
    assert_eq!(view.recovery_codes, vec![index(7)]);
    let identity = given_when(
        &given,
        &credentials_events(6, vec![removed("A"), removed("B")]),
    );
    let view = identity.credentials(&u(1)).unwrap().unwrap();
    assert!(view.passkeys.is_empty() && view.recovery_codes.is_empty());
    assert_eq!(identity.second_factor(&u(1)).unwrap(), Some(false));
}

/// A passkey's name is personal data: it never reaches the store's files in the clear, the
/// query still tells it.
#[test]
fn no_passkey_name_reaches_the_store_files_in_the_clear() {
    use idstream_projection_runtime::personal::files_holding;

    let canary = "Zoë's CanaryKey 5c1f";
    let root = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(root.path()).open().unwrap();
    let tree = db.open_tree(crate::NAME).unwrap();
    let registered = At(1).credentials(u(7), passkey_registered("A", canary, 1));
    apply_events(&IdentityProjection::new(seal()), &tree, &[registered]).unwrap();
    let identity = Identity::new(tree.clone(), seal());
    let view = identity.credentials(&u(7)).unwrap().unwrap();
    assert_eq!(view.passkeys[0].name, canary);
    db.flush().unwrap();
    drop((identity, tree, db));
    assert_eq!(files_holding(root.path(), &[canary]), vec![]);
}

#[test]
fn an_applications_session_names_its_client_and_the_browser_session_it_was_issued_through() {
    let identity = given_when(
        &[At(1).started(id(1), u(1), "acme", 1)],
        &[
            At(2).code_issued(id(2), u(1), "app-1", id(1)),
            At(3).started(id(2), u(1), "acme", 2),
            // A code revoked before its exchange leaves nothing behind.
            At(4).code_issued(id(3), u(1), "app-1", id(1)),
            At(5).session_revoked(id(3), RevocationReason::RevokedByClient),
        ],
    );
    let app = identity.session(&id(2)).unwrap().unwrap();
    assert_eq!(app.client.as_deref(), Some("app-1"));
    assert_eq!(app.browser_session, Some(id(1)));
    assert_eq!(identity.session(&id(3)).unwrap(), None);
    let children = identity.sessions_issued_through(&id(1)).unwrap();
    assert_eq!(children.iter().map(|s| s.id).collect::<Vec<_>>(), [id(2)]);
    assert!(identity.sessions_issued_through(&id(2)).unwrap().is_empty());
    // The application's session is not a sign-in: the last one stays the browser's.
    assert_eq!(identity.last_sign_in(&u(1)).unwrap(), Some(at(1)));
}
