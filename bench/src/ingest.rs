//! Ingest scenarios: the protocol ceiling (the same tonic stack with an
//! `Add` that discards), streaming ingest into `count serve` (committed and
//! visible), and the original design (one upserting statement per request),
//! plus PostgreSQL's own bulk-load rate (binary COPY) for reference.

use std::net::SocketAddr;
use std::pin::pin;
use std::time::{Duration, Instant};

use count_proto::v1::count_service_client::CountServiceClient;
use count_proto::v1::count_service_server::{CountService, CountServiceServer};
use count_proto::v1::{
    AddBatchRequest, AddBatchResponse, AddRequest, AddResponse, CountDailyTotalsRequest,
    CountDailyTotalsResponse, GetPeriodTotalsRequest, GetPeriodTotalsResponse, GetTotalsRequest,
    GetTotalsResponse, ListDailyTotalsRequest, ListDailyTotalsResponse, Method,
};
use futures::StreamExt;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{Error, Result};
use crate::process::{CpuMeter, RssSampler};
use crate::{ServerProcess, connect};
use count_service::db::cluster::Cluster;

/// Distinct paths the load uses; the endpoints of the raw rows COPY writes.
pub(crate) const ENDPOINTS: usize = 1_000;
/// Seconds the load's timestamps span.
const SECONDS: usize = 10;

/// A `CountService` whose `Add` and `AddBatch` read and discard: the
/// protocol's ceiling, and what `count import` can parse and send.
struct Discard;

#[tonic::async_trait]
impl CountService for Discard {
    async fn add(
        &self,
        request: Request<Streaming<AddRequest>>,
    ) -> Result<Response<AddResponse>, Status> {
        let mut stream = request.into_inner();
        let mut accepted = 0;
        while let Some(message) = stream.next().await {
            message?;
            accepted += 1;
        }
        Ok(Response::new(AddResponse {
            accepted,
            ..AddResponse::default()
        }))
    }

    async fn count_daily_totals(
        &self,
        _: Request<CountDailyTotalsRequest>,
    ) -> Result<Response<CountDailyTotalsResponse>, Status> {
        Err(Status::unimplemented("discard server"))
    }

    async fn list_daily_totals(
        &self,
        _: Request<ListDailyTotalsRequest>,
    ) -> Result<Response<ListDailyTotalsResponse>, Status> {
        Err(Status::unimplemented("discard server"))
    }

    async fn get_period_totals(
        &self,
        _: Request<GetPeriodTotalsRequest>,
    ) -> Result<Response<GetPeriodTotalsResponse>, Status> {
        Err(Status::unimplemented("discard server"))
    }

    async fn add_batch(
        &self,
        request: Request<AddBatchRequest>,
    ) -> Result<Response<AddBatchResponse>, Status> {
        Ok(Response::new(AddBatchResponse {
            // 0 (unset) stands for 1 (the proto's rule).
            accepted: request
                .into_inner()
                .entries
                .iter()
                .fold(0i64, |sum, e| sum.saturating_add(e.count.max(1))),
            ..AddBatchResponse::default()
        }))
    }

    async fn get_totals(
        &self,
        _: Request<GetTotalsRequest>,
    ) -> Result<Response<GetTotalsResponse>, Status> {
        Err(Status::unimplemented("discard server"))
    }
}

/// Serves the discard service on `address` until killed (`count-bench
/// discard`, spawned by the bench).
pub async fn serve_discard(address: SocketAddr) -> Result<()> {
    tonic::transport::Server::builder()
        .add_service(CountServiceServer::new(Discard))
        .serve(address)
        .await?;
    Ok(())
}

/// How the load's requests spread over keys (series, minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// Over `ENDPOINTS` paths, timestamps advancing over `SECONDS` seconds as a
    /// live service's would: the server's aggregation folds them into few
    /// rows.
    Live,
    /// Every request its own key (`ENDPOINTS` paths, one minute further back
    /// every `ENDPOINTS` requests): one raw row each, so the database, not the
    /// load generator, sets the pace.
    Distinct,
    /// As `Live`, each request for one of `TENANTS` tenants (skewed: a few
    /// large tenants, many small) with one of four statuses (90% 200, 5%
    /// 404, 3% 500, 2% 201).
    Dimensions,
}

