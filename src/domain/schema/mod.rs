//! Columns and the cell parser: how one text or JSON value becomes a typed value, and the
//! rules it must pass.
//!
//! Everything here is pure. The converter ([`crate::convert`]) asks [`Column::parse`] for
//! every cell of every row and appends the result to Arrow builders. A cell goes through:
//! null check (`nulls`), typing (`type`, `format`, `true_values`/`false_values`), rules
//! (`pattern`, `allowed`, `min`/`max`, `max_length`), then `required`.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use regex::Regex;
use sha2::{Digest, Sha256};

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
    fn compare(self, value: Parsed) -> Option<std::cmp::Ordering> {
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

/// A cell as the file presents it, before typing.
#[derive(Debug, Clone, Copy)]
pub enum RawCell<'a> {
    /// The column is absent from this row (JSON key missing, CSV column not in the header).
    Missing,
    Text(&'a str),
    Json(&'a serde_json::Value),
}

impl<'a> RawCell<'a> {
    /// The cell's text: text as it is, a JSON string unquoted, another JSON value as its
    /// JSON text (what a string column stores); `None` when missing.
    pub fn text(self) -> Option<std::borrow::Cow<'a, str>> {
        use std::borrow::Cow;
        match self {
            RawCell::Missing => None,
            RawCell::Text(text) => Some(Cow::Borrowed(text)),
            RawCell::Json(serde_json::Value::String(text)) => Some(Cow::Borrowed(text)),
            RawCell::Json(other) => Some(Cow::Owned(other.to_string())),
        }
    }
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

/// Why one cell was refused. `shown` is the value as errors may show it: quoted and cut
/// to [`MAX_VALUE_IN_ERROR`] characters, or for a pii column its stand-in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    #[error("required value is missing")]
    Missing,
    #[error("{shown} is not {expected}")]
    Unparsable { shown: String, expected: String },
    #[error("{shown} {reason}")]
    Rule {
        rule: &'static str,
        shown: String,
        reason: String,
    },
}

impl CellError {
    /// The name of the rule that refused the cell, as reports show it.
    pub fn rule(&self) -> &'static str {
        match self {
            CellError::Missing => "required",
            CellError::Unparsable { .. } => "type",
            CellError::Rule { rule, .. } => rule,
        }
    }
}

/// How many characters of a bad value an error message repeats.
pub const MAX_VALUE_IN_ERROR: usize = 80;

fn shorten(value: &str) -> String {
    let mut shown: String = value.chars().take(MAX_VALUE_IN_ERROR).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    shown
}

impl Column {
    /// Types one cell and checks its rules.
    pub fn parse(&self, cell: RawCell<'_>) -> Result<Parsed, Box<CellError>> {
        let mut parsed = Parsed::Null;
        self.parse_into(cell, &mut parsed)?;
        Ok(parsed)
    }

    /// [`Column::parse`] writing the value into `slot` (left as it was on an error).
    ///
    /// This is the conversion's per-cell hot path. The value is written in place and the
    /// (rare) error is boxed, so what a call returns fits a register: returning a
    /// `Result<Parsed, _>` through memory cost a store-forwarding stall per cell.
    pub fn parse_into(&self, cell: RawCell<'_>, slot: &mut Parsed) -> Result<(), Box<CellError>> {
        match cell {
            RawCell::Missing => *slot = Parsed::Null,
            RawCell::Text(text) => self.parse_text(text, slot)?,
            RawCell::Json(value) => self.parse_json(value, slot)?,
        }
        if *slot == Parsed::Null && self.required {
            return Err(Box::new(CellError::Missing));
        }
        Ok(())
    }

