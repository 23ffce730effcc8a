//! Identity flows against a real embedded log, real read models, real argon2 and the file mailer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use idstream_auth::TotpSecret;
use idstream_domain::{RoleName, TenantId, UserId};

use super::signin::{SignIn, Tokens};
use super::{
    AcceptInvitation, ApiKeyRequest, Bootstrap, Client, IdentityServices, InvitationRequest,
};
use crate::{App, AppError, Caller, SuspendRequest, SystemClock};

const ADMIN_PASSWORD: &str = "correct horse battery staple";

async fn app(dir: &Path) -> App {
    app_with_clock(dir, Arc::new(SystemClock)).await
}

use crate::tests::ShiftedClock;

async fn app_with_clock(dir: &Path, clock: Arc<dyn crate::Clock>) -> App {
    let mut services = IdentityServices::local(dir).await.unwrap();
    // These tests make many attempts from one (unknown) source on purpose.
    services.config.attempts_per_source_per_minute = 100_000;
    crate::tests::app_in(dir, clock, services).await
}

fn acme() -> TenantId {
    "acme".parse().unwrap()
}

fn system() -> Caller {
    Caller::system("test")
}

/// [`system`] with the idempotency key `key`.
fn with_key(key: &str) -> Caller {
    Caller::system("test").with_idempotency_key(key).unwrap()
}

async fn bootstrap(app: &App) -> UserId {
    app.identity
        .bootstrap(
            &system(),
            Bootstrap {
                tenant: acme(),
                tenant_name: "Acme".into(),
                email: "admin@example.com".into(),
                first_name: "Ada".into(),
                last_name: "Admin".into(),
                password: ADMIN_PASSWORD.into(),
            },
        )
        .await
        .unwrap()
        .0
}

async fn sign_in(app: &App, email: &str, password: &str) -> Result<Tokens, AppError> {
    match app
        .identity
        .sign_in(&Caller::anonymous(), email, password.into(), None, false)
        .await?
    {
        SignIn::Complete(tokens) => Ok(tokens),
        other => panic!("expected tokens, got {other:?}"),
    }
}

/// Changes acme's settings and waits until the read models hold the change.
pub(crate) async fn change_settings(app: &App, settings: idstream_domain::tenant::TenantSettings) {
    let changed = app
        .tenants
        .change_settings(&system(), acme(), settings)
        .await
        .unwrap();
    app.core().wait_for(changed.position).await.unwrap();
}

/// The token with `prefix` in the newest email to `to`.
async fn mailed_token(dir: &Path, to: &str, prefix: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let messages = idstream_mailer::FileMailer::messages(&dir.join("mail")).unwrap();
        for path in messages.iter().rev() {
            let mail = idstream_mailer::read_eml(path).unwrap();
            if mail.to.contains(to)
                && let Some(at) = mail.text.find(prefix)
            {
                let token: String = mail.text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                return token;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no mail to {to} with a {prefix} token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_err<T: std::fmt::Debug>(result: Result<T, AppError>, expected: &str) {
    match result {
        Err(e) => assert_eq!(format!("{e:?}"), expected),
        Ok(v) => panic!("expected {expected}, got {v:?}"),
    }
}

/// Invites `email` into acme with `roles` and accepts with `password`.
pub(crate) async fn invited_member(
    app: &App,
    dir: &Path,
    email: &str,
    password: &str,
    roles: &[&str],
) -> UserId {
    let sent = app
        .identity
        .invite(
            &system(),
            acme(),
            InvitationRequest {
                delivery: Default::default(),
                email: email.into(),
                first_name: "Bob".into(),
                last_name: "Member".into(),
                roles: roles.iter().map(|r| r.parse().unwrap()).collect(),
            },
        )
        .await
        .unwrap();
    assert!(sent.email_sent);
    let token = mailed_token(dir, email, "idi_").await;
    app.identity
        .accept_invitation(
            &Caller::anonymous(),
            AcceptInvitation {
                token,
                password: Some(password.into()),
                remember: false,
            },
        )
        .await
        .unwrap();
    sent.user
}

#[tokio::test]
async fn bootstrap_creates_an_administrator_who_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let admin = bootstrap(&app).await;
    let tokens = sign_in(&app, " Admin@Example.com ", ADMIN_PASSWORD)
        .await
        .unwrap();
    assert_eq!((tokens.user, tokens.tenant.clone()), (admin, acme()));
    assert!(tokens.refresh_token.starts_with("idr_"));
    let caller = app
        .identity
        .authenticate(&tokens.access_token)
        .await
        .unwrap();
    let me = app.identity.me(&Caller::user(caller.clone())).unwrap();
    assert_eq!(
        me.roles,
        [
            RoleName::user(),
            "admin".parse().unwrap(),
            "owner".parse().unwrap()
        ]
        .into_iter()
        .filter(|r| r != &RoleName::user())
        .collect()
    );
    assert!(me.global_access);
    assert!(me.user.flags.platform_admin);
    assert!(me.last_sign_in.is_some());

    // Once is enough.
    assert_err(
        app.identity
            .bootstrap(
                &system(),
                Bootstrap {
                    tenant: "other".parse().unwrap(),
                    tenant_name: "Other".into(),
                    email: "x@example.com".into(),
                    first_name: String::new(),
                    last_name: String::new(),
                    password: ADMIN_PASSWORD.into(),
                },
            )
            .await,
        "AlreadyBootstrapped",
    );
}

#[tokio::test]
async fn sign_ins_and_failures_record_where_they_came_from() {
    use idstream_domain::DomainEvent;

    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let admin = bootstrap(&app).await;
    let ip: std::net::IpAddr = "::ffff:192.0.2.9".parse().unwrap();
    let agent = format!("Mozilla/5.0\u{7}\n{}", "x".repeat(400));
    let client = Client::new(Some(ip), Some(&agent));
    assert_eq!(client.user_agent().unwrap().chars().count(), 256);
    assert!(client.user_agent().unwrap().starts_with("Mozilla/5.0x"));
    assert!(!format!("{client:?}").contains("192.0.2.9"), "{client:?}");
    assert_eq!(Client::new(None, Some(" \t ")).user_agent(), None);

    assert_err(
        app.identity
            .sign_in(
                &Caller::anonymous().from_client(client.clone()),
                "admin@example.com",
                "wrong".into(),
                None,
                false,
            )
            .await,
        "InvalidCredentials",
    );
    let SignIn::Complete(tokens) = app
        .identity
        .sign_in(
            &Caller::anonymous().from_client(client.clone()),
            "admin@example.com",
            ADMIN_PASSWORD.into(),
            None,
            false,
        )
        .await
        .unwrap()
    else {
        panic!("no second factor here")
    };
    app.core().wait_for(tokens.position).await.unwrap();
    let session = app
        .core()
        .identity()
        .session(&tokens.session)
        .unwrap()
        .unwrap();
    // An IPv4 address mapped into IPv6 is recorded as the IPv4 address.
    assert_eq!(session.ip.as_deref(), Some("192.0.2.9"));
    assert_eq!(session.user_agent.as_deref(), client.user_agent());

    let events = app.core().log().read_after(0, usize::MAX).await.unwrap();
    let failed = events
        .iter()
        .find_map(|e| match DomainEvent::decode(&e.envelope) {
            Ok(DomainEvent::SignInFailed(failed)) => Some(failed),
            _ => None,
        })
        .expect("the failure is recorded");
    assert_eq!(failed.ip.as_deref(), Some("192.0.2.9"));
    assert_eq!(failed.user_agent.as_deref(), client.user_agent());

    // The administrator sees the sessions of a user with their sources; nobody else does.
    let listed = app.users.sessions(&system(), admin).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].ip.as_deref(), Some("192.0.2.9"));
    let stranger = crate::tests::as_user(UserId::new(ulid::Ulid::new()), "acme");
    assert!(app.users.sessions(&stranger, admin).await.is_err());
}