/// Tenants of the `Dimensions` load.
pub(crate) const TENANTS: usize = 100;

/// The tenant and status of request `n` of the `Dimensions` load: a
/// tenant drawn as the cube of a uniform number (a third of the requests
/// go to the largest 4 tenants), a status by its share.
fn dimensions(n: usize) -> (String, u32) {
    let uniform = (n.wrapping_mul(2_654_435_761) % 10_007) as f64 / 10_007.0;
    let tenant = (TENANTS as f64 * uniform.powi(3)) as usize;
    let status = match n % 100 {
        0..90 => 200,
        90..95 => 404,
        95..98 => 500,
        _ => 201,
    };
    (format!("tenant-{tenant}"), status)
}

/// The messages of stream `stream` of `streams`: `count` requests, one per
/// message.
fn messages(keys: Keys, stream: usize, streams: usize, count: usize) -> Vec<AddRequest> {
    let now = chrono::Utc::now().timestamp();
    (0..count)
        .map(|i| {
            let (path, second) = match keys {
                Keys::Live | Keys::Dimensions => (
                    (i * 7 + stream) % ENDPOINTS,
                    now - SECONDS as i64 + (i * SECONDS / count.max(1)) as i64,
                ),
                Keys::Distinct => {
                    // A minute apart: the server keeps counts to the minute.
                    let n = i * streams + stream;
                    (n % ENDPOINTS, now - 60 * (n / ENDPOINTS) as i64)
                }
            };
            let mut request = AddRequest {
                method: Method::Get as i32,
                path: format!("/bench/{path}"),
                request_timestamp: Some(prost_types::Timestamp {
                    seconds: second,
                    nanos: 0,
                }),
                count: 0,
                ..AddRequest::default()
            };
            if keys == Keys::Dimensions {
                let (tenant, status) = dimensions(i * streams + stream);
                request.tenant = tenant;
                request.status_code = Some(status);
            }
            request
        })
        .collect()
}

/// Streams `total` requests over `streams` streams; returns requests/s from
/// the first message until every stream is answered (for count serve:
/// committed), and the requests the answers accepted.
async fn stream_load(
    address: SocketAddr,
    keys: Keys,
    streams: usize,
    total: usize,
) -> Result<(f64, i64)> {
    let per_stream = total / streams;
    let mut clients = Vec::new();
    for stream in 0..streams {
        let client = CountServiceClient::connect(format!("http://{address}")).await?;
        clients.push((client, messages(keys, stream, streams, per_stream)));
    }
    let start = Instant::now();
    let calls: Vec<_> = clients
        .into_iter()
        .map(|(mut client, messages)| {
            tokio::spawn(async move { client.add(tokio_stream::iter(messages)).await })
        })
        .collect();
    let mut accepted = 0;
    for call in calls {
        accepted += call
            .await
            .map_err(|e| Error::Check(format!("stream task: {e}")))??
            .into_inner()
            .accepted;
    }
    Ok((
        (per_stream * streams) as f64 / start.elapsed().as_secs_f64(),
        accepted,
    ))
}

/// What `count serve` did with one load: committed requests/s, and what it
/// cost.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeFigure {
    /// Requests committed per second.
    pub rate: f64,
    /// Raw rows left (all written, where the server does not roll up).
    pub rows: i64,
    /// The server's peak resident memory in kB.
    pub peak_rss_kb: u64,
    /// CPU seconds of the server.
    pub server_cpu: f64,
    /// CPU seconds of PostgreSQL.
    pub postgres_cpu: f64,
}

impl ServeFigure {
    /// The server's peak resident memory in MB.
    pub fn peak_rss_mb(&self) -> u64 {
        self.peak_rss_kb / 1024
    }
}

/// One row of the ingest table.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamFigure {
    /// Streams used.
    pub streams: usize,
    /// The protocol ceiling's requests/s at this many streams.
    pub ceiling: f64,
    /// What count serve did.
    pub serve: ServeFigure,
}