    fn parse_text(&self, text: &str, slot: &mut Parsed) -> Result<(), Box<CellError>> {
        if self.is_null_text(text) {
            *slot = Parsed::Null;
            return Ok(());
        }
        if self.kind == ColumnType::String {
            self.check_text_rules(text)?;
            *slot = Parsed::Str;
            return Ok(());
        }
        let text = trim(text);
        if let Some(unit) = self.epoch_unit() {
            let micros = epoch_from_text(text, unit).map_err(|e| self.epoch_error(e, text))?;
            return self.accept(Parsed::Timestamp(micros), text, slot);
        }
        let parsed = match self.kind {
            ColumnType::String => Some(Parsed::Str),
            ColumnType::Int => text.parse().ok().map(Parsed::Int),
            ColumnType::Float => text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Parsed::Float),
            ColumnType::Bool => self.parse_bool(text).map(Parsed::Bool),
            ColumnType::Date => parse_date(text, self.format.as_ref()).map(Parsed::Date),
            ColumnType::Timestamp => {
                parse_timestamp(text, self.format.as_ref()).map(Parsed::Timestamp)
            }
        };
        let parsed = parsed.ok_or_else(|| self.unparsable(text))?;
        self.accept(parsed, text, slot)
    }

    /// Checks the value rules of a typed value and stores it; `shown` is its input text.
    fn accept(&self, parsed: Parsed, shown: &str, slot: &mut Parsed) -> Result<(), Box<CellError>> {
        self.check_value_rules(parsed)
            .map_err(|(rule, why)| self.rule_error(rule, shown, why))?;
        *slot = parsed;
        Ok(())
    }

    /// The unit of an epoch timestamp column.
    fn epoch_unit(&self) -> Option<EpochUnit> {
        match (self.kind, &self.format) {
            (ColumnType::Timestamp, Some(ValueFormat::EpochSeconds)) => Some(EpochUnit::Seconds),
            (ColumnType::Timestamp, Some(ValueFormat::EpochMillis)) => Some(EpochUnit::Millis),
            _ => None,
        }
    }

    fn epoch_error(&self, error: EpochError, value: &str) -> Box<CellError> {
        match error {
            EpochError::NotANumber => self.unparsable(value),
            EpochError::OutOfRange => self.rule_error(
                "type",
                value,
                "is outside the timestamp range (0001-01-01 to 9999-12-31)".to_owned(),
            ),
        }
    }

    fn parse_json(
        &self,
        value: &serde_json::Value,
        slot: &mut Parsed,
    ) -> Result<(), Box<CellError>> {
        use serde_json::Value;
        let parsed = match (value, self.kind) {
            (Value::Null, _) => {
                *slot = Parsed::Null;
                return Ok(());
            }
            (Value::String(text), _) => return self.parse_text(text, slot),
            // Numbers, booleans and nested values are kept as their JSON text.
            (other, ColumnType::String) => {
                if self.has_text_rules() {
                    self.check_text_rules(&other.to_string())?;
                }
                *slot = Parsed::Str;
                return Ok(());
            }
            (Value::Number(n), ColumnType::Int) => n.as_i64().map(Parsed::Int),
            (Value::Number(n), ColumnType::Float) => {
                n.as_f64().filter(|f| f.is_finite()).map(Parsed::Float)
            }
            (Value::Number(n), ColumnType::Timestamp) => match self.epoch_unit() {
                Some(unit) => {
                    let micros = epoch_from_json(n, unit)
                        .map_err(|e| self.epoch_error(e, &value.to_string()))?;
                    return self.accept(Parsed::Timestamp(micros), &value.to_string(), slot);
                }
                None => None,
            },
            (Value::Bool(b), ColumnType::Bool) => Some(Parsed::Bool(*b)),
            _ => None,
        };
        let parsed = parsed.ok_or_else(|| self.unparsable(&value.to_string()))?;
        self.accept(parsed, &value.to_string(), slot)
    }

    fn parse_bool(&self, text: &str) -> Option<bool> {
        if self
            .true_values
            .iter()
            .any(|t| t.eq_ignore_ascii_case(text))
        {
            Some(true)
        } else if self
            .false_values
            .iter()
            .any(|f| f.eq_ignore_ascii_case(text))
        {
            Some(false)
        } else {
            None
        }
    }

    fn has_text_rules(&self) -> bool {
        let r = &self.rules;
        r.pattern.is_some()
            || r.max_length.is_some()
            || matches!(r.allowed, Some(Allowed::Strings(_)))
    }

    /// `max_length`, `pattern` and `allowed` of a string value.
    fn check_text_rules(&self, text: &str) -> Result<(), Box<CellError>> {
        let rules = &self.rules;
        if let Some(max) = rules.max_length {
            let length = text.chars().count();
            if length > max {
                return Err(self.rule_error(
                    "max_length",
                    text,
                    format!("is {length} characters long; at most {max} allowed"),
                ));
            }
        }
        if let Some(pattern) = &rules.pattern {
            if !pattern.is_match(text) {
                let shown = pattern
                    .as_str()
                    .trim_start_matches("^(?:")
                    .trim_end_matches(")$");
                return Err(self.rule_error(
                    "pattern",
                    text,
                    format!("does not match the pattern {shown:?}"),
                ));
            }
        }
        if let Some(Allowed::Strings(allowed)) = &rules.allowed {
            if !allowed.contains(text) {
                return Err(self.rule_error(
                    "allowed",
                    text,
                    format!("is not one of the {} allowed values", allowed.len()),
                ));
            }
        }
        Ok(())
    }

    /// `allowed` (integers), `min` and `max` of a typed value.
    /// The value rules (`allowed` integers, `min`, `max`); on failure the rule and why.
    fn check_value_rules(&self, parsed: Parsed) -> Result<(), (&'static str, String)> {
        let rules = &self.rules;
        if let (Some(Allowed::Ints(allowed)), Parsed::Int(v)) = (&rules.allowed, parsed) {
            if !allowed.contains(&v) {
                let why = format!("is not one of the {} allowed values", allowed.len());
                return Err(("allowed", why));
            }
        }
        if let Some(min) = rules.min {
            if min.compare(parsed) == Some(std::cmp::Ordering::Less) {
                return Err(("min", format!("is below the minimum {}", limit_text(min))));
            }
        }
        if let Some(max) = rules.max {
            if max.compare(parsed) == Some(std::cmp::Ordering::Greater) {
                return Err(("max", format!("is above the maximum {}", limit_text(max))));
            }
        }
        Ok(())
    }

    fn unparsable(&self, value: &str) -> Box<CellError> {
        let expected = match (&self.format, self.kind) {
            (Some(ValueFormat::Strftime(format)), kind) => {
                format!("a {} in format {format:?}", kind.name())
            }
            (Some(ValueFormat::Rfc3339), _) => "an RFC 3339 timestamp".to_owned(),
            (Some(ValueFormat::EpochSeconds), _) => "a number of seconds since 1970".to_owned(),
            (Some(ValueFormat::EpochMillis), _) => "a number of milliseconds since 1970".to_owned(),
            (None, ColumnType::Int) => "a 64-bit integer".to_owned(),
            (None, ColumnType::Float) => "a finite number".to_owned(),
            (None, ColumnType::Bool) => format!(
                "a boolean ({} / {})",
                self.true_values.join(", "),
                self.false_values.join(", ")
            ),
            (None, ColumnType::Date) => "a date (YYYY-MM-DD)".to_owned(),
            (None, ColumnType::Timestamp) => "a timestamp (RFC 3339)".to_owned(),
            (None, ColumnType::String) => "a string".to_owned(),
        };
        Box::new(CellError::Unparsable {
            shown: self.shown(value),
            expected,
        })
    }

    fn rule_error(&self, rule: &'static str, value: &str, reason: String) -> Box<CellError> {
        Box::new(CellError::Rule {
            rule,
            shown: self.shown(value),
            reason,
        })
    }
}

