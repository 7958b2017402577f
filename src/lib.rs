//! lakeworker: a long-running SQS worker that turns files landing in S3 into typed,
//! partitioned Parquet in a lake bucket and, for user datasets, rows in DynamoDB.
//!
//! ```text
//! SQS ──receive──▶ worker::pool ──▶ pipeline::Pipeline::handle(body)
//!                                     ├─ envelope::parse      body → objects | records | discard
//!                                     ├─ datasets::Router     key glob → Dataset
//!                                     ├─ convert::convert     S3 stream → validate → Parquet parts
//!                                     ├─ lake / records       part keys; DynamoDB items
//!                                     └─ aws::{s3, dynamodb}  upload parts, upsert rows
//!                        ◀── worker::disposition: delete | leave for a later delivery
//! ```
//!
//! Modules, one line each:
//! - [`config`]: TOML + `LAKEWORKER__…` env overrides → validated [`config::Settings`].
//! - [`telemetry`]: tracing subscriber (JSON or pretty).
//! - [`envelope`]: pure parsing of S3, SNS, EventBridge and inline-records bodies.
//! - [`datasets`], [`schema`]: datasets, key routing, column types, cell parsing.
//! - [`convert`]: streaming CSV / JSON lines → Arrow batches → Parquet / spool sinks.
//! - [`lake`]: deterministic lake keys; [`records`]: Arrow rows → DynamoDB items.
//! - [`pipeline`]: one message end to end, against the [`aws`] traits.
//! - [`worker`]: pollers, in-flight limit, batched deletes, shutdown.
//! - [`aws`]: thin SDK adapters behind `Queue`, `ObjectStore`, `RecordStore`.
//! - [`provision`]: create buckets, queues, notification and tables for dev setups.
//! - [`error`]: the job error type and its class (transient or permanent).

pub mod aws;
pub mod config;
pub mod convert;
pub mod datasets;
pub mod envelope;
pub mod error;
pub mod lake;
pub mod pipeline;
pub mod provision;
pub mod records;
pub mod schema;
pub mod telemetry;
pub mod worker;
