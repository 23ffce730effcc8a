//! Does the time a failed sign-in takes say anything about the account? Four kinds of failure
//! must cost the same, or an attacker learns from the clock which addresses have accounts and
//! which accounts are locked:
//!
//! - an **unknown address**;
//! - a **wrong password** of an existing account;
//! - an account **without a password** (created by an administrator, never set up);
//! - a **locked** account (five wrong passwords before), tried with a wrong password.
//!
//! Each kind is tried a few hundred times (`SIGNIN_TIMING_TRIES`, 300 by default) through the
//! application, the kinds interleaved in a random order so that drift on the machine spreads
//! over all of them. The bench prints each kind's median and spread, and compares every kind
//! with the wrong password by a Mann-Whitney U test (two-sided, normal approximation) and by the
//! probability that a try of one kind takes longer than a try of the other (0.5: no difference).
//! The verdict is "not separable" when no comparison of two kinds reaches p < 0.01 / 6 (the six
//! pairs share the 1 % level); it is a measurement, never a test assertion.
//!
//! ```text
//! cargo bench --bench signin_timing
//! SIGNIN_TIMING_TRIES=1000 cargo bench --bench signin_timing
//! ```
//!
//! Everything runs in this process on the embedded log in a temporary directory. Between tries
//! the bench pauses briefly, so that the failure a wrong password records after its answer has
//! been written before the next try starts (as it would between two requests of an attacker
//! who waits for each answer).

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use idstream_app::identity::Bootstrap;
use idstream_app::{App, AppError, Caller, NewUserRequest};
use idstream_domain::{TenantId, UserId};
use rand::seq::SliceRandom;

const PASSWORD: &str = "correct horse battery staple";
/// Accounts per kind, tried in turn, so that no account is tried twice in a row.
const ACCOUNTS: usize = 6;
/// Wrong passwords an account of the wrong-password kind takes before it is unlocked again
/// (the lock-out comes at five).
const WRONG_BEFORE_UNLOCK: u32 = 4;
/// The pause between tries (not measured): long enough for the failure a wrong password records
/// after its answer to be written and applied.
const PAUSE: Duration = Duration::from_millis(30);
/// The significance level of the whole verdict: six comparisons (every pair of kinds) share it
/// (Bonferroni), so that chance alone calls the timing separable in at most 1 run in 100.
const ALPHA: f64 = 0.01;
const COMPARISONS: f64 = 6.0;
/// How long the `n`-th lock-out of an account lasts (the default policy: a minute, doubling up
/// to fifteen), less a margin: a locked account is locked again (unlocked, then five wrong
/// passwords) before its lock-out ends.
fn lock_lasts(n: u32) -> Duration {
    let full = Duration::from_secs(60 * 2u64.pow(n.saturating_sub(1).min(4)))
        .min(Duration::from_secs(900));
    full - Duration::from_secs(10)
}

/// The pause after locking an account: the failure that locks it is recorded after its answer,
/// with the lock-out's email, and must be done before the next try.
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    WrongPassword,
    UnknownAddress,
    NoPassword,
    Locked,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::WrongPassword,
        Kind::UnknownAddress,
        Kind::NoPassword,
        Kind::Locked,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::WrongPassword => "wrong password",
            Kind::UnknownAddress => "unknown address",
            Kind::NoPassword => "no password",
            Kind::Locked => "locked account",
        }
    }
}

