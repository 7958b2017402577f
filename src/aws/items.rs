//! Arrow rows → DynamoDB items. Mapping: string → S, int and float → N, bool → BOOL,
//! date → S (`YYYY-MM-DD`), timestamp → S (RFC 3339, UTC, `Z`); nulls are omitted. Within
//! one upsert, rows with the same key keep only the last, so "last wins" holds and one
//! BatchWriteItem never names a key twice (DynamoDB refuses that).

use std::collections::HashMap;

use arrow::array::{Array, BooleanArray};
use arrow::record_batch::RecordBatch;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::config::RESCUED_COLUMN;
use crate::domain::dataset::Dataset;
use crate::domain::records::value_text;
use crate::domain::schema::ColumnType;

/// One DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// The items of a batch with every dataset column (as produced by [`crate::convert`]).
/// Of the columns beyond the dataset's, only `_rescued` is written (as a string, when the
/// row has one), so a rescued value is kept in the records table too; lineage is not.
pub fn items_from_batch(dataset: &Dataset, batch: &RecordBatch) -> Vec<Item> {
    let mut items: Vec<Item> = (0..batch.num_rows())
        .map(|_| Item::with_capacity(dataset.columns.len()))
        .collect();
    for (index, column) in dataset.columns.iter().enumerate() {
        let array = batch.column(index);
        for (row, item) in items.iter_mut().enumerate() {
            if array.is_null(row) {
                continue;
            }
            if let Some(value) = attribute(column.kind, array.as_ref(), row) {
                item.insert(column.name.clone(), value);
            }
        }
    }
    if let Ok(index) = batch.schema().index_of(RESCUED_COLUMN) {
        let array = batch.column(index);
        for (row, item) in items.iter_mut().enumerate() {
            if let Some(text) = value_text(ColumnType::String, array.as_ref(), row) {
                item.insert(RESCUED_COLUMN.to_owned(), AttributeValue::S(text));
            }
        }
    }
    items
}

fn attribute(kind: ColumnType, array: &dyn Array, row: usize) -> Option<AttributeValue> {
    if kind == ColumnType::Bool {
        return Some(AttributeValue::Bool(
            array.as_any().downcast_ref::<BooleanArray>()?.value(row),
        ));
    }
    let text = value_text(kind, array, row)?;
    Some(match kind {
        ColumnType::Int | ColumnType::Float => AttributeValue::N(text),
        _ => AttributeValue::S(text),
    })
}

/// The items one upsert of `batch` writes: one per row, the last of each records key.
pub fn upsert_items(dataset: &Dataset, batch: &RecordBatch) -> Vec<Item> {
    let key = dataset.records.as_ref().map_or(0, |t| t.key_index);
    last_per_key(items_from_batch(dataset, batch), &dataset.columns[key].name)
}

/// Keeps the last item per key, in the order of their last occurrence.
pub fn last_per_key(items: Vec<Item>, key: &str) -> Vec<Item> {
    let mut last: HashMap<String, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(AttributeValue::S(k)) = item.get(key) {
            last.insert(k.clone(), i);
        }
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, item)| match item.get(key) {
            Some(AttributeValue::S(k)) => last.get(k) == Some(i),
            _ => false,
        })
        .map(|(_, item)| item)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::records::{all_types_batch as batch, all_types_dataset as dataset};

    #[test]
    fn types_map_to_attributes_and_nulls_are_omitted() {
        let b = batch("id,n,f,b,d,t\nu1,-3,2.5,true,2024-01-02,2024-01-02T03:04:05.5Z\nu2,,,,,\n");
        let items = items_from_batch(&dataset(), &b);
        let first = &items[0];
        assert_eq!(first["id"], AttributeValue::S("u1".into()));
        assert_eq!(first["n"], AttributeValue::N("-3".into()));
        assert_eq!(first["f"], AttributeValue::N("2.5".into()));
        assert_eq!(first["b"], AttributeValue::Bool(true));
        assert_eq!(first["d"], AttributeValue::S("2024-01-02".into()));
        assert_eq!(
            first["t"],
            AttributeValue::S("2024-01-02T03:04:05.500Z".into())
        );
        assert!(!first.contains_key("_source"));
        assert_eq!(items[1].len(), 1);
    }

    #[test]
    fn last_item_per_key_wins() {
        let b = batch("id,n\na,1\nb,2\na,3\nc,4\nb,5\n");
        let items = last_per_key(items_from_batch(&dataset(), &b), "id");
        let pairs: Vec<(String, String)> = items
            .iter()
            .map(|i| {
                (
                    i["id"].as_s().unwrap().clone(),
                    i["n"].as_n().unwrap().clone(),
                )
            })
            .collect();
        let expected =
            [("a", "3"), ("c", "4"), ("b", "5")].map(|(a, b)| (a.to_owned(), b.to_owned()));
        assert_eq!(pairs, expected);
    }
}
