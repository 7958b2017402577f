//! The raw text of a bad row without the clear values of its `pii` columns.
//!
//! A dataset without pii columns keeps every bad row's raw text as it was. With them, a
//! bad row is re-rendered with each pii value replaced by its stand-in
//! ([`Column::pii_stand_in`]: the salted hash or `<pii omitted>`); null texts stay as they
//! are. A row that cannot be split into its columns with certainty (a CSV record with a
//! field count other than the header's, bad UTF-8 or past a limit; a JSON line that is
//! not a whole JSON object) keeps no raw text at all: any of its parts might be a pii
//! value.

use std::fmt;

use csv_core::{QuoteStyle, WriteResult, Writer, WriterBuilder};
use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use serde_json::Value;

use crate::domain::dataset::{CsvOptions, Dataset};
use crate::domain::schema::Column;

/// Whether bad rows of `dataset` need their raw text redacted.
pub(super) fn has_pii(dataset: &Dataset) -> bool {
    dataset.columns.iter().any(|c| c.pii.is_some())
}

/// A field's text as the report may show it.
fn field_text<'t>(column: Option<&Column>, text: &'t str) -> std::borrow::Cow<'t, str> {
    match column {
        Some(column) if !column.is_null_text(text) => column
            .pii_stand_in(text)
            .map_or(std::borrow::Cow::Borrowed(text), std::borrow::Cow::Owned),
        _ => std::borrow::Cow::Borrowed(text),
    }
}

/// A CSV record, re-written in the dataset's dialect, with the fields of pii columns
/// replaced. `columns[i]` is the column of field `i`, if the dataset declares it.
pub(super) fn csv_record<'f>(
    fields: impl Iterator<Item = &'f str>,
    columns: &[Option<&Column>],
    options: &CsvOptions,
) -> Vec<u8> {
    let mut writer = csv_writer(options);
    let mut out = Vec::new();
    for (i, text) in fields.enumerate() {
        if i > 0 {
            push(&mut out, |buffer| writer.delimiter(buffer));
        }
        let text = field_text(columns.get(i).copied().flatten(), text);
        // The most a field can take: every byte doubled, two quotes and a delimiter.
        let mut buffer = vec![0; 2 * text.len() + 3];
        let (_, _, written) = writer.field(text.as_bytes(), &mut buffer);
        out.extend_from_slice(&buffer[..written]);
    }
    push(&mut out, |buffer| writer.finish(buffer));
    out
}

/// Writes what `write` produces into a small buffer onto `out`.
fn push(out: &mut Vec<u8>, write: impl FnOnce(&mut [u8]) -> (WriteResult, usize)) {
    let mut buffer = [0u8; 4];
    let (_, written) = write(&mut buffer);
    out.extend_from_slice(&buffer[..written]);
}

fn csv_writer(options: &CsvOptions) -> Writer {
    let mut builder = WriterBuilder::new();
    builder
        .delimiter(options.delimiter)
        .quote(options.quote.unwrap_or(b'"'))
        .double_quote(options.escape.is_none())
        .comment(options.comment)
        .quote_style(match options.quote {
            Some(_) => QuoteStyle::Necessary,
            None => QuoteStyle::Never,
        });
    if let Some(escape) = options.escape {
        builder.escape(escape);
    }
    builder.build()
}

/// A JSON lines row re-written with the values of pii columns replaced (keys in their
/// order, repeats kept); `None` unless the line is a whole JSON object.
pub(super) fn json_line(line: &[u8], dataset: &Dataset) -> Option<Vec<u8>> {
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let pairs = deserializer.deserialize_any(ObjectPairs).ok()??;
    deserializer.end().ok()?;
    let mut out = b"{".to_vec();
    for (n, (key, value)) in pairs.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let column = dataset.column_index(&key).map(|i| &dataset.columns[i]);
        let value = match (column, value) {
            (Some(column), Value::String(text)) => {
                Value::String(field_text(Some(column), &text).into_owned())
            }
            (Some(column), other) if !other.is_null() => column
                .pii_stand_in(&other.to_string())
                .map_or(other, Value::String),
            (_, other) => other,
        };
        serde_json::to_writer(&mut out, &key).ok()?;
        out.push(b':');
        serde_json::to_writer(&mut out, &value).ok()?;
    }
    out.push(b'}');
    Some(out)
}

