//! Storage scenarios: rolling up a day against a bare aggregate scan of the
//! same rows (a day in its own partition where the extension partitions
//! count.requests, and a day without one, as the SQL fallback and late data
//! roll up), and the year query's latency over a year of daily totals.

use std::time::Instant;

use chrono::NaiveDate;
use count_proto::v1::GetPeriodTotalsRequest;
use count_proto::v1::count_service_client::CountServiceClient;

use crate::error::{Error, Result};
use crate::ingest::{ENDPOINTS, copy_rows};
use crate::process::RssSampler;
use crate::{ServerProcess, connect};
use count_service::db::cluster::Cluster;

/// One rollup measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupFigure {
    /// Where the day's rows were.
    pub name: &'static str,
    /// Seconds of the bare scan.
    pub scan: f64,
    /// Seconds of `count.rollup`.
    pub rollup: f64,
}

/// The rollup measurements and the COPY rate of loading their rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollups {
    /// Raw rows rolled up per measurement.
    pub rows: usize,
    /// Rows/s of binary COPY into count.requests.
    pub copy: f64,
    /// One per place the day's rows were.
    pub figures: Vec<RollupFigure>,
}

impl Rollups {
    /// Rollup over scan of the first measurement: the partitioned day where
    /// there is one.
    pub fn ratio(&self) -> f64 {
        self.figures.first().map_or(0.0, |f| f.rollup / f.scan)
    }

    /// The rollup table.
    pub(crate) fn render(&self) -> String {
        let mut out = format!(
            "rollup of {} raw rows over 1000 endpoints          bare scan s   rollup s   rollup/scan\n",
            self.rows
        );
        for f in &self.figures {
            out.push_str(&format!(
                "{:<50}{:>12.2}{:>11.2}{:>13.2}x\n",
                f.name,
                f.scan,
                f.rollup,
                f.rollup / f.scan
            ));
        }
        out
    }
}

/// Loads `rows` raw rows (binary COPY) for a day in its own partition
/// (where the extension provides partitions) and for a day without one,
/// and rolls each day up after a bare scan of its rows.
pub(crate) async fn rollups(cluster: &Cluster, rows: usize) -> Result<Rollups> {
    let sql = connect(cluster).await?;
    sql.batch_execute(include_str!("../queries/reset.sql"))
        .await?;
    sql.execute(
        include_str!("../queries/endpoints.sql"),
        &[&(ENDPOINTS as i64)],
    )
    .await?;
    let partitioned = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    let plain = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap_or_default();
    let available: bool = sql
        .query_one(include_str!("../queries/partitions_available.sql"), &[])
        .await?
        .get(0);
    let mut figures = Vec::new();
    let mut copy = None;
    if available {
        let created: i32 = sql
            .query_one(
                include_str!("../queries/prepare_partition.sql"),
                &[&partitioned],
            )
            .await?
            .get(0);
        if created != 1 {
            return Err(Error::Check(format!(
                "bench self-check failed: no partition created for {partitioned}"
            )));
        }
        copy = Some(copy_rows(cluster, rows, partitioned).await?);
        let (scan, rollup) = rollup(cluster, partitioned, rows).await?;
        figures.push(RollupFigure {
            name: "a day in its own partition (extension)",
            scan,
            rollup,
        });
    }
    let rate = copy_rows(cluster, rows, plain).await?;
    let (scan, rollup) = rollup(cluster, plain, rows).await?;
    figures.push(RollupFigure {
        name: "a day without a partition (SQL fallback)",
        scan,
        rollup,
    });
    Ok(Rollups {
        rows,
        copy: copy.unwrap_or(rate),
        figures,
    })
}

/// Seconds of the bare `GROUP BY` scan and of `count.rollup` over the same
/// `rows` raw rows of `day` (already loaded).
async fn rollup(cluster: &Cluster, day: NaiveDate, rows: usize) -> Result<(f64, f64)> {
    let client = connect(cluster).await?;
    let start = Instant::now();
    let groups = client
        .query(include_str!("../queries/scan.sql"), &[&day])
        .await?;
    let scan = start.elapsed().as_secs_f64();
    let scanned: i64 = groups.iter().map(|r| r.get::<_, i64>(1)).sum();
    let start = Instant::now();
    let moved: i64 = client
        .query_one(include_str!("../../service/queries/rollup.sql"), &[&day])
        .await?
        .get(0);
    let rollup = start.elapsed().as_secs_f64();
    if scanned != rows as i64 || moved != rows as i64 {
        return Err(Error::Check(format!(
            "bench self-check failed: {rows} rows loaded, the scan summed {scanned}, the rollup moved {moved}"
        )));
    }
    Ok((scan, rollup))
}

/// p50 and p99 in ms of `GetPeriodTotals` for a whole year over `keys`
/// endpoints × 365 days of totals, through `server`, and the server's peak
/// RSS in MB meanwhile.
pub(crate) async fn year_query(
    cluster: &Cluster,
    server: &ServerProcess,
    keys: usize,
    calls: usize,
) -> Result<(f64, f64, u64)> {
    let sql = connect(cluster).await?;
    let year = 2025;
    let first = NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or_default();
    sql.execute(include_str!("../queries/endpoints.sql"), &[&(keys as i64)])
        .await?;
    sql.execute(
        include_str!("../queries/year_totals.sql"),
        &[&first, &(keys as i64)],
    )
    .await?;
    sql.execute(include_str!("../queries/month_totals.sql"), &[])
        .await?;
    sql.batch_execute(include_str!("../queries/tenant_tiers.sql"))
        .await?;
    sql.batch_execute(include_str!("../queries/year_ready.sql"))
        .await?;
    let mut client = CountServiceClient::connect(format!("http://{}", server.address)).await?;
    let request = || GetPeriodTotalsRequest {
        period: Some(count_proto::google::r#type::Date {
            year,
            month: 0,
            day: 0,
        }),
    };
    for _ in 0..crate::WARM_CALLS {
        client.get_period_totals(request()).await?;
    }
    let sampler = RssSampler::start(server.pid());
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let counts = client
            .get_period_totals(request())
            .await?
            .into_inner()
            .method_counts;
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        if counts.len() != keys {
            return Err(Error::Check(format!(
                "bench self-check failed: {keys} endpoints, {} totals",
                counts.len()
            )));
        }
    }
    let peak_rss_mb = sampler.stop().await / 1024;
    let (p50, p99) = crate::percentiles(&mut latencies);
    Ok((p50, p99, peak_rss_mb))
}
