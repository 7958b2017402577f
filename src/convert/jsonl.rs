//! JSON lines, in two parts: [`LineSplitter`] reads lines in file order (blank lines
//! skipped, at most `max_row_bytes` of a line kept) into [`LineChunk`]s, and
//! [`JsonChunkRows`] parses one chunk's lines as rows, on any thread.
//!
//! A line is parsed straight into one slot per dataset column: strings without escapes
//! are borrowed from the chunk, undeclared keys are skipped unless `on_new_columns` wants
//! them, and no map is built.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::BufRead;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::csv::read_line_capped;
use super::input::read_error;
use super::report::MAX_NEW_COLUMNS;
use super::{ConvertError, RowCheck, RowSource};
use crate::domain::dataset::{Dataset, NewColumns};
use crate::domain::schema::RawCell;

mod grid;
pub(super) use grid::{Cell, JsonGrid};

#[derive(Debug)]
struct Line {
    number: u64,
    byte: u64,
    /// Range in `LineChunk::bytes` (without the line break).
    text: Range<usize>,
    too_long: bool,
}

/// Whole lines, in file order.
#[derive(Debug, Default)]
pub(super) struct LineChunk {
    lines: Vec<Line>,
    bytes: Vec<u8>,
}

impl LineChunk {
    pub(super) fn len(&self) -> usize {
        self.lines.len()
    }

    /// Bytes its lines fill: what decides when a chunk is full.
    fn used(&self) -> usize {
        self.bytes.len() + self.lines.len() * size_of::<Line>()
    }

    /// Bytes it has allocated: what it weighs in the memory budget.
    pub(super) fn allocated(&self) -> usize {
        self.bytes.capacity() + self.lines.capacity() * size_of::<Line>()
    }
}

/// Reads lines in order and hands them out in chunks.
pub(super) struct LineSplitter<R: BufRead> {
    input: R,
    max_row_bytes: usize,
    line: u64,
    byte: u64,
    buffer: Vec<u8>,
    /// Text bytes a chunk starts with room for (the last chunk's, and a little more).
    bytes_hint: usize,
}

impl<R: BufRead> LineSplitter<R> {
    pub(super) fn new(input: R, dataset: &Dataset) -> Self {
        LineSplitter {
            input,
            max_row_bytes: dataset.policy.max_row_bytes,
            line: 0,
            byte: 0,
            buffer: Vec::new(),
            bytes_hint: 0,
        }
    }

    /// Non-blank lines until there are `max_lines` or they fill `max_bytes` (at least
    /// one); `None` at the end of the input.
    pub(super) fn next_chunk(
        &mut self,
        max_lines: usize,
        max_bytes: usize,
    ) -> Result<Option<LineChunk>, ConvertError> {
        let mut chunk = LineChunk {
            bytes: Vec::with_capacity(self.bytes_hint.min(max_bytes)),
            lines: Vec::new(),
        };
        while chunk.lines.len() < max_lines && chunk.used() < max_bytes {
            self.buffer.clear();
            // Two more bytes than the limit tell a long line from one ending in CR LF.
            let read = read_line_capped(&mut self.input, &mut self.buffer, self.max_row_bytes + 2)
                .map_err(read_error)?;
            if read == 0 {
                break;
            }
            self.line += 1;
            let byte = self.byte;
            self.byte += read as u64;
            while matches!(self.buffer.last(), Some(b'\n' | b'\r')) {
                self.buffer.pop();
            }
            let too_long = self.buffer.len() > self.max_row_bytes;
            self.buffer.truncate(self.max_row_bytes);
            if !too_long && self.buffer.trim_ascii().is_empty() {
                continue;
            }
            let start = chunk.bytes.len();
            chunk.bytes.extend_from_slice(&self.buffer);
            chunk.lines.push(Line {
                number: self.line,
                byte,
                text: start..chunk.bytes.len(),
                too_long,
            });
        }
        self.bytes_hint = self
            .bytes_hint
            .max(chunk.bytes.len() + chunk.bytes.len() / 8);
        Ok((!chunk.lines.is_empty()).then_some(chunk))
    }
}

