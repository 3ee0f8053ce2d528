//! Live totals (`count.totals`, `GetTotals`): exact while ingest, rollups
//! and reads race; late data in every tier; retention; time zones against
//! PostgreSQL's own date_trunc over the raw data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use count_proto::v1::{Dimension, GetTotalsRequest, Granularity, Method};
use count_service::db::store::{FlushBatch, Store, TotalsQuery};

use crate::harness::*;

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn batch(rows: &[(i64, &str, i64)]) -> FlushBatch {
    FlushBatch::of_endpoints(
        vec!["GET"; rows.len()],
        rows.iter().map(|r| r.1.to_owned()).collect(),
        rows.iter().map(|r| at(r.0)).collect(),
        rows.iter().map(|r| r.2).collect(),
    )
}

/// The sum of every tier plus the raw rows, per tier, in one statement (one
/// snapshot): a rollup moves rows into all tiers at once, so the seven must
/// always agree (the minute and tenant tiers only from their complete_from
/// on, which the data here never precedes).
const TIERS_AGREE: &str = "
    SELECT (m + r)::bigint, (h + r)::bigint, (d + r)::bigint, (mo + r)::bigint,
           (th + r)::bigint, (td + r)::bigint, (tm + r)::bigint
      FROM (SELECT (SELECT coalesce(sum(total), 0) FROM count.minute_method_totals) AS m,
                   (SELECT coalesce(sum(q1 + q2 + q3 + q4), 0) FROM count.hourly_method_totals) AS h,
                   (SELECT coalesce(sum(total), 0) FROM count.daily_method_totals) AS d,
                   (SELECT coalesce(sum(total), 0) FROM count.monthly_method_totals) AS mo,
                   (SELECT coalesce(sum(q1 + q2 + q3 + q4), 0) FROM count.hourly_tenant_totals) AS th,
                   (SELECT coalesce(sum(total), 0) FROM count.daily_tenant_totals) AS td,
                   (SELECT coalesce(sum(total), 0) FROM count.monthly_tenant_totals) AS tm,
                   (SELECT coalesce(sum(count), 0) FROM count.requests) AS r) AS s";

