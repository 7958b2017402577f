//! The ledger: one record per source object version, so a redelivered message is
//! recognised and two deliveries of the same object never work at once.
//!
//! A job claims an object with a conditional write that only one owner wins: the record is
//! new, or it is not finished and its lease has run out (or a reprocess request asks for a
//! finished one again). The owner renews the lease while it works; before it uploads
//! anything it records the outputs it will publish; at the end it records `done` (with
//! counts and outputs) or `failed` (with the error). Every one of these writes is
//! conditioned on the owner still holding a live lease, so a job that lost its lease can
//! never settle. A delivery of a `done` object is deleted without work; a delivery that
//! finds a live lease backs off until the lease ends. A crashed worker's lease simply
//! expires.
//!
//! Outputs are `s3://bucket/key` URIs. A claim returns the outputs earlier attempts
//! recorded (published or done), so the attempt that finishes can remove those it did not
//! rewrite (after a change of `target_file_size`, say): every recorded output of a version
//! is either part of its final outputs or deleted.
//!
//! This module holds the types; the [`crate::ports::Ledger`] port stores them (DynamoDB in
//! production).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::envelope::ObjectRef;

/// Where an object version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Claimed by an owner whose lease may or may not still be live.
    Processing,
    /// Every output is durable.
    Done,
    /// The last attempt failed (or was released at shutdown); it can be claimed again.
    Failed,
    /// The file was refused for good (an answered question, not worth retrying).
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processing => "processing",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Processing,
            Status::Done,
            Status::Failed,
            Status::Rejected,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Finished statuses are not worked on again.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Done | Status::Rejected)
    }
}

/// The ledger key: the object's URI and its version tag (see [`ObjectRef::version_tag`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerKey {
    pub uri: String,
    pub version: String,
}

impl LedgerKey {
    pub fn of(object: &ObjectRef) -> LedgerKey {
        let version = object.version_tag();
        LedgerKey {
            uri: object.uri(),
            // DynamoDB key attributes may not be empty strings.
            version: if version.is_empty() {
                "-".into()
            } else {
                version
            },
        }
    }
}

/// One owner's claim on one object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: LedgerKey,
    /// `{worker id}/{message id}/{claim number}`: unique per claim, so two deliveries of
    /// one message handled by the same process still exclude each other.
    pub owner: String,
    pub lease: Duration,
    pub dataset: String,
    pub message_id: String,
    /// A reprocess request (`lakeworker backfill --reprocess`): a finished version may be
    /// claimed again, once per request id.
    pub reprocess: Option<String>,
    /// The version's ETag, kept so an ETag-only event for a version that is gone can
    /// still be matched to its record ([`crate::ports::Ledger::version_with_etag`]).
    pub etag: Option<String>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This job owns the object now; `attempt` counts claims of this version; `earlier`
    /// are the outputs earlier attempts recorded.
    Claimed {
        attempt: u32,
        earlier: EarlierOutputs,
    },
    /// Already finished by someone: nothing to do.
    Finished { status: Status },
    /// Someone else holds a live lease until `until`.
    Busy { owner: String, until: DateTime<Utc> },
}

/// What earlier attempts of a version recorded (`s3://` URIs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EarlierOutputs {
    /// The outputs of the last finished run (a complete set), when there was one.
    pub done: Vec<String>,
    /// What unfinished attempts recorded before publishing: they may exist, maybe partly.
    pub pending: Vec<String>,
    /// The Iceberg commits earlier attempts joined: one of them may have landed.
    pub commits: Vec<String>,
}

impl EarlierOutputs {
    /// Every earlier output, once.
    pub fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self.done.iter().chain(&self.pending).cloned().collect();
        all.sort();
        all.dedup();
        all
    }
}

/// What a finished object produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    pub rows_in: u64,
    pub rows_written: u64,
    pub rows_rejected: u64,
    /// Written rows with values kept in `_rescued`.
    pub rows_rescued: u64,
    /// `s3://bucket/key` of every output.
    pub outputs: Vec<String>,
}

