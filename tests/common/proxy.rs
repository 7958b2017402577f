//! A small TCP proxy on loopback for fault injection between the `lakeworker` binary and
//! the emulator: point the worker at [`Proxy::url`] instead of the emulator, then cause an
//! outage ([`Proxy::refuse`]: connections refused, open ones cut), end it
//! ([`Proxy::restore`]: same port again) or slow responses
//! ([`Proxy::throttle_downstream`]) or requests ([`Proxy::throttle_upstream`]) down.
//!
//! Silent faults, the kind no error reveals: [`Proxy::stall`] black-holes the endpoint (a
//! hung load balancer, a half-open connection): connections are accepted and read, and
//! never answered; the open ones go silent too. [`Proxy::end_stall`] lets new connections
//! through again, while those silenced stay silent until the client gives up on them.
//! [`Proxy::silence_requests_containing`] black-holes only the connections that carry a
//! request with some bytes (an `X-Amz-Target` header, say: one AWS service hangs, the
//! others answer). [`Proxy::lose_answers_to_requests_containing`] forwards such a request
//! but never its answer: the service acted, the client cannot know.
//! [`Proxy::delay_requests_containing`] holds such a request back for a while before
//! forwarding it (one slow call: a race window made wide on purpose).
//!
//! Tasks are spawned on the current tokio runtime, so a [`Proxy`] must be started from
//! inside one (e.g. a `#[tokio::test(flavor = "multi_thread")]`). I/O errors end the
//! affected connection only; they never panic.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Largest chunk copied at once in either direction.
const MAX_CHUNK: usize = 16 * 1024;
/// A throttled chunk is at most this much of the per-second budget (1/20 s).
const CHUNKS_PER_SECOND: u64 = 20;
/// Longest single sleep while throttled, so rate changes take effect quickly.
const MAX_PACING_SLEEP: Duration = Duration::from_millis(50);
/// How long [`Proxy::restore`] keeps retrying to bind the port.
const REBIND_FOR: Duration = Duration::from_secs(2);

/// State shared by the proxy handle, its accept loop and its connection tasks.
struct Shared {
    /// Where every connection is forwarded.
    upstream: Vec<SocketAddr>,
    /// Upstream→client limit in bytes per second per connection; 0 = unlimited.
    downstream_rate: AtomicU64,
    /// Client→upstream limit, likewise.
    upstream_rate: AtomicU64,
    /// Connection tasks not yet reaped; aborting one drops both of its sockets.
    connections: Mutex<Vec<JoinHandle<()>>>,
    /// True during a stall: open connections go silent, new ones are silent from the start.
    stalled: watch::Sender<bool>,
    /// A connection whose request bytes contain this goes silent (from that request on).
    silence_pattern: Mutex<Option<Vec<u8>>>,
    /// A connection whose request bytes contain this is forwarded, but nothing more comes
    /// back on it (from that request on).
    lose_answer_pattern: Mutex<Option<Vec<u8>>>,
    /// A request chunk containing this waits this long before it is forwarded.
    delay_pattern: Mutex<Option<(Vec<u8>, Duration)>>,
}

