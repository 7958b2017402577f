//! The column model: a dataset's [`Column`] with its [`ColumnType`], date and timestamp
//! [`ValueFormat`], null and boolean texts, [`Rules`], lake copy ([`LakeOutput`]) and pii
//! [`Redaction`]. Config validation builds these; typing a cell and checking its rules is
//! [`super::cell`].
//!
//! The Arrow mapping lives here too, being a few lines: [`ColumnType::arrow_type`],
//! [`timestamp_type`] and [`arrow_field`].

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use regex::Regex;
use sha2::{Digest, Sha256};

use super::cell::{shorten, trim, Parsed};

/// The Arrow time zone of every timestamp column: instants are stored as UTC.
pub const UTC: &str = "UTC";

/// Strings read as null when a dataset or column does not say otherwise.
pub const DEFAULT_NULLS: [&str; 4] = ["", "NULL", "null", "NA"];
/// Booleans when a column does not list its own (compared case-insensitively).
pub const DEFAULT_TRUE: [&str; 5] = ["true", "t", "yes", "y", "1"];
pub const DEFAULT_FALSE: [&str; 5] = ["false", "f", "no", "n", "0"];

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

/// How date and timestamp text is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueFormat {
    /// A chrono strftime pattern.
    Strftime(String),
    /// Timestamps: RFC 3339 only.
    Rfc3339,
    /// Timestamps: seconds since the Unix epoch (text or JSON number, fractions allowed).
    EpochSeconds,
    /// Timestamps: milliseconds since the Unix epoch (an integer).
    EpochMillis,
}

/// A bound in the column's own type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Int(i64),
    Float(f64),
    /// Days since the epoch.
    Date(i32),
    /// Microseconds since the epoch.
    Timestamp(i64),
}

impl Limit {
    /// How `value` compares with this bound; `None` when the types differ (config
    /// validation gives every bound its column's type).
    pub(super) fn compare(self, value: Parsed) -> Option<std::cmp::Ordering> {
        match (value, self) {
            (Parsed::Int(v), Limit::Int(l)) => Some(v.cmp(&l)),
            (Parsed::Float(v), Limit::Float(l)) => v.partial_cmp(&l),
            (Parsed::Date(v), Limit::Date(l)) => Some(v.cmp(&l)),
            (Parsed::Timestamp(v), Limit::Timestamp(l)) => Some(v.cmp(&l)),
            _ => None,
        }
    }
}

/// The values a column allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Strings(HashSet<String>),
    Ints(HashSet<i64>),
}

/// A column's validation rules beyond its type.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Must match the whole value (string columns).
    pub pattern: Option<Regex>,
    pub allowed: Option<Allowed>,
    pub min: Option<Limit>,
    pub max: Option<Limit>,
    /// Most characters (string columns).
    pub max_length: Option<usize>,
}

/// What the lake copy of a column becomes. DynamoDB always gets the clear value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeOutput {
    /// Written under this name (the column's own, or its `rename`).
    Keep { name: String },
    /// SHA-256 of the salt and the value, as 64 hex digits, under this name.
    Hash { name: String },
    /// Not written to the lake (`drop_from_lake`, `pii = "drop"`).
    Drop,
}

impl LakeOutput {
    /// The lake column's name, unless the column is dropped.
    pub fn name(&self) -> Option<&str> {
        match self {
            LakeOutput::Keep { name } | LakeOutput::Hash { name } => Some(name),
            LakeOutput::Drop => None,
        }
    }
}

/// How a `pii` column's values appear in error texts and quarantine reports, which never
/// hold them in clear. DynamoDB still gets the clear value.
#[derive(Clone, PartialEq, Eq)]
pub enum Redaction {
    /// `pii = "hash"`: `<pii sha256:…>`, the salted SHA-256 of the value's text (for a
    /// string, the hash the lake holds).
    Hash { salt: Arc<str> },
    /// `pii = "drop"` (or a hashed column left out of the lake without a salt):
    /// `<pii omitted>`.
    Omit,
}

impl std::fmt::Debug for Redaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Redaction::Hash { .. } => f.write_str("Hash { salt: *** }"),
            Redaction::Omit => f.write_str("Omit"),
        }
    }
}

