//! SCIM provisioning (issue 19), in process over the embedded log (the app as the service runs
//! it: personal data sealed, read models following the log).
//!
//! - **Bulk:** a SCIM bulk request of 1,000 user creations (`POST /scim/v2/Bulk`, through
//!   `Scim::bulk`), against the API's own bulk of 1,000 creations (`People::bulk`, `POST
//!   /v1/tenants/{tenant}/users/bulk`) in the same run. Target: ≤ 2 s.
//! - **Listing:** `GET /scim/v2/Users?filter=…&count=100` (through `Scim::list_users`) at the
//!   tenant's size, p50 and p99 per filter shape, against the directory search of a page of the
//!   same size (`People::search`) in the same run. Target: p99 ≤ 20 ms at 1,000,000 users.
//!   Timed twice: as the fill (or the reopening) leaves the machine, then once the store's
//!   files are written out and dropped from the page cache, so that people never read since
//!   they were written are read from disk.
//!
//! The tenant is filled by SCIM bulk requests of 1,000 creations (so filling it measures sustained
//! provisioning too). Knobs: `IDSTREAM_BENCH_SCIM_USERS` (people in the tenant, default 100,000),
//! `IDSTREAM_BENCH_ITERS` (timed queries per shape, default 200), `IDSTREAM_BENCH_SCIM_STORE` (a
//! directory that keeps the filled store: the first run fills it and writes down the tenant's
//! administrator and size; later runs reopen it, skip the bulk and the fill, and time the listing
//! only — filling a million people takes about twenty minutes).

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use idstream_app::identity::Bootstrap;
use idstream_app::scim::{Endpoint, ListQuery};
use idstream_app::{Authenticated, BulkOperation, Caller, Credential, NewUserRequest, PeopleQuery};
use idstream_domain::{TenantId, UserId};
use support::LAST;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn person(n: usize) -> serde_json::Value {
    support::scim_person(n, true)
}

