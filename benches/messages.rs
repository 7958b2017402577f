//! The worker's own cost per message, without AWS: small CSV files of the `bench` dataset
//! (bench/bench.toml, the ten columns of bench/bench_data.py) handled one message after
//! another by the worker's message handler against in-memory stores ([`lakeworker::bench`]).
//! Prints, per file size: files per second, wall and CPU microseconds per message
//! (percentiles of wall), and where a message's time goes, by tracing span (spans nest:
//! `object` holds the others).
//!
//! Run: `cargo bench --features bench-fakes --bench messages` (part of `make bench-e2e`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lakeworker::bench::{handle_all, Messages};
use lakeworker::config::Settings;
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

const CATEGORIES: [&str; 5] = ["books", "games", "garden", "kitchen", "music"];

/// Wall time of every span by name, from creation to close.
#[derive(Clone, Default)]
struct SpanTimes(Arc<Mutex<BTreeMap<String, (u64, Duration)>>>);

struct Began(Instant, String);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanTimes {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut name = attrs.metadata().name().to_owned();
        // `ledger` spans say which operation they are.
        struct Operation<'a>(&'a mut String);
        impl tracing::field::Visit for Operation<'_> {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "operation" {
                    let _ = write!(self.0, ":{value}");
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        attrs.record(&mut Operation(&mut name));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Began(Instant::now(), name));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let extensions = span.extensions();
        if let Some(Began(at, name)) = extensions.get::<Began>() {
            let mut times = self.0.lock().unwrap();
            let entry = times.entry(name.clone()).or_default();
            entry.0 += 1;
            entry.1 += at.elapsed();
        }
    }
}

/// The process's user and system CPU time so far (Linux: /proc/self/stat, in USER_HZ
/// ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// `files` CSV files of `rows` rows each.
fn files(files: usize, rows: usize) -> Vec<(String, Vec<u8>)> {
    (0..files)
        .map(|f| {
            let mut csv =
                String::from("id,user_id,amount,quantity,paid,day,created_at,category,ratio,note\n");
            for r in 0..rows {
                let n = f * rows + r;
                writeln!(
                    csv,
                    "ev-{n:010},{},{}.{:02},{},{},2024-03-{:02},2024-03-04T05:06:{:02}.123456Z,{},0.{},\"note {n}, \"\"quoted\"\"\"",
                    1 + n % 9_999_999,
                    n % 5000,
                    n % 100,
                    1 + n % 99,
                    n.is_multiple_of(2),
                    1 + n % 28,
                    n % 60,
                    CATEGORIES[n % CATEGORIES.len()],
                    n % 1000,
                )
                .unwrap();
            }
            (format!("events/2024/03/04/file-{f:06}.csv"), csv.into_bytes())
        })
        .collect()
}

fn main() {
    // As the binary does.
    lakeworker::allocator::tune();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let times = SpanTimes::default();
    tracing_subscriber::registry().with(times.clone()).init();
    let quick = std::env::args().any(|a| a == "--quick");
    println!("lakeworker's own cost per message: the message handler on in-memory stores,");
    println!("one message after another, Hive table, default config of bench/bench.toml\n");
    println!(
        "| file | files | bytes each | files/s | wall µs/message (p50, p99) | CPU µs/message |"
    );
    println!("|---|---:|---:|---:|---|---:|");
    let mut breakdowns = Vec::new();
    for (rows, count) in [(1, 2000), (10, 2000), (100, 1000), (1000, 200)] {
        let count = if quick { count / 20 } else { count };
        let settings = Settings::load(&root.join("bench/bench.toml")).expect("bench/bench.toml");
        let objects = files(count, rows);
        let bytes = objects.iter().map(|(_, b)| b.len()).sum::<usize>() / count;
        let messages = Messages::new(&settings, &objects);
        times.0.lock().unwrap().clear();
        let cpu = cpu_time();
        let handled = handle_all(settings, messages).expect("every message is converted");
        let cpu = cpu_time() - cpu;
        let mut walls = handled.per_message.clone();
        walls.sort();
        let percentile = |p: f64| walls[((walls.len() - 1) as f64 * p) as usize].as_micros();
        println!(
            "| {rows} row(s) | {} | {bytes} | {:.0} | {}, {} | {} |",
            handled.messages,
            handled.messages as f64 / handled.wall.as_secs_f64(),
            percentile(0.5),
            percentile(0.99),
            cpu.as_micros() / handled.messages as u128,
        );
        breakdowns.push((rows, handled.messages, times.0.lock().unwrap().clone()));
    }
    for (rows, messages, spans) in breakdowns {
        println!("\nwhere a message of {rows} row(s) goes (µs per message, by span):");
        for (name, (count, total)) in spans {
            println!(
                "  {name:<28} {:>8.1}  ({:.2} per message)",
                total.as_secs_f64() * 1e6 / messages as f64,
                count as f64 / messages as f64
            );
        }
    }
}
