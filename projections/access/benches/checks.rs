//! Latency of one in-process access check on a warm read model of realistic size, beside the raw
//! baseline of a sled `get` of random existing keys of the same tree, in the same run.
//!
//! ```text
//! cargo bench -p idstream-access --bench checks
//! ACCESS_BENCH_SCALE=1 cargo bench -p idstream-access --bench checks   # then 1M users, 10M grants
//! ```
//!
//! The world (5 tenants, 100k users, 1M record grants, 50 custom roles per tenant, an owner for
//! one record in ten, a local role per twenty grants) is folded by the real `AccessProjection`
//! through `apply_events` in batches of 20k events into sled with the service's settings. Then,
//! after one untimed pass over the same questions (the fact cache warm, as in a running
//! service), every check is timed on its own: 40 % granted records (read, or update on a
//! read-write grant), 25 % random records of entities with row-level security (almost all
//! denied), 25 % type-level permissions, 10 % admins with global access. The baseline times
//! `sled::Tree::get` of keys sampled uniformly from the same tree, interleaved with the checks in
//! rounds so that both see the same machine.
//!
//! Knobs: `ACCESS_BENCH_TENANTS` (5), `ACCESS_BENCH_USERS` (100000), `ACCESS_BENCH_GRANTS`
//! (1000000), `ACCESS_BENCH_ROLES` (50 per tenant), `ACCESS_BENCH_REQUESTS` (200000 timed checks),
//! `ACCESS_BENCH_SCALE=1` (after the first world, a second of `ACCESS_BENCH_SCALE_USERS` (1000000)
//! users and `ACCESS_BENCH_SCALE_GRANTS` (10000000) grants, and the p99 ratio of the two),
//! `ACCESS_BENCH_DIR` (where sled writes; a temporary directory by default).
//!
//! Targets: check p50 ≤ 2× raw get p50; check p99 ≤ 10 µs.

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use common::{Kind, Latency, Rng, Sizes, knob};

const ROUNDS: usize = 4;

struct Outcome {
    sizes: Sizes,
    check: Latency,
    raw: Latency,
    throughput: f64,
}

