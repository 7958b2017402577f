//! The `[[datasets.columns]]` of a dataset as written, and their validation into
//! [`Column`]s: the type and value format, null and bool words, rules (pattern, length,
//! allowed values, bounds) and the lake copy (rename, drop, `pii`). Every problem is
//! recorded with its key path.

use std::collections::HashSet;

use regex::Regex;
use serde::Deserialize;

use super::checks::{choice, is_identifier};
use super::{Problems, Secret, EXTRA_COLUMN, INGESTED_AT_COLUMN, RESCUED_COLUMN, SOURCE_COLUMN};
use crate::domain::schema::{
    parse_date, parse_timestamp, strftime_is_valid, Allowed, Column, ColumnType, LakeOutput, Limit,
    Redaction, Rules, ValueFormat,
};

const COLUMN_TYPES: [(&str, ColumnType); 6] = [
    ("string", ColumnType::String),
    ("int", ColumnType::Int),
    ("float", ColumnType::Float),
    ("bool", ColumnType::Bool),
    ("date", ColumnType::Date),
    ("timestamp", ColumnType::Timestamp),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pii {
    Hash,
    Drop,
}

const PII: [(&str, Pii); 2] = [("hash", Pii::Hash), ("drop", Pii::Drop)];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawColumn {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    required: bool,
    format: Option<String>,
    pattern: Option<String>,
    allowed: Option<Vec<RawValue>>,
    min: Option<RawValue>,
    max: Option<RawValue>,
    max_length: Option<u64>,
    nulls: Option<Vec<String>>,
    true_values: Option<Vec<String>>,
    false_values: Option<Vec<String>>,
    rename: Option<String>,
    #[serde(default)]
    drop_from_lake: bool,
    pii: Option<String>,
}

/// A number or a string in the config (bounds and allowed values).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawValue {
    Int(i64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for RawValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawValue::Int(v) => write!(f, "{v}"),
            RawValue::Float(v) => write!(f, "{v}"),
            RawValue::Text(v) => write!(f, "{v:?}"),
        }
    }
}

/// What validating the columns found, for the dataset-level checks after it.
pub(super) struct Columns {
    pub(super) columns: Vec<Column>,
    /// Names of columns whose type was unknown (reported once; dependent checks skipped).
    pub(super) untyped: Vec<String>,
    pub(super) hashes: bool,
}

pub(super) fn validate_columns(
    raw: Vec<RawColumn>,
    dataset_nulls: Option<&[String]>,
    pii_salt: Option<&Secret>,
    path: &str,
    p: &mut Problems,
) -> Columns {
    if raw.is_empty() {
        p.add(format!("{path}.columns"), "at least one column is needed");
    }
    let mut columns: Vec<Column> = Vec::new();
    let mut untyped: Vec<String> = Vec::new();
    let mut lake_names: HashSet<String> = [
        SOURCE_COLUMN,
        INGESTED_AT_COLUMN,
        EXTRA_COLUMN,
        RESCUED_COLUMN,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let mut hashes = false;
    for (j, raw) in raw.into_iter().enumerate() {
        let cpath = format!("{path}.columns[{j}]");
        if raw.name.is_empty() || raw.name.starts_with('_') {
            p.add(
                format!("{cpath}.name"),
                format!(
                    "{:?}: column names must be non-empty and not start with _ (reserved for {SOURCE_COLUMN}, {INGESTED_AT_COLUMN}, {EXTRA_COLUMN} and {RESCUED_COLUMN})",
                    raw.name
                ),
            );
        }
        if columns.iter().any(|c| c.name == raw.name) || untyped.contains(&raw.name) {
            p.add(
                format!("{cpath}.name"),
                format!("column {:?} is declared twice", raw.name),
            );
        }
        let Some(kind) = choice(p, format!("{cpath}.type"), &raw.kind, &COLUMN_TYPES) else {
            untyped.push(raw.name);
            continue;
        };
        let mut column = Column::new(&raw.name, kind, raw.required);
        column.format = raw
            .format
            .as_deref()
            .and_then(|f| value_format(f, kind, &cpath, p));
        if let Some(nulls) = raw.nulls.as_deref().or(dataset_nulls) {
            column.nulls = nulls.to_vec();
        }
        for (values, target, key) in [
            (
                raw.true_values.clone(),
                &mut column.true_values,
                "true_values",
            ),
            (
                raw.false_values.clone(),
                &mut column.false_values,
                "false_values",
            ),
        ] {
            if let Some(values) = values {
                p.check(
                    kind == ColumnType::Bool,
                    format!("{cpath}.{key}"),
                    "only bool columns take true_values and false_values",
                );
                p.check(
                    !values.is_empty(),
                    format!("{cpath}.{key}"),
                    "must not be empty",
                );
                *target = values;
            }
        }
        if kind == ColumnType::Bool {
            let clash = column.true_values.iter().find(|t| {
                column
                    .false_values
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(t))
            });
            if let Some(word) = clash {
                p.add(
                    format!("{cpath}.false_values"),
                    format!("{word:?} is both true and false"),
                );
            }
        }
        column.rules = validate_rules(&raw, &column, &cpath, p);
        let (lake, pii) = validate_lake(&raw, &cpath, p);
        hashes |= matches!(lake, LakeOutput::Hash { .. });
        column.pii = pii.map(|pii| match (pii, pii_salt) {
            (Pii::Hash, Some(salt)) => Redaction::Hash {
                salt: salt.expose().into(),
            },
            // Dropped, or hashed but left out of the lake (which needs no salt).
            _ => Redaction::Omit,
        });
        if let LakeOutput::Keep { name } | LakeOutput::Hash { name } = &lake {
            if !lake_names.insert(name.clone()) {
                p.add(
                    format!("{cpath}.rename"),
                    format!("the lake would have two columns named {name:?}"),
                );
            }
        }
        column.lake = lake;
        columns.push(column);
    }
    Columns {
        columns,
        untyped,
        hashes,
    }
}

