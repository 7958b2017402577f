//! Fault tests: the worker under at-least-once delivery, crashes, long jobs, outages and
//! poison messages, against the emulator. A TCP proxy between worker and emulator slows
//! downloads (long jobs) or refuses connections (outages).

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::*;
use lakeworker::domain::ledger::Status;

const NOW: &str = "2024-06-01T00:00:00.000Z";

/// An orders CSV of `rows` rows over two days (about 50 bytes a row).
fn orders_csv(rows: usize) -> Vec<u8> {
    let mut csv = String::from("order_id,user_id,total,paid,ordered_at\n");
    for i in 0..rows {
        let day = 1 + i % 2;
        csv.push_str(&format!(
            "o-{i:07},u-{},{}.25,{},2024-05-0{day}T12:00:00Z\n",
            i % 97,
            i % 500,
            i % 3 == 0
        ));
    }
    csv.into_bytes()
}

/// A users CSV with `rows` rows and `distinct` distinct user ids.
fn users_csv(rows: usize, distinct: usize) -> Vec<u8> {
    let mut csv = String::from("user_id,email,age,signup_date\n");
    for i in 0..rows {
        let id = i % distinct;
        csv.push_str(&format!(
            "u-{id:05},user{id}@example.com,{},2024/05/0{}\n",
            20 + i % 50,
            1 + id % 3
        ));
    }
    csv.into_bytes()
}

/// Puts `orders/{name}-{i}.csv` for `i` in `0..n`: 100 rows over two days each.
async fn put_orders(env: &TestEnv, name: &str, n: usize) {
    for i in 0..n {
        env.put(&format!("orders/{name}-{i}.csv"), &orders_csv(100))
            .await;
    }
}

/// Puts `orders/during.csv` (4000 rows) with downloads through `proxy` slowed to 20 kB/s,
/// and returns once it is claimed: a job mid-download, the moment to cause a fault.
async fn start_a_slow_download(env: &TestEnv, proxy: &Proxy) {
    proxy.throttle_downstream(20_000);
    env.put("orders/during.csv", &orders_csv(4_000)).await;
    wait_claimed(env, "orders/during.csv").await;
}

fn part_keys(env: &TestEnv, key: &str, etag: &str, partition: &str, days: &[&str]) -> Vec<String> {
    let id = part_id(&env.landing, key, etag);
    let dataset = key.split('/').next().unwrap();
    days.iter()
        .map(|d| format!("curated/{dataset}/{partition}={d}/part-{id}.parquet"))
        .collect()
}

async fn wait_claimed(env: &TestEnv, key: &str) {
    wait_for("the object to be claimed", WAIT, || async {
        env.ledger(key).await.first().and_then(|r| r.status) == Some(Status::Processing)
    })
    .await;
}

async fn wait_done(env: &TestEnv, key: &str) {
    wait_for("the ledger to say done", WAIT, || async {
        env.ledger(key).await.first().and_then(|r| r.status) == Some(Status::Done)
    })
    .await;
}

/// After a crash, `second` finished the users file `key` (3000 rows, 1200 keys): one
/// set of outputs, one row per key, nothing dead-lettered, handled once.
async fn assert_finished_once(env: &TestEnv, key: &str, etag: &str, second: &Worker) {
    wait_done(env, key).await;
    env.wait_drained().await;
    let days = ["2024-05-01", "2024-05-02", "2024-05-03"];
    assert_eq!(
        env.lake_keys().await,
        part_keys(env, key, etag, "signup_date", &days),
        "one set of outputs: the same keys rewritten, not a second set"
    );
    assert_eq!(env.users().await.len(), 1200, "one row per distinct key");
    assert_eq!(env.depth(&env.dlq_url).await, 0);
    assert_eq!(second.events("message handled").len(), 1);
}

/// Whether any log event, or a span around it, has `attempt` 2: a message received a
/// second time (the message span), or a second claim of an object.
fn a_second_attempt(worker: &Worker) -> bool {
    worker
        .log_events()
        .iter()
        .any(|event| has_field(event, "attempt", 2))
}

