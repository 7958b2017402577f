//! The fault-injection proxy of `common::proxy` against small upstream servers started
//! here (no emulator needed): pass-through, outage and recovery on the same port,
//! throttling in both directions, stalls (black holes), silenced requests and lost answers.

mod common;

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound of every single wait in these tests.
const BOUND: Duration = Duration::from_secs(30);

/// Awaits `future`, panicking with `what` if it takes longer than [`BOUND`].
async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {BOUND:?}: {what}"))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// An upstream that echoes every connection back, then half-closes after the client does.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
            });
        }
    });
    addr
}

/// An upstream that sends `data` on every connection, then closes it.
async fn source_server(data: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let data = std::sync::Arc::new(data);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let data = std::sync::Arc::clone(&data);
            tokio::spawn(async move {
                if socket.write_all(&data).await.is_ok() {
                    let _ = socket.shutdown().await;
                }
            });
        }
    });
    addr
}

/// The proxy's `host:port`.
fn proxy_addr(proxy: &Proxy) -> String {
    proxy.url().strip_prefix("http://").unwrap().to_string()
}

async fn connect(proxy: &Proxy) -> std::io::Result<TcpStream> {
    bounded(
        "connect to the proxy",
        TcpStream::connect(proxy_addr(proxy)),
    )
    .await
}