#[tokio::test]
async fn reads_are_exact_while_ingest_rollups_and_reads_race() {
    let db = TestDatabase::start().await;
    let store = db.store().await;
    let today = day_start(0);
    // Started and acknowledged requests: a read must count at least what
    // was acknowledged before it began, and at most what was started
    // before it ended.
    let started = Arc::new(AtomicI64::new(0));
    let acked = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // Rollups and reads completed: the writers go on until enough of both
    // raced them (under SERIALIZABLE, rollups retry and take longer).
    let (rolled, read) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    let mut writers = Vec::new();
    for writer in 0..3i64 {
        let (store, started, acked) = (store.clone(), started.clone(), acked.clone());
        let (rolled, read) = (rolled.clone(), read.clone());
        writers.push(tokio::spawn(async move {
            let mut random = Random(0xc0ffee + writer as u64);
            let mut by_day = BTreeMap::<i64, i64>::new();
            for sequence in 1..=5_000 {
                if sequence > 60
                    && rolled.load(Ordering::SeqCst) >= 5
                    && read.load(Ordering::SeqCst) >= 20
                {
                    break;
                }
                let rows: Vec<(i64, String, i64)> = (0..1 + random.below(50))
                    .map(|_| {
                        // Mostly the last three days, some late data of up
                        // to 30 days ago, some of the current minute.
                        let second = match random.below(10) {
                            0 => today - random.below(30 * 86_400) as i64,
                            1 => day_start(0) + 86_400 - 1 - random.below(60) as i64,
                            _ => today - random.below(3 * 86_400) as i64,
                        };
                        (
                            second,
                            format!("/w{}", random.below(20)),
                            1 + random.below(9) as i64,
                        )
                    })
                    .collect();
                let rows: Vec<(i64, &str, i64)> =
                    rows.iter().map(|(s, p, c)| (*s, p.as_str(), *c)).collect();
                let batch = batch(&rows);
                started.fetch_add(batch.requests, Ordering::SeqCst);
                let producer = format!("writer-{writer}");
                store
                    .add_batch(Some((&producer, sequence)), &batch)
                    .await
                    .unwrap();
                acked.fetch_add(batch.requests, Ordering::SeqCst);
                for (second, _, count) in rows {
                    *by_day
                        .entry(second.div_euclid(86_400) * 86_400)
                        .or_default() += count;
                }
            }
            by_day
        }));
    }
    let mut rollups = Vec::new();
    for _ in 0..2 {
        let (store, done, rolled) = (store.clone(), done.clone(), rolled.clone());
        rollups.push(tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                match store.rollup_due().await {
                    Ok(_) => {
                        rolled.fetch_add(1, Ordering::SeqCst);
                    }
                    // Under SERIALIZABLE, a rollup racing this many writers
                    // may still conflict after its retries; the server logs
                    // that and its next period rolls up. Nothing is lost:
                    // the reads below check it.
                    Err(error) if error.code() == tonic::Code::Aborted => {}
                    Err(error) => panic!("{error}"),
                }
            }
        }));
    }
    let range = query(
        at(today - 40 * 86_400),
        at(today + 2 * 86_400),
        "total",
        "UTC",
    );
    let sql = db.sql().await;
    while writers.iter().any(|w| !w.is_finished()) {
        let low = acked.load(Ordering::SeqCst);
        let rows = store.totals(&range).await.unwrap();
        let high = started.load(Ordering::SeqCst);
        let total: i64 = rows.iter().map(|r| r.total).sum();
        assert!(low <= total && total <= high, "{low} <= {total} <= {high}");
        // Under SERIALIZABLE even a read may be the one chosen to fail
        // (40001, as a pivot): read again, as the service's reads do.
        let tiers = loop {
            match sql.query_one(TIERS_AGREE, &[]).await {
                Ok(row) => break row,
                Err(error)
                    if error.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) => {}
                Err(error) => panic!("{error}"),
            }
        };
        let sums: Vec<i64> = (0..7).map(|i| tiers.get(i)).collect();
        assert!(
            sums.windows(2).all(|w| w[0] == w[1]),
            "tiers disagree: {sums:?}"
        );
        read.fetch_add(1, Ordering::SeqCst);
    }
    let mut expected = BTreeMap::<i64, i64>::new();
    for writer in writers {
        for (day, count) in writer.await.unwrap() {
            *expected.entry(day).or_default() += count;
        }
    }
    done.store(true, Ordering::SeqCst);
    for rollup in rollups {
        rollup.await.unwrap();
    }
    let (reads, runs) = (read.load(Ordering::SeqCst), rolled.load(Ordering::SeqCst));
    assert!(
        reads >= 20 && runs >= 5,
        "{reads} reads, {runs} rollups raced"
    );
    // Exact at the end, by day too, before and after a last rollup.
    for _ in 0..2 {
        let by_day: BTreeMap<i64, i64> = store
            .totals(&query(range.start, range.end, "day", "UTC"))
            .await
            .unwrap()
            .iter()
            .map(|r| (r.bucket.timestamp(), r.total))
            .collect();
        assert_eq!(by_day, expected);
        store.rollup_due().await.unwrap();
    }
    assert_eq!(db.bigint("SELECT count(*) FROM count.requests").await, 0);
}