/// One chunk's lines parsed as rows.
pub(super) struct JsonChunkRows<'c, 'd> {
    chunk: &'c LineChunk,
    /// Dataset column name → index.
    columns: HashMap<&'d str, usize>,
    /// Dataset column names in order.
    names: Vec<&'d str>,
    on_new_columns: NewColumns,
    max_row_bytes: usize,
    max_columns: usize,
    at: Option<usize>,
    fields: Fields<'c>,
}

/// The current row's values.
#[derive(Default)]
struct Fields<'c> {
    /// One per dataset column.
    slots: Vec<Slot<'c>>,
    /// Undeclared keys and values (`on_new_columns = "keep"`), in line order.
    extra: Vec<(String, Value)>,
    /// Undeclared keys (`on_new_columns = "reject"`).
    unknown: Vec<String>,
    /// Undeclared keys of the chunk's rows so far (at most [`MAX_NEW_COLUMNS`]).
    seen: BTreeSet<String>,
    /// Keys of the object, repeats included.
    keys: usize,
}

/// One column's value in the current row.
#[derive(Debug, Default)]
enum Slot<'c> {
    #[default]
    Missing,
    /// A JSON string, unescaped; borrowed from the chunk when it had no escapes.
    Str(Cow<'c, str>),
    /// Any other JSON value.
    Value(Value),
}

impl<'c, 'd> JsonChunkRows<'c, 'd> {
    pub(super) fn new(chunk: &'c LineChunk, dataset: &'d Dataset) -> Self {
        let columns = dataset
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        JsonChunkRows {
            chunk,
            columns,
            names: dataset.columns.iter().map(|c| c.name.as_str()).collect(),
            on_new_columns: dataset.policy.on_new_columns,
            max_row_bytes: dataset.policy.max_row_bytes,
            max_columns: dataset.policy.max_columns,
            at: None,
            fields: Fields {
                slots: std::iter::repeat_with(Slot::default)
                    .take(dataset.columns.len())
                    .collect(),
                ..Fields::default()
            },
        }
    }

    fn line_info(&self) -> &'c Line {
        &self.chunk.lines[self.at.unwrap_or_default()]
    }

    /// Parses one line into the fields; whether it was a JSON object.
    fn parse(&mut self, text: &'c [u8]) -> Result<bool, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let row = RowVisitor {
            columns: &self.columns,
            names: &self.names,
            next: 0,
            on_new_columns: self.on_new_columns,
            max_columns: self.max_columns,
            fields: &mut self.fields,
        };
        let is_object = de::Deserializer::deserialize_any(&mut deserializer, row)?;
        deserializer.end()?;
        Ok(is_object)
    }
}

impl RowSource for JsonChunkRows<'_, '_> {
    fn next_row(&mut self) -> Result<Option<RowCheck>, ConvertError> {
        let next = self.at.map_or(0, |i| i + 1);
        self.fields.slots.fill_with(Slot::default);
        self.fields.extra.clear();
        self.fields.unknown.clear();
        self.fields.keys = 0;
        if next >= self.chunk.lines.len() {
            return Ok(None);
        }
        self.at = Some(next);
        let line = self.line_info();
        if line.too_long {
            return Ok(Some(RowCheck::bad(
                "max_row_bytes",
                format!("the line is longer than {} bytes", self.max_row_bytes),
            )));
        }
        let check = match self.parse(&self.chunk.bytes[line.text.clone()]) {
            Ok(true) if self.fields.keys > self.max_columns => RowCheck::bad(
                "max_columns",
                format!(
                    "the object has more than {} keys (max_columns)",
                    self.max_columns
                ),
            ),
            Ok(true) if self.fields.unknown.is_empty() => RowCheck::Ok,
            Ok(true) => {
                let unknown = &mut self.fields.unknown;
                unknown.sort_unstable();
                unknown.dedup();
                unknown.truncate(10);
                RowCheck::bad(
                    "on_new_columns",
                    format!("keys the dataset does not declare: {}", unknown.join(", ")),
                )
            }
            Ok(false) => RowCheck::bad("json", "the line is not a JSON object".into()),
            Err(e) => RowCheck::bad("json", format!("the line is not valid JSON: {e}")),
        };
        Ok(Some(check))
    }

    fn line(&self) -> u64 {
        self.line_info().number
    }

    fn byte_offset(&self) -> Option<u64> {
        Some(self.line_info().byte)
    }

    fn raw(&self) -> &[u8] {
        &self.chunk.bytes[self.line_info().text.clone()]
    }

