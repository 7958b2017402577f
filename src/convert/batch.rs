//! Building Arrow batches from good rows: one builder per dataset column, then `_extra`
//! (with `extra_columns = "keep"`), `_source` and `_ingested_at`.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    StringArray, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::{ConvertError, Lineage, RowSource};
use crate::config::{EXTRA_COLUMN, INGESTED_AT_COLUMN, SOURCE_COLUMN};
use crate::domain::dataset::{Dataset, ExtraColumns};
use crate::domain::schema::{
    arrow_field, timestamp_type, Column, ColumnType, Parsed, RawCell, UTC,
};

/// The schema of converted batches: the dataset's columns, `_extra` when kept, then
/// `_source` and `_ingested_at`.
pub fn full_schema(dataset: &Dataset) -> SchemaRef {
    let mut fields: Vec<Field> = dataset.columns.iter().map(arrow_field).collect();
    if dataset.policy.extra_columns == ExtraColumns::Keep {
        fields.push(Field::new(EXTRA_COLUMN, DataType::Utf8, true));
    }
    fields.push(Field::new(SOURCE_COLUMN, DataType::Utf8, false));
    fields.push(Field::new(INGESTED_AT_COLUMN, timestamp_type(), false));
    Arc::new(Schema::new(fields))
}

enum ColumnBuilder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(column: &Column, capacity: usize) -> Self {
        match column.kind {
            ColumnType::String => {
                ColumnBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            ColumnType::Int => ColumnBuilder::Int(Int64Builder::with_capacity(capacity)),
            ColumnType::Float => ColumnBuilder::Float(Float64Builder::with_capacity(capacity)),
            ColumnType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            ColumnType::Timestamp => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(UTC),
            ),
        }
    }

    /// Appends a parsed value; strings are read again from the raw cell.
    fn append(&mut self, value: Parsed, cell: RawCell<'_>) {
        match (self, value) {
            (ColumnBuilder::Str(b), Parsed::Str) => match cell {
                RawCell::Text(text) => b.append_value(text),
                RawCell::Json(Value::String(text)) => b.append_value(text),
                RawCell::Json(other) => b.append_value(other.to_string()),
                RawCell::Missing => b.append_null(),
            },
            (ColumnBuilder::Int(b), Parsed::Int(v)) => b.append_value(v),
            (ColumnBuilder::Float(b), Parsed::Float(v)) => b.append_value(v),
            (ColumnBuilder::Bool(b), Parsed::Bool(v)) => b.append_value(v),
            (ColumnBuilder::Date(b), Parsed::Date(v)) => b.append_value(v),
            (ColumnBuilder::Timestamp(b), Parsed::Timestamp(v)) => b.append_value(v),
            // Null, or (impossible by construction) a value of another type.
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Str(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Str(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => ArrayBuilder::finish(b),
        }
    }
}

/// Accumulates good rows into Arrow arrays.
pub(super) struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    extra: Option<StringBuilder>,
    rows: usize,
    source: String,
    ingested_at: i64,
}

impl BatchBuilder {
    pub(super) fn new(dataset: &Dataset, lineage: &Lineage, capacity: usize) -> Self {
        let capacity = capacity.min(64 * 1024);
        BatchBuilder {
            schema: full_schema(dataset),
            columns: dataset
                .columns
                .iter()
                .map(|c| ColumnBuilder::new(c, capacity))
                .collect(),
            extra: (dataset.policy.extra_columns == ExtraColumns::Keep).then(StringBuilder::new),
            rows: 0,
            source: lineage.source.clone(),
            ingested_at: lineage.ingested_at,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.rows
    }

    pub(super) fn append<S: RowSource>(&mut self, parsed: &[Parsed], row: &S) {
        for (i, (builder, value)) in self.columns.iter_mut().zip(parsed).enumerate() {
            let cell = if *value == Parsed::Str {
                row.cell(i)
            } else {
                RawCell::Missing
            };
            builder.append(*value, cell);
        }
        if let Some(extra) = &mut self.extra {
            extra.append_option(row.extra());
        }
        self.rows += 1;
    }

    pub(super) fn finish(&mut self) -> Result<RecordBatch, ConvertError> {
        let rows = std::mem::take(&mut self.rows);
        let mut arrays: Vec<ArrayRef> =
            self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        if let Some(extra) = &mut self.extra {
            arrays.push(Arc::new(extra.finish()));
        }
        arrays.push(Arc::new(StringArray::new_repeated(&self.source, rows)));
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(
                self.ingested_at,
                rows,
            ))
            .with_timezone(UTC),
        ));
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}
