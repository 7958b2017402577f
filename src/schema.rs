//! Column types and the cell parser: how one text or JSON value becomes a typed value.
//!
//! Everything here is pure. The converter ([`crate::convert`]) asks [`Column::parse`] for
//! every cell of every row and appends the result to Arrow builders.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// The Arrow time zone of every timestamp column: instants are stored as UTC.
pub const UTC: &str = "UTC";

/// The type a column's values are cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int,
    Float,
    Bool,
    Date,
    Timestamp,
}

impl ColumnType {
    /// The Arrow type written to Parquet for this column type.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Int => DataType::Int64,
            ColumnType::Float => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => timestamp_type(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::Bool => "bool",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
        }
    }
}

/// Timestamp(microsecond, "UTC"), the one timestamp type of the lake.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
}

/// One column of a dataset, validated.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
    pub required: bool,
    /// strftime format for date and timestamp columns; `None` means ISO 8601 / RFC 3339.
    pub format: Option<String>,
}

/// A cell as the file presents it, before typing.
#[derive(Debug, Clone, Copy)]
pub enum RawCell<'a> {
    /// The column is absent from this row (JSON key missing, CSV column not in the header).
    Missing,
    Text(&'a str),
    Json(&'a serde_json::Value),
}

/// A typed cell value. Strings carry no data: the converter reads them again from the row,
/// which keeps this type `Copy` and the hot loop free of allocations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Parsed {
    Null,
    Str,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
}

/// Why one cell was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    #[error("required value is missing")]
    Missing,
    #[error("{value:?} is not {expected}")]
    Unparsable { value: String, expected: String },
}

/// How many characters of a bad value an error message repeats.
const MAX_VALUE_IN_ERROR: usize = 80;

impl Column {
    /// Types one cell. Empty text, JSON `null` and an absent key are null.
    pub fn parse(&self, cell: RawCell<'_>) -> Result<Parsed, CellError> {
        let parsed = match cell {
            RawCell::Missing => Parsed::Null,
            RawCell::Text(text) => self.parse_text(text)?,
            RawCell::Json(value) => self.parse_json(value)?,
        };
        if parsed == Parsed::Null && self.required {
            return Err(CellError::Missing);
        }
        Ok(parsed)
    }

