//! The SQL API as SQL users and DBAs see it: views, rollups and errors.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::harness::*;

#[tokio::test]
async fn views_show_rolled_up_totals_by_day_month_and_year() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let sql = db.sql().await;
    sql.batch_execute(
        "SELECT count.add_batch(NULL, NULL,
             ARRAY['GET', 'GET', 'POST', 'GET'],
             ARRAY['/a', '/a', '/b', '/a'],
             ARRAY['2026-01-31 23:59:59+00', '2026-02-01 00:00:00+00',
                   '2026-02-01 10:00:00+00', '2025-12-31 12:00:00+00']::timestamptz[],
             ARRAY[1, 2, 4, 8]);
         SELECT count.rollup(d) FROM unnest(ARRAY['2026-01-31', '2026-02-01', '2025-12-31']::date[]) AS d;",
    )
    .await
    .unwrap();
    let rows = |view: &'static str| {
        let sql = &sql;
        async move {
            let query = format!(
                "SELECT period::text, method, path, total FROM count.{view} ORDER BY 1, 2, 3"
            );
            sql.query(&query, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2),
                        r.get::<_, i64>(3),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let row =
        |p: &str, m: &str, path: &str, t: i64| (p.to_owned(), m.to_owned(), path.to_owned(), t);
    assert_eq!(
        rows("daily_totals").await,
        vec![
            row("2025-12-31", "GET", "/a", 8),
            row("2026-01-31", "GET", "/a", 1),
            row("2026-02-01", "GET", "/a", 2),
            row("2026-02-01", "POST", "/b", 4),
        ]
    );
    assert_eq!(
        rows("monthly_totals").await,
        vec![
            row("2025-12-01", "GET", "/a", 8),
            row("2026-01-01", "GET", "/a", 1),
            row("2026-02-01", "GET", "/a", 2),
            row("2026-02-01", "POST", "/b", 4),
        ]
    );
    assert_eq!(
        rows("yearly_totals").await,
        vec![
            row("2025-01-01", "GET", "/a", 8),
            row("2026-01-01", "GET", "/a", 3),
            row("2026-01-01", "POST", "/b", 4)
        ]
    );
}

