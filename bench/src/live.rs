//! Live totals: ingest with continuous rollups against the same ingest
//! without them, and live reads (`GetTotals`) over a store of 30 days of
//! minute totals and a year of long-term ones, with the storage they take.

use std::time::Instant;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use count_proto::v1::count_service_client::CountServiceClient;
use count_proto::v1::{Dimension, GetTotalsRequest, Granularity};

use crate::error::{Error, Result};
use crate::ingest::{Keys, ServeFigure, serve_load};
use crate::{Programs, ServerProcess, connect};
use count_service::db::cluster::Cluster;

/// How often the server rolls up in the "rollups on" runs: more often than
/// `count serve`'s default (5 s), so that every run, however short, has
/// several rollups racing it.
const ROLLUP_EVERY: &str = "1s";

/// One stream count, rollups off and on.
#[derive(Debug, Clone, PartialEq)]
pub struct OnOffFigure {
    /// Streams used.
    pub streams: usize,
    /// `count serve --rollup-every 0`.
    pub off: ServeFigure,
    /// `count serve --rollup-every 1s`.
    pub on: ServeFigure,
}

impl OnOffFigure {
    /// Rate with rollups over rate without (target: at least 0.9).
    pub fn ratio(&self) -> f64 {
        self.on.rate / self.off.rate
    }
}

/// Streams `total` requests at 4 and 16 streams into a server that never
/// rolls up and into one rolling up every second.
pub(crate) async fn rollups_on_off(
    cluster: &Cluster,
    programs: &Programs,
    total: usize,
) -> Result<Vec<OnOffFigure>> {
    // One server at a time: an idle server rolling up would roll up the
    // other's loads.
    let mut off = Vec::new();
    let server = ServerProcess::start(programs, cluster, &["--rollup-every", "0"]).await?;
    for streams in [4, 16] {
        off.push(serve_load(cluster, &server, Keys::Live, streams, total).await?);
    }
    drop(server);
    let server = ServerProcess::start(programs, cluster, &["--rollup-every", ROLLUP_EVERY]).await?;
    let mut figures = Vec::new();
    for (streams, off) in [4, 16].into_iter().zip(off) {
        figures.push(OnOffFigure {
            streams,
            off,
            on: serve_load(cluster, &server, Keys::Live, streams, total).await?,
        });
    }
    Ok(figures)
}

/// The on/off table.
pub(crate) fn render_on_off(figures: &[OnOffFigure]) -> String {
    let mut out = format!(
        "ingest with rollups (requests/s)   rollups off   rollups on (every {ROLLUP_EVERY})   on/off   target\n"
    );
    for f in figures {
        out.push_str(&format!(
            "{:<35}{:>11.0}{:>26.0}{:>8.2}x   >= 0.90x\n",
            format!("{} streams", f.streams),
            f.off.rate,
            f.on.rate,
            f.ratio()
        ));
    }
    out
}

/// Seconds `count.rollup_due()` takes over the `rows` raw rows the
/// database holds (what the overload left), checking that it moved them
/// all and kept every request.
pub(crate) async fn roll_up_backlog(cluster: &Cluster, rows: i64) -> Result<f64> {
    let sql = connect(cluster).await?;
    let before = sql
        .query_one(include_str!("../queries/raw_rows.sql"), &[])
        .await?;
    let start = Instant::now();
    sql.execute(include_str!("../../service/queries/rollup_due.sql"), &[])
        .await?;
    let seconds = start.elapsed().as_secs_f64();
    let after = sql
        .query_one(include_str!("../queries/raw_rows.sql"), &[])
        .await?;
    let (raw_before, requests_before): (i64, i64) = (before.get(0), before.get(1));
    let (raw_after, requests_after): (i64, i64) = (after.get(0), after.get(1));
    if raw_before != rows || raw_after != 0 || requests_after != requests_before {
        return Err(Error::Check(format!(
            "bench self-check failed: rollup of {rows} raw rows: {raw_before} before, {raw_after} after, \
             requests {requests_before} before, {requests_after} after"
        )));
    }
    Ok(seconds)
}

/// One live read, timed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadFigure {
    /// What was read.
    pub name: String,
    /// Median latency, ms.
    pub p50: f64,
    /// 99th percentile latency, ms.
    pub p99: f64,
    /// The target for p99, as written in the table.
    pub target: String,
    /// The slowest of its [`crate::WARM_CALLS`] untimed calls, ms.
    pub warm_up_max: f64,
}

