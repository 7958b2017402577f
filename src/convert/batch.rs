//! Building Arrow batches from good rows: one builder per dataset column, then `_extra`
//! (with `on_new_columns = "keep"`), `_rescued` (with a `rescue` policy), `_source` and
//! `_ingested_at`.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    StringArray, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::{ConvertError, Lineage, RowSource};
use crate::config::{EXTRA_COLUMN, INGESTED_AT_COLUMN, RESCUED_COLUMN, SOURCE_COLUMN};
use crate::domain::dataset::{Dataset, NewColumns};
use crate::domain::schema::{
    arrow_field, timestamp_type, CellError, Column, ColumnType, LakeOutput, Parsed, RawCell, UTC,
};

/// The schema of converted batches: the dataset's columns, `_extra` when kept,
/// `_rescued` when rescuing, then `_source` and `_ingested_at`.
pub fn full_schema(dataset: &Dataset) -> SchemaRef {
    let mut fields: Vec<Field> = dataset.columns.iter().map(arrow_field).collect();
    if dataset.policy.on_new_columns == NewColumns::Keep {
        fields.push(Field::new(EXTRA_COLUMN, DataType::Utf8, true));
    }
    if dataset.policy.rescues() {
        fields.push(Field::new(RESCUED_COLUMN, DataType::Utf8, true));
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

/// A bad cell kept under `on_invalid = "rescue"`: its column index and why it was refused.
pub(super) type RescuedCell = (usize, Box<CellError>);

/// Accumulates good rows into Arrow arrays.
pub(super) struct BatchBuilder<'d> {
    dataset: &'d Dataset,
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    extra: Option<StringBuilder>,
    rescued: Option<StringBuilder>,
    /// Each row's undeclared fields on their way to `_extra`.
    fields: serde_json::Map<String, Value>,
    rows: usize,
    source: String,
    ingested_at: i64,
}

impl<'d> BatchBuilder<'d> {
    pub(super) fn new(dataset: &'d Dataset, lineage: &Lineage, capacity: usize) -> Self {
        let capacity = capacity.min(64 * 1024);
        BatchBuilder {
            dataset,
            schema: full_schema(dataset),
            columns: dataset
                .columns
                .iter()
                .map(|c| ColumnBuilder::new(c, capacity))
                .collect(),
            extra: (dataset.policy.on_new_columns == NewColumns::Keep).then(StringBuilder::new),
            rescued: dataset.policy.rescues().then(StringBuilder::new),
            fields: serde_json::Map::new(),
            rows: 0,
            source: lineage.source.clone(),
            ingested_at: lineage.ingested_at,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.rows
    }

    /// The row's `_rescued` text (see [`rescued_object`]), when the dataset rescues and
    /// the row has something to rescue: `cells` are its bad cells kept as null.
    pub(super) fn rescued<S: RowSource>(
        &mut self,
        row: &S,
        cells: &[RescuedCell],
    ) -> Option<String> {
        self.rescued.as_ref()?;
        let mut fields = serde_json::Map::new();
        if self.dataset.policy.on_new_columns == NewColumns::Rescue {
            row.extra_fields(&mut fields);
        }
        rescued_object(self.dataset, fields, row, cells)
    }

    /// Appends a good row with its `_rescued` text (from [`BatchBuilder::rescued`]).
    pub(super) fn append<S: RowSource>(
        &mut self,
        parsed: &[Parsed],
        row: &S,
        rescued: Option<String>,
    ) {
        for (i, (builder, value)) in self.columns.iter_mut().zip(parsed).enumerate() {
            let cell = if *value == Parsed::Str {
                row.cell(i)
            } else {
                RawCell::Missing
            };
            builder.append(*value, cell);
        }
        if let Some(extra) = &mut self.extra {
            self.fields.clear();
            row.extra_fields(&mut self.fields);
            let object = (!self.fields.is_empty())
                .then(|| Value::Object(std::mem::take(&mut self.fields)).to_string());
            extra.append_option(object);
        }
        if let Some(builder) = &mut self.rescued {
            builder.append_option(rescued);
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
        if let Some(rescued) = &mut self.rescued {
            arrays.push(Arc::new(rescued.finish()));
        }
        arrays.extend(lineage_arrays(&self.source, self.ingested_at, rows));
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

/// `_source` and `_ingested_at` for `rows` rows.
pub(super) fn lineage_arrays(source: &str, ingested_at: i64, rows: usize) -> [ArrayRef; 2] {
    [
        Arc::new(StringArray::new_repeated(source, rows)),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(ingested_at, rows))
                .with_timezone(UTC),
        ),
    ]
}

/// The key of a `_rescued` object naming the rule each rescued cell failed (a leading `_`
/// is added while an undeclared column of the row has that name).
const RULES_KEY: &str = "_rules";

/// A row's `_rescued` JSON object, or `None` when nothing was rescued: the undeclared
/// `fields` (values as text), each bad cell's raw text under its column name, and under
/// [`RULES_KEY`] the rule each bad cell failed. A bad cell of a column the lake hashes or
/// drops is shown as its pii stand-in (or `<omitted>`), never in clear.
fn rescued_object<S: RowSource>(
    dataset: &Dataset,
    mut fields: serde_json::Map<String, Value>,
    row: &S,
    cells: &[RescuedCell],
) -> Option<String> {
    for value in fields.values_mut() {
        if !value.is_string() {
            *value = Value::String(value.to_string());
        }
    }
    if !cells.is_empty() {
        let mut rules = serde_json::Map::new();
        for (index, error) in cells {
            let (index, rule) = (*index, error.rule());
            let column = &dataset.columns[index];
            let text = match row.cell(index) {
                RawCell::Text(text) => text.to_owned(),
                RawCell::Json(Value::String(text)) => text.clone(),
                RawCell::Json(other) => other.to_string(),
                RawCell::Missing => String::new(),
            };
            let shown = match column.lake {
                LakeOutput::Keep { .. } => text,
                LakeOutput::Hash { .. } | LakeOutput::Drop => column
                    .pii_stand_in(&text)
                    .unwrap_or_else(|| OMITTED.to_owned()),
            };
            fields.insert(column.name.clone(), Value::String(shown));
            rules.insert(column.name.clone(), Value::String(rule.to_owned()));
        }
        let mut key = RULES_KEY.to_owned();
        while fields.contains_key(&key) {
            key.insert(0, '_');
        }
        fields.insert(key, Value::Object(rules));
    }
    (!fields.is_empty()).then(|| Value::Object(fields).to_string())
}

/// What `_rescued` shows for a bad cell of a column dropped from the lake (not pii).
const OMITTED: &str = "<omitted>";