/// A JSON value read as the pairs of an object, in order; `None` for anything else.
struct ObjectPairs;

impl<'de> Visitor<'de> for ObjectPairs {
    type Value = Option<Vec<(String, Value)>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some(pair) = map.next_entry::<String, Value>()? {
            pairs.push(pair);
        }
        Ok(Some(pairs))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::dataset::{testing, FileFormat, Partition};
    use crate::domain::schema::{pii_hash, ColumnType, Redaction};

    fn dataset() -> Dataset {
        let mut email = Column::new("email", ColumnType::String, false);
        email.pii = Some(Redaction::Hash {
            salt: Arc::from("s"),
        });
        let mut age = Column::new("age", ColumnType::Int, false);
        age.pii = Some(Redaction::Hash {
            salt: Arc::from("s"),
        });
        let mut phone = Column::new("phone", ColumnType::String, false);
        phone.pii = Some(Redaction::Omit);
        let columns = vec![
            Column::new("id", ColumnType::String, true),
            email,
            age,
            phone,
        ];
        testing::dataset(FileFormat::Jsonl, Partition::IngestDate, columns)
    }

    fn stand_in(text: &str) -> String {
        format!("<pii sha256:{}>", pii_hash("s", text))
    }

    #[test]
    fn csv_fields_of_pii_columns_are_replaced_and_quoting_is_kept() {
        let d = dataset();
        let columns = [
            Some(&d.columns[0]),
            Some(&d.columns[1]),
            Some(&d.columns[3]),
            None,
            Some(&d.columns[2]),
        ];
        let fields = ["a,b", "x@y", "555", "free \"text\"", " 42 "];
        let out = csv_record(fields.into_iter(), &columns, &CsvOptions::default());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "\"a,b\",{},<pii omitted>,\"free \"\"text\"\"\",{}",
                stand_in("x@y"),
                stand_in("42")
            ),
            "numbers are hashed trimmed, as errors show them"
        );
        let nulls = csv_record(
            ["", "NULL"].into_iter(),
            &columns[1..],
            &CsvOptions::default(),
        );
        assert_eq!(nulls, b",NULL", "null texts are no values");
        let tabs = CsvOptions {
            delimiter: b'\t',
            quote: None,
            ..CsvOptions::default()
        };
        let out = csv_record(["a", "x@y"].into_iter(), &columns, &tabs);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("a\t{}", stand_in("x@y"))
        );
    }

    #[test]
    fn json_values_of_pii_columns_are_replaced_in_order() {
        let d = dataset();
        let line = br#"{"phone":"555","id":"a","email":"x@y","email":"z@w","age":42,"extra":{"email":"n"},"age2":null}"#;
        let out = String::from_utf8(json_line(line, &d).unwrap()).unwrap();
        assert_eq!(
            out,
            format!(
                r#"{{"phone":"<pii omitted>","id":"a","email":"{}","email":"{}","age":"{}","extra":{{"email":"n"}},"age2":null}}"#,
                stand_in("x@y"),
                stand_in("z@w"),
                stand_in("42")
            )
        );
        let nulls = json_line(br#"{"email":null,"phone":"NA"}"#, &d).unwrap();
        assert_eq!(nulls, br#"{"email":null,"phone":"NA"}"#);
        for not_an_object in [
            &b"[\"x@y\"]"[..],
            b"\"x@y\"",
            b"{\"email\":\"x@y\"",
            b"{} {}",
        ] {
            assert_eq!(json_line(not_an_object, &d), None);
        }
    }
}
