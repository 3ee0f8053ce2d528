//! Each RPC's success and error cases.

use std::time::Duration;

use chrono::NaiveDate;
use count_proto::google::r#type::Date;
use count_proto::v1::{
    AddBatchRequest, AddRequest, CountDailyTotalsRequest, GetPeriodTotalsRequest,
    ListDailyTotalsRequest, Method,
};
use count_service::ingest::IngestConfig;
use count_service::server::ServerConfig;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::harness::*;

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn noon(day: NaiveDate) -> i64 {
    day.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp()
}

#[tokio::test]
async fn add_counts_every_valid_entry_and_reports_each_invalid_one() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let mut client = server.client().await;
    let t = day_start(1) + 3600;
    let far_future = day_start(-1);
    let messages = vec![
        entry(Method::Get, "/a", t, 0),
        AddRequest {
            path: String::new(),
            ..entry(Method::Get, "/a", t, 1)
        },
        entry(Method::Get, "/a", t + 1, 0),
        AddRequest {
            method: 0,
            ..entry(Method::Get, "/a", t, 1)
        },
        AddRequest {
            method: 42,
            ..entry(Method::Get, "/a", t, 1)
        },
        AddRequest {
            request_timestamp: None,
            ..entry(Method::Get, "/a", t, 1)
        },
        entry(Method::Get, "/a", far_future, 1),
        entry(Method::Post, "/b", t, -3),
        entry(Method::Post, "/b", t, 5),
        entry(Method::Get, "/a", t + 2, 1),
    ];
    let response = client
        .add(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    // METHOD_UNSPECIFIED (message 4) is a method outside the enum: counted
    // under OTHER, read back as METHOD_UNSPECIFIED.
    assert_eq!(response.accepted, 9);
    assert_eq!(response.rejected, 5);
    assert_eq!(response.rejections[0], "message 2: path: must not be empty");
    assert_eq!(
        response.rejections[1],
        "message 5: method: unknown method number 42"
    );
    assert_eq!(
        response.rejections[2],
        "message 6: request_timestamp: must be set"
    );
    assert!(
        response.rejections[3].starts_with("message 7: request_timestamp: ")
            && response.rejections[3].ends_with("is more than 5m in the future"),
        "{}",
        response.rejections[3]
    );
    assert_eq!(
        response.rejections[4],
        "message 8: count: must not be negative, got -3"
    );
    let other: (String, i64) = {
        let row = db
            .sql()
            .await
            .query_one(
                "SELECT m.method, sum(r.count)::bigint FROM count.requests AS r
                   JOIN count.methods AS m ON m.id = r.method_id WHERE m.method NOT IN ('GET', 'POST') GROUP BY 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(other, ("OTHER".to_owned(), 1));

    let day = day_of(t);
    let counts = roll_up(&mut client, day).await;
    assert!(counts.iter().all(|c| c.date == date(day)));
    let expected = Totals::from([
        (("GET".to_owned(), "/a".to_owned()), 3),
        (("METHOD_UNSPECIFIED".to_owned(), "/a".to_owned()), 1),
        (("POST".to_owned(), "/b".to_owned()), 5),
    ]);
    assert_eq!(totals(&counts), expected);
    server.stop().await;
}

#[tokio::test]
async fn count_daily_totals_is_idempotent_and_merges_late_data() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let mut client = server.client().await;
    let t = day_start(2) + 7 * 3600;
    let day = day_of(t);
    let entries: Vec<_> = (0..1000)
        .map(|i| entry(Method::Get, "/x", t + i % 60, 1))
        .collect();
    client.add(tokio_stream::iter(entries)).await.unwrap();
    // Data of the next day must not be rolled into this one.
    client
        .add(tokio_stream::iter(vec![entry(
            Method::Get,
            "/x",
            day_start(1),
            1,
        )]))
        .await
        .unwrap();

    let request = || CountDailyTotalsRequest { date: date(day) };
    let first = client
        .count_daily_totals(request())
        .await
        .unwrap()
        .into_inner();
    let second = client
        .count_daily_totals(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second);
    assert_eq!(
        totals(&first.method_counts)[&("GET".into(), "/x".into())],
        1000
    );

    let late: Vec<_> = (0..10)
        .map(|i| entry(Method::Get, "/x", t + 5000 + i, 1))
        .collect();
    let response = client
        .add(tokio_stream::iter(late))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted, 10);
    let merged = client
        .count_daily_totals(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        totals(&merged.method_counts)[&("GET".into(), "/x".into())],
        1010
    );

    let raw = db
        .bigint("SELECT coalesce(sum(count), 0)::bigint FROM count.requests")
        .await;
    assert_eq!(raw, 1, "only the next day's entry stays raw");
    server.stop().await;
}

