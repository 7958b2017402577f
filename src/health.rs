//! Health for container orchestrators: the pool's liveness and readiness as shared
//! counters, a tiny HTTP endpoint serving them (`GET /healthz`, `GET /readyz`), and the
//! client behind `lakeworker healthcheck`, so the image needs no curl.
//!
//! - `/healthz`: 200 while every poller loop is alive, none has gone longer than the
//!   stall bound ([`stall_bound`]) without completing a ReceiveMessage while it had room
//!   for messages, and the process is not shutting down; else 503, so the orchestrator
//!   replaces a task that is stuck for any reason.
//! - `/readyz`: 200 once a ReceiveMessage call has succeeded, else 503.
//!
//! Both answer a small JSON body: status, pollers alive of expected, messages in flight,
//! the last successful receive and the version.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Longest request head the endpoint reads.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a poller may go without completing a ReceiveMessage, while it has room for
/// messages, before the process reports itself unhealthy: three long polls, each with its
/// full per-attempt deadline (`wait_seconds` + `aws.call_timeout_seconds`), which is what
/// the SDK's three attempts of one stalled receive take. 75 s with the defaults.
pub fn stall_bound(wait: Duration, call_timeout: Duration) -> Duration {
    (wait + call_timeout) * 3
}

/// The pool's state, updated by pollers and jobs, read by the endpoint.
#[derive(Debug)]
pub struct Health {
    pollers: usize,
    alive: AtomicUsize,
    in_flight: AtomicUsize,
    /// Milliseconds since the epoch of the last successful receive; 0 = none yet.
    last_receive_ms: AtomicU64,
    stopping: AtomicBool,
    /// Per poller: since when (ms since the epoch) it has tried to receive without success;
    /// 0 while it is not trying (it just received, or waits for a free slot).
    trying_since_ms: Vec<AtomicU64>,
    stall_bound: Duration,
}

/// What the endpoint reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub healthy: bool,
    pub ready: bool,
    pub body: String,
}

impl Health {
    /// State for a pool of `pollers` loops, none started yet; a poller that tries to
    /// receive for longer than `stall_bound` without success makes the process unhealthy.
    pub fn new(pollers: usize, stall_bound: Duration) -> Arc<Health> {
        Arc::new(Health {
            pollers,
            alive: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            last_receive_ms: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            trying_since_ms: (0..pollers).map(|_| AtomicU64::new(0)).collect(),
            stall_bound,
        })
    }

    /// Counts a poller loop as alive until the guard drops (when the loop ends, returns
    /// or panics).
    pub fn poller(self: &Arc<Self>) -> Alive {
        self.alive.fetch_add(1, Ordering::SeqCst);
        Alive(Guard::Poller(self.clone()))
    }

    /// Counts a message in flight until the guard drops.
    pub fn job(self: &Arc<Self>) -> Alive {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Alive(Guard::Job(self.clone()))
    }

    /// Poller `poller` is about to call ReceiveMessage (or call it again after a
    /// failure): its stall clock starts unless it is already running.
    pub fn receiving(&self, poller: usize) {
        if let Some(since) = self.trying_since_ms.get(poller) {
            let _ = since.compare_exchange(0, now_ms(), Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// Poller `poller` waits for a free slot: waiting for capacity is not a stall.
    pub fn waiting(&self, poller: usize) {
        if let Some(since) = self.trying_since_ms.get(poller) {
            since.store(0, Ordering::SeqCst);
        }
    }

    /// Records a successful ReceiveMessage of poller `poller`.
    pub fn received(&self, poller: usize) {
        self.last_receive_ms.store(now_ms(), Ordering::SeqCst);
        self.waiting(poller);
    }

    /// The process is shutting down: no longer healthy.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn report(&self) -> Report {
        self.report_at(now_ms())
    }

    /// The report as of `now` (ms since the epoch).
    fn report_at(&self, now: u64) -> Report {
        let alive = self.alive.load(Ordering::SeqCst);
        let stopping = self.stopping.load(Ordering::SeqCst);
        let last = self.last_receive_ms.load(Ordering::SeqCst);
        let bound = self.stall_bound.as_millis() as u64;
        let stalled = self
            .trying_since_ms
            .iter()
            .map(|since| since.load(Ordering::SeqCst))
            .filter(|&since| since > 0 && now.saturating_sub(since) > bound)
            .count();
        let healthy = alive == self.pollers && stalled == 0 && !stopping;
        let ready = last > 0;
        let last_receive = (last > 0)
            .then(|| chrono::DateTime::from_timestamp_millis(last as i64))
            .flatten()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let status = if stopping {
            "stopping"
        } else if alive < self.pollers {
            "poller down"
        } else if stalled > 0 {
            "receive stalled"
        } else {
            "ok"
        };
        let body = serde_json::json!({
            "status": status,
            "ready": ready,
            "pollers": self.pollers,
            "pollers_alive": alive,
            "pollers_stalled": stalled,
            "stall_bound_s": self.stall_bound.as_secs(),
            "in_flight": self.in_flight.load(Ordering::SeqCst),
            "last_receive": last_receive,
            "version": env!("CARGO_PKG_VERSION"),
        })
        .to_string();
        Report {
            healthy,
            ready,
            body,
        }
    }
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(1) as u64
}

enum Guard {
    Poller(Arc<Health>),
    Job(Arc<Health>),
}

/// Keeps a poller or a job counted; see [`Health::poller`] and [`Health::job`].
pub struct Alive(Guard);

impl Drop for Alive {
    fn drop(&mut self) {
        match &self.0 {
            Guard::Poller(h) => h.alive.fetch_sub(1, Ordering::SeqCst),
            Guard::Job(h) => h.in_flight.fetch_sub(1, Ordering::SeqCst),
        };
    }
}

/// The response to a request line's path: (status code, body).
pub fn respond(health: &Health, method: &str, path: &str) -> (u16, String) {
    let report = health.report();
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET" | "HEAD", "/healthz") => (if report.healthy { 200 } else { 503 }, report.body),
        ("GET" | "HEAD", "/readyz") => (if report.ready { 200 } else { 503 }, report.body),
        ("GET" | "HEAD", _) => (404, r#"{"status":"not found"}"#.into()),
        _ => (405, r#"{"status":"method not allowed"}"#.into()),
    }
}

/// Serves the endpoint on `listener` until `shutdown` is cancelled. A bad or slow client
/// only ends its own connection.
pub async fn serve(listener: TcpListener, health: Arc<Health>, shutdown: CancellationToken) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "health endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let health = health.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let line = String::from_utf8_lossy(&head);
            let mut words = line.lines().next().unwrap_or("").split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let (code, body) = respond(&health, method, path);
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                _ => "Service Unavailable",
            };
            let body = if method == "HEAD" { "" } else { body.as_str() };
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Why `lakeworker healthcheck` failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0:?} is not an http://host:port/path URL")]
    Url(String),
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: not an HTTP response")]
    Response { url: String },
}

