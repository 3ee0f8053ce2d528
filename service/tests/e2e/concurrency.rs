//! Exact totals under concurrency: many streams, two servers on one
//! database, and the race on a brand-new method+path.

use std::collections::BTreeMap;

use count_proto::v1::{AddBatchRequest, ListDailyTotalsRequest, Method};

use crate::harness::*;

const STREAMS: usize = 8;
const ENTRIES_PER_STREAM: usize = 20_000;
const KEYS: usize = 50;
const DAYS: i64 = 3;

/// The (method, path, second, count) of a stream's i-th entry: 50 keys over
/// 3 days, timestamps spread over each day's first minutes.
fn workload(stream: usize, i: usize) -> (Method, String, i64, i64) {
    let key = (i * 7 + stream) % KEYS;
    let method = [Method::Get, Method::Post, Method::Grpc][key % 3];
    let day = ((i / KEYS) as i64 + stream as i64) % DAYS + 1;
    let second = day_start(day) + (i % 600) as i64;
    let count = 1 + (i % 4) as i64;
    (method, format!("/key/{key}"), second, count)
}

#[tokio::test]
async fn eight_streams_of_twenty_thousand_entries_give_exact_totals() {
    let db = TestDatabase::start().await;
    let mut config = config();
    // Small batches, so every stream flushes many times while it runs.
    config.ingest.max_batch_keys = 1_000;
    let server = TestServer::start_with(db.store().await, config).await;

    let mut expected: BTreeMap<(chrono::NaiveDate, String, String), i64> = BTreeMap::new();
    let mut streams = Vec::new();
    for stream in 0..STREAMS {
        let mut messages = Vec::with_capacity(ENTRIES_PER_STREAM);
        for i in 0..ENTRIES_PER_STREAM {
            let (method, path, second, count) = workload(stream, i);
            *expected
                .entry((
                    day_of(second),
                    method.as_str_name().to_owned(),
                    path.clone(),
                ))
                .or_default() += count;
            messages.push(entry(method, &path, second, count));
        }
        let mut client = server.client().await;
        streams.push(tokio::spawn(async move {
            client
                .add(tokio_stream::iter(messages))
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut accepted = 0;
    for stream in streams {
        let response = stream.await.unwrap();
        assert_eq!(response.rejected, 0);
        accepted += response.accepted;
    }
    assert_eq!(accepted, expected.values().sum::<i64>());

    let mut client = server.client().await;
    let mut listed = BTreeMap::new();
    for days_ago in 1..=DAYS {
        let day = day_of(day_start(days_ago));
        let counts = roll_up(&mut client, day).await;
        assert_eq!(counts.len(), KEYS);
        for ((method, path), total) in totals(&counts) {
            listed.insert((day, method, path), total);
        }
    }
    assert_eq!(listed, expected);

    let list = client
        .list_daily_totals(ListDailyTotalsRequest {
            start_date: date(day_of(day_start(DAYS))),
            end_date: date(day_of(day_start(1))),
        })
        .await
        .unwrap()
        .into_inner()
        .method_counts;
    assert_eq!(list.len(), KEYS * DAYS as usize);
    assert_eq!(list.iter().map(|c| c.count).sum::<i64>(), accepted);
    server.stop().await;
}

#[tokio::test]
async fn two_servers_on_one_database_race_on_new_endpoints_without_losing_a_count() {
    let db = TestDatabase::start().await;
    // Both servers migrate the empty database at the same moment.
    let (store_a, store_b) = tokio::join!(db.store(), db.store());
    let servers = [
        TestServer::start_with(store_a, config()).await,
        TestServer::start_with(store_b, config()).await,
    ];
    let t = day_start(1) + 42;
    const ROUNDS: usize = 5;
    const CALLERS: usize = 16;
    const NEW_KEYS: usize = 20;
    for round in 0..ROUNDS {
        let mut calls = Vec::new();
        for caller in 0..CALLERS {
            let mut client = servers[caller % 2].client().await;
            let entries: Vec<_> = (0..NEW_KEYS)
                .map(|k| entry(Method::Get, &format!("/round/{round}/key/{k}"), t, 1))
                .collect();
            calls.push(tokio::spawn(async move {
                // Streams and batches both race on the same new keys.
                if caller % 4 == 0 {
                    client
                        .add(tokio_stream::iter(entries))
                        .await
                        .unwrap()
                        .into_inner()
                        .accepted
                } else {
                    let request = AddBatchRequest {
                        producer_id: format!("caller-{caller}"),
                        sequence: round as u64,
                        entries,
                    };
                    client
                        .add_batch(request)
                        .await
                        .unwrap()
                        .into_inner()
                        .accepted
                }
            }));
        }
        for call in calls {
            assert_eq!(call.await.unwrap(), NEW_KEYS as i64);
        }
    }
    let mut client = servers[1].client().await;
    let counts = roll_up(&mut client, day_of(t)).await;
    let totals = totals(&counts);
    assert_eq!(totals.len(), ROUNDS * NEW_KEYS);
    assert!(
        totals.values().all(|&total| total == CALLERS as i64),
        "{totals:?}"
    );
    let endpoints = db.bigint("SELECT count(*) FROM count.methods").await;
    assert_eq!(endpoints, (ROUNDS * NEW_KEYS) as i64);
    for server in servers {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_of_the_same_new_endpoints_never_deadlock() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let t = day_start(1) + 7;
    for round in 0..4 {
        let mut calls = Vec::new();
        for caller in 0..8u64 {
            let mut client = server.client().await;
            // The same 500 new endpoints; the server's aggregation orders
            // them differently in each call.
            let entries: Vec<_> = (0..500)
                .map(|k| {
                    entry(
                        Method::Post,
                        &format!("/overlap/{round}/{}", (k * 7 + caller * 13) % 500),
                        t,
                        1,
                    )
                })
                .collect();
            calls.push(tokio::spawn(async move {
                let request = AddBatchRequest {
                    producer_id: format!("overlap-{caller}"),
                    sequence: round,
                    entries,
                };
                client
                    .add_batch(request)
                    .await
                    .map(|r| r.into_inner().accepted)
            }));
        }
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), 500);
        }
    }
    let sql = db.sql().await;
    let (endpoints, total): (i64, i64) = {
        let row = sql
            .query_one("SELECT (SELECT count(*) FROM count.methods), (SELECT sum(count)::bigint FROM count.requests)", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((endpoints, total), (4 * 500, 4 * 8 * 500));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_serializable_concurrent_streams_and_rollups_lose_nothing() {
    // CockroachDB's only isolation level, and a PostgreSQL default some
    // DBAs choose: flushes and rollups collide and must be retried.
    let db = TestDatabase::start_with(
        test_backend(),
        vec![(
            "default_transaction_isolation".to_owned(),
            "serializable".to_owned(),
        )],
    )
    .await;
    let server = TestServer::start(&db).await;
    let t = day_start(1);
    let rolling = tokio::sync::watch::channel(true);
    let roller = {
        let store = db.store().await;
        let mut running = rolling.1.clone();
        tokio::spawn(async move {
            let mut rollups = 0;
            while *running.borrow_and_update() {
                store
                    .rollup_due()
                    .await
                    .expect("rollup_due, retried as needed");
                rollups += 1;
            }
            rollups
        })
    };
    let mut streams = Vec::new();
    for s in 0..4i64 {
        let mut client = server.client().await;
        streams.push(tokio::spawn(async move {
            let mut accepted = 0;
            for round in 0..20i64 {
                // Endpoints new in every round, the same in every stream:
                // inserting them, and the daily totals they roll into, is
                // where transactions meet.
                let messages: Vec<_> = (0..200)
                    .map(|i| {
                        let path = format!("/serial/{round}/{}", i % 10);
                        entry(Method::Get, &path, t + round, 1 + s)
                    })
                    .collect();
                accepted += client
                    .add(tokio_stream::iter(messages))
                    .await
                    .expect("no serialization failure reaches a client")
                    .into_inner()
                    .accepted;
            }
            accepted
        }));
    }
    let mut acknowledged = 0;
    for stream in streams {
        acknowledged += stream.await.unwrap();
    }
    rolling.0.send(false).unwrap();
    let rollups = roller.await.unwrap();
    assert!(rollups > 0);
    // 4 streams x 20 rounds x 200 messages, stream s counting 1 + s each.
    assert_eq!(acknowledged, 20 * 200 * (1 + 2 + 3 + 4));
    let held = db
        .bigint(
            "SELECT ((SELECT coalesce(sum(total), 0) FROM count.daily_method_totals)
                   + (SELECT coalesce(sum(count), 0) FROM count.requests))::bigint",
        )
        .await;
    assert_eq!(held, acknowledged);
    server.stop().await;
}

#[tokio::test]
async fn migrators_wait_for_a_live_migration_lease_and_take_over_an_expired_one() {
    let db = TestDatabase::start().await;
    let _first = db.store().await;
    let sql = db.sql().await;
    let lease = |holder: &str, expires_in: &str| {
        format!(
            "INSERT INTO count_migration_lease VALUES (1, '{holder}', now() + interval '{expires_in}')
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
        )
    };
    // A migrator that died an hour ago: its lease has expired.
    sql.batch_execute(&lease("dead", "-1 hour")).await.unwrap();
    let started = std::time::Instant::now();
    let _second = db.store().await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // One that is migrating now, for two more seconds: the next waits.
    sql.batch_execute(&lease("busy", "2 seconds"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let _third = db.store().await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    // Each migrator gave the lease back.
    let leases = db
        .bigint("SELECT count(*) FROM count_migration_lease")
        .await;
    assert_eq!(leases, 0);
}

#[tokio::test]
async fn a_long_migration_keeps_its_lease_renewed_and_gives_it_back() {
    // A migration held up for longer than a renewal period (10 s): the
    // test locks refinery's history table, which the migrator reads once
    // it holds the lease.
    let db = TestDatabase::start().await;
    let _first = db.store().await;
    let blocker = db.sql().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE refinery_schema_history IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let migrator = tokio::process::Command::from(count_command())
        .args(["migrate", "--database-url", &db.cluster.url("count")])
        .output();
    let migrator = tokio::spawn(migrator);
    let sql = db.sql().await;
    let expires_at = || async {
        sql.query_opt("SELECT expires_at FROM count_migration_lease", &[])
            .await
            .unwrap()
            .map(|row| row.get::<_, std::time::SystemTime>(0))
    };
    let mut taken = None;
    for _ in 0..100 {
        taken = expires_at().await;
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let taken = taken.expect("the migrator takes the lease");
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let renewed = expires_at().await.expect("the lease is still held");
    assert!(
        renewed.duration_since(taken).unwrap() >= std::time::Duration::from_secs(9),
        "not renewed: {taken:?} then {renewed:?}"
    );
    assert!(!migrator.is_finished(), "the migrator waits for the lock");
    blocker.batch_execute("COMMIT").await.unwrap();
    let output = migrator.await.unwrap().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        db.bigint("SELECT count(*) FROM count_migration_lease")
            .await,
        0
    );
}
