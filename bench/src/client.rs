//! The client library scenarios: requests counted end to end (recorded by
//! many threads, delivered, committed), what `Counter::record` costs the
//! caller's thread, alone and with 8 threads contending, and what
//! `CountLayer` costs an axum handler over real HTTP/1.1, against the same
//! handler without it.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use count_client::{CountLayer, Counter, Method};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, Result};
use crate::process::{CpuMeter, RssSampler, cpu_seconds};
use crate::{ServerProcess, connect};
use count_service::db::cluster::Cluster;

/// Calls timed together, so the clock's own cost spreads over them.
const CHUNK: usize = 64;
/// Distinct paths recorded.
const PATHS: usize = 100;
/// Concurrent HTTP connections of the layer measurement.
const CONNECTIONS: usize = 4;

/// Threads recording in the end-to-end measurement.
const THREADS: usize = 4;

/// The client library end to end: what one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct EndToEnd {
    /// Requests recorded.
    pub requests: u64,
    /// Requests counted per second, from the first `record` until
    /// `shutdown` returned with every request committed.
    pub counted_per_second: f64,
    /// Requests recorded per second by the recording threads.
    pub recording_per_second: f64,
    /// `AddBatch` calls the counter had acknowledged.
    pub batches: u64,
    /// Raw rows the batches wrote.
    pub raw_rows: i64,
    /// CPU seconds of this process, the server and PostgreSQL.
    pub cpu_seconds: (f64, f64, f64),
    /// The server's peak resident memory in MB.
    pub server_peak_rss_mb: u64,
}

impl EndToEnd {
    /// The table's header and line.
    pub(crate) fn render(&self) -> String {
        let (client_cpu, server_cpu, postgres_cpu) = self.cpu_seconds;
        format!(
            "client end to end ({THREADS} threads, {} requests)   counted/s   recording/s   batches   raw rows   \
             client CPU s   server CPU s   PostgreSQL CPU s   server peak RSS\n\
             {:<45}{:>11.0}{:>14.0}{:>10}{:>11}{client_cpu:>15.1}{server_cpu:>15.1}{postgres_cpu:>19.1}{:>15} MB\n",
            self.requests,
            "",
            self.counted_per_second,
            self.recording_per_second,
            self.batches,
            self.raw_rows,
            self.server_peak_rss_mb,
        )
    }
}

/// The client library end to end: `THREADS` threads record `requests`
/// requests through one `Counter` delivering to `server`; the rate runs from
/// the first `record` until `shutdown` returns with every request
/// acknowledged, that is committed.
pub(crate) async fn end_to_end(
    cluster: &Cluster,
    server: &ServerProcess,
    requests: usize,
) -> Result<EndToEnd> {
    let sql = connect(cluster).await?;
    sql.batch_execute(include_str!("../queries/reset_counts.sql"))
        .await?;
    let counter = Counter::builder(format!("http://{}", server.address))
        .producer_id(PRODUCER)
        .build()
        .map_err(|e| Error::Check(format!("bench counter: {e}")))?;
    let paths: Vec<String> = (0..PATHS).map(|p| format!("/bench/{p}")).collect();
    let per_thread = requests / THREADS;
    let cpu = CpuMeter::start(server.pid(), cluster);
    let sampler = RssSampler::start(server.pid());
    let own_cpu = cpu_seconds(std::process::id(), false);
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let counter = counter.clone();
            let paths = paths.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    counter.record(Method::Get, &paths[(i + thread) % PATHS]);
                }
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| Error::Check("bench thread panicked".to_owned()))?;
    }
    let recorded = start.elapsed().as_secs_f64();
    let stats = counter
        .shutdown(Duration::from_secs(60))
        .await
        .map_err(|e| Error::Check(format!("bench counter shutdown: {e}")))?;
    let elapsed = start.elapsed().as_secs_f64();
    let client_cpu = cpu_seconds(std::process::id(), false) - own_cpu;
    let (server_cpu, postgres_cpu) = cpu.read();
    let server_rss_mb = sampler.stop().await / 1024;
    let sent = (per_thread * THREADS) as u64;
    let stored = sql
        .query_one(include_str!("../queries/raw_rows.sql"), &[])
        .await?;
    let (rows, committed): (i64, i64) = (stored.get(0), stored.get(1));
    if stats.delivered != sent || stats.dropped != 0 || committed != sent as i64 {
        return Err(Error::Check(format!(
            "bench self-check failed: recorded {sent}, delivered {}, dropped {}, committed {committed}",
            stats.delivered, stats.dropped
        )));
    }
    Ok(EndToEnd {
        requests: sent,
        counted_per_second: sent as f64 / elapsed,
        recording_per_second: sent as f64 / recorded,
        batches: stats.batches,
        raw_rows: rows,
        cpu_seconds: (client_cpu, server_cpu, postgres_cpu),
        server_peak_rss_mb: server_rss_mb,
    })
}

/// The producer id of the end-to-end measurement's counter.
const PRODUCER: &str = "count-bench";

