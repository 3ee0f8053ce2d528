//! count bench: measures count on this machine, each figure side by side
//! with its baseline in one run, on a private PostgreSQL cluster it creates
//! and removes. Every scenario checks that what it counted arrived exactly;
//! the figures are rates, never pass/fail thresholds. A workspace crate of
//! its own, so that the production `count` binary links none of it: the
//! bench starts `count serve` as a child process, exactly as users run it.
//!
//! Layout (one module per group of scenarios):
//! - [`ingest`]: the protocol ceiling (`count-bench discard`, its own
//!   process), streaming ingest into `count serve`, overload, the original
//!   design, and binary COPY.
//! - [`sql_api`]: `count.add_batch` through the fallback and the extension.
//! - [`storage`]: rollups (a day's partition, and the portable path) against
//!   a bare scan; the year query's latency.
//! - [`live`]: ingest with continuous rollups against without, live reads
//!   (`GetTotals`) over a year of tiers, and the tiers' storage.
//! - [`dashboard`]: the dashboard's data requests over the same store, and
//!   its first load in headless Chromium.
//! - [`tenants`]: one tenant's month by day among many tenants.
//! - [`import`]: `count import` of a large CSV file, end to end.
//! - [`client`]: the client library end to end, `Counter::record` on the
//!   caller's thread, and the `CountLayer` on an axum handler against the
//!   same handler without it.
//! - [`process`]: CPU and memory of the processes measured, from `/proc`.
//! - [`browser`]: headless Chromium through chromedriver.
//! - [`error`]: the bench's error type.

pub mod browser;
pub mod client;
pub mod dashboard;
pub mod error;
pub mod import;
pub mod ingest;
pub mod live;
pub mod process;
pub mod sql_api;
pub mod storage;
pub mod tenants;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use count_service::db::cluster::{Cluster, ClusterOptions};

use crate::client::EndToEnd;
use crate::error::{Error, Result};
use crate::ingest::{ServeFigure, StreamFigure};
use crate::sql_api::AddBatchFigure;

pub use crate::ingest::serve_discard;

/// What to measure, and how much: the command line of `count-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// PostgreSQL server binaries for the private cluster [default: the
    /// newest /usr/lib/postgresql/*/bin].
    #[arg(long, env = "COUNT_PG_BIN_DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// The `count` binary whose `count serve` is measured [default: `count`
    /// next to this program].
    #[arg(long, env = "COUNT_BENCH_COUNT_BIN")]
    pub count_bin: Option<PathBuf>,
    /// Rows (distinct endpoints) per add_batch call; one block each.
    #[arg(
        long,
        env = "COUNT_BENCH_KEYS_PER_CALL",
        value_delimiter = ',',
        default_value = "1000,10000"
    )]
    pub keys_per_call: Vec<usize>,
    /// Timed add_batch calls per block.
    #[arg(long, env = "COUNT_BENCH_CALLS", default_value_t = 20, value_parser = count_service::cli::positive)]
    pub calls: usize,
    /// Counter::record calls per client measurement.
    #[arg(long, env = "COUNT_BENCH_RECORDS", default_value_t = 2_000_000)]
    pub records: usize,
    /// Requests recorded through count-client in its end-to-end measurement.
    #[arg(
        long,
        env = "COUNT_BENCH_CLIENT_REQUESTS",
        default_value_t = 50_000_000
    )]
    pub client_requests: usize,
    /// Requests of the overload measurement: 16 streams of requests that are
    /// each their own raw row, faster than the database can write them.
    #[arg(
        long,
        env = "COUNT_BENCH_OVERLOAD_REQUESTS",
        default_value_t = 2_000_000
    )]
    pub overload_requests: usize,
    /// How long each layer measurement sends HTTP requests.
    #[arg(long, env = "COUNT_BENCH_LAYER_TIME", default_value = "2s", value_parser = humantime::parse_duration)]
    pub layer_time: Duration,
    /// Requests per streaming measurement (split over 1, 4 and 16 streams).
    #[arg(long, env = "COUNT_BENCH_STREAM_REQUESTS", default_value_t = 5_000_000)]
    pub stream_requests: usize,
    /// How long the original design's baseline runs.
    #[arg(long, env = "COUNT_BENCH_BASELINE_TIME", default_value = "3s", value_parser = humantime::parse_duration)]
    pub baseline_time: Duration,
    /// Raw rows for the COPY reference and the rollup.
    #[arg(long, env = "COUNT_BENCH_ROLLUP_ROWS", default_value_t = 10_000_000)]
    pub rollup_rows: usize,
    /// Endpoints of the year query (x 365 days of totals).
    #[arg(long, env = "COUNT_BENCH_YEAR_KEYS", default_value_t = 1_000)]
    pub year_keys: usize,
    /// Timed year queries, and timed calls of each live read.
    #[arg(long, env = "COUNT_BENCH_QUERIES", default_value_t = 100, value_parser = count_service::cli::positive)]
    pub queries: usize,
    /// Endpoints of the live reads' store (a year of hours, and minutes).
    #[arg(long, env = "COUNT_BENCH_LIVE_KEYS", default_value_t = 1_000, value_parser = count_service::cli::positive)]
    pub live_keys: usize,
    /// Days of minute totals in the live reads' store.
    #[arg(long, env = "COUNT_BENCH_MINUTE_DAYS", default_value_t = 30, value_parser = count_service::cli::positive)]
    pub minute_days: usize,
    /// Rows of the CSV file `count import` reads.
    #[arg(long, env = "COUNT_BENCH_IMPORT_ROWS", default_value_t = 10_000_000, value_parser = count_service::cli::positive)]
    pub import_rows: usize,
}

