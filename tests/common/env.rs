//! [`TestEnv`]: uniquely named AWS resources per test, provisioned by `lakeworker
//! provision` from a config fixture, built by [`TestEnvBuilder`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use lakeworker::aws::Clients;
use lakeworker::config::AwsSettings;

use super::config_file::{ConfigFile, WORKER_CONFIG};
use super::{endpoint, lakeworker, unique, REGION, WAIT};

/// The account id in the queue URLs of the emulator.
const ACCOUNT: &str = "123456789012";

/// Uniquely named buckets, queues and tables, a config file pointing at them, and clients.
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
    /// The `[catalog]` database and workgroup, with [`TestEnvBuilder::catalog`].
    pub catalog: Option<Catalog>,
    /// Environment variables given to every command of this environment.
    pub(super) vars: Vec<(String, String)>,
}

/// A fresh Athena database and workgroup (the workgroup is created).
#[derive(Clone, Debug)]
pub struct Catalog {
    pub database: String,
    pub workgroup: String,
}

/// How a [`TestEnv`] is made: `TestEnv::builder(tag)…start().await`.
///
/// ```ignore
/// let env = TestEnv::builder("poison")
///     .env("LAKEWORKER__QUEUE__MAX_ATTEMPTS", "2") // as a task definition sets it
///     .quiet()                                      // the test sends every message
///     .start()
///     .await;
/// ```
#[must_use = "a builder does nothing until `start`"]
pub struct TestEnvBuilder {
    tag: String,
    config: String,
    edits: Vec<(String, serde_json::Value)>,
    vars: Vec<(String, String)>,
    datasets: Option<String>,
    catalog: bool,
    notified: bool,
}

impl TestEnvBuilder {
    /// Another config fixture than tests/fixtures/worker.toml (a path from the crate root).
    pub fn config(mut self, path: &str) -> Self {
        self.config = path.to_owned();
        self
    }

    /// Sets a key in the config file (see [`ConfigFile::set`]): `datasets.users.inline`.
    pub fn set(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.edits.push((key.to_owned(), value.into()));
        self
    }

    /// An environment variable for every command: a `LAKEWORKER__SECTION__KEY` override
    /// (the path deployments use), or another variable such as the PII salt.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// More `[[datasets]]` from a fixture file, given to every command as
    /// `LAKEWORKER_DATASETS` (as a task definition would). Their `records_table` is this
    /// environment's users table.
    pub fn datasets(mut self, path: &str) -> Self {
        self.datasets = Some(path.to_owned());
        self
    }

    /// A `[catalog]` (by environment variables) in a fresh database and workgroup.
    pub fn catalog(mut self) -> Self {
        self.catalog = true;
        self
    }

    /// Long polls of [`super::worker::SHORT_POLL`], so a stopped worker's last poll ends
    /// soon ([`super::Worker::stop_for_restart`]).
    pub fn short_polls(self) -> Self {
        self.set("queue.wait_seconds", super::worker::SHORT_POLL.as_secs())
    }

    /// Without the landing bucket's notification (and the test event it sent): the test
    /// alone decides which messages the queue gets.
    pub fn quiet(mut self) -> Self {
        self.notified = false;
        self
    }