#[tokio::test]
async fn rollup_due_rolls_up_every_raw_row_and_reads_stay_the_same() {
    let db = TestDatabase::start().await;
    let store = db.store().await;
    let sql = db.sql().await;
    let today = day_start(0);
    let batch = count_service::db::store::FlushBatch::of_endpoints(
        vec!["GET"; 4],
        vec!["/a".into(); 4],
        [today - 86_400 * 2, today - 1, today, today + 60]
            .iter()
            .map(|s| chrono::DateTime::from_timestamp(*s, 0).unwrap())
            .collect(),
        vec![1, 2, 4, 8],
    );
    assert_eq!(store.add_batch(None, &batch).await.unwrap(), Some(15));
    let days = |from, to| {
        let store = store.clone();
        async move {
            let totals = store.daily_totals(from, to, None).await.unwrap();
            totals
                .iter()
                .map(|t| (t.day.unwrap(), t.total))
                .collect::<Vec<_>>()
        }
    };
    let expected = vec![
        (day_of(today - 86_400 * 2), 1),
        (day_of(today - 1), 2),
        (day_of(today), 12),
    ];
    assert_eq!(
        days(day_of(today - 86_400 * 2), day_of(today)).await,
        expected
    );
    // Today's rows too: every tier is additive, so today's later requests
    // are simply added by a later rollup.
    assert_eq!(store.rollup_due().await.unwrap(), 3);
    assert_eq!(store.rollup_due().await.unwrap(), 0);
    let raw: i64 = sql
        .query_one("SELECT count(*) FROM count.requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw, 0);
    assert_eq!(
        days(day_of(today - 86_400 * 2), day_of(today)).await,
        expected
    );
}

#[tokio::test]
async fn rollup_due_forgets_producers_silent_for_30_days() {
    let db = TestDatabase::start().await;
    let store = db.store().await;
    let sql = db.sql().await;
    sql.batch_execute(
        "INSERT INTO count.producers (producer_id, last_sequence, updated_at) VALUES
             ('silent', 7, now() - interval '31 days'),
             ('quiet', 8, now() - interval '29 days')",
    )
    .await
    .unwrap();
    store.rollup_due().await.unwrap();
    let kept: Vec<String> = sql
        .query("SELECT producer_id FROM count.producers ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept, ["quiet"]);
}

#[tokio::test]
async fn bad_sql_api_arguments_raise_specific_sqlstates_and_write_nothing() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let sql = db.sql().await;
    let cases = [
        (
            "ARRAY['GET'], ARRAY['/a', '/b'], ARRAY[now()], ARRAY[1]",
            SqlState::INVALID_PARAMETER_VALUE,
            "count.add_batch: methods, paths, timestamps and counts must have the same length, got 1, 2, 1, 1",
        ),
        (
            "ARRAY['GET', NULL], ARRAY['/a', '/b'], ARRAY[now(), now()], ARRAY[1, 1]",
            SqlState::NULL_VALUE_NOT_ALLOWED,
            "count.add_batch: methods[2] must not be NULL",
        ),
        (
            "ARRAY['GET'], ARRAY['/a'], ARRAY[now()], NULL::bigint[]",
            SqlState::NULL_VALUE_NOT_ALLOWED,
            "count.add_batch: methods, paths, timestamps and counts must not be NULL",
        ),
        (
            "ARRAY['GET', 'FETCH'], ARRAY['/a', '/b'], ARRAY[now(), now()], ARRAY[1, 1]",
            SqlState::INVALID_PARAMETER_VALUE,
            "count.add_batch: methods[2] is not a known method: FETCH",
        ),
        (
            "ARRAY['GET'], ARRAY[''], ARRAY[now()], ARRAY[1]",
            SqlState::INVALID_PARAMETER_VALUE,
            "count.add_batch: paths[1] must not be empty",
        ),
        (
            "ARRAY['GET', 'PUT'], ARRAY['/a', '/b'], ARRAY[now(), 'infinity'], ARRAY[3, 1]",
            SqlState::INVALID_PARAMETER_VALUE,
            "count.add_batch: timestamps[2] must be a finite time",
        ),
        (
            "ARRAY['GET'], ARRAY['/a'], ARRAY['-infinity'::timestamptz], ARRAY[3]",
            SqlState::INVALID_PARAMETER_VALUE,
            "count.add_batch: timestamps[1] must be a finite time",
        ),
        (
            "ARRAY['GET', 'PUT'], ARRAY['/a', '/b'], ARRAY[now(), now()], ARRAY[3, 0]",
            SqlState::INVALID_PARAMETER_VALUE,
            "count.add_batch: counts[2] must be at least 1, got 0",
        ),
    ];
    for (arguments, state, message) in cases {
        let query = format!("SELECT count.add_batch(NULL, NULL, {arguments})");
        let error = sql.query_one(&query, &[]).await.unwrap_err();
        let db_error = error.as_db_error().unwrap();
        assert_eq!(
            (db_error.code(), db_error.message()),
            (&state, message),
            "{arguments}"
        );
    }
    let error = sql
        .query_one(
            "SELECT count.add_batch('p', NULL, ARRAY['GET'], ARRAY['/a'], ARRAY[now()], ARRAY[1])",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::NULL_VALUE_NOT_ALLOWED));
    let error = sql
        .query_one("SELECT count.rollup(NULL)", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::NULL_VALUE_NOT_ALLOWED));
    let written: i64 = sql
        .query_one(
            "SELECT (SELECT count(*) FROM count.requests) + (SELECT count(*) FROM count.methods)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0);
}

