//! `[lake]`: the lake bucket and its key prefixes (tables, quarantine, raw zone), how
//! Parquet files are written and uploaded, and the salt of `pii = "hash"` columns.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

use super::checks::{check_bucket, choice, nonzero};
use super::size::{size_in, RawSize};
use super::Problems;
use crate::domain::dataset::TableFormat;

#[derive(Debug, Clone)]
pub struct LakeSettings {
    pub bucket: String,
    pub prefix: String,
    /// Where bad rows and rejected files go: `lake.quarantine_bucket`, else the lake bucket.
    pub quarantine_bucket: String,
    /// The raw zone in the lake bucket: originals of converted files are copied here.
    pub raw_prefix: Option<String>,
    pub quarantine_prefix: String,
    /// How lake Parquet files are written: codec, row group size, target file size.
    pub parquet: ParquetOptions,
    /// The salt of `pii = "hash"` columns, read from the variable `lake.pii_salt_env`.
    pub pii_salt: Option<Secret>,
    /// Part size of multipart uploads of lake files (5 MiB to 5 GiB).
    pub upload_part_size: u64,
    /// Parts of one file uploaded at once; with `upload_part_size` this bounds upload
    /// buffers.
    pub upload_concurrency: NonZeroUsize,
    /// The table format of datasets that do not set their own (and of the load history).
    pub table_format: TableFormat,
    /// How often the load history is flushed to its table (`lake.history_interval`);
    /// `None` when it is not kept (`lake.history = false`).
    pub history_interval: Option<Duration>,
}

/// A value that must not appear in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Parquet compression codec of lake files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Snappy,
    None,
}

/// How Parquet files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetOptions {
    pub compression: Compression,
    /// The zstd level (1 to 22) when the compression is zstd.
    pub zstd_level: i32,
    /// Most rows in one row group.
    pub row_group_size: usize,
    /// A lake part is closed, and the next one begun, after the row group that takes it to
    /// this many bytes; so parts are this size or up to one row group more (the last less).
    pub target_file_size: u64,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            compression: Compression::Zstd,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            row_group_size: 1024 * 1024,
            target_file_size: 128 << 20,
        }
    }
}