#[tokio::test]
async fn wrong_passwords_and_unknown_accounts_get_one_answer() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    assert_err(
        sign_in(&app, "admin@example.com", "wrong password").await,
        "InvalidCredentials",
    );
    assert_err(
        sign_in(&app, "nobody@example.com", ADMIN_PASSWORD).await,
        "InvalidCredentials",
    );
    assert_err(
        sign_in(&app, "not an address", ADMIN_PASSWORD).await,
        "InvalidCredentials",
    );
    assert_err(
        sign_in(&app, "admin@example.com", &"x".repeat(5000)).await,
        "PasswordTooLong",
    );
    assert_err(
        app.identity.authenticate("garbage").await,
        "Unauthenticated",
    );
}

#[tokio::test]
async fn a_flood_of_wrong_passwords_locks_after_five_and_every_answer_costs_one_argon2_check() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let admin = bootstrap(&app).await;
    let before = app.core().id().hasher.runs();
    let attempts: Vec<_> = (0..50)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.identity
                    .sign_in(
                        &Caller::anonymous(),
                        "admin@example.com",
                        format!("wrong {i}"),
                        None,
                        false,
                    )
                    .await
            })
        })
        .collect();
    for attempt in attempts {
        assert_err(attempt.await.unwrap(), "InvalidCredentials");
    }
    // Attempts on one account take turns, and each sees the failures before it: five count,
    // the sixth finds the account locked. A locked account still answers after an argon2 check
    // (against a throw-away hash), so that a lock-out does not show in the timing.
    let runs = app.core().id().hasher.runs() - before;
    assert!(
        (50..=51).contains(&runs),
        "50 wrong passwords ran {runs} argon2 checks: one each (and one throw-away hash)"
    );
    let mut creds = None;
    for _ in 0..500 {
        creds = app.core().credentials_view(admin).unwrap();
        if creds.as_ref().is_some_and(|c| c.lockouts == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let creds = creds.unwrap();
    assert_eq!(creds.lockouts, 1, "one lock-out: {creds:?}");
    assert_eq!(creds.failures, 0, "the failures that locked it start over");
    // Locked: even the right password is refused, without a hint.
    assert_err(
        sign_in(&app, "admin@example.com", ADMIN_PASSWORD).await,
        "InvalidCredentials",
    );
    // The user is told by email.
    let mails = idstream_mailer::FileMailer::messages(&dir.path().join("mail")).unwrap();
    assert!(mails.iter().any(|p| {
        idstream_mailer::read_eml(p)
            .unwrap()
            .subject
            .to_lowercase()
            .contains("lock")
    }));
    // An administrator lifts the lock.
    app.users.unlock(&system(), admin).await.unwrap();
    sign_in(&app, "admin@example.com", ADMIN_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let first = sign_in(&app, "admin@example.com", ADMIN_PASSWORD)
        .await
        .unwrap();
    let second = app
        .identity
        .refresh(&Caller::anonymous(), &first.refresh_token)
        .await
        .unwrap();
    assert_eq!(second.session, first.session);
    assert_ne!(second.refresh_token, first.refresh_token);
    app.identity
        .authenticate(&second.access_token)
        .await
        .unwrap();

    // The first token again: someone kept a copy. The whole session ends.
    assert_err(
        app.identity
            .refresh(&Caller::anonymous(), &first.refresh_token)
            .await,
        "InvalidToken",
    );
    assert_err(
        app.identity
            .refresh(&Caller::anonymous(), &second.refresh_token)
            .await,
        "InvalidToken",
    );
    assert_err(
        app.identity.authenticate(&second.access_token).await,
        "Unauthenticated",
    );
    assert_err(
        app.identity
            .refresh(&Caller::anonymous(), "idr_nonsense")
            .await,
        "InvalidToken",
    );
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_yield_at_most_one_successor() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let tokens = sign_in(&app, "admin@example.com", ADMIN_PASSWORD)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let app = app.clone();
            let token = tokens.refresh_token.clone();
            tokio::spawn(async move { app.identity.refresh(&Caller::anonymous(), &token).await })
        })
        .collect();
    let mut successes = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => successes += 1,
            Err(AppError::InvalidToken) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(successes <= 1, "{successes} successors");
}

#[tokio::test]
async fn an_invitation_is_accepted_once_even_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let sent = app
        .identity
        .invite(
            &system(),
            acme(),
            InvitationRequest {
                delivery: Default::default(),
                email: "bob@example.com".into(),
                first_name: "Bob".into(),
                last_name: String::new(),
                roles: vec![],
            },
        )
        .await
        .unwrap();
    let token = mailed_token(dir.path(), "bob@example.com", "idi_").await;

    // A weak password changes nothing.
    assert!(matches!(
        app.identity
            .accept_invitation(
                &Caller::anonymous(),
                AcceptInvitation {
                    token: token.clone(),
                    password: Some("password".into()),
                    remember: false,
                }
            )
            .await,
        Err(AppError::WeakPassword(_))
    ));

    let accept = |password: &'static str| {
        let app = app.clone();
        let token = token.clone();
        tokio::spawn(async move {
            app.identity
                .accept_invitation(
                    &Caller::anonymous(),
                    AcceptInvitation {
                        token,
                        password: Some(password.into()),
                        remember: false,
                    },
                )
                .await
        })
    };
    let (a, b) = (
        accept("first pass phrase 1"),
        accept("second pass phrase 2"),
    );
    let results = [a.await.unwrap(), b.await.unwrap()];
    let winners: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = if results[0].is_ok() {
        "first pass phrase 1"
    } else {
        "second pass phrase 2"
    };
    let loser = if results[0].is_ok() {
        "second pass phrase 2"
    } else {
        "first pass phrase 1"
    };
    let tokens = sign_in(&app, "bob@example.com", winner).await.unwrap();
    assert_eq!(tokens.user, sent.user);
    assert_err(
        sign_in(&app, "bob@example.com", loser).await,
        "InvalidCredentials",
    );
    // The invitee holds the tenant's default role, and the email is verified.
    let caller = app
        .identity
        .authenticate(&tokens.access_token)
        .await
        .unwrap();
    let me = app.identity.me(&Caller::user(caller.clone())).unwrap();
    assert_eq!(me.roles, [RoleName::user()].into());
    assert!(me.user.email_verified);
    // The token is spent.
    assert_err(
        app.identity
            .accept_invitation(
                &Caller::anonymous(),
                AcceptInvitation {
                    token,
                    password: Some("third pass phrase 3".into()),
                    remember: false,
                },
            )
            .await,
        "InvalidOrExpiredLink",
    );
}