fn seconds_between(start: &Option<String>, end: &Option<String>) -> f64 {
    let parse =
        |t: &Option<String>| chrono::DateTime::parse_from_rfc3339(t.as_deref().unwrap()).unwrap();
    (parse(end) - parse(start)).as_seconds_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_the_visibility_timeout_runs_once() {
    let env = TestEnv::builder("long")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "2")
        .quiet()
        .start()
        .await;
    let proxy = Proxy::start(&endpoint()).await;
    // About 1.1 MB at 150 kB/s: a download of 7 s or more, over three visibility windows.
    proxy.throttle_downstream(150_000);
    let worker = env.worker().via(&proxy).start();
    let key = "orders/long.csv";
    let etag = env.put_and_announce(key, &orders_csv(22_000)).await;
    wait_claimed(&env, key).await;
    // Two lease lengths later the claim is still live: it is being renewed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let record = &env.ledger(key).await[0];
    assert_eq!(record.status, Some(Status::Processing));
    assert!(
        record.lease_expires_at.unwrap() > chrono::Utc::now(),
        "{record:?}"
    );

    let keys = env.wait_lake_keys(2).await;
    env.wait_drained().await;
    assert_eq!(
        keys,
        part_keys(
            &env,
            key,
            &etag,
            "ordered_at_date",
            &["2024-05-01", "2024-05-02"]
        )
    );
    let ledger = env.ledger(key).await;
    assert_eq!(ledger.len(), 1);
    let record = &ledger[0];
    assert_eq!(
        (record.status, record.attempts),
        (Some(Status::Done), 1),
        "one claim"
    );
    assert_eq!(record.rows_written, Some(22_000));
    let took = seconds_between(&record.started_at, &record.finished_at);
    assert!(
        took >= 6.0,
        "the scenario needs a job of 3 visibility windows; it took {took:.1} s"
    );

    let handled = worker.events("message handled");
    assert_eq!(handled.len(), 1, "received and handled once: {handled:?}");
    assert!(
        !a_second_attempt(&worker),
        "the message was never received twice"
    );
    assert!(
        worker.events("visibility extended").len() >= 3,
        "the heartbeat kept it invisible"
    );
    assert_eq!(env.depth(&env.dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_job_is_finished_by_the_next_worker() {
    let env = TestEnv::builder("crash")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "2")
        .quiet()
        .start()
        .await;
    let proxy = Proxy::start(&endpoint()).await;
    proxy.throttle_downstream(20_000);
    let first = env.worker().via(&proxy).start();
    let key = "users/crash.csv";
    let etag = env.put_and_announce(key, &users_csv(3000, 1200)).await;
    wait_claimed(&env, key).await;
    first.kill();

    let second = env.start_worker();
    assert_finished_once(&env, key, &etag, &second).await;
    assert_eq!(
        env.ledger(key).await[0].attempts,
        2,
        "the crashed claim expired and was taken over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_message_at_once() {
    let env = TestEnv::builder("sigterm")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "60")
        .env("LAKEWORKER__WORKER__SHUTDOWN_GRACE_SECONDS", "1")
        .quiet()
        .start()
        .await;
    let proxy = Proxy::start(&endpoint()).await;
    proxy.throttle_downstream(10_000);
    let worker = env.worker().via(&proxy).start();
    let key = "orders/slow.csv";
    let etag = env.put_and_announce(key, &orders_csv(5_000)).await;
    wait_claimed(&env, key).await;

    let started = Instant::now();
    let status = worker.terminate(Duration::from_secs(6 + 5));
    let took = started.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took <= Duration::from_secs(1 + 5),
        "exit within grace + 5 s, took {took:?}"
    );
    // Visible again at once, long before its 60 s visibility timeout would end.
    let visible = env
        .clients
        .sqs
        .receive_message()
        .queue_url(&env.queue_url)
        .visibility_timeout(0)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(
        visible.len(),
        1,
        "the message is visible right after the exit"
    );
    let record = &env.ledger(key).await[0];
    assert_eq!(record.status, Some(Status::Failed));
    assert_eq!(record.lease_expires_at, None, "the claim was released");
    assert!(env.lake_keys().await.is_empty());

    let _next = env.start_worker();
    let keys = env.wait_lake_keys(2).await;
    env.wait_drained().await;
    assert_eq!(
        keys,
        part_keys(
            &env,
            key,
            &etag,
            "ordered_at_date",
            &["2024-05-01", "2024-05-02"]
        )
    );
    assert_eq!(env.ledger(key).await[0].status, Some(Status::Done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_default_visibility_below_the_workers_does_not_redeliver() {
    let env = TestEnv::builder("qvis")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "20")
        .quiet()
        .start()
        .await;
    // The queue was made by someone else, with a default far below the worker's window:
    // a receive that does not ask for the worker's own would be redelivered after 1 s.
    env.clients
        .sqs
        .set_queue_attributes()
        .queue_url(&env.queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .expect("set the queue's default visibility");
    let proxy = Proxy::start(&endpoint()).await;
    // About 220 kB at 40 kB/s: a job of 5 s or more, long before its first heartbeat (10 s).
    proxy.throttle_downstream(40_000);
    let worker = env.worker().via(&proxy).start();
    let key = "orders/qvis.csv";
    env.put_and_announce(key, &orders_csv(4_400)).await;
    env.wait_lake_keys(2).await;
    env.wait_drained().await;
    let record = &env.ledger(key).await[0];
    assert_eq!((record.status, record.attempts), (Some(Status::Done), 1));
    let took = seconds_between(&record.started_at, &record.finished_at);
    assert!(
        took >= 3.0,
        "the scenario needs a job of several seconds: {took:.1} s"
    );
    assert!(
        !a_second_attempt(&worker),
        "received once: {:?}",
        worker.events("message handled")
    );
    assert_eq!(worker.events("message handled").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_event_is_processed_once() {
    let env = TestEnv::builder("dup")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "4")
        .env("LAKEWORKER__QUEUE__RETRY_BASE_SECONDS", "1")
        .quiet()
        .start()
        .await;
    let worker = env.start_worker();
    let key = "users/dup.csv";
    let etag = env.put(key, &users_csv(500, 400)).await;
    let event = s3_event(&env.landing, key, &etag, NOW).body();
    for _ in 0..3 {
        env.send(&event).await;
    }
    env.wait_lake_keys(3).await;
    env.wait_drained().await;
    assert_eq!(
        worker.events("object converted").len(),
        1,
        "converted once; log:\n{}",
        worker.log()
    );
    assert_eq!(
        worker.events("message handled").len(),
        3,
        "all three deleted"
    );
    let record = &env.ledger(key).await[0];
    assert_eq!((record.status, record.attempts), (Some(Status::Done), 1));
    assert_eq!(env.users().await.len(), 400);
    assert_eq!(env.depth(&env.dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_outage_loses_nothing() {
    let env = TestEnv::builder("outage")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "5")
        .env("LAKEWORKER__QUEUE__RETRY_BASE_SECONDS", "1")
        // max_attempts stays at its default (5).
        .start()
        .await;
    let proxy = Proxy::start(&endpoint()).await;
    let mut worker = env.worker().via(&proxy).start();
    put_orders(&env, "before", 3).await;
    env.wait_lake_keys(6).await;

    // A slow object is mid-download when the endpoint goes away for 10 s.
    start_a_slow_download(&env, &proxy).await;
    proxy.refuse().await;
    put_orders(&env, "after", 3).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(worker.is_running(), "the worker survives the outage");
    proxy.throttle_downstream(0);
    proxy.restore().await;

    let keys = env.wait_lake_keys(14).await;
    env.wait_drained().await;
    assert_eq!(keys.len(), 14, "7 objects × 2 partitions: {keys:#?}");
    assert_eq!(env.depth(&env.dlq_url).await, 0, "nothing dead-lettered");
    assert_eq!(
        env.ledger("orders/during.csv").await[0].status,
        Some(Status::Done)
    );
    assert!(
        worker
            .events("receive failed")
            .iter()
            .any(|event| event["fields"]["error"].is_string()),
        "the outage was seen"
    );
}

/// The log events with `message` that happened in the span of landing key `key`.
fn events_for(worker: &Worker, message: &str, key: &str) -> usize {
    worker
        .events(message)
        .iter()
        .filter(|event| {
            event["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|span| span["key"] == key))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_endpoint_times_out_and_loses_nothing() {
    // Default AWS deadlines: connect 3 s, first byte 10 s, small calls 5 s; long polls of
    // 1 s get 6 s.
    let env = TestEnv::builder("stall")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "5")
        .env("LAKEWORKER__QUEUE__RETRY_BASE_SECONDS", "1")
        .start()
        .await;
    let proxy = Proxy::start(&endpoint()).await;
    let mut worker = env.worker().via(&proxy).start();
    put_orders(&env, "before", 3).await;
    env.wait_lake_keys(6).await;

    // A slow object is mid-download when the endpoint goes silent for 25 s: connections
    // are accepted and never answered, and those open now stay silent afterwards.
    start_a_slow_download(&env, &proxy).await;
    proxy.stall();
    put_orders(&env, "after", 3).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(worker.is_running(), "the worker survives the stall");
    proxy.throttle_downstream(0);
    proxy.end_stall();

    let keys = env.wait_lake_keys(14).await;
    env.wait_drained().await;
    assert_eq!(keys.len(), 14, "7 objects × 2 partitions: {keys:#?}");
    assert_eq!(env.depth(&env.dlq_url).await, 0, "nothing dead-lettered");
    let objects = [
        "before-0", "before-1", "before-2", "during", "after-0", "after-1", "after-2",
    ];
    for name in objects {
        let key = format!("orders/{name}.csv");
        let ledger = env.ledger(&key).await;
        assert_eq!(ledger.len(), 1, "{key}: one version");
        assert_eq!(ledger[0].status, Some(Status::Done), "{key}: {ledger:?}");
        assert_eq!(
            events_for(&worker, "object converted", &key),
            1,
            "{key} converted and written exactly once"
        );
    }
    assert!(worker.is_running(), "the worker is still up");
    // The timed-out calls are named in the log.
    let timed_out: Vec<String> = worker
        .events("AWS call timed out; the SDK retries on a new connection while attempts remain")
        .iter()
        .filter_map(|event| event["fields"]["call"].as_str().map(str::to_owned))
        .collect();
    assert!(
        timed_out.iter().any(|call| call == "SQS ReceiveMessage"),
        "{timed_out:?}"
    );
    assert!(
        timed_out.iter().any(|call| !call.starts_with("SQS ")),
        "S3 or DynamoDB calls timed out too: {timed_out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_queue_with_their_reason() {
    let env = TestEnv::builder("poison")
        .env("LAKEWORKER__QUEUE__MAX_ATTEMPTS", "2")
        .env("LAKEWORKER__QUEUE__RETRY_BASE_SECONDS", "1")
        .quiet()
        .start()
        .await;
    let worker = env.start_worker();
    let misc = env.put("misc/unknown.csv", b"a,b\n1,2\n").await;
    let bad_rows = env
        .put(
            "users/bad.csv",
            b"user_id,age,signup_date\nu-1,30,2024/01/01\nu-2,old,2024/01/01\n,5,2024/01/01\n",
        )
        .await;
    let cases = [
        (
            "this is not json".to_owned(),
            "permanent",
            "bad message body: body is not JSON",
        ),
        (
            serde_json::json!({"hello": "world"}).to_string(),
            "permanent",
            "body is not a known message shape (keys: hello)",
        ),
        (
            s3_event(&env.landing, "misc/unknown.csv", &misc, NOW).body(),
            "permanent",
            "misc/unknown.csv: no dataset matches the key",
        ),
        (
            s3_event("some-other-bucket", "users/a.csv", "e", NOW).body(),
            "permanent",
            "bucket \"some-other-bucket\" is not the landing bucket",
        ),
        (
            s3_event(&env.landing, "users/missing.csv", "e", NOW).body(),
            "permanent",
            "gave up after 2 attempts: object s3://",
        ),
        (
            serde_json::json!({"dataset": "nope", "records": []}).to_string(),
            "permanent",
            "inline records name dataset \"nope\", which is not configured",
        ),
    ];
    for (body, _, _) in &cases {
        env.send(body).await;
    }
    // A file with too many bad rows is an answered question, not a poison message.
    env.send(&s3_event(&env.landing, "users/bad.csv", &bad_rows, NOW).body())
        .await;
    wait_for("every message in the DLQ", WAIT, || async {
        env.depth(&env.dlq_url).await == cases.len() as u64
    })
    .await;
    env.wait_drained().await;
    let letters = env.dead_letters_with_attributes().await;
    assert_eq!(letters.len(), cases.len());
    for (body, class, reason) in &cases {
        let (_, attributes) = letters
            .iter()
            .find(|(b, _)| b == body)
            .unwrap_or_else(|| panic!("{body} not dead-lettered unchanged"));
        assert_eq!(attributes["lakeworker.error_class"], *class, "{body}");
        assert!(
            attributes["lakeworker.error"].contains(reason),
            "{body}: {attributes:?}"
        );
        assert_eq!(attributes["lakeworker.source_queue"], env.queue_url);
        assert!(
            attributes["lakeworker.failed_at"].starts_with("20"),
            "{attributes:?}"
        );
        assert!(!attributes["lakeworker.message_id"].is_empty());
        let attempts: u32 = attributes["lakeworker.attempts"].parse().unwrap();
        assert!(attempts >= 1);
    }
    assert!(env.users().await.is_empty());
    let bad = &env.ledger("users/bad.csv").await[0];
    assert_eq!(bad.status, Some(Status::Rejected));
    assert!(
        bad.last_error
            .as_deref()
            .unwrap()
            .starts_with("2 of 3 rows are invalid"),
        "{bad:?}"
    );
    let quarantined = env.lake_keys().await;
    assert_eq!(
        quarantined.len(),
        2,
        "the file and its report: {quarantined:?}"
    );
    assert!(
        quarantined[0].ends_with("/bad.csv") && quarantined[1].ends_with("/bad.csv.error.json")
    );
    let dead_lettered = worker.events("message failed; dead-lettering it");
    assert_eq!(dead_lettered.len(), cases.len(), "{dead_lettered:#?}");
    assert!(
        dead_lettered
            .iter()
            .all(|event| event["fields"]["error_class"] == "permanent"),
        "{dead_lettered:#?}"
    );

    // `status --failed` lists what failed, newest first.
    let out = env.cli(&["status", "--config", env.config_str(), "--failed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&format!("s3://{}/users/bad.csv", env.landing)),
        "{listed}"
    );
    assert!(listed.contains("users/missing.csv"), "{listed}");
    let one = env.cli(&[
        "status",
        "--config",
        env.config_str(),
        "--failed",
        "--limit",
        "1",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&one.stdout)
            .matches("attempt(s)")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_brings_dead_letters_back_once_fixed() {
    let env = TestEnv::builder("redrive")
        .env("LAKEWORKER__QUEUE__MAX_ATTEMPTS", "1")
        .env("LAKEWORKER__QUEUE__RETRY_BASE_SECONDS", "1")
        .quiet()
        .start()
        .await;
    let _worker = env.start_worker();
    // The events arrive before their objects (say, a replica lagging behind).
    let body = users_csv(20, 20);
    let keys = ["users/late-0.csv", "users/late-1.csv", "users/late-2.csv"];
    let probe = env.put("users/probe.csv", &body).await;
    for key in keys {
        env.send(&s3_event(&env.landing, key, &probe, NOW).body())
            .await;
    }
    wait_for("the dead letters", WAIT, || async {
        env.depth(&env.dlq_url).await == 3
    })
    .await;

    let dry = env.cli(&[
        "redrive",
        "--config",
        env.config_str(),
        "--dry-run",
        "--max",
        "5",
    ]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let listed = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        listed.matches("error_class: permanent").count(),
        3,
        "{listed}"
    );
    assert!(listed.contains("does not exist"), "{listed}");
    assert!(
        listed.contains("3 message(s) in the dead-letter queue (dry run: nothing moved)"),
        "{listed}"
    );
    assert_eq!(env.depth(&env.dlq_url).await, 3, "a dry run moves nothing");

    // The cause is fixed: the objects land (same content, so the same ETag).
    for key in keys {
        assert_eq!(env.put(key, &body).await, probe);
    }
    let redrive = |max: Option<&str>| {
        let mut args = vec!["redrive", "--config", env.config_str()];
        args.extend(max.map(|max| ["--max", max]).into_iter().flatten());
        let out = env.cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(redrive(Some("2")).starts_with("moved 2 message(s)"));
    assert_eq!(env.depth(&env.dlq_url).await, 1, "--max 2 left one behind");
    assert!(redrive(None).starts_with("moved 1 message(s)"));
    for key in keys {
        wait_done(&env, key).await;
    }
    env.wait_drained().await;
    assert_eq!(env.depth(&env.dlq_url).await, 0);
    assert_eq!(env.users().await.len(), 20);

    let out = env.cli(&[
        "status",
        "--config",
        env.config_str(),
        &format!("s3://{}/{}", env.landing, keys[0]),
    ]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(": done, 2 attempt(s)"), "{shown}");
    assert!(shown.contains("rows: 20 in, 20 written, 0 bad"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_lake_bucket_is_retried_before_it_is_dead_lettered() {
    let env = TestEnv::builder("nolake")
        .env("LAKEWORKER__QUEUE__MAX_ATTEMPTS", "3")
        .env("LAKEWORKER__QUEUE__RETRY_BASE_SECONDS", "1")
        .quiet()
        .start()
        .await;
    // A deployment mistake, not the message's fault: every attempt fails the same way,
    // but only the attempts decide when it stops.
    let missing = format!("{}-gone", env.lake);
    let worker = env
        .worker()
        .env("LAKEWORKER__LAKE__BUCKET", missing.as_str())
        .start();
    env.put_and_announce("orders/a.csv", &orders_csv(10)).await;
    wait_for("the dead letter", WAIT, || async {
        env.depth(&env.dlq_url).await == 1
    })
    .await;
    let letters = env.dead_letters_with_attributes().await;
    let attributes = &letters[0].1;
    assert_eq!(attributes["lakeworker.error_class"], "transient");
    assert_eq!(attributes["lakeworker.attempts"], "3");
    assert!(
        attributes["lakeworker.error"].contains("NoSuchBucket")
            || attributes["lakeworker.error"].contains("does not exist"),
        "{attributes:?}"
    );
    assert_eq!(
        worker.events("message failed; retrying later").len(),
        2,
        "retried after the first and second attempts"
    );
    assert_eq!(worker.events("message failed; dead-lettering it").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_time_while_every_core_converts() {
    let env = TestEnv::builder("busy")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "2")
        // One row per Arrow batch: a small file keeps every core converting for seconds.
        .env("LAKEWORKER__WORKER__BATCH_ROWS", "1")
        .quiet()
        .start()
        .await;
    let worker = env.start_worker();
    // The conversion must outlast three visibility windows however fast the machine or
    // the converter is: start at 200k rows and, while a file converts in under 6 s, send
    // a bigger one, sized from the time the last took.
    let (mut rows, mut lake_keys, mut took) = (200_000_usize, 0, 0.0);
    for attempt in 1..=4 {
        let key = format!("orders/busy-{attempt}.csv");
        env.put_and_announce(&key, &orders_csv(rows)).await;
        lake_keys += 2; // one object for each of the two `ordered_at` days
        env.wait_lake_keys(lake_keys).await;
        env.wait_drained().await;
        let record = &env.ledger(&key).await[0];
        assert_eq!((record.status, record.attempts), (Some(Status::Done), 1));
        took = seconds_between(&record.started_at, &record.finished_at);
        if took >= 6.0 {
            break;
        }
        rows = (rows as f64 * 9.0 / took.max(0.5)) as usize;
    }
    assert!(
        took >= 6.0,
        "the scenario needs a conversion of 3 visibility windows; the last took {took:.1} s"
    );
    assert!(
        !a_second_attempt(&worker),
        "the message was never received twice"
    );
    let extensions = worker.events("visibility extended");
    assert!(extensions.len() >= 3, "{extensions:?}");
    // Each extension is due a margin (half the 2 s window) before the deadline; later
    // than that, the message would have become visible to another consumer.
    for extension in &extensions {
        let late = extension["fields"]["lateness_ms"].as_u64().unwrap();
        assert!(late < 1000, "an extension {late} ms late: {extensions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_lake_and_table_is_finished_by_the_next_worker() {
    let env = TestEnv::builder("crash2")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "2")
        .quiet()
        .start()
        .await;
    let proxy = Proxy::start(&endpoint()).await;
    // Slow requests: the lake parts go up in a few seconds, then the DynamoDB writes
    // (1200 items, about 4 kB a call) crawl.
    proxy.throttle_upstream(8_000);
    let first = env.worker().via(&proxy).start();
    let key = "users/crash-late.csv";
    let etag = env.put_and_announce(key, &users_csv(3000, 1200)).await;
    env.wait_lake_keys(3).await;
    wait_for("the first rows in DynamoDB", WAIT, || async {
        !env.users().await.is_empty()
    })
    .await;
    first.kill();
    let partial = env.users().await.len();
    assert!(partial < 1200, "killed mid-upsert, {partial} rows in");
    assert_eq!(
        env.ledger(key).await[0].status,
        Some(Status::Processing),
        "killed before the ledger said done"
    );

    let second = env.start_worker();
    assert_finished_once(&env, key, &etag, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_settings_change_leaves_no_stale_parts() {
    let env = TestEnv::builder("stale")
        .env("LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "3")
        .env("LAKEWORKER__LAKE__RAW_PREFIX", "raw")
        .quiet()
        .start()
        .await;
    let proxy = Proxy::start(&endpoint()).await;
    // The first worker's raw-zone copy (the step after the lake upload) never returns,
    // so it is killed with its parts uploaded and the ledger still `processing`.
    proxy.silence_requests_containing(Some(b"x-amz-copy-source"));
    let first = env
        .worker()
        .via(&proxy)
        .env("LAKEWORKER__LAKE__TARGET_FILE_SIZE", "1MiB")
        .env("LAKEWORKER__LAKE__ROW_GROUP_SIZE", "20000")
        .start();
    let key = "orders/settings.csv";
    let rows = 100_000;
    let etag = env
        .put_and_announce(key, &incompressible_orders(rows))
        .await;
    // Uploaded when at least two parts are there and a second later nothing changed.
    let deadline = Instant::now() + WAIT;
    let mut parts = Vec::new();
    loop {
        let now = env.lake_keys().await;
        if now.len() >= 2 && now == parts {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first worker uploaded {now:?}"
        );
        parts = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(env.ledger(key).await[0].status, Some(Status::Processing));
    first.kill();

    // A deploy with the default target_file_size (128 MiB): the retry makes one part.
    let second = env.start_worker();
    wait_done(&env, key).await;
    env.wait_drained().await;
    let id = part_id(&env.landing, key, &etag);
    let curated: Vec<String> = env
        .lake_keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with("curated/"))
        .collect();
    assert_eq!(
        curated,
        [format!(
            "curated/orders/ordered_at_date=2024-05-01/part-{id}.parquet"
        )],
        "the first attempt's extra parts {parts:?} are gone"
    );
    let seen = read_with_pyarrow(&env.download_lake("curated/orders").await);
    assert_eq!(
        seen["rows"].as_array().unwrap().len() as u64,
        rows,
        "every row once"
    );
    assert!(!second
        .events("removed an output of an earlier attempt that this one did not rewrite")
        .is_empty());
    let record = &env.ledger(key).await[0];
    assert_eq!(record.status, Some(Status::Done));
    assert!(record.pending_outputs.is_empty());
    assert_eq!(
        record.outputs.len(),
        2,
        "the part and the raw copy: {record:?}"
    );
}
