//! Shared harness for the integration tests: the emulator's address, uniquely named AWS
//! resources per test, the `lakeworker` binary with bounded waits, and Parquet readers
//! (the parquet crate and, independently, pyarrow).
//!
//! `make test` (scripts/with-moto) starts moto and sets `LAKEWORKER_TEST_ENDPOINT` and
//! `LAKEWORKER_TEST_PYTHON`. Without them these tests fail with instructions, never skip.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use lakeworker::aws::Clients;
use lakeworker::config::AwsSettings;

pub const BIN: &str = env!("CARGO_BIN_EXE_lakeworker");
pub const WAIT: Duration = Duration::from_secs(60);
pub const REGION: &str = "us-east-1";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests with `make test`, which starts the emulator")
    })
}

pub fn endpoint() -> String {
    required_env("LAKEWORKER_TEST_ENDPOINT")
}

pub fn python() -> String {
    required_env("LAKEWORKER_TEST_PYTHON")
}

/// A name no other test (or earlier run against the same emulator) uses.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("lw-{tag}-{}-{n}-{nanos}", std::process::id())
}

/// Runs a command to completion, killing it if it outlives `timeout`. Its output is
/// drained while it runs, so a chatty command cannot stall on a full pipe.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    }
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + timeout;
    loop {
        let status = child.try_wait().expect("poll child");
        let late = status.is_none() && Instant::now() > deadline;
        if late {
            let _ = child.kill();
        }
        if status.is_some() || late {
            let output = Output {
                status: child.wait().expect("wait for child"),
                stdout: stdout.join().expect("stdout reader"),
                stderr: stderr.join().expect("stderr reader"),
            };
            if !late {
                return output;
            }
            panic!(
                "{command:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `lakeworker ARGS...` with the emulator's credentials, bounded by [`WAIT`].
pub fn lakeworker(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).envs(env.iter().copied());
    run_bounded(&mut command, WAIT)
}

/// Polls `check` every 200 ms until it returns true; panics after `timeout` with `what`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Uniquely named buckets, queues and table, a config file pointing at them, and clients.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub landing: String,
    pub lake: String,
    pub users_table: String,
    pub ledger_table: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub clients: Clients,
    /// `LAKEWORKER__…` overrides given to every command of this environment.
    pub overrides: Vec<(String, String)>,
}

impl TestEnv {
    /// Provisions a fresh environment from `config/local.toml` with unique names.
    /// `overrides` are `LAKEWORKER__…` variables (the env-override path users rely on).
    pub async fn new(tag: &str, overrides: &[(&str, &str)]) -> TestEnv {
        TestEnv::from_config(tag, "config/local.toml", overrides).await
    }

    /// [`TestEnv::new`] from another config template (a path from the crate root).
    pub async fn from_config(tag: &str, template: &str, overrides: &[(&str, &str)]) -> TestEnv {
        let endpoint = endpoint();
        let base = unique(tag);
        let landing = format!("{base}-in");
        let lake = format!("{base}-lake");
        let dlq = format!("{base}-dlq");
        let users_table = format!("{base}-users");
        let ledger_table = format!("{base}-ledger");
        let template =
            std::fs::read_to_string(root().join(template)).expect("read the config template");
        let text = template
            .replace("http://127.0.0.1:4566", &endpoint)
            .replace("lakeworker-landing", &landing)
            .replace("lakeworker-dlq", &dlq)
            .replace("lakeworker-lake", &lake)
            .replace("lakeworker-users", &users_table)
            .replace("lakeworker-ledger", &ledger_table);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, text).expect("write config");

        let mut all: Vec<(String, String)> = vec![
            ("LAKEWORKER__QUEUE__WAIT_SECONDS".into(), "1".into()),
            ("LAKEWORKER__LOG__FORMAT".into(), "json".into()),
            (
                "LAKEWORKER__LOG__LEVEL".into(),
                "lakeworker=debug,info".into(),
            ),
        ];
        all.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );

        let clients = Clients::connect(&AwsSettings {
            region: REGION.into(),
            endpoint_url: Some(endpoint.clone()),
            timeouts: Default::default(),
        })
        .await;
        let mut env = TestEnv {
            dir,
            config,
            landing,
            lake,
            users_table,
            ledger_table,
            queue_url: String::new(),
            dlq_url: String::new(),
            clients,
            overrides: all,
        };
        let out = env.cli(&["provision", "--config", env.config_str()]);
        assert!(
            out.status.success(),
            "provision failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env.queue_url = env.queue_url_of(&env.landing).await;
        env.dlq_url = env.queue_url_of(&dlq).await;
        env
    }

    pub fn config_str(&self) -> &str {
        self.config.to_str().expect("UTF-8 temp path")
    }

    fn env_pairs(&self) -> Vec<(&str, &str)> {
        self.overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Runs a `lakeworker` command with this environment's overrides.
    pub fn cli(&self, args: &[&str]) -> Output {
        lakeworker(args, &self.env_pairs())
    }

    async fn queue_url_of(&self, name: &str) -> String {
        self.clients
            .sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .expect("queue exists")
            .queue_url
            .expect("queue url")
    }

    /// Removes the landing bucket's notification, so a test alone decides what is sent.
    async fn without_notifications(self) -> Self {
        self.clients
            .s3
            .put_bucket_notification_configuration()
            .bucket(&self.landing)
            .notification_configuration(
                aws_sdk_s3::types::NotificationConfiguration::builder().build(),
            )
            .send()
            .await
            .expect("clear notifications");
        // Drop the TestEvent that provisioning caused.
        self.clients
            .sqs
            .purge_queue()
            .queue_url(&self.queue_url)
            .send()
            .await
            .expect("purge");
        self
    }

    /// [`TestEnv::new`] without the landing bucket's notification: the test alone decides
    /// which messages the queue gets.
    pub async fn quiet(tag: &str, overrides: &[(&str, &str)]) -> TestEnv {
        TestEnv::new(tag, overrides)
            .await
            .without_notifications()
            .await
    }

    /// [`TestEnv::quiet`] from another config template.
    pub async fn quiet_from(tag: &str, template: &str, overrides: &[(&str, &str)]) -> TestEnv {
        TestEnv::from_config(tag, template, overrides)
            .await
            .without_notifications()
            .await
    }

    /// Puts an object and sends the S3 event that announces it; returns its ETag.
    pub async fn put_and_announce(&self, key: &str, body: &[u8]) -> String {
        let etag = self.put(key, body).await;
        let event = s3_event(&self.landing, key, &etag, "2024-06-01T00:00:00.000Z");
        self.send(&event.to_string()).await;
        etag
    }

    /// A worker that reaches AWS through `proxy`.
    pub fn start_worker_via(&self, proxy: &proxy::Proxy) -> Worker {
        Worker::start(self, &[("LAKEWORKER__AWS__ENDPOINT_URL", &proxy.url())])
    }

    pub fn start_worker(&self) -> Worker {
        Worker::start(self, &[])
    }

    /// A worker with more `LAKEWORKER__…` variables than this environment's.
    pub fn start_worker_with(&self, extra: &[(&str, &str)]) -> Worker {
        Worker::start(self, extra)
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

    /// Messages in the dead-letter queue with their `lakeworker.*` attributes, received
    /// and hidden for a minute (so each is returned once).
    pub async fn dead_letters_with_attributes(&self) -> Vec<(String, HashMap<String, String>)> {
        let mut letters = Vec::new();
        loop {
            let batch = self.receive_dead_letters(60).await;
            if batch.is_empty() {
                return letters;
            }
            letters.extend(batch);
        }
    }

    /// Up to 10 dead letters with their string attributes, received without hiding them
    /// (`visibility_timeout(0)`), so a redrive right after finds them.
    pub async fn peek_dead_letters(&self) -> Vec<(String, HashMap<String, String>)> {
        self.receive_dead_letters(0).await
    }

    /// One ReceiveMessage of up to 10 dead letters, hidden for `visibility` seconds.
    async fn receive_dead_letters(
        &self,
        visibility: i32,
    ) -> Vec<(String, HashMap<String, String>)> {
        let out = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&self.dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive DLQ");
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let attributes = m
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                    .collect();
                (m.body.unwrap_or_default(), attributes)
            })
            .collect()
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

    pub async fn send(&self, body: &str) {
        self.clients
            .sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send message");
    }

    /// Visible plus in-flight messages.
    pub async fn depth(&self, url: &str) -> u64 {
        lakeworker::aws::sqs::depth(&self.clients.sqs, url)
            .await
            .expect("queue attributes")
    }

    /// Waits until the work queue has been empty for three checks in a row.
    pub async fn wait_drained(&self) {
        let deadline = Instant::now() + WAIT;
        let mut calm = 0;
        while calm < 3 {
            assert!(
                Instant::now() < deadline,
                "the queue did not drain within {WAIT:?}"
            );
            calm = if self.depth(&self.queue_url).await == 0 {
                calm + 1
            } else {
                0
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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

/// A running `lakeworker run`. Dropping it kills the process (by pid) and reaps it.
pub struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(env: &TestEnv, extra: &[(&str, &str)]) -> Worker {
        let log = env.dir.path().join(format!("worker-{}.log", unique("log")));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .args(["run", "--config", env.config_str()])
            .envs(env.env_pairs())
            .envs(extra.iter().copied())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .spawn()
            .expect("spawn worker");
        Worker { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll worker")
    }

    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines whose message is `message`.
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["fields"]["message"] == message)
            .collect()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll worker").is_none()
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll worker") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit within {timeout:?} of SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a Parquet file with the parquet crate.
pub fn read_parquet(bytes: bytes::Bytes) -> Vec<RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet metadata")
        .build()
        .expect("parquet reader")
        .collect::<Result<_, _>>()
        .expect("parquet batches")
}

/// What pyarrow sees: `{"schema": {column: type}, "rows": [...]}`, rows sorted.
/// `path` is a file, or a folder read as a Hive-partitioned dataset.
pub fn read_with_pyarrow(path: &Path) -> serde_json::Value {
    let script = root().join("tests/pyarrow_read.py");
    let out = run_bounded(Command::new(python()).arg(script).arg(path), WAIT);
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pyarrow JSON")
}

/// The key of an `s3://bucket/key` URI (as the ledger names outputs).
pub fn key_of(uri: &str) -> String {
    uri.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .map_or_else(
            || panic!("{uri:?} is not an s3:// URI"),
            |(_, key)| key.to_owned(),
        )
}

/// The object id (which names a file's lake parts and quarantine objects) of
/// `s3://bucket/key` at `etag`.
pub fn part_id(bucket: &str, key: &str, etag: &str) -> String {
    lakeworker::domain::lake::object_id(&lakeworker::domain::envelope::ObjectRef {
        bucket: bucket.into(),
        key: key.into(),
        size: None,
        etag: Some(etag.into()),
        version_id: None,
        event_time: None,
        reprocess: None,
    })
}

/// An S3 `ObjectCreated:Put` notification body, with the key form-encoded as S3 does.
pub fn s3_event(bucket: &str, key: &str, etag: &str, event_time: &str) -> serde_json::Value {
    serde_json::json!({"Records": [s3_record("ObjectCreated:Put", bucket, key, etag, event_time)]})
}

pub fn s3_record(
    name: &str,
    bucket: &str,
    key: &str,
    etag: &str,
    event_time: &str,
) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
        "eventTime": event_time, "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "test",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": form_encode(key), "size": 1, "eTag": etag, "sequencer": "0A"}}
    })
}