/// GETs `url` (plain `http://host:port/path`) within `timeout`; returns the status code and
/// body.
pub fn check(url: &str, timeout: Duration) -> Result<(u16, String), CheckError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| CheckError::Url(url.into()))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(CheckError::Url(url.into()));
    }
    let io = |source| CheckError::Io {
        url: url.into(),
        source,
    };
    let address = authority
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| CheckError::Url(url.into()))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&response);
    let code = text
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| CheckError::Response { url: url.into() })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_needs_every_poller_and_ready_needs_a_receive() {
        let health = Health::new(2, Duration::from_secs(60));
        let first = health.poller();
        assert!(!health.report().healthy, "one of two pollers");
        let second = health.poller();
        let report = health.report();
        assert!(report.healthy && !report.ready);
        assert_eq!(respond(&health, "GET", "/healthz").0, 200);
        assert_eq!(respond(&health, "GET", "/readyz").0, 503);

        health.received(0);
        let job = health.job();
        let (code, body) = respond(&health, "GET", "/readyz?verbose");
        assert_eq!(code, 200);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["in_flight"], 1);
        assert_eq!(body["pollers_alive"], 2);
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        assert!(body["last_receive"].as_str().unwrap().ends_with('Z'));
        drop(job);

        drop(second);
        let (code, body) = respond(&health, "GET", "/healthz");
        assert_eq!(code, 503);
        assert!(body.contains("poller down"), "{body}");
        drop(first);

        let health = Health::new(1, Duration::from_secs(60));
        let _poller = health.poller();
        health.stopping();
        let (code, body) = respond(&health, "GET", "/healthz");
        assert_eq!((code, body.contains("stopping")), (503, true));
        assert_eq!(respond(&health, "GET", "/nope").0, 404);
        assert_eq!(respond(&health, "POST", "/healthz").0, 405);
    }

    #[test]
    fn a_poller_trying_past_the_bound_is_unhealthy_until_it_receives() {
        let health = Health::new(2, Duration::from_secs(10));
        let _pollers = (health.poller(), health.poller());
        let start = now_ms();
        health.receiving(0);
        health.receiving(1);
        assert!(health.report_at(start + 10_000).healthy, "at the bound");
        // Failed receives do not restart the clock.
        health.receiving(0);
        let late = health.report_at(start + 10_500);
        assert!(!late.healthy);
        let body: serde_json::Value = serde_json::from_str(&late.body).unwrap();
        assert_eq!(body["status"], "receive stalled");
        assert_eq!(body["pollers_stalled"], 2);
        assert_eq!(body["stall_bound_s"], 10);
        // Poller 0 received; poller 1 now waits for a free slot: neither is stalled.
        health.received(0);
        health.waiting(1);
        assert!(health.report_at(start + 60_000).healthy);
        health.receiving(1);
        assert!(health.report_at(now_ms() + 9_000).healthy);
        assert!(!health.report_at(now_ms() + 11_000).healthy);
        assert!(
            stall_bound(Duration::from_secs(20), Duration::from_secs(5)) == Duration::from_secs(75)
        );
    }

    #[tokio::test]
    async fn the_endpoint_answers_the_healthcheck_client() {
        let health = Health::new(1, Duration::from_secs(60));
        let _poller = health.poller();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, health.clone(), shutdown.clone()));
        let url = format!("http://{address}/healthz");
        let (code, body) = tokio::task::spawn_blocking(move || check(&url, Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("\"status\":\"ok\""), "{body}");
        let url = format!("http://{address}/readyz");
        let (code, _) = tokio::task::spawn_blocking(move || check(&url, Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, 503);
        shutdown.cancel();
        server.await.unwrap();
    }

    #[test]
    fn the_client_refuses_bad_urls_and_reports_refused_connections() {
        for bad in [
            "https://x:1/healthz",
            "http://",
            "http://nohost/healthz",
            "healthz",
        ] {
            assert!(
                matches!(check(bad, Duration::from_secs(1)), Err(CheckError::Url(_))),
                "{bad}"
            );
        }
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = free.local_addr().unwrap();
        drop(free);
        let err = check(&format!("http://{address}/healthz"), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, CheckError::Io { .. }), "{err}");
    }
}