    fn parse_text(&self, text: &str) -> Result<Parsed, CellError> {
        if self.kind == ColumnType::String {
            return Ok(if text.is_empty() {
                Parsed::Null
            } else {
                Parsed::Str
            });
        }
        let text = text.trim();
        if text.is_empty() {
            return Ok(Parsed::Null);
        }
        let parsed = match self.kind {
            ColumnType::String => Some(Parsed::Str),
            ColumnType::Int => text.parse().ok().map(Parsed::Int),
            ColumnType::Float => text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Parsed::Float),
            ColumnType::Bool => parse_bool(text).map(Parsed::Bool),
            ColumnType::Date => parse_date(text, self.format.as_deref()).map(Parsed::Date),
            ColumnType::Timestamp => {
                parse_timestamp(text, self.format.as_deref()).map(Parsed::Timestamp)
            }
        };
        parsed.ok_or_else(|| self.unparsable(text))
    }

    fn parse_json(&self, value: &serde_json::Value) -> Result<Parsed, CellError> {
        use serde_json::Value;
        match (value, self.kind) {
            (Value::Null, _) => Ok(Parsed::Null),
            (Value::String(text), _) => self.parse_text(text),
            // Nested values, numbers and booleans are kept as their JSON text.
            (_, ColumnType::String) => Ok(Parsed::Str),
            (Value::Number(n), ColumnType::Int) => n
                .as_i64()
                .map(Parsed::Int)
                .ok_or_else(|| self.unparsable(&n.to_string())),
            (Value::Number(n), ColumnType::Float) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Parsed::Float)
                .ok_or_else(|| self.unparsable(&n.to_string())),
            (Value::Bool(b), ColumnType::Bool) => Ok(Parsed::Bool(*b)),
            // Epoch numbers for timestamps are a later feature; refuse them clearly for now.
            (other, _) => Err(self.unparsable(&other.to_string())),
        }
    }

    fn unparsable(&self, value: &str) -> CellError {
        let mut shown: String = value.chars().take(MAX_VALUE_IN_ERROR).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        let expected = match (&self.format, self.kind) {
            (Some(format), kind) => format!("a {} in format {format:?}", kind.name()),
            (None, ColumnType::Int) => "a 64-bit integer".to_owned(),
            (None, ColumnType::Float) => "a finite number".to_owned(),
            (None, ColumnType::Bool) => "a boolean (true/false, t/f, yes/no, 1/0)".to_owned(),
            (None, ColumnType::Date) => "a date (YYYY-MM-DD)".to_owned(),
            (None, ColumnType::Timestamp) => "a timestamp (RFC 3339)".to_owned(),
            (None, ColumnType::String) => "a string".to_owned(),
        };
        CellError::Unparsable {
            value: shown,
            expected,
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["true", "t", "yes", "y"];
    const FALSE: [&str; 4] = ["false", "f", "no", "n"];
    match text {
        "1" => Some(true),
        "0" => Some(false),
        _ if TRUE.iter().any(|t| t.eq_ignore_ascii_case(text)) => Some(true),
        _ if FALSE.iter().any(|f| f.eq_ignore_ascii_case(text)) => Some(false),
        _ => None,
    }
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(date) => date,
    None => panic!("1970-01-01 is a date"),
};

/// Days since the Unix epoch, the Arrow Date32 representation.
pub fn date_to_days(date: NaiveDate) -> i32 {
    // NaiveDate spans about ±262,000 years, well inside i32 days.
    (date - EPOCH).num_days() as i32
}

/// The date of an Arrow Date32 value.
pub fn days_to_date(days: i32) -> Option<NaiveDate> {
    EPOCH.checked_add_signed(chrono::Duration::days(days.into()))
}

/// The instant of an Arrow microsecond timestamp.
pub fn micros_to_datetime(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

fn parse_date(text: &str, format: Option<&str>) -> Option<i32> {
    NaiveDate::parse_from_str(text, format.unwrap_or("%Y-%m-%d"))
        .ok()
        .map(date_to_days)
}

/// Parses a timestamp to UTC microseconds. Without a format: RFC 3339, or
/// `YYYY-MM-DD[T ]HH:MM:SS[.fff]` read as UTC. With a format that has an offset (`%z`,
/// `%:z`) the offset is honoured; otherwise the time is read as UTC.
fn parse_timestamp(text: &str, format: Option<&str>) -> Option<i64> {
    let instant = match format {
        Some(format) => DateTime::parse_from_str(text, format)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| NaiveDateTime::parse_from_str(text, format).map(|t| t.and_utc()))
            .ok()?,
        None => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| {
                NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
            })
            .or_else(|_| {
                NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map(|t| t.and_utc())
            })
            .ok()?,
    };
    Some(instant.timestamp_micros())
}

/// Whether `format` is a strftime pattern chrono understands.
pub fn strftime_is_valid(format: &str) -> bool {
    !format.is_empty() && StrftimeItems::new(format).all(|item| !matches!(item, Item::Error))
}

