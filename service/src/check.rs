//! `count check`: the SQL API run once through on a database, each answer
//! checked against a computation of its own. It is the first thing to run
//! on CockroachDB, where this project's tests cannot go (docs/sql.md,
//! "Portability"), and it works on any database `count serve` could use.
//!
//! It writes under an endpoint of its own (`GET /count-check/<random>`), a
//! day ahead so that no tier's retention or start can refuse the reads,
//! and deletes what it wrote at the end, whatever happened.

use chrono::{
    DateTime, Datelike, Duration, DurationRound, NaiveDate, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use crate::db::store::{FlushBatch, Store, TotalsQuery};
use crate::error::{Error, Result};

/// One step of the check and what came of it.
#[derive(Debug)]
pub struct Step {
    /// What the step tries.
    pub name: &'static str,
    /// `Err` says what went wrong.
    pub outcome: std::result::Result<(), String>,
}

/// The check's counts: (seconds after 18:00 UTC tomorrow, requests). In
/// Asia/Kathmandu (+05:45: its hours are not UTC hours) the first falls on
/// one day, the others on the next.
const POINTS: [(i64, i64); 3] = [(5 * 60 + 10, 2), (20 * 60, 3), (2 * 3600 - 1, 4)];

/// Runs every step on `store`, cleaning up last; the steps say what failed.
pub async fn check(store: &Store) -> Result<Vec<Step>> {
    let path = format!("/count-check/{:016x}", fastrand::u64(..));
    let producer = format!("count-check-{:016x}", fastrand::u64(..));
    let base = (Utc::now() + Duration::days(1))
        .duration_trunc(Duration::days(1))
        .map_err(|e| Error::Setup(format!("tomorrow's date: {e}")))?
        + Duration::hours(18);
    let points: Vec<(DateTime<Utc>, i64)> = POINTS
        .iter()
        .map(|&(offset, requests)| (base + Duration::seconds(offset), requests))
        .collect();
    let steps = vec![
        step(
            "add_batch applies a batch once",
            exactly_once(store, &producer, &path, &points),
        )
        .await,
        step(
            "add_batch refuses a bad entry with 22023, naming it",
            refuses_bad_entry(store, &path),
        )
        .await,
        step(
            "live totals before a rollup",
            totals_match(store, &path, &points),
        )
        .await,
        step(
            "rollup moves the raw counts into the tiers",
            rolls_up(store, &path, &points),
        )
        .await,
        step(
            "the same totals after the rollup",
            totals_match(store, &path, &points),
        )
        .await,
        step(
            "rollup_due runs (what count serve calls)",
            rollup_due(store),
        )
        .await,
        // Last, and a step of its own: a failed clean-up (a role without
        // DELETE, say) must not hide what the others found.
        step("delete what the check wrote", async {
            store
                .forget(&path, &producer)
                .await
                .map_err(|e| format!("GET {path} and producer {producer} are left: {e}"))
        })
        .await,
    ];
    Ok(steps)
}

async fn step(
    name: &'static str,
    outcome: impl std::future::Future<Output = std::result::Result<(), String>>,
) -> Step {
    Step {
        name,
        outcome: outcome.await,
    }
}

fn batch(path: &str, points: &[(DateTime<Utc>, i64)]) -> FlushBatch {
    FlushBatch::of_endpoints(
        vec!["GET"; points.len()],
        vec![path.to_owned(); points.len()],
        points.iter().map(|p| p.0).collect(),
        points.iter().map(|p| p.1).collect(),
    )
}

async fn exactly_once(
    store: &Store,
    producer: &str,
    path: &str,
    points: &[(DateTime<Utc>, i64)],
) -> std::result::Result<(), String> {
    let batch = batch(path, points);
    let first = store
        .add_batch(Some((producer, 1)), &batch)
        .await
        .map_err(|e| e.to_string())?;
    if first != Some(batch.requests) {
        return Err(format!(
            "the first send added {first:?}, not {}",
            batch.requests
        ));
    }
    let again = store
        .add_batch(Some((producer, 1)), &batch)
        .await
        .map_err(|e| e.to_string())?;
    if again.is_some() {
        return Err(format!("the same batch sent again added {again:?}"));
    }
    Ok(())
}

async fn refuses_bad_entry(store: &Store, path: &str) -> std::result::Result<(), String> {
    let mut bad = batch(path, &[(Utc::now(), 1), (Utc::now(), 1)]);
    bad.counts[1] = 0;
    match store.add_batch(None, &bad).await {
        Ok(added) => Err(format!("a count of 0 was accepted ({added:?})")),
        Err(Error::Database(e))
            if e.as_db_error().is_some_and(|db| {
                db.code().code() == "22023" && db.message().contains("counts[2]")
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("refused, but not with 22023 naming counts[2]: {e}")),
    }
}

async fn rolls_up(
    store: &Store,
    path: &str,
    points: &[(DateTime<Utc>, i64)],
) -> std::result::Result<(), String> {
    let mut days: Vec<NaiveDate> = points.iter().map(|p| p.0.date_naive()).collect();
    days.dedup();
    for day in days {
        // count.rollup waits for its turn where rollup_due would skip one.
        store.rollup(day).await.map_err(|e| e.to_string())?;
    }
    match store.raw_requests(path).await.map_err(|e| e.to_string())? {
        0 => Ok(()),
        raw => Err(format!("{raw} requests are still raw rows")),
    }
}

async fn rollup_due(store: &Store) -> std::result::Result<(), String> {
    // Another rollup may be under way (a server's): then this one returns
    // 0 at once, which is right too.
    match store.rollup_due().await {
        Ok(days) if days >= 0 => Ok(()),
        Ok(days) => Err(format!("returned {days}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The reads the check makes: (granularity, time zone), each over the
/// whole days of that zone that hold the points.
const READS: [(&str, &str); 8] = [
    ("minute", "UTC"),
    ("hour", "UTC"),
    ("hour", "Asia/Kathmandu"),
    ("day", "UTC"),
    ("day", "Asia/Kathmandu"),
    ("day", "America/New_York"),
    ("month", "Asia/Kathmandu"),
    ("total", "UTC"),
];

async fn totals_match(
    store: &Store,
    path: &str,
    points: &[(DateTime<Utc>, i64)],
) -> std::result::Result<(), String> {
    for (granularity, time_zone) in READS {
        let zone: Tz = time_zone.parse().map_err(|e| format!("{time_zone}: {e}"))?;
        let (start, end) = whole_days(zone, points);
        let query = TotalsQuery {
            start,
            end,
            granularity: granularity.to_owned(),
            time_zone: time_zone.to_owned(),
            methods: None,
            path: Some(path.to_owned()),
            path_prefix: None,
            tenants: None,
            statuses: None,
            group_by: Vec::new(),
            top: None,
        };
        let read: Vec<(DateTime<Utc>, i64)> = store
            .totals(&query)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|row| (row.bucket, row.total))
            .collect();
        let expected = expected(granularity, zone, start, points);
        if read != expected {
            return Err(format!(
                "by {granularity} in {time_zone}: read {read:?}, expected {expected:?}"
            ));
        }
    }
    Ok(())
}

/// The local days of `zone` that hold `points`, as a UTC range.
fn whole_days(zone: Tz, points: &[(DateTime<Utc>, i64)]) -> (DateTime<Utc>, DateTime<Utc>) {
    let midnight = |t: DateTime<Utc>, days: i64| {
        let day = t.with_timezone(&zone).date_naive() + Duration::days(days);
        zone.from_local_datetime(&day.and_time(NaiveTime::MIN))
            .earliest()
            .map_or(t, |local| local.with_timezone(&Utc))
    };
    let first = points.iter().map(|p| p.0).min().unwrap_or_else(Utc::now);
    let last = points.iter().map(|p| p.0).max().unwrap_or_else(Utc::now);
    (midnight(first, 0), midnight(last, 1))
}

/// Each bucket's total, computed here with chrono-tz: the independent
/// answer `count.totals` must give.
fn expected(
    granularity: &str,
    zone: Tz,
    start: DateTime<Utc>,
    points: &[(DateTime<Utc>, i64)],
) -> Vec<(DateTime<Utc>, i64)> {
    let mut buckets = std::collections::BTreeMap::new();
    for &(t, requests) in points {
        let local = t.with_timezone(&zone);
        let bucket = match granularity {
            "minute" => t - Duration::seconds(i64::from(t.second())),
            // The local hour keeps the offset `t` has, as PostgreSQL's
            // date_trunc does.
            "hour" => t - Duration::seconds(i64::from(local.minute() * 60 + local.second())),
            "day" => whole_days(zone, &[(t, requests)]).0,
            "month" => {
                let first = local.date_naive().with_day(1).unwrap_or(local.date_naive());
                zone.from_local_datetime(&first.and_time(NaiveTime::MIN))
                    .earliest()
                    .map_or(t, |midnight| midnight.with_timezone(&Utc))
            }
            _ => start,
        };
        *buckets.entry(bucket).or_insert(0) += requests;
    }
    buckets.into_iter().collect()
}
