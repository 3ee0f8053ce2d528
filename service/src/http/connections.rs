//! The HTTP server's connections: accepted from a listener (plain TCP, or
//! [`super::tls::TlsListener`]), served by hyper (HTTP/1.1 or HTTP/2, told
//! apart by hyper-util's auto builder), each given time limits, and shut
//! down gracefully. `axum::serve` is not used: it sets hyper no timer, so
//! no request head ever timed out.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;

/// Bytes hyper-util reads to tell HTTP/2 (its 24-byte preface) from
/// HTTP/1, with no time limit of its own.
const FIRST_BYTES: usize = 24;

/// Serves `router` on the connections of `listener` until `shutdown`; then
/// each finishes what it is answering. A client gets `header_timeout` for
/// each request head (hyper's header-read timeout, which also ends a
/// kept-alive connection idle that long), and as long for its first bytes.
/// The connections are tasks of this future: dropping it (the server
/// giving up on a slow shutdown) ends them.
pub(super) async fn serve<L: axum::serve::Listener>(
    mut listener: L,
    header_timeout: Duration,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            (io, _) = listener.accept() => {
                let io = FirstBytesDeadline::new(io, header_timeout);
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let connection = builder
                    .serve_connection(TokioIo::new(io), service)
                    .into_owned();
                connections.spawn(graceful.watch(connection));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A connection whose first [`FIRST_BYTES`] bytes must come within a
/// deadline: a client that connects and sends nothing (or a few bytes of a
/// preface) is let go, where hyper would wait for ever. (An HTTP/1.0
/// request shorter than that, with no headers, keeps the deadline while
/// its answer is sent; HTTP/1.1 requests carry a `Host` header.)
struct FirstBytesDeadline<I> {
    io: I,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    read: usize,
}

impl<I> FirstBytesDeadline<I> {
    fn new(io: I, limit: Duration) -> Self {
        FirstBytesDeadline {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
            read: 0,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstBytesDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the header timeout",
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            this.read += buf.filled().len() - before;
            if this.read >= FIRST_BYTES {
                this.deadline = None;
            }
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstBytesDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
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