#[tokio::test]
async fn a_password_reset_ends_every_session_but_keeps_the_second_factor() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let bob = invited_member(&app, dir.path(), "bob@example.com", "bobs pass phrase", &[]).await;
    let tokens = sign_in(&app, "bob@example.com", "bobs pass phrase")
        .await
        .unwrap();
    let caller = app
        .identity
        .authenticate(&tokens.access_token)
        .await
        .unwrap();

    // Two-factor authentication on.
    let setup = app
        .identity
        .start_totp(&Caller::user(caller.clone()))
        .await
        .unwrap();
    let secret = TotpSecret::from_base32(&setup.secret).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (codes, _) = app
        .identity
        .confirm_totp(&Caller::user(caller.clone()), &secret.code_at(now))
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);

    // Unknown addresses get the same answer and no mail.
    app.identity
        .request_password_reset(&Caller::anonymous(), "nobody@example.com")
        .unwrap();
    app.identity
        .request_password_reset(&Caller::anonymous(), "bob@example.com")
        .unwrap();
    let token = mailed_token(dir.path(), "bob@example.com", "idp_").await;
    assert_err(
        app.identity
            .reset_password(
                &Caller::anonymous(),
                bob,
                "idp_wrong",
                "a new pass phrase".into(),
            )
            .await,
        "InvalidOrExpiredLink",
    );
    app.identity
        .reset_password(
            &Caller::anonymous(),
            bob,
            &token,
            "a new pass phrase".into(),
        )
        .await
        .unwrap();
    // Single use.
    assert_err(
        app.identity
            .reset_password(
                &Caller::anonymous(),
                bob,
                &token,
                "another pass phrase".into(),
            )
            .await,
        "InvalidOrExpiredLink",
    );
    // Every session ended.
    assert_err(
        app.identity.authenticate(&tokens.access_token).await,
        "Unauthenticated",
    );
    assert_err(
        app.identity
            .refresh(&Caller::anonymous(), &tokens.refresh_token)
            .await,
        "InvalidToken",
    );
    assert_err(
        sign_in(&app, "bob@example.com", "bobs pass phrase").await,
        "InvalidCredentials",
    );
    // The new password works, and still asks for the second factor.
    let challenge = match app
        .identity
        .sign_in(
            &Caller::anonymous(),
            "bob@example.com",
            "a new pass phrase".into(),
            None,
            false,
        )
        .await
        .unwrap()
    {
        SignIn::SecondFactorRequired { challenge, .. } => challenge,
        other => panic!("expected a second step, got {other:?}"),
    };
    // A wrong code fails; a recovery code works once.
    assert_err(
        app.identity
            .sign_in_second_factor(&Caller::anonymous(), &challenge, Some("000000"), None, None)
            .await,
        "InvalidCredentials",
    );
    app.identity
        .sign_in_second_factor(
            &Caller::anonymous(),
            &challenge,
            None,
            Some(&codes[0]),
            None,
        )
        .await
        .unwrap();
    assert_err(
        app.identity
            .sign_in_second_factor(
                &Caller::anonymous(),
                &challenge,
                None,
                Some(&codes[0]),
                None,
            )
            .await,
        "InvalidCredentials",
    );
    // The next time step's code works; the same code twice does not.
    let next = secret.code_at(now + time::Duration::seconds(30));
    app.identity
        .sign_in_second_factor(&Caller::anonymous(), &challenge, Some(&next), None, None)
        .await
        .unwrap();
    assert_err(
        app.identity
            .sign_in_second_factor(&Caller::anonymous(), &challenge, Some(&next), None, None)
            .await,
        "InvalidCredentials",
    );
    assert_err(
        app.identity
            .sign_in_second_factor(&Caller::anonymous(), "v1.k.forged", Some(&next), None, None)
            .await,
        "InvalidToken",
    );
}

#[tokio::test]
async fn suspension_stops_sessions_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let bob = invited_member(&app, dir.path(), "bob@example.com", "bobs pass phrase", &[]).await;
    let tokens = sign_in(&app, "bob@example.com", "bobs pass phrase")
        .await
        .unwrap();
    let suspended = app
        .users
        .suspend(
            &system(),
            bob,
            SuspendRequest {
                until: None,
                reason: None,
            },
        )
        .await
        .unwrap();
    app.core().wait_for(suspended.position).await.unwrap();
    assert_err(
        app.identity.authenticate(&tokens.access_token).await,
        "Unauthenticated",
    );
    assert_err(
        app.identity
            .refresh(&Caller::anonymous(), &tokens.refresh_token)
            .await,
        "InvalidToken",
    );
    assert_err(
        sign_in(&app, "bob@example.com", "bobs pass phrase").await,
        "AccountDisabled",
    );
}

#[tokio::test]
async fn an_api_key_acts_for_its_owner_within_its_restriction_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let admin = bootstrap(&app).await;
    let tokens = sign_in(&app, "admin@example.com", ADMIN_PASSWORD)
        .await
        .unwrap();
    let caller = app
        .identity
        .authenticate(&tokens.access_token)
        .await
        .unwrap();
    let ctx = Caller::user(caller.clone());
    let issued = app
        .identity
        .issue_api_key(
            &ctx,
            acme(),
            ApiKeyRequest {
                name: "reporting".into(),
                owner: None,
                expires_at: None,
                permissions: Some(["users:read".parse().unwrap()].into()),
            },
        )
        .await
        .unwrap();
    assert!(issued.key.starts_with("ids_"));
    app.core().wait_for(issued.position).await.unwrap();
    let key_caller = app.identity.authenticate(&issued.key).await.unwrap();
    assert_eq!(key_caller.user, admin);
    let key_ctx = Caller::user(key_caller.clone());
    // Within the restriction: reading invitations needs users:read.
    app.identity
        .invitations(&key_ctx, &acme(), None, 10)
        .await
        .unwrap();
    // Outside it, even though the owner is an administrator.
    assert_err(
        app.identity
            .invite(
                &key_ctx,
                acme(),
                InvitationRequest {
                    delivery: Default::default(),
                    email: "eve@example.com".into(),
                    first_name: String::new(),
                    last_name: String::new(),
                    roles: vec![],
                },
            )
            .await,
        "Forbidden(Permission { text: \"users:create\" })",
    );
    // A key cannot mint keys.
    assert_err(
        app.identity
            .issue_api_key(
                &key_ctx,
                acme(),
                ApiKeyRequest {
                    name: "child".into(),
                    owner: Some(admin),
                    expires_at: None,
                    permissions: None,
                },
            )
            .await,
        "SessionOnly",
    );
    // A tampered key fails like an unknown one.
    let mut tampered = issued.key.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'a' { 'b' } else { 'a' });
    assert_err(
        app.identity.authenticate(&tampered).await,
        "Unauthenticated",
    );

    let revoked = app
        .identity
        .revoke_api_key(&ctx, acme(), issued.id)
        .await
        .unwrap();
    app.core().wait_for(revoked.position).await.unwrap();
    assert_err(
        app.identity.authenticate(&issued.key).await,
        "Unauthenticated",
    );
}

