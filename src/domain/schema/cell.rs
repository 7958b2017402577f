//! Parsing one cell: how a text or JSON value ([`RawCell`]) becomes a typed value
//! ([`Parsed`]) and passes the column's rules, or the [`CellError`] that says why not.
//!
//! [`Column::parse`] (and [`Column::parse_into`], the converter's per-cell hot path) takes a
//! cell through: null check (`nulls`), typing (`type`, `format`, `true_values` /
//! `false_values`), rules (`pattern`, `allowed`, `min`/`max`, `max_length`), then
//! `required`. Date, timestamp and epoch text is read by [`super::time`].

use super::column::{Allowed, Column, ColumnType, Limit, Rules, ValueFormat};
use super::time::{
    days_to_date, epoch_from_json, epoch_from_text, micros_to_datetime, parse_date,
    parse_timestamp, EpochError, EpochUnit,
};

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

pub(super) fn shorten(value: &str) -> String {
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
        let parsed = self.typed(text).ok_or_else(|| self.unparsable(text))?;
        self.accept(parsed, text, slot)
    }

    /// The column's type read from text that is no null and needs no trim (an epoch
    /// column aside); `None` when it is not of the type. No rule is checked.
    #[inline]
    fn typed(&self, text: &str) -> Option<Parsed> {
        match self.kind {
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
        }
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

/// A column's shortcut through [`Column::parse_into`] for the common cell: prepared once
/// (see [`Column::shortcut`]), it types a cell that is plainly good (no null, nothing to
/// trim, no rule or format to apply) in a few instructions, and leaves every
/// other cell to `parse_into`.
#[derive(Debug, Clone, Copy)]
pub struct Shortcut<'c> {
    column: &'c Column,
    /// Bit `n` (`n` < 63) is set when a null text has `n` bytes, bit 63 for longer ones: a
    /// text of another length is no null without comparing.
    null_lengths: u64,
    /// No rules, and no format for a date or timestamp column.
    plain: bool,
}

impl Column {
    /// This column's [`Shortcut`].
    pub fn shortcut(&self) -> Shortcut<'_> {
        // Every rule named, so a new one cannot slip past the shortcut unchecked.
        let Rules {
            pattern,
            allowed,
            min,
            max,
            max_length,
        } = &self.rules;
        let plain = pattern.is_none()
            && allowed.is_none()
            && min.is_none()
            && max.is_none()
            && max_length.is_none()
            && self.format.is_none();
        Shortcut {
            column: self,
            null_lengths: self
                .nulls
                .iter()
                .fold(0, |mask, null| mask | 1 << null.len().min(63)),
            plain,
        }
    }
}

impl Shortcut<'_> {
    /// What `parse_into` would store for `text`, when the shortcut can tell for sure
    /// (`parse_into` would succeed with this value); `None` when only `parse_into` can say.
    #[inline]
    pub fn parse(&self, text: &str) -> Option<Parsed> {
        let column = self.column;
        if !self.plain {
            return None;
        }
        if column.kind != ColumnType::String {
            // Nothing to trim (what `parse_into` reads is `text` itself).
            match text.as_bytes() {
                [first, .., last] | [first @ last] if trim_keeps(*first) && trim_keeps(*last) => {}
                _ => return None,
            }
        }
        // No null: a text of no null's length needs no comparison.
        if self.null_lengths & (1 << text.len().min(63)) != 0
            && column.nulls.iter().any(|null| null == text)
        {
            return None;
        }
        // `plain`: no format, so no epoch unit either; what is left is the type itself.
        column.typed(text)
    }
}

/// `str::trim`, with a shortcut for the common case of nothing to trim.
pub(super) fn trim(text: &str) -> &str {
    match text.as_bytes() {
        [first, .., last] if trim_keeps(*first) && trim_keeps(*last) => text,
        _ => text.trim(),
    }
}