/// The live reads and the store they read.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveReads {
    /// Endpoints stored.
    pub keys: usize,
    /// Days of minute totals stored.
    pub minute_days: usize,
    /// One per read.
    pub figures: Vec<ReadFigure>,
    /// Bytes of the long-term tiers (hourly, daily, monthly; tables and
    /// indexes) per endpoint and year of data.
    pub long_term_bytes_per_endpoint_year: f64,
    /// Bytes of the minute tier per endpoint and day of data.
    pub minute_bytes_per_endpoint_day: f64,
    /// Seconds it took to write the store, and the minute and hour rows
    /// written.
    pub load: (f64, i64),
    /// The minute after the store's last counts: the moment its reads are
    /// made at, whenever they run.
    pub end: DateTime<Utc>,
}

/// Builds the store: `keys` endpoints with a year of long-term totals
/// (every quarter-hour of every hour) and `minute_days` days of minute
/// totals, each tier the sums of the finer one as rollups keep them (written
/// in bulk: through `count.add_totals` the year took over ten minutes), plus
/// a few seconds of raw rows; then times each read `calls` times through a
/// fresh `count serve`.
pub(crate) async fn reads(
    cluster: &Cluster,
    programs: &Programs,
    keys: usize,
    minute_days: usize,
    calls: usize,
) -> Result<LiveReads> {
    let sql = connect(cluster).await?;
    sql.batch_execute(include_str!("../queries/reset.sql"))
        .await?;
    sql.execute(include_str!("../queries/endpoints.sql"), &[&(keys as i64)])
        .await?;
    let now = Utc::now();
    let minute = DateTime::from_timestamp(now.timestamp() - now.timestamp() % 60, 0).unwrap_or(now);
    // From a UTC midnight: the store writes whole days.
    let minutes_from = (minute - Duration::days(minute_days as i64))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let year_ago = minute - Duration::days(365);
    sql.execute(
        include_str!("../queries/live_minutes_from.sql"),
        &[&minutes_from],
    )
    .await?;
    let start = Instant::now();
    let minutes = sql
        .execute(
            include_str!("../queries/live_minutes.sql"),
            &[&(keys as i64), &minutes_from, &minute],
        )
        .await?;
    let hours = sql
        .execute(
            include_str!("../queries/live_hours.sql"),
            &[&(keys as i64), &year_ago, &minutes_from],
        )
        .await?;
    sql.batch_execute(include_str!("../queries/live_days.sql"))
        .await?;
    let load = (start.elapsed().as_secs_f64(), (minutes + hours) as i64);
    sql.batch_execute(include_str!("../queries/tenant_tiers.sql"))
        .await?;
    sql.execute(
        include_str!("../queries/live_raw.sql"),
        &[&(keys as i64), &now],
    )
    .await?;
    sql.batch_execute(include_str!("../queries/live_ready.sql"))
        .await?;
    let sizes = sql
        .query_one(include_str!("../queries/live_sizes.sql"), &[])
        .await?;
    let (long_term, minutes): (i64, i64) = (sizes.get(0), sizes.get(1));

    let server = ServerProcess::start(programs, cluster, &["--rollup-every", "0"]).await?;
    let mut client = CountServiceClient::connect(format!("http://{}", server.address)).await?;
    let stamp = |t: DateTime<Utc>| {
        Some(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        })
    };
    let next_minute = minute + Duration::minutes(1);
    let hour_ago = next_minute - Duration::hours(1);
    let today = minute
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    // Twelve whole months, this one included.
    let month = |months_back: u32| {
        let first = NaiveDate::from_ymd_opt(minute.year(), minute.month(), 1).unwrap_or_default();
        first
            .checked_sub_months(chrono::Months::new(months_back))
            .unwrap_or(first)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
    };
    let (year_start, year_end) = (month(11), month(0) + chrono::Months::new(1));
    // Asia/Kathmandu is UTC+05:45 all year: its months start 5h45 earlier.
    let kathmandu = Duration::minutes(5 * 60 + 45);
    let by_endpoint = vec![Dimension::Endpoint as i32];
    let reads = [
        (
            "last 60 minutes by minute, one endpoint".to_owned(),
            "<= 5 ms".to_owned(),
            GetTotalsRequest {
                start_time: stamp(hour_ago),
                end_time: stamp(next_minute),
                granularity: Granularity::Minute as i32,
                path: "/bench/1".to_owned(),
                group_by: by_endpoint.clone(),
                ..GetTotalsRequest::default()
            },
            (59, 60),
        ),
        (
            // Its rows grow through the UTC day: say how many hours it had.
            format!(
                "today by hour ({} hours so far), all endpoints",
                ((next_minute - today).num_minutes() + 59) / 60
            ),
            "<= 20 ms".to_owned(),
            GetTotalsRequest {
                start_time: stamp(today),
                end_time: stamp(next_minute),
                granularity: Granularity::Hour as i32,
                group_by: by_endpoint.clone(),
                ..GetTotalsRequest::default()
            },
            (keys, keys * 24),
        ),
        (
            "a year by month, UTC".to_owned(),
            "<= 10 ms".to_owned(),
            GetTotalsRequest {
                start_time: stamp(year_start),
                end_time: stamp(year_end),
                granularity: Granularity::Month as i32,
                group_by: by_endpoint.clone(),
                ..GetTotalsRequest::default()
            },
            (keys * 12, keys * 12),
        ),
        (
            "a year by month, Asia/Kathmandu".to_owned(),
            "<= 3x UTC".to_owned(),
            GetTotalsRequest {
                start_time: stamp(year_start - kathmandu),
                end_time: stamp(year_end - kathmandu),
                granularity: Granularity::Month as i32,
                time_zone: "Asia/Kathmandu".to_owned(),
                group_by: by_endpoint.clone(),
                ..GetTotalsRequest::default()
            },
            (keys * 12, keys * 12),
        ),
        // Today by hour and the year by month in UTC, summed over every
        // endpoint (no grouping): the other reading of the targets' "today
        // by hour for all endpoints" and "a year by month", with no target
        // of their own.
        (
            "today by hour, every endpoint in one sum".to_owned(),
            "none".to_owned(),
            GetTotalsRequest {
                start_time: stamp(today),
                end_time: stamp(next_minute),
                granularity: Granularity::Hour as i32,
                ..GetTotalsRequest::default()
            },
            (1, 24),
        ),
        (
            "a year by month, UTC, every endpoint in one sum".to_owned(),
            "none".to_owned(),
            GetTotalsRequest {
                start_time: stamp(year_start),
                end_time: stamp(year_end),
                granularity: Granularity::Month as i32,
                ..GetTotalsRequest::default()
            },
            (12, 12),
        ),
        (
            "top 10 endpoints, last hour".to_owned(),
            "<= 20 ms".to_owned(),
            GetTotalsRequest {
                start_time: stamp(hour_ago),
                end_time: stamp(next_minute),
                granularity: Granularity::Total as i32,
                group_by: by_endpoint,
                top: 10,
                ..GetTotalsRequest::default()
            },
            (keys.min(10), keys.min(10)),
        ),
    ];
    let mut figures = Vec::new();
    for (name, target, request, (fewest, most)) in reads {
        let mut warm_up_max: f64 = 0.0;
        for _ in 0..crate::WARM_CALLS {
            let start = Instant::now();
            client.get_totals(request.clone()).await?;
            warm_up_max = warm_up_max.max(start.elapsed().as_secs_f64() * 1000.0);
        }
        let mut latencies = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            let rows = client
                .get_totals(request.clone())
                .await?
                .into_inner()
                .totals;
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
            if rows.len() < fewest || rows.len() > most {
                return Err(Error::Check(format!(
                    "bench self-check failed: {name}: {} rows, expected {fewest} to {most}",
                    rows.len()
                )));
            }
        }
        let (p50, p99) = crate::percentiles(&mut latencies);
        figures.push(ReadFigure {
            name,
            p50,
            p99,
            target,
            warm_up_max,
        });
    }
    let endpoint_years = keys as f64 * (365.0 + 1.0) / 365.0;
    Ok(LiveReads {
        keys,
        minute_days,
        figures,
        long_term_bytes_per_endpoint_year: long_term as f64 / endpoint_years,
        minute_bytes_per_endpoint_day: minutes as f64 / (keys * minute_days.max(1)) as f64,
        load,
        end: next_minute,
    })
}

impl LiveReads {
    /// The live reads table.
    pub(crate) fn render(&self) -> String {
        let mut out = format!(
            "live reads (GetTotals; {} endpoints, {} days by minute, a year by hour)   p50 ms   p99 ms   target p99   first {} calls, max ms\n",
            self.keys,
            self.minute_days,
            crate::WARM_CALLS
        );
        for f in &self.figures {
            out.push_str(&format!(
                "{:<71}{:>8.1}{:>9.1}   {:<13}{:>8.1}\n",
                f.name, f.p50, f.p99, f.target, f.warm_up_max
            ));
        }
        out.push_str(&format!(
            "storage: long-term tiers {:.2} MB per endpoint-year (target <= 2 MB); minute tier {:.1} kB per endpoint-day\n",
            self.long_term_bytes_per_endpoint_year / 1e6,
            self.minute_bytes_per_endpoint_day / 1e3,
        ));
        out.push_str(&format!(
            "store written in bulk: {} minute and hour rows in {:.1} s\n",
            self.load.1, self.load.0
        ));
        out
    }
}