impl StreamFigure {
    /// Committed rate over the protocol ceiling.
    pub fn ratio(&self) -> f64 {
        self.serve.rate / self.ceiling
    }
}

/// Streams `total` requests into `server` over `streams` streams on an
/// emptied database, and checks that every one was accepted and stored
/// (raw, or rolled up where the server rolls up).
pub(crate) async fn serve_load(
    cluster: &Cluster,
    server: &ServerProcess,
    keys: Keys,
    streams: usize,
    total: usize,
) -> Result<ServeFigure> {
    let sql = connect(cluster).await?;
    sql.batch_execute(include_str!("../queries/reset_counts.sql"))
        .await?;
    let cpu = CpuMeter::start(server.pid(), cluster);
    let sampler = RssSampler::start(server.pid());
    let (rate, accepted) = stream_load(server.address, keys, streams, total).await?;
    let peak_rss_kb = sampler.stop().await;
    let (server_cpu, postgres_cpu) = cpu.read();
    let stored = sql
        .query_one(include_str!("../queries/raw_rows.sql"), &[])
        .await?;
    let (rows, requests): (i64, i64) = (stored.get(0), stored.get(1));
    let sent = (total / streams * streams) as i64;
    if accepted != sent || requests != sent {
        return Err(Error::Check(format!(
            "bench self-check failed: sent {sent} requests, {accepted} accepted, {requests} stored"
        )));
    }
    Ok(ServeFigure {
        rate,
        rows,
        peak_rss_kb,
        server_cpu,
        postgres_cpu,
    })
}

/// The ceiling and count serve's committed rate at each stream count.
pub(crate) async fn streaming(
    cluster: &Cluster,
    server: &ServerProcess,
    discard: &ServerProcess,
    total: usize,
) -> Result<Vec<StreamFigure>> {
    let mut figures = Vec::new();
    for streams in [1, 4, 16] {
        let (ceiling, _) = stream_load(discard.address, Keys::Live, streams, total).await?;
        let serve = serve_load(cluster, server, Keys::Live, streams, total).await?;
        figures.push(StreamFigure {
            streams,
            ceiling,
            serve,
        });
    }
    Ok(figures)
}

/// 16 streams of the `Dimensions` load: what tenants and statuses cost
/// ingest, against [`streaming`]'s 16 streams (target: at least 0.9x), and
/// the load's own protocol ceiling (its messages are longer). Run twice, the
/// second measured: the load without them meets its series known, so this
/// one should too (a first run mostly creates series).
pub(crate) async fn with_dimensions(
    cluster: &Cluster,
    server: &ServerProcess,
    discard: &ServerProcess,
    total: usize,
) -> Result<StreamFigure> {
    let (ceiling, _) = stream_load(discard.address, Keys::Dimensions, 16, total).await?;
    serve_load(cluster, server, Keys::Dimensions, 16, total).await?;
    let figure = serve_load(cluster, server, Keys::Dimensions, 16, total).await?;
    let stored = connect(cluster)
        .await?
        .query_one(include_str!("../queries/dimension_requests.sql"), &[])
        .await?;
    let (requests, tenants): (i64, i64) = (stored.get(0), stored.get(1));
    let sent = (total / 16 * 16) as i64;
    if requests != sent || tenants < 2 {
        return Err(Error::Check(format!(
            "bench self-check failed: sent {sent} requests with a tenant and a status, stored \
             {requests} over {tenants} tenants"
        )));
    }
    Ok(StreamFigure {
        streams: 16,
        ceiling,
        serve: figure,
    })
}

/// Overload: 16 streams of requests that are each their own key, so every
/// request becomes a raw row and the load generator outpaces the database;
/// backpressure, not buffering, must bound the server's memory.
pub(crate) async fn overload(
    cluster: &Cluster,
    server: &ServerProcess,
    total: usize,
) -> Result<ServeFigure> {
    serve_load(cluster, server, Keys::Distinct, 16, total).await
}

