//! The ledger in DynamoDB: hash key `object_uri` (`s3://bucket/key`), range key
//! `object_version` (`v:{version id}` or `e:{etag}`). Attribute names are compound words so
//! none collides with DynamoDB's reserved words (`status` is aliased as `#status`). Every
//! write is conditional: a claim on who holds the record, everything after it on the
//! owner (`lease_owner`) still holding a processing claim whose lease has not run out.
//! Outputs an attempt will publish are added to the string set `pending_outputs` before
//! the upload; `done` moves the final list to `output_keys` and drops the set.
//!
//! Iceberg commits keep their records here too ([`super::commits`]).
//!
//! The same table keeps the catalog's pending partitions (hash key
//! `catalog:{database}.{table}`, range key the partition value) from the moment they are
//! written until Athena has them, and the columns datasets added ([`super::columns`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use chrono::{DateTime, Utc};

use super::error::from_sdk;
use crate::domain::dataset::DatasetColumns;
use crate::domain::lake::NewPartition;
use crate::domain::ledger::{
    timestamp, Claim, ClaimOutcome, Completion, EarlierOutputs, LedgerKey, LedgerRecord, Status,
};
use crate::ports::{Ledger, StoreError, StoreErrorKind};

/// The ledger table's hash and range key attributes (both strings).
pub const LEDGER_KEYS: [&str; 2] = ["object_uri", "object_version"];

pub(super) const CONDITION_FAILED: &str = "ConditionalCheckFailedException";
/// The owner still holds a processing claim whose lease has not run out.
pub(super) const OWNED: &str =
    "lease_owner = :owner AND #status = :processing AND lease_expires_at > :now_ms";

/// Who may claim: nobody holds the record, or its lease ran out (or it had none) and it is
/// not finished; with a reprocess request, also a finished record not claimed for that
/// request before.
fn claim_condition(reprocess: bool) -> &'static str {
    if reprocess {
        "attribute_not_exists(object_uri) OR \
         ((attribute_not_exists(lease_expires_at) OR lease_expires_at < :now_ms) AND \
          ((#status <> :done AND #status <> :rejected) OR \
           attribute_not_exists(reprocess_request) OR reprocess_request <> :reprocess))"
    } else {
        "attribute_not_exists(object_uri) OR (#status <> :done AND #status <> :rejected AND \
         (attribute_not_exists(lease_expires_at) OR lease_expires_at < :now_ms))"
    }
}

/// The `:reprocess` and `:etag` values of a claim, when it has them.
fn reprocess_value(claim: &Claim) -> HashMap<String, AttributeValue> {
    let request = claim
        .reprocess
        .iter()
        .map(|r| (":reprocess".to_owned(), s(r)));
    let etag = claim.etag.iter().map(|e| (":etag".to_owned(), s(e)));
    request.chain(etag).collect()
}
/// Claim attempts when the record changes between a failed claim and the read after it.
const CLAIM_TRIES: u32 = 3;

/// The ledger table through the SDK.
#[derive(Clone, Debug)]
pub struct DynamoLedger {
    pub(super) client: aws_sdk_dynamodb::Client,
    pub(super) table: String,
}

pub(super) fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

pub(super) fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

pub(super) fn millis(time: DateTime<Utc>) -> AttributeValue {
    n(time.timestamp_millis())
}

impl DynamoLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoLedger {
            client,
            table: table.into(),
        }
    }

    pub(super) fn update(
        &self,
        key: &LedgerKey,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("object_uri", s(&key.uri))
            .key("object_version", s(&key.version))
            .expression_attribute_names("#status", "status")
    }

    /// One version's record, read consistently.
    pub async fn get(&self, key: &LedgerKey) -> Result<Option<LedgerRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("object_uri", s(&key.uri))
            .key("object_version", s(&key.version))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("DynamoDB GetItem", e))?;
        Ok(output.item.as_ref().map(record_from_item))
    }

    /// Every version of one object, for `lakeworker status s3://…`.
    pub async fn history(&self, uri: &str) -> Result<Vec<LedgerRecord>, StoreError> {
        let mut records = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("object_uri = :uri")
            .expression_attribute_values(":uri", s(uri))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk("DynamoDB Query", e))?;
            records.extend(page.items().iter().map(record_from_item));
        }
        records.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        Ok(records)
    }

    /// The most recently updated failed or rejected versions (a table scan: an operator's
    /// command, not a hot path).
    pub async fn failures(&self, limit: usize) -> Result<Vec<LedgerRecord>, StoreError> {
        let mut records = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("#status IN (:failed, :rejected)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", s(Status::Failed.as_str()))
            .expression_attribute_values(":rejected", s(Status::Rejected.as_str()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk("DynamoDB Scan", e))?;
            records.extend(page.items().iter().map(record_from_item));
        }
        records.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        records.truncate(limit);
        Ok(records)
    }
}

