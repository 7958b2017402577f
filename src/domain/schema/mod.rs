//! Columns and the cell parser: how one text or JSON value becomes a typed value, and the
//! rules it must pass.
//!
//! Everything here is pure. The converter ([`crate::convert`]) asks [`Column::parse`] for
//! every cell of every row and appends the result to Arrow builders. A cell goes through:
//! null check (`nulls`), typing (`type`, `format`, `true_values`/`false_values`), rules
//! (`pattern`, `allowed`, `min`/`max`, `max_length`), then `required`.
//!
//! Where things are (every item is re-exported here: import from `crate::domain::schema`):
//!
//! - `column.rs`: the column model. [`Column`], [`ColumnType`], [`ValueFormat`], the rules
//!   ([`Rules`], [`Limit`], [`Allowed`]), the lake copy ([`LakeOutput`]), pii
//!   ([`Redaction`], [`pii_hash`]), the default null and boolean texts; and the Arrow
//!   mapping ([`ColumnType::arrow_type`], [`timestamp_type`], [`arrow_field`]).
//! - `cell.rs`: parsing one cell. [`RawCell`] in, [`Parsed`] or [`CellError`] out
//!   ([`Column::parse`]), with the rule checks and the error texts.
//! - `time.rs`: dates, timestamps and epochs. [`parse_date`], [`parse_timestamp`], the epoch
//!   range ([`MIN_TIMESTAMP_MICROS`], [`MAX_TIMESTAMP_MICROS`]), strftime checks, and the
//!   Arrow representations ([`date_to_days`], [`days_to_date`], [`micros_to_datetime`]).

mod cell;
mod column;
mod time;

pub use cell::{CellError, Parsed, RawCell, Shortcut, MAX_VALUE_IN_ERROR};
pub use column::{
    arrow_field, pii_hash, timestamp_type, Allowed, Column, ColumnType, LakeOutput, Limit,
    Redaction, Rules, ValueFormat, DEFAULT_FALSE, DEFAULT_NULLS, DEFAULT_TRUE, PII_OMITTED, UTC,
};
pub use time::{
    date_to_days, days_to_date, micros_to_datetime, parse_date, parse_timestamp, strftime_is_valid,
    MAX_TIMESTAMP_MICROS, MIN_TIMESTAMP_MICROS,
};

/// What the tests of every file here share.
#[cfg(test)]
mod test_support {
    use super::{Column, ColumnType, ValueFormat};

    /// A column `c` of `kind`, with the strftime `format` if one is given.
    pub(super) fn column(kind: ColumnType, required: bool, format: Option<&str>) -> Column {
        let mut column = Column::new("c", kind, required);
        column.format = format.map(|f| ValueFormat::Strftime(f.to_owned()));
        column
    }
}
