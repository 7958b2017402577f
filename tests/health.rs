//! The health endpoint of a running worker and `lakeworker healthcheck`: healthy while
//! the pollers run, ready only after a receive succeeded (an emulator outage keeps it
//! unready), unreachable once the worker stopped; a port already taken stops start-up.
//! Also: logs off a terminal are JSON by default (CloudWatch reads them line by line).

mod common;

use common::*;

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

/// `lakeworker healthcheck --url URL`: (exit 0?, stdout + stderr).
fn healthcheck(url: &str) -> (bool, String) {
    let out = lakeworker(&["healthcheck", "--url", url, "--timeout", "2"], &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_while_polling_ready_after_a_receive_gone_after_stop() {
    let env = TestEnv::builder("health").quiet().start().await;
    let proxy = proxy::Proxy::start(&endpoint()).await;
    proxy.refuse().await;
    let address = free_address();
    let worker = env
        .worker()
        .via(&proxy)
        .env("LAKEWORKER__HEALTH__LISTEN", &address)
        .env("LAKEWORKER__LOG__FORMAT", "auto")
        .start();
    let log_path = worker.log_path();
    let healthz = format!("http://{address}/healthz");
    let readyz = format!("http://{address}/readyz");

    // The emulator is unreachable: alive, but not ready.
    wait_for("healthz to answer 200", WAIT, || async {
        healthcheck(&healthz).0
    })
    .await;
    let (ready, text) = healthcheck(&readyz);
    assert!(!ready, "{text}");
    assert!(text.contains("unhealthy (503)"), "{text}");
    assert!(text.contains("\"ready\":false"), "{text}");

    proxy.restore().await;
    wait_for("readyz to answer 200", WAIT, || async {
        healthcheck(&readyz).0
    })
    .await;
    let (healthy, text) = healthcheck(&healthz);
    assert!(healthy, "{text}");
    let body: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON body");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["pollers"], 2);
    assert_eq!(body["pollers_alive"], 2);
    assert_eq!(body["in_flight"], 0);
    assert!(body["last_receive"].is_string(), "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    assert!(worker.terminate(WAIT).success());
    // Logs to a file (not a terminal) with the default `auto` format: JSON, line by line.
    let log = std::fs::read_to_string(&log_path).expect("worker log");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() > 3, "{log}");
    for line in &lines {
        let event: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(event["fields"]["message"].is_string(), "{line}");
    }
    let (healthy, text) = healthcheck(&healthz);
    assert!(!healthy, "{text}");
    assert!(text.contains("unhealthy:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_503_while_receives_stall_past_the_bound() {
    let env = TestEnv::builder("stallhealth").quiet().start().await;
    let proxy = proxy::Proxy::start(&endpoint()).await;
    let address = free_address();
    let mut worker = env
        .worker()
        .via(&proxy)
        .env("LAKEWORKER__HEALTH__LISTEN", &address)
        .start();
    let healthz = format!("http://{address}/healthz");
    let readyz = format!("http://{address}/readyz");
    wait_for("readyz to answer 200", WAIT, || async {
        healthcheck(&readyz).0
    })
    .await;
    assert!(healthcheck(&healthz).0);

    // Long polls of 1 s with the default 5 s call deadline: the documented bound is
    // 3 × (1 s + 5 s) = 18 s without a completed receive.
    proxy.stall();
    let stalled = std::time::Instant::now();
    wait_for("healthz to answer 503 during the stall", WAIT, || async {
        !healthcheck(&healthz).0
    })
    .await;
    let unhealthy_after = stalled.elapsed();
    let (_, text) = healthcheck(&healthz);
    let json = text.find('{').map_or("", |at| text[at..].trim());
    let body: serde_json::Value = serde_json::from_str(json).expect("JSON body");
    assert_eq!(body["status"], "receive stalled", "{text}");
    assert_eq!(body["stall_bound_s"], 18, "{text}");
    assert_eq!(
        body["pollers_alive"], 2,
        "the pollers are alive, only stuck"
    );
    // The clock of a poll starts when it is sent, at most a 1 s poll before the stall.
    assert!(
        unhealthy_after >= std::time::Duration::from_secs(17),
        "not before the bound: {unhealthy_after:?}"
    );

    proxy.end_stall();
    wait_for("healthz to answer 200 after the stall", WAIT, || async {
        healthcheck(&healthz).0
    })
    .await;
    assert!(worker.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_health_port_stops_the_worker_with_a_clear_error() {
    let env = TestEnv::builder("healthport").quiet().start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let mut worker = env
        .worker()
        .env("LAKEWORKER__HEALTH__LISTEN", &address)
        .start();
    wait_for("the worker to exit", WAIT, || {
        let exited = worker.exited().is_some();
        async move { exited }
    })
    .await;
    assert_eq!(worker.exited().and_then(|s| s.code()), Some(1));
    let log = worker.log();
    // The error that stops start-up is printed as text (not a log event) on stderr.
    let error = format!("error: health endpoint on {address}: ");
    assert!(log.lines().any(|line| line.starts_with(&error)), "{log}");
}

#[test]
fn healthcheck_fails_without_a_worker_or_with_a_bad_url() {
    let (healthy, text) = healthcheck(&format!("http://{}/healthz", free_address()));
    assert!(!healthy);
    assert!(text.contains("unhealthy:"), "{text}");
    let (healthy, text) = healthcheck("https://example.com/healthz");
    assert!(!healthy);
    assert!(
        text.contains("is not an http://host:port/path URL"),
        "{text}"
    );
}
