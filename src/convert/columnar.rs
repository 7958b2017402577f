//! Typing a chunk column by column: the fast way for a chunk whose rows are all good.
//!
//! Row by row ([`super::engine`]), every cell costs a dispatch on its column's type, a
//! lookup of its field and a dispatch on its builder. Here each column is typed in one
//! loop over its cells into a builder of the column's own type: a CSV chunk's fields
//! ([`super::csv::Grid`]), or the cells a JSON-lines chunk was scanned into
//! ([`super::jsonl::JsonGrid`]). Plainly good cells go through the column's
//! [`Shortcut`](crate::domain::schema::Shortcut), the rest through
//! [`Column::parse_into`] (what the row path calls, so the same values and verdicts).
//!
//! The first cell that fails, any row the splitter or the JSON scan refused, an
//! undeclared field to keep in `_extra` or `_rescued` (a CSV header's, or a JSON line's
//! key), and any dataset needing per-row work (a `unique_key`, DynamoDB records) send the
//! chunk back to the row path, which then says what was wrong with which row: a good
//! chunk is typed once, a chunk with a bad row at most twice, and once most of a file's
//! chunks (after eight) have needed the row path, the engine stops trying this one for
//! that file.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    new_null_array, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    PrimitiveBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::ArrowPrimitiveType;
use arrow::record_batch::RecordBatch;

use super::batch::{full_schema, lineage_arrays};
use super::csv::{CsvChunk, HeaderMap};
use super::jsonl::{Cell, JsonGrid, LineChunk};
use super::{ConvertError, Lineage};
use crate::domain::dataset::Dataset;
use crate::domain::schema::{arrow_field, Column, ColumnType, Parsed, RawCell, Shortcut, UTC};
use serde_json::Value;