#[tokio::test]
async fn late_data_reaches_every_tier_once_and_retention_keeps_the_coarser_tiers() {
    let db = TestDatabase::start().await;
    let store = db.store().await;
    let sql = db.sql().await;
    let today = day_start(0);
    let minute = today - 86_400 + 600; // yesterday 00:10
    let old = day_start(60) + 3_600; // past the minute tier's 35 days
    store
        .add_batch(None, &batch(&[(minute + 5, "/late", 1), (old, "/late", 2)]))
        .await
        .unwrap();
    store.rollup_due().await.unwrap();
    // Late data: a minute and a day already rolled up, and a time older
    // than the minute tier keeps.
    store
        .add_batch(
            None,
            &batch(&[
                (minute + 50, "/late", 4),
                (minute + 3_600, "/late", 8),
                (old + 1, "/late", 16),
            ]),
        )
        .await
        .unwrap();
    let read = |q: TotalsQuery| {
        let store = store.clone();
        async move {
            store
                .totals(&q)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.bucket.timestamp(), r.total))
                .collect::<Vec<_>>()
        }
    };
    let minutes = query(at(minute), at(minute + 60), "minute", "UTC");
    let days = query(at(day_start(61)), at(today), "day", "UTC");
    let expected_minutes = vec![(minute, 5)];
    let expected_days = vec![(day_start(60), 18), (today - 86_400, 13)];
    // Live before the rollup, the same after it: nothing lost or doubled.
    for _ in 0..2 {
        assert_eq!(read(minutes.clone()).await, expected_minutes);
        assert_eq!(read(days.clone()).await, expected_days);
        store.rollup_due().await.unwrap();
    }
    let per_tier = sql
        .query_one(
            "SELECT (SELECT count(*) FROM count.minute_method_totals WHERE minute < now() - interval '35 days'),
                    (SELECT sum(q1 + q2 + q3 + q4)::bigint FROM count.hourly_method_totals),
                    (SELECT min(complete_from) FROM count.tiers WHERE tier = 'minute') > now() - interval '37 days'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(per_tier.get::<_, i64>(0), 0, "no minute row past retention");
    assert_eq!(per_tier.get::<_, i64>(1), 31, "the hourly tier has it all");
    assert!(per_tier.get::<_, bool>(2));
    // Old minutes are refused, old quarter-hours are read from the hours.
    let error = store
        .totals(&query(at(old - 60), at(old + 60), "minute", "UTC"))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("start_time: per-minute totals are kept from"),
        "{error}"
    );
    assert_eq!(
        read(query(at(old - 900), at(old + 900), "total", "UTC")).await,
        vec![(old - 900, 18)]
    );

    // A shorter retention moves complete_from on: the days stay whole.
    sql.batch_execute("UPDATE count.tiers SET keep = interval '1 day' WHERE tier = 'minute'")
        .await
        .unwrap();
    store.rollup_due().await.unwrap();
    assert_eq!(
        db.bigint(
            "SELECT count(*) FROM count.minute_method_totals
              WHERE minute < (SELECT complete_from FROM count.tiers WHERE tier = 'minute')"
        )
        .await,
        0
    );
    let floor: DateTime<Utc> = sql
        .query_one(
            "SELECT complete_from FROM count.tiers WHERE tier = 'minute'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(floor, at(today - 86_400), "the UTC day a day ago");
    assert_eq!(read(days.clone()).await, expected_days);
}

