//! `[iceberg]`: how Iceberg tables are committed (batching, the per-table commit lease) and
//! how long their snapshots are kept. Only read for datasets with `table_format = "iceberg"`.

use std::time::Duration;

use serde::Deserialize;

use super::Problems;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcebergSettings {
    /// A table's open batch is committed this long after its first file joined.
    pub commit_interval: Duration,
    /// ... or as soon as it carries this many source files.
    pub commit_max_files: usize,
    /// Snapshots older than this are expired (the newest is always kept).
    pub keep_snapshots: Duration,
    /// How often a worker expires old snapshots of its tables.
    pub expire_every: Duration,
    /// How long one worker may hold a table's commit lease without renewing it.
    pub commit_lease: Duration,
}

impl Default for IcebergSettings {
    fn default() -> Self {
        RawIceberg::default()
            .validate(&mut Problems::default())
            .expect("the defaults are valid")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIceberg {
    #[serde(default = "default_commit_interval")]
    commit_interval: String,
    #[serde(default = "default_commit_max_files")]
    commit_max_files: u64,
    #[serde(default = "default_keep_snapshots")]
    keep_snapshots: String,
    #[serde(default = "default_expire_every")]
    expire_every: String,
    #[serde(default = "default_commit_lease")]
    commit_lease: String,
}

impl Default for RawIceberg {
    fn default() -> Self {
        RawIceberg {
            commit_interval: default_commit_interval(),
            commit_max_files: default_commit_max_files(),
            keep_snapshots: default_keep_snapshots(),
            expire_every: default_expire_every(),
            commit_lease: default_commit_lease(),
        }
    }
}

fn default_commit_interval() -> String {
    "10s".into()
}

fn default_commit_max_files() -> u64 {
    500
}

fn default_keep_snapshots() -> String {
    "7d".into()
}

fn default_expire_every() -> String {
    "1h".into()
}

fn default_commit_lease() -> String {
    "60s".into()
}

/// Most source files one commit carries: the commit's record in the ledger lists them,
/// and a DynamoDB item holds at most 400 KB.
pub const MAX_COMMIT_FILES: u64 = 1000;

/// `"250ms"`, `"10s"`, `"5m"`, `"2h"`, `"7d"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = match unit {
        "ms" => number,
        "s" => number.checked_mul(1000)?,
        "m" => number.checked_mul(60_000)?,
        "h" => number.checked_mul(3_600_000)?,
        "d" => number.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

pub(super) fn duration_in(
    p: &mut Problems,
    path: &str,
    text: &str,
    range: std::ops::RangeInclusive<Duration>,
    between: &str,
) -> Duration {
    match parse_duration(text) {
        Some(d) if range.contains(&d) => d,
        Some(_) => {
            p.add(path, format!("{text:?} must be between {between}"));
            *range.start()
        }
        None => {
            p.add(
                path,
                format!("{text:?} is not a duration such as \"500ms\", \"10s\", \"5m\", \"2h\" or \"7d\""),
            );
            *range.start()
        }
    }
}

impl RawIceberg {
    pub(super) fn validate(self, p: &mut Problems) -> Option<IcebergSettings> {
        let before = p.0.len();
        let second = Duration::from_secs(1);
        let hour = Duration::from_secs(3600);
        let day = 24 * hour;
        let commit_interval = duration_in(
            p,
            "iceberg.commit_interval",
            &self.commit_interval,
            Duration::from_millis(100)..=Duration::from_secs(600),
            "100ms and 10m",
        );
        p.check(
            (1..=MAX_COMMIT_FILES).contains(&self.commit_max_files),
            "iceberg.commit_max_files",
            format!("must be between 1 and {MAX_COMMIT_FILES}"),
        );
        // A snapshot is how a redelivered object is found to be committed already, so it
        // must outlive the longest a message can stay in the queue (SQS keeps one 14 days
        // at most; the ledger settles a commit within seconds).
        let keep_snapshots = duration_in(
            p,
            "iceberg.keep_snapshots",
            &self.keep_snapshots,
            hour..=3650 * day,
            "1h and 3650d",
        );
        let expire_every = duration_in(
            p,
            "iceberg.expire_every",
            &self.expire_every,
            Duration::from_secs(60)..=7 * day,
            "1m and 7d",
        );
        let commit_lease = duration_in(
            p,
            "iceberg.commit_lease",
            &self.commit_lease,
            5 * second..=Duration::from_secs(3600),
            "5s and 1h",
        );
        (p.0.len() == before).then_some(IcebergSettings {
            commit_interval,
            commit_max_files: self.commit_max_files as usize,
            keep_snapshots,
            expire_every,
            commit_lease,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_a_unit() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86400)));
        for bad in ["", "10", "s", "1.5s", "10 s", "-1s", "10w"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn out_of_range_values_are_problems() {
        let mut p = Problems::default();
        let raw = RawIceberg {
            commit_interval: "20m".into(),
            commit_max_files: 0,
            keep_snapshots: "10m".into(),
            expire_every: "soon".into(),
            commit_lease: "1s".into(),
        };
        assert!(raw.validate(&mut p).is_none());
        let text: Vec<String> =
            p.0.iter()
                .map(|p| format!("{}: {}", p.path, p.reason))
                .collect();
        assert_eq!(text.len(), 5, "{text:?}");
        assert!(text[0].starts_with("iceberg.commit_interval"), "{text:?}");
        assert!(text[2].contains("between 1h and 3650d"), "{text:?}");
        assert!(text[3].contains("is not a duration"), "{text:?}");
    }

    #[test]
    fn defaults_are_pinned() {
        let s = IcebergSettings::default();
        assert_eq!(s.commit_interval, Duration::from_secs(10));
        assert_eq!(s.commit_max_files, 500);
        assert_eq!(s.keep_snapshots, Duration::from_secs(7 * 86400));
        assert_eq!(s.commit_lease, Duration::from_secs(60));
    }
}
