//! The HTTP server's connections: accepted from a listener (plain TCP, or
//! [`super::tls::TlsListener`]) while fewer than a cap are open, served by
//! hyper (HTTP/1.1 or HTTP/2, told apart by hyper-util's auto builder), each
//! given time limits, and shut down gracefully. `axum::serve` is not used:
//! it sets hyper no timer, so no request head ever timed out, and it takes
//! connections without limit.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

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
    /// A connection on which nothing was read or written for this long is
    /// closed: an idle HTTP/2 connection (hyper has no idle limit for them),
    /// or a peer gone without a word.
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
        // listen queue (and its overflow refuses them), not in memory here.
        let accepted = async {
            let slot = slots.clone().acquire_owned().await;
            (slot, listener.accept().await)
        };
        tokio::select! {
            (slot, (io, _)) = accepted => {
                let io = Deadlines::new(io, limits);
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
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

/// A connection's deadlines: its first [`FIRST_BYTES`] bytes must come
/// within the header timeout (a client that connects and sends nothing, or
/// a few bytes of a preface, is let go, where hyper would wait for ever; an
/// HTTP/1.0 request shorter than that, with no headers, keeps the deadline
/// while its answer is sent, as HTTP/1.1 requests carry a `Host` header),
/// and then something must be read or written at least every idle timeout.
struct Deadlines<I> {
    io: I,
    first_bytes: Option<Pin<Box<Sleep>>>,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    read: usize,
}

impl<I> Deadlines<I> {
    fn new(io: I, limits: HttpLimits) -> Self {
        Deadlines {
            io,
            first_bytes: Some(Box::pin(tokio::time::sleep(limits.header_timeout))),
            idle: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            idle_timeout: limits.idle_timeout,
            read: 0,
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
            // Hyper reads whenever it waits for the client, so a pending
            // read is where an idle connection is seen.
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle for the idle timeout",
                    )));
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
        if let Poll::Ready(Ok(n)) = &result
            && *n > 0
        {
            this.active();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &result
            && *n > 0
        {
            this.active();
        }
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
