//! lakeworker: a long-running SQS worker that turns files landing in S3 into typed,
//! partitioned Parquet in a lake bucket and, for user datasets, rows in DynamoDB.
//!
//! ```text
//! SQS ──receive──▶ worker::pool ──▶ pipeline::Pipeline::handle(body)
//!                                     ├─ envelope::parse      body → objects | records | discard
//!                                     ├─ datasets::Router     key glob → Dataset
//!                                     ├─ ledger (claim)       object version → claimed | done | busy
//!                                     ├─ convert::convert     S3 stream → validate → Parquet parts
//!                                     ├─ lake / records       part keys; DynamoDB items
//!                                     ├─ aws::{s3, dynamodb}  upload parts, upsert rows
//!                                     └─ ledger (settle)      done | failed | released
//!                        ◀── worker::disposition: delete | retry later | dead-letter | release
//!                        (worker::heartbeat extends visibility while the job runs)
//! ```
//!
//! Modules, one line each:
//! - [`config`]: TOML + `LAKEWORKER__…` env overrides → validated [`config::Settings`].
//! - [`telemetry`]: tracing subscriber (JSON or pretty), OpenTelemetry export;
//!   [`metrics`]: the OpenTelemetry instruments.
//! - [`envelope`]: pure parsing of S3, SNS, EventBridge and inline-records bodies.
//! - [`datasets`], [`schema`]: datasets, key routing, column types, cell parsing.
//! - [`convert`]: streaming CSV / JSON lines → Arrow batches → Parquet / spool sinks.
//! - [`catalog`]: Athena / Glue tables, partitions and views for the lake.
//! - [`lake`]: deterministic lake keys; [`records`]: Arrow rows → DynamoDB items.
//! - [`ledger`]: one record per object version: claims, leases, status.
//! - [`pipeline`]: one message end to end, against the [`aws`] traits; [`job`]: its
//!   identity and cancellation.
//! - [`worker`]: pollers, heartbeats, dispositions (delete, retry, dead-letter, release),
//!   batched deletes, graceful shutdown.
//! - [`redrive`]: move dead-lettered messages back to the work queue.
//! - [`backfill`]: enqueue synthetic events for objects already in the landing bucket.
//! - [`aws`]: thin SDK adapters behind `Queue`, `ObjectStore`, `RecordStore`.
//! - [`health`]: `/healthz` and `/readyz` for orchestrators, and the healthcheck client.
//! - [`provision`]: create buckets, queues, notification and tables for dev setups.
//! - [`error`]: the job error type and its class (transient or permanent).

pub mod aws;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod convert;
pub mod domain;
pub mod health;
pub mod metrics;
pub mod pipeline;
pub mod ports;
pub mod table;
pub mod telemetry;
#[cfg(test)]
pub mod testing;
pub mod worker;
