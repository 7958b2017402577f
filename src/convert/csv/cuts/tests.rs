//! The cut model against csv_core itself: a cut is only good if one reader over the whole
//! input and two readers, one each side of the cut, read the same records.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};
use proptest::prelude::*;

use super::*;

/// A reader of the dialect, primed as the converter's are (a byte order mark is text).
fn reader(dialect: Dialect) -> Reader {
    let mut core = ReaderBuilder::new()
        .delimiter(dialect.delimiter)
        .quoting(dialect.quote.is_some())
        .quote(dialect.quote.unwrap_or(b'"'))
        .build();
    let _ = core.read_record(b" ", &mut [], &mut [0]);
    core
}

/// Every record of `input` as its fields, with the line count after it, read by `core`.
fn records(core: &mut Reader, mut input: &[u8]) -> Vec<(Vec<Vec<u8>>, u64)> {
    let mut out = Vec::new();
    let (mut bytes, mut ends) = (vec![0; input.len() + 1], vec![0; input.len() + 1]);
    let (mut used, mut ended) = (0, 0);
    loop {
        let (result, nin, nout, nend) =
            core.read_record(input, &mut bytes[used..], &mut ends[ended..]);
        input = &input[nin..];
        used += nout;
        ended += nend;
        match result {
            ReadRecordResult::Record => {
                let mut start = 0;
                let fields = ends[..ended]
                    .iter()
                    .map(|&end| {
                        let field = bytes[start..end].to_vec();
                        start = end;
                        field
                    })
                    .collect();
                out.push((fields, core.line()));
                (used, ended) = (0, 0);
            }
            ReadRecordResult::End => return out,
            ReadRecordResult::InputEmpty => {}
            ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {
                unreachable!("room for every byte")
            }
        }
    }
}

/// Whether cutting `input` after `end` bytes (holding `lines` `\n`s) changes nothing.
fn cut_is_good(input: &[u8], dialect: Dialect, end: usize, lines: u64) -> Result<(), String> {
    if input[end - 1] != b'\n' {
        return Err(format!("cut after {end} is not after a \\n"));
    }
    let counted = input[..end].iter().filter(|b| **b == b'\n').count() as u64;
    if counted != lines {
        return Err(format!("{lines} lines said, {counted} there"));
    }
    let whole = records(&mut reader(dialect), input);
    let mut split = records(&mut reader(dialect), &input[..end]);
    // The second reader continues the file: its lines follow on.
    split.extend(
        records(&mut reader(dialect), &input[end..])
            .into_iter()
            .map(|(fields, line)| (fields, line + lines)),
    );
    if whole != split {
        return Err(format!("cut after {end} changes the records"));
    }
    Ok(())
}

const DEFAULT: Dialect = Dialect {
    quote: Some(b'"'),
    delimiter: b',',
};

/// Bytes that matter to the model, and some that do not (a byte order mark's included).
fn byte() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![
        b'a', b'a', b'a', b'a', b',', b',', b';', b'"', b'"', b'\n', b'\n', b'\r', 0xef, 0xbb, 0xbf,
    ])
}

/// A cut as (kind, end, lines), to compare.
fn summary(cut: Cut) -> (&'static str, usize, u64) {
    match cut {
        Cut::At(span) => ("at", span.end, span.lines),
        Cut::Irregular { before: Some(span) } => ("irregular", span.end, span.lines),
        Cut::Irregular { before: None } => ("irregular", 0, 0),
        Cut::None(_) => ("none", 0, 0),
    }
}

