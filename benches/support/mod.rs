//! What the in-process benchmarks share: the service's app over the embedded log in a directory,
//! and members signed up through invitations (the token read from the file mailer's message).
//! Included by each benchmark that needs it (`#[path = "support/mod.rs"] mod support;`).

use std::sync::Arc;
use std::time::Duration;

use idstream_app::identity::{AcceptInvitation, InvitationRequest};
use idstream_app::{App, Caller, IdentityServices, SystemClock};
use idstream_auth::PasswordHasherPool;
use idstream_domain::UserId;
use idstream_eventlog::SharedLog;
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_projection_runtime::ReadModels;

/// The app over a new embedded log, read models and key store in `dir`, hashing `hashers`
/// passwords at once, with no per-source budget in the way (every request comes from here).
pub async fn app(dir: &std::path::Path, hashers: usize) -> anyhow::Result<App> {
    let mut services = IdentityServices::local(dir)
        .await
        .map_err(anyhow::Error::msg)?;
    // As the service does: personal data encrypted in the log and sealed in the read models,
    // with one set of personal-data keys.
    let raw: SharedLog = EmbeddedLog::open(&dir.join("log"), EmbeddedOptions::default()).await?;
    let keys = Arc::new(idstream_keys::PersonalKeys::new(services.keys.store()));
    let log = idstream_keys::PersonalDataLog::wrap(raw, keys.clone());
    let caches = idstream_app::Caches::new(idstream_keys::ReadModelSeal::shared(
        keys,
        services.keys.vault(),
    ));
    let read_models = ReadModels::start(
        &dir.join("readmodels"),
        idstream_eventlog::FanOutLog::wrap(log.clone()),
        idstream_app::projections(caches.clone()),
    )
    .await?;
    services.hasher = PasswordHasherPool::new(hashers);
    services.config.attempts_per_source_per_minute = u32::MAX;
    let replays =
        idstream_app::replay::Replays::new(dir.join("replays"), log.clone(), caches.seal.clone());
    Ok(App::new(
        log,
        read_models,
        caches,
        Arc::new(SystemClock),
        Duration::from_secs(30),
        services,
        replays,
    ))
}

/// A member of tenant `acme` with `password`: invited by the operator and accepted.
pub async fn member(
    app: &App,
    dir: &std::path::Path,
    email: &str,
    password: &str,
) -> anyhow::Result<UserId> {
    let sent = app
        .identity
        .invite(
            &Caller::system("bench"),
            "acme".parse().map_err(anyhow::Error::msg)?,
            InvitationRequest {
                delivery: Default::default(),
                email: email.to_owned(),
                first_name: String::new(),
                last_name: String::new(),
                roles: vec![],
            },
        )
        .await?;
    let mut token = None;
    for path in idstream_mailer::FileMailer::messages(&dir.join("mail"))? {
        let mail = idstream_mailer::read_eml(&path)?;
        if mail.to.contains(email)
            && let Some(at) = mail.text.find("idi_")
        {
            token = Some(
                mail.text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>(),
            );
        }
    }
    let token = token.ok_or_else(|| anyhow::anyhow!("no invitation mail for {email}"))?;
    app.identity
        .accept_invitation(
            &Caller::anonymous(),
            AcceptInvitation {
                token,
                password: Some(password.to_owned()),
                remember: false,
            },
        )
        .await?;
    Ok(sent.user)
}
