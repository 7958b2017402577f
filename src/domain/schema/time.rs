//! Dates, timestamps and epochs: their text parsed into the lake's Arrow values (Date32
//! days, UTC microseconds) and those values turned back into chrono dates and instants.
//!
//! [`parse_date`] and [`parse_timestamp`] take a hand-written fast path for ISO text and
//! leave anything else to chrono. Epoch values (`format = "epoch_seconds"` /
//! `"epoch_millis"`) must name an instant between [`MIN_TIMESTAMP_MICROS`] and
//! [`MAX_TIMESTAMP_MICROS`]. The cell parser ([`super::cell`]) calls the parsers; the
//! lake's partitions and the records' texts use the conversions back.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::column::ValueFormat;

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
pub(super) enum EpochUnit {
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
pub(super) enum EpochError {
    NotANumber,
    /// A number, but not an instant between [`MIN_TIMESTAMP_MICROS`] and
    /// [`MAX_TIMESTAMP_MICROS`].
    OutOfRange,
}

/// Epoch text: integers exactly; seconds may also have a fraction or an exponent;
/// milliseconds must be integers.
pub(super) fn epoch_from_text(text: &str, unit: EpochUnit) -> Result<i64, EpochError> {
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
pub(super) fn epoch_from_json(n: &serde_json::Number, unit: EpochUnit) -> Result<i64, EpochError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schema::test_support::column;
    use crate::domain::schema::{ColumnType, Parsed, RawCell};

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