/// `str::trim`, with a shortcut for the common case of nothing to trim.
fn trim(text: &str) -> &str {
    match text.as_bytes() {
        [first, .., last]
            if !first.is_ascii_whitespace()
                && !last.is_ascii_whitespace()
                && first.is_ascii()
                && last.is_ascii() =>
        {
            text
        }
        _ => text.trim(),
    }
}

fn limit_text(limit: Limit) -> String {
    match limit {
        Limit::Int(v) => v.to_string(),
        Limit::Float(v) => v.to_string(),
        Limit::Date(days) => days_to_date(days).map_or_else(|| days.to_string(), |d| d.to_string()),
        Limit::Timestamp(micros) => {
            micros_to_datetime(micros).map_or_else(|| micros.to_string(), |t| t.to_rfc3339())
        }
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

/// Parses a date with the column's strftime format, or ISO `YYYY-MM-DD`.
pub fn parse_date(text: &str, format: Option<&ValueFormat>) -> Option<i32> {
    let pattern = match format {
        Some(ValueFormat::Strftime(pattern)) => pattern.as_str(),
        _ => {
            return iso_date(text.as_bytes())
                .or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
                .map(date_to_days)
        }
    };
    NaiveDate::parse_from_str(text, pattern)
        .ok()
        .map(date_to_days)
}

/// `n` ASCII digits as a number.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// The common case of ISO dates, `YYYY-MM-DD`, without chrono's format machinery.
fn iso_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        digits(&b[..4])? as i32,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )
}

