//! `lakeworker backfill`: lists objects already in the landing bucket and enqueues a
//! synthetic S3 `ObjectCreated` event for each, so data that landed before the worker
//! existed (or was fixed in place) is processed exactly as new data is. The ledger makes
//! re-runs harmless: an object version already `done` is deleted from the queue unread.
//!
//! With `--reprocess`, the events carry a reprocess request id (`lakeworker.reprocess` in
//! the record): a version already `done` or `rejected` is claimed and processed once more
//! for that request (and only once, however often its event is delivered), and the
//! outputs the earlier run recorded that the new one does not rewrite are removed.
//!
//! Pure parts (parsing the target, building an event body) are apart from the AWS calls.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::EXIT_CONFIG;
use crate::aws::error::from_sdk;
use crate::aws::Clients;
use crate::config::Settings;
use crate::domain::envelope::S3Event;
use crate::ports::StoreError;

/// SQS's limit on entries per SendMessageBatch.
const BATCH: usize = 10;
/// Tries per batch entry before giving up.
const SEND_TRIES: u32 = 3;

/// Why a backfill could not run.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("{0:?} is not an s3://bucket/prefix URI")]
    Target(String),
    #[error("s3://{bucket} is not the landing bucket s3://{landing}; the worker refuses events for other buckets")]
    NotLanding { bucket: String, landing: String },
    #[error("no dataset named {0:?} in the config")]
    UnknownDataset(String),
    #[error(transparent)]
    Aws(#[from] StoreError),
    #[error("{failed} event(s) could not be sent after {SEND_TRIES} tries; first: {first}")]
    Send { failed: usize, first: String },
}

/// `s3://bucket/prefix` → (bucket, prefix); the prefix may be empty.
pub fn parse_target(uri: &str) -> Result<(String, String), BackfillError> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| BackfillError::Target(uri.into()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(BackfillError::Target(uri.into()));
    }
    Ok((bucket.into(), prefix.into()))
}

/// A listed landing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: i64,
    pub etag: String,
    /// RFC 3339; the event's time, so `ingest_date` is the day the object landed.
    pub last_modified: String,
}

/// The body of a synthetic S3 notification for one object, shaped like S3's own (the
/// domain's [`S3Event`], which form-encodes the key as S3 does), with `eventName`
/// `ObjectCreated:Backfill`, and with `lakeworker.reprocess` when it is a reprocess request.
pub fn event_body(bucket: &str, object: &Listed, reprocess: Option<&str>) -> String {
    let mut event = S3Event::new("ObjectCreated:Backfill", bucket, &object.key)
        .etag(&object.etag)
        .at(&object.last_modified);
    event.size = u64::try_from(object.size).ok();
    event.reprocess = reprocess.map(str::to_owned);
    event.body()
}

/// What to backfill and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Only objects of this dataset.
    pub dataset: Option<String>,
    /// List and route, send nothing.
    pub dry_run: bool,
    /// Process versions already done again, for this request id.
    pub reprocess: Option<String>,
}

/// What a backfill found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub listed: usize,
    /// Objects per dataset that were (or, dry, would be) enqueued.
    pub enqueued: BTreeMap<String, usize>,
    /// Keys no dataset (or not the chosen one) matches, with the dataset they match if any.
    pub skipped: usize,
    /// Dry run: each key and its dataset.
    pub planned: Vec<(String, String)>,
}

/// Lists `target` (in the landing bucket) and enqueues an event per object that routes to
/// a dataset (only `options.dataset`, when given). Dry: lists and routes, sends nothing.
pub async fn backfill(
    settings: &Settings,
    clients: &Clients,
    target: &str,
    options: &Options,
) -> Result<Report, BackfillError> {
    let (dataset, dry_run) = (options.dataset.as_deref(), options.dry_run);
    let (bucket, prefix) = parse_target(target)?;
    if bucket != settings.landing.bucket {
        return Err(BackfillError::NotLanding {
            bucket,
            landing: settings.landing.bucket.clone(),
        });
    }
    if let Some(name) = dataset {
        settings
            .datasets
            .by_name(name)
            .ok_or_else(|| BackfillError::UnknownDataset(name.into()))?;
    }
    let mut report = Report::default();
    let mut pending: Vec<String> = Vec::new();
    let mut pages = clients
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("S3 ListObjectsV2", e))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            if key.ends_with('/') {
                continue; // a "folder" placeholder
            }
            report.listed += 1;
            let routed = settings.datasets.route(key);
            let Some(found) = routed.filter(|d| dataset.is_none_or(|name| d.name == name)) else {
                report.skipped += 1;
                continue;
            };
            *report.enqueued.entry(found.name.clone()).or_default() += 1;
            let listed = Listed {
                key: key.to_owned(),
                size: object.size().unwrap_or_default(),
                etag: object
                    .e_tag()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned(),
                last_modified: object
                    .last_modified()
                    .and_then(|t| t.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok())
                    .unwrap_or_else(|| crate::domain::ledger::timestamp(chrono::Utc::now())),
            };
            if dry_run {
                report.planned.push((listed.key, found.name.clone()));
                continue;
            }
            pending.push(event_body(&bucket, &listed, options.reprocess.as_deref()));
            if pending.len() == BATCH {
                send(clients, &settings.queue.url, std::mem::take(&mut pending)).await?;
            }
        }
    }
    if !pending.is_empty() {
        send(clients, &settings.queue.url, pending).await?;
    }
    Ok(report)
}