/// A filter shape: the filter for the person numbered `n`.
type Shape = Box<dyn Fn(usize) -> String>;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?;
    let users = knob("IDSTREAM_BENCH_SCIM_USERS", 100_000).max(2_000);
    let iters = knob("IDSTREAM_BENCH_ITERS", 200);
    let scratch = tempfile::tempdir()?;
    let kept = std::env::var_os("IDSTREAM_BENCH_SCIM_STORE").map(std::path::PathBuf::from);
    let dir = kept.clone().unwrap_or_else(|| scratch.path().to_owned());
    let state = dir.join("bench-state");
    // A kept store's administrator and the number of people the fill created.
    let filled: Option<(UserId, usize)> = match std::fs::read_to_string(&state) {
        Ok(text) => {
            let (admin, next) = text
                .trim()
                .split_once(' ')
                .ok_or_else(|| anyhow::anyhow!("{} is not `<admin> <people>`", state.display()))?;
            Some((admin.parse().map_err(anyhow::Error::msg)?, next.parse()?))
        }
        Err(_) => None,
    };
    runtime.block_on(async {
        std::fs::create_dir_all(&dir)?;
        let app = support::app(&dir, 1).await?;
        let acme: TenantId = "acme".parse().map_err(anyhow::Error::msg)?;
        let admin = match filled {
            Some((admin, _)) => admin,
            None => {
                app.identity
                    .bootstrap(&Caller::system("bootstrap"), Bootstrap {
                        tenant: acme.clone(),
                        tenant_name: "Acme".into(),
                        email: "admin@example.com".into(),
                        first_name: String::new(),
                        last_name: String::new(),
                        password: "Bench-Passphrase-2026".into(),
                    })
                    .await?
                    .0
            }
        };
        // The administrator's key, as the gate sees it once the bearer is verified.
        let key = Caller::user(Authenticated {
            user: admin,
            tenant: acme.clone(),
            via: Credential::ApiKey {
                id: ulid::Ulid::new(),
                restriction: None,
            },
            must_enrol_second_factor: false,
        });
        let endpoint = Endpoint {
            base: "https://id.example.com/scim/v2".into(),
        };
        match filled {
            Some(_) => println!("SCIM benchmark: {cores} cores, {iters} queries per shape"),
            None => println!(
                "SCIM benchmark: {cores} cores, {users} people, {iters} queries per shape"
            ),
        }

        let mut next = 0usize;
        if let Some((_, people)) = filled {
            next = people;
            println!("  reopened the store at {}: {next} people filled before", dir.display());
        } else {
            // --- bulk: SCIM against the API's bulk, alternately, three times each ---
            let (mut scim_runs, mut api_runs) = (Vec::new(), Vec::new());
            for round in 0..3 {
                let request = support::scim_bulk(next, 1_000, true);
                next += 1_000;
                let start = Instant::now();
                let answer = app.scim.bulk(&key, &endpoint, request).await?;
                let took = start.elapsed();
                let failed = answer.results.iter().filter(|r| r.outcome.is_err()).count();
                anyhow::ensure!(failed == 0, "{failed} SCIM creations failed");
                scim_runs.push(took);

                let role: idstream_domain::RoleName = "user".parse().map_err(anyhow::Error::msg)?;
                let operations = (0..1_000)
                    .map(|n| {
                        BulkOperation::Create(NewUserRequest {
                            email: format!("api{round}-{n}@example.com"),
                            first_name: "Api".into(),
                            last_name: format!("Person{n}"),
                            roles: vec![role.clone()],
                            invite: false,
                            phone: None,
                            attributes: None,
                        })
                    })
                    .collect();
                let start = Instant::now();
                app.people.bulk(&key, &acme, operations).await?;
                api_runs.push(start.elapsed());
            }
            scim_runs.sort();
            api_runs.sort();
            let (scim, api) = (scim_runs[1], api_runs[1]);
            println!(
                "bulk of 1,000 creations   SCIM {:>7.0} ms   API bulk {:>7.0} ms   ratio {:.2}×   (median of 3; target ≤ 2,000 ms)",
                ms(scim),
                ms(api),
                scim.as_secs_f64() / api.as_secs_f64()
            );

            // --- fill the tenant ---
            next = support::fill_by_scim(
                &app,
                &key,
                &endpoint,
                (next, users),
                true,
                Duration::MAX,
            )
            .await?;
            if kept.is_some() {
                std::fs::write(&state, format!("{admin} {next}"))?;
            }
        }
        let total = next + 3_000 + 1;

        // --- listing ---
        let mut rng_state = 0x2545_f491_4f6c_dd1du64;
        let mut pick = move || {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            (rng_state % next as u64) as usize
        };
        let shapes: Vec<(&str, Shape)> = vec![
            (
                "userName eq",
                Box::new(|n| format!("userName eq \"{}\"", person(n)["userName"].as_str().unwrap_or(""))),
            ),
            ("externalId eq", Box::new(|n| format!("externalId eq \"ext-{n}\""))),
            ("active eq true", Box::new(|_| "active eq true".to_owned())),
            (
                "familyName sw (~0.1%)",
                Box::new(|n| format!("name.familyName sw \"{}{}\"", LAST[(n / 20) % 20], n % 100)),
            ),
            (
                "userName co and active",
                Box::new(|n| {
                    let last = LAST[(n / 20) % 20].to_lowercase();
                    format!("userName co \"{last}{}\" and active eq true", n % 100)
                }),
            ),
        ];
        // Untimed: until the read models have followed the log to everyone filled (after a
        // fill they may still be folding it, after a reopen the index is being loaded).
        let everyone = ListQuery {
            filter: Some("active eq true".into()),
            count: Some("1".into()),
            ..ListQuery::default()
        };
        let waiting = Instant::now();
        loop {
            // While the index loads the listing answers "retry shortly".
            let listed = app.scim.list_users(&key, &endpoint, &everyone).await;
            if listed.as_ref().is_ok_and(|list| list.total_results >= total) {
                break;
            }
            anyhow::ensure!(
                waiting.elapsed() < Duration::from_secs(900),
                "the read models did not reach {total} members in fifteen minutes: {:?}",
                listed.map(|list| list.total_results)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // And every other read model (the access and audit ones too) at the end of the log, so
        // that no fold of the fill competes with the timed queries.
        let head = app.operations.log().last_position().await?;
        while app.operations.wait_for_token(head).await.is_err()
            || app.audit.wait_for_token(head).await.is_err()
        {
            anyhow::ensure!(
                waiting.elapsed() < Duration::from_secs(1_800),
                "the read models did not reach the end of the log in thirty minutes"
            );
        }
        println!(
            "  the read models reached everyone after {:.1} s",
            waiting.elapsed().as_secs_f64()
        );
        // Two passes over the same shapes (new people each time): as the fill (or the
        // reopening) left the machine, then once the store's files are dropped from the page
        // cache, so that people never read since are read from disk (but for what the service
        // holds itself: sled's cache, the personal keys). Dirty pages cannot be dropped, so the
        // store is written out first.
        let first = if filled.is_some() { "after reopening" } else { "right after the fill" };
        let run = Run {
            app: &app,
            key: &key,
            endpoint: &endpoint,
            acme: &acme,
            shapes: &shapes,
            iters,
            total,
        };
        run.pass(&mut pick, first).await?;
        let syncing = Instant::now();
        tokio::task::spawn_blocking(|| {
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() }
        })
        .await?;
        let synced = syncing.elapsed();
        let evicted = format!(
            "then {} MB of store written out ({:.1} s) and dropped from the page cache",
            evict(&dir),
            synced.as_secs_f64()
        );
        run.pass(&mut pick, &evicted).await?;
        Ok(())
    })
}