/// Sends `message` and expects it back.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    bounded("echo round trip", async {
        stream.write_all(message).await.unwrap();
        let mut back = vec![0; message.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, message);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_pass_through_both_ways() {
    let upstream = echo_server().await;
    let proxy = Proxy::start(&format!("http://{upstream}")).await;
    assert!(proxy.url().starts_with("http://127.0.0.1:"));

    // Several concurrent connections, each a MiB each way, then a half-close that must
    // reach the upstream (whose own half-close then reaches the client).
    let mut transfers = Vec::new();
    for seed in 0..3usize {
        let stream = connect(&proxy).await.expect("connect through the proxy");
        transfers.push(tokio::spawn(async move {
            let sent: Vec<u8> = pattern(1 << 20).into_iter().skip(seed).collect();
            let (mut read, mut write) = stream.into_split();
            let to_send = sent.clone();
            let writer = tokio::spawn(async move {
                write.write_all(&to_send).await.unwrap();
                write.shutdown().await.unwrap();
            });
            let mut received = Vec::new();
            read.read_to_end(&mut received).await.unwrap();
            writer.await.unwrap();
            assert!(received == sent, "connection {seed}: echoed bytes differ");
        }));
    }
    for transfer in transfers {
        bounded("a transfer through the proxy", transfer)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_cuts_and_refuses_until_restore_on_the_same_port() {
    let upstream = echo_server().await;
    let proxy = Proxy::start(&upstream.to_string()).await;
    let url = proxy.url();

    let mut open = connect(&proxy).await.unwrap();
    round_trip(&mut open, b"before").await;

    // Several outages in a row: re-binding must work with cut connections in TIME_WAIT.
    for round in 0..3 {
        proxy.refuse().await;
        proxy.refuse().await; // idempotent

        let mut buf = [0u8; 16];
        match bounded("read on a cut connection", open.read(&mut buf)).await {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("round {round}: cut connection still delivered {n} bytes"),
        }
        let refused = connect(&proxy).await.expect_err("connect during an outage");
        assert_eq!(
            refused.kind(),
            ErrorKind::ConnectionRefused,
            "round {round}: {refused}"
        );

        bounded("restore", proxy.restore()).await;
        proxy.restore().await; // idempotent
        assert_eq!(proxy.url(), url);
        open = connect(&proxy).await.expect("connect after restore");
        round_trip(&mut open, format!("after outage {round}").as_bytes()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_transfer_is_intact_and_the_throttle_can_be_lifted() {
    let data = pattern(300_000);
    let upstream = source_server(data.clone()).await;
    let proxy = Proxy::start(&upstream.to_string()).await;
    proxy.throttle_downstream(100_000);

    let mut stream = connect(&proxy).await.unwrap();

    let mut received = Vec::new();
    let mut buf = vec![0u8; 8192];
    bounded("the throttled first 50 kB", async {
        while received.len() < 50_000 {
            let n = stream.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "stream ended after {} bytes", received.len());
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert_eq!(received[..], data[..received.len()]);

    // Lifting the throttle mid-transfer lets the same connection finish.
    proxy.throttle_downstream(0);
    bounded("the rest after lifting the throttle", async {
        stream.read_to_end(&mut received).await.unwrap();
    })
    .await;
    assert!(
        received == data,
        "received {} bytes, not the 300000 sent",
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_can_be_throttled_too() {
    let proxy = Proxy::start(&echo_server().await.to_string()).await;
    proxy.throttle_upstream(100_000);
    let mut stream = connect(&proxy).await.unwrap();
    let data = pattern(50_000);
    round_trip(&mut stream, &data).await;
    proxy.throttle_upstream(0);
    round_trip(&mut stream, b"unthrottled").await;
}

/// Sends `message` and expects silence: no byte back and no close within `quiet`.
async fn silent(stream: &mut TcpStream, message: &[u8], quiet: Duration) {
    bounded("write to a silent connection", stream.write_all(message))
        .await
        .expect("a silent connection still takes the request");
    let mut buf = [0u8; 64];
    match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
        Err(_) => {}
        Ok(Ok(0)) => panic!("the silent connection was closed"),
        Ok(Ok(n)) => panic!("the silent connection answered {n} bytes"),
        Ok(Err(e)) => panic!("the silent connection failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_silences_open_and_new_connections_and_only_new_ones_recover() {
    let upstream = echo_server().await;
    let proxy = Proxy::start(&upstream.to_string()).await;
    let quiet = Duration::from_millis(500);
    let mut open = connect(&proxy).await.unwrap();
    round_trip(&mut open, b"before").await;

    proxy.stall();
    proxy.stall(); // idempotent
    silent(&mut open, b"during", quiet).await;
    // Accepted, read, never answered.
    let mut during = connect(&proxy).await.expect("connect during a stall");
    silent(&mut during, &pattern(100_000), quiet).await;

    proxy.end_stall();
    let mut after = connect(&proxy).await.expect("connect after the stall");
    round_trip(&mut after, b"after").await;
    silent(&mut open, b"still", quiet).await;
    silent(&mut during, b"still", quiet).await;
    // A client giving up on a silent connection closes it; the proxy lets it go.
    drop(open);
    round_trip(&mut after, b"again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_a_pattern_are_silenced_and_others_pass() {
    let upstream = echo_server().await;
    let proxy = Proxy::start(&upstream.to_string()).await;
    let quiet = Duration::from_millis(500);
    let mut before = connect(&proxy).await.unwrap();
    proxy.silence_requests_containing(Some(b"X-Amz-Target: AmazonAthena"));
    round_trip(&mut before, b"X-Amz-Target: DynamoDB_20120810.GetItem").await;
    silent(
        &mut before,
        b"POST / HTTP/1.1\r\nX-Amz-Target: AmazonAthena.StartQueryExecution\r\n\r\n",
        quiet,
    )
    .await;
    // That connection stays silent, whatever comes next; others are unaffected.
    silent(&mut before, b"X-Amz-Target: DynamoDB", quiet).await;
    let mut other = connect(&proxy).await.unwrap();
    round_trip(&mut other, b"X-Amz-Target: AmazonSQS.ReceiveMessage").await;

    proxy.silence_requests_containing(None);
    let mut later = connect(&proxy).await.unwrap();
    round_trip(&mut later, b"X-Amz-Target: AmazonAthena.GetQueryExecution").await;
}

/// An upstream that records every byte it receives and echoes it back.
async fn recording_echo_server() -> (SocketAddr, Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_reaches_the_upstream_but_never_the_client() {
    let (upstream, seen) = recording_echo_server().await;
    let proxy = Proxy::start(&upstream.to_string()).await;
    let quiet = Duration::from_millis(500);
    let mut before = connect(&proxy).await.unwrap();
    proxy.lose_answers_to_requests_containing(Some(b"AWSGlue.UpdateTable"));
    round_trip(&mut before, b"X-Amz-Target: AWSGlue.GetTable").await;
    let request = b"POST / HTTP/1.1\r\nX-Amz-Target: AWSGlue.UpdateTable\r\n\r\n";
    silent(&mut before, request, quiet).await;
    // The upstream got the request whole; the client got nothing, then or later.
    let received = seen.lock().unwrap().clone();
    assert!(
        received.windows(request.len()).any(|w| w == request),
        "the request went through"
    );
    silent(&mut before, b"X-Amz-Target: AWSGlue.GetTable", quiet).await;
    let mut other = connect(&proxy).await.unwrap();
    round_trip(&mut other, b"X-Amz-Target: AWSGlue.GetTable").await;

    proxy.lose_answers_to_requests_containing(None);
    let mut later = connect(&proxy).await.unwrap();
    round_trip(&mut later, b"X-Amz-Target: AWSGlue.UpdateTable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_a_pattern_are_held_back_and_others_pass_at_once() {
    let upstream = echo_server().await;
    let proxy = Proxy::start(&upstream.to_string()).await;
    let hold = Duration::from_millis(800);
    proxy.delay_requests_containing(Some((b"added_columns", hold)));
    let mut slow = connect(&proxy).await.unwrap();
    let mut fast = connect(&proxy).await.unwrap();
    let started = std::time::Instant::now();
    let held = async {
        round_trip(&mut slow, b"SET added_columns = list_append(...)").await;
        started.elapsed()
    };
    let other = async {
        round_trip(&mut fast, b"GetItem").await;
        started.elapsed()
    };
    let (held, other) = bounded("both answers", async { tokio::join!(held, other) }).await;
    assert!(held >= hold, "held back {held:?}");
    assert!(other < hold, "the other request waited {other:?}");

    proxy.delay_requests_containing(None);
    let started = std::time::Instant::now();
    round_trip(&mut slow, b"added_columns again").await;
    assert!(started.elapsed() < hold, "no delay once it ends");
}