/// The common case of timestamps, `YYYY-MM-DD[T ]HH:MM:SS[.f…][Z|±HH:MM]`, without chrono's
/// format machinery; a missing zone is UTC. Anything else returns `None` (the general
/// parsers decide).
fn iso_timestamp(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let date = iso_date(&b[..10])?;
    let time = chrono::NaiveTime::from_hms_opt(
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    )?;
    let mut rest = &b[19..];
    let mut micros = 0i64;
    if let Some((b'.', fraction)) = rest.split_first() {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        let kept = &fraction[..len.min(6)];
        micros = i64::from(digits(kept)?) * 10i64.pow(6 - kept.len() as u32);
        rest = &fraction[len..];
    }
    let offset_seconds = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let seconds = i64::from(digits(&[*h1, *h2])? * 3600 + digits(&[*m1, *m2])? * 60);
            if *sign == b'+' {
                seconds
            } else {
                -seconds
            }
        }
        _ => return None,
    };
    let seconds = date.and_time(time).and_utc().timestamp() - offset_seconds;
    seconds.checked_mul(1_000_000)?.checked_add(micros)
}

/// Parses a timestamp to UTC microseconds. Without a format: RFC 3339, or
/// `YYYY-MM-DD[T ]HH:MM:SS[.fff]` read as UTC. A strftime format with an offset (`%z`,
/// `%:z`) honours it; otherwise the time is read as UTC.
pub fn parse_timestamp(text: &str, format: Option<&ValueFormat>) -> Option<i64> {
    let rfc3339 = |t: &str| {
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let instant = match format {
        Some(ValueFormat::Strftime(format)) => DateTime::parse_from_str(text, format)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| NaiveDateTime::parse_from_str(text, format).map(|t| t.and_utc()))
            .ok()?,
        Some(ValueFormat::Rfc3339) => rfc3339(text)?,
        Some(ValueFormat::EpochSeconds) => return epoch_from_text(text, EpochUnit::Seconds).ok(),
        Some(ValueFormat::EpochMillis) => return epoch_from_text(text, EpochUnit::Millis).ok(),
        None => match iso_timestamp(text.as_bytes()) {
            Some(micros) => return Some(micros),
            None => rfc3339(text),
        }
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })?,
    };
    Some(instant.timestamp_micros())
}

