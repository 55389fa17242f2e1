//! The HTTP server every service listens with: an axum [`Router`] over hyper, with the guards a
//! server on a network needs and `axum::serve` does not have.
//!
//! | guard | default | what happens |
//! |---|---|---|
//! | `--http-header-timeout` | 10 s | a connection that has not sent a whole request head this long after connecting (or after its first byte following an idle spell) is closed |
//! | `--http-body-timeout` | 30 s | a request body that has not fully arrived this long after its head is cut off: the answer is 408 `body_timeout` and the connection is closed |
//! | `--http-idle-timeout` | 60 s | a keep-alive connection with no request this long is closed |
//! | `--http-max-connections` | 256 | at the cap, the connection waiting longest for a request (idle or still sending its head) is closed to admit the new one; when every connection is inside a request, new ones wait in the listen backlog |
//!
//! A half-open connection (the peer gone without a FIN) is always waiting for a head or idle,
//! so it is closed by the timeouts, and it can never hold a slot that a new connection needs:
//! many of them do not stop `/health` from answering. A connection inside a request is never
//! closed by these guards except by the body timeout; a slow handler is the handler's business.
//!
//! hyper's own `header_read_timeout` is not used: it also runs while a keep-alive connection is
//! idle, so it would make the idle timeout the header timeout.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service as _;

/// The server's limits, as flags and environment variables of every service that listens.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Longest wait for a request's headers, from connecting or from the first byte after an
    /// idle spell; the connection is then closed.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,
    /// Longest a request body may take to arrive, from its headers; then 408 and close.
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http_body_timeout: Duration,
    /// Keep-alive connections with no request for this long are closed.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub http_idle_timeout: Duration,
    /// Most open connections; at the cap the longest-waiting idle one is closed for a new one.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
}

impl Default for HttpArgs {
    fn default() -> Self {
        Self {
            http_header_timeout: Duration::from_secs(10),
            http_body_timeout: Duration::from_secs(30),
            http_idle_timeout: Duration::from_secs(60),
            http_max_connections: 256,
        }
    }
}

/// Why the server closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    HeaderTimeout,
    IdleTimeout,
    Evicted,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Evicted => "evicted",
        }
    }
}

/// The server's metrics, registered once per service.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    open: IntGauge,
    /// Connections closed by the server, by reason (`header_timeout`, `idle_timeout`,
    /// `evicted`, `body_timeout`).
    closed: IntCounterVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            open: IntGauge::new("http_connections_open", "open HTTP connections")?,
            closed: IntCounterVec::new(
                Opts::new(
                    "http_connections_closed_total",
                    "HTTP connections closed by the server's guards, by reason",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.open.clone()))?;
        registry.register(Box::new(m.closed.clone()))?;
        for reason in ["header_timeout", "idle_timeout", "evicted", "body_timeout"] {
            m.closed.with_label_values(&[reason]);
        }
        Ok(m)
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting, closes idle
/// connections and lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpArgs,
    metrics: HttpMetrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let server = Arc::new(Server {
        app,
        limits,
        metrics,
        live: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
    });
    let slots = Arc::new(Semaphore::new(server.limits.http_max_connections as usize));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: the listener itself is fine, and
                // retrying at once would spin.
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                server.evict_longest_waiting();
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // never closed
                    },
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        // Registered before its task runs: a slot held by a connection that eviction cannot
        // see would leave the next accept waiting for a slot nobody frees.
        let (id, watch) = server.register();
        tracker.spawn(Arc::clone(&server).connection(stream, slot, id, watch, shutdown.clone()));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// What every connection shares.
struct Server {
    app: Router,
    limits: HttpArgs,
    metrics: HttpMetrics,
    /// Open connections, for eviction at the cap.
    live: Mutex<HashMap<u64, Arc<Watch>>>,
    next_id: AtomicU64,
}

