//! Criterion benchmarks of the production conversion path (`convert::convert` into a
//! Parquet file, as `lakeworker convert` and the worker use it) on generated data with
//! the ten mixed-type columns of `bench/bench_data.py`, reported as input bytes per second,
//! on one thread and on every core.
//!
//! Run: `cargo bench --bench convert` (or `make bench`).

use std::fmt::Write as _;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lakeworker::config::Settings;
use lakeworker::convert::{self, ConvertOptions, Lineage, ParquetFile};

/// About this many bytes of CSV per benchmark input.
const INPUT_BYTES: usize = 16 << 20;

const CATEGORIES: [&str; 20] = [
    "books", "games", "garden", "kitchen", "music", "office", "outdoor", "pets", "shoes", "toys",
    "audio", "baby", "beauty", "bikes", "camera", "cars", "phones", "sports", "tools", "travel",
];
const WORDS: [&str; 12] = [
    "alpha", "bravo", "charlie", "delta", "echo", "fox", "golf", "hotel", "india", "juliet",
    "kilo", "lima",
];

/// xorshift64*: deterministic and fast enough not to matter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One row's values as text: CSV fields and the JSON object of the same row.
fn generate(bytes: usize) -> (String, String) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let notes: Vec<String> = (0..512)
        .map(|i| {
            let words: Vec<&str> = (0..3 + rng.below(7))
                .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                .collect();
            format!("He said \"{}\", then, twice: {i}", words.join(" "))
        })
        .collect();
    let mut csv =
        String::from("id,user_id,amount,quantity,paid,day,created_at,category,ratio,note\n");
    let mut jsonl = String::new();
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let mut i = 0u64;
    while csv.len() < bytes {
        let at = start
            + chrono::Duration::seconds(rng.below(365 * 86_400) as i64)
            + chrono::Duration::microseconds(rng.below(1_000_000) as i64);
        let (user, amount) = (1 + rng.below(9_999_999), rng.below(500_000) as f64 / 100.0);
        let (quantity, paid) = (1 + rng.below(99), rng.below(2) == 0);
        let category = CATEGORIES[rng.below(20) as usize];
        let (ratio, note) = (rng.unit(), &notes[rng.below(512) as usize]);
        let (day, created) = (
            at.date().to_string(),
            at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        );
        let quoted = note.replace('"', "\"\"");
        writeln!(
            csv,
            "ev-{i:010},{user},{amount},{quantity},{paid},{day},{created},{category},{ratio},\"{quoted}\""
        )
        .unwrap();
        let row = serde_json::json!({
            "id": format!("ev-{i:010}"), "user_id": user, "amount": amount,
            "quantity": quantity, "paid": paid, "day": day, "created_at": created,
            "category": category, "ratio": ratio, "note": note,
        });
        writeln!(jsonl, "{row}").unwrap();
        i += 1;
    }
    (csv, jsonl)
}

fn conversion(c: &mut Criterion) {
    // As the binary does (criterion starts no thread before this).
    lakeworker::allocator::tune();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let settings = Settings::load(&root.join("bench/bench.toml")).expect("bench/bench.toml");
    let (csv, jsonl) = generate(INPUT_BYTES);
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out.parquet");
    let lineage = Lineage {
        source: "s3://bench/input".into(),
        ingested_at: 0,
        ingest_date: 0,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut group = c.benchmark_group("convert");
    group.sample_size(10);
    for (format, dataset, input) in [("csv", "bench", &csv), ("jsonl", "bench_jsonl", &jsonl)] {
        let dataset = settings.datasets.by_name(dataset).expect("bench dataset");
        group.throughput(Throughput::Bytes(input.len() as u64));
        let mut threads = vec![1];
        if cores > 1 {
            threads.push(cores);
        }
        for threads in threads {
            let id = BenchmarkId::new(format, format!("{threads} thread(s)"));
            group.bench_with_input(id, input, |b, input| {
                b.iter(|| {
                    let mut sink = ParquetFile::create(
                        &output,
                        convert::full_schema(dataset),
                        convert::writer_properties(&settings.lake.parquet),
                        settings.worker.conversion_memory,
                    )
                    .unwrap()
                    .with_encoders(threads);
                    let options = ConvertOptions {
                        batch_rows: settings.worker.batch_rows.get(),
                        threads,
                        memory: settings.worker.conversion_memory,
                    };
                    let report = convert::convert(
                        input.as_bytes(),
                        format,
                        dataset,
                        &lineage,
                        options,
                        &mut sink,
                        &mut (),
                    )
                    .unwrap();
                    sink.close().unwrap();
                    assert_eq!(report.rows_rejected, 0, "the bench data is valid");
                    report
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, conversion);
criterion_main!(benches);