#[tokio::test]
async fn totals_near_bigint_s_limit_saturate_and_every_other_day_still_rolls_up() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let sql = db.sql().await;
    // Two rows of one day and endpoint that together pass bigint's maximum,
    // and an ordinary day beside them; and a '-infinity' row slipped in by a
    // direct INSERT, which no day holds.
    sql.batch_execute(
        "SELECT count.add_batch(NULL, NULL, ARRAY['GET', 'GET'], ARRAY['/huge', '/small'],
             ARRAY['2026-03-01 10:00:00+00', '2026-03-02 10:00:00+00']::timestamptz[],
             ARRAY[5000000000000000000, 7]);
         SELECT count.add_batch(NULL, NULL, ARRAY['GET'], ARRAY['/huge'],
             ARRAY['2026-03-01 11:00:00+00']::timestamptz[], ARRAY[5000000000000000000]);
         INSERT INTO count.requests (method_id, request_timestamp, count)
             SELECT id, '-infinity', 1 FROM count.methods WHERE path = '/small';",
    )
    .await
    .unwrap();
    let days: i64 = sql
        .query_one("SELECT count.rollup_due()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(days, 2);
    let totals: Vec<(String, String, i64)> = sql
        .query(
            "SELECT period::text, path, total FROM count.daily_totals
             UNION ALL SELECT 'month ' || period::text, path, total FROM count.monthly_totals ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let row = |p: &str, path: &str, t: i64| (p.to_owned(), path.to_owned(), t);
    assert_eq!(
        totals,
        vec![
            row("2026-03-01", "/huge", i64::MAX),
            row("2026-03-02", "/small", 7),
            row("month 2026-03-01", "/huge", i64::MAX),
            row("month 2026-03-01", "/small", 7),
        ]
    );
    // More for a saturated total stays at the maximum; the rollup succeeds.
    sql.batch_execute(
        "SELECT count.add_batch(NULL, NULL, ARRAY['GET'], ARRAY['/huge'],
             ARRAY['2026-03-01 12:00:00+00']::timestamptz[], ARRAY[1]);
         SELECT count.rollup('2026-03-01');",
    )
    .await
    .unwrap();
    let huge: i64 = sql
        .query_one(
            "SELECT total FROM count.daily_totals WHERE path = '/huge'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(huge, i64::MAX);
}

#[tokio::test]
async fn an_hour_whose_quarters_pass_bigint_s_limit_reads_at_the_maximum() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let sql = db.sql().await;
    // Two quarter-hours of one hour, each under bigint's maximum, together
    // over it (02:00 UTC, still 28 February in New York); and an ordinary
    // endpoint later that day.
    sql.batch_execute(
        "SELECT count.add_batch(NULL, NULL, ARRAY['GET', 'GET'], ARRAY['/huge', '/small'],
             ARRAY['2026-03-01 02:05:00+00', '2026-03-01 10:30:00+00']::timestamptz[],
             ARRAY[5000000000000000000, 7]);
         SELECT count.add_batch(NULL, NULL, ARRAY['GET'], ARRAY['/huge'],
             ARRAY['2026-03-01 02:20:00+00']::timestamptz[], ARRAY[5000000000000000000]);
         SELECT count.rollup_due();",
    )
    .await
    .unwrap();
    // Each used to fail with bigint out of range:
    // - by hour, that hour from the series' hourly tier;
    // - by day in New York, whose 28 February is UTC's 28th, minus its
    //   first five hours, plus the first five of 1 March, 02:00 among them
    //   (and whose 1 March takes those five away again: /huge's pieces
    //   cancel out there);
    // - summed over endpoints, the hour from the tenant tiers.
    for (granularity, zone, group_by, expected) in [
        (
            "hour",
            "UTC",
            "{endpoint}",
            vec![
                ("2026-03-01 02:00", "/huge", i64::MAX),
                ("2026-03-01 10:00", "/small", 7),
            ],
        ),
        (
            "day",
            "America/New_York",
            "{endpoint}",
            vec![
                ("2026-02-28 05:00", "/huge", i64::MAX),
                ("2026-03-01 05:00", "/small", 7),
            ],
        ),
        (
            "hour",
            "UTC",
            "{}",
            vec![
                ("2026-03-01 02:00", "", i64::MAX),
                ("2026-03-01 10:00", "", 7),
            ],
        ),
    ] {
        let rows: Vec<(String, String, i64)> = sql
            .query(
                "SELECT to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), coalesce(path, ''), total
                   FROM count.totals('2026-02-28 00:00Z', '2026-03-03 00:00Z', $1, $2, group_by => $3::text::text[])",
                &[&granularity, &zone, &group_by],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let expected: Vec<(String, String, i64)> = expected
            .into_iter()
            .map(|(bucket, path, total)| (bucket.to_owned(), path.to_owned(), total))
            .collect();
        assert_eq!(rows, expected, "{granularity} in {zone}, {group_by}");
    }
}