/// Whether a span's counts are csv_core's: its records (which only size buffers and cap a
/// chunk), and room for its fields.
fn counts_are_good(input: &[u8], dialect: Dialect, span: Span) -> Result<(), String> {
    let read = records(&mut reader(dialect), &input[..span.end]);
    let fields: usize = read.iter().map(|(fields, _)| fields.len()).sum();
    if read.len() != span.records || fields > span.separators + 1 {
        return Err(format!(
            "{} records of {fields} fields, counted {} and {} separators",
            read.len(),
            span.records,
            span.separators
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// On any bytes, every cut the model makes is one csv_core agrees with, with the
    /// records and fields it counted, and no more than `max_records` records before it
    /// unless a lone `\r` ended one.
    #[test]
    fn every_cut_reads_as_the_whole_does(
        input in proptest::collection::vec(byte(), 1..600),
        target in 1usize..400,
        max_records in 1usize..20,
        dialect in 0usize..3,
    ) {
        let dialect = [
            DEFAULT,
            Dialect { quote: Some(b'"'), delimiter: b';' },
            Dialect { quote: None, delimiter: b',' },
        ][dialect];
        match find_cut(&input, dialect, target, max_records) {
            Cut::At(span) | Cut::Irregular { before: Some(span) } => {
                prop_assert_eq!(cut_is_good(&input, dialect, span.end, span.lines), Ok(()));
                prop_assert_eq!(counts_are_good(&input, dialect, span), Ok(()));
                let lone_cr = input[..span.end].windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n');
                prop_assert!(span.records <= max_records || lone_cr, "{} records", span.records);
            }
            Cut::Irregular { before: None } | Cut::None(_) => {}
        }
    }

    /// Well-formed CSV (fields quoted when they hold a quote, a delimiter or a line end,
    /// quotes doubled) is always cut, never found irregular, at the last record end in
    /// the block where `max_parsed` is reached (or the first record end after it).
    #[test]
    fn well_formed_csv_is_cut_where_asked(
        rows in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(byte(), 0..12), 1..5),
            2..60,
        ),
        crlf in any::<bool>(),
        max_parsed in 1usize..12000,
    ) {
        let mut input = Vec::new();
        let mut ends = Vec::new();
        for row in &rows {
            for (i, field) in row.iter().enumerate() {
                if i > 0 {
                    input.push(b',');
                }
                let special = field.iter().any(|b| matches!(b, b'"' | b',' | b'\n' | b'\r'));
                // A record of one empty field would be a blank line, which csv_core skips.
                if special || row.len() == 1 {
                    input.push(b'"');
                    for &b in field {
                        if b == b'"' {
                            input.push(b'"');
                        }
                        input.push(b);
                    }
                    input.push(b'"');
                } else {
                    input.extend_from_slice(field);
                }
            }
            input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            ends.push(input.len());
        }
        // The first block whose end, with everything before it, weighs `max_parsed`.
        let weight = |end: usize| {
            let separators = input[..end].iter().filter(|b| matches!(b, b',' | b'\n' | b'\r')).count();
            // A record ends at the first byte of its `\r\n`.
            let records = ends.iter().filter(|&&e| e - usize::from(crlf) <= end).count();
            Span { end, lines: 0, records, separators }.parsed_bytes()
        };
        let block_end = (64..input.len() + 64)
            .step_by(64)
            .map(|end| end.min(input.len()))
            .find(|&end| weight(end) >= max_parsed)
            .unwrap_or(input.len());
        let expected = ends
            .iter()
            .rev()
            .find(|&&end| end <= block_end)
            .or_else(|| ends.iter().find(|&&end| end > block_end))
            .copied();
        match find_cut(&input, DEFAULT, max_parsed.min(weight(input.len())), usize::MAX) {
            Cut::At(span) => {
                prop_assert_eq!(cut_is_good(&input, DEFAULT, span.end, span.lines), Ok(()));
                prop_assert_eq!(counts_are_good(&input, DEFAULT, span), Ok(()));
                prop_assert_eq!(Some(span.end), expected);
            }
            other => prop_assert!(false, "{:?} on well-formed CSV", other),
        }
    }
}

#[test]
fn quotes_that_do_not_open_a_field_stop_the_cuts() {
    // `ab"c`: a quote inside an unquoted field is text to csv_core.
    let input = b"x,y\nab\"c\nd\ne\n";
    let cut = find_cut(input, DEFAULT, 1000, 100);
    assert_eq!(summary(cut), ("irregular", 4, 1));
    // A quote after text that followed a closing quote (`"ab"c"`); the text itself is
    // read as unquoted, as the model reads it.
    let input = b"\"ab\"c,d\n\"ab\"c\"\ne\n";
    let cut = find_cut(input, DEFAULT, 1000, 100);
    assert_eq!(summary(cut), ("irregular", 8, 1));
    // Doubled quotes and quoted line ends are fine.
    let input = b"\"a\"\"b\",\"c\nd\"\ne\n";
    assert_eq!(summary(find_cut(input, DEFAULT, 1, 100)), ("at", 15, 3));
    // The first record ends at the second `\n`, not the quoted one.
    assert_eq!(summary(find_cut(input, DEFAULT, 1, 1)), ("at", 13, 2));
}

#[test]
fn cuts_come_after_max_records_or_past_max_parsed() {
    let input = b"a\nb\nc\nd\n";
    assert_eq!(summary(find_cut(input, DEFAULT, 1000, 2)), ("at", 4, 2));
    // Past `max_parsed` within the block scanned: the last record end in it.
    assert_eq!(summary(find_cut(input, DEFAULT, 3, 100)), ("at", 8, 4));
    // A blank line is no record, `\r\n` one record end.
    let input = b"\na\r\n\r\nb\r\nc\r\n";
    assert_eq!(summary(find_cut(input, DEFAULT, 1000, 2)), ("at", 9, 4));
    // Blank lines are no chunk: no cut until a record has ended.
    assert_eq!(
        summary(find_cut(b"\n\n\na\n", DEFAULT, 2, 100)),
        ("at", 5, 4)
    );
    assert!(matches!(
        find_cut(b"\n\n\na", DEFAULT, 2, 100),
        Cut::None(_)
    ));
    // Short of `max_parsed`: no cut yet.
    assert!(matches!(
        find_cut(b"a\nb\n", DEFAULT, 1000, 100),
        Cut::None(_)
    ));
    // A record that has not ended.
    assert!(matches!(
        find_cut(b"\"a\nb\n", DEFAULT, 1, 100),
        Cut::None(_)
    ));
}

/// What the converter's readers rely on: a reader that has read before keeps a byte order
/// mark at the start of its input as text, a fresh one drops it.
#[test]
fn a_primed_reader_keeps_a_byte_order_mark() {
    let input = "\u{feff}a,b\n".as_bytes();
    let fresh = records(&mut ReaderBuilder::new().build(), input);
    let continued = records(&mut reader(DEFAULT), input);
    assert_eq!(fresh[0].0[0], b"a");
    assert_eq!(continued[0].0[0], "\u{feff}a".as_bytes());
}

#[test]
fn the_sse2_masks_are_the_portable_ones() {
    let block: [u8; 64] = std::array::from_fn(|i| [b'"', b',', b'\n', b'a', 0xff][i * 7 % 5]);
    for byte in [b'"', b',', b'\n', b'a', 0xff, b'z'] {
        assert_eq!(eq_mask(&block, byte), eq_mask_portable(&block, byte));
    }
}

/// A raw chunk's weight is what it and its parsed form hold, and parsing grows no buffer.
#[test]
fn a_raw_chunk_weighs_what_it_is_parsed_into() {
    use crate::convert::csv::{CsvInput, CsvPiece, START_FIELDS};
    use crate::domain::dataset::{testing, FileFormat, Partition};
    use crate::domain::schema::{Column, ColumnType};
    let columns = ["a", "b", "c"].map(|name| Column::new(name, ColumnType::String, false));
    let dataset = testing::dataset(FileFormat::Csv, Partition::IngestDate, columns.to_vec());
    for body in [
        "x,y,z\n".repeat(500),
        "\"q\"\"uote\",\"multi\nline\",z\r\n".repeat(300),
        ",,\n".repeat(900),
        "x,y,z".to_owned(),
    ] {
        let text = format!("a,b,c\n{body}");
        let mut input = CsvInput::new(text.as_bytes(), &dataset).unwrap();
        let mut chunks = 0;
        while let Some(piece) = input.next_chunk(100, 4096).unwrap() {
            let CsvPiece::Raw(raw) = piece else {
                panic!("a clean file read record by record");
            };
            let parsed = raw.parse().unwrap();
            assert_eq!(parsed.bytes.len(), raw.bytes.len() + 64, "field bytes grew");
            assert_eq!(
                parsed.ends.len(),
                raw.separators + 1 + START_FIELDS,
                "ends grew"
            );
            let allocated = raw.bytes.capacity() + parsed.allocated();
            assert_eq!(raw.weight(), 2 * allocated as u64);
            chunks += 1;
        }
        assert!(chunks >= 1);
    }
}