fn tries() -> usize {
    std::env::var("SIGNIN_TIMING_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn acme() -> TenantId {
    "acme".parse().expect("a valid tenant id")
}

/// A member of acme without a password: created active by an administrator, never set up.
async fn without_password(app: &App, email: &str) -> anyhow::Result<UserId> {
    let created = app
        .users
        .create(
            &Caller::system("bench"),
            acme(),
            NewUserRequest {
                email: email.to_owned(),
                first_name: String::new(),
                last_name: String::new(),
                roles: vec!["user".parse().map_err(anyhow::Error::msg)?],
                invite: false,
                phone: None,
                attributes: None,
            },
        )
        .await?;
    created.id.parse().map_err(anyhow::Error::msg)
}

/// One failed sign-in, timed; anything but `invalid_credentials` is a bench error.
async fn try_once(app: &App, email: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let answer = app
        .identity
        .sign_in(
            &Caller::anonymous(),
            email,
            "a wrong password".into(),
            None,
            false,
        )
        .await;
    let took = started.elapsed();
    match answer {
        Err(AppError::InvalidCredentials) => Ok(took),
        other => anyhow::bail!("a failed sign-in for {email} answered {other:?}"),
    }
}

/// Locks `email`'s account: five wrong passwords (not measured).
async fn lock(app: &App, email: &str) -> anyhow::Result<()> {
    for _ in 0..5 {
        try_once(app, email).await?;
        tokio::time::sleep(PAUSE).await;
    }
    tokio::time::sleep(SETTLE).await;
    Ok(())
}

/// Lifts a lock-out or failure count (not measured), and lets the read models and the machine
/// settle before the next try, so that the unlock's work is not in that try's time.
async fn unlock(app: &App, user: UserId) -> anyhow::Result<()> {
    match app.users.unlock(&Caller::system("bench"), user).await {
        Ok(outcome) => app.operations.wait_for_token(outcome.position).await?,
        // Nothing to lift.
        Err(AppError::Credentials(_)) => {}
        Err(error) => return Err(error.into()),
    }
    tokio::time::sleep(PAUSE).await;
    Ok(())
}

/// Median and the 10th and 90th percentiles, in milliseconds.
fn spread(sorted: &[f64]) -> (f64, f64, f64) {
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

/// The Mann-Whitney U test of `a` against `b`: the probability that a value of `a` exceeds one
/// of `b` (ties count half), and the two-sided p-value of the normal approximation.
fn mann_whitney(a: &[f64], b: &[f64]) -> (f64, f64) {
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|v| (*v, true))
        .chain(b.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Ranks, ties given the mean of their ranks.
    let mut ranks = vec![0.0; all.len()];
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for r in &mut ranks[i..=j] {
            *r = rank;
        }
        i = j + 1;
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let rank_sum: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|(v, _)| v.1)
        .map(|(_, r)| r)
        .sum();
    let u = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let sd = (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    let z = (u - mean) / sd;
    (u / (n1 * n2), 2.0 * (1.0 - normal_cdf(z.abs())))
}

/// The standard normal distribution function (Abramowitz and Stegun 7.1.26, error < 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * z / std::f64::consts::SQRT_2);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erf = 1.0 - poly * (-(z * z) / 2.0).exp();
    0.5 * (1.0 + erf)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let scratch = tempfile::tempdir()?;
    runtime.block_on(async {
        // One argon2 computation at a time: the tries run one after the other anyway, and a
        // pool of one keeps the machine's other core out of the measurement.
        let app = support::app(scratch.path(), 1).await?;
        app.identity
            .bootstrap(
                &Caller::system("bootstrap"),
                Bootstrap {
                    tenant: acme(),
                    tenant_name: "Acme".into(),
                    email: "admin@example.com".into(),
                    first_name: String::new(),
                    last_name: String::new(),
                    password: PASSWORD.into(),
                },
            )
            .await?;
        let tries = tries();
        println!("sign-in timing: {tries} failed sign-ins of each kind, one at a time");

        let mut emails: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
        let mut wrong_users = Vec::new();
        let mut locked_users = Vec::new();
        for i in 0..ACCOUNTS {
            let wrong = format!("wrong{i}@example.com");
            wrong_users.push(support::member(&app, scratch.path(), &wrong, PASSWORD).await?);
            emails.entry(Kind::WrongPassword).or_default().push(wrong);
            let locked = format!("locked{i}@example.com");
            locked_users.push(support::member(&app, scratch.path(), &locked, PASSWORD).await?);
            emails.entry(Kind::Locked).or_default().push(locked);
            let bare = format!("bare{i}@example.com");
            without_password(&app, &bare).await?;
            emails.entry(Kind::NoPassword).or_default().push(bare);
            emails
                .entry(Kind::UnknownAddress)
                .or_default()
                .push(format!("nobody{i}@example.com"));
        }
        // When each locked account's lock-out began, and how many it has had.
        let mut locked_at = Vec::new();
        for email in &emails[&Kind::Locked] {
            lock(&app, email).await?;
            locked_at.push((Instant::now(), 1));
        }

        // Warm up every path, then the schedule: every kind `tries` times, shuffled.
        for kind in Kind::ALL {
            try_once(&app, &emails[&kind][0]).await?;
            tokio::time::sleep(PAUSE).await;
        }
        for user in &wrong_users {
            unlock(&app, *user).await?;
        }
        let mut schedule: Vec<Kind> = Kind::ALL
            .iter()
            .flat_map(|kind| std::iter::repeat_n(*kind, tries))
            .collect();
        schedule.shuffle(&mut rand::rng());

        let mut turns: BTreeMap<Kind, usize> = BTreeMap::new();
        let mut wrong_since_unlock = [0u32; ACCOUNTS];
        let mut samples: BTreeMap<Kind, Vec<f64>> = BTreeMap::new();
        let started = Instant::now();
        for kind in schedule {
            let turn = turns.entry(kind).or_default();
            let account = *turn % ACCOUNTS;
            *turn += 1;
            match kind {
                Kind::WrongPassword if wrong_since_unlock[account] >= WRONG_BEFORE_UNLOCK => {
                    unlock(&app, wrong_users[account]).await?;
                    wrong_since_unlock[account] = 0;
                }
                Kind::Locked if locked_at[account].0.elapsed() > lock_lasts(locked_at[account].1) => {
                    unlock(&app, locked_users[account]).await?;
                    lock(&app, &emails[&Kind::Locked][account]).await?;
                    locked_at[account] = (Instant::now(), locked_at[account].1 + 1);
                }
                _ => {}
            }
            let took = try_once(&app, &emails[&kind][account]).await?;
            if kind == Kind::WrongPassword {
                wrong_since_unlock[account] += 1;
            }
            samples
                .entry(kind)
                .or_default()
                .push(took.as_secs_f64() * 1e3);
            tokio::time::sleep(PAUSE).await;
        }
        println!("  ran {} tries in {:.1?}", tries * 4, started.elapsed());

        for values in samples.values_mut() {
            values.sort_by(f64::total_cmp);
        }
        println!();
        println!(
            "| kind | median ms | p10 ms | p90 ms | P(slower than a wrong password) | Mann-Whitney p |"
        );
        println!("| --- | --- | --- | --- | --- | --- |");
        let baseline = samples[&Kind::WrongPassword].clone();
        let mut separable = Vec::new();
        for kind in Kind::ALL {
            let values = &samples[&kind];
            let (median, p10, p90) = spread(values);
            let comparison = if kind == Kind::WrongPassword {
                "(baseline) | ".to_owned()
            } else {
                let (probability, p) = mann_whitney(values, &baseline);
                if p < ALPHA / COMPARISONS {
                    separable.push(format!("{} against a wrong password", kind.name()));
                }
                format!("{probability:.3} | {p:.3}")
            };
            println!(
                "| {} | {median:.2} | {p10:.2} | {p90:.2} | {comparison} |",
                kind.name()
            );
        }
        // Every pair, not only against the baseline.
        for (i, a) in Kind::ALL.iter().enumerate() {
            for b in &Kind::ALL[i + 1..] {
                if *a == Kind::WrongPassword {
                    continue;
                }
                let (_, p) = mann_whitney(&samples[a], &samples[b]);
                if p < ALPHA / COMPARISONS {
                    separable.push(format!("{} against {}", a.name(), b.name()));
                }
            }
        }
        println!();
        if separable.is_empty() {
            println!(
                "verdict: not separable: no two kinds differ at p < {:.4} (1 % shared by six comparisons; {tries} tries each)",
                ALPHA / COMPARISONS
            );
        } else {
            separable.sort();
            separable.dedup();
            println!(
                "verdict: SEPARABLE at p < {:.4}: {} (the time of a failed sign-in tells the kind apart)",
                ALPHA / COMPARISONS,
                separable.join(", ")
            );
        }
        Ok::<(), anyhow::Error>(())
    })
}
