//! lakeworker: a long-running SQS worker that turns files landing in S3 into typed,
//! partitioned Parquet in a lake bucket and, for user datasets, rows in DynamoDB.
//!
//! One S3 message, from receive to delete, in six functions:
//!
//! ```text
//! SQS ─▶ 1 worker::pool::Poller::run          ReceiveMessage (long poll), one job per message
//!        2 worker::job::run                   heartbeat on; handle; disposition::decide; carry it out
//!        3 pipeline::Pipeline::handle         envelope::parse_from → route the key to a dataset
//!        4 pipeline::claim::claim_and_process pin the version, ledger claim, lease renewal, settle
//!        5 pipeline::object::process_object   download → convert → reject | TableSink::publish,
//!                                             bad rows, records (RecordStore::upsert)
//!        6 worker::deleter::delete_loop       DeleteMessageBatch, ten at a time
//! ```
//!
//! Layers, each depending only on those listed before it:
//! - [`domain`]: pure: message envelopes, datasets, schemas, lake keys, the ledger model.
//! - [`infer`]: `lakeworker infer`'s sampling and type inference (pure).
//! - [`config`]: TOML + `LAKEWORKER__…` env overrides → validated [`config::Settings`];
//!   [`telemetry`], `metrics`, `health`: logs, OpenTelemetry, the health endpoint.
//! - [`convert`]: streaming CSV / JSON lines → Arrow batches → Parquet / spool sinks.
//! - [`ports`]: the traits the layers below `cli` need from outside, one `StoreError`.
//! - `catalog`: Athena DDL and the partition registrar; [`table`]: table formats behind the
//!   `TableSink` port (Hive and Iceberg).
//! - `pipeline`: one message end to end against the ports.
//! - `worker`: pollers, jobs, heartbeats, dispositions, dead letters, batched deletes.
//! - [`aws`]: the ports over the AWS SDK; [`cli`]: the commands and the binary's wiring,
//!   the only layer that names [`aws`].
//! - `testing`: the in-memory fakes of the ports (test builds).
//! - [`allocator`]: the process's malloc settings, set once by the binary.

// What the binary, the integration tests, the benchmarks and the fuzz targets use is
// public; the layers in between are private.
pub mod allocator;
pub mod aws;
#[cfg(feature = "bench-fakes")]
pub mod bench;
mod catalog;
pub mod cli;
pub mod config;
pub mod convert;
pub mod domain;
mod health;
pub mod infer;
mod metrics;
mod pipeline;
pub mod ports;
pub mod table;
pub mod telemetry;
#[cfg(any(test, feature = "bench-fakes"))]
mod testing;
mod worker;