/// The programs the bench starts: `count` (its `serve` is measured) and the
/// discard server of the protocol ceiling (`count-bench discard`).
#[derive(Debug, Clone)]
pub struct Programs {
    /// The `count` binary.
    pub count: PathBuf,
    /// A binary whose `discard --listen ADDR` serves the ceiling.
    pub discard: PathBuf,
}

/// What one run measured; `Display` prints the table.
#[derive(Debug, Clone)]
pub struct Report {
    /// Streaming ingest at 1, 4 and 16 streams against the ceiling.
    pub streams: Vec<StreamFigure>,
    /// 16 streams with tenants and statuses set, against their own ceiling.
    pub dimensions: StreamFigure,
    /// 16 streams of requests that are each their own raw row.
    pub overload: ServeFigure,
    /// Statements/s of the original design.
    pub original_design: f64,
    /// Rows/s of binary COPY.
    pub copy_rows_per_second: f64,
    /// `count.add_batch` through each backend.
    pub sql_api: Vec<AddBatchFigure>,
    /// The rollups against the bare scan.
    pub rollups: storage::Rollups,
    /// The year query: p50 and p99 in ms, and the server's peak RSS in MB.
    pub year_query: (f64, f64, u64),
    /// The client library end to end.
    pub end_to_end: EndToEnd,
    /// What `record` and the layer cost their caller (table lines).
    pub caller_costs: String,
    /// The year query's size: endpoints and timed calls.
    year_size: (usize, usize),
    /// Ingest at 4 and 16 streams with and without continuous rollups.
    pub rollups_on_off: Vec<live::OnOffFigure>,
    /// Seconds `count.rollup_due()` took over the overload's raw rows.
    pub rollup_backlog: f64,
    /// Live reads over a year of tiers, and the tiers' storage.
    pub live: live::LiveReads,
    /// The dashboard's reads and first load over the same store.
    pub dashboard: dashboard::Dashboard,
    /// One tenant's month by day, among many tenants.
    pub tenant_reads: tenants::TenantReads,
    /// `count import` of a CSV file.
    pub import: import::ImportFigure,
}

impl Report {
    /// The streaming figure at `streams` streams.
    pub fn at(&self, streams: usize) -> Option<&StreamFigure> {
        self.streams.iter().find(|f| f.streams == streams)
    }

    /// Raw rows produced per second by the heaviest ingest (overload:
    /// every request its own raw row), and the same rows rolled up per
    /// second by `count.rollup_due()`; target: at least 5x.
    pub fn rollup_headroom(&self) -> (f64, f64) {
        (
            self.overload.rate,
            self.overload.rows as f64 / self.rollup_backlog,
        )
    }

