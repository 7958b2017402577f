//! The table seam: a pipeline given another [`TableSink`] hands it every part of an object
//! and records the locations it names; the pipeline itself writes no Hive keys.

use std::sync::Mutex;

use super::*;
use crate::convert::PartFile;
use crate::ports::{PartLocation, StoreError};

/// A table format that keeps what it was given: (dataset, rows, locations) per publish.
#[derive(Default)]
struct RecordingTable {
    published: Mutex<Vec<(String, u64, Vec<PartLocation>)>>,
}

impl TableSink for RecordingTable {
    fn locations(
        &self,
        dataset: &Dataset,
        object_id: &str,
        parts: &[PartFile],
    ) -> Vec<PartLocation> {
        parts
            .iter()
            .map(|part| PartLocation {
                bucket: "another-table".into(),
                key: format!(
                    "{}/data/{object_id}-{:?}-{}.parquet",
                    dataset.name, part.partition, part.seq
                ),
            })
            .collect()
    }

    async fn publish(
        &self,
        dataset: &Dataset,
        _: &Claim,
        parts: &[PartFile],
        locations: &[PartLocation],
        _: &crate::ports::Slot,
        _: &CancellationToken,
    ) -> Result<(), StoreError> {
        assert!(
            parts.iter().all(|part| part.path.is_file()),
            "the parts are on disk while they are published"
        );
        let rows = parts.iter().map(|part| part.rows).sum();
        let entry = (dataset.name.clone(), rows, locations.to_vec());
        self.published.lock().unwrap().push(entry);
        Ok(())
    }
}

#[tokio::test]
async fn another_table_format_gets_the_parts_and_the_ledger_its_locations() {
    let p = pipeline().with_table(RecordingTable::default());
    let csv = "user_id,age,signup_date\nu-1,1,2024/01/01\nu-2,2,2024/01/02\nu-3,3,2024/01/02\n";
    p.store.insert(LANDING, "users/a.csv", csv.as_bytes());
    let outcome = p
        .handle(&event(LANDING, "users/a.csv"), &job("m1"))
        .await
        .unwrap();
    let Outcome::Converted(objects) = outcome else {
        panic!("{outcome:?}")
    };
    let ObjectOutcome::Written(summary) = &objects[0] else {
        panic!("{objects:?}")
    };

    let published = p.table.published.lock().unwrap();
    assert_eq!(published.len(), 1, "one publish per object");
    let (dataset, rows, locations) = &published[0];
    assert_eq!((dataset.as_str(), *rows), ("users", 3));
    assert_eq!(locations.len(), 2, "one part per signup_date");
    let keys: Vec<String> = locations.iter().map(|at| at.key.clone()).collect();
    assert_eq!(summary.parts, keys);
    assert!(p.store.keys(LAKE).is_empty(), "no Hive part written");

    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .unwrap();
    for at in locations {
        let uri = format!("s3://{}/{}", at.bucket, at.key);
        assert!(
            record.outputs.contains(&uri),
            "{uri} in {:?}",
            record.outputs
        );
    }
    drop(published);
    assert_eq!(table(&p).len(), 3, "the rows still reach the table");
}
