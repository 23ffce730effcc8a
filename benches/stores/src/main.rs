//! Raw bulk inserts of rows shaped like the read models' (35-byte keys, 198-byte values, four
//! trees, batches of 1000, in key order or scattered) into sled 0.34.7 with the configuration of
//! idstream's read-model store, redb 2 (no fsync per transaction, one at the end) and fjall 2 (an
//! LSM tree; persisted with fsync at the end). Prints microseconds per row for each, then per
//! point read of an existing key (what an access check does a few of).
//!
//! The backbone harness (`cargo bench --bench backbone`) measures the rebuild against sled
//! inserts of the rebuild's very rows; this program answers what another store would change.
//! Arguments: the number of rows (695913, what a rebuild of 200k events writes) and `ordered`
//! (the default) or `random`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

const TREES: usize = 4;
const BATCH: usize = 1000;
/// Point reads of existing keys after the inserts, in a scattered order.
const GETS: usize = 200_000;

type Rows = Vec<Vec<(Vec<u8>, Vec<u8>)>>;
/// A store's run over the rows: the time of the inserts and of the point reads.
type Run = fn(&Rows) -> (Duration, Duration);

/// `n` rows spread over [`TREES`] trees, each tree's rows sorted by key.
fn rows(n: usize) -> Rows {
    let mut trees = vec![Vec::new(); TREES];
    for i in 0..n {
        let id = (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15) % (1u128 << 100);
        let key = format!("u/{id:026X}/{:06}", i / TREES).into_bytes();
        trees[i % TREES].push((key, vec![b'v'; 198]));
    }
    for tree in &mut trees {
        tree.sort();
    }
    trees
}

/// The same rows, each tree's in a deterministic scattered order.
fn scatter(trees: &mut Rows) {
    for tree in trees {
        let len = tree.len();
        for i in 0..len {
            tree.swap(i, (i * 7919 + 13) % len);
        }
    }
}

fn sled(trees: &Rows) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(Some(1000))
        .open()
        .expect("sled opens");
    let started = Instant::now();
    for (i, rows) in trees.iter().enumerate() {
        let tree = db.open_tree(format!("t{i}")).expect("a tree");
        for chunk in rows.chunks(BATCH) {
            let mut batch = sled::Batch::default();
            for (key, value) in chunk {
                batch.insert(key.as_slice(), value.as_slice());
            }
            tree.apply_batch(batch).expect("a batch");
        }
    }
    db.flush().expect("a flush");
    let inserted = started.elapsed();
    let opened: Vec<_> = (0..TREES)
        .map(|i| db.open_tree(format!("t{i}")).expect("a tree"))
        .collect();
    let read = timed_gets(trees, |tree, key| {
        opened[tree].get(key).expect("a read").map(|v| v.len())
    });
    (inserted, read)
}

/// Times [`GETS`] reads of existing keys, spread over the trees; `get` answers a value's length.
fn timed_gets(trees: &Rows, mut get: impl FnMut(usize, &[u8]) -> Option<usize>) -> Duration {
    let mut found = 0usize;
    let started = Instant::now();
    for i in 0..GETS {
        let tree = i % TREES;
        let rows = &trees[tree];
        let (key, _) = &rows[(i * 104_729 + 7) % rows.len()];
        found += get(tree, key).unwrap_or(0);
    }
    let elapsed = started.elapsed();
    assert!(found > 0, "the reads found what was written");
    elapsed
}

fn redb(trees: &Rows) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = redb::Database::create(dir.path().join("db")).expect("redb opens");
    let names: Vec<String> = (0..TREES).map(|i| format!("t{i}")).collect();
    let started = Instant::now();
    for (i, rows) in trees.iter().enumerate() {
        let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(&names[i]);
        for chunk in rows.chunks(BATCH) {
            let mut tx = db.begin_write().expect("a transaction");
            tx.set_durability(redb::Durability::None);
            {
                let mut open = tx.open_table(table).expect("a table");
                for (key, value) in chunk {
                    open.insert(key.as_slice(), value.as_slice())
                        .expect("an insert");
                }
            }
            tx.commit().expect("a commit");
        }
    }
    let mut tx = db.begin_write().expect("a transaction");
    tx.set_durability(redb::Durability::Immediate);
    tx.commit().expect("a durable commit");
    let inserted = started.elapsed();
    let tx = db.begin_read().expect("a read transaction");
    let opened: Vec<_> = names
        .iter()
        .map(|name| {
            let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
            tx.open_table(table).expect("a table")
        })
        .collect();
    let read = timed_gets(trees, |tree, key| {
        opened[tree]
            .get(key)
            .expect("a read")
            .map(|v| v.value().len())
    });
    (inserted, read)
}

fn fjall(trees: &Rows) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keyspace = fjall::Config::new(dir.path()).open().expect("fjall opens");
    let partitions: Vec<_> = (0..TREES)
        .map(|i| {
            keyspace
                .open_partition(&format!("t{i}"), fjall::PartitionCreateOptions::default())
                .expect("a partition")
        })
        .collect();
    let started = Instant::now();
    for (i, rows) in trees.iter().enumerate() {
        for chunk in rows.chunks(BATCH) {
            let mut batch = keyspace.batch();
            for (key, value) in chunk {
                batch.insert(&partitions[i], key.as_slice(), value.as_slice());
            }
            batch.commit().expect("a batch");
        }
    }
    keyspace
        .persist(fjall::PersistMode::SyncAll)
        .expect("a durable flush");
    let inserted = started.elapsed();
    let read = timed_gets(trees, |tree, key| {
        partitions[tree].get(key).expect("a read").map(|v| v.len())
    });
    (inserted, read)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|text| text.parse().expect("the number of rows"))
        .unwrap_or(695_913);
    let order = args.next().unwrap_or_else(|| "ordered".into());
    let mut trees = rows(n);
    match order.as_str() {
        "ordered" => {}
        "random" => scatter(&mut trees),
        other => panic!("the order is `ordered` or `random`, not {other:?}"),
    }
    println!(
        "{n} rows of 35-byte keys and 198-byte values, {TREES} trees, batches of {BATCH}, {order}:"
    );
    let stores: [(&str, Run); 3] = [
        ("sled 0.34.7 (HighThroughput, flush every 1 s)", sled),
        ("redb 2 (no fsync per transaction)", redb),
        ("fjall 2", fjall),
    ];
    for (name, run) in stores {
        let (inserted, read) = run(&trees);
        println!(
            "  {name}: inserts {inserted:.2?} = {:.2} µs per row; {GETS} point reads {:.2} µs each",
            inserted.as_secs_f64() * 1e6 / n as f64,
            read.as_secs_f64() * 1e6 / GETS as f64
        );
    }
}