/// The Arrow field for a column.
pub fn arrow_field(column: &Column) -> Field {
    Field::new(&column.name, column.kind.arrow_type(), !column.required)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(kind: ColumnType, required: bool, format: Option<&str>) -> Column {
        Column {
            name: "c".into(),
            kind,
            required,
            format: format.map(str::to_owned),
        }
    }

    #[test]
    fn text_values_are_typed() {
        let int = column(ColumnType::Int, false, None);
        assert_eq!(int.parse(RawCell::Text(" 42 ")), Ok(Parsed::Int(42)));
        assert!(int.parse(RawCell::Text("4.2")).is_err());
        let float = column(ColumnType::Float, false, None);
        assert_eq!(
            float.parse(RawCell::Text("1.5e3")),
            Ok(Parsed::Float(1500.0))
        );
        assert!(float.parse(RawCell::Text("NaN")).is_err());
        let boolean = column(ColumnType::Bool, false, None);
        assert_eq!(boolean.parse(RawCell::Text("Yes")), Ok(Parsed::Bool(true)));
        assert_eq!(boolean.parse(RawCell::Text("0")), Ok(Parsed::Bool(false)));
        assert!(boolean.parse(RawCell::Text("maybe")).is_err());
    }

    #[test]
    fn empty_is_null_and_required_null_is_an_error() {
        let optional = column(ColumnType::Int, false, None);
        assert_eq!(optional.parse(RawCell::Text("")), Ok(Parsed::Null));
        assert_eq!(optional.parse(RawCell::Missing), Ok(Parsed::Null));
        let required = column(ColumnType::String, true, None);
        assert_eq!(required.parse(RawCell::Text("")), Err(CellError::Missing));
        assert_eq!(
            required.parse(RawCell::Json(&serde_json::Value::Null)),
            Err(CellError::Missing)
        );
        assert_eq!(required.parse(RawCell::Text(" x ")), Ok(Parsed::Str));
    }

    #[test]
    fn dates_use_iso_or_the_given_format() {
        let iso = column(ColumnType::Date, false, None);
        assert_eq!(iso.parse(RawCell::Text("1970-01-02")), Ok(Parsed::Date(1)));
        let slashes = column(ColumnType::Date, false, Some("%Y/%m/%d"));
        assert_eq!(
            slashes.parse(RawCell::Text("2012/01/01")),
            Ok(Parsed::Date(15340))
        );
        let err = slashes.parse(RawCell::Text("2012-01-01")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#""2012-01-01" is not a date in format "%Y/%m/%d""#
        );
        let words = column(ColumnType::Date, false, Some("%b %d %Y"));
        assert_eq!(
            words.parse(RawCell::Text("Jan 1 2000")),
            Ok(Parsed::Date(10957))
        );
    }

    #[test]
    fn timestamps_are_utc_microseconds() {
        let ts = column(ColumnType::Timestamp, false, None);
        let expect = Parsed::Timestamp(1_000_000);
        assert_eq!(ts.parse(RawCell::Text("1970-01-01T00:00:01Z")), Ok(expect));
        assert_eq!(
            ts.parse(RawCell::Text("1970-01-01T01:00:01+01:00")),
            Ok(expect)
        );
        assert_eq!(ts.parse(RawCell::Text("1970-01-01 00:00:01")), Ok(expect));
        assert_eq!(
            ts.parse(RawCell::Text("1970-01-01T00:00:00.25")),
            Ok(Parsed::Timestamp(250_000))
        );
        let custom = column(ColumnType::Timestamp, false, Some("%d/%m/%Y %H:%M"));
        assert_eq!(
            custom.parse(RawCell::Text("01/01/1970 00:01")),
            Ok(Parsed::Timestamp(60_000_000))
        );
    }

    #[test]
    fn json_values_are_typed() {
        let v = serde_json::json!({"n": 7, "f": 2.5, "b": true, "o": {"a": 1}, "s": "12"});
        let int = column(ColumnType::Int, false, None);
        assert_eq!(int.parse(RawCell::Json(&v["n"])), Ok(Parsed::Int(7)));
        assert_eq!(int.parse(RawCell::Json(&v["s"])), Ok(Parsed::Int(12)));
        assert!(int.parse(RawCell::Json(&v["f"])).is_err());
        let float = column(ColumnType::Float, false, None);
        assert_eq!(float.parse(RawCell::Json(&v["n"])), Ok(Parsed::Float(7.0)));
        let text = column(ColumnType::String, false, None);
        assert_eq!(text.parse(RawCell::Json(&v["o"])), Ok(Parsed::Str));
        let boolean = column(ColumnType::Bool, false, None);
        assert_eq!(
            boolean.parse(RawCell::Json(&v["b"])),
            Ok(Parsed::Bool(true))
        );
        assert!(boolean.parse(RawCell::Json(&v["o"])).is_err());
    }

    #[test]
    fn long_bad_values_are_shortened_in_errors() {
        let int = column(ColumnType::Int, false, None);
        let long = "x".repeat(500);
        let message = int.parse(RawCell::Text(&long)).unwrap_err().to_string();
        assert!(message.len() < 150, "{message}");
    }

    #[test]
    fn strftime_validation() {
        assert!(strftime_is_valid("%Y/%m/%d"));
        assert!(!strftime_is_valid("%Q"));
        assert!(!strftime_is_valid(""));
    }
}
