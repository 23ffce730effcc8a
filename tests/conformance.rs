//! The shared event-log conformance suite (`idstream_eventlog::conformance`), instantiated once
//! per backend. Each backend is one line at the end of this file.

/// Expands into `mod $module { … }` holding one `#[tokio::test]` per conformance check, each
/// running the check against a backend of its own.
///
/// Contract for `$make_backend`: an expression, evaluated afresh at the start of every test,
/// whose value is a **future** that resolves to a value implementing
/// `idstream_eventlog::conformance::Backend` (for instance a call to an `async fn start()`; wrap
/// a plain value as `async { value }`). The future may panic if the backend cannot be set up.
/// The expression is expanded inside the generated module, so name things by absolute paths
/// (`crate::support::…`) or by names visible in this file (the module does `use super::*`).
///
/// Every check listed here must exist in `idstream_eventlog::conformance`, and every check there
/// must be listed here.
macro_rules! conformance_suite {
    ($module:ident, $make_backend:expr) => {
        conformance_suite!(@module $module, $make_backend;
            appends_get_contiguous_positions_and_read_after_pages_through_them_in_order,
            read_stream_returns_only_that_aggregates_events_in_order,
            raw_reads_return_every_event_as_the_bytes_it_was_appended_as,
            no_events_succeeds_on_a_fresh_aggregate_and_fails_once_it_has_events,
            a_wrong_expected_position_is_rejected_with_the_real_last_position,
            the_right_expected_position_and_expected_any_are_accepted,
            a_multi_event_append_lands_in_order_on_consecutive_positions,
            concurrent_writers_on_one_aggregate_lose_no_update,
            of_two_writers_with_the_same_expectation_exactly_one_wins,
            a_repeated_idempotency_key_returns_the_original_positions_and_appends_nothing,
            a_repeated_idempotency_key_is_a_duplicate_whatever_the_expectation,
            different_idempotency_keys_both_append,
            a_multi_event_append_with_an_idempotency_key_is_deduplicated_as_a_whole,
            concurrent_retries_with_one_idempotency_key_append_once,
            subscribing_from_zero_delivers_every_event_in_order,
            subscribing_from_the_middle_starts_right_after_that_position,
            a_subscriber_receives_events_appended_after_it_subscribed,
            a_subscriber_sees_no_gap_or_duplicate_while_appends_race_its_catch_up,
            events_survive_a_restart_with_the_same_positions_envelopes_and_log_id,
            after_a_restart_appends_continue_and_concurrency_and_dedup_still_hold,
            an_empty_append_is_rejected_and_changes_nothing,
            an_append_mixing_aggregates_is_rejected_and_changes_nothing,
            an_oversized_event_is_rejected_and_changes_nothing,
            imported_events_keep_their_positions_bytes_subjects_and_msg_ids,
            an_import_that_does_not_continue_the_log_is_refused_and_stores_nothing,
            a_subscriber_receives_imported_events_in_order,
        );
    };
    (@module $module:ident, $make_backend:expr; $($check:ident),+ $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let mut backend = $make_backend.await;
                    idstream_eventlog::conformance::$check(&mut backend).await;
                }
            )+
        }
    };
}

/// The embedded log in a temporary directory; a restart closes it and opens the same directory.
pub struct EmbeddedBackend {
    dir: tempfile::TempDir,
}