impl Server {
    /// A new connection's watch, in the open connections.
    fn register(&self) -> (u64, Arc<Watch>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch::new());
        lock(&self.live).insert(id, Arc::clone(&watch));
        self.metrics.open.inc();
        (id, watch)
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        _slot: OwnedSemaphorePermit,
        id: u64,
        watch: Arc<Watch>,
        shutdown: CancellationToken,
    ) {
        let io = TokioIo::new(WatchedIo {
            inner: stream,
            watch: Arc::clone(&watch),
        });
        let service = {
            let (server, watch) = (Arc::clone(&self), Arc::clone(&watch));
            hyper::service::service_fn(move |req| {
                Arc::clone(&server).request(req, Arc::clone(&watch))
            })
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .with_upgrades();
        tokio::pin!(conn);
        let expired = watch.expired(&self.limits);
        tokio::pin!(expired);
        let mut draining = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                    break;
                }
                reason = &mut expired => {
                    // No request is in flight (the watch says so), so dropping the connection
                    // loses nothing.
                    self.metrics.closed.with_label_values(&[reason.label()]).inc();
                    break;
                }
                () = shutdown.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
        lock(&self.live).remove(&id);
        self.metrics.open.dec();
    }

    async fn request(
        self: Arc<Self>,
        req: Request<Incoming>,
        watch: Arc<Watch>,
    ) -> Result<Response<Body>, Infallible> {
        let in_request = InRequest::begin(watch);
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + self.limits.http_body_timeout;
        let req = req.map(|body| TimedBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            timed_out: Arc::clone(&timed_out),
        });
        let mut app = self.app.clone();
        let response = match app.call(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let response = if timed_out.load(Ordering::Relaxed) {
            self.metrics
                .closed
                .with_label_values(&["body_timeout"])
                .inc();
            body_timeout_response(self.limits.http_body_timeout)
        } else {
            response
        };
        // The request ends when its answer has been sent, not when the handler returns.
        Ok(response.map(|body| {
            Body::new(UntilSent {
                inner: body,
                _in_request: in_request,
            })
        }))
    }

    /// Closes the connection that has waited longest without a request in flight.
    fn evict_longest_waiting(&self) {
        let live = lock(&self.live);
        let oldest = live
            .values()
            .filter(|w| !w.evict.is_cancelled())
            .filter_map(|w| w.waiting_since().map(|since| (since, w)))
            .min_by_key(|(since, _)| *since);
        if let Some((_, watch)) = oldest {
            watch.evict.cancel();
        }
    }
}