/// Sends up to 10 bodies in one SendMessageBatch, resending failed entries.
async fn send(clients: &Clients, queue: &str, bodies: Vec<String>) -> Result<(), BackfillError> {
    let mut left: Vec<(String, String)> = bodies
        .into_iter()
        .enumerate()
        .map(|(n, body)| (n.to_string(), body))
        .collect();
    let mut last_error = String::new();
    for attempt in 1..=SEND_TRIES {
        let entries = left
            .iter()
            .map(|(id, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(id)
                    .message_body(body)
                    .build()
                    .map_err(|e| {
                        StoreError::new(
                            "SQS SendMessageBatch",
                            crate::ports::StoreErrorKind::Rejected,
                            e.to_string(),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        match clients
            .sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
                if let Some(first) = out.failed().first() {
                    last_error = format!("{}: {}", first.code(), first.message().unwrap_or(""));
                }
                left.retain(|(id, _)| failed.contains(&id.as_str()));
            }
            Err(e) => last_error = from_sdk("SQS SendMessageBatch", e).to_string(),
        }
        if left.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt))).await;
    }
    Err(BackfillError::Send {
        failed: left.len(),
        first: last_error,
    })
}

/// The command: runs it and prints what it did.
pub async fn command(
    settings: Arc<Settings>,
    target: String,
    options: Options,
) -> anyhow::Result<ExitCode> {
    let clients = crate::aws::Clients::connect(&settings.aws).await;
    let dry_run = options.dry_run;
    let report = match backfill(&settings, &clients, &target, &options).await {
        Ok(report) => report,
        Err(
            e @ (BackfillError::Target(_)
            | BackfillError::NotLanding { .. }
            | BackfillError::UnknownDataset(_)),
        ) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(e) => return Err(e.into()),
    };
    for (key, dataset) in &report.planned {
        println!("{dataset}\t{key}");
    }
    let total: usize = report.enqueued.values().sum();
    let per_dataset: Vec<String> = report
        .enqueued
        .iter()
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    println!(
        "listed {} object(s); {} {} ({}); {} skipped (no matching dataset)",
        report.listed,
        total,
        if dry_run {
            "would be enqueued (dry run)"
        } else {
            "enqueued"
        },
        per_dataset.join(", "),
        report.skipped
    );
    if let Some(request) = &options.reprocess {
        println!("reprocess request {request}: versions already done are processed once more");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::envelope::{self, Envelope};

    #[test]
    fn targets_parse_and_bad_ones_say_so() {
        assert_eq!(
            parse_target("s3://landing/users/2024/").unwrap(),
            ("landing".into(), "users/2024/".into())
        );
        assert_eq!(
            parse_target("s3://landing").unwrap(),
            ("landing".into(), String::new())
        );
        for bad in ["landing/users", "s3://", "s3:///x"] {
            assert!(
                matches!(parse_target(bad), Err(BackfillError::Target(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn synthetic_events_parse_back_to_the_same_object() {
        let listed = Listed {
            key: "users/a b+c ü%.csv".into(),
            size: 42,
            etag: "abc".into(),
            last_modified: "2024-05-06T07:08:09Z".into(),
        };
        let body = event_body("landing", &listed, None);
        assert!(body.contains("a+b%2Bc+%C3%BC%25.csv"), "{body}");
        let Envelope::Objects(objects) = envelope::parse(&body).unwrap() else {
            panic!("{body}")
        };
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].bucket, "landing");
        assert_eq!(objects[0].key, listed.key);
        assert_eq!(objects[0].etag.as_deref(), Some("abc"));
        assert_eq!(objects[0].size, Some(42));
        assert_eq!(
            objects[0].event_time.map(|t| t.to_rfc3339()),
            Some("2024-05-06T07:08:09+00:00".into())
        );
        assert_eq!(objects[0].reprocess, None);

        let body = event_body("landing", &listed, Some("r-1"));
        let Envelope::Objects(objects) = envelope::parse(&body).unwrap() else {
            panic!("{body}")
        };
        assert_eq!(objects[0].reprocess.as_deref(), Some("r-1"));
        assert_eq!(objects[0].key, listed.key);
    }
}