/// Every request the database holds, rolled up or raw.
async fn held(sql: &tokio_postgres::Client) -> i64 {
    sql.query_one(
        "SELECT ((SELECT coalesce(sum(total), 0) FROM count.daily_method_totals)
               + (SELECT coalesce(sum(count), 0) FROM count.requests))::bigint",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_rollup_under_repeatable_read_or_serializable_loses_no_row_it_waited_for() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let add = |count: i64| {
        format!(
            "SELECT count.add_batch(NULL, NULL, ARRAY['GET'], ARRAY['/isolation'], ARRAY[now()], ARRAY[{count}])"
        )
    };
    let mut expected = 0;
    for isolation in ["REPEATABLE READ", "SERIALIZABLE"] {
        let inserter = db.sql().await;
        let roller = db.sql().await;
        inserter.batch_execute(&add(1)).await.unwrap();
        // The inserter's transaction holds 10 more, uncommitted.
        inserter
            .batch_execute(&format!("BEGIN; {}", add(10)))
            .await
            .unwrap();
        expected += 11;
        // The roller's snapshot is taken before the inserter commits.
        roller
            .batch_execute(&format!("BEGIN ISOLATION LEVEL {isolation}; SELECT 1"))
            .await
            .unwrap();
        let roller_pid: i32 = roller
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let rollup = tokio::spawn(async move {
            roller
                .batch_execute("SELECT count.rollup((now() AT TIME ZONE 'UTC')::date); COMMIT")
                .await
        });
        // Commit once the rollup waits for the inserter, or has finished.
        let watcher = db.sql().await;
        eventually(Duration::from_secs(30), || {
            let watcher = &watcher;
            let finished = rollup.is_finished();
            async move {
                finished
                    || watcher
                        .query_one(
                            "SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = $1",
                            &[&roller_pid],
                        )
                        .await
                        .unwrap()
                        .get::<_, bool>(0)
            }
        })
        .await;
        inserter.batch_execute("COMMIT").await.unwrap();
        rollup.await.unwrap().unwrap();
        assert_eq!(held(&watcher).await, expected, "{isolation}");
    }
    // A later rollup (READ COMMITTED) moves what was left, once.
    let sql = db.sql().await;
    sql.batch_execute("SELECT count.rollup((now() AT TIME ZONE 'UTC')::date)")
        .await
        .unwrap();
    let raw: i64 = sql
        .query_one("SELECT count(*) FROM count.requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((raw, held(&sql).await), (0, expected));
}

/// Every `count.v1.Method` value, walked through the generated enum.
fn every_method() -> Vec<count_proto::v1::Method> {
    (0..=255)
        .filter_map(|n| count_proto::v1::Method::try_from(n).ok())
        .collect()
}

