//! Tamper evidence: the rate of hash-chain verification against raw SHA-256 over the same bytes,
//! measured side by side in one run.
//!
//! ```text
//! cargo bench --bench chain
//! IDSTREAM_BENCH_CHAIN_EVENTS=1000000 cargo bench --bench chain
//! ```
//!
//! It fills an embedded log (temporary directory) with realistic events (user registrations,
//! role assignments, tenant renames; about 400 bytes of envelope JSON each), with a signed
//! checkpoint after every 1000 of them (the service's default) written by the real checkpoint
//! writer, then reads the stored bytes of every event into memory and times, in alternating
//! rounds (wall-clock time, best of the rounds):
//!
//! - **chain verification, one thread**: [`Verifier::new`] over every event: the link, decoding
//!   and checking every checkpoint (signature, short links, link), all on the calling thread;
//! - **raw SHA-256 (baseline)**: one SHA-256 over the same bytes as one stream, on one thread,
//!   the fastest hashing of them there is;
//! - **chain verification, signatures on a second thread**: [`Verifier::with_signature_thread`],
//!   what `verify_log` (`idstream audit verify`) uses;
//! - (info) one SHA-256 per event, and the chain's links alone (no checkpoint checks), which
//!   split the difference into hashing and checking.
//!
//! The ratio is chain bytes/s ÷ raw bytes/s; the target is ≥ 0.5×. It is given two ways: the
//! best chain round against the best raw round, and the median of the rounds' own ratios (each
//! round's chain time against the raw time measured right after it). On a busy machine the best
//! rounds of the two can fall into different spells of load, one quiet and one not; a round's
//! own ratio compares times a tenth of a second apart, so the median is the steadier figure.
//! Also (info): `verify_log` end to end over the embedded log (reading included), and the
//! checkpoint writer's rate.
//! Knobs: `IDSTREAM_BENCH_CHAIN_EVENTS` (200000), `IDSTREAM_BENCH_CHAIN_ROUNDS` (10),
//! `IDSTREAM_BENCH_CHAIN_EVERY` (1000 events per checkpoint).

use std::sync::Arc;
use std::time::{Duration, Instant};

