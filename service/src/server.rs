//! Serving `count.v1.CountService`, the gRPC health service and server
//! reflection on a bound listener until shutdown, with the server's
//! background tasks (health checks, the optional rollup schedule).

use std::future::Future;
use std::time::Duration;

use count_proto::v1::count_service_server::CountServiceServer;
use futures::{FutureExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::CountApi;
use crate::auth::AuthLayer;
use crate::auth::Tokens;
use crate::defaults;
use crate::error::{Error, Result};
use crate::http::{self, HttpApi, HttpLimits};
use crate::ingest::IngestConfig;
use crate::state::{State, StoreSource};
use crate::tls::TlsFiles;

/// How long connections may stay open after open streams were told to end.
const FINAL_WAIT: Duration = Duration::from_secs(10);

/// Everything [`crate::server::run`] needs besides the listener and store.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Ingest limits.
    pub ingest: IngestConfig,
    /// After a shutdown signal, how long open streams may go on before the
    /// server ends them (committing what they sent).
    pub shutdown_grace: Duration,
    /// How often the database is checked for the health service.
    pub health_interval: Duration,
    /// How often `count.rollup_due()` runs; never when `None`.
    pub rollup_every: Option<Duration>,
    /// The largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// What one HTTP client may hold, and for how long (the defaults'
    /// `HTTP_*`; tests shorten them).
    pub http_limits: HttpLimits,
    /// Bearer tokens every call must present; none when `None`.
    pub tokens: Option<Tokens>,
    /// TLS for both listeners (with a client CA: mutual TLS); plaintext
    /// when `None`.
    pub tls: Option<TlsFiles>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ingest: IngestConfig::default(),
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            health_interval: defaults::HEALTH_INTERVAL,
            rollup_every: Some(defaults::ROLLUP_EVERY),
            max_message_bytes: defaults::MAX_MESSAGE_BYTES,
            http_limits: HttpLimits::default(),
            tokens: None,
            tls: None,
        }
    }
}

/// How often the endpoint guard rereads `count.methods`.
const SERIES_RELOAD: Duration = Duration::from_secs(60);

/// The health service's name for the count API: the generated one.
use count_proto::v1::count_service_server::SERVICE_NAME;

