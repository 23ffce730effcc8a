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

// One line per backend.
conformance_suite!(embedded, EmbeddedBackend::start());
conformance_suite!(jetstream, async {
    crate::support::nats::JetStreamBackend::new()
});
