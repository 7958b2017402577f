//! Memory: chunks and row groups are bounded by bytes as well as rows.

use std::io::{self, Read};
use std::sync::Arc;

use super::*;
use crate::config::{Compression, ParquetOptions};

/// Text that differs from row to row and compresses poorly: `len` hex digits.
fn noise(seed: u64, len: usize) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b"0123456789abcdef"[(state % 16) as usize])
        })
        .collect()
}

/// `rows` rows with a `user_id` of about `bytes` and a `signup_date` among `days` dates,
/// as CSV or JSON lines.
fn long_rows(format: FileFormat, rows: usize, bytes: usize, days: usize) -> String {
    let mut text = match format {
        FileFormat::Csv => String::from("user_id,signup_date\n"),
        FileFormat::Jsonl => String::new(),
    };
    for row in 0..rows {
        let id = format!("{row:06}-{}", noise(row as u64, bytes));
        let day = crate::domain::schema::days_to_date((row % days) as i32).unwrap();
        match format {
            FileFormat::Csv => text.push_str(&format!("{id},{day}\n")),
            FileFormat::Jsonl => text.push_str(&format!(
                "{{\"user_id\":\"{id}\",\"signup_date\":\"{day}\"}}\n"
            )),
        }
    }
    text
}

/// Counts the bytes read from it.
struct CountingReader<'a> {
    inner: &'a [u8],
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A slow sink: keeps the batches, and how far the input had been read at each, measured
/// after a pause on the first batch that lets earlier stages run as far ahead as they can.
struct SlowSink {
    read: Arc<std::sync::atomic::AtomicU64>,
    batches: Vec<RecordBatch>,
    read_at_batch: Vec<u64>,
}

impl BatchSink for SlowSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        if self.batches.is_empty() {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        self.read_at_batch
            .push(self.read.load(std::sync::atomic::Ordering::Relaxed));
        self.batches.push(batch.clone());
        Ok(())
    }
}

/// The text bytes of a batch's user_id values.
fn id_bytes(batch: &RecordBatch) -> usize {
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    ids.iter().map(|id| id.map_or(0, str::len)).sum()
}

#[test]
fn chunks_are_cut_by_bytes_as_well_as_rows() {
    // Rows of about 500 KB with batch_rows 8192: cut by rows alone, one chunk of 20 MB.
    let memory = MemoryBudget::new(16 << 20);
    for format in [FileFormat::Csv, FileFormat::Jsonl] {
        let d = dataset(format, Partition::IngestDate);
        let input = long_rows(format, 40, 500_000, 1);
        for threads in [1, 2] {
            let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut sink = SlowSink {
                read: read.clone(),
                batches: Vec::new(),
                read_at_batch: Vec::new(),
            };
            let reader = CountingReader {
                inner: input.as_bytes(),
                read: read.clone(),
            };
            let options = ConvertOptions {
                batch_rows: 8192,
                threads,
                memory,
            };
            let report =
                convert(reader, "in", &d, &lineage(), options, &mut sink, &mut ()).unwrap();
            let what = format!("{format:?}, {threads} thread(s)");
            assert_eq!(
                (report.rows_written, report.rows_rejected),
                (40, 0),
                "{what}"
            );
            // Each chunk closes once it holds chunk_bytes, so it has at most one row more.
            let cap = memory.chunk_bytes(d.policy.max_row_bytes);
            assert_eq!(cap, 2 << 20);
            let sizes: Vec<usize> = sink.batches.iter().map(id_bytes).collect();
            assert!(
                sizes.iter().all(|size| *size <= cap + 500_007),
                "{what}: {sizes:?}"
            );
            // Every row, once, in file order.
            let ids = strings(&sink.batches, 0);
            let order: Vec<String> = ids
                .iter()
                .map(|id| id.as_ref().unwrap()[..6].to_owned())
                .collect();
            assert_eq!(
                order,
                (0..40).map(|row| format!("{row:06}")).collect::<Vec<_>>(),
                "{what}"
            );
            // While the first batch was being written, the stages before it held at most
            // the rows in flight, a chunk being split and the read buffer: nowhere near the
            // file, whatever the channels could hold.
            let mut written = 0;
            for (batch, read) in sink.batches.iter().zip(&sink.read_at_batch) {
                let ahead = read - written;
                assert!(
                    ahead <= memory.rows_in_flight() + (cap + (1 << 20)) as u64,
                    "{what}: {ahead} bytes read ahead of the writer"
                );
                written += input.len() as u64 * batch.num_rows() as u64 / 40;
            }
        }
    }
}

/// Writes every batch to `parts`, checking after each that the row groups being built
/// stay within `limit`; records the most they held.
struct Checked<'a> {
    parts: &'a mut LakeParts,
    limit: usize,
    most: usize,
}

impl BatchSink for Checked<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
        self.parts.write(batch)?;
        let held = self.parts.buffered_bytes();
        assert!(
            held <= self.limit,
            "{held} bytes buffered, over {}",
            self.limit
        );
        self.most = self.most.max(held);
        Ok(())
    }
}