#[tokio::test]
async fn a_key_never_gets_more_than_its_owner_holds() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let bob = invited_member(&app, dir.path(), "bob@example.com", "bobs pass phrase", &[]).await;
    let bob_ctx = crate::tests::as_user(bob, "acme");
    assert!(matches!(
        app.identity.issue_api_key(
            &bob_ctx,
            acme(),
            ApiKeyRequest {
                name: "too much".into(),
                owner: None,
                expires_at: None,
                permissions: Some(["users:delete".parse().unwrap()].into()),
            },
        )
        .await,
        Err(AppError::RestrictionBeyondOwner(p)) if p == ["users:delete"]
    ));
}

#[tokio::test]
async fn a_key_for_another_member_carries_only_what_its_issuer_holds() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let owner = bootstrap(&app).await;
    let manager = invited_member(
        &app,
        dir.path(),
        "mia@example.com",
        "mias pass phrase",
        &["user"],
    )
    .await;
    let bob = invited_member(
        &app,
        dir.path(),
        "bob@example.com",
        "bobs pass phrase",
        &["admin"],
    )
    .await;
    let granted = app
        .memberships
        .grant_permissions(
            &system(),
            acme(),
            manager,
            [
                "users:update".parse().unwrap(),
                "users:read".parse().unwrap(),
            ]
            .into(),
            None,
        )
        .await
        .unwrap();
    app.core().wait_for(granted.position).await.unwrap();
    let key = |owner: UserId, permissions: Option<&[&str]>| ApiKeyRequest {
        name: "for someone else".into(),
        owner: Some(owner),
        expires_at: None,
        permissions: permissions.map(|p| p.iter().map(|p| p.parse().unwrap()).collect()),
    };
    let as_manager = crate::tests::as_user(manager, "acme");
    // Unrestricted, Bob's key would carry his global access, now and later.
    assert_err(
        app.identity
            .issue_api_key(&as_manager, acme(), key(bob, None))
            .await,
        "BeyondCallerPermissions([\"global access\"])",
    );
    // Restricted to what the manager holds, it may be issued; beyond that, not.
    app.identity
        .issue_api_key(&as_manager, acme(), key(bob, Some(&["users:read"])))
        .await
        .unwrap();
    assert_err(
        app.identity
            .issue_api_key(&as_manager, acme(), key(bob, Some(&["users:delete"])))
            .await,
        "BeyondCallerPermissions([\"users:delete\"])",
    );
    // Never a key of an owner by someone who is not one.
    assert_err(
        app.identity
            .issue_api_key(&as_manager, acme(), key(owner, Some(&["users:read"])))
            .await,
        "OwnerOnly",
    );
}