    /// The one-line summary that ends the table.
    pub fn summary(&self) -> String {
        let ratio = |n| self.at(n).map_or(0.0, StreamFigure::ratio);
        let (produced, rolled) = self.rollup_headroom();
        let on_off = |n| {
            self.rollups_on_off
                .iter()
                .find(|f| f.streams == n)
                .map_or(0.0, live::OnOffFigure::ratio)
        };
        let p99 = |name: &str| {
            self.live
                .figures
                .iter()
                .find(|f| f.name.starts_with(name))
                .map_or(0.0, |f| f.p99)
        };
        format!(
            "summary: streaming ingest {:.2}x/{:.2}x the protocol ceiling at 4/16 streams, {:.0}x the original design; \
             client library {:.1}M counted/s; rollup {:.2}x the bare scan; year query p99 {:.1} ms; \
             server peak RSS {} MB (overload); with rollups {:.2}x/{:.2}x at 4/16 streams, rolled up {:.1}x as fast as produced; \
             live reads p99 {:.1}/{:.1}/{:.1}/{:.1}/{:.1} ms; {:.2} MB per endpoint-year; \
             dashboard data requests p99 {:.1}/{:.1} ms (24h/30d); count import {:.2}M rows/s parsed and sent, {:.2}M end to end",
            ratio(4),
            ratio(16),
            self.streams
                .iter()
                .map(|f| f.serve.rate)
                .fold(0.0, f64::max)
                / self.original_design,
            self.end_to_end.counted_per_second / 1e6,
            self.rollups.ratio(),
            self.year_query.1,
            self.overload.peak_rss_mb(),
            on_off(4),
            on_off(16),
            rolled / produced,
            p99("last 60 minutes"),
            p99("today"),
            p99("a year by month, UTC"),
            p99("a year by month, Asia"),
            p99("top 10"),
            self.live.long_term_bytes_per_endpoint_year / 1e6,
            self.dashboard.presets.first().map_or(0.0, |f| f.request.1),
            self.dashboard.presets.last().map_or(0.0, |f| f.request.1),
            self.import.sent_rate() / 1e6,
            self.import.rate() / 1e6,
        )
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (p50, p99, rss) = self.year_query;
        let (keys, queries) = self.year_size;
        let (produced, rolled) = self.rollup_headroom();
        write!(
            f,
            "{}\n{}\n{}\n\
             year query (GetPeriodTotals, {keys} endpoints x 365 days, {queries} calls)   p50 {p50:.1} ms   p99 {p99:.1} ms   \
             server peak RSS {rss} MB\n\n{}\n\
             rollups keep up: the overload produced {produced:.0} raw rows/s (a raw row per request); \
             count.rollup_due() rolled them up at {rolled:.0}/s: {:.1}x (target >= 5x)\n\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            ingest::render(
                &self.streams,
                &self.dimensions,
                &self.overload,
                self.original_design,
                self.copy_rows_per_second
            ),
            sql_api::render(&self.sql_api),
            self.rollups.render(),
            live::render_on_off(&self.rollups_on_off),
            rolled / produced,
            self.live.render(),
            self.dashboard.render(),
            self.tenant_reads.render(),
            self.import.render(),
            self.end_to_end.render(),
            self.caller_costs,
            self.summary(),
        )
    }
}

/// Untimed calls of a read before it is timed. PostgreSQL plans a
/// statement afresh on each of its first five executions on a connection
/// and chooses between that and a generic plan from the sixth on (its plan
/// cache); a read's first calls on a connection measure that, not the read
/// (3-11 ms against 1.7 ms warm for the last hour's read on a scratch
/// store). The live and tenant reads report the slowest of them beside the
/// timed ones.
pub(crate) const WARM_CALLS: usize = 10;

/// The median and the 99th percentile of `values` (0 for none), nearest
/// rank below.
pub(crate) fn percentiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        values
            .get(((values.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (at(0.5), at(0.99))
}

/// A connection to the bench cluster's `count` database.
async fn connect(cluster: &Cluster) -> Result<tokio_postgres::Client> {
    let (client, connection) = cluster
        .config(count_service::db::cluster::DATABASE)
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A server as a child process, killed on drop.
pub(crate) struct ServerProcess {
    child: std::process::Child,
    address: SocketAddr,
}

impl ServerProcess {
    /// `count serve` on the bench cluster, with `extra` flags. No HTTP
    /// API: the bench measures gRPC, and the default port is not its own.
    async fn start(
        programs: &Programs,
        cluster: &Cluster,
        extra: &[&str],
    ) -> Result<ServerProcess> {
        Self::serve(programs, cluster, "off", extra).await
    }

    /// `count serve` with its HTTP API on a free port, and that port.
    async fn start_with_http(
        programs: &Programs,
        cluster: &Cluster,
        extra: &[&str],
    ) -> Result<(ServerProcess, SocketAddr)> {
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(Error::io("finding a free port"))?;
        // `count serve` binds both addresses before anything else, and
        // `spawn` waits for the gRPC one: the HTTP one listens by then.
        let server = Self::serve(programs, cluster, &http.to_string(), extra).await?;
        Ok((server, http))
    }

    async fn serve(
        programs: &Programs,
        cluster: &Cluster,
        http: &str,
        extra: &[&str],
    ) -> Result<ServerProcess> {
        let url = cluster.url(count_service::db::cluster::DATABASE);
        let mut args = vec![
            "serve",
            "--log-level",
            "warn",
            "--http-listen",
            http,
            "--database-url",
            &url,
        ];
        args.extend_from_slice(extra);
        let server = Self::spawn(&programs.count, &args).await?;
        server.wait_until_serving().await?;
        Ok(server)
    }

    /// Waits until the server's health check says SERVING: it listens
    /// before its database is connected, and answers UNAVAILABLE until
    /// then (CI runs met it in the dashboard's and the import's first
    /// calls).
    async fn wait_until_serving(&self) -> Result<()> {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        for _ in 0..300 {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{}", self.address))
                    .map_err(|e| Error::Check(format!("the bench server's address: {e}")))?;
            if let Ok(channel) = channel.connect().await
                && let Ok(answer) = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: "count.v1.CountService".to_owned(),
                    })
                    .await
                && answer.into_inner().status == ServingStatus::Serving as i32
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Check(
            "a bench server's database did not become ready".to_owned(),
        ))
    }

    /// The discard server of the protocol ceiling.
    async fn discard(programs: &Programs) -> Result<ServerProcess> {
        Self::spawn(&programs.discard, &["discard"]).await
    }

    /// `exe` with `args` and `--listen` on a free port, once it listens.
    async fn spawn(exe: &Path, args: &[&str]) -> Result<ServerProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(Error::io("finding a free port"))?;
        let child = std::process::Command::new(exe)
            .args(args)
            .args(["--listen", &port.to_string()])
            .env_remove("COUNT_CONFIG")
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(Error::io(format!("starting {}", exe.display())))?;
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
        Err(Error::Check(
            "a bench server did not start listening".to_owned(),
        ))
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs every scenario on a private cluster and returns what it measured.
pub async fn run(options: &BenchOptions, programs: &Programs) -> Result<Report> {
    let dir = std::env::temp_dir().join(format!("count-bench-{}", std::process::id()));
    let mut cluster_options = ClusterOptions::new(&dir);
    cluster_options.bin_dir = options.pg_bin_dir.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&cluster_options))
        .await
        .map_err(|e| Error::Check(format!("start-up task failed: {e}")))??;
    cluster.create_database().await?;
    let report = scenarios(&cluster, options, programs).await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    report
}