/// Measures what `record` and the layer cost their caller; returns the
/// table.
pub(crate) async fn caller_costs(records: usize, layer_time: Duration) -> Result<String> {
    // Nothing listens on the discard port: records stay in memory, so this
    // measures the caller's cost only.
    let counter = Counter::builder("http://127.0.0.1:9")
        .flush_interval(Duration::from_secs(3600))
        .max_pending_keys(usize::MAX / 2)
        .build()
        .map_err(|e| Error::Check(format!("bench counter: {e}")))?;
    let one = record_cost(&counter, 1, records, false).await?;
    let eight = record_cost(&counter, 8, records, false).await?;
    let full = record_cost(&counter, 1, records, true).await?;
    let expected = 3 * (records / CHUNK * CHUNK) as u64;
    if counter.stats().recorded != expected {
        return Err(Error::Check(format!(
            "bench self-check failed: recorded {expected}, the counter says {}",
            counter.stats().recorded
        )));
    }
    let (without, with) = layer_rates(counter, layer_time).await?;
    let mut out = format!(
        "client (full key: {TENANTS} tenants x {} statuses; target median <= 100 ns)\n\
         {:<38}median ns/call     p99 ns/call\n",
        STATUSES.len(),
        ""
    );
    for (name, (median, p99)) in [
        ("record, 1 thread", one),
        ("record, 8 threads contending", eight),
        ("record_response, full key, 1 thread", full),
    ] {
        out.push_str(&format!("{name:<38}{median:>19.1}{p99:>16.1}\n"));
    }
    out.push_str(&format!(
        "\nlayer (axum, HTTP/1.1, {CONNECTIONS} connections)         without req/s   with req/s   overhead\n\
         trivial handler                            {without:>13.0}   {with:>10.0}   {:>7.1}%\n",
        (without - with) / without * 100.0
    ));
    Ok(out)
}

/// Tenants of the full-key measurement.
const TENANTS: usize = 100;
/// Status codes of the full-key measurement.
const STATUSES: [u16; 4] = [200, 201, 404, 500];

/// Median and p99 of ns per `record` call (`record_response` with a
/// tenant and a status when `full`), over `threads` threads sharing
/// `records` calls.
async fn record_cost(
    counter: &Counter,
    threads: usize,
    records: usize,
    full: bool,
) -> Result<(f64, f64)> {
    let paths: Vec<String> = (0..PATHS).map(|p| format!("/bench/{p}")).collect();
    let tenants: Vec<String> = (0..TENANTS).map(|t| format!("tenant-{t}")).collect();
    let chunks = records / CHUNK / threads;
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let counter = counter.clone();
            let (paths, tenants) = (paths.clone(), tenants.clone());
            std::thread::spawn(move || {
                let mut costs = Vec::with_capacity(chunks);
                for chunk in 0..chunks {
                    let start = Instant::now();
                    for i in 0..CHUNK {
                        let n = chunk * CHUNK + i + thread;
                        let path = &paths[n % PATHS];
                        if full {
                            // Every (path, tenant, status) in turn.
                            counter.record_response(
                                Method::Get,
                                path,
                                &tenants[n / PATHS % TENANTS],
                                Some(STATUSES[n / (PATHS * TENANTS) % STATUSES.len()]),
                            );
                        } else {
                            counter.record(Method::Get, path);
                        }
                    }
                    costs.push(start.elapsed().as_nanos() as f64 / CHUNK as f64);
                }
                costs
            })
        })
        .collect();
    let mut costs = Vec::new();
    for handle in handles {
        costs.extend(
            handle
                .join()
                .map_err(|_| Error::Check("bench thread panicked".to_owned()))?,
        );
    }
    // Chunks not divisible among threads were not run: record them now so
    // the self-check's arithmetic holds.
    let missing = records / CHUNK - chunks * threads;
    for i in 0..missing * CHUNK {
        counter.record(Method::Get, &paths[i % PATHS]);
    }
    Ok(crate::percentiles(&mut costs))
}

/// Requests/s of a trivial axum handler without and with the layer: three
/// alternating rounds each, the best of each kept.
async fn layer_rates(counter: Counter, time: Duration) -> Result<(f64, f64)> {
    let plain = serve(Router::new().route("/users/{id}", get(|| async { "ok" }))).await?;
    let counted = serve(
        Router::new()
            .route("/users/{id}", get(|| async { "ok" }))
            .layer(CountLayer::new(counter.clone())),
    )
    .await?;
    let before = counter.stats().recorded;
    let (mut without, mut with) = (0f64, 0f64);
    let mut counted_requests = 0;
    for _ in 0..3 {
        without = without.max(load(plain, time).await?.0);
        let (rate, requests) = load(counted, time).await?;
        with = with.max(rate);
        counted_requests += requests;
    }
    let recorded = counter.stats().recorded - before;
    if recorded != counted_requests {
        return Err(Error::Check(format!(
            "bench self-check failed: sent {counted_requests} requests through the layer, it recorded {recorded}"
        )));
    }
    Ok((without, with))
}

async fn serve(app: Router) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(Error::io("binding the bench HTTP server"))?;
    let address = listener
        .local_addr()
        .map_err(Error::io("bench HTTP address"))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// Sends GETs over `CONNECTIONS` keep-alive connections for `time`; returns
/// requests/s and how many succeeded.
async fn load(address: std::net::SocketAddr, time: Duration) -> Result<(f64, u64)> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let start = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while start.elapsed() < time {
                    let uri = format!("http://{address}/users/{}", done % 1000 + worker as u64)
                        .parse()
                        .map_err(|e| Error::Check(format!("bench URI: {e}")))?;
                    let response = client
                        .get(uri)
                        .await
                        .map_err(|e| Error::Check(format!("bench request: {e}")))?;
                    response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| Error::Check(format!("bench response: {e}")))?;
                    done += 1;
                }
                Ok::<u64, Error>(done)
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker
            .await
            .map_err(|e| Error::Check(format!("bench worker: {e}")))??;
    }
    Ok((total as f64 / start.elapsed().as_secs_f64(), total))
}