fn body_timeout_response(limit: Duration) -> Response<Body> {
    let body = serde_json::json!({
        "error": format!("the request body did not arrive within {}", humantime::format_duration(limit)),
        "code": "body_timeout",
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The rest of the body may still be on its way; the connection cannot be reused.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here can be left half-written by a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a connection is between requests, for its timeouts and for eviction.
#[derive(Debug)]
struct Watch {
    phase: Mutex<Phase>,
    changed: Notify,
    evict: CancellationToken,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head since `since` (connecting, or the first byte after idle).
    Head {
        since: Instant,
    },
    /// This many requests in flight (HTTP/1 has one at a time; counted to be safe).
    Busy(usize),
    Idle {
        since: Instant,
    },
}

impl Watch {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            changed: Notify::new(),
            evict: CancellationToken::new(),
        }
    }

    /// Moves to the phase `next` gives for the current one (none: stay), under one lock, and
    /// wakes [`Watch::expired`] to recompute its deadline.
    fn update(&self, next: impl FnOnce(Phase) -> Option<Phase>) {
        let mut phase = lock(&self.phase);
        if let Some(next) = next(*phase) {
            *phase = next;
            drop(phase);
            self.changed.notify_waiters();
        }
    }

    /// Since when the connection has waited for a request, or `None` inside one.
    fn waiting_since(&self) -> Option<Instant> {
        match *lock(&self.phase) {
            Phase::Head { since } | Phase::Idle { since } => Some(since),
            Phase::Busy(_) => None,
        }
    }

    /// Bytes arrived: after an idle spell they start the next request's head.
    fn on_read(&self) {
        self.update(|phase| {
            matches!(phase, Phase::Idle { .. }).then(|| Phase::Head {
                since: Instant::now(),
            })
        });
    }

    /// Resolves when the connection has waited too long outside a request, or is evicted.
    async fn expired(&self, limits: &HttpArgs) -> Closed {
        loop {
            let changed = self.changed.notified();
            let deadline = match *lock(&self.phase) {
                Phase::Head { since } => {
                    Some((since + limits.http_header_timeout, Closed::HeaderTimeout))
                }
                Phase::Idle { since } => {
                    Some((since + limits.http_idle_timeout, Closed::IdleTimeout))
                }
                Phase::Busy(_) => None,
            };
            if let Some((at, reason)) = deadline
                && at <= Instant::now()
            {
                return reason;
            }
            let sleep = async {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {}
                () = changed => {}
                () = self.evict.cancelled(), if deadline.is_some() => return Closed::Evicted,
            }
        }
    }
}

/// Marks its connection busy from a request's head until its answer has been sent (or
/// abandoned).
struct InRequest(Arc<Watch>);

impl InRequest {
    fn begin(watch: Arc<Watch>) -> Self {
        watch.update(|phase| {
            Some(match phase {
                Phase::Busy(n) => Phase::Busy(n + 1),
                Phase::Head { .. } | Phase::Idle { .. } => Phase::Busy(1),
            })
        });
        Self(watch)
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.update(|phase| {
            Some(match phase {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle {
                    since: Instant::now(),
                },
            })
        });
    }
}

/// The socket, telling the watch when bytes arrive.
struct WatchedIo {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.on_read();
        }
        result
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The request body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// A request body that fails with [`BodyTimeout`] once its deadline has passed.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(self.deadline.as_mut().poll(cx));
        self.timed_out.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(Box::new(BodyTimeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request in flight until it has been sent or dropped.
struct UntilSent {
    inner: Body,
    _in_request: InRequest,
}

impl hyper::body::Body for UntilSent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_flags() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            http: HttpArgs,
        }
        let parsed = <Cli as clap::Parser>::parse_from(["x"]).http;
        let default = HttpArgs::default();
        assert_eq!(parsed.http_header_timeout, default.http_header_timeout);
        assert_eq!(parsed.http_body_timeout, default.http_body_timeout);
        assert_eq!(parsed.http_idle_timeout, default.http_idle_timeout);
        assert_eq!(parsed.http_max_connections, default.http_max_connections);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_expires_by_phase() {
        let limits = HttpArgs::default();
        let watch = Watch::new();
        let started = Instant::now();
        assert_eq!(watch.expired(&limits).await, Closed::HeaderTimeout);
        assert_eq!(started.elapsed(), limits.http_header_timeout);

        let watch = Arc::new(Watch::new());
        let busy = InRequest::begin(Arc::clone(&watch));
        let waiter = {
            let watch = Arc::clone(&watch);
            let limits = limits.clone();
            tokio::spawn(async move { watch.expired(&limits).await })
        };
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!waiter.is_finished(), "a request in flight never expires");
        let answered = Instant::now();
        drop(busy);
        assert_eq!(waiter.await.expect("join"), Closed::IdleTimeout);
        assert_eq!(answered.elapsed(), limits.http_idle_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_after_idle_starts_the_header_clock() {
        let limits = HttpArgs::default();
        let watch = Arc::new(Watch::new());
        drop(InRequest::begin(Arc::clone(&watch)));
        tokio::time::sleep(Duration::from_secs(30)).await;
        watch.on_read();
        let first_byte = Instant::now();
        assert_eq!(watch.expired(&limits).await, Closed::HeaderTimeout);
        assert_eq!(first_byte.elapsed(), limits.http_header_timeout);
    }
}