    fn redacted_raw(&self, dataset: &Dataset) -> Option<Vec<u8>> {
        // A line past max_row_bytes was cut, so it is no whole object.
        if self.line_info().too_long {
            return None;
        }
        super::redact::json_line(self.raw(), dataset)
    }

    fn cell(&self, column: usize) -> RawCell<'_> {
        match &self.fields.slots[column] {
            Slot::Missing => RawCell::Missing,
            Slot::Str(text) => RawCell::Text(text),
            Slot::Value(value) => RawCell::Json(value),
        }
    }

    fn new_columns(&self, out: &mut BTreeSet<String>) {
        out.extend(self.fields.seen.iter().cloned());
    }

    fn extra_fields(&self, out: &mut serde_json::Map<String, Value>) {
        // Into a map: sorted by key, and the last of a repeated key wins.
        out.extend(self.fields.extra.iter().cloned());
    }
}

/// Reads one line's top-level value into [`Fields`]; true when it is an object.
struct RowVisitor<'a, 'c, 'd> {
    columns: &'a HashMap<&'d str, usize>,
    names: &'a [&'d str],
    /// The column whose key is likely next: lines tend to keep the columns' order, so a
    /// key is first compared with this one's name before it is hashed.
    next: usize,
    on_new_columns: NewColumns,
    /// Past this many keys the row is bad: the rest are read through, not kept.
    max_columns: usize,
    fields: &'a mut Fields<'c>,
}

impl<'c> Visitor<'c> for RowVisitor<'_, 'c, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'c>>(mut self, mut map: A) -> Result<bool, A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            self.fields.keys += 1;
            if self.fields.keys > self.max_columns {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let guess = self
                .names
                .get(self.next)
                .filter(|name| **name == key.as_ref());
            let found = match guess {
                Some(_) => Some(self.next),
                None => self.columns.get(key.as_ref()).copied(),
            };
            let Some(column) = found else {
                let seen = &mut self.fields.seen;
                if seen.len() < MAX_NEW_COLUMNS && !seen.contains(key.as_ref()) {
                    seen.insert(key.to_string());
                }
                match self.on_new_columns {
                    NewColumns::Keep | NewColumns::Rescue => {
                        let value = map.next_value::<Value>()?;
                        self.fields.extra.push((key.into_owned(), value));
                    }
                    NewColumns::Reject => {
                        map.next_value::<IgnoredAny>()?;
                        self.fields.unknown.push(key.into_owned());
                    }
                    // `add`: the pipeline adds the columns seen, then converts again.
                    NewColumns::Ignore | NewColumns::Add => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                continue;
            };
            // A repeated key: the last value wins, as in a JSON object read as a map.
            self.fields.slots[column] = map.next_value_seed(SlotSeed)?;
            self.next = column + 1;
        }
        Ok(true)
    }

    // Anything else is read to its end and reported as "not an object".
    fn visit_seq<A: SeqAccess<'c>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// An object key, borrowed when it has no escapes.
struct KeySeed;

impl<'c> DeserializeSeed<'c> for KeySeed {
    type Value = Cow<'c, str>;

    // Inlined into the row visitor, wherever the compiler puts either (a hot path).
    #[inline]
    fn deserialize<D: de::Deserializer<'c>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'c> Visitor<'c> for StrVisitor {
    type Value = Cow<'c, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'c str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_owned()))
    }
}

/// A column's value: strings as [`Slot::Str`], everything else as a [`Value`].
struct SlotSeed;

impl<'c> DeserializeSeed<'c> for SlotSeed {
    type Value = Slot<'c>;

    // Inlined into the row visitor, wherever the compiler puts either (a hot path).
    #[inline]
    fn deserialize<D: de::Deserializer<'c>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(SlotVisitor)
    }
}

struct SlotVisitor;

impl<'c> Visitor<'c> for SlotVisitor {
    type Value = Slot<'c>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'c str) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Owned(text)))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Slot::Value(Value::Bool(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Slot::Value(Value::from(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Slot::Value(Value::from(value)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        // As serde_json's own Value: a non-finite number (which JSON text cannot hold) is null.
        Ok(Slot::Value(
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Slot::Value(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'c>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Slot::Value)
    }

    fn visit_map<A: MapAccess<'c>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Slot::Value)
    }
}