/// The quoted names between `[` and `]` after `marker` in `text`.
fn listed_names(text: &str, marker: &str) -> std::collections::BTreeSet<String> {
    let start = text.find(marker).expect("marker") + marker.len();
    let list = &text[start..];
    let list = &list[list.find('[').expect("[") + 1..];
    let list = &list[..list.find(']').expect("]")];
    list.split(',')
        .map(|name| {
            name.trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_owned()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[tokio::test]
async fn every_count_v1_method_and_other_is_accepted() {
    let names: std::collections::BTreeSet<String> = every_method()
        .into_iter()
        .map(|m| count_service::entry::stored_method(m).to_owned())
        .collect();
    assert!(
        names.contains("GRPC") && names.contains("OTHER"),
        "{names:?}"
    );
    // The lists the two backends keep, against the proto's enum.
    assert_eq!(
        listed_names(
            include_str!("../../../sql/add_batch.sql"),
            "known_methods text[] := ARRAY"
        ),
        names
    );
    assert_eq!(
        listed_names(
            include_str!("../../../extension/src/batch.rs"),
            "pub const METHODS: [&str;"
        ),
        names
    );
    // And what the backend in use accepts.
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let sql = db.sql().await;
    let names: Vec<String> = names.into_iter().collect();
    let added: i64 = sql
        .query_one(
            "SELECT count.add_batch(NULL, NULL, $1::text[], array_fill('/m'::text, ARRAY[cardinality($1::text[])]),
                 array_fill(now(), ARRAY[cardinality($1::text[])]), array_fill(1::bigint, ARRAY[cardinality($1::text[])]))",
            &[&names],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(added, names.len() as i64);
    for outside in ["METHOD_UNSPECIFIED", "FETCH", "get"] {
        let error = sql
            .query_one(
                "SELECT count.add_batch(NULL, NULL, ARRAY[$1::text], ARRAY['/m'], ARRAY[now()], ARRAY[1::bigint])",
                &[&outside],
            )
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            Some(&SqlState::INVALID_PARAMETER_VALUE),
            "{outside}"
        );
    }
}

#[tokio::test]
async fn plpgsql_check_finds_no_error_in_any_function() {
    // plpgsql_check compiles every statement of every branch, which
    // PostgreSQL only does when a branch runs: errors in rarely taken
    // branches (error paths, the partition upkeep) show here first.
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let sql = db.sql().await;
    sql.batch_execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
        .await
        .expect("plpgsql_check (scripts/test installs postgresql-15-plpgsql-check)");
    let rows = sql
        .query(
            "SELECT p.oid::regprocedure::text, c.level, c.message, coalesce(c.lineno, 0)
               FROM pg_proc AS p
               JOIN pg_language AS l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
               CROSS JOIN LATERAL plpgsql_check_function_tb(p.oid) AS c
              WHERE p.pronamespace = 'count'::regnamespace AND c.level = 'error'",
            &[],
        )
        .await
        .unwrap();
    let errors: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} line {}: {}",
                r.get::<_, String>(0),
                r.get::<_, i32>(3),
                r.get::<_, String>(2)
            )
        })
        .collect();
    let checked: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
              WHERE p.pronamespace = 'count'::regnamespace AND l.lanname = 'plpgsql'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(checked >= 5, "only {checked} PL/pgSQL functions");
    assert!(errors.is_empty(), "plpgsql_check:\n{}", errors.join("\n"));
}

#[tokio::test]
async fn on_postgresql_the_reads_run_with_their_settings() {
    // The PostgreSQL-only settings the service adds to the portable reads
    // (service/queries/postgres_reads.sql): with JIT, each call of
    // count.series_totals (which count.totals wraps) took about a second
    // more; with custom plans, count.bucket_pieces was planned afresh in
    // every read, 1.7 of its 2 ms.
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let sql = db.sql().await;
    for (function, setting) in [
        (
            "count.series_totals(timestamptz, timestamptz, text, text, text[], text, text, text[], text[], text[],
                                 integer)",
            "jit=off",
        ),
        (
            "count.bucket_pieces(timestamptz, timestamptz, text, text)",
            "plan_cache_mode=force_generic_plan",
        ),
    ] {
        let config: Vec<String> = sql
            .query_one(
                "SELECT proconfig FROM pg_proc WHERE oid = $1::text::regprocedure",
                &[&function],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(config, [setting], "{function}");
    }
}