async fn scenarios(
    cluster: &Cluster,
    options: &BenchOptions,
    programs: &Programs,
) -> Result<Report> {
    let sql_api = sql_api::run(cluster, &options.keys_per_call, options.calls).await?;
    // The server runs on the backend sql_api measured last: the extension
    // where it is installed. Without rollups, so that the raw rows each
    // load wrote can be counted (rollups on: rollups_on_off below).
    let rollups_off = ["--rollup-every", "0"];
    let server = ServerProcess::start(programs, cluster, &rollups_off).await?;
    let discard = ServerProcess::discard(programs).await?;
    let streams = ingest::streaming(cluster, &server, &discard, options.stream_requests).await?;
    let end_to_end = client::end_to_end(cluster, &server, options.client_requests).await?;
    // Last on this server: a server keeps the memory it once needed.
    let overload = ingest::overload(cluster, &server, options.overload_requests).await?;
    drop(server);
    // The overload's raw rows, rolled up as the continuous rollups would.
    let rollup_backlog = live::roll_up_backlog(cluster, overload.rows).await?;
    // The load with tenants on a server of its own, with a series cap above
    // the 400,000 it creates: the memory those take stayed in the figures
    // of the loads after it (the overload's peak RSS was 223 MB, its own
    // about 140).
    let server = ServerProcess::start(
        programs,
        cluster,
        &[&rollups_off[..], &["--max-series", "1000000"]].concat(),
    )
    .await?;
    let dimensions =
        ingest::with_dimensions(cluster, &server, &discard, options.stream_requests).await?;
    drop(server);
    drop(discard);
    let sql = connect(cluster).await?;
    sql.batch_execute(include_str!("../queries/reset.sql"))
        .await?;
    let original_design = ingest::original_design(cluster, options.baseline_time).await?;
    sql.batch_execute(include_str!("../queries/reset.sql"))
        .await?;
    let rollups = storage::rollups(cluster, options.rollup_rows).await?;
    sql.batch_execute(include_str!("../queries/reset.sql"))
        .await?;
    // A fresh server, so its memory figure is the query's own.
    let server = ServerProcess::start(programs, cluster, &["--rollup-every", "0"]).await?;
    let year_query =
        storage::year_query(cluster, &server, options.year_keys, options.queries).await?;
    drop(server);
    let rollups_on_off = live::rollups_on_off(cluster, programs, options.stream_requests).await?;
    let live = live::reads(
        cluster,
        programs,
        options.live_keys,
        options.minute_days,
        options.queries,
    )
    .await?;
    let dashboard = dashboard::measure(
        cluster,
        programs,
        options.live_keys,
        live.end,
        options.queries,
    )
    .await?;
    let tenant_reads = tenants::reads(cluster, programs, options.queries).await?;
    let import = import::import(cluster, programs, options.import_rows).await?;
    let caller_costs = client::caller_costs(options.records, options.layer_time).await?;
    Ok(Report {
        streams,
        dimensions,
        overload,
        original_design,
        copy_rows_per_second: rollups.copy,
        sql_api,
        rollups,
        year_query,
        end_to_end,
        caller_costs,
        year_size: (options.year_keys, options.queries),
        rollups_on_off,
        rollup_backlog,
        live,
        dashboard,
        tenant_reads,
        import,
    })
}