/// S3's key encoding in events: percent-encoding with spaces as `+`.
pub fn form_encode(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        match byte {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A CSV of `rows` orders on one day whose values do not compress away (about 60 bytes a
/// row), so its Parquet passes 1 MiB a few times.
pub fn incompressible_orders(rows: u64) -> Vec<u8> {
    let mut csv = String::from("order_id,user_id,total,paid,ordered_at\n");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for n in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let total = (x % 1_000_000) as f64 / 100.0;
        csv.push_str(&format!(
            "o-{n},u-{x:016x},{total},{},2024-05-01T{:02}:{:02}:00Z\n",
            n % 2 == 0,
            n % 24,
            n % 60
        ));
    }
    csv.into_bytes()
}

/// A gzip of a few MB that would expand to gigabytes of valid rows: gzip members, each a
/// compressed block of the same rows, one after another (as `cat a.gz b.gz` makes). Built
/// from one compressed block, so the test never holds or compresses the gigabytes.
pub fn gzip_bomb(header: &str, row: &str, members: usize) -> (Vec<u8>, u64) {
    use std::io::Write;
    let block = row.repeat((1 << 20) / row.len());
    let member = |text: &str| {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(text.as_bytes()).expect("compress");
        gzip.finish().expect("compress")
    };
    let mut bomb = member(&format!("{header}{block}"));
    let rest = member(&block);
    for _ in 1..members {
        bomb.extend_from_slice(&rest);
    }
    let expanded = (header.len() + block.len() * members) as u64;
    (bomb, expanded)
}

pub fn example(path: &str) -> Vec<u8> {
    std::fs::read(root().join("examples").join(path)).expect("example file")
}

pub mod proxy;
