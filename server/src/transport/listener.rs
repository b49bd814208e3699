//! The listener: the accept loop and each accepted TCP connection, counted
//! against `max_http_connections` (upgraded WebSockets included, for as
//! long as they are open), served by hyper with a header-read timeout and
//! an idle keep-alive timeout, and closable on demand (a client that
//! stopped reading its event stream).
//!
//! `axum::serve` offers neither timeout nor a cap, so connections are served
//! with hyper-util's connection builder and a watchdog around each one.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::Request};
use http_body::Frame;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};
use tower::ServiceExt as _;

use crate::{lock, rate_limit::RateLimitedCount};

/// Connection limits, resolved against the process's open-files limit.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// TCP connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// A request's headers must arrive within this (from the connection's
    /// start or the end of the previous response); slowloris ends here.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with nothing in flight is closed after this.
    pub idle_timeout: Duration,
}

/// File descriptors kept for everything but client connections: libraries,
/// the watcher, logs, private copies.
const RESERVED_FILES: u64 = 256;

impl ConnectionLimits {
    /// Raises the soft open-files limit to the hard one (logged), and caps
    /// `max_connections` below it.
    pub fn resolve(max_connections: usize, header_read_timeout: Duration, idle_timeout: Duration) -> Self {
        let files = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => {
                tracing::info!(open_files = limit, "raised the soft open-files limit to the hard limit");
                Some(limit)
            }
            Err(err) => {
                tracing::warn!(%err, "cannot raise the open-files limit");
                #[cfg(unix)]
                let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft);
                #[cfg(not(unix))]
                let soft = None;
                soft
            }
        };
        let cap = files.map_or(usize::MAX, |files| {
            usize::try_from(files.saturating_sub(RESERVED_FILES).max(16)).unwrap_or(usize::MAX)
        });
        if max_connections > cap {
            tracing::warn!(
                max_http_connections = max_connections,
                cap,
                "max_http_connections is above what the open-files limit allows; using {cap}"
            );
        }
        Self {
            max_connections: max_connections.min(cap),
            header_read_timeout,
            idle_timeout,
        }
    }
}

/// Accepts and serves connections until `shutdown` resolves, then asks each
/// open connection to finish its current request and close.
pub(crate) async fn accept_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let refused = RateLimitedCount::default();
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, or the peer gave up: keep serving.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(tcp);
            if let Some(count) = refused.hit() {
                tracing::warn!(
                    max_http_connections = limits.max_connections,
                    refused = count,
                    "closed {count} new connection(s) at once: max_http_connections are open"
                );
            }
            continue;
        };
        // Statuses are small frames written one by one: without TCP_NODELAY,
        // Nagle's algorithm holds each behind the client's delayed ACK (~40 ms).
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        tokio::spawn(serve_connection(
            tcp,
            remote,
            permit,
            router.clone(),
            limits,
            stopping.clone(),
        ));
    }
    let _ = stop.send(true);
    Ok(())
}

/// What the watchdog knows of one connection.
struct Activity {
    started: Instant,
    /// Requests whose response has not been sent completely.
    in_flight: AtomicUsize,
    /// Milliseconds since `started` when the connection last had nothing in
    /// flight (its start, or the end of the last response).
    idle_since_ms: AtomicU64,
    /// Whether the client sent anything since then (a request has begun).
    read_while_idle: AtomicBool,
    /// Whether any request was received: before the first, the header-read
    /// timeout applies; after, the idle timeout.
    served: AtomicBool,
    /// When to drop the connection whatever it is doing (set on demand).
    close_at: Mutex<Option<Instant>>,
    close_requested: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            read_while_idle: AtomicBool::new(false),
            served: AtomicBool::new(false),
            close_at: Mutex::new(None),
            close_requested: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn request_started(&self) {
        self.served.store(true, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn response_done(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle_since_ms.store(self.now_ms(), Ordering::SeqCst);
            self.read_while_idle.store(false, Ordering::SeqCst);
        }
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            self.read_while_idle.store(true, Ordering::SeqCst);
        }
    }

    /// When the watchdog must look again, or why to close now.
    fn verdict(&self, limits: &ConnectionLimits) -> Result<Instant, &'static str> {
        let now = Instant::now();
        let close_at = *lock(&self.close_at);
        if close_at.is_some_and(|at| now >= at) {
            return Err("the client stopped reading");
        }
        let next = if self.in_flight.load(Ordering::SeqCst) > 0 {
            now + limits.idle_timeout.min(limits.header_read_timeout)
        } else {
            let idle_since = self.started + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst));
            let waiting_for_headers =
                self.read_while_idle.load(Ordering::SeqCst) || !self.served.load(Ordering::SeqCst);
            let (limit, why) = if waiting_for_headers {
                (
                    limits.header_read_timeout,
                    "no complete request within header_read_timeout",
                )
            } else {
                (limits.idle_timeout, "idle keep-alive past idle_timeout")
            };
            let deadline = idle_since + limit;
            if now >= deadline {
                return Err(why);
            }
            deadline
        };
        Ok(close_at.map_or(next, |at| next.min(at)))
    }
}

/// Handed to handlers (a request extension): closes the connection the
/// request came on, `after` a grace period, whatever is in flight.
#[derive(Clone)]
pub struct ConnectionHandle(Arc<Activity>, std::net::IpAddr);

impl ConnectionHandle {
    /// The client's address.
    pub fn remote(&self) -> std::net::IpAddr {
        self.1
    }

    pub fn close_after(&self, after: Duration) {
        let at = Instant::now() + after;
        let mut close_at = lock(&self.0.close_at);
        if close_at.is_none_or(|current| at < current) {
            *close_at = Some(at);
        }
        drop(close_at);
        self.0.close_requested.notify_one();
    }
}

async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
    router: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(TrackedStream {
        tcp,
        activity: Arc::clone(&activity),
        _permit: permit,
    });
    let watched = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        watched.request_started();
        let mut request: Request = request.map(Body::new);
        // Only an event stream may need to close its connection: the
        // handle is not inserted (an allocation) into other requests.
        let streaming = request.uri().path().starts_with("/events/")
            || request
                .headers()
                .get(axum::http::header::ACCEPT)
                .is_some_and(|accept| accept.as_bytes().windows(17).any(|w| w == b"text/event-stream"));
        if streaming {
            request
                .extensions_mut()
                .insert(ConnectionHandle(Arc::clone(&watched), remote.ip()));
        }
        let done = ResponseDone(Arc::clone(&watched));
        let response = router.clone().oneshot(request);
        async move {
            let response = response.await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| CountedBody { body, _done: done }))
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut graceful = false;
    loop {
        let next = match activity.verdict(&limits) {
            Ok(next) => next,
            Err(why) => {
                tracing::debug!(%remote, "closing a connection: {why}");
                return;
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%remote, %err, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(next.into()) => {}
            () = activity.close_requested.notified() => {}
            changed = stopping.changed(), if !graceful => {
                if changed.is_ok() {
                    graceful = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The TCP stream, noting reads for the watchdog; holds the connection's
/// permit until it is closed (also after an upgrade to WebSocket).
struct TrackedStream {
    tcp: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for TrackedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Tells the watchdog a response was sent (or dropped) when it drops.
struct ResponseDone(Arc<Activity>);

impl Drop for ResponseDone {
    fn drop(&mut self) {
        self.0.response_done();
    }
}

pin_project_lite::pin_project! {
    /// A response body that marks the end of its request when dropped.
    struct CountedBody {
        #[pin]
        body: Body,
        _done: ResponseDone,
    }
}

impl http_body::Body for CountedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