impl EmbeddedBackend {
    pub async fn start() -> EmbeddedBackend {
        EmbeddedBackend {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    async fn open_log(&self) -> idstream_eventlog::SharedLog {
        let options = idstream_eventlog::embedded::EmbeddedOptions::default();
        idstream_eventlog::embedded::EmbeddedLog::open(self.dir.path(), options)
            .await
            .expect("open the embedded log")
    }
}

#[idstream_eventlog::conformance::async_trait]
impl idstream_eventlog::conformance::Backend for EmbeddedBackend {
    async fn open(&mut self) -> idstream_eventlog::SharedLog {
        self.open_log().await
    }

    // The caller has dropped every handle, and dropping the last one stops the writer and
    // releases the directory lock, so reopening is the whole restart.
    async fn restart(&mut self) -> idstream_eventlog::SharedLog {
        self.open_log().await
    }
}

/// Any backend behind [`idstream_eventlog::FanOutLog`], with a ring of `capacity` events: the
/// decorator must keep every promise of the log it wraps. A tiny ring makes subscribers fall
/// behind it and back to subscriptions of their own all the time, so those switches are checked
/// by every subscription check too.
pub struct FanOutBackend<B> {
    inner: B,
    capacity: usize,
}

impl<B> FanOutBackend<B> {
    pub async fn start(inner: impl Future<Output = B>, capacity: usize) -> FanOutBackend<B> {
        FanOutBackend {
            inner: inner.await,
            capacity,
        }
    }
}

#[idstream_eventlog::conformance::async_trait]
impl<B: idstream_eventlog::conformance::Backend> idstream_eventlog::conformance::Backend
    for FanOutBackend<B>
{
    async fn open(&mut self) -> idstream_eventlog::SharedLog {
        let inner = self.inner.open().await;
        std::sync::Arc::new(idstream_eventlog::FanOutLog::with_capacity(
            inner,
            self.capacity,
        ))
    }

    async fn restart(&mut self) -> idstream_eventlog::SharedLog {
        let inner = self.inner.restart().await;
        std::sync::Arc::new(idstream_eventlog::FanOutLog::with_capacity(
            inner,
            self.capacity,
        ))
    }
}

// One line per backend.
conformance_suite!(embedded, EmbeddedBackend::start());
conformance_suite!(jetstream, async {
    crate::support::nats::JetStreamBackend::new()
});
conformance_suite!(
    fanout_embedded,
    FanOutBackend::start(
        EmbeddedBackend::start(),
        idstream_eventlog::FanOutLog::DEFAULT_CAPACITY
    )
);
conformance_suite!(
    fanout_embedded_tiny_ring,
    FanOutBackend::start(EmbeddedBackend::start(), 2)
);
conformance_suite!(
    fanout_jetstream,
    FanOutBackend::start(
        async { crate::support::nats::JetStreamBackend::new() },
        idstream_eventlog::FanOutLog::DEFAULT_CAPACITY
    )
);

/// What the suite cannot express for [`idstream_eventlog::FanOutLog`]: its shared feed rides out
/// nats-server restarts the way a JetStream subscription of one's own does.
mod fanout_across_restarts {
    use std::sync::Arc;
    use std::time::Instant;

    use futures::StreamExt;
    use idstream_eventlog::conformance::{PATIENCE, created, fresh_tenant, renamed};
    use idstream_eventlog::{
        AppendError, EventLog, EventStream, Expected, FanOutLog, Position, SharedLog,
    };

    use crate::support::nats::{NatsServer, connect};

    async fn next_position(subscription: &mut EventStream) -> Position {
        match tokio::time::timeout(PATIENCE, subscription.next()).await {
            Ok(Some(Ok(event))) => event.position,
            other => panic!("expected the next event, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscribers_on_the_shared_feed_get_every_event_once_across_nats_server_restarts() {
        let mut nats = NatsServer::spawn();
        let inner: SharedLog = Arc::new(connect(&nats).await);
        let log = FanOutLog::new(inner);
        let tenant = fresh_tenant();
        let first = log
            .append(vec![created(&tenant, "0")], Expected::NoEvents, None)
            .await
            .unwrap();
        // One from the start (it catches up on its own, then joins), one at the end.
        let mut from_start = log.subscribe(0).await.unwrap();
        let mut at_end = log.subscribe(first.last).await.unwrap();
        let mut expected = vec![first.last];
        assert_eq!(next_position(&mut from_start).await, first.last);

        // A crash, then a graceful restart; appends retried with their key until NATS is back.
        for (round, disrupt) in [NatsServer::kill as fn(&mut NatsServer), NatsServer::stop]
            .into_iter()
            .enumerate()
        {
            disrupt(&mut nats);
            nats.start();
            for n in 0..3 {
                let key = format!("fanout-{round}-{n}");
                let deadline = Instant::now() + PATIENCE;
                let appended = loop {
                    let event = renamed(&tenant, &key);
                    match log.append(vec![event], Expected::Any, Some(&key)).await {
                        Ok(appended) => break appended,
                        Err(AppendError::Unavailable(_)) if Instant::now() < deadline => {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await
                        }
                        Err(e) => panic!("the log did not accept appends again: {e}"),
                    }
                };
                expected.push(appended.last);
            }
        }

        let mut got_start = vec![first.last];
        let mut got_end = Vec::new();
        for _ in 1..expected.len() {
            got_start.push(next_position(&mut from_start).await);
            got_end.push(next_position(&mut at_end).await);
        }
        assert_eq!(got_start, expected, "every event once, in order");
        assert_eq!(got_end, expected[1..]);
        let stats = log.stats();
        assert_eq!(
            stats.feeds_started, 1,
            "the feed itself rode out the restarts"
        );
        assert_eq!((stats.shared, stats.own), (2, 0));
    }
}