/// Requests every 7 minutes and some seconds over both DST changes of
/// 2026 in New York and in Lord Howe, counted per zone by PostgreSQL's own
/// date_trunc over the raw times, must match count.totals, whatever mix of
/// tiers and raw rows holds them.
#[tokio::test]
async fn time_zones_match_date_trunc_over_the_raw_data() {
    let db = TestDatabase::start().await;
    let store = db.store().await;
    let sql = db.sql().await;
    sql.batch_execute("CREATE TABLE expected (t timestamptz, c bigint)")
        .await
        .unwrap();
    let mut random = Random(0x7e57);
    let mut rows = Vec::new();
    for (from, to) in [
        ("2026-03-01T00:00:00Z", "2026-04-12T00:00:00Z"),
        ("2026-09-28T00:00:00Z", "2026-11-08T00:00:00Z"),
    ] {
        let mut second = time(from).timestamp();
        while second < time(to).timestamp() {
            rows.push((second, 1 + random.below(5) as i64));
            second += 7 * 60 + random.below(120) as i64;
        }
    }
    for chunk in rows.chunks(2_000) {
        let entries: Vec<(i64, &str, i64)> = chunk.iter().map(|&(s, c)| (s, "/tz", c)).collect();
        store.add_batch(None, &batch(&entries)).await.unwrap();
        sql.execute(
            "INSERT INTO expected SELECT to_timestamp(s), c FROM unnest($1::bigint[], $2::bigint[]) AS x (s, c)",
            &[
                &chunk.iter().map(|r| r.0).collect::<Vec<_>>(),
                &chunk.iter().map(|r| r.1).collect::<Vec<_>>(),
            ],
        )
        .await
        .unwrap();
    }
    // Every other day rolled up; the rest stays raw.
    sql.batch_execute(
        "SELECT count.rollup(d::date) FROM generate_series('2026-03-01'::date, '2026-11-08', interval '2 days') AS d",
    )
    .await
    .unwrap();
    let expected = |start: &str, end: &str, granularity: &str, zone: &str| {
        let sql = &sql;
        let (start, end, granularity, zone) = (
            time(start),
            time(end),
            granularity.to_owned(),
            zone.to_owned(),
        );
        async move {
            sql.query(
                "SELECT CASE WHEN $3 = 'total' THEN $1 ELSE date_trunc($3, t, $4) END AS b, sum(c)::bigint
                   FROM expected WHERE t >= $1 AND t < $2 GROUP BY 1 ORDER BY 1",
                &[&start, &end, &granularity, &zone],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, DateTime<Utc>>(0).timestamp(), r.get::<_, i64>(1)))
            .collect::<Vec<_>>()
        }
    };
    let cases = [
        ("2026-02-20T00:00:00Z", "2026-11-20T00:00:00Z", "day"),
        ("2026-02-20T00:00:00Z", "2026-11-20T00:00:00Z", "week"),
        ("2026-02-20T00:00:00Z", "2026-11-20T00:00:00Z", "month"),
        ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "year"),
        ("2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z", "hour"),
        ("2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z", "hour"),
        ("2026-04-03T00:00:00Z", "2026-04-06T00:00:00Z", "hour"),
        ("2026-10-02T00:00:00Z", "2026-10-05T00:00:00Z", "hour"),
        ("2026-03-05T10:07:00Z", "2026-10-01T13:52:00Z", "total"),
        ("2026-11-01T05:03:00Z", "2026-11-01T07:21:00Z", "minute"),
    ];
    for zone in [
        "UTC",
        "America/New_York",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
    ] {
        for (start, end, granularity) in cases {
            let actual: Vec<(i64, i64)> = store
                .totals(&query(time(start), time(end), granularity, zone))
                .await
                .unwrap()
                .iter()
                .map(|r| (r.bucket.timestamp(), r.total))
                .collect();
            let wanted = expected(start, end, granularity, zone).await;
            assert!(!wanted.is_empty());
            assert_eq!(
                actual, wanted,
                "{granularity} in {zone} from {start} to {end}"
            );
        }
    }
}