#[tokio::test]
async fn count_totals_refuses_bad_arguments_naming_them() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let sql = db.sql().await;
    let range = "'2026-11-01 00:00Z', '2026-11-02 00:00Z'";
    let cases = [
        (
            "NULL, '2026-11-02Z'".to_owned(),
            SqlState::NULL_VALUE_NOT_ALLOWED,
            "count.totals: start_time, end_time, granularity, time_zone and group_by must not be NULL",
        ),
        (
            format!("{range}, 'day', NULL"),
            SqlState::NULL_VALUE_NOT_ALLOWED,
            "count.totals: start_time, end_time, granularity, time_zone and group_by must not be NULL",
        ),
        (
            "'2026-11-01 00:00:30Z', '2026-11-02Z'".to_owned(),
            SqlState::INVALID_PARAMETER_VALUE,
            "count.totals: start_time must be a whole minute, got 2026-11-01 00:00:30+00",
        ),
        (
            "'2026-11-01Z', 'infinity'".to_owned(),
            SqlState::INVALID_PARAMETER_VALUE,
            "count.totals: end_time must be a whole minute, got infinity",
        ),
        (
            "'2026-11-02Z', '2026-11-01Z'".to_owned(),
            SqlState::INVALID_PARAMETER_VALUE,
            "count.totals: end_time 2026-11-01 00:00:00+00 is before start_time 2026-11-02 00:00:00+00",
        ),
        (
            format!("{range}, 'fortnight'"),
            SqlState::INVALID_PARAMETER_VALUE,
            "count.totals: granularity must be minute, hour, day, week, month, year or total, got fortnight",
        ),
        (
            format!("{range}, 'day', 'Nowhere/Land'"),
            SqlState::INVALID_PARAMETER_VALUE,
            "count.totals: time_zone: unknown time zone 'Nowhere/Land'",
        ),
        (
            format!("{range}, 'day', 'UTC', group_by => '{{tenant}}'"),
            SqlState::INVALID_PARAMETER_VALUE,
            "count.totals: group_by may hold only endpoint, got tenant (count.series_totals groups by \
             tenant and status too)",
        ),
        (
            format!("{range}, 'day', 'UTC', top => 0"),
            SqlState::INVALID_PARAMETER_VALUE,
            "count.totals: top must be at least 1, got 0",
        ),
        (
            "'2025-01-01Z', '2026-01-03Z', 'minute'".to_owned(),
            SqlState::INVALID_PARAMETER_VALUE,
            "count.totals: end_time: a range by minute may be at most 366 days long, got 367 days",
        ),
    ];
    // The session's zone must not change what the messages say.
    sql.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    for (arguments, state, message) in cases {
        let query = format!("SELECT * FROM count.totals({arguments})");
        let error = sql
            .query(&query, &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{arguments}: no error"));
        let db_error = error.as_db_error().unwrap();
        assert_eq!(
            (db_error.code(), db_error.message()),
            (&state, message),
            "{arguments}"
        );
    }
}

#[tokio::test]
async fn a_no_migrate_store_on_a_database_without_schema_count_says_to_migrate() {
    let db = TestDatabase::start().await;
    let error = count_service::db::store::Store::open_existing(db.config(), 1)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("run `count migrate` as the owner"),
        "{error}"
    );
}

#[tokio::test]
async fn a_tier_without_its_row_is_neither_written_nor_read() {
    // Between migrations V3 (the tiers) and V4 (their rows), as a stop
    // between the two would leave it: nothing may be lost or miscounted.
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let sql = db.sql().await;
    sql.batch_execute(
        "DELETE FROM count.tiers;
         SELECT count.add_batch(NULL, NULL, ARRAY['GET', 'GET'], ARRAY['/t', '/t'],
                                ARRAY['2026-11-02 10:07:30Z', '2026-11-02 23:59:59Z']::timestamptz[],
                                ARRAY[2, 3]::bigint[]);
         SELECT count.rollup('2026-11-02')",
    )
    .await
    .unwrap();
    let fine = db
        .bigint("SELECT (SELECT count(*) FROM count.minute_method_totals) + (SELECT count(*) FROM count.hourly_method_totals)")
        .await;
    assert_eq!(fine, 0);
    let day = db
        .bigint("SELECT total FROM count.totals('2026-11-02 00:00Z', '2026-11-03 00:00Z', 'day')")
        .await;
    assert_eq!(day, 5);
    let minute = sql
        .query(
            "SELECT * FROM count.totals('2026-11-02 10:00Z', '2026-11-02 11:00Z', 'minute')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(minute.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
}