const COMPRESSIONS: [(&str, Compression); 3] = [
    ("zstd", Compression::Zstd),
    ("snappy", Compression::Snappy),
    ("none", Compression::None),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLake {
    bucket: String,
    #[serde(default = "default_prefix")]
    prefix: String,
    quarantine_bucket: Option<String>,
    /// This and `quarantine_prefix` are also read by [`super::validate`]: `landing.delete_after`
    /// needs the raw zone, and the form of `quarantine_prefix` is checked after that.
    pub(super) raw_prefix: Option<String>,
    #[serde(default = "default_quarantine_prefix")]
    pub(super) quarantine_prefix: String,
    #[serde(default = "default_compression")]
    compression: String,
    #[serde(default = "default_zstd_level")]
    zstd_level: i32,
    #[serde(default = "default_row_group_size")]
    row_group_size: u32,
    #[serde(default = "default_target_file_size")]
    target_file_size: RawSize,
    #[serde(default = "default_upload_part_size")]
    upload_part_size: RawSize,
    #[serde(default = "default_upload_concurrency")]
    upload_concurrency: u32,
    #[serde(default = "default_pii_salt_env")]
    pii_salt_env: String,
    #[serde(default = "default_table_format")]
    table_format: String,
    #[serde(default = "default_history")]
    history: bool,
    #[serde(default = "default_history_interval")]
    history_interval: String,
}

fn default_history() -> bool {
    true
}

fn default_history_interval() -> String {
    "5m".into()
}

fn default_table_format() -> String {
    "hive".into()
}

/// `table_format` words (of `[lake]` and of a dataset).
pub(super) const TABLE_FORMATS: [(&str, TableFormat); 2] = [
    ("hive", TableFormat::Hive),
    ("iceberg", TableFormat::Iceberg),
];

fn default_prefix() -> String {
    "curated".into()
}

fn default_quarantine_prefix() -> String {
    "quarantine".into()
}

/// The parquet crate's default zstd level, and the fastest: levels 3, 6 and 9 are measured
/// against it in docs/benchmarks.md.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

fn default_zstd_level() -> i32 {
    DEFAULT_ZSTD_LEVEL
}

fn default_compression() -> String {
    "zstd".into()
}

fn default_row_group_size() -> u32 {
    ParquetOptions::default().row_group_size as u32
}

fn default_target_file_size() -> RawSize {
    RawSize::text("128MiB")
}

fn default_upload_part_size() -> RawSize {
    RawSize::text("16MiB")
}

fn default_upload_concurrency() -> u32 {
    4
}

fn default_pii_salt_env() -> String {
    "LAKEWORKER_PII_SALT".into()
}

impl RawLake {
    /// The salt of `pii = "hash"` columns: the value of the variable `pii_salt_env` names
    /// in `env`, unless unset or empty.
    pub(super) fn pii_salt(&self, env: &config::Map<String, String>) -> Option<Secret> {
        env.get(&self.pii_salt_env)
            .filter(|salt| !salt.is_empty())
            .map(|salt| Secret(salt.clone()))
    }

    /// Every key of `[lake]` but the form of `quarantine_prefix`, which is checked with
    /// [`check_prefix`] after `landing.delete_after` (the order problems are reported in).
    /// `None` when the compression is unknown (a problem is recorded).
    pub(super) fn validate(
        self,
        pii_salt: Option<Secret>,
        p: &mut Problems,
    ) -> Option<LakeSettings> {
        check_bucket(p, "lake.bucket", &self.bucket);
        if let Some(bucket) = &self.quarantine_bucket {
            check_bucket(p, "lake.quarantine_bucket", bucket);
        }
        let compression = choice(p, "lake.compression", &self.compression, &COMPRESSIONS);
        p.check(
            (1..=22).contains(&self.zstd_level),
            "lake.zstd_level",
            "must be between 1 and 22",
        );
        p.check(
            self.row_group_size > 0,
            "lake.row_group_size",
            "must be at least 1 row",
        );
        let target_file_size = size_in(
            p,
            "lake.target_file_size",
            &self.target_file_size,
            1 << 20..=64 << 30,
            "between 1MiB and 64GiB",
        );
        let upload_part_size = size_in(
            p,
            "lake.upload_part_size",
            &self.upload_part_size,
            5 << 20..=5 << 30,
            "between 5MiB and 5GiB (S3's part size limits)",
        );
        p.check(
            (1..=64).contains(&self.upload_concurrency),
            "lake.upload_concurrency",
            "must be between 1 and 64",
        );
        check_prefix(p, "lake.prefix", &self.prefix);
        // Prefixes in one bucket must not nest: a lifecycle rule, a bucket policy or a
        // clean-up of one would reach into the other (quarantine expiry deleting tables).
        let quarantine_shares_the_bucket = self
            .quarantine_bucket
            .as_ref()
            .is_none_or(|b| b == &self.bucket);
        if let Some(raw) = &self.raw_prefix {
            check_prefix(p, "lake.raw_prefix", raw);
            let clashes = nested(raw, &self.prefix)
                || (quarantine_shares_the_bucket && nested(raw, &self.quarantine_prefix));
            p.check(
                !clashes,
                "lake.raw_prefix",
                "must differ from lake.prefix and lake.quarantine_prefix, and neither may contain the other",
            );
        }
        p.check(
            !(quarantine_shares_the_bucket && nested(&self.quarantine_prefix, &self.prefix)),
            "lake.quarantine_prefix",
            "must differ from lake.prefix in the same bucket, and neither may contain the other",
        );
        let table_format = choice(p, "lake.table_format", &self.table_format, &TABLE_FORMATS);
        let history_interval = self.history.then(|| {
            super::iceberg::duration_in(
                p,
                "lake.history_interval",
                &self.history_interval,
                Duration::from_millis(100)..=Duration::from_secs(24 * 3600),
                "100ms and 24h",
            )
        });
        Some(LakeSettings {
            quarantine_bucket: self
                .quarantine_bucket
                .unwrap_or_else(|| self.bucket.clone()),
            bucket: self.bucket,
            raw_prefix: self.raw_prefix,
            prefix: self.prefix,
            quarantine_prefix: self.quarantine_prefix,
            parquet: ParquetOptions {
                compression: compression?,
                zstd_level: self.zstd_level,
                row_group_size: self.row_group_size as usize,
                target_file_size,
            },
            pii_salt,
            upload_part_size,
            upload_concurrency: nonzero(self.upload_concurrency),
            table_format: table_format?,
            history_interval,
        })
    }
}

/// Whether two key prefixes are the same or one is a folder of the other.
fn nested(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    a == b || inside(a, b) || inside(b, a)
}

pub(super) fn check_prefix(p: &mut Problems, path: &str, prefix: &str) {
    p.check(
        !prefix.starts_with('/') && !prefix.ends_with('/') && !prefix.contains("//"),
        path,
        format!("{prefix:?} must not start or end with / (write \"curated\", not \"/curated/\")"),
    );
}

#[cfg(test)]
mod tests {
    use super::super::parse_size;
    use super::super::tests::{load, problems, GOOD};
    use super::ParquetOptions;

    #[test]
    fn lake_file_and_upload_sizes_take_units_and_have_limits() {
        let s = load(GOOD, &[]).unwrap();
        assert_eq!(s.lake.parquet, ParquetOptions::default());
        assert_eq!(s.lake.upload_part_size, 16 << 20);
        assert_eq!(s.lake.upload_concurrency.get(), 4);

        let text = GOOD.replace(
            "bucket = \"lakeworker-lake\"",
            "bucket = \"lakeworker-lake\"\nrow_group_size = 5000\ntarget_file_size = 2097152\nupload_part_size = \"8 MiB\"",
        );
        let s = load(&text, &[("LAKEWORKER__LAKE__UPLOAD_CONCURRENCY", "2")]).unwrap();
        assert_eq!(s.lake.parquet.row_group_size, 5000);
        assert_eq!(s.lake.parquet.target_file_size, 2 << 20);
        assert_eq!(s.lake.upload_part_size, 8 << 20);
        assert_eq!(s.lake.upload_concurrency.get(), 2);
        let s = load(GOOD, &[("LAKEWORKER__LAKE__TARGET_FILE_SIZE", "1gib")]).unwrap();
        assert_eq!(s.lake.parquet.target_file_size, 1 << 30);

        let text = GOOD.replace(
            "bucket = \"lakeworker-lake\"",
            "bucket = \"lakeworker-lake\"\nrow_group_size = 0\ntarget_file_size = \"lots\"\nupload_part_size = \"1MiB\"\nupload_concurrency = 0",
        );
        assert_eq!(
            problems(&text),
            [
                "lake.row_group_size: must be at least 1 row",
                "lake.target_file_size: \"lots\" is not a size such as 134217728 or \"128MiB\"",
                "lake.upload_part_size: \"1MiB\" must be between 5MiB and 5GiB (S3's part size limits)",
                "lake.upload_concurrency: must be between 1 and 64",
            ]
        );
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("3K"), Some(3072));
        assert_eq!(parse_size("3 mb"), Some(3 << 20));
        assert_eq!(parse_size("-3"), None);
        assert_eq!(parse_size("3 TiB"), Some(3 << 40));
        assert_eq!(parse_size("3 PiB"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

    #[test]
    fn prefixes_in_one_bucket_do_not_nest() {
        for (key, value, problem) in [
            (
                "LAKEWORKER__LAKE__QUARANTINE_PREFIX",
                "curated",
                "lake.quarantine_prefix: must differ",
            ),
            (
                "LAKEWORKER__LAKE__QUARANTINE_PREFIX",
                "curated/bad",
                "lake.quarantine_prefix: must differ",
            ),
            (
                "LAKEWORKER__LAKE__PREFIX",
                "quarantine/tables",
                "lake.quarantine_prefix: must differ",
            ),
            (
                "LAKEWORKER__LAKE__RAW_PREFIX",
                "curated/raw",
                "lake.raw_prefix: must differ",
            ),
        ] {
            let err = load(GOOD, &[(key, value)]).unwrap_err();
            assert!(err.to_string().contains(problem), "{key}={value}: {err}");
        }
        // Siblings that share a start are not nested; another bucket may reuse a prefix.
        load(
            GOOD,
            &[("LAKEWORKER__LAKE__QUARANTINE_PREFIX", "curated-bad")],
        )
        .unwrap();
        load(
            GOOD,
            &[
                ("LAKEWORKER__LAKE__QUARANTINE_PREFIX", "curated"),
                ("LAKEWORKER__LAKE__QUARANTINE_BUCKET", "elsewhere"),
            ],
        )
        .unwrap();
    }
}