/// The newest email to `to`, waiting for it.
async fn newest_mail(dir: &Path, to: &str, after: usize) -> idstream_mailer::ParsedEml {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let messages = idstream_mailer::FileMailer::messages(&dir.join("mail")).unwrap();
        if messages.len() > after
            && let Some(mail) = messages
                .iter()
                .skip(after)
                .rev()
                .map(|p| idstream_mailer::read_eml(p).unwrap())
                .find(|m| m.to.contains(to))
        {
            return mail;
        }
        assert!(std::time::Instant::now() < deadline, "no new mail to {to}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mail_count(dir: &Path) -> usize {
    idstream_mailer::FileMailer::messages(&dir.join("mail"))
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_magic_link_signs_in_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let admin = bootstrap(&app).await;
    let before = mail_count(dir.path());
    app.identity
        .request_magic_link(&Caller::anonymous(), "nobody@example.com")
        .unwrap();
    app.identity
        .request_magic_link(&Caller::anonymous(), "ADMIN@example.com")
        .unwrap();
    let mail = newest_mail(dir.path(), "admin@example.com", before).await;
    let at = mail.text.find("idm_").unwrap();
    let token: String = mail.text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert!(mail.text.contains(&format!("user={admin}")));
    let signed_in = app
        .identity
        .sign_in_magic_link(&Caller::anonymous(), admin, &token, None, false)
        .await
        .unwrap();
    assert!(matches!(signed_in, SignIn::Complete(_)));
    assert_err(
        app.identity
            .sign_in_magic_link(&Caller::anonymous(), admin, &token, None, false)
            .await,
        "InvalidOrExpiredLink",
    );
    assert_err(
        app.identity
            .sign_in_magic_link(&Caller::anonymous(), admin, "idm_garbage", None, false)
            .await,
        "InvalidOrExpiredLink",
    );
    // Only the address with an account got mail.
    assert_eq!(mail_count(dir.path()), before + 1);
    // A used or unknown link is no password guess: however often it is replayed, the account
    // counts no failure and stays open.
    for _ in 0..10 {
        assert_err(
            app.identity
                .sign_in_magic_link(&Caller::anonymous(), admin, &token, None, false)
                .await,
            "InvalidOrExpiredLink",
        );
    }
    let creds = app.core().credentials_view(admin).unwrap().unwrap();
    assert_eq!((creds.failures, creds.lockouts), (0, 0));
    sign_in(&app, "admin@example.com", ADMIN_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_emailed_code_signs_in_once_and_wrong_codes_wear_it_out_without_locking_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let before = mail_count(dir.path());
    app.identity
        .request_email_code(&Caller::anonymous(), "admin@example.com")
        .unwrap();
    let mail = newest_mail(dir.path(), "admin@example.com", before).await;
    let code: String = mail
        .text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_err(
        app.identity
            .sign_in_email_code(
                &Caller::anonymous(),
                "admin@example.com",
                wrong,
                None,
                false,
            )
            .await,
        "InvalidCredentials",
    );
    // A wrong code is no password failure.
    let creds = app
        .core()
        .credentials_view(bootstrap_user(&app))
        .unwrap()
        .unwrap();
    assert_eq!(creds.failures, 0);
    assert!(matches!(
        app.identity
            .sign_in_email_code(
                &Caller::anonymous(),
                "admin@example.com",
                &code,
                None,
                false
            )
            .await
            .unwrap(),
        SignIn::Complete(_)
    ));
    // Used: refused, and still no failure counted.
    assert_err(
        app.identity
            .sign_in_email_code(
                &Caller::anonymous(),
                "admin@example.com",
                &code,
                None,
                false,
            )
            .await,
        "InvalidCredentials",
    );

    // Five wrong codes kill a live code: the right one is refused after them, and the account
    // is not locked (the password still signs in).
    let before = mail_count(dir.path());
    app.identity
        .request_email_code(&Caller::anonymous(), "admin@example.com")
        .unwrap();
    let code: String = newest_mail(dir.path(), "admin@example.com", before)
        .await
        .text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..idstream_domain::identity::credentials::MAX_TOKEN_MISSES {
        assert_err(
            app.identity
                .sign_in_email_code(
                    &Caller::anonymous(),
                    "admin@example.com",
                    wrong,
                    None,
                    false,
                )
                .await,
            "InvalidCredentials",
        );
    }
    assert_err(
        app.identity
            .sign_in_email_code(
                &Caller::anonymous(),
                "admin@example.com",
                &code,
                None,
                false,
            )
            .await,
        "InvalidCredentials",
    );
    let creds = app
        .core()
        .credentials_view(bootstrap_user(&app))
        .unwrap()
        .unwrap();
    assert_eq!((creds.failures, creds.lockouts), (0, 0));
    sign_in(&app, "admin@example.com", ADMIN_PASSWORD)
        .await
        .unwrap();
}

fn bootstrap_user(app: &App) -> UserId {
    app.core()
        .directory()
        .user_by_email("admin@example.com")
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn self_registration_with_verification() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let registration = |email: &str| super::Registration {
        email: email.into(),
        password: "a good long pass phrase".into(),
        first_name: "Reg".into(),
        last_name: "Istered".into(),
    };
    // A tenant that does not allow it answers as if it did not exist.
    assert_err(
        app.identity
            .register(
                &Caller::anonymous(),
                acme(),
                registration("reg@example.com"),
            )
            .await,
        "TenantNotFound",
    );
    let settings = idstream_domain::tenant::TenantSettings {
        self_registration: true,
        ..Default::default()
    };
    change_settings(&app, settings).await;

    let before = mail_count(dir.path());
    app.identity
        .register(
            &Caller::anonymous(),
            acme(),
            registration("reg@example.com"),
        )
        .await
        .unwrap();
    // A taken address gets the same answer and nothing changes for its owner.
    app.identity
        .register(
            &Caller::anonymous(),
            acme(),
            registration("admin@example.com"),
        )
        .await
        .unwrap();
    sign_in(&app, "admin@example.com", ADMIN_PASSWORD)
        .await
        .unwrap();

    assert_err(
        app.identity
            .sign_in(
                &Caller::anonymous(),
                "reg@example.com",
                "a good long pass phrase".into(),
                None,
                false,
            )
            .await,
        "EmailNotVerified",
    );
    let mail = newest_mail(dir.path(), "reg@example.com", before).await;
    let at = mail.text.find("ide_").unwrap();
    let token: String = mail.text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let user: UserId = app
        .core()
        .directory()
        .user_by_email("reg@example.com")
        .unwrap()
        .unwrap()
        .id;
    app.identity
        .verify_email(&Caller::anonymous(), user, &token)
        .await
        .unwrap();
    assert_err(
        app.identity
            .verify_email(&Caller::anonymous(), user, &token)
            .await,
        "InvalidOrExpiredLink",
    );
    let tokens = sign_in(&app, "reg@example.com", "a good long pass phrase")
        .await
        .unwrap();
    let me = app
        .identity
        .me(&Caller::user(
            app.identity
                .authenticate(&tokens.access_token)
                .await
                .unwrap()
                .clone(),
        ))
        .unwrap();
    assert_eq!(me.roles, [RoleName::user()].into());
    assert!(me.user.email_verified);
}

#[tokio::test]
async fn people_change_their_own_profile_and_only_admins_change_others() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let admin = bootstrap(&app).await;
    let bob = invited_member(&app, dir.path(), "bob@example.com", "bobs pass phrase", &[]).await;
    let as_user = |user: UserId| crate::tests::as_user(user, "acme");
    let profile = |first: &str| idstream_domain::user::Profile {
        first_name: first.into(),
        last_name: "Member".into(),
        image_url: Some("https://example.com/bob.png".into()),
        notifications: [("security_alerts".to_owned(), true)].into(),
        phone: None,
        language: None,
    };
    let changed = app
        .users
        .change_profile(&as_user(bob), bob, profile("Robert"))
        .await
        .unwrap();
    app.core().wait_for(changed.position).await.unwrap();
    let view = app.core().user_now(&bob).unwrap();
    assert_eq!(view.first_name, "Robert");
    assert_eq!(
        view.image_url.as_deref(),
        Some("https://example.com/bob.png")
    );
    assert_eq!(view.notifications.get("security_alerts"), Some(&true));
    assert_err(
        app.users
            .change_profile(&as_user(bob), admin, profile("Mallory"))
            .await,
        "Forbidden(Permission { text: \"users:update\" })",
    );
    app.users
        .change_profile(&as_user(admin), bob, profile("Bob"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_email_change_takes_effect_when_the_new_address_confirms_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let bob = invited_member(&app, dir.path(), "bob@example.com", "bobs pass phrase", &[]).await;
    let tokens = sign_in(&app, "bob@example.com", "bobs pass phrase")
        .await
        .unwrap();
    let caller = app
        .identity
        .authenticate(&tokens.access_token)
        .await
        .unwrap();
    assert_err(
        app.identity
            .request_email_change(
                &Caller::user(caller.clone()),
                "robert@example.com",
                Some("wrong".into()),
            )
            .await,
        "InvalidCredentials",
    );
    assert_err(
        app.identity
            .request_email_change(
                &Caller::user(caller.clone()),
                "admin@example.com",
                Some("bobs pass phrase".into()),
            )
            .await,
        "EmailTaken",
    );
    let before = mail_count(dir.path());
    app.identity
        .request_email_change(
            &Caller::user(caller.clone()),
            "Robert@Example.com",
            Some("bobs pass phrase".into()),
        )
        .await
        .unwrap();
    // The old address is told and keeps working until the new one confirms.
    let notice = newest_mail(dir.path(), "bob@example.com", before).await;
    assert!(notice.text.contains("robert@example.com"));
    let mail = newest_mail(dir.path(), "robert@example.com", before).await;
    let at = mail.text.find("ide_").unwrap();
    let token: String = mail.text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    sign_in(&app, "bob@example.com", "bobs pass phrase")
        .await
        .unwrap();
    assert_err(
        app.identity
            .confirm_email_change(&Caller::anonymous(), bob, "ide_wrong")
            .await,
        "InvalidOrExpiredLink",
    );
    let changed = app
        .identity
        .confirm_email_change(&Caller::anonymous(), bob, &token)
        .await
        .unwrap();
    app.core().wait_for(changed.position).await.unwrap();
    assert_err(
        app.identity
            .confirm_email_change(&Caller::anonymous(), bob, &token)
            .await,
        "InvalidOrExpiredLink",
    );
    sign_in(&app, "robert@example.com", "bobs pass phrase")
        .await
        .unwrap();
    assert_err(
        sign_in(&app, "bob@example.com", "bobs pass phrase").await,
        "InvalidCredentials",
    );
    assert_eq!(
        app.core().user_now(&bob).unwrap().email,
        "robert@example.com"
    );
    // The old address is free for someone else.
    let sent = app
        .identity
        .invite(
            &system(),
            acme(),
            InvitationRequest {
                delivery: Default::default(),
                email: "bob@example.com".into(),
                first_name: "Another".into(),
                last_name: "Bob".into(),
                roles: vec![],
            },
        )
        .await
        .unwrap();
    assert_ne!(sent.user, bob);
}

#[tokio::test]
async fn links_keys_sessions_and_invitations_expire_by_the_tenants_settings() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ShiftedClock::default());
    let app = app_with_clock(dir.path(), clock.clone()).await;
    let admin = bootstrap(&app).await;
    // Shorter lifetimes than the defaults, so that each refusal below is the tenant's setting.
    let settings = idstream_domain::tenant::TenantSettings {
        invitation_ttl_hours: 2,
        session_idle_minutes: 15,
        magic_link_ttl_minutes: 5,
        ..Default::default()
    };
    change_settings(&app, settings).await;

    let sent = app
        .identity
        .invite(
            &system(),
            acme(),
            InvitationRequest {
                delivery: Default::default(),
                email: "late@example.com".into(),
                first_name: String::new(),
                last_name: String::new(),
                roles: vec![],
            },
        )
        .await
        .unwrap();
    let invitation = mailed_token(dir.path(), "late@example.com", "idi_").await;
    let key = app
        .identity
        .issue_api_key(
            &system(),
            acme(),
            ApiKeyRequest {
                name: "an hour".into(),
                owner: Some(admin),
                expires_at: Some(crate::Clock::now(clock.as_ref()) + time::Duration::hours(1)),
                permissions: None,
            },
        )
        .await
        .unwrap();
    app.core().wait_for(key.position).await.unwrap();
    app.identity.authenticate(&key.key).await.unwrap();
    let tokens = sign_in(&app, "admin@example.com", ADMIN_PASSWORD)
        .await
        .unwrap();
    let before = mail_count(dir.path());
    app.identity
        .request_magic_link(&Caller::anonymous(), "admin@example.com")
        .unwrap();
    let magic = mailed_token(dir.path(), "admin@example.com", "idm_").await;
    assert_eq!(mail_count(dir.path()), before + 1);

    // Six minutes on: the magic link (five) is dead; the session (fifteen idle) lives on.
    clock.advance(time::Duration::minutes(6));
    assert_err(
        app.identity
            .sign_in_magic_link(&Caller::anonymous(), admin, &magic, None, false)
            .await,
        "InvalidOrExpiredLink",
    );
    let tokens = app
        .identity
        .refresh(&Caller::anonymous(), &tokens.refresh_token)
        .await
        .unwrap();
    // Sixteen idle minutes later the session has ended.
    clock.advance(time::Duration::minutes(16));
    assert!(
        app.identity
            .refresh(&Caller::anonymous(), &tokens.refresh_token)
            .await
            .is_err(),
        "an idle session was refreshed"
    );

    // Two hours on: the key has expired and the invitation is expired, listed as such.
    clock.advance(time::Duration::hours(2));
    assert_err(app.identity.authenticate(&key.key).await, "Unauthenticated");
    assert_err(
        app.identity
            .accept_invitation(
                &Caller::anonymous(),
                AcceptInvitation {
                    token: invitation,
                    password: Some("late but long pass phrase".into()),
                    remember: false,
                },
            )
            .await,
        "InvalidOrExpiredLink",
    );
    let listed = app
        .identity
        .invitations(&system(), &acme(), None, 10)
        .await
        .unwrap();
    let late = listed.iter().find(|i| i.id == sent.id).unwrap();
    assert_eq!(late.status, idstream_identity::InvitationStatus::Expired);
}

#[tokio::test]
async fn concurrent_invitations_of_one_user_to_one_tenant_leave_one_open() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let globex: TenantId = "globex".parse().unwrap();
    app.tenants
        .create(&system(), globex.clone(), "Globex".into())
        .await
        .unwrap();
    for round in 0..8 {
        // Someone who already exists (in another tenant), so both invitations are about them.
        let email = format!("round{round}@example.com");
        let user: UserId = app
            .users
            .create(
                &system(),
                globex.clone(),
                crate::NewUserRequest {
                    email: email.clone(),
                    first_name: "Rita".into(),
                    last_name: format!("Round {round}"),
                    roles: vec![],
                    invite: false,
                    phone: None,
                    attributes: None,
                },
            )
            .await
            .unwrap()
            .id
            .parse()
            .unwrap();
        let invite = || {
            let (app, email) = (app.clone(), email.clone());
            tokio::spawn(async move {
                app.identity
                    .invite(
                        &system(),
                        acme(),
                        InvitationRequest {
                            delivery: Default::default(),
                            email,
                            first_name: "Rita".into(),
                            last_name: String::new(),
                            roles: vec![],
                        },
                    )
                    .await
            })
        };
        let (a, b) = (invite(), invite());
        let results = [a.await.unwrap(), b.await.unwrap()];
        let sent: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(sent.len(), 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(AppError::InvitationPending))),
            "round {round}: {results:?}"
        );
        // Exactly one invitation is open, the one that was answered, and one email went out.
        app.core().catch_up().await.unwrap();
        let open = app
            .core()
            .identity()
            .open_invitations_of(&acme(), &user)
            .unwrap();
        assert_eq!(open.len(), 1, "round {round}: {open:?}");
        assert_eq!(open[0].id, sent[0].id, "round {round}");
        assert_eq!(mails_to(dir.path(), &email), 1, "round {round}");
    }
}