/// `s3://{bucket}/{key}`, as the ledger names outputs.
pub fn output_uri(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// A ledger record as stored, for `lakeworker status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerRecord {
    pub uri: String,
    pub version: String,
    pub status: Option<Status>,
    pub attempts: u64,
    pub owner: Option<String>,
    pub dataset: Option<String>,
    pub message_id: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: Option<String>,
    pub rows_in: Option<u64>,
    pub rows_written: Option<u64>,
    pub rows_rejected: Option<u64>,
    pub rows_rescued: Option<u64>,
    pub outputs: Vec<String>,
    /// Outputs an unfinished attempt recorded before publishing them: they may exist.
    pub pending_outputs: Vec<String>,
    /// The Iceberg commits attempts joined ([`crate::ports::CommitLog::join_commit`]).
    pub commit_ids: Vec<String>,
    pub last_error: Option<String>,
    /// The last reprocess request this version was claimed for.
    pub reprocess: Option<String>,
    /// The version's ETag, as its last claim knew it.
    pub etag: Option<String>,
}

impl fmt::Display for LedgerRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status.map_or("?", Status::as_str);
        writeln!(
            f,
            "{} [{}]: {status}, {} attempt(s)",
            self.uri, self.version, self.attempts
        )?;
        let mut field = |name: &str, value: Option<String>| match value {
            Some(value) => writeln!(f, "  {name}: {value}"),
            None => Ok(()),
        };
        field("dataset", self.dataset.clone())?;
        field("owner", self.owner.clone())?;
        field("message", self.message_id.clone())?;
        field("lease until", self.lease_expires_at.map(timestamp))?;
        field("started", self.started_at.clone())?;
        field("finished", self.finished_at.clone())?;
        field("updated", self.updated_at.clone())?;
        if let (Some(rows_in), Some(written), Some(rejected)) =
            (self.rows_in, self.rows_written, self.rows_rejected)
        {
            let rescued = match self.rows_rescued {
                Some(n) if n > 0 => format!(", {n} with rescued values"),
                _ => String::new(),
            };
            field(
                "rows",
                Some(format!(
                    "{rows_in} in, {written} written, {rejected} bad{rescued}"
                )),
            )?;
        }
        for output in &self.outputs {
            field("output", Some(output.clone()))?;
        }
        for output in &self.pending_outputs {
            field("published by an unfinished attempt", Some(output.clone()))?;
        }
        field("reprocess request", self.reprocess.clone())?;
        field("last error", self.last_error.clone())
    }
}

/// RFC 3339 with milliseconds, as the ledger stores times.
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_prefer_the_version_id() {
        let mut object = ObjectRef {
            bucket: "b".into(),
            key: "k".into(),
            size: None,
            etag: Some("e1".into()),
            version_id: None,
            event_time: None,
            reprocess: None,
        };
        assert_eq!(LedgerKey::of(&object).version, "e:e1");
        object.version_id = Some("v7".into());
        assert_eq!(LedgerKey::of(&object).version, "v:v7");
        object.version_id = None;
        object.etag = None;
        assert_eq!(
            LedgerKey::of(&object),
            LedgerKey {
                uri: "s3://b/k".into(),
                version: "-".into()
            }
        );
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            Status::Processing,
            Status::Done,
            Status::Failed,
            Status::Rejected,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert!(Status::Done.is_final() && Status::Rejected.is_final());
        assert!(!Status::Failed.is_final());
    }
}

/// One batched Iceberg commit as the ledger keeps it (see [`crate::table::iceberg`]):
/// written before the catalog is asked to commit, so that after a crash the objects a
/// commit id carried are known; `snapshot_id` is set once the snapshot is known to have
/// landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    /// The id the snapshot summary carries (`lakeworker.commit-id`).
    pub id: String,
    /// `{database}.{table}`.
    pub table: String,
    /// The object versions whose rows the commit's data files hold.
    pub objects: Vec<LedgerKey>,
    pub snapshot_id: Option<i64>,
}

impl CommitRecord {
    pub fn carries(&self, key: &LedgerKey) -> bool {
        self.objects.contains(key)
    }
}