#[tokio::test]
async fn get_totals_filters_groups_ranks_and_names_the_bad_field() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let mut client = server.client().await;
    let now = Utc::now().timestamp();
    let minute = now - now % 60;
    let entries = vec![
        entry(Method::Get, "/api/a", minute, 5),
        entry(Method::Get, "/api/b", minute - 60, 3),
        entry(Method::Post, "/api/a", minute - 120, 2),
        entry(Method::Get, "/other", minute - 60, 7),
        entry(Method::Unspecified, "/api/a", minute, 1),
    ];
    client.add(tokio_stream::iter(entries)).await.unwrap();
    let stamp = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let request = GetTotalsRequest {
        start_time: stamp(minute - 300),
        end_time: stamp(minute + 60),
        granularity: Granularity::Minute as i32,
        group_by: vec![Dimension::Endpoint as i32],
        ..GetTotalsRequest::default()
    };
    let rows = |response: count_proto::v1::GetTotalsResponse| {
        response
            .totals
            .iter()
            .map(|t| {
                let method = Method::try_from(t.method).unwrap().as_str_name().to_owned();
                (
                    t.bucket.unwrap().seconds - minute,
                    method,
                    t.path.clone(),
                    t.total,
                    t.live,
                )
            })
            .collect::<Vec<_>>()
    };
    let before = Utc::now().timestamp();
    let response = client
        .get_totals(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(response.as_of.unwrap().seconds >= before);
    let row = |offset: i64, method: &str, path: &str, total: i64| {
        (
            offset,
            method.to_owned(),
            path.to_owned(),
            total,
            offset == 0,
        )
    };
    assert_eq!(
        rows(response),
        vec![
            row(-120, "POST", "/api/a", 2),
            row(-60, "GET", "/api/b", 3),
            row(-60, "GET", "/other", 7),
            row(0, "GET", "/api/a", 5),
            row(0, "METHOD_UNSPECIFIED", "/api/a", 1),
        ]
    );
    // Filters, the top endpoint over the range, and no grouping.
    let filtered = GetTotalsRequest {
        path_prefix: "/api/".to_owned(),
        methods: vec![Method::Get as i32],
        granularity: Granularity::Total as i32,
        ..request.clone()
    };
    assert_eq!(
        rows(
            client
                .get_totals(filtered.clone())
                .await
                .unwrap()
                .into_inner()
        ),
        vec![row(-300, "GET", "/api/a", 5), row(-300, "GET", "/api/b", 3)]
            .into_iter()
            .map(|(o, m, p, t, _)| (o, m, p, t, true))
            .collect::<Vec<_>>()
    );
    let top = GetTotalsRequest {
        top: 1,
        methods: Vec::new(),
        path_prefix: String::new(),
        ..filtered.clone()
    };
    let top = rows(client.get_totals(top).await.unwrap().into_inner());
    // By endpoint: GET /other (7) beats GET /api/a (5).
    assert_eq!(
        top.iter().map(|r| (r.2.as_str(), r.3)).collect::<Vec<_>>(),
        vec![("/other", 7)]
    );
    let summed = GetTotalsRequest {
        group_by: Vec::new(),
        ..filtered
    };
    let summed = rows(client.get_totals(summed).await.unwrap().into_inner());
    assert_eq!(
        summed
            .iter()
            .map(|r| (r.2.as_str(), r.3))
            .collect::<Vec<_>>(),
        vec![("", 8)]
    );

    // Errors name the field.
    let cases = [
        (
            GetTotalsRequest {
                time_zone: "Mars/Olympus_Mons".to_owned(),
                ..request.clone()
            },
            "time_zone",
            "time_zone: unknown time zone",
        ),
        (
            GetTotalsRequest {
                end_time: stamp(minute - 600),
                ..request.clone()
            },
            "end_time",
            "end_time",
        ),
        (
            GetTotalsRequest {
                start_time: stamp(minute - 367 * 86_400),
                ..request.clone()
            },
            "end_time",
            "end_time: a range by minute may be at most 366 days",
        ),
        (
            GetTotalsRequest {
                start_time: stamp(minute - 30),
                ..request.clone()
            },
            "start_time",
            "start_time must be a whole minute",
        ),
        (
            GetTotalsRequest {
                start_time: None,
                ..request.clone()
            },
            "start_time",
            "start_time: must be set",
        ),
    ];
    for (bad, field, expected) in cases {
        let status = client.get_totals(bad).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(expected),
            "{expected}: {status:?}"
        );
        // And as google.rpc.BadRequest, the field apart.
        use tonic_types::StatusExt;
        let violations = status.get_details_bad_request().map(|b| b.field_violations);
        assert_eq!(
            violations
                .as_deref()
                .and_then(|v| v.first())
                .map(|v| v.field.as_str()),
            Some(field),
            "{status:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_default_server_rolls_up_within_seconds_and_totals_stay_the_same() {
    let db = TestDatabase::start().await;
    let store: Store = db.store().await;
    let config = count_service::server::ServerConfig::default();
    assert_eq!(config.rollup_every, Some(Duration::from_secs(5)));
    let server = TestServer::start_with(store.clone(), config).await;
    let mut client = server.client().await;
    let now = Utc::now().timestamp();
    client
        .add(tokio_stream::iter(vec![entry(
            Method::Get,
            "/live",
            now,
            3,
        )]))
        .await
        .unwrap();
    let last_minute = query(at(now - now % 60), at(now - now % 60 + 60), "total", "UTC");
    let total = |store: Store, q: TotalsQuery| async move {
        store
            .totals(&q)
            .await
            .unwrap()
            .iter()
            .map(|r| r.total)
            .sum::<i64>()
    };
    assert_eq!(
        total(store.clone(), last_minute.clone()).await,
        3,
        "live before any rollup"
    );
    eventually(Duration::from_secs(15), || async {
        db.bigint("SELECT count(*) FROM count.requests").await == 0
    })
    .await;
    assert_eq!(
        total(store.clone(), last_minute).await,
        3,
        "the same once rolled up"
    );
    server.stop().await;
}
