//! Identity throughput, each as a ratio to a raw baseline measured in the same run:
//!
//! - **sign-in** (password, through the application: lookup, lock, argon2, session append on the
//!   embedded log, token signing) against the argon2 limit `cores ÷ one verification's time`.
//!   Target ≥ 0.9×.
//! - **access-token authentication** per core (signature, session and user checks in the read
//!   models) against bare EdDSA JWT verification.
//! - **refresh** per core (rotation appended to the log with its expected sequence, new tokens)
//!   against Keycloak's sizing guide (about 120 refreshes per second per vCPU). Target ≥ 10×.
//! - **the OpenID Connect token endpoint** per core: code exchange (client authentication, the
//!   code's redemption appended with its session's expected sequence, PKCE, access, refresh and ID
//!   tokens) and refresh, against Keycloak's 120 refreshes per second per vCPU (target ≥ 10×) and
//!   ZITADEL's published 1,806 JWT grants per second, and as a ratio to raw EdDSA sign + verify
//!   measured in the same run.
//!
//! ```text
//! cargo bench --bench identity
//! IDENTITY_SECONDS=10 cargo bench --bench identity
//! ```
//!
//! Everything runs in this process on the embedded log in a temporary directory (fsync per
//! group commit, as in production on one machine).

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use idstream_app::Caller;
use idstream_app::identity::{Bootstrap, SignIn};
use idstream_auth::{AccessSubject, Issuer, KeyRing, PasswordHasherPool};

const PASSWORD: &str = "correct horse battery staple";

