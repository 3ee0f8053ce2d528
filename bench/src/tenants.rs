//! One tenant's reads: a month by day for one tenant of many, the read a
//! per-tenant bill or report makes, over 1,000 endpoints and `TENANTS`
//! tenants with four statuses each (issue 14's target: p99 <= 10 ms).

use std::time::Instant;

use chrono::{Datelike, NaiveDate, Utc};
use count_proto::v1::count_service_client::CountServiceClient;
use count_proto::v1::{GetTotalsRequest, Granularity};

use crate::error::{Error, Result};
use crate::ingest::TENANTS;
use crate::{Programs, ServerProcess, connect};
use count_service::db::cluster::Cluster;

/// One timed read.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRead {
    /// The tenant read.
    pub tenant: String,
    /// Its series.
    pub series: i64,
    /// Latency p50, ms.
    pub p50: f64,
    /// Latency p99, ms.
    pub p99: f64,
    /// The slowest of its [`crate::WARM_CALLS`] untimed calls, ms.
    pub warm_up_max: f64,
}

/// The tenant reads and the store they read.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantReads {
    /// Series stored, all tenants.
    pub series: u64,
    /// Daily rows stored.
    pub daily_rows: u64,
    /// The reads.
    pub reads: Vec<TenantRead>,
}

impl TenantReads {
    /// The table.
    pub(crate) fn render(&self) -> String {
        let mut out = format!(
            "one tenant's last month by day, UTC ({TENANTS} tenants, {} series, {} daily rows)   \
             p50 ms   p99 ms   target         first {} calls, max ms\n",
            self.series,
            self.daily_rows,
            crate::WARM_CALLS
        );
        for read in &self.reads {
            out.push_str(&format!(
                "{:<40}{:>48.1}{:>9.1}   p99 <= 10 ms{:>11.1}\n",
                format!("{} ({} series)", read.tenant, read.series),
                read.p50,
                read.p99,
                read.warm_up_max
            ));
        }
        out
    }
}

/// Loads the store (every series' daily totals for last month), then times
/// `calls` reads of last month by day for the largest tenant and a small
/// one, checking each answer against the tier's rows.
pub(crate) async fn reads(
    cluster: &Cluster,
    programs: &Programs,
    calls: usize,
) -> Result<TenantReads> {
    let sql = connect(cluster).await?;
    sql.batch_execute(include_str!("../queries/reset.sql"))
        .await?;
    let series = sql
        .execute(
            include_str!("../queries/tenant_series.sql"),
            &[&(TENANTS as i32)],
        )
        .await?;
    let today = Utc::now().date_naive();
    let this_month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
    let last_month = this_month
        .checked_sub_months(chrono::Months::new(1))
        .unwrap_or(this_month);
    let midnight = |day: NaiveDate| day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let (start, end) = (midnight(last_month), midnight(this_month));
    let daily_rows = sql
        .execute(include_str!("../queries/tenant_days.sql"), &[&start, &end])
        .await?;
    sql.batch_execute(include_str!("../queries/tenant_months.sql"))
        .await?;
    sql.batch_execute(include_str!("../queries/tenant_tiers.sql"))
        .await?;
    let days = (this_month - last_month).num_days() as usize;

    let server = ServerProcess::start(programs, cluster, &["--rollup-every", "0"]).await?;
    let mut client = CountServiceClient::connect(format!("http://{}", server.address)).await?;
    let stamp = |t: chrono::DateTime<Utc>| {
        Some(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        })
    };
    let mut reads = Vec::new();
    for tenant in ["tenant-0".to_owned(), format!("tenant-{}", TENANTS / 2)] {
        let stored = sql
            .query_one(include_str!("../queries/tenant_total.sql"), &[&tenant])
            .await?;
        let (expected, tenant_series): (i64, i64) = (stored.get(0), stored.get(1));
        let request = GetTotalsRequest {
            start_time: stamp(start),
            end_time: stamp(end),
            granularity: Granularity::Day as i32,
            tenants: vec![tenant.clone()],
            ..GetTotalsRequest::default()
        };
        let mut warm_up_max: f64 = 0.0;
        for _ in 0..crate::WARM_CALLS {
            let started = Instant::now();
            client.get_totals(request.clone()).await?;
            warm_up_max = warm_up_max.max(started.elapsed().as_secs_f64() * 1000.0);
        }
        let mut latencies = Vec::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            let rows = client
                .get_totals(request.clone())
                .await?
                .into_inner()
                .totals;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            let total: i64 = rows.iter().map(|r| r.total).sum();
            if rows.len() != days || total != expected {
                return Err(Error::Check(format!(
                    "bench self-check failed: {tenant}: {} rows totalling {total}, expected {days} \
                     totalling {expected}",
                    rows.len()
                )));
            }
        }
        let (p50, p99) = crate::percentiles(&mut latencies);
        reads.push(TenantRead {
            tenant,
            series: tenant_series,
            p50,
            p99,
            warm_up_max,
        });
    }
    Ok(TenantReads {
        series,
        daily_rows,
        reads,
    })
}
