//! The columns `on_new_columns = "add"` gave a dataset, kept in the ledger table: one item
//! per dataset (hash key `schema:{dataset}`, range key `columns`) holding the list
//! `added_columns` (name, when, which file), its `revision`, and `catalog_columns`, how
//! many of the list the Hive catalog has. The list only grows, by conditional writes on
//! the revision, so tasks adding at once agree on one order.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use super::error::from_sdk;
use super::ledger::{n, owned, s, DynamoLedger};
use crate::domain::dataset::{AddedColumn, DatasetColumns};
use crate::domain::ledger::timestamp;
use crate::ports::{StoreError, StoreErrorKind};

/// Writes tried before an add gives up to a flood of concurrent adds (each lost race
/// means another task's add landed).
const ADD_TRIES: u32 = 20;

fn schema_key(dataset: &str) -> String {
    format!("schema:{dataset}")
}

const RANGE: &str = "columns";

impl DynamoLedger {
    /// The list and its revision (0 when there is none yet).
    async fn columns_item(&self, dataset: &str) -> Result<(DatasetColumns, u64), StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("object_uri", s(schema_key(dataset)))
            .key("object_version", s(RANGE))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("DynamoDB GetItem (columns)", e))?;
        let Some(item) = output.item else {
            return Ok((DatasetColumns::default(), 0));
        };
        // A damaged item is an error, never a shorter list: positions and ids follow it.
        let malformed = |what: &str| {
            StoreError::new(
                "DynamoDB GetItem (columns)",
                StoreErrorKind::Rejected,
                format!(
                    "the ledger item {} has a malformed {what}",
                    schema_key(dataset)
                ),
            )
        };
        let number = |name: &str| match item.get(name) {
            None => Ok(0),
            Some(value) => value
                .as_n()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| malformed(name)),
        };
        let added = match item.get("added_columns") {
            None => Vec::new(),
            Some(value) => value
                .as_l()
                .map_err(|_| malformed("added_columns"))?
                .iter()
                .map(|entry| added_column(entry).ok_or_else(|| malformed("added_columns entry")))
                .collect::<Result<_, _>>()?,
        };
        let columns = DatasetColumns {
            added,
            in_catalog: number("catalog_columns")? as usize,
        };
        Ok((columns, number("revision")?))
    }

    pub(super) async fn read_columns(&self, dataset: &str) -> Result<DatasetColumns, StoreError> {
        Ok(self.columns_item(dataset).await?.0)
    }

    pub(super) async fn append_columns(
        &self,
        dataset: &str,
        names: &[String],
        source: &str,
    ) -> Result<(DatasetColumns, Vec<String>), StoreError> {
        // The entries of our last write: if its answer was lost (the SDK's retry then
        // fails the condition), the list holds them and they are ours after all.
        let mut written: Vec<AddedColumn> = Vec::new();
        for _ in 0..ADD_TRIES {
            let (mut columns, revision) = self.columns_item(dataset).await?;
            let ours: Vec<String> = written
                .iter()
                .filter(|w| columns.added.contains(w))
                .map(|w| w.name.clone())
                .collect();
            if !ours.is_empty() {
                return Ok((columns, ours));
            }
            let mut new: Vec<String> = Vec::new();
            for name in names {
                // A name differing only in case from a listed one is not added (Athena
                // and Glue fold case): the caller finds it missing from the list.
                let listed = columns.names().any(|n| n.eq_ignore_ascii_case(name));
                if !listed && !new.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    new.push(name.clone());
                }
            }
            if new.is_empty() {
                return Ok((columns, new));
            }
            let at = timestamp(Utc::now());
            let entries: Vec<AddedColumn> = new
                .iter()
                .map(|name| AddedColumn {
                    name: name.clone(),
                    added_at: at.clone(),
                    source: source.to_owned(),
                })
                .collect();
            let values = entries.iter().map(column_value).collect();
            written.clone_from(&entries);
            let condition = if revision == 0 {
                "attribute_not_exists(revision)"
            } else {
                "revision = :revision"
            };
            let mut update = self
                .update_columns(dataset)
                .update_expression(
                    "SET added_columns = list_append(if_not_exists(added_columns, :empty), :new), \
                     revision = :next, updated_at = :now",
                )
                .condition_expression(condition)
                .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
                .expression_attribute_values(":new", AttributeValue::L(values))
                .expression_attribute_values(":next", n(revision + 1))
                .expression_attribute_values(":now", s(&at));
            if revision != 0 {
                update = update.expression_attribute_values(":revision", n(revision));
            }
            // `false`: another task added first; read its list and merge again.
            if owned("DynamoDB UpdateItem (columns)", update.send().await)? {
                columns.added.extend(entries);
                return Ok((columns, new));
            }
        }
        Err(StoreError::new(
            "DynamoDB UpdateItem (columns)",
            StoreErrorKind::Transient,
            format!("the added columns of {dataset} changed under {ADD_TRIES} writes in a row"),
        ))
    }

    pub(super) async fn set_columns_in_catalog(
        &self,
        dataset: &str,
        count: usize,
    ) -> Result<(), StoreError> {
        let result = self
            .update_columns(dataset)
            .update_expression("SET catalog_columns = :count")
            .condition_expression(
                "attribute_exists(revision) AND \
                 (attribute_not_exists(catalog_columns) OR catalog_columns < :count)",
            )
            .expression_attribute_values(":count", n(count))
            .send()
            .await;
        // Refused when as high already, or without a list: nothing to record either way.
        owned("DynamoDB UpdateItem (catalog columns)", result).map(|_| ())
    }

    fn update_columns(
        &self,
        dataset: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("object_uri", s(schema_key(dataset)))
            .key("object_version", s(RANGE))
    }
}

fn column_value(column: &AddedColumn) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("name".to_owned(), s(&column.name)),
        ("added_at".to_owned(), s(&column.added_at)),
        ("source".to_owned(), s(&column.source)),
    ]))
}

fn added_column(value: &AttributeValue) -> Option<AddedColumn> {
    let map = value.as_m().ok()?;
    let text = |name: &str| map.get(name).and_then(|v| v.as_s().ok()).cloned();
    Some(AddedColumn {
        name: text("name")?,
        added_at: text("added_at").unwrap_or_default(),
        source: text("source").unwrap_or_default(),
    })
}
