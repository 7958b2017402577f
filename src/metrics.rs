//! The worker's metrics, as OpenTelemetry instruments on the global meter. Exported over
//! OTLP when telemetry is on (see [`crate::telemetry`]); no-ops otherwise.
//!
//! | name | kind | unit | attributes |
//! |---|---|---|---|
//! | `lakeworker.messages` | counter | message | `outcome`: received, succeeded, discarded, retried, dead_lettered, released, abandoned, deleted |
//! | `lakeworker.dead_letters` | counter | message | `via`: full, trimmed, pointer (sent); kept_in_s3 (only the S3 copy holds the body); retried (nothing durable yet) |
//! | `lakeworker.rows` | counter | row | `kind`: read, written, quarantined; `dataset` |
//! | `lakeworker.bytes` | counter | By | `direction`: read, written; `dataset` |
//! | `lakeworker.message.duration` | histogram | s | `outcome` |
//! | `lakeworker.visibility.extensions` | counter | extension | |
//! | `lakeworker.in_flight` | gauge (observed at each export) | message | |
//! | `lakeworker.poll.duration` | histogram | s | |
//!
//! `in_flight` is a gauge, not an up-down counter, so that it reads the same whatever the
//! export temporality: a collector that turns cumulative sums into deltas (CloudWatch's
//! EMF exporter does) would otherwise report changes instead of the level.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::metrics::{Counter, Histogram, ObservableGauge};
use opentelemetry::KeyValue;

/// The instruments, created once from the global meter.
pub struct Metrics {
    messages: Counter<u64>,
    dead_letters: Counter<u64>,
    rows: Counter<u64>,
    bytes: Counter<u64>,
    duration: Histogram<f64>,
    extensions: Counter<u64>,
    /// Messages being handled now, read by the `lakeworker.in_flight` gauge's callback.
    in_flight: Arc<AtomicI64>,
    _in_flight_gauge: ObservableGauge<i64>,
    poll: Histogram<f64>,
}

/// The process's instruments. The first call binds them to the global meter provider, so
/// [`crate::telemetry::init`] must run before.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = opentelemetry::global::meter("lakeworker");
        let in_flight = Arc::new(AtomicI64::new(0));
        let observed = in_flight.clone();
        Metrics {
            messages: meter
                .u64_counter("lakeworker.messages")
                .with_unit("{message}")
                .with_description("Messages by what became of them")
                .build(),
            dead_letters: meter
                .u64_counter("lakeworker.dead_letters")
                .with_unit("{message}")
                .with_description("Dead-lettering attempts by how they ended")
                .build(),
            rows: meter
                .u64_counter("lakeworker.rows")
                .with_unit("{row}")
                .with_description("Rows read, written to the lake, quarantined")
                .build(),
            bytes: meter
                .u64_counter("lakeworker.bytes")
                .with_unit("By")
                .with_description("Bytes read from landing objects and written to the lake")
                .build(),
            duration: meter
                .f64_histogram("lakeworker.message.duration")
                .with_unit("s")
                .with_description("Receipt to done, per message")
                .build(),
            extensions: meter
                .u64_counter("lakeworker.visibility.extensions")
                .with_unit("{extension}")
                .with_description("Successful visibility heartbeats")
                .build(),
            _in_flight_gauge: meter
                .i64_observable_gauge("lakeworker.in_flight")
                .with_unit("{message}")
                .with_description("Messages being processed")
                .with_callback(move |gauge| gauge.observe(observed.load(Ordering::Relaxed), &[]))
                .build(),
            in_flight,
            poll: meter
                .f64_histogram("lakeworker.poll.duration")
                .with_unit("s")
                .with_description("ReceiveMessage call latency (long polls included)")
                .build(),
        }
    })
}

impl Metrics {
    pub fn message(&self, outcome: &'static str) {
        self.messages.add(1, &[KeyValue::new("outcome", outcome)]);
    }

    /// A dead-lettering attempt's end: `full`, `trimmed`, `pointer`, `kept_in_s3` or
    /// `retried`.
    pub fn dead_letter(&self, via: &'static str) {
        self.dead_letters.add(1, &[KeyValue::new("via", via)]);
    }

    pub fn received(&self, count: usize) {
        self.messages
            .add(count as u64, &[KeyValue::new("outcome", "received")]);
    }

    pub fn duration(&self, seconds: f64, outcome: &'static str) {
        self.duration
            .record(seconds, &[KeyValue::new("outcome", outcome)]);
    }

    pub fn rows(&self, dataset: &str, read: u64, written: u64, quarantined: u64) {
        for (kind, n) in [
            ("read", read),
            ("written", written),
            ("quarantined", quarantined),
        ] {
            self.rows.add(
                n,
                &[
                    KeyValue::new("kind", kind),
                    KeyValue::new("dataset", dataset.to_owned()),
                ],
            );
        }
    }

    pub fn bytes(&self, dataset: &str, direction: &'static str, n: u64) {
        self.bytes.add(
            n,
            &[
                KeyValue::new("direction", direction),
                KeyValue::new("dataset", dataset.to_owned()),
            ],
        );
    }

    pub fn extension(&self) {
        self.extensions.add(1, &[]);
    }

    pub fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn poll(&self, seconds: f64) {
        self.poll.record(seconds, &[]);
    }
}
