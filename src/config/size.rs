//! Byte sizes as written (`134217728`, `"128MiB"`, `"5 GB"`): every size key takes the
//! same forms, is read by [`parse_size`] and range-checked by [`size_in`] in the same words.

use std::fmt;

use serde::Deserialize;

use super::Problems;

/// Reads a byte size: a plain number of bytes, or a number with a unit `KiB`, `MiB`, `GiB`,
/// `TiB` (powers of 1024; `K`, `M`, `G`, `T`, `KB`, `MB`, `GB`, `TB` mean the same,
/// case-insensitive).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// A size key as written: a TOML integer, or a string holding a number of bytes or a
/// number with a unit (`"128MiB"`, `"5 GB"`). Environment overrides always arrive as
/// strings, so every size key takes both. Checked by [`size_in`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawSize {
    Integer(i64),
    Text(String),
}

impl RawSize {
    pub(super) fn text(text: &str) -> RawSize {
        RawSize::Text(text.to_owned())
    }

    fn bytes(&self) -> Option<u64> {
        match self {
            RawSize::Integer(n) => u64::try_from(*n).ok(),
            RawSize::Text(text) => parse_size(text),
        }
    }
}

/// As written: an integer as is, a string quoted.
impl fmt::Display for RawSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawSize::Integer(n) => write!(f, "{n}"),
            RawSize::Text(text) => write!(f, "{text:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = RawSize;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: bytes, or a string such as \"128MiB\"")
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<RawSize, E> {
                Ok(RawSize::Integer(n))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<RawSize, E> {
                // Past i64 it cannot be a valid size anyway; keep it for the message.
                Ok(
                    i64::try_from(n)
                        .map_or_else(|_| RawSize::Text(n.to_string()), RawSize::Integer),
                )
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawSize, E> {
                Ok(RawSize::text(text))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A size key within `range` (`range_text` says it in words), or a recorded problem. Every
/// size key goes through here, so each takes the same forms and words its problems alike.
pub(super) fn size_in(
    p: &mut Problems,
    path: &str,
    raw: &RawSize,
    range: std::ops::RangeInclusive<u64>,
    range_text: &str,
) -> u64 {
    match raw.bytes() {
        Some(size) if range.contains(&size) => return size,
        Some(_) => p.add(path, format!("{raw} must be {range_text}")),
        None => p.add(
            path,
            format!("{raw} is not a size such as 134217728 or \"128MiB\""),
        ),
    }
    *range.start()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{another_dataset, in_dataset, load, GOOD};
    use super::super::{ConfigError, Settings, DATASETS_ENV};

    /// Where a size key lives in GOOD: how to add a line setting it, and how to read it.
    struct SizeKey {
        path: &'static str,
        /// GOOD with `line` (`key = value`) in the key's section.
        place: fn(&str) -> String,
        read: fn(&Settings) -> u64,
    }

    fn in_lake(line: &str) -> String {
        GOOD.replace(
            "bucket = \"lakeworker-lake\"",
            &format!("bucket = \"lakeworker-lake\"\n{line}"),
        )
    }

    fn in_worker(line: &str) -> String {
        GOOD.replace("[ledger]\n", &format!("[worker]\n{line}\n[ledger]\n"))
    }

    fn users(s: &Settings) -> &crate::domain::dataset::Policy {
        &s.datasets.by_name("users").unwrap().policy
    }

    const SIZE_KEYS: [SizeKey; 6] = [
        SizeKey {
            path: "lake.target_file_size",
            place: in_lake,
            read: |s| s.lake.parquet.target_file_size,
        },
        SizeKey {
            path: "lake.upload_part_size",
            place: in_lake,
            read: |s| s.lake.upload_part_size,
        },
        SizeKey {
            path: "worker.conversion_memory",
            place: in_worker,
            read: |s| s.worker.conversion_memory.bytes(),
        },
        SizeKey {
            path: "datasets[0].max_object_bytes",
            place: in_dataset,
            read: |s| users(s).max_object_bytes,
        },
        SizeKey {
            path: "datasets[0].max_decompressed_bytes",
            place: in_dataset,
            read: |s| users(s).expansion.max_bytes,
        },
        SizeKey {
            path: "datasets[0].max_row_bytes",
            place: in_dataset,
            read: |s| users(s).max_row_bytes as u64,
        },
    ];

    /// Loads GOOD with `key` set to `value` (as TOML).
    fn load_size(key: &SizeKey, value: &str) -> Result<Settings, ConfigError> {
        let name = key.path.rsplit('.').next().unwrap();
        load(&(key.place)(&format!("{name} = {value}")), &[])
    }

    #[test]
    fn every_size_key_takes_the_same_forms() {
        // 16 MiB is within every size key's range.
        let forms = [
            "16777216",
            "\"16777216\"",
            "\"16MiB\"",
            "\"16 mb\"",
            "\"16384K\"",
            "\" 16m \"",
        ];
        for key in &SIZE_KEYS {
            for form in forms {
                match load_size(key, form) {
                    Ok(s) => assert_eq!((key.read)(&s), 16 << 20, "{} = {form}", key.path),
                    Err(e) => panic!("{} = {form}: {e}", key.path),
                }
            }
            let refused = |value: &str| -> Vec<String> {
                let err = load_size(key, value).expect_err(value);
                err.problems
                    .into_iter()
                    .map(|p| format!("{}: {}", p.path, p.reason))
                    .collect()
            };
            for (value, written) in [
                ("\"lots\"", "\"lots\""),
                ("-5", "-5"),
                ("\"1.5GiB\"", "\"1.5GiB\""),
            ] {
                assert_eq!(
                    refused(value),
                    [format!(
                        "{}: {written} is not a size such as 134217728 or \"128MiB\"",
                        key.path
                    )],
                    "{} = {value}",
                    key.path
                );
            }
            let wrong_type = refused("true");
            assert_eq!(wrong_type.len(), 1, "{wrong_type:?}");
            assert!(
                wrong_type[0].starts_with(&format!(
                    "{}: invalid type: boolean `true`, expected a size",
                    key.path
                )),
                "{wrong_type:?}"
            );
        }
        // Datasets from LAKEWORKER_DATASETS are TOML too.
        for form in forms {
            let views = another_dataset("views").replace(
                "format = \"jsonl\"\n",
                &format!("format = \"jsonl\"\nmax_row_bytes = {form}\n"),
            );
            let s = load(GOOD, &[(DATASETS_ENV, views.as_str())]).unwrap();
            let views = s.datasets.by_name("views").unwrap();
            assert_eq!(views.policy.max_row_bytes, 16 << 20, "{form}");
        }
        // Environment overrides arrive as strings, with or without a unit.
        for (name, value) in [
            ("LAKEWORKER__LAKE__TARGET_FILE_SIZE", "16777216"),
            ("LAKEWORKER__LAKE__UPLOAD_PART_SIZE", "16MiB"),
            ("LAKEWORKER__WORKER__CONVERSION_MEMORY", "16 MB"),
        ] {
            let s = load(GOOD, &[(name, value)]).unwrap();
            let read = [
                s.lake.parquet.target_file_size,
                s.lake.upload_part_size,
                s.worker.conversion_memory.bytes(),
            ];
            assert!(read.contains(&(16 << 20)), "{name}={value}: {read:?}");
        }
    }

    #[test]
    fn size_ranges_are_reported_in_the_same_words() {
        let cases = [
            (
                "lake.target_file_size",
                "\"1KiB\"",
                "\"1KiB\" must be between 1MiB and 64GiB",
            ),
            (
                "lake.upload_part_size",
                "1048576",
                "1048576 must be between 5MiB and 5GiB (S3's part size limits)",
            ),
            (
                "worker.conversion_memory",
                "\"1MiB\"",
                "\"1MiB\" must be between 16MiB and 1TiB",
            ),
            (
                "datasets[0].max_object_bytes",
                "0",
                "0 must be at least 1 byte",
            ),
            (
                "datasets[0].max_decompressed_bytes",
                "0",
                "0 must be at least 1 byte",
            ),
            (
                "datasets[0].max_row_bytes",
                "\"32\"",
                "\"32\" must be between 64 bytes and 256MiB",
            ),
        ];
        for (path, value, reason) in cases {
            let key = SIZE_KEYS.iter().find(|k| k.path == path).unwrap();
            let err = load_size(key, value).unwrap_err();
            assert_eq!(err.to_string(), format!("{path}: {reason}"));
        }
    }
}
