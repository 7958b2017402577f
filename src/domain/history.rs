//! The load history: one row per settled object attempt (done, rejected or failed), kept
//! in the lake table [`LOADS_TABLE`] so that "what loaded yesterday, and what failed" is a
//! SQL query. This module defines the row, the table's columns as a dataset (the same
//! conversion, table port and catalog as user data take it), and its JSON-lines form.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use super::dataset::{
    compile_glob, CsvOptions, Dataset, FileFormat, Partition, Policy, TableFormat,
};
use super::schema::{Column, ColumnType};

/// The name of the history table (and its lake folder); no dataset may take it.
pub const LOADS_TABLE: &str = "lakeworker_loads";

/// What the history says of one object's attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRow {
    /// `s3://bucket/key` of the source object.
    pub source_uri: String,
    /// Its version id (or ETag, or `-`), as the ledger keys it.
    pub source_version: String,
    pub dataset: String,
    /// `done`, `rejected` or `failed`, as the ledger records it.
    pub status: &'static str,
    pub rows_in: u64,
    pub rows_written: u64,
    pub rows_quarantined: u64,
    pub rows_rescued: u64,
    /// The first problem: the rejection's or failure's reason, or the first bad row's.
    /// Error texts never hold a `pii` column's clear value (they show stand-ins).
    pub first_error: Option<String>,
    /// Which claim of this version the attempt was (1 for the first).
    pub attempt: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub worker_id: String,
    /// `s3://` URIs of what the attempt left in the lake and quarantine.
    pub outputs: Vec<String>,
    /// Undeclared columns the file had, whatever `on_new_columns` did with them.
    pub new_columns: Vec<String>,
}

/// How long a first error may be in the history (longer ones are cut, marked `…`).
pub const MAX_ERROR_CHARS: usize = 2000;

impl LoadRow {
    /// The row as the JSON line the history dataset reads.
    pub fn json_line(&self) -> String {
        let error = self.first_error.as_ref().map(|e| {
            let mut cut: String = e.chars().take(MAX_ERROR_CHARS).collect();
            if cut.len() < e.len() {
                cut.push('…');
            }
            cut
        });
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        json!({
            "source_uri": self.source_uri,
            "source_version": self.source_version,
            "dataset": self.dataset,
            "status": self.status,
            "rows_in": self.rows_in,
            "rows_written": self.rows_written,
            "rows_quarantined": self.rows_quarantined,
            "rows_rescued": self.rows_rescued,
            "first_error": error,
            "attempt": self.attempt,
            "started_at": time(&self.started_at),
            "finished_at": time(&self.finished_at),
            "worker_id": self.worker_id,
            "outputs": serde_json::to_string(&self.outputs).unwrap_or_default(),
            "new_columns": serde_json::to_string(&self.new_columns).unwrap_or_default(),
        })
        .to_string()
    }
}

/// The history table as a dataset: JSON lines of [`LoadRow::json_line`], partitioned by
/// the day the attempt finished, in the lake's table format. It matches no landing key.
pub fn loads_dataset(table: TableFormat) -> Dataset {
    let column = |name: &str, kind, required| Column::new(name, kind, required);
    use ColumnType::{Int, String as Str, Timestamp};
    let columns = vec![
        column("source_uri", Str, true),
        column("source_version", Str, true),
        column("dataset", Str, true),
        column("status", Str, true),
        column("rows_in", Int, true),
        column("rows_written", Int, true),
        column("rows_quarantined", Int, true),
        column("rows_rescued", Int, true),
        column("first_error", Str, false),
        column("attempt", Int, true),
        column("started_at", Timestamp, true),
        column("finished_at", Timestamp, true),
        column("worker_id", Str, true),
        column("outputs", Str, true),
        column("new_columns", Str, true),
    ];
    let finished_at = columns
        .iter()
        .position(|c| c.name == "finished_at")
        .expect("finished_at is a column");
    let mut columns = columns;
    for c in &mut columns {
        // Only JSON null is null: an error text such as "NA" stays text.
        c.nulls.clear();
    }
    Dataset {
        name: LOADS_TABLE.to_owned(),
        pattern: String::new(),
        // Never consulted: the router keeps this dataset apart from the landing globs.
        matcher: compile_glob(LOADS_TABLE).expect("a valid glob"),
        format: FileFormat::Jsonl,
        partition: Partition::TimestampColumn { index: finished_at },
        columns,
        records: None,
        csv: CsvOptions::default(),
        policy: Policy {
            accepts_inline: false,
            ..Policy::default()
        },
        table,
        added: 0,
        field_ids: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{convert, Collect, ConvertOptions, Lineage};

    fn row() -> LoadRow {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        LoadRow {
            source_uri: "s3://in/users/a.csv".into(),
            source_version: "v1".into(),
            dataset: "users".into(),
            status: "rejected",
            rows_in: 10,
            rows_written: 0,
            rows_quarantined: 4,
            rows_rescued: 0,
            first_error: Some(format!("NA {}", "x".repeat(3000))),
            attempt: 2,
            started_at: at,
            finished_at: at,
            worker_id: "w-1".into(),
            outputs: vec!["s3://lake/q/a.csv".into()],
            new_columns: vec!["nickname".into()],
        }
    }

    #[test]
    fn a_load_row_converts_with_the_history_dataset_into_one_good_row() {
        let dataset = loads_dataset(TableFormat::Hive);
        let lines = format!("{}\n{}\n", row().json_line(), row().json_line());
        let mut batches = Collect::default();
        let lineage = Lineage {
            source: "lakeworker".into(),
            ingested_at: 0,
            ingest_date: 0,
        };
        let report = convert(
            lines.as_bytes(),
            "history.jsonl",
            &dataset,
            &lineage,
            ConvertOptions::sequential(100),
            &mut batches,
            &mut (),
        )
        .unwrap();
        assert_eq!(
            (report.rows_written, report.rows_rejected),
            (2, 0),
            "{:?}",
            report.errors
        );
        let batch = &batches.0[0];
        let text = |name: &str| {
            let column = batch.column_by_name(name).unwrap();
            let strings = column.as_any().downcast_ref::<arrow::array::StringArray>();
            strings.unwrap().value(0).to_owned()
        };
        let error = text("first_error");
        assert!(
            error.starts_with("NA x") && error.ends_with('…'),
            "kept as text, cut"
        );
        assert_eq!(error.chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(text("outputs"), r#"["s3://lake/q/a.csv"]"#);
        assert_eq!(text("new_columns"), r#"["nickname"]"#);
    }
}