    /// Names the resources, writes the config, runs `lakeworker provision`.
    pub async fn start(self) -> TestEnv {
        let endpoint = endpoint();
        let base = unique(&self.tag);
        let landing = format!("{base}-in");
        let lake = format!("{base}-lake");
        let dlq = format!("{base}-dlq");
        let users_table = format!("{base}-users");
        let ledger_table = format!("{base}-ledger");

        let mut config = ConfigFile::load(&self.config);
        config
            .set("aws.endpoint_url", endpoint.as_str())
            .set("landing.bucket", landing.as_str())
            .set("queue.url", format!("{endpoint}/{ACCOUNT}/{landing}"))
            .set(
                "queue.dead_letter_url",
                format!("{endpoint}/{ACCOUNT}/{dlq}"),
            )
            .set("lake.bucket", lake.as_str())
            .set("ledger.table", ledger_table.as_str());
        name_records_tables(&mut config, &users_table);
        for (key, value) in &self.edits {
            config.set(key, value.clone());
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.toml");
        config.write(&path);

        let mut vars: Vec<(String, String)> = vec![
            ("LAKEWORKER__QUEUE__WAIT_SECONDS".into(), "1".into()),
            ("LAKEWORKER__LOG__FORMAT".into(), "json".into()),
            (
                "LAKEWORKER__LOG__LEVEL".into(),
                "lakeworker=debug,info".into(),
            ),
        ];
        vars.extend(self.vars);
        if let Some(datasets) = &self.datasets {
            let mut more = ConfigFile::load(datasets);
            name_records_tables(&mut more, &users_table);
            vars.push(("LAKEWORKER_DATASETS".into(), more.to_toml()));
        }
        let catalog = self.catalog.then(|| Catalog {
            database: unique("db").replace('-', "_"),
            workgroup: unique("wg"),
        });
        if let Some(catalog) = &catalog {
            vars.extend([
                (
                    "LAKEWORKER__CATALOG__DATABASE".into(),
                    catalog.database.clone(),
                ),
                (
                    "LAKEWORKER__CATALOG__WORKGROUP".into(),
                    catalog.workgroup.clone(),
                ),
                (
                    "LAKEWORKER__CATALOG__OUTPUT_LOCATION".into(),
                    "s3://athena-results/q/".into(),
                ),
            ]);
        }

        let clients = Clients::connect(&AwsSettings {
            region: REGION.into(),
            endpoint_url: Some(endpoint.clone()),
            timeouts: Default::default(),
        })
        .await;
        let mut env = TestEnv {
            dir,
            config: path,
            landing,
            lake,
            users_table,
            ledger_table,
            queue_url: String::new(),
            dlq_url: String::new(),
            clients,
            catalog,
            vars,
        };
        let out = env.cli(&["provision", "--config", env.config_str()]);
        assert!(
            out.status.success(),
            "provision failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env.queue_url = env.queue_url_of(&env.landing).await;
        env.dlq_url = env.queue_url_of(&dlq).await;
        if !self.notified {
            env.clear_notifications().await;
        }
        if let Some(catalog) = &env.catalog {
            env.clients
                .athena
                .create_work_group()
                .name(&catalog.workgroup)
                .send()
                .await
                .expect("create workgroup");
        }
        env
    }
}

/// Every dataset with a records table writes to `table`.
fn name_records_tables(config: &mut ConfigFile, table: &str) {
    for dataset in config.datasets_mut() {
        if let Some(records) = dataset.get_mut("records_table") {
            *records = table.into();
        }
    }
}

impl TestEnv {
    /// Every statement Athena received in `workgroup`, oldest first.
    pub async fn athena_statements(&self, workgroup: &str) -> Vec<String> {
        let ids = self
            .clients
            .athena
            .list_query_executions()
            .work_group(workgroup)
            .send()
            .await
            .expect("list query executions")
            .query_execution_ids
            .unwrap_or_default();
        let mut found = Vec::new();
        for id in ids {
            let execution = self
                .clients
                .athena
                .get_query_execution()
                .query_execution_id(&id)
                .send()
                .await
                .expect("get query execution")
                .query_execution
                .expect("execution");
            let submitted = execution
                .status
                .and_then(|s| s.submission_date_time)
                .map(|t| t.as_nanos())
                .unwrap_or_default();
            found.push((submitted, execution.query.unwrap_or_default()));
        }
        found.sort();
        found.into_iter().map(|(_, q)| q).collect()
    }

    /// From tests/fixtures/worker.toml, with the landing bucket notifying the queue (as
    /// `provision` sets it up); see [`TestEnvBuilder`] for the rest.
    pub fn builder(tag: &str) -> TestEnvBuilder {
        TestEnvBuilder {
            tag: tag.to_owned(),
            config: WORKER_CONFIG.to_owned(),
            edits: Vec::new(),
            vars: Vec::new(),
            datasets: None,
            catalog: false,
            notified: true,
        }
    }

    pub fn config_str(&self) -> &str {
        self.config.to_str().expect("UTF-8 temp path")
    }

    /// The catalog of an environment built with [`TestEnvBuilder::catalog`].
    pub fn catalog(&self) -> &Catalog {
        self.catalog.as_ref().expect("built with .catalog()")
    }

    pub fn env_pairs(&self) -> Vec<(&str, &str)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Runs a `lakeworker` command with this environment's variables.
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

    /// Removes the landing bucket's notification and drops the test event it caused.
    async fn clear_notifications(&self) {
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
        self.clients
            .sqs
            .purge_queue()
            .queue_url(&self.queue_url)
            .send()
            .await
            .expect("purge");
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
}