/// A TCP proxy listening on `127.0.0.1` and forwarding to one upstream address.
/// Dropping it stops accepting and cuts every connection (asynchronously: the tasks are
/// aborted, the sockets close when the runtime drops them).
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop, which owns the listening socket; `None` during an outage.
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 with a free port, forwarding every connection to
    /// `upstream` (`"127.0.0.1:PORT"` or `"http://127.0.0.1:PORT"`; the scheme and any
    /// path are ignored). Panics if the upstream cannot be resolved or no port is free.
    pub async fn start(upstream: &str) -> Proxy {
        let authority = upstream
            .trim()
            .strip_prefix("http://")
            .unwrap_or(upstream.trim());
        let authority = authority.split('/').next().unwrap_or_default();
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host(authority)
            .await
            .unwrap_or_else(|e| panic!("proxy upstream {upstream:?}: {e}"))
            .collect();
        assert!(
            !resolved.is_empty(),
            "proxy upstream {upstream:?} resolves to no address"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy listener on 127.0.0.1");
        let addr = listener.local_addr().expect("proxy listener address");
        let shared = Arc::new(Shared {
            upstream: resolved,
            downstream_rate: AtomicU64::new(0),
            upstream_rate: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
            stalled: watch::Sender::new(false),
            silence_pattern: Mutex::new(None),
            delay_pattern: Mutex::new(None),
            lose_answer_pattern: Mutex::new(None),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Proxy {
            addr,
            shared,
            accept: Mutex::new(Some(accept)),
        }
    }

    /// `"http://127.0.0.1:PORT"` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Outage: closes the listening socket, so new connections are refused
    /// (`ECONNREFUSED`), and cuts every open connection. When this returns, the port is
    /// closed and every connection's sockets are dropped. Idempotent.
    pub async fn refuse(&self) {
        let accept = lock(&self.accept).take();
        if let Some(accept) = accept {
            accept.abort();
            // Completes once the task's future, and with it the listener, is dropped.
            let _ = accept.await;
        }
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for connection in &connections {
            connection.abort();
        }
        for connection in connections {
            let _ = connection.await;
        }
    }

    /// End of outage: listens again on the same port and forwards as before. Retries the
    /// bind for about 2 s (e.g. if the port is briefly held by another socket), then
    /// panics. Does nothing if the proxy is already listening.
    pub async fn restore(&self) {
        if lock(&self.accept)
            .as_ref()
            .is_some_and(|a| !a.is_finished())
        {
            return;
        }
        let deadline = Instant::now() + REBIND_FOR;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("proxy could not listen on {} again: {e}", self.addr),
            }
        };
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&self.shared)));
        if let Some(previous) = lock(&self.accept).replace(accept) {
            previous.abort();
        }
    }

    /// Black hole: from now on every connection, open or new, is accepted and read but
    /// never answered (nothing is forwarded either way, nothing is closed). Idempotent.
    pub fn stall(&self) {
        self.shared.stalled.send_replace(true);
    }

    /// New connections are forwarded again; those silenced by the stall stay silent (as a
    /// half-open connection would) until their client closes them.
    pub fn end_stall(&self) {
        self.shared.stalled.send_replace(false);
    }

    /// From now on, a connection whose request bytes contain `pattern` goes silent like a
    /// stalled one (the request carrying it is not forwarded), while other connections
    /// pass. The pattern is looked for within each chunk read from the client (up to
    /// 16 KiB), which holds the head of any request that fits. `None` ends it (already
    /// silenced connections stay silent).
    pub fn silence_requests_containing(&self, pattern: Option<&[u8]>) {
        *lock(&self.shared.silence_pattern) = pattern.map(<[u8]>::to_vec);
    }

    /// From now on, a request whose bytes contain `pattern` is forwarded whole, and its
    /// answer (and anything after it on that connection) is read from the upstream and
    /// dropped: the request took effect, the client waits for an answer that never comes.
    /// `None` ends it for new requests.
    pub fn lose_answers_to_requests_containing(&self, pattern: Option<&[u8]>) {
        *lock(&self.shared.lose_answer_pattern) = pattern.map(<[u8]>::to_vec);
    }

    /// From now on, a request chunk whose bytes contain `pattern` is forwarded only after
    /// `delay` (the rest of the connection waits behind it). `None` ends it.
    pub fn delay_requests_containing(&self, pattern: Option<(&[u8], Duration)>) {
        *lock(&self.shared.delay_pattern) = pattern.map(|(p, d)| (p.to_vec(), d));
    }

    /// Limits the bytes per second flowing from upstream to client, per connection
    /// (0 = unlimited). Applies to new and existing connections from their next chunk.
    pub fn throttle_downstream(&self, bytes_per_second: u64) {
        self.shared
            .downstream_rate
            .store(bytes_per_second, Ordering::Relaxed);
    }

    /// Limits the bytes per second flowing from client to upstream (requests: uploads,
    /// DynamoDB writes), per connection, like [`Proxy::throttle_downstream`].
    pub fn throttle_upstream(&self, bytes_per_second: u64) {
        self.shared
            .upstream_rate
            .store(bytes_per_second, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(accept) = lock(&self.accept).take() {
            accept.abort();
        }
        for connection in lock(&self.shared.connections).drain(..) {
            connection.abort();
        }
    }
}

/// Locks `mutex`, ignoring poisoning (the data stays consistent: only pushes and takes).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Accepts connections until aborted, forwarding each in its own task.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let task = tokio::spawn(forward(client, Arc::clone(&shared)));
                let mut connections = lock(&shared.connections);
                connections.retain(|c| !c.is_finished());
                connections.push(task);
            }
            // E.g. out of file descriptors: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Forwards one client connection to the upstream until both directions are finished or