impl Ledger for DynamoLedger {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        for _ in 0..CLAIM_TRIES {
            let now = Utc::now();
            let lease_until = now + claim.lease;
            let result = self
                .update(&claim.key)
                .update_expression(format!(
                    "SET #status = :processing, lease_owner = :owner, lease_expires_at = :lease, \
                     started_at = :now, updated_at = :now, dataset_name = :dataset, message_id = :message, \
                     attempt_count = if_not_exists(attempt_count, :zero) + :one{}{} \
                     REMOVE finished_at",
                    if claim.reprocess.is_some() { ", reprocess_request = :reprocess" } else { "" },
                    if claim.etag.is_some() { ", object_etag = :etag" } else { "" }
                ))
                .condition_expression(claim_condition(claim.reprocess.is_some()))
                .set_expression_attribute_values(Some(reprocess_value(claim)))
                .expression_attribute_values(":processing", s(Status::Processing.as_str()))
                .expression_attribute_values(":done", s(Status::Done.as_str()))
                .expression_attribute_values(":rejected", s(Status::Rejected.as_str()))
                .expression_attribute_values(":owner", s(&claim.owner))
                .expression_attribute_values(":lease", millis(lease_until))
                .expression_attribute_values(":now", s(timestamp(now)))
                .expression_attribute_values(":now_ms", millis(now))
                .expression_attribute_values(":dataset", s(&claim.dataset))
                .expression_attribute_values(":message", s(&claim.message_id))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                .send()
                .await;
            let error = match result {
                Ok(output) => {
                    let record = record_from_item(&output.attributes.unwrap_or_default());
                    return Ok(ClaimOutcome::Claimed {
                        attempt: u32::try_from(record.attempts).unwrap_or(u32::MAX).max(1),
                        earlier: EarlierOutputs {
                            done: record.outputs,
                            pending: record.pending_outputs,
                            commits: record.commit_ids,
                        },
                    });
                }
                Err(e) => from_sdk("DynamoDB UpdateItem (claim)", e),
            };
            if !error.has_code(CONDITION_FAILED) {
                return Err(error);
            }
            // Someone else's record: find out whether it is finished or leased.
            let Some(record) = self.get(&claim.key).await? else {
                continue;
            };
            let asked_again = claim.reprocess.is_some() && record.reprocess != claim.reprocess;
            match (record.status, record.lease_expires_at) {
                (Some(status), _) if status.is_final() && !asked_again => {
                    return Ok(ClaimOutcome::Finished { status })
                }
                (_, Some(until)) if until > Utc::now() => {
                    return Ok(ClaimOutcome::Busy {
                        owner: record.owner.unwrap_or_default(),
                        until,
                    })
                }
                // The lease ran out in between: try again.
                _ => continue,
            }
        }
        Err(StoreError::new(
            "DynamoDB UpdateItem (claim)",
            StoreErrorKind::Transient,
            format!(
                "{} changed under {CLAIM_TRIES} claims in a row",
                claim.key.uri
            ),
        ))
    }

    async fn renew(&self, claim: &Claim) -> Result<bool, StoreError> {
        let now = Utc::now();
        let result = self
            .update(&claim.key)
            .update_expression("SET lease_expires_at = :lease, updated_at = :now")
            .condition_expression(OWNED)
            .expression_attribute_values(":owner", s(&claim.owner))
            .expression_attribute_values(":processing", s(Status::Processing.as_str()))
            .expression_attribute_values(":lease", millis(now + claim.lease))
            .expression_attribute_values(":now_ms", millis(now))
            .expression_attribute_values(":now", s(timestamp(now)))
            .send()
            .await;
        owned("DynamoDB UpdateItem (renew)", result)
    }

    async fn publishing(&self, claim: &Claim, outputs: &[String]) -> Result<bool, StoreError> {
        if outputs.is_empty() {
            return Ok(true);
        }
        let now = Utc::now();
        let result = self
            .update(&claim.key)
            .update_expression("ADD pending_outputs :outputs SET updated_at = :now")
            .condition_expression(OWNED)
            .expression_attribute_values(":owner", s(&claim.owner))
            .expression_attribute_values(":processing", s(Status::Processing.as_str()))
            .expression_attribute_values(":now_ms", millis(now))
            .expression_attribute_values(":now", s(timestamp(now)))
            .expression_attribute_values(":outputs", AttributeValue::Ss(outputs.to_vec()))
            .send()
            .await;
        owned("DynamoDB UpdateItem (publishing)", result)
    }

    async fn finish(&self, claim: &Claim, done: &Completion) -> Result<bool, StoreError> {
        self.settle(claim, Status::Done, done, None).await
    }

    async fn reject(
        &self,
        claim: &Claim,
        counts: &Completion,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.settle(claim, Status::Rejected, counts, Some(reason))
            .await
    }

    async fn fail(&self, claim: &Claim, error: &str) -> Result<(), StoreError> {
        self.end_attempt(claim, error).await
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.end_attempt(claim, "released: the worker stopped before finishing")
            .await
    }

    async fn version_with_etag(&self, uri: &str, etag: &str) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("object_uri = :uri")
            .filter_expression("object_etag = :etag")
            .expression_attribute_values(":uri", s(uri))
            .expression_attribute_values(":etag", s(etag))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("DynamoDB Query (version)", e))?;
        Ok(output
            .items()
            .iter()
            .filter_map(|item| item.get("object_version")?.as_s().ok())
            .filter_map(|version| version.strip_prefix("v:"))
            .map(str::to_owned)
            .next())
    }

    async fn note_partitions(
        &self,
        database: &str,
        partitions: &[NewPartition],
    ) -> Result<(), StoreError> {
        let now = s(timestamp(Utc::now()));
        let mut requests = Vec::with_capacity(partitions.len());
        for p in partitions {
            let item = HashMap::from([
                (
                    "object_uri".to_owned(),
                    s(catalog_key(database, &p.dataset)),
                ),
                ("object_version".to_owned(), s(&p.value)),
                ("partition_name".to_owned(), s(&p.partition_name)),
                ("partition_location".to_owned(), s(&p.location)),
                ("updated_at".to_owned(), now.clone()),
            ]);
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| rejected("DynamoDB BatchWriteItem (partitions)", e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        super::dynamodb::write_all(&self.client, &self.table, requests).await
    }

    async fn partitions_registered(
        &self,
        database: &str,
        partitions: &[NewPartition],
    ) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(partitions.len());
        for p in partitions {
            let key = HashMap::from([
                (
                    "object_uri".to_owned(),
                    s(catalog_key(database, &p.dataset)),
                ),
                ("object_version".to_owned(), s(&p.value)),
            ]);
            let delete = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(|e| rejected("DynamoDB BatchWriteItem (partitions)", e))?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        super::dynamodb::write_all(&self.client, &self.table, requests).await
    }

    async fn pending_partitions(
        &self,
        database: &str,
        dataset: &str,
    ) -> Result<Vec<NewPartition>, StoreError> {
        let mut pending = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("object_uri = :table")
            .expression_attribute_values(":table", s(catalog_key(database, dataset)))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk("DynamoDB Query (partitions)", e))?;
            for item in page.items() {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                if let (Some(value), Some(partition_name), Some(location)) = (
                    text("object_version"),
                    text("partition_name"),
                    text("partition_location"),
                ) {
                    pending.push(NewPartition {
                        dataset: dataset.to_owned(),
                        partition_name,
                        value,
                        location,
                    });
                }
            }
        }
        Ok(pending)
    }

    async fn dataset_columns(&self, dataset: &str) -> Result<DatasetColumns, StoreError> {
        self.read_columns(dataset).await
    }

    async fn add_columns(
        &self,
        dataset: &str,
        names: &[String],
        source: &str,
    ) -> Result<(DatasetColumns, Vec<String>), StoreError> {
        self.append_columns(dataset, names, source).await
    }

    async fn columns_in_catalog(&self, dataset: &str, count: usize) -> Result<(), StoreError> {
        self.set_columns_in_catalog(dataset, count).await
    }
}

