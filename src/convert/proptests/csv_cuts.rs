//! CSV cut into raw chunks (parsed on the typing threads) against the same file read record
//! by record: generated files in several dialects, with quoted line ends, blank lines,
//! `\r\n`, byte order marks, stray quotes, long rows and rows of the wrong width, give the
//! same rows, bad rows (lines, byte offsets, raw text) and report either way, in small
//! chunks on one thread and on two.

use arrow::compute::concat_batches;
use proptest::prelude::*;

use super::*;
use crate::config::MemoryBudget;
use crate::domain::dataset::{Header, NewColumns};

/// Field texts, as they are written (quoted or not).
const FIELDS: &[&str] = &[
    "u1",
    "",
    "\"q,uo\"\"te\"",
    "\"multi\nline\"",
    "\"cr\r\nlf\"",
    "ab\"c",
    "\"ab\"c",
    "30",
    "x",
    "1.5",
    "true",
    "2024-01-02",
    "2024-01-02T03:04:05Z",
    "\u{feff}bom",
    "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
    "é",
    "\"\"",
    "a;b",
    // Over `max_row_bytes`: a bad row either way.
    "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
];

/// Good fields of the seven columns, for rows that should land.
const GOOD: [&str; 7] = [
    "u1",
    "n",
    "30",
    "1.5",
    "true",
    "2024-01-02",
    "2024-01-02T03:04:05Z",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cut_or_read_record_by_record_a_csv_file_converts_alike(
        rows in proptest::collection::vec(
            (proptest::collection::vec((0usize..FIELDS.len(), prop::bool::weighted(0.85)), 7), 0usize..14),
            0..40,
        ),
        dialect in 0usize..6,
        crlf in any::<bool>(),
        batch in 1usize..9,
        threads in 1usize..3,
        budget_kb in 1u64..48,
        keep in any::<bool>(),
        step in 1usize..200,
    ) {
        let mut dataset = testing::dataset(FileFormat::Csv, Partition::IngestDate, columns());
        dataset.policy.max_row_bytes = 120;
        if keep {
            dataset.policy.on_new_columns = NewColumns::Keep;
        }
        let delimiter = match dialect {
            1 => ";",
            5 => "\t",
            _ => ",",
        };
        let newline = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        match dialect {
            1 => dataset.csv.delimiter = b';',
            2 => dataset.csv.quote = None,
            3 => {
                dataset.csv.header = Header::Names(
                    ["id", "name", "age", "score", "active", "day", "at"].map(String::from).to_vec(),
                );
                dataset.csv.skip_rows = 1;
                text.push_str("a preamble line");
                text.push_str(newline);
            }
            4 => dataset.csv.quote = Some(b'\''),
            5 => dataset.csv.delimiter = b'\t',
            _ => {}
        }
        if dialect != 3 {
            text.push_str(&["id", "name", "age", "score", "active", "day", "at"].join(delimiter));
            text.push_str(newline);
        }
        for (cells, kind) in &rows {
            let fields: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, (cell, good))| if *good { GOOD[i] } else { FIELDS[*cell] })
                // Single quotes quote in dialect 4.
                .map(|field| if dialect == 4 { field.replace('"', "'") } else { field.to_owned() })
                .collect();
            let line = match kind {
                0 => String::new(),
                1 => format!("{}{delimiter}extra", fields.join(delimiter)),
                2 => fields[..6].join(delimiter),
                3 => format!("\u{feff}{}", fields.join(delimiter)),
                4 => format!("x\"{}", fields.join(delimiter)),
                _ => fields.join(delimiter),
            };
            text.push_str(&line);
            // Now and then a lone `\r`, or no line end after the last row.
            text.push_str(if *kind == 5 { "\r" } else { newline });
        }
        if rows.last().is_some_and(|(_, kind)| *kind == 6) {
            text.truncate(text.trim_end_matches(['\r', '\n']).len());
        }
        let options = ConvertOptions {
            batch_rows: batch,
            threads,
            memory: MemoryBudget::new(budget_kb * 1024),
        };
        let (records, cut) = records_and_cuts(&text, &dataset, options, step);
        prop_assert_eq!(&records.0, &cut.0, "report of {:?}", text);
        prop_assert_eq!(&records.1, &cut.1, "rows of {:?}", text);
        let bad = |o: &Outcome| o.2.lines().map(String::from).collect::<Vec<_>>();
        prop_assert_eq!(bad(&records), bad(&cut), "bad rows of {:?}", text);
    }
}

/// A clean file is cut into chunks; a stray quote, or a record too long to cut, hands the
/// rest of the file to the record reader; each converts as it does read record by record.
#[test]
fn clean_files_are_cut_and_the_rest_after_a_stray_quote_or_a_long_record_is_not() {
    let mut dataset = testing::dataset(FileFormat::Csv, Partition::IngestDate, columns());
    dataset.policy.max_row_bytes = 120;
    let options = ConvertOptions {
        batch_rows: 4,
        threads: 1,
        memory: MemoryBudget::new(16 * 1024),
    };
    let row = GOOD.join(",");
    let rows = |n: usize| format!("{row}\n").repeat(n);
    let header = "id,name,age,score,active,day,at\n";
    // Longer than one read of the input (256 KiB), so it is still unended when cut.
    let long = format!(
        "u1,{},30,1.5,true,2024-01-02,2024-01-02T03:04:05Z\n",
        "y".repeat(300_000)
    );
    for (text, switches) in [
        (format!("{header}{}", rows(40)), 0),
        (
            format!(
                "{header}{}u1,ab\"c,30,1.5,true,2024-01-02,x\n{}",
                rows(20),
                rows(20)
            ),
            1,
        ),
        (format!("{header}{}{long}{}", rows(20), rows(20)), 1),
    ] {
        let (cut, switched) = (super::csv::CUT.get(), super::csv::SWITCHED.get());
        let (records, cuts) = records_and_cuts(&text, &dataset, options, usize::MAX);
        assert_eq!(records, cuts);
        let start = &text[..200];
        assert_eq!(super::csv::SWITCHED.get() - switched, switches, "{start}");
        // Chunks of 4 rows: at least the first 20 rows are cut.
        assert!(super::csv::CUT.get() - cut >= 5, "{start}");
    }
}

/// A conversion's report (or error), its rows as one batch, and its quarantine.
type Outcome = (Result<ConvertReport, String>, Option<RecordBatch>, String);

/// Reads at most `step` bytes at a time, so the cutter fills a chunk over many reads.
struct Trickle<'a> {
    rest: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// What converting `text` (read `step` bytes at a time) gives read record by record, and
/// cut.
fn records_and_cuts(
    text: &str,
    dataset: &Dataset,
    options: ConvertOptions,
    step: usize,
) -> (Outcome, Outcome) {
    let lineage = Lineage {
        source: "s".into(),
        ingested_at: 0,
        ingest_date: 0,
    };
    let run = |records_only: bool| {
        super::csv::RECORDS_ONLY.with(|only| only.set(records_only));
        let mut sink = Collect::default();
        let mut bad = Quarantine::in_memory();
        let input = Trickle {
            rest: text.as_bytes(),
            step,
        };
        let report = convert(input, "t", dataset, &lineage, options, &mut sink, &mut bad);
        super::csv::RECORDS_ONLY.with(|only| only.set(false));
        let rows = sink
            .0
            .first()
            .map(|first| concat_batches(&first.schema(), &sink.0).unwrap());
        (
            report.map_err(|e| e.to_string()),
            rows,
            String::from_utf8(bad.finish().unwrap()).unwrap(),
        )
    };
    (run(true), run(false))
}