/// Dirty and cached memory (from /proc/meminfo) and the process's resident memory.
fn memory() -> String {
    // A `<name>   <n> kB` line of a /proc file, in megabytes.
    let megabytes = |file: &str, name: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .trim()
                    .strip_suffix(" kB")?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb / 1024)
    };
    format!(
        "{} MB dirty, {} MB being written, {} MB cached; the process {} MB resident",
        megabytes("/proc/meminfo", "Dirty:"),
        megabytes("/proc/meminfo", "Writeback:"),
        megabytes("/proc/meminfo", "Cached:"),
        megabytes("/proc/self/status", "VmRSS:"),
    )
}

/// Asks the kernel to drop every file under `dir` from the page cache (written back files only;
/// what the process holds in its own memory stays); the megabytes so advised.
fn evict(dir: &std::path::Path) -> u64 {
    use std::os::fd::AsRawFd;
    let mut bytes = 0u64;
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file()
                && let Ok(file) = std::fs::File::open(entry.path())
            {
                bytes += file.metadata().map_or(0, |m| m.len());
                // SAFETY: a valid open descriptor; the advice only concerns the page cache.
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
        }
    }
    bytes >> 20
}

/// What a pass of timed listings needs.
struct Run<'a> {
    app: &'a idstream_app::App,
    key: &'a Caller,
    endpoint: &'a Endpoint,
    acme: &'a TenantId,
    shapes: &'a [(&'a str, Shape)],
    iters: usize,
    total: usize,
}

impl Run<'_> {
    /// Times every shape, then the directory's own search, on people `pick` chooses.
    async fn pass(&self, pick: &mut impl FnMut() -> usize, label: &str) -> anyhow::Result<()> {
        let (app, key, iters) = (self.app, self.key, self.iters);
        println!(
            "listing with count=100 at {} members, {label} ({})",
            self.total,
            memory()
        );
        for (name, filter) in self.shapes {
            let mut times = Vec::with_capacity(iters);
            let mut found = 0usize;
            for _ in 0..iters {
                let query = ListQuery {
                    filter: Some(filter(pick())),
                    count: Some("100".into()),
                    ..ListQuery::default()
                };
                let start = Instant::now();
                let list = app.scim.list_users(key, self.endpoint, &query).await?;
                times.push(start.elapsed());
                found += list.total_results;
            }
            times.sort();
            println!(
                "  {name:<22} p50 {:>7.2} ms   p99 {:>7.2} ms   ({:.1} results on average; target p99 ≤ 20 ms)",
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99)),
                found as f64 / iters as f64
            );
        }
        // The directory's own search of a page of 100, as the API answers it.
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let query = PeopleQuery {
                text: Some(LAST[(pick() / 20) % 20].to_owned()),
                limit: 100,
                ..PeopleQuery::default()
            };
            let start = Instant::now();
            app.people.search(key, self.acme, &query).await?;
            times.push(start.elapsed());
        }
        times.sort();
        println!(
            "  {:<22} p50 {:>7.2} ms   p99 {:>7.2} ms   (the API's directory search, for scale)",
            "directory search",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
        );
        Ok(())
    }
}