use idstream_chain::{
    Checkpoint, CheckpointPolicy, Checkpointer, TrustedKeys, Verifier, verify_log,
};
use idstream_domain::events::{RoleAssigned, TenantRenamed, UserRegistered};
use idstream_domain::{Actor, AggregateType, DomainEvent, EventEnvelope, Metadata, StreamKey};
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_eventlog::{Expected, RawEvent, SharedLog};
use idstream_keys::{FileKeyStore, Keys};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use ulid::Ulid;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 100 events of one aggregate: the batch appended at once.
fn batch(i: u64) -> Vec<EventEnvelope> {
    let meta = Metadata {
        actor: Actor::system("bench"),
        occurred_at: OffsetDateTime::now_utc(),
        correlation_id: Ulid::new().to_string(),
        causation_id: Some(Ulid::new().to_string()),
    };
    let tenant: idstream_domain::TenantId = "acme".parse().unwrap();
    match i % 3 {
        0 => {
            let user = idstream_domain::UserId::new(Ulid::new());
            let stream = StreamKey::new(None, AggregateType::User, user.to_string());
            (0..100)
                .map(|n| {
                    DomainEvent::UserRegistered(UserRegistered {
                        email: format!("user-{i}-{n}@example.com"),
                        first_name: "Ada".into(),
                        last_name: "Lovelace".into(),
                        tenant: tenant.clone(),
                    })
                    .into_envelope(Ulid::new(), &stream, &meta)
                })
                .collect()
        }
        1 => {
            let user = idstream_domain::UserId::new(Ulid::new());
            let stream = StreamKey::new(
                Some(tenant.clone()),
                AggregateType::Membership,
                user.to_string(),
            );
            (0..100)
                .map(|n| {
                    DomainEvent::RoleAssigned(RoleAssigned {
                        user,
                        role: format!("role-{n}").parse().unwrap(),
                        expires_at: None,
                    })
                    .into_envelope(Ulid::new(), &stream, &meta)
                })
                .collect()
        }
        _ => {
            let stream = StreamKey::new(Some(tenant.clone()), AggregateType::Tenant, "acme");
            (0..100)
                .map(|n| {
                    DomainEvent::TenantRenamed(TenantRenamed {
                        name: format!("Acme Incorporated, renamed for the {n}th time in batch {i}"),
                    })
                    .into_envelope(Ulid::new(), &stream, &meta)
                })
                .collect()
        }
    }
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let events = knob("IDSTREAM_BENCH_CHAIN_EVENTS", 200_000).max(1000) / 100 * 100;
    let rounds = knob("IDSTREAM_BENCH_CHAIN_ROUNDS", 10).max(1);
    let every = knob("IDSTREAM_BENCH_CHAIN_EVERY", 1000).max(100) / 100 * 100;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scratch = tempfile::tempdir()?;
    runtime.block_on(async {
        let log: SharedLog =
            EmbeddedLog::open(&scratch.path().join("log"), EmbeddedOptions::default()).await?;
        let store = Arc::new(FileKeyStore::open(scratch.path().join("keys"))?);
        let keys = Arc::new(
            Keys::load_or_create(store, OffsetDateTime::now_utc(), time::Duration::minutes(5))
                .await?,
        );

        // --- the log, with a checkpoint after every `every` events ---
        let policy = CheckpointPolicy {
            every_events: every,
            every: Duration::from_secs(3600),
            ..CheckpointPolicy::default()
        };
        let mut writer = Checkpointer::new(log.clone(), keys.clone(), policy);
        let mut writing = Duration::ZERO;
        for i in 0..events / 100 {
            log.append(batch(i), Expected::Any, None).await?;
            if (i + 1) % (every / 100) == 0 {
                let start = Instant::now();
                writer.tick().await?;
                writing += start.elapsed();
            }
        }
        let start = Instant::now();
        writer.checkpoint_now().await?;
        writing += start.elapsed();

        let mut raw: Vec<RawEvent> = Vec::new();
        loop {
            let after = raw.last().map_or(0, |e| e.position);
            let page = log.read_raw_after(after, 4096).await?;
            if page.is_empty() {
                break;
            }
            raw.extend(page);
        }
        let bytes: u64 = raw.iter().map(|e| e.bytes.len() as u64).sum();
        let checkpoints = raw
            .iter()
            .filter(|e| e.subject == idstream_chain::CHAIN_SUBJECT)
            .count();
        let trusted = TrustedKeys::from_ring(&keys.signing());
        println!(
            "chain benchmark: {} events ({checkpoints} checkpoints), {:.1} MB of envelopes, {:.0} bytes per event on average, {rounds} rounds",
            raw.len(),
            bytes as f64 / 1e6,
            bytes as f64 / raw.len() as f64
        );

        // --- alternating rounds: chain verification (one thread, then signatures on a second
        // thread), raw SHA-256 (one stream), per event, links alone ---
        let verify = |mut verifier: Verifier| -> anyhow::Result<Duration> {
            let start = Instant::now();
            for e in &raw {
                verifier
                    .push(e.position, &e.subject, &e.bytes)
                    .map_err(|m| anyhow::anyhow!("the benchmark log does not verify: {m}"))?;
            }
            let summary = verifier
                .finish(raw.len() as u64)
                .map_err(|m| anyhow::anyhow!("the benchmark log does not verify: {m}"))?;
            let elapsed = start.elapsed();
            anyhow::ensure!(summary.checkpoints as usize == checkpoints);
            Ok(elapsed)
        };
        let mut times: [Vec<Duration>; 5] = Default::default();
        let [one, base, two, each, links] = &mut times;
        let mut sink = 0u8;
        for _ in 0..rounds {
            one.push(verify(Verifier::new(trusted.clone()))?);

            let start = Instant::now();
            let mut hasher = Sha256::new();
            for e in &raw {
                hasher.update(&e.bytes);
            }
            sink ^= hasher.finalize()[0];
            base.push(start.elapsed());

            two.push(verify(Verifier::with_signature_thread(trusted.clone()))?);

            let start = Instant::now();
            for e in &raw {
                sink ^= Sha256::digest(&e.bytes)[0];
            }
            each.push(start.elapsed());

            let start = Instant::now();
            let mut chain = idstream_chain::Chain::default();
            for e in &raw {
                chain.push(e.position, &e.subject, &e.bytes);
            }
            sink ^= chain.link[0];
            links.push(start.elapsed());
        }
        std::hint::black_box(sink);

        let n = raw.len() as u64;
        let best = |times: &[Duration]| times.iter().copied().min().expect("one round at least");
        let raw_bps = rate(bytes, best(&times[1]));
        let line = |name: &str, times: &[Duration]| {
            let elapsed = best(times);
            println!(
                "{name:<48} {:>9.0} events/s  {:>7.1} MB/s",
                rate(n, elapsed),
                rate(bytes, elapsed) / 1e6
            );
        };
        line("chain verification, one thread:", &times[0]);
        line("chain verification, signatures on a 2nd thread:", &times[2]);
        line("raw SHA-256, one stream (baseline):", &times[1]);
        line("(info) SHA-256 per event:", &times[3]);
        line("(info) the links alone, no checks:", &times[4]);
        // What one checkpoint costs the verifier: decoding it, and checking its signature.
        let stored: Vec<&RawEvent> = raw
            .iter()
            .filter(|e| e.subject == idstream_chain::CHAIN_SUBJECT)
            .collect();
        // Decoded as the verifier does, reusing the key of the checkpoint before.
        let start = Instant::now();
        let mut decoded: Vec<Checkpoint> = Vec::with_capacity(stored.len());
        for e in &stored {
            let known = decoded.last().map(|c| c.public_key);
            decoded.push(Checkpoint::decode_with(&e.bytes, known.as_ref()).map_err(anyhow::Error::msg)?);
        }
        let decoding = start.elapsed() / decoded.len() as u32;
        let start = Instant::now();
        anyhow::ensure!(decoded.iter().all(Checkpoint::signature_is_valid));
        let signing = start.elapsed() / decoded.len() as u32;
        println!(
            "(info) per checkpoint: decoding {:.0} µs, signature {:.0} µs",
            decoding.as_secs_f64() * 1e6,
            signing.as_secs_f64() * 1e6
        );
        // The ratio of the best rounds, and the median of each round's own ratio.
        for (name, chain) in [
            ("one thread", &times[0]),
            ("signatures on a 2nd thread", &times[2]),
        ] {
            let ratio = rate(bytes, best(chain)) / raw_bps;
            let mut own: Vec<f64> = chain
                .iter()
                .zip(&times[1])
                .map(|(chain, raw)| raw.as_secs_f64() / chain.as_secs_f64())
                .collect();
            own.sort_by(f64::total_cmp);
            let verdict = |ratio: f64| if ratio >= 0.5 { "met" } else { "missed" };
            let median = own[own.len() / 2];
            println!(
                "ratio chain / raw SHA-256, {name} (target ≥ 0.5×): best rounds {ratio:.2}× ({}), median of the rounds' own ratios {median:.2}× ({}), lowest round {:.2}×",
                verdict(ratio),
                verdict(median),
                own[0]
            );
        }

        // --- end to end, and the writer ---
        let start = Instant::now();
        let summary = verify_log(log.clone(), trusted, |_, _| {}).await?;
        let elapsed = start.elapsed();
        println!(
            "(info) verify_log over the embedded log, reading included: {:.0} events/s ({} events, {} checkpoints)",
            rate(summary.events, elapsed),
            summary.events,
            summary.checkpoints
        );
        println!(
            "(info) checkpoint writer, reading, hashing, signing and appending: {:.0} events/s",
            rate(n, writing)
        );
        anyhow::Ok(())
    })
}
