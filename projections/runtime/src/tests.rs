//! Runtime tests against the real embedded event log in temporary directories.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_eventlog::{Expected, Position, SharedLog};

use crate::test_support::{Counter, counts, envelope};
use crate::{Projection, ReadModels, Stale, rebuild_offline, rebuild_offline_until};

/// Long enough never to be reached when things work; a wait ends as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(20);

async fn open_log(dir: &Path) -> SharedLog {
    EmbeddedLog::open(dir, EmbeddedOptions::default())
        .await
        .unwrap()
}

/// Appends one event per tenant named, in order; returns the position of the last.
async fn append(log: &SharedLog, tenants: &[&str]) -> Position {
    let mut last = 0;
    for tenant in tenants {
        let n = log.last_position().await.unwrap() + 1;
        last = log
            .append(vec![envelope(n, tenant)], Expected::Any, None)
            .await
            .unwrap()
            .last;
    }
    last
}

/// Appends many events quickly: one append per tenant run, several events each.
async fn append_many(log: &SharedLog, tenants: &[&str]) -> Position {
    let mut last = 0;
    for run in tenants.chunk_by(|a, b| a == b) {
        for chunk in run.chunks(500) {
            let first = log.last_position().await.unwrap() + 1;
            let events = (0..chunk.len() as u64)
                .map(|i| envelope(first + i, chunk[0]))
                .collect();
            last = log.append(events, Expected::Any, None).await.unwrap().last;
        }
    }
    last
}

fn counter(version: u32) -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(Counter {
        version,
        ..Counter::default()
    })]
}

fn c(tenant: &str, n: u64) -> (String, u64) {
    (tenant.to_owned(), n)
}

struct Dirs {
    _root: tempfile::TempDir,
    log: std::path::PathBuf,
    models: std::path::PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let (log, models) = (root.path().join("log"), root.path().join("models"));
    Dirs {
        _root: root,
        log,
        models,
    }
}

#[tokio::test]
async fn a_projection_catches_up_with_the_log_and_then_follows_it_live() {
    let d = dirs();
    let log = open_log(&d.log).await;
    append(&log, &["acme", "acme", "globex"]).await;

    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(3, PATIENCE).await.unwrap();
    assert_eq!(
        counts(&models.tree("counter")),
        vec![c("acme", 2), c("globex", 1)]
    );

    let last = append(&log, &["globex", "initech"]).await;
    models.wait_for(last, PATIENCE).await.unwrap();
    assert_eq!(models.position("counter"), 5);
    assert_eq!(models.min_position(), 5);
    assert_eq!(
        counts(&models.tree("counter")),
        vec![c("acme", 2), c("globex", 2), c("initech", 1)]
    );
    assert_eq!(models.lag().await.unwrap().get("counter"), Some(&0));
    models.shutdown().await;
}

#[tokio::test]
async fn waiting_for_a_position_the_log_has_not_reached_times_out_with_the_current_one() {
    let d = dirs();
    let log = open_log(&d.log).await;
    append(&log, &["acme", "acme", "acme"]).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(3, PATIENCE).await.unwrap();

    assert_eq!(
        models.wait_for(10, Duration::from_millis(50)).await,
        Err(Stale { current: 3 })
    );
    models.shutdown().await;
}

#[tokio::test]
async fn a_wait_for_some_read_models_is_not_held_up_by_a_stuck_other() {
    let d = dirs();
    let log = open_log(&d.log).await;
    let projections: Vec<Arc<dyn Projection>> = vec![
        Arc::new(Counter {
            version: 1,
            ..Counter::default()
        }),
        Arc::new(Counter {
            name: Some("stuck"),
            version: 1,
            fail_on: Some("poison"),
            ..Counter::default()
        }),
    ];
    let models = ReadModels::start(&d.models, log.clone(), projections)
        .await
        .unwrap();
    let last = append(&log, &["acme", "poison", "acme"]).await;

    models
        .wait_for_some(&["counter"], last, PATIENCE)
        .await
        .unwrap();
    assert_eq!(models.min_position_of(&["counter"]), last);
    // The stuck one applies the event before the poison (in its own time: each has its runner).
    models.wait_for_some(&["stuck"], 1, PATIENCE).await.unwrap();
    assert_eq!(models.min_position_of(&["stuck"]), 1);
    assert_eq!(
        models
            .wait_for_some(&["counter", "stuck"], last, Duration::from_millis(50))
            .await,
        Err(Stale { current: 1 })
    );
    assert_eq!(
        models.wait_for(last, Duration::from_millis(50)).await,
        Err(Stale { current: 1 })
    );
    models.shutdown().await;
}