/// Serves gRPC on `listener`, and the HTTP API on `http` if given, until
/// `shutdown` resolves; then accepts no new connections, lets open streams
/// go on for the grace period, ends those still open (committing what they
/// sent) and returns.
///
/// Binding is the caller's: tests bind `127.0.0.1:0` and read the port
/// before calling this, so nothing waits on a timer for the server.
pub async fn run(
    listener: TcpListener,
    http: Option<TcpListener>,
    store: impl Into<StoreSource>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    if http.is_some() {
        http::raise_open_files_limit(config.http_limits.max_connections);
    }
    let state = State::new(&config.ingest);
    let connecting = match store.into() {
        StoreSource::Open(store) => {
            state.install(store).await?;
            None
        }
        StoreSource::Connect {
            config,
            pool_size,
            schema,
        } => {
            let state = state.clone();
            Some(tokio::spawn(async move {
                state.connect(*config, pool_size, schema).await
            }))
        }
    };
    let (drain_tx, drain_rx) = watch::channel(false);
    let (health, health_service) = tonic_health::server::health_reporter();
    // Both protocol versions: grpcurl before 1.9 asks v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(count_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_error = |e| Error::Setup(format!("reflection descriptors: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    let background = tokio::spawn(background(state.clone(), config.clone(), health));
    let signal = shutdown.shared();
    // The HTTP server stops taking connections with the gRPC one.
    let (http_stop, mut http_stopped) = watch::channel(false);
    let http = http
        .map(|listener| listener.local_addr().map(|address| (listener, address)))
        .transpose()
        .map_err(Error::io("reading the HTTP address"))?;
    let http_tls = config.tls.as_ref().map(TlsFiles::http);
    let http = http.map(|(listener, address)| {
        let api = HttpApi::new(
            state.clone(),
            config.ingest,
            config.tokens.clone(),
            config.max_message_bytes,
            config.http_limits.header_timeout,
            address,
            http_tls.is_some(),
        );
        let stopped = async move {
            let _ = http_stopped.wait_for(|stop| *stop).await;
        };
        tokio::spawn(http::serve(
            listener,
            http_tls,
            config.http_limits,
            http::router(api),
            stopped,
        ))
    });
    let api = CountApi::new(state, config.ingest, drain_rx);
    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls.grpc())?;
    }
    let serve = builder
        .layer(AuthLayer::new(config.tokens.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            CountServiceServer::new(api).max_decoding_message_size(config.max_message_bytes),
        )
        .serve_with_incoming_shutdown(incoming(listener), signal.clone());
    tokio::pin!(serve);
    let result = async {
        tokio::select! {
            result = &mut serve => return Ok(result?),
            () = signal => {}
        }
        let _ = http_stop.send(true);
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
    .await;
    background.abort();
    let _ = http_stop.send(true);
    if let Some(mut http) = http {
        // Requests under way may finish; a client that holds a connection
        // (a half-sent request, a slow reader) does not hold the exit up.
        match tokio::time::timeout(config.shutdown_grace + FINAL_WAIT, &mut http).await {
            Ok(Ok(Err(error))) => tracing::warn!(%error, "the HTTP server failed"),
            Ok(Err(error)) => tracing::warn!(%error, "the HTTP server's task failed"),
            Ok(Ok(Ok(()))) => {}
            Err(_) => {
                tracing::warn!("HTTP connections still open; closing them");
                http.abort();
            }
        }
    }
    if let Some(connecting) = connecting {
        connecting.abort();
    }
    result
}

/// The accepted connections, with Nagle's algorithm off: gRPC writes whole
/// messages, and delayed ACKs would otherwise hold a response back ~40 ms.
fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// Waits for the interval's next tick; forever when there is none.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Checks the database every `health_interval` (SERVING only while it
/// answers), reloads the known series every `SERIES_RELOAD` (other
/// servers add some too) and, if configured, runs `count.rollup_due()` on
/// its schedule.
async fn background(state: State, config: ServerConfig, health: HealthReporter) {
    // The store's series were just loaded: the first reload is one period on.
    let mut reload =
        tokio::time::interval_at(tokio::time::Instant::now() + SERIES_RELOAD, SERIES_RELOAD);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rollup = config.rollup_every.map(|every| {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut check = tokio::time::interval(config.health_interval);
    let mut serving = None;
    loop {
        tokio::select! {
            _ = check.tick() => {
                let ok = match state.store() {
                    Ok(store) => tokio::time::timeout(config.health_interval, store.ping()).await.unwrap_or(false),
                    Err(_) => false,
                };
                state.set_serving(ok);
                if serving != Some(ok) {
                    let status = if ok { ServingStatus::Serving } else { ServingStatus::NotServing };
                    health.set_service_status("", status).await;
                    health.set_service_status(SERVICE_NAME, status).await;
                    if ok {
                        tracing::info!("database reachable: SERVING");
                    } else if serving == Some(true) {
                        tracing::warn!("database unreachable: NOT_SERVING");
                    } else {
                        tracing::info!("NOT_SERVING until the database is connected");
                    }
                    serving = Some(ok);
                }
            }
            _ = reload.tick() => {
                if let Ok(store) = state.store() {
                    match store.series().await {
                        Ok(series) => state.series.merge(series),
                        Err(error) => tracing::warn!(%error, "reloading series failed"),
                    }
                }
            }
            () = tick(&mut rollup) => {
                let Ok(store) = state.store() else { continue };
                match store.rollup_due().await {
                    Ok(days) => tracing::debug!(days, "scheduled rollup"),
                    Err(error) => tracing::warn!(%error, "scheduled rollup failed; next period retries"),
                }
            }
        }
    }
}
