//! Identity throughput, each as a ratio to a raw baseline measured in the same run:
//!
//! - **sign-in** (password, through the application: lookup, lock, argon2, session append on the
//!   embedded log, token signing) against the argon2 limit `cores ÷ one verification's time`.
//!   Target ≥ 0.9×.
//! - **access-token authentication** per core (signature, session and user checks in the read
//!   models) against bare EdDSA JWT verification.
//! - **refresh** per core (rotation appended to the log with its expected sequence, new tokens)
//!   against Keycloak's sizing guide (about 120 refreshes per second per vCPU). Target ≥ 10×.
//!
//! ```text
//! cargo bench --bench identity
//! IDENTITY_SECONDS=10 cargo bench --bench identity
//! ```
//!
//! Everything runs in this process on the embedded log in a temporary directory (fsync per
//! group commit, as in production on one machine).

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[path = "support/mod.rs"]
mod support;

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
        anyhow::Ok(())
    })
}
