//! Prometheus metrics: command latency, append errors, projection positions and lag.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    pub projection: String,
}

pub struct Metrics {
    registry: Registry,
    pub command_duration: Family<CommandLabels, Histogram>,
    pub append_errors: Family<KindLabels, Counter>,
    pub projection_position: Family<ProjectionLabels, Gauge>,
    pub projection_lag: Family<ProjectionLabels, Gauge>,
    pub log_position: Gauge,
    pub query_waits: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("idstream");
        let command_duration = Family::<CommandLabels, Histogram>::new_with_constructor(|| {
            // 50 µs … ~6.5 s
            Histogram::new(exponential_buckets(0.00005, 2.0, 18))
        });
        registry.register(
            "command_duration_seconds",
            "Time to decide and append a command",
            command_duration.clone(),
        );
        let append_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "append_errors",
            "Commands that failed at the event log, by kind",
            append_errors.clone(),
        );
        let projection_position = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_position",
            "Last log position applied by each read model",
            projection_position.clone(),
        );
        let projection_lag = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_lag_events",
            "Events in the log not yet applied by each read model",
            projection_lag.clone(),
        );
        let log_position = Gauge::default();
        registry.register(
            "log_position",
            "Last position of the event log (as of the last scrape)",
            log_position.clone(),
        );
        let query_waits = Family::<KindLabels, Counter>::default();
        registry.register(
            "consistency_waits",
            "Queries that waited for a minimum position, by result",
            query_waits.clone(),
        );
        Metrics {
            registry,
            command_duration,
            append_errors,
            projection_position,
            projection_lag,
            log_position,
            query_waits,
        }
    }

    pub fn observe_command(&self, command: &'static str, outcome: &'static str, elapsed: Duration) {
        self.command_duration
            .get_or_create(&CommandLabels { command, outcome })
            .observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
