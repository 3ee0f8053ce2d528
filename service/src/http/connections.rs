//! The HTTP server's connections: accepted from a listener (plain TCP, or
//! [`super::tls::TlsListener`]) while fewer than a cap are open, served by
//! hyper (HTTP/1.1 or HTTP/2, told apart by hyper-util's auto builder), each
//! given time limits, and shut down gracefully. `axum::serve` is not used:
//! it sets hyper no timer, so no request head ever timed out, and it takes
//! connections without limit.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use futures::future::BoxFuture;
use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::defaults;

/// Bytes hyper-util reads to tell HTTP/2 (its 24-byte preface) from
/// HTTP/1, with no time limit of its own.
const FIRST_BYTES: usize = 24;

/// What one HTTP client may hold, and for how long: without these, clients
/// that connect and wait (or send a byte at a time) would hold connections,
/// tasks and ingest slots for ever.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// For each request head (hyper's header-read timeout, which also ends
    /// a kept-alive HTTP/1.1 connection idle that long), for a connection's
    /// first bytes, and again for a request's body.
    pub header_timeout: Duration,
    /// A connection with no request in flight on which nothing was read or
    /// written for this long is closed: an idle HTTP/2 connection (hyper
    /// has no idle limit for them), or a peer gone without a word.
    pub idle_timeout: Duration,
    /// Connections open at once; more wait in the listen queue until one
    /// closes.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: defaults::HTTP_HEADER_TIMEOUT,
            idle_timeout: defaults::HTTP_IDLE_TIMEOUT,
            max_connections: defaults::HTTP_MAX_CONNECTIONS,
        }
    }
}

/// File descriptors beyond the HTTP connection cap: gRPC connections, the
/// database pool, the embedded cluster's files.
const OTHER_FILES: u64 = 512;

/// Raises the process's soft limit on open files to its hard limit, as Go's
/// runtime does: the soft limit is often 1,024, which the HTTP connection
/// cap alone would use up, and then accepting fails for every client. Warns
/// when even the hard limit leaves too little room beyond the cap.
pub fn raise_open_files_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(error) => {
                tracing::warn!(%error, soft, hard, "could not raise the open files limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(error) => {
            tracing::warn!(%error, "could not read the open files limit");
            return;
        }
    };
    if limit < max_connections as u64 + OTHER_FILES {
        tracing::warn!(
            limit,
            max_connections,
            "the open files limit leaves little room beyond the HTTP connection cap: raise it \
             (LimitNOFILE= in the systemd unit)"
        );
    }
}

/// Serves `router` on the connections of `listener` until `shutdown`; then
/// each finishes what it is answering. Each connection keeps to `limits`.
/// The connections are tasks of this future: dropping it (the server
/// giving up on a slow shutdown) ends them.
pub(super) async fn serve<L: axum::serve::Listener>(
    mut listener: L,
    limits: HttpLimits,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: at the cap, new connections wait in the kernel's
        // listen queue (TLS ones past their handshake, in TlsListener's),
        // not in tasks here.
        let accepted = async {
            let slot = slots.clone().acquire_owned().await;
            (slot, listener.accept().await)
        };
        tokio::select! {
            (slot, (io, _)) = accepted => {
                let in_flight = Arc::new(AtomicUsize::new(0));
                let io = Deadlines::new(io, limits, in_flight.clone());
                let service = hyper_util::service::TowerToHyperService::new(Counted {
                    router: router.clone(),
                    in_flight,
                });
                let connection = graceful.watch(
                    builder
                        .serve_connection(TokioIo::new(io), service)
                        .into_owned(),
                );
                connections.spawn(async move {
                    let result = connection.await;
                    drop(slot);
                    result
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The router, counting the connection's requests in flight: from the
/// call until its response body is dropped (sent, or given up), so that a
/// long read or a slow stream is never idle.
#[derive(Clone)]
struct Counted {
    router: Router,
    in_flight: Arc<AtomicUsize>,
}

impl<B> Service<Request<B>> for Counted
where
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Tracked<Body>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request<B>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let place = InFlight::enter(&self.in_flight);
        let answer = self.router.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| Tracked {
                body,
                _place: place,
            }))
        })
    }
}

/// One request in flight, until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body holding its request's place in flight.
    struct Tracked<B> {
        #[pin]
        body: B,
        _place: InFlight,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's deadlines: its first [`FIRST_BYTES`] bytes must come
/// within the header timeout (a client that connects and sends nothing, or
/// a few bytes of a preface, is let go, where hyper would wait for ever; an
/// HTTP/1.0 request shorter than that, with no headers, keeps the deadline
/// while its answer is sent, as HTTP/1.1 requests carry a `Host` header),
/// and then, while no request is in flight, something must be read or
/// written at least every idle timeout.
struct Deadlines<I> {
    io: I,
    first_bytes: Option<Pin<Box<Sleep>>>,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    in_flight: Arc<AtomicUsize>,
    read: usize,
}

impl<I> Deadlines<I> {
    fn new(io: I, limits: HttpLimits, in_flight: Arc<AtomicUsize>) -> Self {
        Deadlines {
            io,
            first_bytes: Some(Box::pin(tokio::time::sleep(limits.header_timeout))),
            idle: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            idle_timeout: limits.idle_timeout,
            in_flight,
            read: 0,
        }
    }

    /// A write's outcome: bytes written count as activity.
    fn wrote(&mut self, result: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = result
            && *n > 0
        {
            self.active();
        }
    }

    /// Something moved: the idle deadline starts again.
    fn active(&mut self) {
        self.idle.as_mut().reset(Instant::now() + self.idle_timeout);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Deadlines<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = &mut this.first_bytes
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the header timeout",
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        match &result {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                this.read += read;
                if this.read >= FIRST_BYTES {
                    this.first_bytes = None;
                }
                if read > 0 {
                    this.active();
                }
            }
            // Hyper reads whenever it waits for the client (and, to see it
            // leave, while it answers), so a pending read is where an idle
            // connection is seen. One answering is not idle: the deadline
            // starts again.
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() {
                    if this.in_flight.load(Ordering::Relaxed) == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "idle for the idle timeout",
                        )));
                    }
                    this.active();
                    let _ = this.idle.as_mut().poll(cx);
                }
            }
            Poll::Ready(Err(_)) => {}
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Deadlines<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // Below the hard limit first (by one: other tests run meanwhile).
        setrlimit(Resource::RLIMIT_NOFILE, hard - 1, hard).unwrap();
        raise_open_files_limit(1);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
    }

    #[tokio::test]
    async fn a_connection_answering_a_request_is_never_idle() {
        let (_client, server) = tokio::io::duplex(64);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let limits = HttpLimits {
            idle_timeout: Duration::from_millis(100),
            ..HttpLimits::default()
        };
        let mut io = Deadlines::new(server, limits, in_flight.clone());
        let mut buf = [0; 8];
        // Quiet for three idle timeouts while a request is answered: open.
        let place = InFlight::enter(&in_flight);
        let quiet = tokio::time::timeout(Duration::from_millis(350), io.read(&mut buf)).await;
        assert!(quiet.is_err(), "closed while answering: {quiet:?}");
        // Nothing in flight: closed at the idle timeout.
        drop(place);
        let started = Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
            .await
            .expect("closed within 5 s");
        assert_eq!(closed.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() <= Duration::from_millis(500));
        assert_eq!(in_flight.load(Ordering::Relaxed), 0);
    }
}