#[tokio::test]
async fn list_and_period_totals_are_live_before_and_after_rollups() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let mut client = server.client().await;
    let data = [
        (ymd(2025, 12, 31), Method::Get, "/a", 1),
        (ymd(2026, 1, 1), Method::Get, "/a", 2),
        (ymd(2026, 1, 1), Method::Post, "/b", 3),
        (ymd(2026, 1, 31), Method::Get, "/a", 4),
        (ymd(2026, 2, 1), Method::Get, "/a", 8),
        (ymd(2026, 2, 1), Method::Grpc, "/pkg.S/M", 16),
    ];
    let entries: Vec<_> = data
        .iter()
        .map(|(d, m, p, c)| entry(*m, p, noon(*d), *c))
        .collect();
    client.add(tokio_stream::iter(entries)).await.unwrap();
    // Nothing is rolled up yet: reads are live, from the raw rows.
    let year = client
        .get_period_totals(GetPeriodTotalsRequest {
            period: Some(Date {
                year: 2026,
                month: 0,
                day: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .method_counts;
    assert_eq!(year.iter().map(|c| c.count).sum::<i64>(), 33);
    // Half the days rolled up: the reads below add tiers and raw rows.
    for day in [ymd(2025, 12, 31), ymd(2026, 1, 31)] {
        roll_up(&mut client, day).await;
    }

    let list = client
        .list_daily_totals(ListDailyTotalsRequest {
            start_date: date(ymd(2026, 1, 1)),
            end_date: date(ymd(2026, 1, 31)),
        })
        .await
        .unwrap()
        .into_inner()
        .method_counts;
    let rows: Vec<_> = list
        .iter()
        .map(|c| (c.date.unwrap().day, c.method, c.path.as_str(), c.count))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, Method::Get as i32, "/a", 2),
            (1, Method::Post as i32, "/b", 3),
            (31, Method::Get as i32, "/a", 4)
        ]
    );

    let period = |year, month, day| {
        let mut client = client.clone();
        async move {
            client
                .get_period_totals(GetPeriodTotalsRequest {
                    period: Some(Date { year, month, day }),
                })
                .await
                .map(|r| r.into_inner().method_counts)
        }
    };
    let year = period(2026, 0, 0).await.unwrap();
    assert!(year.iter().all(|c| c.date.is_none()));
    let key = |m: &str, p: &str| (m.to_owned(), p.to_owned());
    assert_eq!(
        totals(&year),
        Totals::from([
            (key("GET", "/a"), 14),
            (key("GRPC", "/pkg.S/M"), 16),
            (key("POST", "/b"), 3)
        ])
    );
    assert_eq!(
        totals(&period(2026, 1, 0).await.unwrap()),
        Totals::from([(key("GET", "/a"), 6), (key("POST", "/b"), 3)])
    );
    assert_eq!(
        totals(&period(2026, 1, 31).await.unwrap()),
        Totals::from([(key("GET", "/a"), 4)])
    );
    assert_eq!(
        totals(&period(2025, 0, 0).await.unwrap()),
        Totals::from([(key("GET", "/a"), 1)])
    );
    assert_eq!(period(2024, 0, 0).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(period(2026, 3, 0).await.unwrap_err().code(), Code::NotFound);

    let cases = [
        (
            period(2026, 13, 0).await,
            "period.month: must be 1 to 12, got 13",
        ),
        (
            period(2026, 2, 30).await,
            "period: 2026-02-30 is not a date",
        ),
        (
            period(2026, 0, 3).await,
            "period.day: must be 0 when month is 0, got 3",
        ),
        (
            period(0, 0, 0).await,
            "period.year: must be 1 to 9999, got 0",
        ),
    ];
    for (result, message) in cases {
        let status = result.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, message)
        );
    }
    let status = client
        .list_daily_totals(ListDailyTotalsRequest {
            start_date: date(ymd(2026, 1, 2)),
            end_date: date(ymd(2026, 1, 1)),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::InvalidArgument,
            "end_date: 2026-01-01 is before start_date 2026-01-02"
        )
    );
    let status = client
        .list_daily_totals(ListDailyTotalsRequest {
            start_date: None,
            end_date: date(ymd(2026, 1, 1)),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "start_date: must be set")
    );
    let status = client
        .count_daily_totals(CountDailyTotalsRequest {
            date: Some(Date {
                year: 2026,
                month: 2,
                day: 29,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "date: 2026-02-29 is not a date")
    );
    server.stop().await;
}

#[tokio::test]
async fn add_batch_applies_each_sequence_exactly_once() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let mut client = server.client().await;
    let t = day_start(1) + 100;
    let batch = |sequence, entries: Vec<AddRequest>| AddBatchRequest {
        producer_id: "producer-a".to_owned(),
        sequence,
        entries,
    };
    let two = || {
        vec![
            entry(Method::Get, "/a", t, 2),
            entry(Method::Get, "/a", t, 3),
        ]
    };

    let first = client
        .add_batch(batch(1, two()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.accepted, first.duplicate), (5, false));
    let again = client
        .add_batch(batch(1, two()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.accepted, again.duplicate), (0, true));
    let older = client
        .add_batch(batch(0, two()))
        .await
        .unwrap()
        .into_inner();
    assert!(older.duplicate);

    // One invalid entry rejects the whole batch and does not use the sequence.
    let mut bad = two();
    bad.push(AddRequest {
        path: String::new(),
        ..entry(Method::Get, "/a", t, 1)
    });
    let status = client.add_batch(batch(2, bad)).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "entries[2].path: must not be empty")
    );
    let second = client
        .add_batch(batch(2, two()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((second.accepted, second.duplicate), (5, false));

    let other_producer = AddBatchRequest {
        producer_id: "producer-b".to_owned(),
        ..batch(1, two())
    };
    assert!(
        !client
            .add_batch(other_producer)
            .await
            .unwrap()
            .into_inner()
            .duplicate
    );

    let status = client
        .add_batch(AddBatchRequest {
            producer_id: String::new(),
            ..batch(9, two())
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "producer_id: must not be empty")
    );
    let status = client.add_batch(batch(u64::MAX, two())).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::InvalidArgument,
            "sequence: must be at most 9223372036854775807, got 18446744073709551615"
        )
    );

    let counts = roll_up(&mut client, day_of(t)).await;
    assert_eq!(
        totals(&counts),
        Totals::from([(("GET".into(), "/a".into()), 15)])
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_after_the_grace_period_and_commits_them() {
    let db = TestDatabase::start().await;
    let config = ServerConfig {
        shutdown_grace: Duration::from_millis(300),
        ingest: IngestConfig {
            flush_interval: Duration::from_secs(3600),
            ..IngestConfig::default()
        },
        ..config()
    };
    let server = TestServer::start_with(db.store().await, config).await;
    let mut client = server.client().await;
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    let t = day_start(1);
    let call = tokio::spawn(async move { client.add(ReceiverStream::new(receiver)).await });
    for i in 0..100 {
        sender
            .send(entry(Method::Put, "/open", t + i, 1))
            .await
            .unwrap();
    }
    // The stream stays open: the sender lives on. Wait until the server has
    // read all 100 (the channel is empty), then shut down.
    eventually(Duration::from_secs(10), || {
        let empty = sender.capacity() == sender.max_capacity();
        async move { empty }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await;
    let response = call.await.unwrap().unwrap().into_inner();
    assert_eq!(response.accepted, 100);
    let raw: i64 = db
        .sql()
        .await
        .query_one("SELECT sum(count)::bigint FROM count.requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw, 100);
    drop(sender);
}
