//! What a conversion says: the report (counts and the first row errors), a bad row and
//! where bad rows go, and the conversion's error type.

use std::io;

use arrow::error::ArrowError;

/// How many row errors a report describes in full; the rest are only counted.
pub const MAX_ERRORS_KEPT: usize = 100;

/// How many undeclared column names a report lists.
pub const MAX_NEW_COLUMNS: usize = 100;

/// One problem of one row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    /// 1-based line where the row starts (for inline records: the record number).
    pub line: u64,
    pub column: Option<String>,
    /// The rule that refused it: `required`, `type`, `pattern`, `allowed`, `min`, `max`,
    /// `max_length`, `unique_key`, `fields`, `utf8`, `json`, `on_new_columns`,
    /// `max_row_bytes`, `max_columns` (a JSON object with too many keys), and for datasets
    /// with a `records_table` `dynamodb_number`, `dynamodb_key`, `dynamodb_item_size`.
    pub rule: &'static str,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(column) => write!(f, "line {}, column {column}: {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// A bad row with every problem found in it.
#[derive(Debug)]
pub struct BadRow<'a> {
    pub line: u64,
    pub byte_offset: Option<u64>,
    /// The row as it appeared in the input (at most `max_row_bytes`); in a dataset with
    /// `pii` columns, re-rendered with their values replaced, or `None` when the row
    /// cannot be split into its columns (see [`redact`]).
    pub raw: Option<&'a [u8]>,
    pub errors: &'a [RowError],
}

/// Receives bad rows.
pub trait BadRowSink {
    fn bad_row(&mut self, row: &BadRow<'_>) -> Result<(), ConvertError>;
}

/// Bad rows only counted and described in the report.
impl BadRowSink for () {
    fn bad_row(&mut self, _: &BadRow<'_>) -> Result<(), ConvertError> {
        Ok(())
    }
}

/// Counts and errors of one conversion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertReport {
    pub rows_in: u64,
    pub rows_written: u64,
    /// Bad rows (sent to the bad-row sink).
    pub rows_rejected: u64,
    /// Written rows with something in `_rescued` (a `rescue` policy).
    pub rows_rescued: u64,
    /// The undeclared columns (CSV header names, JSON keys) the file had, whatever the
    /// dataset's `on_new_columns` did with them: at most [`MAX_NEW_COLUMNS`], sorted.
    pub new_columns: std::collections::BTreeSet<String>,
    /// The first [`MAX_ERRORS_KEPT`] row problems.
    pub errors: Vec<RowError>,
}

impl ConvertReport {
    pub(super) fn reject(&mut self, errors: &[RowError]) {
        self.rows_rejected += 1;
        let room = MAX_ERRORS_KEPT.saturating_sub(self.errors.len());
        self.errors.extend(errors.iter().take(room).cloned());
    }

    /// The share of rows that were bad (0 for an empty file).
    pub fn invalid_fraction(&self) -> f64 {
        if self.rows_in == 0 {
            0.0
        } else {
            self.rows_rejected as f64 / self.rows_in as f64
        }
    }

    /// A one-line description of the first errors, for logs and error messages.
    pub fn error_summary(&self, max: usize) -> String {
        let shown: Vec<String> = self
            .errors
            .iter()
            .take(max)
            .map(ToString::to_string)
            .collect();
        let more = self.errors.len().saturating_sub(shown.len());
        if more > 0 {
            format!("{} (and {more} more)", shown.join("; "))
        } else {
            shown.join("; ")
        }
    }
}

/// Why a file could not be converted at all (as opposed to individual bad rows).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input stream failed (for S3: a dropped connection). Worth a retry.
    #[error("reading input: {0}")]
    Read(#[source] io::Error),
    /// The file's structure is wrong (or it breaks a limit, such as a compressed stream
    /// expanding too far), so no row can be trusted. Not worth a retry: the file is
    /// rejected.
    #[error("{0}")]
    Malformed(String),
    /// Writing local output failed (disk full, permissions). Worth a retry.
    #[error("writing output: {0}")]
    Write(String),
}

impl ConvertError {
    /// Whether trying the same input again can succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ConvertError::Malformed(_))
    }
}

impl From<ArrowError> for ConvertError {
    fn from(e: ArrowError) -> Self {
        match e {
            ArrowError::IoError(_, io) => ConvertError::Write(io.to_string()),
            other => ConvertError::Write(other.to_string()),
        }
    }
}

impl From<parquet::errors::ParquetError> for ConvertError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        ConvertError::Write(e.to_string())
    }
}
