//! Scratch files: a full or unwritable scratch disk fails the job, and nothing is left behind.

use super::*;
use crate::pipeline::error::ErrorClass;

/// A users file whose rows go to all three scratch files: a lake part, the records spool
/// and (one row in twelve, within max_invalid_fraction) the bad rows.
const MIXED_USERS: &str = "user_id,age,signup_date\nu-1,1,2024/01/01\nu-2,two,2024/01/01\n\
    u-3,3,2024/01/02\nu-4,4,2024/01/02\nu-5,5,2024/01/02\nu-6,6,2024/01/02\nu-7,7,2024/01/02\n\
    u-8,8,2024/01/02\nu-9,9,2024/01/02\nu-10,10,2024/01/02\nu-11,11,2024/01/02\nu-12,12,2024/01/02\n";

fn retry_policy() -> crate::worker::disposition::RetryPolicy {
    crate::worker::disposition::RetryPolicy {
        max_attempts: 5,
        base: Duration::from_secs(5),
        max: Duration::from_secs(300),
    }
}

#[test]
fn a_full_scratch_disk_is_a_transient_failure_of_the_job() {
    use crate::worker::disposition::{decide, Disposition};
    let p = pipeline();
    let dataset = p.settings.datasets.by_name("users").unwrap();
    let lineage = lineage("s3://lakeworker-landing/users/a.csv", chrono::Utc::now());
    // Larger, on several threads: the spool and the bad rows fill their write buffers and
    // fail while the rows stream, in the writing thread.
    let mut larger = String::from("user_id,age,signup_date\n");
    for i in 0..5000 {
        let age = if i % 50 == 0 {
            "many".to_owned()
        } else {
            i.to_string()
        };
        larger.push_str(&format!("u-{i},{age},2024/01/01\n"));
    }
    let runs = [
        (
            MIXED_USERS,
            crate::convert::ConvertOptions::sequential(8192),
        ),
        (
            larger.as_str(),
            crate::convert::ConvertOptions {
                batch_rows: 500,
                threads: 2,
                memory: p.settings.worker.conversion_memory,
            },
        ),
    ];
    // /dev/full answers every write with ENOSPC, as a full disk does; each scratch file
    // of the job in turn is made to land there.
    for ((input, options), file) in runs.iter().flat_map(|run| {
        ["part-00000.parquet", "records.arrow", "bad-rows.jsonl"].map(|file| (run, file))
    }) {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join(file)).unwrap();
        let converted = object::convert_to_parts(
            input.as_bytes(),
            "users/a.csv",
            dataset,
            &lineage,
            *options,
            dir.path(),
            &p.settings.lake.parquet,
            None,
        );
        let file = format!("{file}, {} thread(s)", options.threads);
        let Err(error) = converted else {
            panic!("{file}: the conversion succeeded on a full disk")
        };
        assert!(
            matches!(&error, convert::ConvertError::Write(reason) if reason.contains("No space left on device")),
            "{file}: {error:?}"
        );
        let failed = JobError::Convert {
            what: lineage.source.clone(),
            source: error,
        };
        assert_eq!(failed.class(), ErrorClass::Transient, "{file}");
        assert_eq!(
            decide(&Err(failed), 1, &retry_policy(), None),
            Disposition::Retry(Duration::from_secs(5)),
            "{file}: the message comes back later"
        );
    }
}

#[tokio::test]
async fn a_scratch_dir_that_cannot_be_written_fails_the_job_not_the_worker() {
    let p = pipeline_with(&[("LAKEWORKER__WORKER__SCRATCH_DIR", "/dev/full")]);
    p.store
        .insert(LANDING, "users/a.csv", MIXED_USERS.as_bytes());
    let err = p
        .handle(&event(LANDING, "users/a.csv"), &job("m1"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    assert!(
        err.to_string().contains("creating scratch directory"),
        "{err}"
    );
    let record = p
        .ledger
        .record("s3://lakeworker-landing/users/a.csv")
        .unwrap();
    assert_eq!(record.status, Some(Status::Failed));
    assert!(record
        .last_error
        .unwrap()
        .contains("creating scratch directory"));
    assert!(p.store.keys(LAKE).is_empty());
    assert!(p.records.tables.lock().unwrap().is_empty());
    // The next delivery, with room on the disk, converts it.
    let p = Pipeline {
        settings: Arc::new(pipeline().settings.as_ref().clone()),
        ..p
    };
    let ObjectOutcome::Written(summary) = one_object(&p, "users/a.csv").await else {
        panic!()
    };
    assert_eq!((summary.rows_written, summary.rows_quarantined), (11, 1));
}

#[tokio::test]
async fn scratch_files_are_removed_whatever_the_outcome() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_str().unwrap();
    let p = pipeline_with(&[("LAKEWORKER__WORKER__SCRATCH_DIR", dir)]);
    let leftovers = || std::fs::read_dir(scratch.path()).unwrap().count();
    p.store
        .insert(LANDING, "users/a.csv", MIXED_USERS.as_bytes());
    assert!(matches!(
        one_object(&p, "users/a.csv").await,
        ObjectOutcome::Written(_)
    ));
    assert_eq!(leftovers(), 0);
    // Refused after a thousand part files were begun: they go too.
    let mut many = String::from("user_id,signup_date\n");
    for day in 0..=1000 {
        let date = crate::domain::schema::days_to_date(day)
            .unwrap()
            .format("%Y/%m/%d");
        many.push_str(&format!("u-{day},{date}\n"));
    }
    p.store.insert(LANDING, "users/many.csv", many.as_bytes());
    let ObjectOutcome::Rejected(rejection) = one_object(&p, "users/many.csv").await else {
        panic!()
    };
    assert_eq!(rejection.reason, "the file spans more than 1000 partitions");
    assert_eq!(leftovers(), 0);
}