/// Whether `str::trim` keeps a text that starts or ends with `byte`, whatever else it is:
/// an ASCII byte that is not Unicode white space (`is_ascii_whitespace` leaves out the
/// vertical tab, which `trim` strips).
fn trim_keeps(byte: u8) -> bool {
    byte.is_ascii() && !byte.is_ascii_whitespace() && byte != 0x0b
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

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use regex::Regex;

    use super::*;
    use crate::domain::schema::date_to_days;
    use crate::domain::schema::test_support::column;

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

    #[test]
    fn long_bad_values_are_shortened_in_errors() {
        let int = column(ColumnType::Int, false, None);
        let long = "x".repeat(500);
        let message = int.parse(RawCell::Text(&long)).unwrap_err().to_string();
        assert!(message.len() < 150, "{message}");
    }

    /// Texts the shortcut must get right: numbers, nulls, padding, booleans, dates.
    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[ \t]?[-+]?[0-9]{0,20}(\\.[0-9]{0,4})?([eE][-+]?[0-9]{1,3})?[ \t]?",
            prop::sample::select(vec![
                "",
                " ",
                "NULL",
                "null",
                "NA",
                "-1",
                "0",
                "1",
                "t",
                "yes",
                "N",
                "FALSE",
                "inf",
                "NaN",
                "-inf",
                "1e999",
                "2024-02-29",
                "2023-02-29",
                "2024-01-02T03:04:05Z",
                "2024-01-02T03:04:05.123456+02:00",
                "2024-01-02 03:04:05",
                "é",
                "\u{a0}1\u{a0}",
                "\u{b}",
                "\u{b}5",
                "5\u{b}",
                "\u{c}1",
                "1\r",
            ])
            .prop_map(str::to_owned),
            ".{0,70}",
        ]
    }

    proptest::proptest! {
        // Cheap cases, and a null text meeting its column's nulls is only a few percent.
        #![proptest_config(proptest::test_runner::Config::with_cases(4096))]
        #[test]
        fn the_shortcut_agrees_with_parse_into(
            text in text(),
            kind in proptest::sample::select(vec![
                ColumnType::String, ColumnType::Int, ColumnType::Float,
                ColumnType::Bool, ColumnType::Date, ColumnType::Timestamp,
            ]),
            nulls in proptest::sample::select(vec![
                vec![], vec!["-1".to_owned(), "0".to_owned()], vec![" x ".to_owned()],
                vec!["".to_owned(), "NULL".to_owned(), "null".to_owned(), "NA".to_owned()],
                vec!["\u{b}".to_owned()],
            ]),
            required in proptest::bool::ANY,
            min in proptest::bool::ANY,
            custom_booleans in proptest::bool::ANY,
        ) {
            let mut column = Column::new("c", kind, required);
            column.nulls = nulls;
            if custom_booleans {
                column.true_values = vec!["\u{b}".to_owned(), "on".to_owned()];
                column.false_values = vec!["0".to_owned(), "-1".to_owned()];
            }
            if min && kind == ColumnType::Int {
                column.rules.min = Some(Limit::Int(0));
            }
            let shortcut = column.shortcut();
            if let Some(quick) = shortcut.parse(&text) {
                proptest::prop_assert_eq!(column.parse(RawCell::Text(&text)), Ok(quick));
            }
        }
    }

    #[test]
    fn a_vertical_tab_is_trimmed_like_any_white_space() {
        let int = Column::new("n", ColumnType::Int, false);
        assert_eq!(int.parse(RawCell::Text("\u{b}5")), Ok(Parsed::Int(5)));
        assert_eq!(int.parse(RawCell::Text(" \u{b}5")), Ok(Parsed::Int(5)));
        let mut flag = Column::new("b", ColumnType::Bool, false);
        flag.true_values = vec!["\u{b}".to_owned()];
        // Trimmed to "", a null: never the true value.
        assert_eq!(flag.shortcut().parse("\u{b}"), None);
        assert_eq!(flag.parse(RawCell::Text("\u{b}")), Ok(Parsed::Null));
    }

    #[test]
    fn the_shortcut_takes_plain_cells_and_leaves_the_rest() {
        let int = Column::new("n", ColumnType::Int, false);
        assert_eq!(int.shortcut().parse("42"), Some(Parsed::Int(42)));
        assert_eq!(int.shortcut().parse("7"), Some(Parsed::Int(7)));
        // A null, padding, a bad value: parse_into decides.
        assert_eq!(int.shortcut().parse("NA"), None);
        assert_eq!(int.shortcut().parse("12"), Some(Parsed::Int(12)));
        assert_eq!(int.shortcut().parse(" 42"), None);
        assert_eq!(int.shortcut().parse("4.2"), None);
        let mut minimum = Column::new("n", ColumnType::Int, false);
        minimum.rules.min = Some(Limit::Int(0));
        assert_eq!(minimum.shortcut().parse("42"), None);
        let text = Column::new("s", ColumnType::String, true);
        assert_eq!(text.shortcut().parse("hello"), Some(Parsed::Str));
        assert_eq!(text.shortcut().parse(""), None);
        let at = Column::new("t", ColumnType::Timestamp, false);
        assert_eq!(
            at.shortcut().parse("1970-01-01T00:00:01Z"),
            Some(Parsed::Timestamp(1_000_000))
        );
    }
}