/// The first instant an epoch timestamp may name, in microseconds since the epoch:
/// 0001-01-01T00:00:00Z. Years 1 to 9999 are what every reader of the lake takes (Athena,
/// Spark, pyarrow's Python datetimes), and every such instant has a date (its partition)
/// and an RFC 3339 text (DynamoDB, pii hashes).
pub const MIN_TIMESTAMP_MICROS: i64 = -62_135_596_800_000_000;
/// The last instant an epoch timestamp may name: 9999-12-31T23:59:59.999999Z.
pub const MAX_TIMESTAMP_MICROS: i64 = 253_402_300_799_999_999;

/// The unit of an epoch timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EpochUnit {
    Seconds,
    Millis,
}

impl EpochUnit {
    fn micros_per_unit(self) -> i64 {
        match self {
            EpochUnit::Seconds => 1_000_000,
            EpochUnit::Millis => 1000,
        }
    }

    /// An integer count of units, exactly.
    fn micros_of_int(self, n: i64) -> Result<i64, EpochError> {
        n.checked_mul(self.micros_per_unit())
            .filter(|micros| (MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS).contains(micros))
            .ok_or(EpochError::OutOfRange)
    }

    /// A fractional count of units, to the nearest microsecond.
    fn micros_of_float(self, n: f64) -> Result<i64, EpochError> {
        if n.is_nan() {
            return Err(EpochError::NotANumber);
        }
        let micros = (n * self.micros_per_unit() as f64).round();
        // Compared as floats first: a cast of a float beyond i64 would saturate.
        if !(MIN_TIMESTAMP_MICROS as f64..=MAX_TIMESTAMP_MICROS as f64).contains(&micros) {
            return Err(EpochError::OutOfRange);
        }
        let micros = micros as i64;
        (MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS)
            .contains(&micros)
            .then_some(micros)
            .ok_or(EpochError::OutOfRange)
    }
}

/// Why an epoch value is not a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EpochError {
    NotANumber,
    /// A number, but not an instant between [`MIN_TIMESTAMP_MICROS`] and
    /// [`MAX_TIMESTAMP_MICROS`].
    OutOfRange,
}

