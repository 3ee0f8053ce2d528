//! The native extension against the portable fallback: identical results
//! (a differential test), switching a live database over, commit-safe id
//! caching, and the rollup run by a real pg_cron. These set up their own
//! backends, so `scripts/test` runs them once, not once per backend.

use std::time::Duration;

use chrono::DateTime;
use count_service::db::store::FlushBatch;
use count_service::db::store::{Backend, Store};

use crate::harness::*;

/// Every method name count.add_batch takes, from the proto's enum.
fn methods() -> Vec<&'static str> {
    (0..=255)
        .filter_map(|n| count_proto::v1::Method::try_from(n).ok())
        .map(count_service::entry::stored_method)
        .collect()
}

fn random_batch(random: &mut Random, keys: u64, rows: usize, days: i64) -> FlushBatch {
    let mut batch = FlushBatch::default();
    let methods = methods();
    for _ in 0..rows {
        let key = random.below(keys);
        let day = random.below(days as u64) as i64;
        // Day 0 is today: rollup_due must leave it raw.
        let second = day_start(day) + random.below(86_400) as i64;
        batch
            .methods
            .push(methods[(key % methods.len() as u64) as usize]);
        batch.paths.push(format!("/k/{key}"));
        // Tenants and statuses too: the two backends must resolve the
        // same series.
        batch
            .tenants
            .push(["", "a", "b"][(key % 3) as usize].to_owned());
        let grpc = batch.methods.last() == Some(&"GRPC");
        batch.status_codes.push(match key % 4 {
            0 => None,
            1 if grpc => Some(0),
            1 => Some(200),
            _ if grpc => Some(13),
            _ => Some(503),
        });
        batch
            .timestamps
            .push(DateTime::from_timestamp(second, 0).unwrap());
        let count = 1 + random.below(5) as i64;
        batch.counts.push(count);
        batch.requests += count;
    }
    batch
}