fn rita() -> InvitationRequest {
    InvitationRequest {
        delivery: Default::default(),
        email: "rita@example.com".into(),
        first_name: "Rita".into(),
        last_name: "Repeat".into(),
        roles: vec![],
    }
}

fn mails_to(dir: &Path, to: &str) -> usize {
    idstream_mailer::FileMailer::messages(&dir.join("mail"))
        .unwrap()
        .iter()
        .filter(|path| idstream_mailer::read_eml(path).unwrap().to.contains(to))
        .count()
}

#[tokio::test]
async fn someone_whose_invitation_expired_can_be_invited_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ShiftedClock::default());
    let app = app_with_clock(dir.path(), clock.clone()).await;
    bootstrap(&app).await;
    let first = app
        .identity
        .invite(&system(), acme(), rita())
        .await
        .unwrap();
    // While it is open, a second one is refused…
    assert_err(
        app.identity.invite(&system(), acme(), rita()).await,
        "InvitationPending",
    );
    // …once it has expired (an expiry records no event), a new one goes out.
    clock.advance(time::Duration::days(30));
    let second = app
        .identity
        .invite(&system(), acme(), rita())
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    assert!(second.email_sent);
    assert_eq!(mails_to(dir.path(), "rita@example.com"), 2);
    let open = app
        .core()
        .identity()
        .open_invitations_of(&acme(), &second.user)
        .unwrap();
    let live: Vec<_> = open
        .iter()
        .filter(|view| {
            view.status_at(app.core().now()) == idstream_identity::InvitationStatus::Sent
        })
        .map(|view| view.id)
        .collect();
    assert_eq!(live, vec![second.id]);
}