/// What stands in for a dropped pii value.
pub const PII_OMITTED: &str = "<pii omitted>";

/// The 64 hex digits of SHA-256 over the salt followed by the text: the lake's
/// `pii = "hash"` transform, and the stand-in of such values in reports.
pub fn pii_hash(salt: &str, text: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(salt.as_bytes());
    hash.update(text.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One column of a dataset, validated.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
    pub required: bool,
    /// For date and timestamp columns; `None` means ISO 8601 / RFC 3339.
    pub format: Option<ValueFormat>,
    /// Text read as null (exact; trimmed for non-string columns).
    pub nulls: Vec<String>,
    pub true_values: Vec<String>,
    pub false_values: Vec<String>,
    pub rules: Rules,
    pub lake: LakeOutput,
    /// Set for `pii` columns: their values never appear in clear in errors and reports.
    pub pii: Option<Redaction>,
}

impl Column {
    /// A column with default nulls and booleans, no rules, kept in the lake as is.
    pub fn new(name: &str, kind: ColumnType, required: bool) -> Column {
        Column {
            name: name.to_owned(),
            kind,
            required,
            format: None,
            nulls: DEFAULT_NULLS.iter().map(|s| s.to_string()).collect(),
            true_values: DEFAULT_TRUE.iter().map(|s| s.to_string()).collect(),
            false_values: DEFAULT_FALSE.iter().map(|s| s.to_string()).collect(),
            rules: Rules::default(),
            lake: LakeOutput::Keep {
                name: name.to_owned(),
            },
            pii: None,
        }
    }

    /// For a pii column, what stands in for a value in error texts and quarantine rows:
    /// `<pii sha256:…>` over the value's text (trimmed, except for strings), or
    /// `<pii omitted>`. `None` for other columns.
    pub fn pii_stand_in(&self, text: &str) -> Option<String> {
        let text = if self.kind == ColumnType::String {
            text
        } else {
            trim(text)
        };
        match self.pii.as_ref()? {
            Redaction::Hash { salt } => Some(format!("<pii sha256:{}>", pii_hash(salt, text))),
            Redaction::Omit => Some(PII_OMITTED.to_owned()),
        }
    }

    /// A bad value as an error shows it: quoted and shortened, or its pii stand-in.
    pub fn shown(&self, value: &str) -> String {
        self.pii_stand_in(value)
            .unwrap_or_else(|| format!("{:?}", shorten(value)))
    }

    /// Whether `text` is one of this column's null texts (exact for strings, trimmed
    /// otherwise).
    pub fn is_null_text(&self, text: &str) -> bool {
        let probe = if self.kind == ColumnType::String {
            text
        } else {
            trim(text)
        };
        self.nulls
            .iter()
            .any(|null| null.len() == probe.len() && null == probe)
    }
}

/// The Arrow field for a column.
pub fn arrow_field(column: &Column) -> Field {
    Field::new(&column.name, column.kind.arrow_type(), !column.required)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schema::test_support::column;
    use crate::domain::schema::RawCell;

    /// A pii column's bad value shows as its salted hash (of the text as parsed: trimmed,
    /// or a JSON value's text) or as a placeholder, never in clear.
    #[test]
    fn pii_values_show_as_stand_ins_in_errors() {
        let mut age = column(ColumnType::Int, false, None);
        age.rules.min = Some(Limit::Int(0));
        age.pii = Some(Redaction::Hash {
            salt: Arc::from("salt"),
        });
        let hashed = |text: &str| format!("<pii sha256:{}>", pii_hash("salt", text));
        let err = age.parse(RawCell::Text(" forty ")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is not a 64-bit integer", hashed("forty"))
        );
        let below = serde_json::json!(-3);
        let err = age.parse(RawCell::Json(&below)).unwrap_err();
        assert_eq!(
            (err.rule(), err.to_string()),
            ("min", format!("{} is below the minimum 0", hashed("-3")))
        );
        let mut code = column(ColumnType::String, false, None);
        code.rules.max_length = Some(2);
        code.pii = Some(Redaction::Omit);
        let err = code.parse(RawCell::Text("secret")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "<pii omitted> is 6 characters long; at most 2 allowed"
        );
        assert_eq!(pii_hash("salt", "forty").len(), 64);
    }
}