#[tokio::test]
async fn a_wait_ends_when_the_awaited_event_is_applied() {
    let d = dirs();
    let log = open_log(&d.log).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let models = models.clone();
        async move { models.wait_for(2, PATIENCE).await }
    });
    append(&log, &["acme", "acme"]).await;
    assert_eq!(waiting.await.unwrap(), Ok(()));
    models.shutdown().await;
}

#[tokio::test]
async fn a_restart_resumes_from_the_checkpoint_and_applies_each_event_once() {
    let d = dirs();
    let log = open_log(&d.log).await;
    append(&log, &["acme", "acme"]).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(2, PATIENCE).await.unwrap();
    // A key no event writes: a rebuild would remove it, a resume keeps it.
    models.tree("counter").insert("marker", "kept").unwrap();
    models.shutdown().await;

    append(&log, &["acme"]).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    assert_eq!(
        models.position("counter"),
        2,
        "the stored checkpoint is where it starts"
    );
    models.wait_for(3, PATIENCE).await.unwrap();
    let tree = models.tree("counter");
    assert_eq!(counts(&tree), vec![c("acme", 3)]);
    assert_eq!(tree.get("marker").unwrap().as_deref(), Some(&b"kept"[..]));
    models.shutdown().await;
}

#[tokio::test]
async fn an_online_rebuild_and_an_offline_rebuild_give_the_live_digest() {
    let d = dirs();
    let log = open_log(&d.log).await;
    let tenants: Vec<String> = (0..300).map(|i| format!("tenant-{}", i % 7)).collect();
    let last = append(
        &log,
        &tenants.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(last, PATIENCE).await.unwrap();
    let (position, live) = models.digest("counter").await.unwrap();
    assert_eq!(position, last);

    models.rebuild("counter").await.unwrap();
    models.wait_for(last, PATIENCE).await.unwrap();
    assert_eq!(
        models.digest("counter").await.unwrap(),
        (last, live.clone())
    );
    assert_eq!(models.digests().await.unwrap().get("counter"), Some(&live));

    let mut reported = Vec::new();
    let offline = rebuild_offline(
        &d.models.with_extension("replay"),
        log.clone(),
        counter(1),
        |done, target| reported.push((done, target)),
    )
    .await
    .unwrap();
    assert_eq!(offline.get("counter"), Some(&live));
    assert_eq!(reported.first(), Some(&(0, last)));
    assert_eq!(reported.last(), Some(&(last, last)));
    models.shutdown().await;
}

/// The sum of the counts in the serving tree: the number of events it reflects.
fn counted(models: &ReadModels) -> u64 {
    counts(&models.tree("counter")).iter().map(|(_, n)| n).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_through_online_rebuilds_never_see_a_partial_or_older_read_model() {
    let d = dirs();
    let log = open_log(&d.log).await;
    let tenants: Vec<String> = (0..3000).map(|i| format!("tenant-{}", i % 50)).collect();
    let tenants: Vec<&str> = tenants.iter().map(String::as_str).collect();
    append_many(&log, &tenants).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(3000, PATIENCE).await.unwrap();
    let (_, before) = models.digest("counter").await.unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (models, stop) = (models.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let (mut reads, mut last_position) = (0u64, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Every event counts one, so a tree reflecting position p counts p at least;
                // the position read first can only be behind the tree read after it.
                let position = models.position("counter");
                assert!(
                    position >= last_position,
                    "the position went back from {last_position} to {position}"
                );
                let counted = counted(&models);
                assert!(
                    counted >= position,
                    "read {counted} events at position {position}"
                );
                last_position = position;
                reads += 1;
            }
            reads
        })
    };
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                append(&log, &["live"]).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for _ in 0..3 {
        models.rebuild("counter").await.unwrap();
    }
    assert_eq!(models.switches(), 3);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let reads = reader.await.unwrap();
    assert!(reads > 0);

    let last = log.last_position().await.unwrap();
    models.wait_for(last, PATIENCE).await.unwrap();
    assert_eq!(counted(&models), last);
    let (position, after) = models.digest("counter").await.unwrap();
    assert_eq!(position, last);
    assert_ne!(before, after, "the writer appended meanwhile");
    let offline = rebuild_offline(
        &d.models.with_extension("replay"),
        log.clone(),
        counter(1),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(offline.get("counter"), Some(&after));
    models.shutdown().await;
}

#[tokio::test]
async fn a_restart_after_a_rebuild_resumes_the_tree_switched_to_and_drops_the_others() {
    let d = dirs();
    let log = open_log(&d.log).await;
    append(&log, &["acme", "globex"]).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(2, PATIENCE).await.unwrap();
    models.rebuild("counter").await.unwrap();
    let last = append(&log, &["acme"]).await;
    models.wait_for(last, PATIENCE).await.unwrap();
    models.shutdown().await;

    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    assert_eq!(
        models.position("counter"),
        last,
        "resumes the switched-to tree from its checkpoint, not the replaced one"
    );
    assert_eq!(
        counts(&models.tree("counter")),
        vec![c("acme", 2), c("globex", 1)]
    );
    let trees = eventually_trees(&models, |names| names == ["counter~1"]).await;
    assert_eq!(trees, ["counter~1"]);
    models.shutdown().await;
}

/// The names of the store's trees (without sled's default and the runtime's own), once `done`
/// holds for them or [`PATIENCE`] has passed.
async fn eventually_trees(models: &ReadModels, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let names: Vec<String> = models
            .store()
            .tree_names()
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .filter(|name| !name.starts_with("__sled") && !name.starts_with('\0'))
            .collect();
        if done(&names) || tokio::time::Instant::now() > deadline {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_rebuild_that_cannot_catch_up_is_dropped_and_the_serving_tree_goes_on() {
    let d = dirs();
    let log = open_log(&d.log).await;
    append(&log, &["acme", "poison", "acme"]).await;
    let projection = Counter {
        beside_fails_on: Some("poison"),
        ..Counter::default()
    };
    let models = ReadModels::start(&d.models, log.clone(), vec![Arc::new(projection)])
        .await
        .unwrap();
    models.wait_for(3, PATIENCE).await.unwrap();
    let (_, before) = models.digest("counter").await.unwrap();

    let refused = models.rebuild("counter").await.unwrap_err();
    assert!(
        matches!(
            refused,
            crate::RuntimeError::RebuildStalled {
                projection: "counter",
                reached: 1
            }
        ),
        "{refused:?}"
    );
    assert_eq!(models.switches(), 0);
    assert_eq!(models.digest("counter").await.unwrap(), (3, before));
    let last = append(&log, &["globex"]).await;
    models.wait_for(last, PATIENCE).await.unwrap();
    assert_eq!(
        counts(&models.tree("counter")),
        vec![c("acme", 2), c("globex", 1), c("poison", 1)]
    );
    models.shutdown().await;
}

#[tokio::test]
async fn a_rebuild_until_a_position_gives_the_digest_the_live_models_had_there() {
    let d = dirs();
    let log = open_log(&d.log).await;
    let early = append(&log, &["acme", "globex", "acme"]).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(early, PATIENCE).await.unwrap();
    let (_, then) = models.digest("counter").await.unwrap();
    let last = append(&log, &["initech", "acme"]).await;
    models.wait_for(last, PATIENCE).await.unwrap();
    let (_, now) = models.digest("counter").await.unwrap();
    assert_ne!(then, now);

    let mut reported = Vec::new();
    let past = rebuild_offline_until(
        &d.models.with_extension("past"),
        log.clone(),
        counter(1),
        Some(early),
        |done, target| reported.push((done, target)),
    )
    .await
    .unwrap();
    assert_eq!(past.get("counter"), Some(&then));
    assert_eq!(reported.last(), Some(&(early, early)));
    // A bound beyond the end is the end.
    let beyond = rebuild_offline_until(
        &d.models.with_extension("beyond"),
        log.clone(),
        counter(1),
        Some(last + 100),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(beyond.get("counter"), Some(&now));
    // The live store was not touched.
    assert_eq!(models.digest("counter").await.unwrap(), (last, now));
    models.shutdown().await;
}

#[tokio::test]
async fn an_offline_rebuild_replaces_whatever_the_store_held() {
    let d = dirs();
    let log = open_log(&d.log).await;
    let last = append(&log, &["acme", "globex", "acme"]).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(last, PATIENCE).await.unwrap();
    let (_, live) = models.digest("counter").await.unwrap();
    models
        .tree("counter")
        .insert("count/stale", &9u64.to_be_bytes())
        .unwrap();
    models.shutdown().await;

    let offline = rebuild_offline(&d.models, log.clone(), counter(1), |_, _| {})
        .await
        .unwrap();
    assert_eq!(offline.get("counter"), Some(&live));
}

#[tokio::test]
async fn a_start_after_an_offline_rebuild_serves_the_replayed_tree_even_after_an_online_switch() {
    let d = dirs();
    let log = open_log(&d.log).await;
    append(&log, &["acme"]).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(1, PATIENCE).await.unwrap();
    models.rebuild("counter").await.unwrap();
    models.shutdown().await;
    let last = append(&log, &["globex"]).await;

    rebuild_offline(&d.models, log.clone(), counter(1), |_, _| {})
        .await
        .unwrap();
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    assert_eq!(models.position("counter"), last);
    assert_eq!(
        counts(&models.tree("counter")),
        vec![c("acme", 1), c("globex", 1)]
    );
    let trees = eventually_trees(&models, |names| names == ["counter"]).await;
    assert_eq!(trees, ["counter"]);
    models.shutdown().await;
}

#[tokio::test]
async fn an_offline_rebuild_interrupted_before_it_is_sealed_is_redone_when_opened() {
    let d = dirs();
    let log = open_log(&d.log).await;
    let last = append(&log, &["acme", "globex", "acme"]).await;
    let offline = rebuild_offline(&d.models, log.clone(), counter(1), |_, _| {})
        .await
        .unwrap();

    // What a rebuild leaves behind when it stops after writing some pages and before sealing:
    // the tree cleared without a version, then written key by key.
    {
        let db = crate::open_rebuilt(&d.models).await.unwrap();
        let tree = db.open_tree("counter").unwrap();
        assert_eq!(crate::meta::read(&tree).unwrap().version, Some(1));
        crate::meta::clear_unversioned(&tree).unwrap();
        let mut half = crate::apply::Overlay::new();
        half.insert(b"count/acme".to_vec(), Some(1u64.to_be_bytes().to_vec()));
        crate::apply::write_unbatched(&tree, &half).unwrap();
        let stored = crate::meta::read(&tree).unwrap();
        assert_eq!((stored.version, stored.empty), (None, false));
        db.flush().unwrap();
    }

    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(last, PATIENCE).await.unwrap();
    assert_eq!(
        counts(&models.tree("counter")),
        vec![c("acme", 2), c("globex", 1)]
    );
    assert_eq!(
        models.digest("counter").await.unwrap(),
        (last, offline["counter"].clone())
    );
    models.shutdown().await;
}

#[tokio::test]
async fn a_new_projection_version_rebuilds_the_read_model() {
    let d = dirs();
    let log = open_log(&d.log).await;
    append(&log, &["acme", "acme"]).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(2, PATIENCE).await.unwrap();
    models
        .tree("counter")
        .insert("marker", "v1 layout")
        .unwrap();
    models.shutdown().await;

    let models = ReadModels::start(&d.models, log.clone(), counter(2))
        .await
        .unwrap();
    models.wait_for(2, PATIENCE).await.unwrap();
    let tree = models.tree("counter");
    assert_eq!(tree.get("marker").unwrap(), None);
    assert_eq!(counts(&tree), vec![c("acme", 2)]);
    let trees = eventually_trees(&models, |names| names == ["counter~1"]).await;
    assert_eq!(
        trees,
        ["counter~1"],
        "built beside the old tree, which is dropped"
    );
    models.shutdown().await;
}

#[tokio::test]
async fn read_models_built_from_another_log_are_rebuilt() {
    let d = dirs();
    let first = open_log(&d.log).await;
    append(&first, &["acme", "acme", "acme"]).await;
    let models = ReadModels::start(&d.models, first.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(3, PATIENCE).await.unwrap();
    models.shutdown().await;
    drop(first);

    // A new, shorter log in another directory: another log id, and the stored checkpoint lies
    // beyond its end.
    let second = open_log(&d.log.with_extension("second")).await;
    append(&second, &["globex"]).await;
    let models = ReadModels::start(&d.models, second.clone(), counter(1))
        .await
        .unwrap();
    assert_eq!(models.position("counter"), 0);
    models.wait_for(1, PATIENCE).await.unwrap();
    assert_eq!(counts(&models.tree("counter")), vec![c("globex", 1)]);
    models.shutdown().await;
}

#[tokio::test]
async fn a_damaged_store_is_moved_aside_and_rebuilt_from_the_log() {
    let d = dirs();
    let log = open_log(&d.log).await;
    let last = append(&log, &["acme", "globex"]).await;
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(last, PATIENCE).await.unwrap();
    let (_, before) = models.digest("counter").await.unwrap();
    models.shutdown().await;

    std::fs::write(d.models.join("conf"), b"not a sled config").unwrap();
    let models = ReadModels::start(&d.models, log.clone(), counter(1))
        .await
        .unwrap();
    models.wait_for(last, PATIENCE).await.unwrap();
    assert_eq!(models.digest("counter").await.unwrap(), (last, before));
    assert!(d.models.with_extension("broken").exists());
    models.shutdown().await;
}

#[tokio::test]
async fn a_failing_event_holds_the_projection_right_before_it() {
    let d = dirs();
    let log = open_log(&d.log).await;
    append(&log, &["acme", "acme", "poison", "acme"]).await;
    let failing: Vec<Arc<dyn Projection>> = vec![Arc::new(Counter {
        fail_on: Some("poison"),
        ..Counter::default()
    })];
    let models = ReadModels::start(&d.models, log.clone(), failing)
        .await
        .unwrap();

    models.wait_for(2, PATIENCE).await.unwrap();
    assert_eq!(
        models.wait_for(3, Duration::from_millis(200)).await,
        Err(Stale { current: 2 })
    );
    assert_eq!(counts(&models.tree("counter")), vec![c("acme", 2)]);
    assert_eq!(models.lag().await.unwrap().get("counter"), Some(&2));
    models.shutdown().await;

    // A fixed projection (a new version) gets past it.
    let models = ReadModels::start(&d.models, log.clone(), counter(2))
        .await
        .unwrap();
    models.wait_for(4, PATIENCE).await.unwrap();
    assert_eq!(
        counts(&models.tree("counter")),
        vec![c("acme", 3), c("poison", 1)]
    );
    models.shutdown().await;
}

#[tokio::test]
async fn two_projections_with_one_name_are_refused() {
    let d = dirs();
    let log = open_log(&d.log).await;
    let twice: Vec<Arc<dyn Projection>> =
        vec![Arc::new(Counter::default()), Arc::new(Counter::default())];
    let result = ReadModels::start(&d.models, log, twice).await;
    assert!(matches!(
        result,
        Err(crate::RuntimeError::DuplicateName("counter"))
    ));
}

#[tokio::test]
async fn an_offline_rebuild_stops_at_an_event_it_cannot_apply_and_names_it() {
    offline_rebuild_stopped_at(12_346).await;
}

#[tokio::test]
async fn an_offline_rebuild_stopped_by_the_first_event_of_a_page_keeps_the_pages_before() {
    // The first event of the second page: nothing of that page is applied, all of the first is.
    offline_rebuild_stopped_at(crate::offline::PAGE as Position + 1).await;
}

/// A rebuild over 20,000 events whose event at `poison` cannot be applied stops there and names
/// it; the store it leaves is consistent right before that event.
async fn offline_rebuild_stopped_at(poison: Position) {
    let d = dirs();
    let log = open_log(&d.log).await;
    let tenants: Vec<&str> = (1..=20_000)
        .map(|p| if p == poison { "poison" } else { "acme" })
        .collect();
    append_many(&log, &tenants).await;
    let failing: Vec<Arc<dyn Projection>> = vec![Arc::new(Counter {
        fail_on: Some("poison"),
        ..Counter::default()
    })];

    let result = rebuild_offline(&d.models, log.clone(), failing, |_, _| {}).await;
    match result {
        Err(crate::RuntimeError::Apply(crate::ApplyFailure::Event {
            position,
            committed,
            ..
        })) if position == poison && committed == poison - 1 => {}
        other => panic!("unexpected {other:?}"),
    }
    // What was committed is consistent: a runtime started on it resumes right before the event.
    let models = ReadModels::start(&d.models, log.clone(), counter(0))
        .await
        .unwrap();
    assert_eq!(models.position("counter"), poison - 1);
    models.wait_for(20_000, PATIENCE).await.unwrap();
    assert_eq!(
        counts(&models.tree("counter")),
        vec![c("acme", 19_999), c("poison", 1)]
    );
    models.shutdown().await;
}
