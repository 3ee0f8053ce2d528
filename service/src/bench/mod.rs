//! `count bench`: measures count on this machine, each figure side by side
//! with its baseline in one run, on a private PostgreSQL cluster it creates
//! and removes. Every scenario checks that what it counted arrived exactly;
//! the figures are rates, never pass/fail thresholds.
//!
//! Scenarios:
//! - [`ingest`]: the protocol ceiling, streaming ingest into `count serve`
//!   (a child process, so its memory and CPU are its own), overload, the
//!   original design, and binary COPY.
//! - [`sql_api`]: `count.add_batch` through the fallback and the extension.
//! - [`storage`]: rollups (a day's partition, and the portable path) against
//!   a bare scan; the year query's latency.
//! - [`client`]: the client library end to end, `Counter::record` on the
//!   caller's thread, and the `CountLayer` on an axum handler against the
//!   same handler without it.
//! - [`process`]: CPU and memory of the processes measured, from `/proc`.

mod client;
mod ingest;
mod process;
mod sql_api;
mod storage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::{Cluster, ClusterOptions};
use crate::error::{Error, Result};

/// What to measure, and how much.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Where the private cluster's binaries are (found when `None`).
    pub pg_bin_dir: Option<PathBuf>,
    /// Rows (distinct endpoints) per `add_batch` call; one block each.
    pub keys_per_call: Vec<usize>,
    /// Timed `add_batch` calls per block.
    pub calls: usize,
    /// `record` calls per client cost measurement.
    pub records: usize,
    /// Requests recorded in the client library's end-to-end measurement.
    pub client_requests: usize,
    /// Requests of the overload measurement (each its own raw row).
    pub overload_requests: usize,
    /// How long each layer measurement sends requests.
    pub layer_time: Duration,
    /// Requests per streaming measurement (split over the streams).
    pub stream_requests: usize,
    /// How long the original design's baseline runs.
    pub baseline_time: Duration,
    /// Raw rows for the COPY reference and the rollup.
    pub rollup_rows: usize,
    /// Endpoints of the year query (× 365 days of totals).
    pub year_keys: usize,
    /// Timed year queries.
    pub queries: usize,
}

/// An error of the bench itself (a failed self-check, a task that died).
fn bench_error(message: String) -> Error {
    Error::Cluster(message)
}

/// A connection to the bench cluster's `count` database.
async fn connect(cluster: &Cluster) -> Result<tokio_postgres::Client> {
    let (client, connection) = cluster
        .config("count")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `count serve` as a child process of this binary, killed on drop.
struct ServerProcess {
    child: std::process::Child,
    address: SocketAddr,
}

impl ServerProcess {
    /// `count serve` on the bench cluster.
    async fn start(cluster: &Cluster) -> Result<ServerProcess> {
        let url = cluster.url("count");
        Self::spawn(&["serve", "--log-level", "warn", "--database-url", &url]).await
    }

    /// The discard server of the protocol ceiling.
    async fn discard() -> Result<ServerProcess> {
        Self::spawn(&["bench-discard"]).await
    }

    /// This binary with `args` and `--listen` on a free port, once it
    /// listens.
    async fn spawn(args: &[&str]) -> Result<ServerProcess> {
        let exe = std::env::current_exe().map_err(Error::io("finding the count binary"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(Error::io("finding a free port"))?;
        let child = std::process::Command::new(exe)
            .args(args)
            .args(["--listen", &port.to_string()])
            .env_remove("COUNT_CONFIG")
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(Error::io("starting a bench server"))?;
        let server = ServerProcess {
            child,
            address: port,
        };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(port).await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(bench_error(
            "a bench server did not start listening".to_owned(),
        ))
    }

    /// The server's process id.
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use ingest::serve_discard;

/// Runs every scenario and returns the report as text.
pub async fn run(options: &BenchOptions) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("count-bench-{}", std::process::id()));
    let mut cluster_options = ClusterOptions::new(&dir);
    cluster_options.bin_dir = options.pg_bin_dir.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&cluster_options))
        .await
        .map_err(|e| Error::Cluster(format!("start-up task failed: {e}")))??;
    cluster.create_database().await?;
    let report = scenarios(&cluster, options).await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    report
}

async fn scenarios(cluster: &Cluster, options: &BenchOptions) -> Result<String> {
    let sql_api = sql_api::run(cluster, &options.keys_per_call, options.calls).await?;
    // The server runs on the backend sql_api measured last: the extension
    // where it is installed.
    let server = ServerProcess::start(cluster).await?;
    let streams = ingest::streaming(cluster, &server, options.stream_requests).await?;
    let (end_to_end, client_rate) =
        client::end_to_end(cluster, &server, options.client_requests).await?;
    // Last on this server: a server keeps the memory it once needed.
    let overload = ingest::overload(cluster, &server, options.overload_requests).await?;
    drop(server);
    let sql = connect(cluster).await?;
    sql.batch_execute(include_str!("../../queries/bench_reset.sql"))
        .await?;
    let original = ingest::original_design(cluster, options.baseline_time).await?;
    sql.batch_execute(include_str!("../../queries/bench_reset.sql"))
        .await?;
    let rollups = storage::rollups(cluster, options.rollup_rows).await?;
    sql.batch_execute(include_str!("../../queries/bench_reset.sql"))
        .await?;
    // A fresh server, so its memory figure is the query's own.
    let server = ServerProcess::start(cluster).await?;
    let (p50, p99, year_rss_mb) =
        storage::year_query(cluster, &server, options.year_keys, options.queries).await?;
    drop(server);
    let client = client::caller_costs(options.records, options.layer_time).await?;

    let at = |n: usize| {
        streams
            .iter()
            .find(|f| f.streams() == n)
            .map_or(0.0, |f| f.ratio())
    };
    let summary = format!(
        "summary: streaming ingest {:.2}x/{:.2}x the protocol ceiling at 4/16 streams, {:.0}x the original design; \
         client library {:.1}M counted/s; rollup {:.2}x the bare scan; year query p99 {p99:.1} ms; \
         server peak RSS {} MB (overload)",
        at(4),
        at(16),
        streams.iter().map(|f| f.ingest()).fold(0.0, f64::max) / original,
        client_rate / 1e6,
        rollups.ratio(),
        overload.peak_rss_mb(),
    );
    Ok(format!(
        "{}\n{sql_api}\n{}\n\
         year query (GetPeriodTotals, {} endpoints x 365 days, {} calls)   p50 {p50:.1} ms   p99 {p99:.1} ms   \
         server peak RSS {year_rss_mb} MB\n\n{end_to_end}\n{client}\n{summary}\n",
        ingest::render(&streams, &overload, original, rollups.copy),
        rollups.render(),
        options.year_keys,
        options.queries,
    ))
}
