// Shared by the converter targets: a dataset with every column type and rules, whose CSV
// options come from the first input byte, and the invariants every run must keep.

use lakeworker::convert::{convert, Collect, ConvertOptions, Lineage, MemoryBudget, Quarantine};
use lakeworker::domain::dataset::{
    compile_glob, CsvOptions, Dataset, FileFormat, Header, NewColumns, OnInvalid, Partition, Policy,
};
use lakeworker::domain::schema::{Column, ColumnType, LakeOutput, Limit, ValueFormat};

pub fn dataset(format: FileFormat, knobs: u8) -> Dataset {
    let mut name = Column::new("name", ColumnType::String, false);
    name.rules.max_length = Some(40);
    name.rules.pattern = regex::Regex::new("^(?:[a-z ]*)$").ok();
    let mut age = Column::new("age", ColumnType::Int, false);
    age.rules.min = Some(Limit::Int(0));
    age.rules.max = Some(Limit::Int(150));
    let mut at = Column::new("at", ColumnType::Timestamp, false);
    at.format = if knobs & 1 == 0 {
        None
    } else {
        Some(ValueFormat::EpochMillis)
    };
    let mut day = Column::new("day", ColumnType::Date, false);
    day.format = Some(ValueFormat::Strftime("%Y/%m/%d".into()));
    let mut id = Column::new("id", ColumnType::String, knobs & 2 == 0);
    id.lake = LakeOutput::Hash {
        name: "id_hash".into(),
    };
    let csv = CsvOptions {
        delimiter: if knobs & 4 == 0 { b',' } else { b';' },
        quote: if knobs & 8 == 0 { Some(b'"') } else { None },
        escape: if knobs & 16 == 0 { None } else { Some(b'\\') },
        header: if knobs & 32 == 0 {
            Header::FirstRow
        } else {
            Header::Names(
                ["id", "name", "age", "score", "ok", "day", "at"]
                    .map(String::from)
                    .to_vec(),
            )
        },
        skip_rows: u64::from(knobs >> 7),
        comment: Some(b'#'),
    };
    let policy = Policy {
        on_new_columns: match knobs % 4 {
            0 => NewColumns::Ignore,
            1 => NewColumns::Keep,
            2 => NewColumns::Rescue,
            _ => NewColumns::Reject,
        },
        on_invalid: if knobs & 64 == 0 {
            OnInvalid::QuarantineRows
        } else {
            OnInvalid::Rescue
        },
        unique_key: vec![0],
        max_row_bytes: 256,
        max_columns: 16,
        ..Policy::default()
    };
    Dataset {
        name: "fuzz".into(),
        pattern: "**".into(),
        matcher: compile_glob("**").expect("a valid glob"),
        format,
        partition: Partition::IngestDate,
        columns: vec![
            id,
            name,
            age,
            Column::new("score", ColumnType::Float, false),
            Column::new("ok", ColumnType::Bool, false),
            day,
            at,
        ],
        records: None,
        csv,
        policy,
        table: Default::default(),
        added: 0,
        field_ids: None,
    }
}

/// Converts `data` and checks the counts; any panic is a finding.
pub fn check(format: FileFormat, data: &[u8]) {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    let dataset = dataset(format, knobs);
    let lineage = Lineage {
        source: "fuzz".into(),
        ingested_at: 0,
        ingest_date: 0,
    };
    let mut batches = Collect::default();
    let mut bad = Quarantine::in_memory();
    let name = if knobs & 64 == 0 { "input" } else { "input.gz" };
    // Knobs with an odd number of set bits run the parallel path (splitter, two typing
    // threads, writer), so it meets every other knob.
    let threads = 1 + (knobs.count_ones() % 2) as usize;
    let options = ConvertOptions {
        batch_rows: 7,
        threads,
        memory: MemoryBudget::default(),
    };
    if let Ok(report) = convert(
        input,
        name,
        &dataset,
        &lineage,
        options,
        &mut batches,
        &mut bad,
    ) {
        assert_eq!(report.rows_in, report.rows_written + report.rows_rejected);
        assert_eq!(
            batches.0.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
            report.rows_written
        );
        assert_eq!(bad.rows(), report.rows_rejected);
    }
}