/// Epoch text: integers exactly; seconds may also have a fraction or an exponent;
/// milliseconds must be integers.
fn epoch_from_text(text: &str, unit: EpochUnit) -> Result<i64, EpochError> {
    if let Ok(n) = text.parse::<i64>() {
        return unit.micros_of_int(n);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    match unit {
        // An integer beyond i64 is beyond the range in either unit.
        _ if integer => Err(EpochError::OutOfRange),
        EpochUnit::Seconds => match text.parse::<f64>() {
            Ok(n) => unit.micros_of_float(n),
            Err(_) => Err(EpochError::NotANumber),
        },
        // A whole number written as a float ("1700000000000.0", as JSON tools write it).
        EpochUnit::Millis => match text.parse::<f64>() {
            Ok(n) if n.fract() == 0.0 => unit.micros_of_float(n),
            _ => Err(EpochError::NotANumber),
        },
    }
}

/// A JSON epoch number: integers exactly, other numbers (seconds only) to the microsecond.
fn epoch_from_json(n: &serde_json::Number, unit: EpochUnit) -> Result<i64, EpochError> {
    if let Some(n) = n.as_i64() {
        return unit.micros_of_int(n);
    }
    if n.is_u64() {
        return Err(EpochError::OutOfRange);
    }
    match (unit, n.as_f64()) {
        (EpochUnit::Seconds, Some(f)) => unit.micros_of_float(f),
        // A whole number of milliseconds written as a float (`1700000000000.0`).
        (EpochUnit::Millis, Some(f)) if f.fract() == 0.0 => unit.micros_of_float(f),
        _ => Err(EpochError::NotANumber),
    }
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
        let mut column = Column::new("c", kind, required);
        column.format = format.map(|f| ValueFormat::Strftime(f.to_owned()));
        column
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
        let err = boolean.parse(RawCell::Text("maybe")).unwrap_err();
        assert_eq!(err.rule(), "type");
        assert_eq!(
            err.to_string(),
            "\"maybe\" is not a boolean (true, t, yes, y, 1 / false, f, no, n, 0)"
        );
    }

    #[test]
    fn nulls_and_required() {
        let optional = column(ColumnType::Int, false, None);
        for null in ["", " NULL ", "null", "NA"] {
            assert_eq!(
                optional.parse(RawCell::Text(null)),
                Ok(Parsed::Null),
                "{null:?}"
            );
        }
        assert_eq!(optional.parse(RawCell::Missing), Ok(Parsed::Null));
        let required = column(ColumnType::String, true, None);
        assert_eq!(
            required.parse(RawCell::Text("")),
            Err(Box::new(CellError::Missing))
        );
        assert_eq!(
            required.parse(RawCell::Text("NA")),
            Err(Box::new(CellError::Missing))
        );
        assert_eq!(
            required.parse(RawCell::Json(&serde_json::Value::Null)),
            Err(Box::new(CellError::Missing))
        );
        assert_eq!(required.parse(RawCell::Text(" x ")), Ok(Parsed::Str));
        assert_eq!(
            required.parse(RawCell::Text(" NA")),
            Ok(Parsed::Str),
            "strings compare exactly"
        );
        let mut custom = column(ColumnType::String, false, None);
        custom.nulls = vec!["-".into()];
        assert_eq!(custom.parse(RawCell::Text("-")), Ok(Parsed::Null));
        assert_eq!(custom.parse(RawCell::Text("")), Ok(Parsed::Str));
    }

    #[test]
    fn custom_booleans() {
        let mut flag = column(ColumnType::Bool, false, None);
        flag.true_values = vec!["on".into()];
        flag.false_values = vec!["off".into()];
        assert_eq!(flag.parse(RawCell::Text("ON")), Ok(Parsed::Bool(true)));
        assert_eq!(flag.parse(RawCell::Text("off")), Ok(Parsed::Bool(false)));
        assert!(flag.parse(RawCell::Text("yes")).is_err());
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
    fn epoch_and_rfc3339_timestamps() {
        let mut seconds = column(ColumnType::Timestamp, false, None);
        seconds.format = Some(ValueFormat::EpochSeconds);
        assert_eq!(
            seconds.parse(RawCell::Text("1.5")),
            Ok(Parsed::Timestamp(1_500_000))
        );
        let n = serde_json::json!(86400);
        assert_eq!(
            seconds.parse(RawCell::Json(&n)),
            Ok(Parsed::Timestamp(86_400_000_000))
        );
        let mut millis = column(ColumnType::Timestamp, false, None);
        millis.format = Some(ValueFormat::EpochMillis);
        assert_eq!(
            millis.parse(RawCell::Text("1500")),
            Ok(Parsed::Timestamp(1_500_000))
        );
        assert!(millis.parse(RawCell::Text("1.5")).is_err());
        let huge = serde_json::json!(i64::MAX);
        assert!(
            millis.parse(RawCell::Json(&huge)).is_err(),
            "overflow is an error, not a panic"
        );
        let mut strict = column(ColumnType::Timestamp, false, None);
        strict.format = Some(ValueFormat::Rfc3339);
        assert!(strict.parse(RawCell::Text("1970-01-01 00:00:01")).is_err());
        assert_eq!(
            strict.parse(RawCell::Text("1970-01-01T00:00:01Z")),
            Ok(Parsed::Timestamp(1_000_000))
        );
    }

    /// Epoch values must name an instant the lake can hold (with a date for its partition
    /// and an RFC 3339 text for DynamoDB): at the ends of the range they are taken, one unit
    /// beyond they are bad cells, in text and as JSON numbers.
    #[test]
    fn epoch_values_outside_the_timestamp_range_are_bad_cells() {
        let (first, last) = (MIN_TIMESTAMP_MICROS, MAX_TIMESTAMP_MICROS);
        assert_eq!(
            micros_to_datetime(first).map(|t| t.to_rfc3339()),
            Some("0001-01-01T00:00:00+00:00".into())
        );
        assert_eq!(
            micros_to_datetime(last).map(|t| t.to_rfc3339()),
            Some("9999-12-31T23:59:59.999999+00:00".into())
        );
        let epoch = |format| {
            let mut c = column(ColumnType::Timestamp, false, None);
            c.format = Some(format);
            c
        };
        let seconds = epoch(ValueFormat::EpochSeconds);
        let millis = epoch(ValueFormat::EpochMillis);
        let (min_s, max_s) = (first.div_euclid(1_000_000), last.div_euclid(1_000_000));
        let (min_ms, max_ms) = (first.div_euclid(1000), last.div_euclid(1000));
        let inside = [
            (&seconds, min_s, min_s * 1_000_000),
            (&seconds, max_s, max_s * 1_000_000),
            (&millis, min_ms, min_ms * 1000),
            (&millis, max_ms, max_ms * 1000),
        ];
        for (c, n, micros) in inside {
            for cell in [
                RawCell::Text(&n.to_string()),
                RawCell::Json(&serde_json::json!(n)),
            ] {
                assert_eq!(c.parse(cell), Ok(Parsed::Timestamp(micros)), "{n}");
            }
            assert!(micros_to_datetime(micros).is_some());
        }
        let beyond = [
            (&seconds, (min_s - 1).to_string()),
            (&seconds, (max_s + 1).to_string()),
            (&seconds, "9.2e12".to_owned()),
            (&seconds, "1e300".to_owned()),
            (&seconds, "-1e300".to_owned()),
            (&seconds, i64::MAX.to_string()),
            (&millis, (min_ms - 1).to_string()),
            (&millis, (max_ms + 1).to_string()),
            (&millis, i64::MAX.to_string()),
            (&millis, i64::MIN.to_string()),
            (&millis, u64::MAX.to_string()),
        ];
        let err = millis
            .parse(RawCell::Text("9223372036854775807"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"9223372036854775807\" is outside the timestamp range (0001-01-01 to 9999-12-31)"
        );
        // Whole milliseconds written as floats are milliseconds.
        let as_float = serde_json::json!(1_700_000_000_000.0);
        assert_eq!(
            millis.parse(RawCell::Json(&as_float)),
            Ok(Parsed::Timestamp(1_700_000_000_000_000))
        );
        assert_eq!(
            millis.parse(RawCell::Text("1700000000000.0")),
            Ok(Parsed::Timestamp(1_700_000_000_000_000))
        );
        assert!(millis.parse(RawCell::Text("1700000000000.5")).is_err());
        for (c, text) in beyond {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            for cell in [RawCell::Text(&text), RawCell::Json(&json)] {
                let err = c.parse(cell).expect_err(&text);
                assert_eq!(err.rule(), "type", "{text}");
                assert!(
                    err.to_string().contains("outside the timestamp range"),
                    "{text}: {err}"
                );
            }
        }
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
    fn string_rules() {
        let mut code = column(ColumnType::String, false, None);
        code.rules.pattern = Some(Regex::new("^(?:[A-Z]{3})$").unwrap());
        code.rules.max_length = Some(3);
        code.rules.allowed = Some(Allowed::Strings(["EUR".into(), "USD".into()].into()));
        assert_eq!(code.parse(RawCell::Text("EUR")), Ok(Parsed::Str));
        let too_long = code.parse(RawCell::Text("EURO")).unwrap_err();
        assert_eq!(
            (too_long.rule(), too_long.to_string()),
            (
                "max_length",
                "\"EURO\" is 4 characters long; at most 3 allowed".into()
            )
        );
        let lower = code.parse(RawCell::Text("eur")).unwrap_err();
        assert_eq!(
            lower.to_string(),
            "\"eur\" does not match the pattern \"[A-Z]{3}\""
        );
        let other = code.parse(RawCell::Text("GBP")).unwrap_err();
        assert_eq!(
            (other.rule(), other.to_string()),
            (
                "allowed",
                "\"GBP\" is not one of the 2 allowed values".into()
            )
        );
        let nested = serde_json::json!({"a": 1});
        assert_eq!(
            code.parse(RawCell::Json(&nested)).unwrap_err().rule(),
            "max_length"
        );
    }

    #[test]
    fn bounds_in_the_column_type() {
        let mut age = column(ColumnType::Int, false, None);
        age.rules.min = Some(Limit::Int(0));
        age.rules.max = Some(Limit::Int(150));
        age.rules.allowed = None;
        assert_eq!(age.parse(RawCell::Text("150")), Ok(Parsed::Int(150)));
        let low = age.parse(RawCell::Text("-1")).unwrap_err();
        assert_eq!(
            (low.rule(), low.to_string()),
            ("min", "\"-1\" is below the minimum 0".into())
        );
        assert_eq!(age.parse(RawCell::Text("151")).unwrap_err().rule(), "max");
        let mut day = column(ColumnType::Date, false, None);
        day.rules.min = Some(Limit::Date(date_to_days(
            NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(),
        )));
        let old = day.parse(RawCell::Text("1999-12-31")).unwrap_err();
        assert_eq!(
            old.to_string(),
            "\"1999-12-31\" is below the minimum 2000-01-01"
        );
        let mut status = column(ColumnType::Int, false, None);
        status.rules.allowed = Some(Allowed::Ints([200, 404].into()));
        assert_eq!(status.parse(RawCell::Text("404")), Ok(Parsed::Int(404)));
        assert_eq!(
            status.parse(RawCell::Text("500")).unwrap_err().rule(),
            "allowed"
        );
    }

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

    #[test]
    fn long_bad_values_are_shortened_in_errors() {
        let int = column(ColumnType::Int, false, None);
        let long = "x".repeat(500);
        let message = int.parse(RawCell::Text(&long)).unwrap_err().to_string();
        assert!(message.len() < 150, "{message}");
    }

    #[test]
    fn fast_paths_agree_with_chrono() {
        for text in [
            "2024-02-29T23:59:59Z",
            "2024-02-29t23:59:59.5z",
            "1969-12-31 23:59:59.123456789",
            "2000-01-01T00:00:00+05:30",
            "2000-01-01T00:00:00-01:00",
            "2016-12-31T23:59:60Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
        ] {
            let chrono = DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| {
                    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map(|t| t.and_utc())
                })
                .ok()
                .map(|t| t.timestamp_micros());
            assert_eq!(parse_timestamp(text, None), chrono, "{text}");
        }
        assert_eq!(parse_date("2024-02-29", None), Some(19782));
        assert_eq!(parse_date("2023-02-29", None), None);
        assert_eq!(
            parse_date("2024-2-29", None),
            Some(19782),
            "chrono accepts unpadded fields"
        );
    }

    proptest::proptest! {
        #[test]
        fn iso_timestamps_round_trip(micros in -2_000_000_000_000_000i64..7_000_000_000_000_000, digits in 0usize..=6) {
            let t = DateTime::from_timestamp_micros(micros).unwrap();
            let text = match digits {
                0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                n => format!("{}{}", t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string().split_at(20 + n).0, "Z"),
            };
            let chrono = DateTime::parse_from_rfc3339(&text).unwrap().timestamp_micros();
            proptest::prop_assert_eq!(parse_timestamp(&text, None), Some(chrono));
        }
    }

    #[test]
    fn strftime_validation() {
        assert!(strftime_is_valid("%Y/%m/%d"));
        assert!(!strftime_is_valid("%Q"));
        assert!(!strftime_is_valid(""));
    }
}
