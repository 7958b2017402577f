//! Datasets: what a landing file is, found by a glob over its key.
//!
//! A [`Dataset`] is the validated form of a `[[datasets]]` config entry. [`Router`] picks the
//! dataset of an object key: the first dataset, in config order, whose glob matches.

use globset::GlobMatcher;

use crate::schema::Column;

/// The name of the partition column when partitioning by arrival date.
pub const INGEST_DATE: &str = "ingest_date";

/// The file format of a dataset's landing files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// How a dataset's rows are split into Hive partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partition {
    /// `ingest_date=YYYY-MM-DD`: the UTC date the object arrived (the S3 event time), so
    /// a retry on a later day still lands on the same key.
    IngestDate,
    /// A date column: `{column}=YYYY-MM-DD`. The column lives in the path only.
    DateColumn { index: usize },
    /// A timestamp column: `{column}_date=YYYY-MM-DD` (its UTC date). The full timestamp
    /// stays in the file, so no precision is lost.
    TimestampColumn { index: usize },
}

/// Where a user dataset's rows are upserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsTarget {
    pub table: String,
    /// Index into [`Dataset::columns`] of the hash key (a required string column).
    pub key_index: usize,
}

/// One dataset, validated.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// The glob text, for messages.
    pub pattern: String,
    pub matcher: GlobMatcher,
    pub format: FileFormat,
    pub partition: Partition,
    pub columns: Vec<Column>,
    pub records: Option<RecordsTarget>,
}

impl Dataset {
    /// The Hive partition key: `ingest_date`, the date column's name, or `{column}_date`.
    pub fn partition_name(&self) -> String {
        match self.partition {
            Partition::IngestDate => INGEST_DATE.to_owned(),
            Partition::DateColumn { index } => self.columns[index].name.clone(),
            Partition::TimestampColumn { index } => format!("{}_date", self.columns[index].name),
        }
    }

    /// The index of a column that lives only in the partition path, if any.
    pub fn path_only_column(&self) -> Option<usize> {
        match self.partition {
            Partition::DateColumn { index } => Some(index),
            _ => None,
        }
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// One line for `check-config`.
    pub fn summary(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let required = if c.required { "!" } else { "" };
                format!("{}:{}{required}", c.name, c.kind.name())
            })
            .collect();
        let records = match &self.records {
            Some(target) => format!(
                ", records → DynamoDB {} (key {})",
                target.table, self.columns[target.key_index].name
            ),
            None => String::new(),
        };
        format!(
            "{name}: {format:?} files matching {pattern:?}, partitioned by {partition}, columns [{columns}]{records}",
            name = self.name,
            format = self.format,
            pattern = self.pattern,
            partition = self.partition_name(),
            columns = columns.join(", "),
        )
    }
}

/// Finds the dataset of a landing key.
#[derive(Debug, Clone)]
pub struct Router {
    datasets: Vec<Dataset>,
}

impl Router {
    pub fn new(datasets: Vec<Dataset>) -> Self {
        Router { datasets }
    }

    /// The first dataset, in config order, whose glob matches the whole key.
    pub fn route(&self, key: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.matcher.is_match(key))
    }

    pub fn by_name(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name == name)
    }

    pub fn datasets(&self) -> &[Dataset] {
        &self.datasets
    }
}

/// Compiles a dataset glob: `*` and `?` stay within one path segment, `**` crosses them.
pub fn compile_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(name: &str, pattern: &str) -> Dataset {
        Dataset {
            name: name.into(),
            pattern: pattern.into(),
            matcher: compile_glob(pattern).unwrap(),
            format: FileFormat::Csv,
            partition: Partition::IngestDate,
            columns: vec![],
            records: None,
        }
    }

    #[test]
    fn first_matching_glob_wins() {
        let router = Router::new(vec![
            dataset("vip", "users/vip/*.csv"),
            dataset("users", "users/**"),
            dataset("events", "events/*.jsonl"),
        ]);
        assert_eq!(router.route("users/vip/a.csv").unwrap().name, "vip");
        assert_eq!(
            router.route("users/vip/deeper/a.csv").unwrap().name,
            "users"
        );
        assert_eq!(router.route("users/a b+c.csv").unwrap().name, "users");
        assert_eq!(router.route("events/x.jsonl").unwrap().name, "events");
        assert!(router.route("events/2024/x.jsonl").is_none());
        assert!(router.route("other/x.csv").is_none());
    }
}