/// either fails; a failed upstream connect just closes the client connection. A stall (or
/// a silenced request) turns it into a black hole for good.
async fn forward(mut client: TcpStream, shared: Arc<Shared>) {
    let mut stalled = shared.stalled.subscribe();
    if *stalled.borrow_and_update() {
        return swallow(client).await;
    }
    let Ok(mut upstream) = TcpStream::connect(&shared.upstream[..]).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let answers_lost = std::sync::atomic::AtomicBool::new(false);
    let silenced = {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let copies = async {
            tokio::try_join!(
                copy(
                    &mut client_read,
                    &mut upstream_write,
                    Some(&shared.upstream_rate),
                    &shared.stalled,
                    Filter::Requests {
                        silence: &shared.silence_pattern,
                        lose_answer: &shared.lose_answer_pattern,
                        delay: &shared.delay_pattern,
                        lost: &answers_lost,
                    },
                ),
                copy(
                    &mut upstream_read,
                    &mut client_write,
                    Some(&shared.downstream_rate),
                    &shared.stalled,
                    Filter::Answers {
                        lost: &answers_lost,
                    },
                ),
            )
        };
        tokio::select! {
            copied = copies => matches!(copied, Err(e) if e.kind() == io::ErrorKind::Interrupted),
            _ = stalled.wait_for(|stalled| *stalled) => true,
        }
    };
    if silenced {
        drop(upstream);
        swallow(client).await;
    }
}

/// A black hole: reads and discards whatever the client sends, answers nothing, and keeps
/// the connection open until the client closes it.
async fn swallow(mut client: TcpStream) {
    let mut buf = vec![0u8; MAX_CHUNK];
    while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// What a copy looks for in the bytes it carries.
enum Filter<'a> {
    /// Client to upstream: a chunk with the `silence` pattern is not forwarded; one with
    /// the `lose_answer` pattern is, and sets `lost`; one with the `delay` pattern waits.
    Requests {
        silence: &'a Mutex<Option<Vec<u8>>>,
        lose_answer: &'a Mutex<Option<Vec<u8>>>,
        delay: &'a Mutex<Option<(Vec<u8>, Duration)>>,
        lost: &'a std::sync::atomic::AtomicBool,
    },
    /// Upstream to client: once `lost` is set, bytes are read and dropped.
    Answers {
        lost: &'a std::sync::atomic::AtomicBool,
    },
}

fn contains(chunk: &[u8], pattern: &Mutex<Option<Vec<u8>>>) -> bool {
    lock(pattern)
        .as_deref()
        .is_some_and(|p| !p.is_empty() && chunk.windows(p.len()).any(|w| w == p))
}

/// Copies `from` to `to` until end of stream, then shuts `to` down (half-close). With a
/// `rate`, paces the copy to at most that many bytes per second (0 = unlimited), reading
/// the rate again for every chunk and while waiting. A request chunk containing the
/// silence pattern is not forwarded: the copy fails with `Interrupted`, which silences the
/// connection; one containing the lose-answer pattern is forwarded and its answers
/// dropped ([`Filter`]). Once `stalled` is set, no chunk read is forwarded: the copy
/// fails with `Interrupted` too, so bytes sent after [`Proxy::stall`] returned never pass,
/// however the connection's task is scheduled.
async fn copy<R, W>(
    from: &mut R,
    to: &mut W,
    rate: Option<&AtomicU64>,
    stalled: &watch::Sender<bool>,
    filter: Filter<'_>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let current_rate = || rate.map_or(0, |r| r.load(Ordering::Relaxed));
    let mut buf = vec![0u8; MAX_CHUNK];
    loop {
        let limit = match current_rate() {
            0 => MAX_CHUNK,
            bps => usize::try_from(bps / CHUNKS_PER_SECOND)
                .unwrap_or(MAX_CHUNK)
                .clamp(1, MAX_CHUNK),
        };
        let n = from.read(&mut buf[..limit]).await?;
        if *stalled.borrow() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "stalled"));
        }
        if n == 0 {
            return to.shutdown().await;
        }
        match &filter {
            Filter::Requests {
                silence,
                lose_answer,
                delay,
                lost,
            } => {
                if contains(&buf[..n], silence) {
                    return Err(io::Error::new(io::ErrorKind::Interrupted, "silenced"));
                }
                let wait = lock(delay).as_ref().and_then(|(pattern, wait)| {
                    let chunk = &buf[..n];
                    let found = !pattern.is_empty()
                        && chunk
                            .windows(pattern.len())
                            .any(|w| w == pattern.as_slice());
                    found.then_some(*wait)
                });
                if let Some(wait) = wait {
                    tokio::time::sleep(wait).await;
                }
                if contains(&buf[..n], lose_answer) {
                    lost.store(true, Ordering::SeqCst);
                }
            }
            Filter::Answers { lost } => {
                if lost.load(Ordering::SeqCst) {
                    continue;
                }
            }
        }
        to.write_all(&buf[..n]).await?;
        // Pay for the chunk: sleep n / rate seconds, in short slices at the current rate.
        let mut owed = n as f64;
        while owed > 0.0 {
            let bps = current_rate();
            if bps == 0 {
                break;
            }
            let slice = Duration::from_secs_f64(owed / bps as f64)
                .clamp(Duration::from_millis(1), MAX_PACING_SLEEP);
            tokio::time::sleep(slice).await;
            owed -= slice.as_secs_f64() * bps as f64;
        }
    }
}