#[cfg(test)]
thread_local! {
    /// Tests turn the column path off to compare it with the row path.
    pub(super) static ROWS_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Chunks this thread typed column by column, and tried to, for tests of its use.
    pub(super) static TYPED_CHUNKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    pub(super) static TRIED_CHUNKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether chunks of `dataset` may be typed column by column at all; `header` is a CSV
/// file's (JSON lines have none).
pub(super) fn applies(dataset: &Dataset, header: Option<&HeaderMap>) -> bool {
    #[cfg(test)]
    if ROWS_ONLY.with(std::cell::Cell::get) {
        return false;
    }
    dataset.policy.unique_key.is_empty()
        && dataset.records.is_none()
        && !header.is_some_and(HeaderMap::keeps_extra_fields)
}

/// The chunk's rows as one batch (every dataset column, `_extra` or `_rescued` all null
/// where the schema has them, lineage), or `None` when a row needs the row path.
pub(super) fn csv_chunk(
    chunk: &CsvChunk,
    header: &HeaderMap,
    dataset: &Dataset,
    lineage: &Lineage,
) -> Result<Option<RecordBatch>, ConvertError> {
    #[cfg(test)]
    TRIED_CHUNKS.with(|n| n.set(n.get() + 1));
    let Some(grid) = chunk.grid(header.width()) else {
        return Ok(None);
    };
    let rows = grid.rows();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(dataset.columns.len() + 4);
    for (index, column) in dataset.columns.iter().enumerate() {
        let typed = match header.field_of(index) {
            Some(field) => {
                let shortcut = column.shortcut();
                let mut slot = Parsed::Null;
                let parse = move |text: &str| text_cell(column, shortcut, text, &mut slot);
                typed_column(column, grid.column(field), rows, parse, |text| text)
            }
            None => absent_column(column, rows),
        };
        match typed {
            Some(array) => arrays.push(array),
            None => return Ok(None),
        }
    }
    finish(dataset, lineage, arrays, rows).map(Some)
}

/// The chunk's lines as one batch, as [`csv_chunk`] does for a CSV chunk, and the
/// undeclared keys they hold; `None` when a line needs the row path.
pub(super) fn json_chunk(
    chunk: &LineChunk,
    dataset: &Dataset,
    lineage: &Lineage,
) -> Result<Option<(RecordBatch, BTreeSet<String>)>, ConvertError> {
    #[cfg(test)]
    TRIED_CHUNKS.with(|n| n.set(n.get() + 1));
    let Some(grid) = chunk.grid(dataset) else {
        return Ok(None);
    };
    let rows = grid.rows();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(dataset.columns.len() + 4);
    for (index, column) in dataset.columns.iter().enumerate() {
        let shortcut = column.shortcut();
        let mut slot = Parsed::Null;
        // Numbers read as text are what serde_json makes of them (with its
        // `float_roundtrip` feature, which Cargo.toml turns on: floats correctly rounded,
        // as `str::parse` does), but for `-0` (a float to serde_json, so no integer).
        let numbers_as_text: fn(&str) -> bool = match column.kind {
            ColumnType::Int => |json: &str| json != "-0",
            ColumnType::Float => |_: &str| true,
            _ => |_: &str| false,
        };
        let grid = &grid;
        let parse = move |cell: Cell| {
            match cell {
                Cell::Str(..) | Cell::Unescaped(..) => {
                    return text_cell(column, shortcut, grid.text(cell), &mut slot);
                }
                Cell::Number(..) if numbers_as_text(grid.json(cell)) => {
                    if let Some(parsed) = shortcut.parse(grid.json(cell)) {
                        return Some(parsed);
                    }
                }
                _ => {}
            }
            // The rest as the row path has it: missing, or serde_json's value.
            let value = match cell {
                Cell::Missing => None,
                _ => Some(json_value(grid, cell)?),
            };
            let raw = value.as_ref().map_or(RawCell::Missing, RawCell::Json);
            column.parse_into(raw, &mut slot).ok()?;
            Some(slot)
        };
        let text = |cell: Cell| match cell {
            Cell::Str(..) | Cell::Unescaped(..) => Cow::Borrowed(grid.text(cell)),
            _ => Cow::Owned(json_value(grid, cell).map_or_else(String::new, |v| v.to_string())),
        };
        match typed_column(
            column,
            grid.column(index).iter().copied(),
            rows,
            parse,
            text,
        ) {
            Some(array) => arrays.push(array),
            None => return Ok(None),
        }
    }
    let batch = finish(dataset, lineage, arrays, rows)?;
    Ok(Some((batch, grid.new_columns)))
}

/// What [`Column::parse_into`] makes of a text cell (through the shortcut when that can
/// tell); `None` when the cell fails.
#[inline]
fn text_cell(
    column: &Column,
    shortcut: Shortcut<'_>,
    text: &str,
    slot: &mut Parsed,
) -> Option<Parsed> {
    shortcut.parse(text).or_else(|| {
        column
            .parse_into(RawCell::Text(text), slot)
            .ok()
            .map(|()| *slot)
    })
}

/// A null, bool, number or nested cell as serde_json's value (what the row path types);
/// `None` when serde_json refuses it (a number out of range), which the row path
/// reports, and for a string or missing cell, which have none (they are typed as text,
/// or as missing).
fn json_value(grid: &JsonGrid<'_>, cell: Cell) -> Option<Value> {
    match cell {
        Cell::Null => Some(Value::Null),
        Cell::Bool(b) => Some(Value::Bool(b)),
        Cell::Number(..) | Cell::Nested(..) => serde_json::from_str(grid.json(cell)).ok(),
        Cell::Str(..) | Cell::Unescaped(..) | Cell::Missing => None,
    }
}

/// The batch of a chunk's typed `arrays`: `_extra` and `_rescued` all null where the
/// schema has them, then the lineage.
fn finish(
    dataset: &Dataset,
    lineage: &Lineage,
    mut arrays: Vec<ArrayRef>,
    rows: usize,
) -> Result<RecordBatch, ConvertError> {
    let schema = full_schema(dataset);
    // `_extra` and `_rescued` (where the schema has them, in its order, before the
    // lineage): no undeclared field is kept (see `applies`) and no cell failed.
    for field in &schema.fields()[arrays.len()..schema.fields().len() - 2] {
        arrays.push(new_null_array(field.data_type(), rows));
    }
    arrays.extend(lineage_arrays(&lineage.source, lineage.ingested_at, rows));
    #[cfg(test)]
    TYPED_CHUNKS.with(|n| n.set(n.get() + 1));
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// A column the header lacks: all null, unless it is required.
fn absent_column(column: &Column, rows: usize) -> Option<ArrayRef> {
    let mut slot = Parsed::Null;
    column.parse_into(RawCell::Missing, &mut slot).ok()?;
    Some(new_null_array(arrow_field(column).data_type(), rows))
}

/// One column's cells typed in a loop by `parse` (what [`Column::parse_into`] makes of
/// a cell); `None` at the first cell that fails. A string cell's text is `text(cell)`.
fn typed_column<C: Copy, T: AsRef<str>>(
    column: &Column,
    cells: impl Iterator<Item = C>,
    rows: usize,
    parse: impl FnMut(C) -> Option<Parsed>,
    text: impl Fn(C) -> T,
) -> Option<ArrayRef> {
    match column.kind {
        ColumnType::String => {
            let mut parse = parse;
            let mut builder = StringBuilder::with_capacity(rows, rows * 16);
            for cell in cells {
                match parse(cell)? {
                    Parsed::Str => builder.append_value(text(cell)),
                    _ => builder.append_null(),
                }
            }
            Some(Arc::new(builder.finish()))
        }
        ColumnType::Bool => {
            let mut parse = parse;
            let mut builder = BooleanBuilder::with_capacity(rows);
            for cell in cells {
                builder.append_option(match parse(cell)? {
                    Parsed::Bool(v) => Some(v),
                    _ => None,
                });
            }
            Some(Arc::new(builder.finish()))
        }
        ColumnType::Int => primitive(
            Int64Builder::with_capacity(rows),
            cells,
            parse,
            |p| match p {
                Parsed::Int(v) => Some(v),
                _ => None,
            },
        ),
        ColumnType::Float => {
            primitive(
                Float64Builder::with_capacity(rows),
                cells,
                parse,
                |p| match p {
                    Parsed::Float(v) => Some(v),
                    _ => None,
                },
            )
        }
        ColumnType::Date => primitive(
            Date32Builder::with_capacity(rows),
            cells,
            parse,
            |p| match p {
                Parsed::Date(v) => Some(v),
                _ => None,
            },
        ),
        ColumnType::Timestamp => {
            let builder = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone(UTC);
            primitive(builder, cells, parse, |p| match p {
                Parsed::Timestamp(v) => Some(v),
                _ => None,
            })
        }
    }
}

/// A column of a primitive type: `value` is the parsed cell's value when it has one (a
/// null has none).
fn primitive<C, T: ArrowPrimitiveType>(
    mut builder: PrimitiveBuilder<T>,
    cells: impl Iterator<Item = C>,
    mut parse: impl FnMut(C) -> Option<Parsed>,
    value: impl Fn(Parsed) -> Option<T::Native>,
) -> Option<ArrayRef> {
    for cell in cells {
        builder.append_option(value(parse(cell)?));
    }
    Some(Arc::new(builder.finish()))
}
