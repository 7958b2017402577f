//! Lake layout: where a converted part or a quarantined row or file goes. Pure functions,
//! so a retry computes the same keys and overwrites its own earlier attempt instead of
//! adding a duplicate.
//!
//! - parts: `{prefix}/{dataset}/{partition}={YYYY-MM-DD}/part-{id}.parquet`, and
//!   `part-{id}-{n}.parquet` for the n-th further part of a partition that went past the
//!   target file size
//! - bad rows: `{quarantine_prefix}/{dataset}/dt={YYYY-MM-DD}/{id}.rows.jsonl`
//! - a rejected file: `{quarantine_prefix}/{dataset}/dt={YYYY-MM-DD}/{id}/{file name}`, its
//!   report beside it as `{file name}.error.json`
//! - the raw zone: `{raw_prefix}/{dataset}/ingest_date={YYYY-MM-DD}/{id}/{source key}`
//! - a message body the dead-letter queue would not take:
//!   `{quarantine_prefix}/_dead_letters/{message id}.body`
//!
//! `id` is derived from the source bucket, key and version (version id, else ETag); `dt`
//! is the ingest date (the S3 event's date).

use sha2::{Digest, Sha256};

use crate::domain::envelope::ObjectRef;
use crate::domain::schema::days_to_date;

