//! `[[datasets]]` entries as written, and their validation into [`Dataset`]s: the name,
//! glob and file format, partitioning, the records table, validation policy and limits.
//! Columns, their rules and lake transforms are read in `dataset_columns.rs`, CSV options
//! in `dataset_csv.rs`. Every problem is recorded with its key path.

use serde::Deserialize;

use super::checks::{choice, is_identifier, is_table_name};
use super::dataset_columns::{validate_columns, Columns, RawColumn};
use super::dataset_csv::{validate_header_names, RawCsv};
use super::lake::TABLE_FORMATS;
use super::size::{size_in, RawSize};
use super::{Problems, Secret};
use crate::domain::dataset::{
    compile_glob, CsvOptions, Dataset, FileFormat, Header, NewColumns, OnInvalid, Partition,
    Policy, RecordsTarget, TableFormat, INGEST_DATE,
};
use crate::domain::schema::{Column, ColumnType, LakeOutput};

const FILE_FORMATS: [(&str, FileFormat); 2] =
    [("csv", FileFormat::Csv), ("jsonl", FileFormat::Jsonl)];
const ON_INVALID: [(&str, OnInvalid); 3] = [
    ("quarantine_rows", OnInvalid::QuarantineRows),
    ("reject_file", OnInvalid::RejectFile),
    ("rescue", OnInvalid::Rescue),
];
const ON_NEW_COLUMNS: [(&str, NewColumns); 5] = [
    ("ignore", NewColumns::Ignore),
    ("keep", NewColumns::Keep),
    ("rescue", NewColumns::Rescue),
    ("add", NewColumns::Add),
    ("reject", NewColumns::Reject),
];
/// The values the deprecated `extra_columns` key took (today's first two and reject).
const EXTRA_COLUMNS: [(&str, NewColumns); 3] = [
    ("ignore", NewColumns::Ignore),
    ("keep", NewColumns::Keep),
    ("reject", NewColumns::Reject),
];
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataset {
    pub(super) name: String,
    #[serde(rename = "match")]
    pattern: String,
    format: String,
    partition_by: Option<String>,
    records_table: Option<String>,
    records_key: Option<String>,
    on_invalid: Option<String>,
    max_invalid_fraction: Option<f64>,
    on_new_columns: Option<String>,
    /// Deprecated: `on_new_columns` (read, with a warning, when that is absent).
    extra_columns: Option<String>,
    unique_key: Option<OneOrMany>,
    nulls: Option<Vec<String>>,
    max_object_bytes: Option<RawSize>,
    max_decompressed_bytes: Option<RawSize>,
    max_compression_ratio: Option<u64>,
    max_row_bytes: Option<RawSize>,
    max_columns: Option<u64>,
    inline: Option<bool>,
    table_format: Option<String>,
    csv: Option<RawCsv>,
    #[serde(default)]
    columns: Vec<RawColumn>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl RawDataset {
    /// Deprecated keys this entry uses, each with its replacement.
    pub(super) fn deprecations(&self, path: &str) -> Vec<String> {
        match (&self.extra_columns, &self.on_new_columns) {
            (Some(word), None) => vec![format!(
                "{path}.extra_columns is deprecated: write on_new_columns = {word:?} (same meaning)"
            )],
            _ => Vec::new(),
        }
    }

    /// Validates into a dataset, or records why not. `pii_salt` is the salt of
    /// `pii = "hash"` columns, if set.
    pub(super) fn validate(
        self,
        path: &str,
        p: &mut Problems,
        pii_salt: Option<&Secret>,
        default_table: TableFormat,
    ) -> Option<Dataset> {
        let before = p.0.len();
        p.check(
            is_identifier(&self.name),
            format!("{path}.name"),
            format!(
                "{:?} must start with a lowercase letter and hold only a-z, 0-9 and _ (it names lake folders and tables)",
                self.name
            ),
        );
        let format = choice(p, format!("{path}.format"), &self.format, &FILE_FORMATS);
        let matcher = match compile_glob(&self.pattern) {
            Ok(m) => Some(m),
            Err(e) => {
                p.add(
                    format!("{path}.match"),
                    format!("{:?} is not a valid glob: {}", self.pattern, e.kind()),
                );
                None
            }
        };
        let dataset_nulls = self.nulls.clone();
        let Columns {
            columns,
            untyped,
            hashes,
        } = validate_columns(self.columns, dataset_nulls.as_deref(), pii_salt, path, p);
        if hashes && pii_salt.is_none() {
            p.add(
                format!("{path}.columns"),
                "a column has pii = \"hash\" but the salt is missing: set the environment variable named by lake.pii_salt_env",
            );
        }
        let partition =
            validate_partition(self.partition_by.as_deref(), &columns, &untyped, path, p);
        let records = validate_records(
            self.records_table,
            self.records_key,
            &columns,
            &untyped,
            path,
            p,
        );
        let csv = self
            .csv
            .map(|raw| raw.validate(&format!("{path}.csv"), p))
            .unwrap_or_default();
        if let (Some(FileFormat::Jsonl), true) = (format, csv != CsvOptions::default()) {
            p.add(
                format!("{path}.csv"),
                "CSV options only apply to format = \"csv\"",
            );
        }

        let mut policy = Policy::default();
        if let Some(word) = &self.on_invalid {
            policy.on_invalid = choice(p, format!("{path}.on_invalid"), word, &ON_INVALID)
                .unwrap_or(policy.on_invalid);
        }
        match (&self.on_new_columns, &self.extra_columns) {
            (Some(_), Some(_)) => p.add(
                format!("{path}.extra_columns"),
                "is the deprecated name of on_new_columns; give only on_new_columns",
            ),
            (Some(word), None) => {
                let key = format!("{path}.on_new_columns");
                policy.on_new_columns =
                    choice(p, key, word, &ON_NEW_COLUMNS).unwrap_or(policy.on_new_columns);
            }
            (None, Some(word)) => {
                let key = format!("{path}.extra_columns");
                policy.on_new_columns =
                    choice(p, key, word, &EXTRA_COLUMNS).unwrap_or(policy.on_new_columns);
            }
            (None, None) => {}
        }
        if let Some(fraction) = self.max_invalid_fraction {
            p.check(
                (0.0..=1.0).contains(&fraction),
                format!("{path}.max_invalid_fraction"),
                "must be between 0 and 1",
            );
            policy.max_invalid_fraction = fraction;
        }
        let names = match self.unique_key {
            None => Vec::new(),
            Some(OneOrMany::One(name)) => vec![name],
            Some(OneOrMany::Many(names)) => names,
        };
        for name in names {
            match columns.iter().position(|c| c.name == name) {
                Some(index) => policy.unique_key.push(index),
                None if untyped.contains(&name) => {}
                None => p.add(
                    format!("{path}.unique_key"),
                    format!("{name:?} is not a column of this dataset"),
                ),
            }
        }
        let at_least_a_byte = |p: &mut Problems, key: &str, raw: &RawSize| {
            size_in(
                p,
                &format!("{path}.{key}"),
                raw,
                1..=u64::MAX,
                "at least 1 byte",
            )
        };
        if let Some(raw) = &self.max_object_bytes {
            policy.max_object_bytes = at_least_a_byte(p, "max_object_bytes", raw);
        }
        if let Some(raw) = &self.max_decompressed_bytes {
            policy.expansion.max_bytes = at_least_a_byte(p, "max_decompressed_bytes", raw);
        }
        if let Some(ratio) = self.max_compression_ratio {
            p.check(
                (1..=1_000_000).contains(&ratio),
                format!("{path}.max_compression_ratio"),
                "must be between 1 and 1000000",
            );
            policy.expansion.max_ratio = ratio;
        }
        if let Some(raw) = &self.max_row_bytes {
            let bytes = size_in(
                p,
                &format!("{path}.max_row_bytes"),
                raw,
                64..=256 << 20,
                "between 64 bytes and 256MiB",
            );
            policy.max_row_bytes = bytes as usize;
        }
        if let Some(count) = self.max_columns {
            p.check(
                (1..=100_000).contains(&count),
                format!("{path}.max_columns"),
                "must be between 1 and 100000",
            );
            policy.max_columns = count as usize;
        }
        if let Some(inline) = self.inline {
            policy.accepts_inline = inline;
        }
        if let Header::Names(names) = &csv.header {
            let extra = policy.on_new_columns;
            validate_header_names(names, &columns, &untyped, extra, path, p);
        }

        if p.0.len() != before {
            return None;
        }
        let table = match &self.table_format {
            None => Some(default_table),
            Some(word) => choice(p, format!("{path}.table_format"), word, &TABLE_FORMATS),
        };
        if let (Some(TableFormat::Iceberg), Some(partition)) = (table, &partition) {
            iceberg_partition_column_is_kept(p, path, &columns, partition);
        }
        Some(Dataset {
            name: self.name,
            pattern: self.pattern,
            matcher: matcher?,
            format: format?,
            partition: partition?,
            columns,
            records,
            csv,
            policy,
            table: table?,
            added: 0,
            field_ids: None,
        })
    }
}

/// An Iceberg partition is computed from a column of the data files, so the partition
/// column must be written to the lake as it is (not hashed, not dropped).
fn iceberg_partition_column_is_kept(
    p: &mut Problems,
    path: &str,
    columns: &[Column],
    partition: &Partition,
) {
    let (Partition::DateColumn { index } | Partition::TimestampColumn { index }) = partition else {
        return;
    };
    let column = &columns[*index];
    p.check(
        matches!(column.lake, LakeOutput::Keep { .. }),
        format!("{path}.partition_by"),
        format!(
            "{:?} must be kept in the lake as it is for an Iceberg table (its partition is computed from it), so it may not be hashed or dropped",
            column.name
        ),
    );
}

fn validate_partition(
    partition_by: Option<&str>,
    columns: &[Column],
    untyped: &[String],
    path: &str,
    p: &mut Problems,
) -> Option<Partition> {
    let partition_by = partition_by.unwrap_or(INGEST_DATE);
    if untyped.iter().any(|name| name == partition_by) {
        return None;
    }
    let Some(index) = columns.iter().position(|c| c.name == partition_by) else {
        if partition_by == INGEST_DATE {
            return Some(Partition::IngestDate);
        }
        p.add(
            format!("{path}.partition_by"),
            format!("{partition_by:?} is neither \"{INGEST_DATE}\" nor a column of this dataset"),
        );
        return None;
    };
    let column = &columns[index];
    p.check(
        column.lake == (LakeOutput::Keep { name: column.name.clone() }),
        format!("{path}.partition_by"),
        format!("the partition column {partition_by:?} cannot be renamed, dropped or hashed in the lake"),
    );
    match column.kind {
        ColumnType::Date => Some(Partition::DateColumn { index }),
        ColumnType::Timestamp => {
            let derived = format!("{partition_by}_date");
            p.check(
                !columns.iter().any(|c| c.name == derived),
                format!("{path}.partition_by"),
                format!("a timestamp partition is written as {derived}=…, which clashes with the column {derived:?}"),
            );
            Some(Partition::TimestampColumn { index })
        }
        other => {
            p.add(
                format!("{path}.partition_by"),
                format!("column {partition_by:?} has type {}; partition columns must be date or timestamp", other.name()),
            );
            None
        }
    }
}

fn validate_records(
    table: Option<String>,
    key: Option<String>,
    columns: &[Column],
    untyped: &[String],
    path: &str,
    p: &mut Problems,
) -> Option<RecordsTarget> {
    match (table, key) {
        (None, None) => None,
        (Some(_), None) => {
            p.add(
                format!("{path}.records_key"),
                "records_table needs records_key, the table's hash key column",
            );
            None
        }
        (None, Some(_)) => {
            p.add(
                format!("{path}.records_table"),
                "records_key is set but records_table is not",
            );
            None
        }
        (Some(table), Some(key)) => {
            p.check(
                is_table_name(&table),
                format!("{path}.records_table"),
                format!(
                    "{table:?} is not a valid DynamoDB table name (3-255 of a-z A-Z 0-9 _ . -)"
                ),
            );
            if untyped.contains(&key) {
                return None;
            }
            let Some(key_index) = columns.iter().position(|c| c.name == key) else {
                p.add(
                    format!("{path}.records_key"),
                    format!("{key:?} is not a column of this dataset"),
                );
                return None;
            };
            let column = &columns[key_index];
            p.check(
                column.kind == ColumnType::String && column.required,
                format!("{path}.records_key"),
                format!("column {key:?} must be a required string column: it is the table's string hash key"),
            );
            Some(RecordsTarget { table, key_index })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, problems, with, GOOD};
    use crate::domain::dataset::{CsvOptions, Header, NewColumns, OnInvalid, Policy};
    use crate::domain::schema::{Allowed, LakeOutput, Limit, Redaction, ValueFormat};

    #[test]
    fn every_rule_and_option_is_read() {
        let text = with(
            "on_invalid = \"reject_file\"\nmax_invalid_fraction = 0.25\nextra_columns = \"keep\"\nunique_key = [\"user_id\", \"signup_date\"]\nnulls = [\"-\"]\nmax_row_bytes = 4096\nmax_columns = 50\nmax_object_bytes = 1000\nmax_decompressed_bytes = \"2GiB\"\nmax_compression_ratio = 50\n[datasets.csv]\ndelimiter = \"\\\\t\"\nquote = \"'\"\nescape = \"\\\\\"\nheader = [\"user_id\", \"signup_date\", \"email\", \"age\", \"at\"]\nskip_rows = 2\ncomment = \"#\"",
            "[[datasets.columns]]\nname = \"email\"\ntype = \"string\"\npattern = \"[^@]+@[^@]+\"\nmax_length = 100\npii = \"hash\"\nrename = \"email_hash\"\n[[datasets.columns]]\nname = \"age\"\ntype = \"int\"\nmin = 0\nmax = \"150\"\nallowed = [1, \"2\"]\ndrop_from_lake = true\n[[datasets.columns]]\nname = \"at\"\ntype = \"timestamp\"\nformat = \"epoch_millis\"\nmin = \"2000-01-01T00:00:00Z\"\n[[datasets.columns]]\nname = \"ok\"\ntype = \"bool\"\ntrue_values = [\"si\"]\nfalse_values = [\"no\"]\nnulls = [\"?\"]\n[[datasets.columns]]\nname = \"phone\"\ntype = \"string\"\npii = \"drop\"",
        );
        let s = load(&text, &[("LAKEWORKER_PII_SALT", "pepper")]).unwrap();
        assert_eq!(s.lake.pii_salt.as_ref().unwrap().expose(), "pepper");
        assert_eq!(
            format!("{:?}", s.lake.pii_salt),
            "Some(Secret(***))",
            "the salt never prints"
        );
        let d = s.datasets.by_name("users").unwrap();
        assert_eq!(d.policy.on_invalid, OnInvalid::RejectFile);
        assert_eq!(d.policy.max_invalid_fraction, 0.25);
        assert_eq!(d.policy.on_new_columns, NewColumns::Keep);
        assert_eq!(d.policy.unique_key, [0, 1]);
        assert_eq!(
            (
                d.policy.max_row_bytes,
                d.policy.max_columns,
                d.policy.max_object_bytes
            ),
            (4096, 50, 1000)
        );
        assert_eq!(
            (d.policy.expansion.max_bytes, d.policy.expansion.max_ratio),
            (2 << 30, 50)
        );
        assert_eq!(
            (d.csv.delimiter, d.csv.quote, d.csv.escape, d.csv.comment),
            (b'\t', Some(b'\''), Some(b'\\'), Some(b'#'))
        );
        assert_eq!(d.csv.skip_rows, 2);
        assert!(matches!(&d.csv.header, Header::Names(names) if names.len() == 5));
        let email = &d.columns[2];
        assert!(email.rules.pattern.as_ref().unwrap().is_match("a@b"));
        assert!(
            !email.rules.pattern.as_ref().unwrap().is_match("x a@b y@c"),
            "the whole value must match"
        );
        assert_eq!(email.rules.max_length, Some(100));
        assert_eq!(
            email.lake,
            LakeOutput::Hash {
                name: "email_hash".into()
            }
        );
        assert_eq!(email.nulls, ["-"], "the dataset's nulls");
        let age = &d.columns[3];
        assert_eq!(
            (age.rules.min, age.rules.max),
            (Some(Limit::Int(0)), Some(Limit::Int(150)))
        );
        assert_eq!(age.rules.allowed, Some(Allowed::Ints([1, 2].into())));
        assert_eq!(age.lake, LakeOutput::Drop);
        let at = &d.columns[4];
        assert_eq!(at.format, Some(ValueFormat::EpochMillis));
        assert_eq!(at.rules.min, Some(Limit::Timestamp(946_684_800_000_000)));
        let ok = &d.columns[5];
        assert_eq!(
            (
                ok.true_values.clone(),
                ok.false_values.clone(),
                ok.nulls.clone()
            ),
            (vec!["si".into()], vec!["no".into()], vec!["?".into()])
        );
        let phone = &d.columns[6];
        assert_eq!(
            (phone.name.as_str(), &phone.lake),
            ("phone", &LakeOutput::Drop)
        );
        // How pii values appear in errors and reports: hashed with the salt, or left out.
        assert_eq!(
            email.pii,
            Some(Redaction::Hash {
                salt: "pepper".into()
            })
        );
        assert_eq!(format!("{:?}", email.pii), "Some(Hash { salt: *** })");
        assert_eq!(phone.pii, Some(Redaction::Omit));
        assert_eq!(age.pii, None);
    }

    /// The defaults the README and config/local.toml document.
    #[test]
    fn dataset_defaults_are_pinned() {
        let s = load(GOOD, &[]).unwrap();
        let d = s.datasets.by_name("users").unwrap();
        assert_eq!(
            d.policy,
            Policy {
                on_invalid: OnInvalid::QuarantineRows,
                max_invalid_fraction: 0.1,
                on_new_columns: NewColumns::Ignore,
                unique_key: vec![],
                max_object_bytes: 100 * 1024 * 1024 * 1024,
                expansion: crate::domain::dataset::Expansion {
                    max_bytes: 100 * 1024 * 1024 * 1024,
                    max_ratio: 200,
                    ratio_free_bytes: 64 * 1024 * 1024,
                },
                max_row_bytes: 1024 * 1024,
                max_columns: 1000,
                accepts_inline: true,
            }
        );
        assert_eq!(
            d.csv,
            CsvOptions {
                delimiter: b',',
                quote: Some(b'"'),
                escape: None,
                header: Header::FirstRow,
                skip_rows: 0,
                comment: None,
            }
        );
        for column in &d.columns {
            assert_eq!(column.nulls, ["", "NULL", "null", "NA"], "{}", column.name);
        }
    }

    #[test]
    fn on_new_columns_replaces_extra_columns_which_is_read_with_a_warning() {
        let s = load(
            &with("on_new_columns = \"rescue\"\non_invalid = \"rescue\"", ""),
            &[],
        )
        .unwrap();
        let users = s.datasets.by_name("users").unwrap();
        assert_eq!(users.policy.on_new_columns, NewColumns::Rescue);
        assert_eq!(users.policy.on_invalid, OnInvalid::Rescue);
        assert!(s.deprecations.is_empty(), "{:?}", s.deprecations);
        let s = load(&with("extra_columns = \"reject\"", ""), &[]).unwrap();
        let users = s.datasets.by_name("users").unwrap();
        assert_eq!(users.policy.on_new_columns, NewColumns::Reject);
        assert_eq!(
            s.deprecations,
            ["datasets[0].extra_columns is deprecated: write on_new_columns = \"reject\" (same meaning)"]
        );
        assert!(s
            .summary()
            .contains("warning: datasets[0].extra_columns is deprecated"));
    }

    #[test]
    fn inline_records_can_be_refused_per_dataset() {
        let s = load(GOOD, &[]).unwrap();
        assert!(s.datasets.by_name("users").unwrap().policy.accepts_inline);
        let s = load(&with("inline = false", ""), &[]).unwrap();
        let users = s.datasets.by_name("users").unwrap();
        assert!(!users.policy.accepts_inline);
        assert!(
            users.summary().ends_with(", inline records refused"),
            "{}",
            users.summary()
        );
        assert!(
            load(&with("inline = true", ""), &[])
                .unwrap()
                .datasets
                .by_name("users")
                .unwrap()
                .policy
                .accepts_inline
        );
        let found = problems(&with("inline = \"maybe\"", ""));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "datasets[0].inline: invalid type: string \"maybe\", expected a boolean"
            ),
            "{found:?}"
        );
    }

    #[test]
    fn rule_problems_name_their_key() {
        let cases = [
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"string\"\npattern = \"(\"", "datasets[0].columns[2].pattern: \"(\" does not compile"),
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"int\"\nmin = 5\nmax = 1", "datasets[0].columns[2].min: 5 is above max 1"),
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"string\"\nmin = 1", "datasets[0].columns[2].min: string columns take no min or max"),
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"date\"\nmax = \"yesterday\"", "datasets[0].columns[2].max: \"yesterday\" is not a date bound"),
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"float\"\nallowed = [1]", "datasets[0].columns[2].allowed: only string and int columns take allowed values"),
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"int\"\npattern = \"1\"", "datasets[0].columns[2].pattern: only string columns take a pattern"),
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"bool\"\ntrue_values = [\"y\"]\nfalse_values = [\"Y\"]", "datasets[0].columns[2].false_values: \"y\" is both true and false"),
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"string\"\npii = \"hash\"", "datasets[0].columns: a column has pii = \"hash\" but the salt is missing"),
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"string\"\npii = \"encrypt\"", "datasets[0].columns[2].pii: \"encrypt\" is not one of: hash, drop"),
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"string\"\nrename = \"user_id\"", "datasets[0].columns[2].rename: the lake would have two columns named \"user_id\""),
            ("", "[[datasets.columns]]\nname = \"x\"\ntype = \"string\"\nrename = \"y\"\ndrop_from_lake = true", "datasets[0].columns[2].rename: a column dropped from the lake cannot be renamed"),
            ("on_invalid = \"shrug\"", "", "datasets[0].on_invalid: \"shrug\" is not one of: quarantine_rows, reject_file, rescue"),
            ("on_new_columns = \"grow\"", "", "datasets[0].on_new_columns: \"grow\" is not one of: ignore, keep, rescue, add, reject"),
            ("extra_columns = \"rescue\"", "", "datasets[0].extra_columns: \"rescue\" is not one of: ignore, keep, reject"),
            ("extra_columns = \"keep\"\non_new_columns = \"keep\"", "", "datasets[0].extra_columns: is the deprecated name of on_new_columns; give only on_new_columns"),
            ("max_invalid_fraction = 1.5", "", "datasets[0].max_invalid_fraction: must be between 0 and 1"),
            ("max_compression_ratio = 0", "", "datasets[0].max_compression_ratio: must be between 1 and 1000000"),
            ("unique_key = \"nobody\"", "", "datasets[0].unique_key: \"nobody\" is not a column of this dataset"),
            ("[datasets.csv]\ndelimiter = \";;\"", "", "datasets[0].csv.delimiter: \";;\" must be one ASCII character"),
            ("[datasets.csv]\ndelimiter = \"'\"\nquote = \"'\"", "", "datasets[0].csv: delimiter, quote, escape and comment must be different characters"),
            ("[datasets.csv]\nheader = false", "", "datasets[0].csv.header: a file without a header row needs its column names"),
        ];
        for (extra, column, expected) in cases {
            let found = problems(&with(extra, column));
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{expected:?} not in {found:#?}"
            );
        }
        let partition_hashed = GOOD.replace(
            "format = \"%Y/%m/%d\"",
            "format = \"%Y/%m/%d\"\nrename = \"day\"",
        );
        assert!(problems(&partition_hashed).iter().any(|p| p.starts_with(
            "datasets[0].partition_by: the partition column \"signup_date\" cannot be renamed"
        )));
    }
}