#[tokio::test]
async fn a_retried_invitation_gets_the_first_answer_and_no_second_email() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let keyed = with_key("invite-rita-1");
    let first = app.identity.invite(&keyed, acme(), rita()).await.unwrap();
    assert!(first.email_sent);
    // Retried one after the other, and twice at once: the same invitation, no second email.
    let again = app.identity.invite(&keyed, acme(), rita()).await.unwrap();
    let (a, b) = tokio::join!(
        app.identity.invite(&keyed, acme(), rita()),
        app.identity.invite(&keyed, acme(), rita())
    );
    for retried in [again, a.unwrap(), b.unwrap()] {
        assert_eq!(
            (
                retried.id,
                retried.user,
                retried.position,
                retried.email_sent
            ),
            (first.id, first.user, first.position, false)
        );
    }
    assert_eq!(mails_to(dir.path(), "rita@example.com"), 1);
    // A new request (another key) is refused by the one-open-invitation rule.
    let other = with_key("invite-rita-2");
    assert_err(
        app.identity.invite(&other, acme(), rita()).await,
        "InvitationPending",
    );
    // Once revoked, a retry of the first request says so, and a new request sends a new one.
    app.identity
        .revoke_invitation(&system(), acme(), first.id)
        .await
        .unwrap();
    assert_err(
        app.identity.invite(&keyed, acme(), rita()).await,
        "Invitation(Revoked)",
    );
    let third = with_key("invite-rita-3");
    let renewed = app.identity.invite(&third, acme(), rita()).await.unwrap();
    assert!(renewed.email_sent && renewed.id != first.id);
    assert_eq!(mails_to(dir.path(), "rita@example.com"), 2);
}

#[tokio::test]
async fn two_copies_of_one_invitation_request_in_flight_at_once_send_one_email() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    for round in 0..6 {
        let email = format!("copy{round}@example.com");
        let key = format!("invite-copy-{round}");
        let keyed = with_key(&key);
        let request = InvitationRequest {
            delivery: Default::default(),
            email: email.clone(),
            ..rita()
        };
        let (a, b) = tokio::join!(
            app.identity.invite(&keyed, acme(), request.clone()),
            app.identity.invite(&keyed, acme(), request.clone())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(
            (a.id, a.user, a.position),
            (b.id, b.user, b.position),
            "round {round}"
        );
        assert_eq!(
            [a.email_sent, b.email_sent]
                .iter()
                .filter(|sent| **sent)
                .count(),
            1,
            "round {round}"
        );
        assert_eq!(mails_to(dir.path(), &email), 1, "round {round}");
    }
}

#[tokio::test]
async fn an_invitation_the_read_models_do_not_reach_in_time_is_withdrawn_without_an_email() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let rita_request = rita();
    let created = app
        .users
        .create(
            &system(),
            acme(),
            crate::NewUserRequest {
                email: rita_request.email.clone(),
                first_name: rita_request.first_name.clone(),
                last_name: rita_request.last_name.clone(),
                roles: vec![],
                invite: true,
                phone: None,
                attributes: None,
            },
        )
        .await
        .unwrap();
    let user: UserId = created.id.parse().unwrap();
    // A replica whose read models hold everything so far and then stop: whatever it appends
    // next, they never reach.
    let end = app.core().log().last_position().await.unwrap();
    let services = IdentityServices::local(dir.path()).await.unwrap();
    let caches = crate::Caches::local(&services);
    let stopped = idstream_projection_runtime::ReadModels::start(
        &dir.path().join("stopped-readmodels"),
        app.core().log().clone(),
        crate::projections(caches.clone()),
    )
    .await
    .unwrap();
    stopped
        .wait_for(end, Duration::from_secs(30))
        .await
        .unwrap();
    stopped.clone().shutdown().await;
    let late = App::new(
        app.core().log().clone(),
        stopped,
        caches.clone(),
        Arc::new(SystemClock),
        Duration::from_millis(300),
        services,
        crate::replay::Replays::new(
            dir.path().join("replays-late"),
            app.core().log().clone(),
            caches.seal.clone(),
        ),
    );

    let keyed = with_key("invite-rita-late");
    let answer = late.identity.invite(&keyed, acme(), rita()).await;
    assert!(matches!(answer, Err(AppError::Stale { .. })), "{answer:?}");
    // The invitation was appended and withdrawn at once, and no email went out.
    app.core().catch_up().await.unwrap();
    let invitations = app
        .core()
        .identity()
        .open_invitations_of(&acme(), &user)
        .unwrap();
    assert!(
        invitations
            .iter()
            .all(|view| view.status_at(app.core().now())
                != idstream_identity::InvitationStatus::Sent),
        "{invitations:?}"
    );
    let events = app.core().log().read_after(end, 100).await.unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event.envelope.event_type.as_str())
        .collect();
    assert_eq!(kinds, ["InvitationSent", "InvitationRevoked"]);
    assert_eq!(mails_to(dir.path(), "rita@example.com"), 0);
    // A retry of that request cannot send again (the log has its key): it says the invitation
    // was revoked. A new request sends one.
    assert_err(
        app.identity.invite(&keyed, acme(), rita()).await,
        "Invitation(Revoked)",
    );
    let fresh = with_key("invite-rita-new");
    let sent = app.identity.invite(&fresh, acme(), rita()).await.unwrap();
    assert!(sent.email_sent);
    assert_eq!(mails_to(dir.path(), "rita@example.com"), 1);
}

