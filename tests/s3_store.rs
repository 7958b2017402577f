//! The S3 adapter's uploads against the emulator: single put and multipart, and the abort
//! of a multipart upload that cannot complete or whose job was stopped.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::*;
use lakeworker::aws::s3::{S3Store, MIN_PART_SIZE};
use lakeworker::ports::ObjectStore;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_small_and_multipart_files_and_aborts_failed_uploads() {
    let env = TestEnv::builder("s3store").start().await;
    let store = S3Store::new(env.clients.s3.clone()).with_multipart(MIN_PART_SIZE, MIN_PART_SIZE);
    let dir = tempfile::tempdir().unwrap();
    let go = CancellationToken::new();

    // 11 MiB + 3 bytes: three parts, the last one short.
    let big: Vec<u8> = (0..(11 * 1024 * 1024 + 3))
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let big_path = dir.path().join("big.bin");
    std::fs::write(&big_path, &big).unwrap();
    store
        .put_file(&env.lake, "multi/big.bin", &big_path, &go)
        .await
        .unwrap();
    assert_eq!(
        env.lake_object("multi/big.bin").await.as_ref(),
        big.as_slice()
    );
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&env.lake)
        .key("multi/big.bin")
        .send()
        .await
        .unwrap();
    assert!(
        head.e_tag().unwrap().ends_with("-3\""),
        "a 3-part upload: {:?}",
        head.e_tag()
    );

    let small_path = dir.path().join("small.bin");
    std::fs::write(&small_path, b"hello").unwrap();
    store
        .put_file(&env.lake, "single/small.bin", &small_path, &go)
        .await
        .unwrap();
    assert_eq!(env.lake_object("single/small.bin").await.as_ref(), b"hello");

    // Claim more bytes than the file has: a part read fails, and the upload is aborted.
    let err = store
        .put_multipart(
            &env.lake,
            "multi/broken.bin",
            &small_path,
            3 * MIN_PART_SIZE,
            &go,
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    let uploads = env
        .clients
        .s3
        .list_multipart_uploads()
        .bucket(&env.lake)
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "left behind: {:?}",
        uploads.uploads()
    );
    assert!(!env
        .lake_keys()
        .await
        .contains(&"multi/broken.bin".to_owned()));

    // Streaming reads honour the event's ETag.
    let put = env
        .clients
        .s3
        .put_object()
        .bucket(&env.landing)
        .key("users/a.csv")
        .body(ByteStream::from_static(b"user_id\n"))
        .send()
        .await
        .unwrap();
    let mut object = lakeworker::domain::envelope::ObjectRef {
        bucket: env.landing.clone(),
        key: "users/a.csv".into(),
        size: None,
        etag: put.e_tag().map(|e| e.trim_matches('"').to_owned()),
        version_id: None,
        event_time: None,
        reprocess: None,
    };
    let mut reader = store.open(&object).await.unwrap().reader;
    let text = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut reader, &mut text).map(|_| text)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(text, "user_id\n");
    assert_eq!(store.open(&object).await.unwrap().size, Some(8));

    // Server-side copies pin the version too, and keys need no care from the caller.
    let spaced = lakeworker::domain::envelope::ObjectRef {
        key: "users/a b+ü.csv".into(),
        etag: Some(env.put("users/a b+ü.csv", b"user_id\nx\n").await),
        ..object.clone()
    };
    store
        .copy(&spaced, &env.lake, "q/copy of a b+ü.csv")
        .await
        .unwrap();
    assert_eq!(
        env.lake_object("q/copy of a b+ü.csv").await.as_ref(),
        b"user_id\nx\n"
    );
    store
        .put_bytes(&env.lake, "q/report.json", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(env.lake_object("q/report.json").await.as_ref(), b"{}");
    // (moto ignores x-amz-copy-source-if-match, so the copy's ETag pin is not checked here.)

    object.etag = Some("0123456789abcdef0123456789abcdef".into());
    let stale = store
        .open(&object)
        .await
        .err()
        .expect("a stale ETag is refused");
    assert_eq!(
        stale.kind,
        lakeworker::ports::StoreErrorKind::PreconditionFailed
    );
}