fn main() {
    let base = Sizes {
        tenants: knob("ACCESS_BENCH_TENANTS", 5),
        users: knob("ACCESS_BENCH_USERS", 100_000),
        grants: knob("ACCESS_BENCH_GRANTS", 1_000_000),
        roles_per_tenant: knob("ACCESS_BENCH_ROLES", 50),
    };
    let requests = knob("ACCESS_BENCH_REQUESTS", 200_000);
    let mut worlds = vec![base];
    if std::env::var("ACCESS_BENCH_SCALE").is_ok_and(|v| v == "1") {
        worlds.push(Sizes {
            users: knob("ACCESS_BENCH_SCALE_USERS", 1_000_000),
            grants: knob("ACCESS_BENCH_SCALE_GRANTS", 10_000_000),
            ..base
        });
    }
    let outcomes: Vec<Outcome> = worlds.iter().map(|s| run(s, requests)).collect();

    println!();
    println!("summary (idstream check vs raw sled get of the same tree, same run):");
    for o in &outcomes {
        println!(
            "  {} users, {} grants: check p50 {} / p99 {} / p99.9 {} ({:.0} checks/s on one thread); \
             raw get p50 {} / p99 {}; p50 ratio {:.2}× (target ≤ 2×), p99 {} (target ≤ 10 µs): {}",
            o.sizes.users,
            o.sizes.grants,
            common::duration(o.check.p50),
            common::duration(o.check.p99),
            common::duration(o.check.p999),
            o.throughput,
            common::duration(o.raw.p50),
            common::duration(o.raw.p99),
            o.check.p50 / o.raw.p50,
            common::duration(o.check.p99),
            verdict(o.check.p50 / o.raw.p50 <= 2.0 && o.check.p99 <= 10_000.0),
        );
    }
    if let [small, large] = outcomes.as_slice() {
        println!(
            "  scale: check p99 {:.2}× and p50 {:.2}× the {}-user figures (raw get p99 {:.2}×)",
            large.check.p99 / small.check.p99,
            large.check.p50 / small.check.p50,
            small.sizes.users,
            large.raw.p99 / small.raw.p99,
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn run(sizes: &Sizes, requests: usize) -> Outcome {
    println!(
        "world: {} tenants, {} users, {} grants, {} roles per tenant, {} records per entity, \
         {} owners, {} local roles",
        sizes.tenants,
        sizes.users,
        sizes.grants,
        sizes.roles_per_tenant,
        sizes.records_per_entity(),
        sizes.owners(),
        sizes.local_roles()
    );
    let dir = match std::env::var("ACCESS_BENCH_DIR") {
        Ok(parent) => tempfile::tempdir_in(parent),
        Err(_) => tempfile::tempdir(),
    }
    .expect("a temporary directory");
    let model = common::build_read_model(dir.path(), sizes);
    let keys = model.tree.len();
    let (rss, hwm) = common::memory();
    println!(
        "  folded {} events in {:.1} s ({:.0} events/s); the tree holds {} keys, {:.0} MiB on disk; \
         VmRSS {:.0} MiB, VmHWM {:.0} MiB",
        model.events,
        model.seconds,
        model.events as f64 / model.seconds,
        keys,
        disk_usage(dir.path()) as f64 / (1024.0 * 1024.0),
        rss,
        hwm
    );

    // Existing keys, sampled uniformly (reservoir) from the whole tree.
    let mut rng = Rng::new(42);
    let mut sample: Vec<sled::IVec> = Vec::with_capacity(requests.min(keys));
    for (seen, entry) in model.tree.iter().keys().enumerate() {
        let key = entry.expect("readable");
        if sample.len() < sample.capacity() {
            sample.push(key);
        } else {
            let slot = rng.below(seen + 1);
            if slot < sample.len() {
                sample[slot] = key;
            }
        }
    }
    let raw_order: Vec<usize> = (0..requests).map(|_| rng.below(sample.len())).collect();

    let mix = [
        (Kind::Granted, 40),
        (Kind::DeniedRecord, 25),
        (Kind::TypeLevel, 25),
        (Kind::Global, 10),
    ];
    let questions = common::questions(sizes, requests, &mix, 7);
    let now = common::now();

    // Warm-up: every question once, every sampled key once.
    let mut allowed_by_kind: BTreeMap<Kind, (usize, usize)> = BTreeMap::new();
    for q in &questions {
        let allowed = common::ask(&model.access, q, now);
        let entry = allowed_by_kind.entry(q.kind).or_default();
        entry.0 += usize::from(allowed);
        entry.1 += 1;
    }
    for &i in &raw_order {
        black_box(model.tree.get(&sample[i]).expect("readable"));
    }

    // Timed rounds, alternating checks and raw gets so that both see the same machine.
    let mut check_ns: Vec<u64> = Vec::with_capacity(requests);
    let mut kinds: Vec<Kind> = Vec::with_capacity(requests);
    let mut raw_ns: Vec<u64> = Vec::with_capacity(requests);
    let mut check_total = 0.0;
    let per_round = requests.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(requests);
        let started = Instant::now();
        for q in &questions[range.clone()] {
            let t = Instant::now();
            let allowed = common::ask(&model.access, q, now);
            check_ns.push(t.elapsed().as_nanos() as u64);
            kinds.push(q.kind);
            black_box(allowed);
        }
        check_total += started.elapsed().as_secs_f64();
        for &i in &raw_order[range] {
            let key = &sample[i];
            let t = Instant::now();
            let value = model.tree.get(key).expect("readable");
            raw_ns.push(t.elapsed().as_nanos() as u64);
            black_box(value);
        }
    }
    let mut timer = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let t = Instant::now();
        timer.push(t.elapsed().as_nanos() as u64);
    }
    let timer = Latency::of(&mut timer);

    let mut by_kind: BTreeMap<Kind, Vec<u64>> = BTreeMap::new();
    for (ns, kind) in check_ns.iter().zip(&kinds) {
        by_kind.entry(*kind).or_default().push(*ns);
    }
    let throughput = check_ns.len() as f64 / check_total;
    let check = Latency::of(&mut check_ns);
    let raw = Latency::of(&mut raw_ns);
    println!("  check (all):        {}", check.line());
    for (kind, mut samples) in by_kind {
        let (allowed, total) = allowed_by_kind.get(&kind).copied().unwrap_or_default();
        println!(
            "    {:<18} {} [{:.0} % allowed]",
            format!("{}:", kind.label()),
            Latency::of(&mut samples).line(),
            100.0 * allowed as f64 / total.max(1) as f64
        );
    }
    println!("  raw sled get:       {}", raw.line());
    println!(
        "  (timer overhead included in both: p50 {}; {:.0} checks/s on one thread)",
        common::duration(timer.p50),
        throughput
    );
    let (rss, hwm) = common::memory();
    println!("  after the run: VmRSS {rss:.0} MiB, VmHWM {hwm:.0} MiB");
    drop(model);
    Outcome {
        sizes: *sizes,
        check,
        raw,
        throughput,
    }
}

fn disk_usage(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
