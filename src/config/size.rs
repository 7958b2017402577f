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
