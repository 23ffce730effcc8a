//! What the in-process benchmarks share: the service's app over the embedded log in a directory,
//! members signed up through invitations (the token read from the file mailer's message), and
//! generated people created by SCIM bulk requests.
//! Included by each benchmark that needs it (`#[path = "support/mod.rs"] mod support;`).

use std::sync::Arc;
use std::time::Duration;

use idstream_app::identity::{AcceptInvitation, InvitationRequest};
use idstream_app::scim::{BulkOperationRequest, BulkRequest, Endpoint};
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

/// Given names of the generated people: person `n` is called `FIRST[n % 20]`.
pub const FIRST: [&str; 20] = [
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken",
    "Radia", "Dennis", "Shafi", "Leslie", "Hedy", "Tim", "Sophie", "Niklaus", "Karen", "Linus",
];
/// Family names of the generated people: person `n`'s is `LAST[(n / 20) % 20]` followed by `n`.
pub const LAST: [&str; 20] = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "McCarthy",
    "Hamilton",
    "Thompson",
    "Perlman",
    "Ritchie",
    "Goldwasser",
    "Lamport",
    "Lamarr",
    "Berners",
    "Wilson",
    "Wirth",
    "Sparck",
    "Torvalds",
];

/// Person `n` as a SCIM client creates them: `ada.lovelace{n}@example.com`, given and family
/// name, and `externalId` `ext-{n}` when `external_id`.
pub fn scim_person(n: usize, external_id: bool) -> serde_json::Value {
    let (first, last) = (FIRST[n % 20], LAST[(n / 20) % 20]);
    let mut person = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("{}.{}{n}@example.com", first.to_lowercase(), last.to_lowercase()),
        "name": {"givenName": first, "familyName": format!("{last}{n}")},
    });
    if external_id {
        person["externalId"] = format!("ext-{n}").into();
    }
    person
}

/// A SCIM bulk request creating people `from..from + count` (bulk ids `u{n}`).
pub fn scim_bulk(from: usize, count: usize, external_id: bool) -> BulkRequest {
    BulkRequest {
        fail_on_errors: None,
        operations: (from..from + count)
            .map(|n| BulkOperationRequest {
                method: "POST".into(),
                bulk_id: Some(format!("u{n}")),
                version: None,
                path: "/Users".into(),
                data: Some(scim_person(n, external_id)),
            })
            .collect(),
    }
}

/// Creates people `from..to` by SCIM bulk requests of 1,000 as `key`, printing progress every
/// 50,000, until done or `limit` has passed; answers the number after the last person created.
pub async fn fill_by_scim(
    app: &App,
    key: &Caller,
    endpoint: &Endpoint,
    (from, to): (usize, usize),
    external_id: bool,
    limit: Duration,
) -> anyhow::Result<usize> {
    let start = std::time::Instant::now();
    let mut next = from;
    while next < to && start.elapsed() < limit {
        let count = (to - next).min(1_000);
        let answer = app
            .scim
            .bulk(key, endpoint, scim_bulk(next, count, external_id))
            .await?;
        let failed = answer.results.iter().filter(|r| r.outcome.is_err()).count();
        anyhow::ensure!(failed == 0, "{failed} SCIM creations failed");
        next += count;
        if next.is_multiple_of(50_000) {
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "  {next} people in {seconds:.0} s ({:.0}/s)",
                (next - from) as f64 / seconds
            );
        }
    }
    Ok(next)
}