/// What a database holds, as text rows: rolled-up totals, then raw rows
/// summed by endpoint and second.
async fn contents(db: &TestDatabase) -> (Vec<String>, Vec<String>) {
    let sql = db.sql().await;
    let totals = sql
        .query(
            "SELECT d.day::text || ' ' || m.method || ' ' || m.path || ' ' || d.total
               FROM count.daily_method_totals AS d JOIN count.methods AS m ON m.id = d.method_id
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let raw = sql
        .query(
            "SELECT m.method || ' ' || m.path || ' ' || r.request_timestamp::text || ' ' || sum(r.count)
               FROM count.requests AS r JOIN count.methods AS m ON m.id = r.method_id
              GROUP BY m.method, m.path, r.request_timestamp ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    (
        totals.iter().map(|r| r.get(0)).collect(),
        raw.iter().map(|r| r.get(0)).collect(),
    )
}

#[tokio::test]
async fn extension_and_fallback_give_identical_results_on_a_random_workload() {
    let (native, portable) = tokio::join!(
        TestDatabase::start_with(Backend::Extension, Vec::new()),
        TestDatabase::start_with(Backend::Sql, Vec::new())
    );
    let (native_store, portable_store) = (native.store().await, portable.store().await);
    // Partitions for every day of the workload on the extension's side, so
    // its rollups take the partitioned path (rollup_due drops the old ones
    // once emptied; rows of those days then take the default partition's).
    native
        .sql()
        .await
        .execute(
            "SELECT count.prepare_partitions($1, 6)",
            &[&day_of(day_start(5))],
        )
        .await
        .unwrap();
    let mut random = Random(0x5eed_c0de);
    for round in 0..60u64 {
        let rows = 1 + random.below(400) as usize;
        let batch = random_batch(&mut random, 300, rows, 6);
        // Some rounds are exactly-once batches, replayed now and then.
        let producer = (round % 3 == 0).then_some(("differential", (round / 2) as i64));
        let (a, b) = tokio::join!(
            native_store.add_batch(producer, &batch),
            portable_store.add_batch(producer, &batch)
        );
        assert_eq!(a.unwrap(), b.unwrap(), "round {round}");
        match random.below(6) {
            0 => {
                let day = day_of(day_start(random.below(6) as i64));
                let (a, b) = tokio::join!(native_store.rollup(day), portable_store.rollup(day));
                assert_eq!(a.unwrap(), b.unwrap(), "rollup {day} in round {round}");
            }
            1 => {
                let (a, b) = tokio::join!(native_store.rollup_due(), portable_store.rollup_due());
                assert_eq!(a.unwrap(), b.unwrap(), "rollup_due in round {round}");
            }
            _ => {}
        }
    }
    let (native_contents, portable_contents) = tokio::join!(contents(&native), contents(&portable));
    assert!(!native_contents.0.is_empty() && !native_contents.1.is_empty());
    assert_eq!(native_contents, portable_contents);

    // Bad calls fail the same way on both.
    for arguments in [
        "ARRAY['GET', 'FETCH'], ARRAY['/a', '/b'], ARRAY[now(), now()], ARRAY[1, 1]",
        "ARRAY['GET', NULL], ARRAY['/a', '/b'], ARRAY[now(), now()], ARRAY[1, 1]",
        "ARRAY['GET'], ARRAY['/a', '/b'], ARRAY[now()], ARRAY[1]",
        "ARRAY['GET'], ARRAY[''], ARRAY[now()], ARRAY[1]",
        "ARRAY['GET'], ARRAY['/a'], ARRAY[now()], ARRAY[-1]",
    ] {
        let query = format!("SELECT count.add_batch(NULL, NULL, {arguments})");
        let (a, b) = (native.sql().await, portable.sql().await);
        let (a, b) = (
            a.query_one(&query, &[]).await.unwrap_err(),
            b.query_one(&query, &[]).await.unwrap_err(),
        );
        let (a, b) = (a.as_db_error().unwrap(), b.as_db_error().unwrap());
        assert_eq!(
            (a.code(), a.message()),
            (b.code(), b.message()),
            "{arguments}"
        );
    }
}

#[tokio::test]
async fn a_database_on_the_fallback_switches_to_the_extension_without_losing_counts() {
    let db = TestDatabase::start_with(Backend::Sql, Vec::new()).await;
    let t = day_start(1) + 10;
    let batch = |count: i64| {
        FlushBatch::of_endpoints(
            vec!["GET"],
            vec!["/switch".into()],
            vec![DateTime::from_timestamp(t, 0).unwrap()],
            vec![count],
        )
    };
    let before = Store::open(db.config(), 2).await.unwrap();
    assert_eq!(before.backend(), Backend::Sql);
    assert_eq!(
        before
            .add_batch(Some(("switch", 1)), &batch(5))
            .await
            .unwrap(),
        Some(5)
    );

    assert!(db.cluster.create_extension().await.unwrap());
    // The running server keeps working: the functions were replaced in place.
    assert_eq!(
        before
            .add_batch(Some(("switch", 2)), &batch(7))
            .await
            .unwrap(),
        Some(7)
    );
    let after = Store::open(db.config(), 2).await.unwrap();
    assert_eq!(after.backend(), Backend::Extension);
    assert_eq!(
        after
            .add_batch(Some(("switch", 2)), &batch(100))
            .await
            .unwrap(),
        None,
        "sequences carry over"
    );
    assert_eq!(
        after
            .add_batch(Some(("switch", 3)), &batch(11))
            .await
            .unwrap(),
        Some(11)
    );
    assert_eq!(after.rollup(day_of(t)).await.unwrap(), 23);
    let totals = after
        .daily_totals(day_of(t), day_of(t), None)
        .await
        .unwrap();
    assert_eq!(totals.iter().map(|t| t.total).collect::<Vec<_>>(), vec![23]);

    // CREATE EXTENSION partitioned the live table; the raw data stays out of
    // the extension, so dropping the extension keeps it.
    assert_eq!(
        after
            .add_batch(Some(("switch", 4)), &batch(13))
            .await
            .unwrap(),
        Some(13)
    );
    let sql = db.sql().await;
    sql.batch_execute("DROP EXTENSION count").await.unwrap();
    let raw: i64 = sql
        .query_one(
            "SELECT sum(count)::bigint FROM count.requests WHERE tableoid::regclass::text LIKE 'count.requests_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw, 13);
}

#[tokio::test]
async fn a_new_endpoint_inserted_meanwhile_by_another_backend_falls_back_without_losing_the_found_ones()
 {
    let db = TestDatabase::start_with(Backend::Extension, Vec::new()).await;
    let _store = db.store().await;
    let add = |paths: &str, counts: &str| {
        format!(
            "SELECT count.add_batch(NULL, NULL, array_fill('GET'::text, ARRAY[cardinality(ARRAY[{paths}])]),
                    ARRAY[{paths}], array_fill(now(), ARRAY[cardinality(ARRAY[{paths}])]), ARRAY[{counts}])"
        )
    };
    let (first, second) = (db.sql().await, db.sql().await);
    first.batch_execute(&add("'/known'", "1")).await.unwrap();
    // The first backend holds '/new' uncommitted; the second (a fresh
    // backend: it looks '/known' up, then inserts '/new') waits on it, hits
    // the unique violation once it commits, and falls back.
    first
        .batch_execute(&format!("BEGIN; {};", add("'/new'", "2")))
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        second
            .query_one(&add("'/known', '/new'", "3, 4"), &[])
            .await
            .map(|row| row.get::<_, i64>(0))
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the second batch waits for the first"
    );
    first.batch_execute("COMMIT").await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 7);
    let totals = first
        .query_one(
            "SELECT string_agg(m.path || '=' || r.total, ',' ORDER BY m.path)
               FROM (SELECT method_id, sum(count) AS total FROM count.requests GROUP BY 1) AS r
               JOIN count.methods AS m ON m.id = r.method_id",
            &[],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    assert_eq!(totals, "/known=4,/new=6");
}

#[tokio::test]
async fn an_endpoint_inserted_by_a_rolled_back_transaction_is_not_reused() {
    let db = TestDatabase::start_with(Backend::Extension, Vec::new()).await;
    let _store = db.store().await;
    // One connection, so one backend and one cache.
    let sql = db.sql().await;
    let add = "SELECT count.add_batch(NULL, NULL, ARRAY['OPTIONS'], ARRAY['/rolled-back'], ARRAY[now()], ARRAY[3])";
    sql.batch_execute(&format!("BEGIN; {add}; ROLLBACK;"))
        .await
        .unwrap();
    sql.batch_execute(add).await.unwrap();
    sql.batch_execute(&format!("BEGIN; {add}; COMMIT;"))
        .await
        .unwrap();
    let joined: i64 = sql
        .query_one(
            "SELECT coalesce(sum(r.count), 0)::bigint FROM count.requests AS r
               JOIN count.methods AS m ON m.id = r.method_id WHERE m.path = '/rolled-back'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(joined, 6, "every raw row points at an existing endpoint");
    let raw: i64 = sql
        .query_one("SELECT sum(count)::bigint FROM count.requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw, 6);
}

#[tokio::test]
async fn pg_cron_runs_rollup_due_inside_the_database() {
    let settings = [
        ("shared_preload_libraries", "pg_cron"),
        ("cron.database_name", "count"),
        // Jobs run in background workers, not over a (password) connection.
        ("cron.use_background_workers", "on"),
    ];
    let settings = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let db = TestDatabase::start_with(Backend::Extension, settings).await;
    let store = db.store().await;
    let yesterday = day_start(1) + 3600;
    let batch = FlushBatch::of_endpoints(
        vec!["GET", "POST"],
        vec!["/cron".into(), "/cron".into()],
        vec![DateTime::from_timestamp(yesterday, 0).unwrap(); 2],
        vec![40, 2],
    );
    store.add_batch(None, &batch).await.unwrap();
    let sql = db.sql().await;
    sql.batch_execute(include_str!("../../../sql/cron.sql"))
        .await
        .unwrap();
    let schedule: String = sql
        .query_one(
            "SELECT schedule FROM cron.job WHERE jobname = 'count-rollup-due'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schedule, "* * * * *", "every minute, pg_cron's finest");
    // pg_cron fires at the next minute boundary: allow three.
    eventually(Duration::from_secs(180), || {
        let sql = &sql;
        async move {
            let succeeded: i64 = sql
                .query_one(
                    "SELECT count(*) FROM cron.job_run_details WHERE status = 'succeeded'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            succeeded > 0
        }
    })
    .await;
    let raw: i64 = sql
        .query_one("SELECT count(*) FROM count.requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw, 0);
    let totals = store
        .daily_totals(day_of(yesterday), day_of(yesterday), None)
        .await
        .unwrap();
    let totals: Vec<_> = totals
        .iter()
        .map(|t| (t.method.as_str(), t.total))
        .collect();
    assert_eq!(totals, vec![("GET", 40), ("POST", 2)]);
}

#[tokio::test]
async fn partitioning_keeps_quoted_owners_grants_and_the_check_whatever_the_session_settings() {
    let db = TestDatabase::start_with(Backend::Sql, Vec::new()).await;
    let _store = Store::open(db.config(), 1).await.unwrap();
    let sql = db.sql().await;
    sql.batch_execute(
        r#"CREATE ROLE "Count-Owner"; CREATE ROLE "Count-Reader";
           ALTER TABLE count.requests OWNER TO "Count-Owner";
           GRANT SELECT ON count.requests TO "Count-Reader";
           SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Kolkata';
           CREATE EXTENSION count;"#,
    )
    .await
    .unwrap();
    let row = sql
        .query_one(
            r#"SELECT c.relkind::text, c.relowner::regrole::text,
                      has_table_privilege('Count-Reader', c.oid, 'SELECT'),
                      has_table_privilege('Count-Reader', c.oid, 'INSERT')
                 FROM pg_class AS c WHERE c.oid = 'count.requests'::regclass"#,
            &[],
        )
        .await
        .unwrap();
    let relation: (String, String, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        relation,
        ("p".into(), r#""Count-Owner""#.into(), true, false)
    );
    // The CHECK (count > 0) holds on the partitioned table.
    let error = sql
        .batch_execute("INSERT INTO count.requests VALUES (1, now(), 0)")
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    // Today's partition starts at 00:00 UTC exactly, whatever the session's
    // DateStyle and TimeZone were when it was made.
    let midnight = day_start(0);
    sql.batch_execute(&format!(
        "INSERT INTO count.requests VALUES (1, to_timestamp({midnight}), 1), (1, to_timestamp({}), 1)",
        midnight - 1
    ))
    .await
    .unwrap();
    let homes: Vec<String> = sql
        .query(
            "SELECT tableoid::regclass::text FROM count.requests ORDER BY request_timestamp",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let today = day_of(midnight).format("%Y%m%d");
    assert_eq!(
        homes,
        vec![
            "count.requests_default".to_owned(),
            format!("count.requests_{today}")
        ]
    );
}

/// Ingest, a rollup of one day and `rollup_due`, as `count_app` with only
/// sql/roles.sql's grants, on a store opened with `--no-migrate`'s rules.
async fn count_as_app(app: &tokio_postgres::Config, backend: Backend, sequence: i64) {
    let store = Store::open_existing(app.clone(), 1)
        .await
        .expect("count_app opens the existing schema");
    assert_eq!(store.backend(), backend);
    let t = day_start(1) + sequence;
    let batch = FlushBatch::of_endpoints(
        vec!["GET"],
        vec!["/least".into()],
        vec![DateTime::from_timestamp(t, 0).unwrap()],
        vec![sequence],
    );
    assert_eq!(
        store
            .add_batch(Some(("least", sequence)), &batch)
            .await
            .unwrap(),
        Some(sequence)
    );
    store
        .rollup(day_of(t))
        .await
        .expect("count_app rolls a day up");
    store.rollup_due().await.expect("count_app runs rollup_due");
}

#[tokio::test]
async fn least_privilege_set_ups_work_on_both_backends_and_across_the_switch() {
    let db = TestDatabase::start_with(Backend::Sql, Vec::new()).await;
    let superuser = db.sql().await;
    // A schema owner who is no superuser, as a DBA would set it up.
    superuser
        .batch_execute(
            "CREATE ROLE count_owner LOGIN CREATEROLE;
             CREATE SCHEMA count AUTHORIZATION count_owner;
             GRANT CREATE ON DATABASE count TO count_owner;
             GRANT CREATE ON SCHEMA public TO count_owner;",
        )
        .await
        .unwrap();
    let mut owner = db.config();
    owner.user("count_owner");
    let mut app = db.config();
    app.user("count_app");
    let migrate = |backend: Backend| {
        let owner = owner.clone();
        async move {
            let store = Store::open(owner, 1).await.expect("the owner migrates");
            assert_eq!(store.backend(), backend);
        }
    };
    let total = || async {
        db.sql()
            .await
            .query_one(
                "SELECT ((SELECT coalesce(sum(total), 0) FROM count.daily_method_totals)
                       + (SELECT coalesce(sum(count), 0) FROM count.requests))::bigint",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };

    // The fallback: the owner migrates and runs sql/roles.sql.
    migrate(Backend::Sql).await;
    let (owner_sql, connection) = owner.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    owner_sql
        .batch_execute(include_str!("../../../sql/roles.sql"))
        .await
        .unwrap();
    count_as_app(&app, Backend::Sql, 1).await;

    // The live switch: count_app keeps its rollups.
    superuser
        .batch_execute("CREATE EXTENSION count")
        .await
        .unwrap();
    count_as_app(&app, Backend::Extension, 2).await;
    // The owner, no superuser, still migrates (partition upkeep included).
    migrate(Backend::Extension).await;
    count_as_app(&app, Backend::Extension, 3).await;

    // Back: until the owner reinstalls the fallback, a --no-migrate server
    // says what to do.
    superuser
        .batch_execute("DROP EXTENSION count")
        .await
        .unwrap();
    let missing = Store::open_existing(app.clone(), 1).await.unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("run `count migrate` as the owner"),
        "{missing}"
    );
    migrate(Backend::Sql).await;
    count_as_app(&app, Backend::Sql, 4).await;
    assert_eq!(total().await, 1 + 2 + 3 + 4);
}

#[tokio::test]
async fn rollup_due_gives_its_partition_upkeep_up_on_a_deadlock_and_still_succeeds() {
    let db = TestDatabase::start_with(Backend::Extension, Vec::new()).await;
    let _store = db.store().await;
    let setup = db.sql().await;
    // The day after tomorrow's partition is missing: the upkeep must take
    // count.requests' ACCESS EXCLUSIVE lock to create it.
    let missing = day_of(day_start(-2)).format("%Y%m%d");
    setup
        .batch_execute(&format!("DROP TABLE count.requests_{missing}"))
        .await
        .unwrap();
    // The rollup's transaction holds the daily totals...
    let roller = db.sql().await;
    roller
        .batch_execute("BEGIN; LOCK TABLE count.daily_method_totals IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    // ...which an inserter holding count.requests waits for.
    let inserter = db.sql().await;
    inserter
        .batch_execute(
            "SET deadlock_timeout = '10s'; BEGIN;
             SELECT count.add_batch(NULL, NULL, ARRAY['GET'], ARRAY['/deadlock'], ARRAY[now()], ARRAY[1])",
        )
        .await
        .unwrap();
    let inserter_pid: i32 = inserter
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let waiting = tokio::spawn(async move {
        inserter
            .batch_execute("LOCK TABLE count.daily_method_totals IN SHARE MODE; COMMIT")
            .await
    });
    eventually(Duration::from_secs(30), || {
        let setup = &setup;
        async move {
            setup
                .query_one(
                    "SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = $1",
                    &[&inserter_pid],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    })
    .await;
    // The upkeep's wait closes the cycle; with a deadlock_timeout below its
    // 200 ms lock timeout, the rollup is the one PostgreSQL aborts.
    roller
        .batch_execute("SET LOCAL deadlock_timeout = '10ms'; SELECT count.rollup_due(); COMMIT")
        .await
        .expect("rollup_due succeeds without its upkeep");
    waiting.await.unwrap().unwrap();
    let raw: i64 = setup
        .query_one("SELECT sum(count)::bigint FROM count.requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw, 1);
}