/// The hash key under which a table's pending partitions are kept: it cannot collide
/// with an object's `s3://` URI.
fn catalog_key(database: &str, table: &str) -> String {
    format!("catalog:{database}.{table}")
}

fn rejected(operation: &'static str, error: impl std::fmt::Display) -> StoreError {
    StoreError::new(operation, StoreErrorKind::Rejected, error.to_string())
}

impl DynamoLedger {
    /// Records a final status with counts and outputs (and, for a rejection, why), if the
    /// owner still holds a live claim.
    async fn settle(
        &self,
        claim: &Claim,
        status: Status,
        done: &Completion,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let outputs = AttributeValue::L(done.outputs.iter().map(s).collect());
        let (expression, operation) = match reason {
            None => (
                "SET #status = :status, finished_at = :now, updated_at = :now, rows_in = :rows_in, \
                 rows_written = :rows_written, rows_rejected = :rows_rejected, \
                 rows_rescued = :rows_rescued, output_keys = :outputs \
                 REMOVE lease_expires_at, last_error, pending_outputs",
                "DynamoDB UpdateItem (finish)",
            ),
            Some(_) => (
                "SET #status = :status, finished_at = :now, updated_at = :now, rows_in = :rows_in, \
                 rows_written = :rows_written, rows_rejected = :rows_rejected, \
                 rows_rescued = :rows_rescued, output_keys = :outputs, last_error = :reason REMOVE lease_expires_at, pending_outputs",
                "DynamoDB UpdateItem (reject)",
            ),
        };
        let mut update = self
            .update(&claim.key)
            .update_expression(expression)
            .condition_expression(OWNED)
            .expression_attribute_values(":owner", s(&claim.owner))
            .expression_attribute_values(":processing", s(Status::Processing.as_str()))
            .expression_attribute_values(":now_ms", millis(now))
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":now", s(timestamp(now)))
            .expression_attribute_values(":rows_in", n(done.rows_in))
            .expression_attribute_values(":rows_written", n(done.rows_written))
            .expression_attribute_values(":rows_rejected", n(done.rows_rejected))
            .expression_attribute_values(":rows_rescued", n(done.rows_rescued))
            .expression_attribute_values(":outputs", outputs);
        if let Some(reason) = reason {
            update = update.expression_attribute_values(":reason", s(reason));
        }
        owned(operation, update.send().await)
    }

    /// Marks this owner's attempt failed and drops its lease, unless someone else owns the
    /// record by now.
    async fn end_attempt(&self, claim: &Claim, error: &str) -> Result<(), StoreError> {
        let now = timestamp(Utc::now());
        let result = self
            .update(&claim.key)
            .update_expression(
                "SET #status = :failed, last_error = :error, finished_at = :now, updated_at = :now \
                 REMOVE lease_expires_at",
            )
            .condition_expression("lease_owner = :owner AND #status = :processing")
            .expression_attribute_values(":failed", s(Status::Failed.as_str()))
            .expression_attribute_values(":processing", s(Status::Processing.as_str()))
            .expression_attribute_values(":owner", s(&claim.owner))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":now", s(now))
            .send()
            .await;
        owned("DynamoDB UpdateItem (end attempt)", result).map(|_| ())
    }
}