#[test]
fn row_groups_are_cut_by_bytes_across_every_partition() {
    let memory = MemoryBudget::new(16 << 20);
    let limit = memory.row_groups() as usize;
    let options = ParquetOptions {
        compression: Compression::None,
        ..ParquetOptions::default()
    };
    // 300 partitions of 4 KB rows, 24 MB in all, interleaved: by rows alone (a million
    // per row group) every partition would hold all of its rows until the end. Rows of
    // at most 8 KiB leave chunks of a sixty-fourth of the budget (256 KiB).
    let mut d = dataset(FileFormat::Csv, Partition::DateColumn { index: 4 });
    d.policy.max_row_bytes = 8192;
    let input = long_rows(FileFormat::Csv, 6000, 4000, 300);
    let dir = tempfile::tempdir().unwrap();
    let mut parts = LakeParts::new(dir.path(), &d, &lineage(), &options, None, memory);
    let mut checked = Checked {
        parts: &mut parts,
        limit,
        most: 0,
    };
    let options_run = ConvertOptions {
        batch_rows: 500,
        threads: 2,
        memory,
    };
    let report = convert(
        input.as_bytes(),
        "in",
        &d,
        &lineage(),
        options_run,
        &mut checked,
        &mut (),
    )
    .unwrap();
    assert_eq!(report.rows_written, 6000);
    assert!(
        checked.most > limit / 2,
        "the test fills the buffers: {}",
        checked.most
    );
    let done = parts.finish().unwrap();
    assert_eq!(done.len(), 300);
    let mut rows = 0;
    for part in &done {
        let groups = row_groups(&part.path);
        rows += groups.iter().map(|(n, _)| n).sum::<i64>();
        assert!(groups.len() > 1, "{:?}: {groups:?}", part.partition);
    }
    assert_eq!(rows, 6000);

    // One partition, and the one Parquet file of `lakeworker convert`: row groups of about
    // the Parquet share, cut at the same rows on one thread as on two.
    let mut d = dataset(FileFormat::Csv, Partition::IngestDate);
    d.policy.max_row_bytes = 8192;
    let input = long_rows(FileFormat::Csv, 6000, 4000, 1);
    struct CheckedFile<'a>(&'a mut ParquetFile, usize);
    impl BatchSink for CheckedFile<'_> {
        fn write(&mut self, batch: &RecordBatch) -> Result<(), ConvertError> {
            self.0.write(batch)?;
            let held = self.0.buffered_bytes();
            assert!(held <= self.1, "{held} bytes buffered, over {}", self.1);
            Ok(())
        }
    }
    let mut layouts = Vec::new();
    for threads in [2, 1] {
        let path = dir.path().join(format!("one-{threads}.parquet"));
        let props = writer_properties(&options);
        let mut file = ParquetFile::create(&path, full_schema(&d), props, memory).unwrap();
        let run = ConvertOptions {
            threads,
            ..options_run
        };
        let mut checked = CheckedFile(&mut file, limit);
        convert(
            input.as_bytes(),
            "in",
            &d,
            &lineage(),
            run,
            &mut checked,
            &mut (),
        )
        .unwrap();
        file.close().unwrap();
        let groups = row_groups(&path);
        assert!(groups.len() >= 3, "{groups:?}");
        assert_eq!(groups.iter().map(|(n, _)| n).sum::<i64>(), 6000);
        assert!(
            groups.iter().all(|(_, size)| *size as usize <= limit),
            "{groups:?}"
        );
        layouts.push(groups);
    }
    assert_eq!(layouts[0], layouts[1]);
}

#[test]
fn a_failing_sink_stops_a_splitter_waiting_for_room() {
    struct FailsSecond(usize);
    impl BatchSink for FailsSecond {
        fn write(&mut self, _: &RecordBatch) -> Result<(), ConvertError> {
            self.0 += 1;
            match self.0 {
                2 => Err(ConvertError::Write("no space left".into())),
                _ => Ok(()),
            }
        }
    }
    let d = dataset(FileFormat::Csv, Partition::IngestDate);
    let input = long_rows(FileFormat::Csv, 40, 500_000, 1);
    let (sender, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let options = ConvertOptions {
            batch_rows: 8192,
            threads: 2,
            memory: MemoryBudget::new(16 << 20),
        };
        let converted = convert(
            input.as_bytes(),
            "in",
            &d,
            &lineage(),
            options,
            &mut FailsSecond(0),
            &mut (),
        );
        let _ = sender.send(converted.map(|r| r.rows_written).map_err(|e| e.to_string()));
    });
    // The splitter is waiting for room the failed writer will never free: it must be let
    // go, not left hanging (the bound is generous; it takes a moment).
    let outcome = result.recv_timeout(std::time::Duration::from_secs(120));
    assert_eq!(outcome, Ok(Err("writing output: no space left".to_owned())));
}