/// Hive's name for the partition of rows whose partition value is null.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// A stable id for one version of a source object: 32 hex digits of SHA-256 over bucket,
/// key and version (version id if present, else ETag).
pub fn object_id(object: &ObjectRef) -> String {
    let version = object.version_tag();
    let mut hash = Sha256::new();
    for part in [
        object.bucket.as_str(),
        object.key.as_str(),
        version.as_str(),
    ] {
        hash.update(part.as_bytes());
        // A separator that cannot occur in bucket names or UTF-8 keys keeps parts apart.
        hash.update([0xFF]);
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A Hive partition a job wrote to, as the catalog registers it (and the ledger keeps it
/// until then).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NewPartition {
    pub dataset: String,
    pub partition_name: String,
    /// `YYYY-MM-DD` or Hive's null partition.
    pub value: String,
    pub location: String,
}

/// A Hive partition value: a date in days since the epoch, or null.
pub type PartitionValue = Option<i32>;

/// The text of a partition value in a key: `YYYY-MM-DD`, or Hive's null partition.
pub fn partition_text(value: PartitionValue) -> String {
    match value.and_then(days_to_date) {
        Some(date) => date.format("%Y-%m-%d").to_string(),
        None => NULL_PARTITION.to_owned(),
    }
}

/// The lake key of one part: `seq` 0 is a partition's first part.
pub fn part_key(
    prefix: &str,
    dataset: &str,
    partition_name: &str,
    value: PartitionValue,
    id: &str,
    seq: u32,
) -> String {
    let dir = dataset_prefix(prefix, dataset);
    let partition = partition_text(value);
    match seq {
        0 => format!("{dir}/{partition_name}={partition}/part-{id}.parquet"),
        n => format!("{dir}/{partition_name}={partition}/part-{id}-{n}.parquet"),
    }
}

/// Where a file's bad rows go.
pub fn quarantine_rows_key(
    quarantine_prefix: &str,
    dataset: &str,
    ingest_date: i32,
    id: &str,
) -> String {
    let dir = dataset_prefix(quarantine_prefix, dataset);
    format!(
        "{dir}/dt={}/{id}.rows.jsonl",
        partition_text(Some(ingest_date))
    )
}

/// Where a rejected file is copied; its report is this key plus `.error.json`.
pub fn quarantine_file_key(
    quarantine_prefix: &str,
    dataset: &str,
    ingest_date: i32,
    id: &str,
    source_key: &str,
) -> String {
    let dir = dataset_prefix(quarantine_prefix, dataset);
    let name = source_key
        .rsplit('/')
        .find(|part| !part.is_empty())
        .unwrap_or("object");
    format!("{dir}/dt={}/{id}/{name}", partition_text(Some(ingest_date)))
}

/// Where the raw zone keeps a converted file's original:
/// `{raw_prefix}/{dataset}/ingest_date={YYYY-MM-DD}/{id}/{source key}`. The object id names
/// the version, so two versions of one key on one day do not overwrite each other; the
/// whole source key is kept (not only the file name), so files of the same name in
/// different folders do not either.
pub fn raw_key(
    raw_prefix: &str,
    dataset: &str,
    ingest_date: i32,
    id: &str,
    source_key: &str,
) -> String {
    let dir = dataset_prefix(raw_prefix, dataset);
    format!(
        "{dir}/ingest_date={}/{id}/{}",
        partition_text(Some(ingest_date)),
        source_key.trim_start_matches('/')
    )
}

/// The folder of message bodies the dead-letter queue would not take; no dataset name can
/// start with `_`.
pub const DEAD_LETTER_FOLDER: &str = "_dead_letters";

/// Where the body of a message the dead-letter queue would not take is kept: one key per
/// SQS message id, so a second delivery of the message overwrites the first copy.
pub fn dead_letter_body_key(quarantine_prefix: &str, message_id: &str) -> String {
    let id: String = message_id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    format!(
        "{}/{id}.body",
        dataset_prefix(quarantine_prefix, DEAD_LETTER_FOLDER)
    )
}

/// `{prefix}/{dataset}` (or just `{dataset}` with an empty prefix).
pub fn dataset_prefix(prefix: &str, dataset: &str) -> String {
    if prefix.is_empty() {
        dataset.to_owned()
    } else {
        format!("{prefix}/{dataset}")
    }
}

/// A dataset's table location, `s3://{bucket}/{prefix}/{dataset}/`.
pub fn dataset_location(bucket: &str, prefix: &str, dataset: &str) -> String {
    format!("s3://{bucket}/{}/", dataset_prefix(prefix, dataset))
}

/// One Hive partition's location, `s3://{bucket}/{prefix}/{dataset}/{name}={value}/`.
pub fn partition_location(
    bucket: &str,
    prefix: &str,
    dataset: &str,
    partition_name: &str,
    value: &str,
) -> String {
    format!(
        "{}{partition_name}={value}/",
        dataset_location(bucket, prefix, dataset)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, etag: Option<&str>, version: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: "landing".into(),
            key: key.into(),
            size: None,
            etag: etag.map(str::to_owned),
            version_id: version.map(str::to_owned),
            event_time: None,
            reprocess: None,
        }
    }

    #[test]
    fn ids_are_stable_and_depend_on_the_version() {
        let a = object_id(&object("users/a.csv", Some("e1"), None));
        assert_eq!(a.len(), 32);
        assert_eq!(a, object_id(&object("users/a.csv", Some("e1"), None)));
        assert_ne!(a, object_id(&object("users/a.csv", Some("e2"), None)));
        assert_ne!(a, object_id(&object("users/b.csv", Some("e1"), None)));
        assert_ne!(a, object_id(&object("users/a.csv", Some("e1"), Some("v1"))));
    }

    #[test]
    fn keys_follow_the_hive_layout() {
        assert_eq!(
            part_key("curated", "users", "signup_date", Some(19724), "abc", 0),
            "curated/users/signup_date=2024-01-02/part-abc.parquet"
        );
        assert_eq!(
            part_key("curated", "users", "signup_date", Some(19724), "abc", 2),
            "curated/users/signup_date=2024-01-02/part-abc-2.parquet"
        );
        assert_eq!(
            part_key("", "events", "ingest_date", None, "abc", 0),
            "events/ingest_date=__HIVE_DEFAULT_PARTITION__/part-abc.parquet"
        );
        assert_eq!(
            quarantine_rows_key("quarantine", "users", 19724, "abc"),
            "quarantine/users/dt=2024-01-02/abc.rows.jsonl"
        );
        assert_eq!(
            quarantine_file_key("q", "users", 19724, "abc", "users/2024/bad file.csv"),
            "q/users/dt=2024-01-02/abc/bad file.csv"
        );
        assert_eq!(
            raw_key("raw", "users", 19724, "abc", "users/2024/a b.csv"),
            "raw/users/ingest_date=2024-01-02/abc/users/2024/a b.csv"
        );
        assert_eq!(
            dead_letter_body_key("quarantine", "0f3e-a1/../x"),
            "quarantine/_dead_letters/0f3e-a1____x.body"
        );
        assert_eq!(dead_letter_body_key("", "m1"), "_dead_letters/m1.body");
    }
}