fn value_format(
    text: &str,
    kind: ColumnType,
    cpath: &str,
    p: &mut Problems,
) -> Option<ValueFormat> {
    match (kind, text) {
        (ColumnType::Timestamp, "rfc3339") => Some(ValueFormat::Rfc3339),
        (ColumnType::Timestamp, "epoch_seconds") => Some(ValueFormat::EpochSeconds),
        (ColumnType::Timestamp, "epoch_millis") => Some(ValueFormat::EpochMillis),
        (ColumnType::Date | ColumnType::Timestamp, pattern) if strftime_is_valid(pattern) => {
            Some(ValueFormat::Strftime(pattern.to_owned()))
        }
        (ColumnType::Date | ColumnType::Timestamp, pattern) => {
            p.add(
                format!("{cpath}.format"),
                format!("{pattern:?} is not a valid strftime format"),
            );
            None
        }
        _ => {
            p.add(
                format!("{cpath}.format"),
                "only date and timestamp columns take a format",
            );
            None
        }
    }
}

fn validate_rules(raw: &RawColumn, column: &Column, cpath: &str, p: &mut Problems) -> Rules {
    let kind = column.kind;
    let mut rules = Rules::default();
    if let Some(pattern) = &raw.pattern {
        if kind != ColumnType::String {
            p.add(
                format!("{cpath}.pattern"),
                "only string columns take a pattern",
            );
        }
        // The pattern must match the whole value.
        match Regex::new(&format!("^(?:{pattern})$")) {
            Ok(regex) => rules.pattern = Some(regex),
            Err(e) => p.add(
                format!("{cpath}.pattern"),
                format!(
                    "{pattern:?} does not compile: {}",
                    first_line(&e.to_string())
                ),
            ),
        }
    }
    if let Some(max) = raw.max_length {
        p.check(
            kind == ColumnType::String,
            format!("{cpath}.max_length"),
            "only string columns take max_length",
        );
        rules.max_length = Some(max as usize);
    }
    if let Some(values) = &raw.allowed {
        rules.allowed = match kind {
            ColumnType::String => {
                let strings: Option<HashSet<String>> = values
                    .iter()
                    .map(|v| match v {
                        RawValue::Text(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect();
                if strings.is_none() {
                    p.add(
                        format!("{cpath}.allowed"),
                        "a string column's allowed values must be strings",
                    );
                }
                strings.map(Allowed::Strings)
            }
            ColumnType::Int => {
                let ints: Option<HashSet<i64>> = values
                    .iter()
                    .map(|v| match v {
                        RawValue::Int(i) => Some(*i),
                        RawValue::Text(t) => t.trim().parse().ok(),
                        RawValue::Float(_) => None,
                    })
                    .collect();
                if ints.is_none() {
                    p.add(
                        format!("{cpath}.allowed"),
                        "an int column's allowed values must be integers",
                    );
                }
                ints.map(Allowed::Ints)
            }
            _ => {
                p.add(
                    format!("{cpath}.allowed"),
                    "only string and int columns take allowed values",
                );
                None
            }
        };
        if values.is_empty() {
            p.add(format!("{cpath}.allowed"), "must not be empty");
        }
    }
    rules.min = raw
        .min
        .as_ref()
        .and_then(|v| limit(v, column, &format!("{cpath}.min"), p));
    rules.max = raw
        .max
        .as_ref()
        .and_then(|v| limit(v, column, &format!("{cpath}.max"), p));
    if let (Some(min), Some(max)) = (rules.min, rules.max) {
        let above = match (min, max) {
            (Limit::Int(a), Limit::Int(b)) | (Limit::Timestamp(a), Limit::Timestamp(b)) => a > b,
            (Limit::Float(a), Limit::Float(b)) => a > b,
            (Limit::Date(a), Limit::Date(b)) => a > b,
            _ => false,
        };
        p.check(
            !above,
            format!("{cpath}.min"),
            format!(
                "{} is above max {}",
                raw.min.as_ref().map_or(String::new(), ToString::to_string),
                raw.max.as_ref().map_or(String::new(), ToString::to_string)
            ),
        );
    }
    rules
}

/// A bound in the column's own type: numbers for int and float, text for date and
/// timestamp (read with the column's format).
fn limit(value: &RawValue, column: &Column, path: &str, p: &mut Problems) -> Option<Limit> {
    let limit = match (column.kind, value) {
        (ColumnType::Int, RawValue::Int(v)) => Some(Limit::Int(*v)),
        (ColumnType::Int, RawValue::Text(t)) => t.trim().parse().ok().map(Limit::Int),
        (ColumnType::Float, RawValue::Int(v)) => Some(Limit::Float(*v as f64)),
        (ColumnType::Float, RawValue::Float(v)) if v.is_finite() => Some(Limit::Float(*v)),
        (ColumnType::Float, RawValue::Text(t)) => t
            .trim()
            .parse()
            .ok()
            .filter(|f: &f64| f.is_finite())
            .map(Limit::Float),
        (ColumnType::Date, RawValue::Text(t)) => parse_date(t, column.format.as_ref())
            .or_else(|| parse_date(t, None))
            .map(Limit::Date),
        (ColumnType::Timestamp, RawValue::Text(t)) => parse_timestamp(t, column.format.as_ref())
            .or_else(|| parse_timestamp(t, None))
            .map(Limit::Timestamp),
        (ColumnType::String | ColumnType::Bool, _) => {
            p.add(
                path,
                format!(
                    "{} columns take no min or max (use max_length, pattern or allowed)",
                    column.kind.name()
                ),
            );
            return None;
        }
        _ => None,
    };
    if limit.is_none() {
        p.add(
            path,
            format!("{value} is not a {} bound", column.kind.name()),
        );
    }
    limit
}

/// The lake copy of a column, and its `pii` mode.
fn validate_lake(raw: &RawColumn, cpath: &str, p: &mut Problems) -> (LakeOutput, Option<Pii>) {
    let pii = raw
        .pii
        .as_deref()
        .and_then(|word| choice(p, format!("{cpath}.pii"), word, &PII));
    if let Some(name) = &raw.rename {
        p.check(
            is_identifier(name),
            format!("{cpath}.rename"),
            format!("{name:?} must start with a lowercase letter and hold only a-z, 0-9 and _"),
        );
        p.check(
            !raw.drop_from_lake && pii != Some(Pii::Drop),
            format!("{cpath}.rename"),
            "a column dropped from the lake cannot be renamed there",
        );
    }
    let name = raw.rename.clone().unwrap_or_else(|| raw.name.clone());
    let lake = match (raw.drop_from_lake, pii) {
        (true, _) | (_, Some(Pii::Drop)) => LakeOutput::Drop,
        (false, Some(Pii::Hash)) => LakeOutput::Hash { name },
        (false, None) => LakeOutput::Keep { name },
    };
    (lake, pii)
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
}