#[tokio::test]
async fn a_stuck_audit_trail_stops_neither_commands_nor_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    let end = app.core().log().last_position().await.unwrap();
    app.audit.wait_for_token(end).await.unwrap();
    // Damage the audit trail's copy of acme's settings: it cannot fold the next change of them,
    // so it stops right before that event (loudly) and stays there.
    app.core()
        .read_models()
        .tree(idstream_audit::NAME)
        .insert(b"set/acme/", b"not json".as_slice())
        .unwrap();
    let changed = app
        .tenants
        .change_settings(
            &system(),
            acme(),
            idstream_domain::tenant::TenantSettings {
                session_idle_minutes: 45,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(changed.position > end, "the change is an event");

    // Commands, sign-in and queries of the other read models go on.
    app.operations
        .wait_for_token(changed.position)
        .await
        .unwrap();
    let tokens = sign_in(&app, "admin@example.com", ADMIN_PASSWORD)
        .await
        .unwrap();
    assert!(!tokens.access_token.is_empty());
    let invited = app
        .identity
        .invite(&system(), acme(), rita())
        .await
        .unwrap();
    assert!(invited.email_sent);
    app.operations
        .wait_for_token(invited.position)
        .await
        .unwrap();
    // Only the audit trail's own queries wait for it, and say it is behind.
    assert_eq!(
        app.core().read_models().position(idstream_audit::NAME),
        changed.position - 1
    );
    assert!(
        matches!(
            app.audit.wait_for_token(changed.position).await,
            Err(AppError::Stale { current, .. }) if current == changed.position - 1
        ),
        "the audit trail is stuck before the settings change"
    );
}

/// Signs in with `remember` (no second factor expected).
async fn sign_in_remembering(app: &App, email: &str, password: &str, remember: bool) -> Tokens {
    match app
        .identity
        .sign_in(&Caller::anonymous(), email, password.into(), None, remember)
        .await
        .unwrap()
    {
        SignIn::Complete(tokens) => tokens,
        other => panic!("expected tokens, got {other:?}"),
    }
}

/// The absolute lifetime a session was given.
fn lifetime_of(app: &App, tokens: &Tokens) -> time::Duration {
    let view = app
        .core()
        .identity()
        .session(&tokens.session)
        .unwrap()
        .expect("the session is in the read model");
    view.expires_at - view.started_at
}

#[tokio::test]
async fn a_remembered_session_is_refreshed_past_the_ordinary_lifetime_until_its_remembered_days() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ShiftedClock::default());
    let app = app_with_clock(dir.path(), clock.clone()).await;
    bootstrap(&app).await;
    // Ten hours, two days when remembered, two idle hours: refreshed every ninety minutes, a
    // session is never idle too long, so only its absolute end stops it.
    let settings = idstream_domain::tenant::TenantSettings {
        session_idle_minutes: 120,
        session_max_hours: 10,
        remember_days: 2,
        ..Default::default()
    };
    change_settings(&app, settings.clone()).await;
    let mut remembered = sign_in_remembering(&app, "admin@example.com", ADMIN_PASSWORD, true).await;
    let mut ordinary = sign_in_remembering(&app, "admin@example.com", ADMIN_PASSWORD, false).await;
    assert!(remembered.remembered && !ordinary.remembered);
    app.core().wait_for(ordinary.position).await.unwrap();
    assert_eq!(lifetime_of(&app, &remembered), time::Duration::days(2));
    assert_eq!(lifetime_of(&app, &ordinary), time::Duration::hours(10));

    // Every ninety minutes both are refreshed, while they live.
    let (mut ordinary_ended, mut remembered_ended) = (None, None);
    for step in 1..=40 {
        clock.advance(time::Duration::minutes(90));
        let minutes = step * 90;
        if ordinary_ended.is_none() {
            match app
                .identity
                .refresh(&Caller::anonymous(), &ordinary.refresh_token)
                .await
            {
                Ok(next) => ordinary = next,
                Err(AppError::InvalidToken) => ordinary_ended = Some(minutes),
                Err(other) => panic!("{other:?}"),
            }
        }
        match app
            .identity
            .refresh(&Caller::anonymous(), &remembered.refresh_token)
            .await
        {
            Ok(next) => {
                assert!(next.remembered, "a refresh keeps the session remembered");
                remembered = next;
                // Its access tokens work as any session's.
                app.identity
                    .authenticate(&remembered.access_token)
                    .await
                    .unwrap();
            }
            Err(AppError::InvalidToken) => {
                remembered_ended = Some(minutes);
                break;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    // The first refresh at or after ten hours (600 minutes), and two days (2880 minutes).
    assert_eq!(
        ordinary_ended,
        Some(630),
        "the ordinary session ends at ten hours"
    );
    assert_eq!(
        remembered_ended,
        Some(2880),
        "the remembered one at two days"
    );

    // Remembered sessions keep the idle timeout and the rotation rules.
    let idle = sign_in_remembering(&app, "admin@example.com", ADMIN_PASSWORD, true).await;
    clock.advance(time::Duration::minutes(121));
    assert_err(
        app.identity
            .refresh(&Caller::anonymous(), &idle.refresh_token)
            .await,
        "InvalidToken",
    );
    let rotated = sign_in_remembering(&app, "admin@example.com", ADMIN_PASSWORD, true).await;
    let next = app
        .identity
        .refresh(&Caller::anonymous(), &rotated.refresh_token)
        .await
        .unwrap();
    assert_err(
        app.identity
            .refresh(&Caller::anonymous(), &rotated.refresh_token)
            .await,
        "InvalidToken",
    );
    assert_err(
        app.identity
            .refresh(&Caller::anonymous(), &next.refresh_token)
            .await,
        "InvalidToken",
    );

    // A tenant that turns remembering off gives the ordinary lifetime, and says so.
    change_settings(
        &app,
        idstream_domain::tenant::TenantSettings {
            remember_days: 0,
            ..settings
        },
    )
    .await;
    let ignored = sign_in_remembering(&app, "admin@example.com", ADMIN_PASSWORD, true).await;
    assert!(!ignored.remembered);
    app.core().wait_for(ignored.position).await.unwrap();
    assert_eq!(lifetime_of(&app, &ignored), time::Duration::hours(10));
}

#[tokio::test]
async fn remember_is_carried_from_the_first_sign_in_step_to_the_second_which_may_change_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    bootstrap(&app).await;
    invited_member(&app, dir.path(), "bob@example.com", "bobs pass phrase", &[]).await;
    let tokens = sign_in(&app, "bob@example.com", "bobs pass phrase")
        .await
        .unwrap();
    let caller = app
        .identity
        .authenticate(&tokens.access_token)
        .await
        .unwrap();
    let setup = app
        .identity
        .start_totp(&Caller::user(caller.clone()))
        .await
        .unwrap();
    let secret = TotpSecret::from_base32(&setup.secret).unwrap();
    let (codes, _) = app
        .identity
        .confirm_totp(
            &Caller::user(caller),
            &secret.code_at(time::OffsetDateTime::now_utc()),
        )
        .await
        .unwrap();

    // (remember at step one, remember at step two) → remembered
    let cases = [
        (true, None, true),
        (false, None, false),
        (true, Some(false), false),
        (false, Some(true), true),
    ];
    for (i, (first, second, expected)) in cases.into_iter().enumerate() {
        let challenge = match app
            .identity
            .sign_in(
                &Caller::anonymous(),
                "bob@example.com",
                "bobs pass phrase".into(),
                None,
                first,
            )
            .await
            .unwrap()
        {
            SignIn::SecondFactorRequired { challenge, .. } => challenge,
            other => panic!("expected a second step, got {other:?}"),
        };
        let tokens = app
            .identity
            .sign_in_second_factor(
                &Caller::anonymous(),
                &challenge,
                None,
                Some(&codes[i]),
                second,
            )
            .await
            .unwrap();
        assert_eq!(tokens.remembered, expected, "case {i}");
        app.core().wait_for(tokens.position).await.unwrap();
        let lifetime = if expected {
            time::Duration::days(30)
        } else {
            time::Duration::hours(10)
        };
        assert_eq!(lifetime_of(&app, &tokens), lifetime, "case {i}");
    }

    // The emailed sign-ins take it too (the administrator has no second factor).
    let before = mail_count(dir.path());
    app.identity
        .request_email_code(&Caller::anonymous(), "admin@example.com")
        .unwrap();
    let mail = newest_mail(dir.path(), "admin@example.com", before).await;
    let code: String = mail
        .text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_owned();
    let signed_in = app
        .identity
        .sign_in_email_code(&Caller::anonymous(), "admin@example.com", &code, None, true)
        .await
        .unwrap();
    assert!(matches!(signed_in, SignIn::Complete(tokens) if tokens.remembered));
}