/// The result of a write conditioned on ownership: `false` when the condition failed.
pub(super) fn owned<T, E>(
    operation: &'static str,
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E>>,
) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) => {
            let error = from_sdk(operation, e);
            if error.has_code(CONDITION_FAILED) {
                Ok(false)
            } else {
                Err(error)
            }
        }
    }
}

fn record_from_item(item: &HashMap<String, AttributeValue>) -> LedgerRecord {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let number = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let count = |name: &str| number(name).and_then(|v| u64::try_from(v).ok());
    LedgerRecord {
        uri: text("object_uri").unwrap_or_default(),
        version: text("object_version").unwrap_or_default(),
        status: text("status").as_deref().and_then(Status::parse),
        attempts: count("attempt_count").unwrap_or(0),
        owner: text("lease_owner"),
        dataset: text("dataset_name"),
        message_id: text("message_id"),
        lease_expires_at: number("lease_expires_at").and_then(DateTime::from_timestamp_millis),
        started_at: text("started_at"),
        finished_at: text("finished_at"),
        updated_at: text("updated_at"),
        rows_in: count("rows_in"),
        rows_written: count("rows_written"),
        rows_rejected: count("rows_rejected"),
        rows_rescued: count("rows_rescued"),
        outputs: item
            .get("output_keys")
            .and_then(|v| v.as_l().ok())
            .map(|list| list.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        pending_outputs: item
            .get("pending_outputs")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
        commit_ids: item
            .get("commit_ids")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
        last_error: text("last_error"),
        reprocess: text("reprocess_request"),
        etag: text("object_etag"),
    }
}
