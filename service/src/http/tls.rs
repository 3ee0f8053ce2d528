//! The HTTP listener over TLS (`--http-listen` with `--tls-cert`). Each
//! handshake runs on a task of its own, with a time limit, so that a client
//! that stalls its handshake holds up no one else's connection; at most
//! [`MAX_HANDSHAKES`] run at once, so that stalled ones cannot take every
//! file descriptor (past it, connections wait in the kernel's backlog).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::tls::HANDSHAKE_TIMEOUT;

/// The most handshakes under way at once.
const MAX_HANDSHAKES: usize = 256;

/// How many handshaken connections may wait for the server to take them.
const BACKLOG: usize = 64;

/// TLS connections accepted on a TCP listener, for `axum::serve`.
pub(super) struct TlsListener {
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    address: SocketAddr,
    /// Accepts and handshakes; aborting it (on drop) ends the handshakes
    /// under way too, as they live in its `JoinSet`.
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(super) fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (sender, connections) = mpsc::channel(BACKLOG);
        let accepting = tokio::spawn(async move {
            let mut handshakes = JoinSet::new();
            loop {
                tokio::select! {
                    Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
                    accepted = listener.accept(), if handshakes.len() < MAX_HANDSHAKES => {
                        let (stream, peer) = match accepted {
                            Ok(connection) => connection,
                            Err(error) => {
                                pause_after(&error).await;
                                continue;
                            }
                        };
                        // As the gRPC listener: no Nagle delay on answers.
                        let _ = stream.set_nodelay(true);
                        let acceptor = acceptor.clone();
                        let sender = sender.clone();
                        handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => {
                                    let _ = sender.send((stream, peer)).await;
                                }
                                Ok(Err(error)) => {
                                    tracing::debug!(%error, %peer, "TLS handshake failed");
                                }
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
        });
        Ok(TlsListener {
            connections,
            address,
            accepting,
        })
    }
}

/// After a failed accept: nothing when the client gave up (it reset or
/// aborted the connection), else a second, as for running out of file
/// descriptors, which retrying at once would only spin on.
async fn pause_after(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(%error, "accepting an HTTP connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accepting task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.address)
    }
}