/// Statements/s of the original design: one statement per request that
/// upserts the endpoint and inserts one raw row, on 16 connections with
/// durable commits, for `time`.
pub(crate) async fn original_design(cluster: &Cluster, time: Duration) -> Result<f64> {
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..16 {
        let client = connect(cluster).await?;
        workers.push(tokio::spawn(async move {
            let statement = client
                .prepare(include_str!("../queries/original_design.sql"))
                .await?;
            let now = chrono::Utc::now();
            let mut done = 0u64;
            while start.elapsed() < time {
                let path = format!("/bench/{}", (done as usize * 16 + worker) % ENDPOINTS);
                client.execute(&statement, &[&"GET", &path, &now]).await?;
                done += 1;
            }
            Ok::<u64, crate::error::Error>(done)
        }));
    }
    let mut total = 0;
    for worker in workers {
        total += worker
            .await
            .map_err(|e| Error::Check(format!("baseline worker: {e}")))??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Rows/s of `COPY … (FORMAT binary)` of `rows` raw rows (count 1 each) for
/// `day`, over `ENDPOINTS` endpoint ids.
pub(crate) async fn copy_rows(
    cluster: &Cluster,
    rows: usize,
    day: chrono::NaiveDate,
) -> Result<f64> {
    let client = connect(cluster).await?;
    let start_of_day = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let start = Instant::now();
    let sink = client
        .copy_in(include_str!("../queries/copy_requests.sql"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TIMESTAMPTZ, Type::INT8]);
    let mut writer = pin!(writer);
    for i in 0..rows {
        let id = (i % ENDPOINTS) as i64 + 1;
        let at = start_of_day + chrono::Duration::seconds((i % 86_400) as i64);
        writer.as_mut().write(&[&id, &at, &1i64]).await?;
    }
    let written = writer.finish().await?;
    if written != rows as u64 {
        return Err(Error::Check(format!(
            "bench self-check failed: copied {written} of {rows} rows"
        )));
    }
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}

/// The ingest table.
pub(crate) fn render(
    figures: &[StreamFigure],
    dimensions: &StreamFigure,
    overload: &ServeFigure,
    original: f64,
    copy: f64,
) -> String {
    let mut out = String::from(
        "ingest (requests/s)          ceiling    count serve  serve/ceiling  serve/original  \
         raw rows  server peak RSS  server CPU s  PostgreSQL CPU s\n",
    );
    let mut row = |name: String, ceiling: Option<f64>, f: &ServeFigure| {
        let (ceiling, ratio) = ceiling.map_or(("n/a".to_owned(), "n/a".to_owned()), |c| {
            (format!("{c:.0}"), format!("{:.2}x", f.rate / c))
        });
        out.push_str(&format!(
            "{name:<26}{ceiling:>10}{:>15.0}{ratio:>15}{:>15.0}x{:>10}{:>14} MB{:>14.1}{:>18.1}\n",
            f.rate,
            f.rate / original,
            f.rows,
            f.peak_rss_mb(),
            f.server_cpu,
            f.postgres_cpu,
        ));
    };
    for f in figures {
        let name = format!(
            "{} stream{}",
            f.streams,
            if f.streams == 1 { "" } else { "s" }
        );
        row(name, Some(f.ceiling), &f.serve);
    }
    row(
        format!("16 streams, {TENANTS} tenants"),
        Some(dimensions.ceiling),
        &dimensions.serve,
    );
    row("16 streams, overload".to_owned(), None, overload);
    out.push_str(&format!(
        "original design, 16 connections{original:>12.0}\n"
    ));
    out.push_str(&format!("COPY (FORMAT binary) rows/s{copy:>17.0}\n"));
    if let Some(plain) = figures.iter().find(|f| f.streams == 16) {
        out.push_str(&format!(
            "16 streams with {TENANTS} tenants x 4 statuses over 16 streams without: {:.2}x (target >= 0.90x); \
             the protocol ceiling with them over count serve without: {:.2}x\n",
            dimensions.serve.rate / plain.serve.rate,
            dimensions.ceiling / plain.serve.rate,
        ));
    }
    out
}