fn seconds() -> Duration {
    Duration::from_secs(
        std::env::var("IDENTITY_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5),
    )
}

/// Runs `op` from `workers` tasks for `duration`; operations per second.
async fn rate<F, Fut>(workers: usize, duration: Duration, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < duration {
                    op(w).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?;
    let duration = seconds();
    let scratch = tempfile::tempdir()?;
    runtime.block_on(async {
        let app = support::app(scratch.path(), cores).await?;
        app.identity.bootstrap(&Caller::system("bootstrap"), Bootstrap {
            tenant: "acme".parse().map_err(anyhow::Error::msg)?,
            tenant_name: "Acme".into(),
            email: "admin@example.com".into(),
            first_name: String::new(),
            last_name: String::new(),
            password: PASSWORD.into(),
        })
        .await?;
        println!("identity benchmark: {cores} cores, {} s per measurement", duration.as_secs());

        // --- the argon2 limit, measured here ---
        let pool = PasswordHasherPool::new(1);
        let phc = pool.hash(PASSWORD.into()).await?;
        let n = 10;
        let start = Instant::now();
        for _ in 0..n {
            pool.verify(PASSWORD.into(), phc.clone()).await?;
        }
        let one = start.elapsed().as_secs_f64() / f64::from(n);
        let limit = cores as f64 / one;

        // --- sign-in through the application, one account per worker (attempts on one account
        // take turns by design) ---
        let workers = cores * 4;
        let mut emails = Vec::new();
        for i in 0..workers {
            let email = format!("member{i}@example.com");
            support::member(&app, scratch.path(), &email, PASSWORD).await?;
            emails.push(email);
        }
        let signin = {
            let app = app.clone();
            let emails = Arc::new(emails);
            rate(workers, duration, move |w| {
                let app = app.clone();
                let emails = emails.clone();
                async move {
                    let r = app
                        .identity.sign_in(&Caller::anonymous(), &emails[w], PASSWORD.into(), None, false)
                        .await;
                    assert!(matches!(r, Ok(SignIn::Complete(_))), "{r:?}");
                }
            })
            .await
        };
        println!(
            "sign-in                 {signin:>9.1}/s   argon2 limit {limit:>7.1}/s ({:.1} ms per check)   ratio {:.2}× (target ≥ 0.9×)",
            one * 1000.0,
            signin / limit
        );

        // --- access-token authentication, one core ---
        let tokens = match app
            .identity.sign_in(&Caller::anonymous(), "admin@example.com", PASSWORD.into(), None, false)
            .await?
        {
            SignIn::Complete(t) => t,
            other => anyhow::bail!("unexpected {other:?}"),
        };
        let access = tokens.access_token.clone();
        let auth = {
            let app = app.clone();
            let access = access.clone();
            rate(1, duration, move |_| {
                let app = app.clone();
                let access = access.clone();
                async move {
                    app.identity.authenticate(&access).await.expect("valid token");
                }
            })
            .await
        };
        let ring = KeyRing::generate(time::OffsetDateTime::now_utc(), time::Duration::minutes(10));
        let issuer = Issuer::new("bench", "idstream", time::Duration::minutes(5));
        let raw_token = issuer.sign(
            &ring,
            &AccessSubject {
                sub: "u".into(),
                tid: "t".into(),
                sid: "s".into(),
                amr: vec!["pwd".into()],
                ..AccessSubject::default()
            },
            time::OffsetDateTime::now_utc(),
        );
        let start = Instant::now();
        let mut raw = 0u64;
        while start.elapsed() < duration {
            issuer
                .verify(&ring, &raw_token, time::OffsetDateTime::now_utc())
                .expect("valid token");
            raw += 1;
        }
        let raw = raw as f64 / start.elapsed().as_secs_f64();
        println!(
            "token authentication    {auth:>9.0}/s   bare EdDSA JWT verify {raw:>9.0}/s (one core)   ratio {:.2}×",
            auth / raw
        );

        // --- refresh, one worker (each refresh needs the previous one's token) ---
        let mut refresh_token = tokens.refresh_token;
        let start = Instant::now();
        let mut refreshes = 0u64;
        while start.elapsed() < duration {
            let next = app.identity.refresh(&Caller::anonymous(), &refresh_token).await?;
            refresh_token = next.refresh_token;
            refreshes += 1;
        }
        let sequential = refreshes as f64 / start.elapsed().as_secs_f64();
        // Many sessions refreshing at once (group commit shares the fsyncs).
        let mut sessions = Vec::new();
        for _ in 0..cores * 16 {
            match app
                .identity.sign_in(&Caller::anonymous(), "admin@example.com", PASSWORD.into(), None, false)
                .await?
            {
                SignIn::Complete(t) => sessions.push(t.refresh_token),
                other => anyhow::bail!("unexpected {other:?}"),
            }
        }
        let slots: Arc<Vec<tokio::sync::Mutex<String>>> =
            Arc::new(sessions.into_iter().map(tokio::sync::Mutex::new).collect());
        let concurrent = {
            let app = app.clone();
            let slots = slots.clone();
            rate(slots.len(), duration, move |w| {
                let app = app.clone();
                let slots = slots.clone();
                async move {
                    let mut token = slots[w].lock().await;
                    let next = app.identity.refresh(&Caller::anonymous(), &token).await.expect("refresh");
                    *token = next.refresh_token;
                }
            })
            .await
        };
        let per_core = concurrent / cores as f64;
        println!(
            "refresh (one session)   {sequential:>9.0}/s",
        );
        println!(
            "refresh ({} sessions)   {concurrent:>9.0}/s = {per_core:.0}/s per core   Keycloak plans 120/s per vCPU: {:.1}× (target ≥ 10×)",
            slots.len(),
            per_core / 120.0
        );

        oidc_token_endpoint(&app, &tokens.access_token, cores, duration).await?;
        anyhow::Ok(())
    })
}

/// The OpenID Connect token endpoint, through the application (the HTTP layer adds form parsing
/// and JSON, measured by the HTTP benchmarks for every route alike).
async fn oidc_token_endpoint(
    app: &idstream_app::App,
    browser_access_token: &str,
    cores: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    use base64::Engine;
    use idstream_app::oidc::{
        Authorization, AuthorizeRequest, ClientAuth, ClientRequest, TokenRequest,
    };
    use idstream_domain::identity::client::{ClientKind, ClientSettings, GrantType};
    use sha2::Digest;

    let tenant: idstream_domain::TenantId = "acme".parse().map_err(anyhow::Error::msg)?;
    let redirect = "https://app.example/cb".to_owned();
    let registered = app
        .oidc
        .register_client(
            &Caller::system("bench"),
            tenant.clone(),
            ClientRequest {
                kind: ClientKind::Confidential,
                settings: ClientSettings {
                    name: "Bench app".into(),
                    redirect_uris: vec![redirect.clone()],
                    post_logout_redirect_uris: vec![],
                    grant_types: [GrantType::AuthorizationCode, GrantType::RefreshToken].into(),
                    scopes: ["openid".to_owned(), "email".to_owned()].into(),
                    first_party: true,
                    backchannel_logout_uri: None,
                },
            },
        )
        .await?;
    let auth = ClientAuth {
        id: Some(registered.client.id.to_string()),
        secret: registered.secret.clone(),
    };
    let browser = Caller::user(app.identity.authenticate(browser_access_token).await?);
    let verifier = "v".repeat(64);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let request = AuthorizeRequest {
        response_type: Some("code".into()),
        client_id: auth.id.clone(),
        redirect_uri: Some(redirect.clone()),
        scope: Some("openid email".into()),
        nonce: Some("n".into()),
        code_challenge: Some(challenge),
        code_challenge_method: Some("S256".into()),
        ..AuthorizeRequest::default()
    };

    // Codes first (each an append of its own), then their exchange, timed alone. Codes live a
    // minute: the issuing phase stays well inside it.
    let issuing = duration.min(Duration::from_secs(20));
    let codes: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let issued = {
        let app = app.clone();
        let codes = codes.clone();
        let browser = browser.clone();
        let request = request.clone();
        let tenant = tenant.clone();
        rate(cores * 8, issuing, move |_| {
            let (app, codes, browser, request, tenant) = (
                app.clone(),
                codes.clone(),
                browser.clone(),
                request.clone(),
                tenant.clone(),
            );
            async move {
                let Ok(Authorization::Redirect(to)) =
                    app.oidc.authorize(&browser, &tenant, &request, None).await
                else {
                    panic!("no code");
                };
                let url = url::Url::parse(&to).expect("a redirect");
                let code = url
                    .query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
                    .expect("a code");
                codes.lock().unwrap().push(code);
            }
        })
        .await
    };
    let codes: Vec<String> = std::mem::take(&mut *codes.lock().unwrap());
    let total = codes.len();
    let queue = Arc::new(std::sync::Mutex::new(codes));
    let refresh_tokens: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let start = Instant::now();
    let workers: Vec<_> = (0..cores * 8)
        .map(|_| {
            let (app, queue, auth, tenant, refresh_tokens) = (
                app.clone(),
                queue.clone(),
                auth.clone(),
                tenant.clone(),
                refresh_tokens.clone(),
            );
            let (redirect, verifier) = (redirect.clone(), verifier.clone());
            tokio::spawn(async move {
                loop {
                    let Some(code) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let tokens = app
                        .oidc
                        .token(
                            &Caller::anonymous(),
                            &tenant,
                            &auth,
                            &TokenRequest {
                                grant_type: Some("authorization_code".into()),
                                code: Some(code),
                                redirect_uri: Some(redirect.clone()),
                                code_verifier: Some(verifier.clone()),
                                ..TokenRequest::default()
                            },
                        )
                        .await
                        .expect("an exchange");
                    assert!(tokens.id_token.is_some());
                    refresh_tokens
                        .lock()
                        .unwrap()
                        .push(tokens.refresh_token.expect("a refresh token"));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let exchanges = total as f64 / start.elapsed().as_secs_f64();

    // Refresh through the token endpoint, each session by one worker at a time.
    let slots: Vec<String> = refresh_tokens
        .lock()
        .unwrap()
        .drain(..)
        .take(cores * 16)
        .collect();
    let slots: Arc<Vec<tokio::sync::Mutex<String>>> =
        Arc::new(slots.into_iter().map(tokio::sync::Mutex::new).collect());
    let refreshes = {
        let (app, auth, tenant) = (app.clone(), auth.clone(), tenant.clone());
        rate(slots.len(), duration, move |w| {
            let (app, auth, tenant, slots) =
                (app.clone(), auth.clone(), tenant.clone(), slots.clone());
            async move {
                let mut token = slots[w].lock().await;
                let next = app
                    .oidc
                    .token(
                        &Caller::anonymous(),
                        &tenant,
                        &auth,
                        &TokenRequest {
                            grant_type: Some("refresh_token".into()),
                            refresh_token: Some(token.clone()),
                            ..TokenRequest::default()
                        },
                    )
                    .await
                    .expect("a refresh");
                *token = next.refresh_token.expect("a new refresh token");
            }
        })
        .await
    };

    // The raw work of a grant: one EdDSA signature and one verification, on one core.
    let ring = KeyRing::generate(time::OffsetDateTime::now_utc(), time::Duration::minutes(10));
    let issuer = Issuer::new("bench", "idstream", time::Duration::minutes(5));
    let subject = AccessSubject {
        sub: "u".into(),
        tid: "t".into(),
        sid: "s".into(),
        ..AccessSubject::default()
    };
    let start = Instant::now();
    let mut raw = 0u64;
    while start.elapsed() < duration {
        let token = issuer.sign(&ring, &subject, time::OffsetDateTime::now_utc());
        issuer
            .verify(&ring, &token, time::OffsetDateTime::now_utc())
            .expect("valid token");
        raw += 1;
    }
    let raw = raw as f64 / start.elapsed().as_secs_f64();
    let per_core = |rate: f64| rate / cores as f64;
    println!("oidc codes issued       {issued:>9.0}/s ({total} codes, {cores} cores)");
    println!(
        "oidc code exchange      {exchanges:>9.0}/s = {:.0}/s per core   Keycloak 120/s per vCPU: {:.1}×   ZITADEL 1,806 JWT grants/s: {:.2}×   raw EdDSA sign+verify {raw:.0}/s per core: {:.3}×",
        per_core(exchanges),
        per_core(exchanges) / 120.0,
        exchanges / 1806.0,
        per_core(exchanges) / raw
    );
    println!(
        "oidc refresh            {refreshes:>9.0}/s = {:.0}/s per core   Keycloak 120/s per vCPU: {:.1}× (target ≥ 10×)   raw EdDSA sign+verify: {:.3}×",
        per_core(refreshes),
        per_core(refreshes) / 120.0,
        per_core(refreshes) / raw
    );
    Ok(())
}
