//! Serving `count.v1.CountService` on a bound listener until shutdown.

use std::future::Future;
use std::time::Duration;

use count_proto::v1::count_service_server::CountServiceServer;
use futures::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::api::CountApi;
use crate::config::ServerConfig;
use crate::error::Result;
use crate::store::Store;

/// How long connections may stay open after open streams were told to end.
const FINAL_WAIT: Duration = Duration::from_secs(10);

/// Serves on `listener` until `shutdown` resolves; then accepts no new
/// connections, lets open streams go on for the grace period, ends those
/// still open (committing what they sent) and returns.
///
/// Binding is the caller's: tests bind `127.0.0.1:0` and read the port
/// before calling this, so nothing waits on a timer for the server.
pub async fn run(
    listener: TcpListener,
    store: Store,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let (drain_tx, drain_rx) = watch::channel(false);
    let api = CountApi::new(store, config.ingest, drain_rx);
    let signal = shutdown.shared();
    let serve = Server::builder()
        .add_service(CountServiceServer::new(api))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal.clone());
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => return Ok(result?),
        () = signal => {}
    }
    tracing::info!(
        grace = %humantime::format_duration(config.shutdown_grace),
        "shutting down: no new connections, waiting for open streams"
    );
    tokio::select! {
        result = &mut serve => return Ok(result?),
        () = tokio::time::sleep(config.shutdown_grace) => {}
    }
    tracing::warn!("grace period over: ending open streams");
    // Receivers are gone only if the server is, which the select rules out.
    let _ = drain_tx.send(true);
    match tokio::time::timeout(FINAL_WAIT, serve).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            tracing::warn!("connections still open; exiting anyway");
            Ok(())
        }
    }
}
