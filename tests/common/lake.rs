//! What a test puts into the landing bucket and reads back of what the worker wrote: lake
//! objects, Iceberg tables (through pyiceberg), the users table, the ledger.

use std::collections::HashMap;
use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;

use lakeworker::domain::ledger::Status;

use super::{
    endpoint, python, root, run_bounded, s3_event, wait_for, TestEnv, Worker, REGION, WAIT,
};

impl TestEnv {
    /// Waits until each key's newest ledger record has `status`; else fails, within
    /// `within`, with `worker`'s log.
    pub async fn wait_status<K: AsRef<str>>(
        &self,
        keys: &[K],
        status: Status,
        within: std::time::Duration,
        worker: &Worker,
    ) {
        let deadline = std::time::Instant::now() + within;
        'wait: loop {
            for key in keys.iter().map(AsRef::as_ref) {
                if self.ledger(key).await.first().and_then(|r| r.status) != Some(status) {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{key} not {} within {within:?}; the worker's log:\n{}",
                        status.as_str(),
                        worker.log()
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    continue 'wait;
                }
            }
            return;
        }
    }

    /// The Iceberg table as tests/pyiceberg_read.py reads it (see there for the shape), or
    /// `None` while it does not exist yet.
    pub fn try_read_iceberg(&self, table: &str) -> Option<serde_json::Value> {
        let out = run_bounded(
            std::process::Command::new(python())
                .arg(root().join("tests/pyiceberg_read.py"))
                .args(["--endpoint", &endpoint(), "--region", REGION])
                .args(["--database", &self.catalog().database, "--table", table]),
            WAIT,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains("NoSuchTableError") {
            return None;
        }
        assert!(out.status.success(), "pyiceberg failed: {stderr}");
        Some(serde_json::from_slice(&out.stdout).expect("pyiceberg JSON"))
    }

    /// The Iceberg table as pyiceberg reads it; it must exist.
    pub fn read_iceberg(&self, table: &str) -> serde_json::Value {
        self.try_read_iceberg(table)
            .unwrap_or_else(|| panic!("no Iceberg table {table}"))
    }

    pub async fn put(&self, key: &str, body: &[u8]) -> String {
        let out = self
            .clients
            .s3
            .put_object()
            .bucket(&self.landing)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .expect("put object");
        out.e_tag.expect("etag").trim_matches('"').to_owned()
    }

    /// Puts an object and sends the S3 event that announces it; returns its ETag.
    pub async fn put_and_announce(&self, key: &str, body: &[u8]) -> String {
        let etag = self.put(key, body).await;
        let event = s3_event(&self.landing, key, &etag, "2024-06-01T00:00:00.000Z");
        self.send(&event.body()).await;
        etag
    }

    /// The ledger records of one object (newest version first).
    pub async fn ledger(&self, key: &str) -> Vec<lakeworker::domain::ledger::LedgerRecord> {
        lakeworker::aws::ledger::DynamoLedger::new(
            self.clients.dynamodb.clone(),
            self.ledger_table.clone(),
        )
        .history(&format!("s3://{}/{key}", self.landing))
        .await
        .expect("ledger history")
    }

    pub async fn lake_keys(&self) -> Vec<String> {
        self.keys_in(&self.lake).await
    }

    /// Every key of `bucket`, sorted.
    pub async fn keys_in(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("list lake");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        keys
    }

    pub async fn wait_lake_keys(&self, count: usize) -> Vec<String> {
        wait_for(&format!("{count} lake objects"), WAIT, || async {
            self.lake_keys().await.len() >= count
        })
        .await;
        self.lake_keys().await
    }

    pub async fn lake_object(&self, key: &str) -> bytes::Bytes {
        let out = self
            .clients
            .s3
            .get_object()
            .bucket(&self.lake)
            .key(key)
            .send()
            .await
            .expect("get lake object");
        out.body
            .collect()
            .await
            .expect("read lake object")
            .into_bytes()
    }

    /// Downloads the lake under `prefix` into a local folder with the same layout.
    pub async fn download_lake(&self, prefix: &str) -> PathBuf {
        let root = self.dir.path().join("lake");
        for key in self
            .lake_keys()
            .await
            .into_iter()
            .filter(|k| k.starts_with(prefix))
        {
            let path = root.join(&key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, self.lake_object(&key).await).expect("write");
        }
        root.join(prefix)
    }

    /// Every item of the users table, by user id.
    pub async fn users(&self) -> HashMap<String, HashMap<String, AttributeValue>> {
        self.users_by("user_id").await
    }

    /// Every item of the users table, by the string attribute `key`.
    pub async fn users_by(&self, key: &str) -> HashMap<String, HashMap<String, AttributeValue>> {
        let out = self
            .clients
            .dynamodb
            .scan()
            .table_name(&self.users_table)
            .send()
            .await
            .expect("scan users");
        out.items()
            .iter()
            .map(|item| (item[key].as_s().expect("string key").clone(), item.clone()))
            .collect()
    }
}
