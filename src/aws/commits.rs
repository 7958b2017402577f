//! The ledger's side of batched Iceberg commits, in the ledger table
//! ([`crate::ports::CommitLog`]):
//! - an object version's record gains the string set `commit_ids`: every commit it joined;
//! - a commit record, hash key `commit#{id}` (range key `-`): `table_name`, the string set
//!   `commit_objects` (`{version}\t{uri}` per object) and, once landed, `snapshot_id`;
//! - a table's commit lease, hash key `table-lease#{database}.{table}` (range key `-`):
//!   `lease_owner` and `lease_expires_at` (milliseconds).

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use super::error::from_sdk;
use super::ledger::{millis, owned, s, DynamoLedger, CONDITION_FAILED, OWNED};
use crate::domain::ledger::{timestamp, Claim, CommitRecord, LedgerKey, Status};
use crate::ports::{CommitLog, StoreError};

/// The range key of commit records and table leases.
const SINGLE: &str = "-";

fn commit_key(id: &str) -> String {
    format!("commit#{id}")
}

fn lease_key(table: &str) -> String {
    format!("table-lease#{table}")
}

/// `{version}\t{uri}`: a version tag never holds a tab, so the first one splits.
fn object_entry(key: &LedgerKey) -> String {
    format!("{}\t{}", key.version, key.uri)
}

fn parse_entry(entry: &str) -> Option<LedgerKey> {
    let (version, uri) = entry.split_once('\t')?;
    Some(LedgerKey {
        uri: uri.to_owned(),
        version: version.to_owned(),
    })
}

impl CommitLog for DynamoLedger {
    async fn join_commit(&self, claim: &Claim, commit_id: &str) -> Result<bool, StoreError> {
        let now = Utc::now();
        let result = self
            .update(&claim.key)
            .update_expression("ADD commit_ids :commit SET updated_at = :now")
            .condition_expression(OWNED)
            .expression_attribute_values(":commit", AttributeValue::Ss(vec![commit_id.into()]))
            .expression_attribute_values(":owner", s(&claim.owner))
            .expression_attribute_values(":processing", s(Status::Processing.as_str()))
            .expression_attribute_values(":now_ms", millis(now))
            .expression_attribute_values(":now", s(timestamp(now)))
            .send()
            .await;
        owned("DynamoDB UpdateItem (join commit)", result)
    }

    async fn commit_ids(&self, key: &LedgerKey) -> Result<Vec<String>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("object_uri", s(&key.uri))
            .key("object_version", s(&key.version))
            .projection_expression("commit_ids")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("DynamoDB GetItem (commit ids)", e))?;
        Ok(output
            .item
            .and_then(|item| item.get("commit_ids")?.as_ss().ok().cloned())
            .unwrap_or_default())
    }

    async fn record_commit(&self, commit: &CommitRecord) -> Result<(), StoreError> {
        let objects: Vec<String> = commit.objects.iter().map(object_entry).collect();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("object_uri", s(commit_key(&commit.id)))
            .item("object_version", s(SINGLE))
            .item("table_name", s(&commit.table))
            .item("commit_objects", AttributeValue::Ss(objects))
            .item("updated_at", s(timestamp(Utc::now())))
            .condition_expression("attribute_not_exists(object_uri)")
            .send()
            .await;
        // `false`: written before, by this committer's earlier try, with the same objects.
        owned("DynamoDB PutItem (commit record)", result).map(|_| ())
    }

    async fn commit_record(&self, id: &str) -> Result<Option<CommitRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("object_uri", s(commit_key(id)))
            .key("object_version", s(SINGLE))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("DynamoDB GetItem (commit record)", e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let objects = item
            .get("commit_objects")
            .and_then(|v| v.as_ss().ok())
            .map(|entries| entries.iter().filter_map(|e| parse_entry(e)).collect())
            .unwrap_or_default();
        Ok(Some(CommitRecord {
            id: id.to_owned(),
            table: item
                .get("table_name")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default(),
            objects,
            snapshot_id: item
                .get("snapshot_id")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok()),
        }))
    }

    async fn commit_landed(&self, id: &str, snapshot_id: i64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("object_uri", s(commit_key(id)))
            .key("object_version", s(SINGLE))
            .update_expression("SET snapshot_id = :snapshot, updated_at = :now")
            .condition_expression("attribute_exists(object_uri)")
            .expression_attribute_values(":snapshot", AttributeValue::N(snapshot_id.to_string()))
            .expression_attribute_values(":now", s(timestamp(Utc::now())))
            .send()
            .await
            .map_err(|e| from_sdk("DynamoDB UpdateItem (commit landed)", e))?;
        Ok(())
    }

    async fn take_table_lease(
        &self,
        table: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("object_uri", s(lease_key(table)))
            .key("object_version", s(SINGLE))
            .update_expression("SET lease_owner = :owner, lease_expires_at = :until")
            .condition_expression(
                "attribute_not_exists(object_uri) OR lease_owner = :owner OR lease_expires_at < :now_ms",
            )
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", millis(now + lease))
            .expression_attribute_values(":now_ms", millis(now))
            .send()
            .await;
        owned("DynamoDB UpdateItem (table lease)", result)
    }

    async fn drop_table_lease(&self, table: &str, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("object_uri", s(lease_key(table)))
            .key("object_version", s(SINGLE))
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = from_sdk("DynamoDB DeleteItem (table lease)", e);
                if error.has_code(CONDITION_FAILED) {
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_entries_round_trip_whatever_the_key_holds() {
        let key = LedgerKey {
            uri: "s3://landing/odd\tkey with spaces.csv".into(),
            version: "v:3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into(),
        };
        assert_eq!(parse_entry(&object_entry(&key)), Some(key));
        assert_eq!(parse_entry("no tab"), None);
    }
}
