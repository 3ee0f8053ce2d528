//! `#[pg_test]`s: each function of the SQL API and each error it raises, in
//! a real backend with the extension created.

/// The schema the test functions live in (`pg_test` needs an inline module).
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Creates count's tables (the migrations) once per test database, and
    /// a helper that runs a statement and returns `SQLSTATE: message` or `ok`.
    fn setup() {
        let exists = Spi::get_one::<bool>("SELECT to_regclass('count.requests') IS NOT NULL")
            .expect("catalog query");
        if exists != Some(true) {
            Spi::run(include_str!("../../migrations/V1__schema.sql")).expect("schema");
            Spi::run(include_str!("../../migrations/V2__monthly_totals.sql")).expect("schema");
            Spi::run(include_str!("../../migrations/V3__time_tiers.sql")).expect("schema");
            Spi::run(include_str!("../../migrations/V4__tier_bounds.sql")).expect("schema");
            Spi::run(include_str!("../../migrations/V5__series.sql")).expect("schema");
            Spi::run(include_str!("../../migrations/V6__tenant_tiers.sql")).expect("schema");
            Spi::run(include_str!("../../migrations/V7__tenant_tiers_from.sql")).expect("schema");
            Spi::run(include_str!(
                "../../migrations/V8__minute_tier_by_series.sql"
            ))
            .expect("schema");
            Spi::run(include_str!(
                "../../service/queries/postgres_series_key.sql"
            ))
            .expect("schema");
        }
        Spi::run(
            "CREATE OR REPLACE FUNCTION pg_temp.outcome(statement text) RETURNS text
             LANGUAGE plpgsql AS $$
             BEGIN
                 EXECUTE statement;
                 RETURN 'ok';
             EXCEPTION WHEN OTHERS THEN
                 RETURN SQLSTATE || ': ' || SQLERRM;
             END $$",
        )
        .expect("helper");
    }

    fn outcome(statement: &str) -> String {
        Spi::get_one_with_args::<String>("SELECT pg_temp.outcome($1)", &[statement.into()])
            .expect("outcome")
            .unwrap_or_default()
    }

    fn total(path: &str) -> i64 {
        Spi::get_one_with_args::<i64>(
            "SELECT coalesce(sum(r.count), 0)::bigint
               FROM count.requests AS r JOIN count.methods AS m ON m.id = r.method_id
              WHERE m.path = $1",
            &[path.into()],
        )
        .expect("total")
        .unwrap_or(0)
    }

    #[pg_test]
    fn add_batch_inserts_rows_and_returns_the_requests_added() {
        setup();
        let added = Spi::get_one::<i64>(
            "SELECT count.add_batch(NULL, NULL, ARRAY['GET', 'GET', 'POST'], ARRAY['/t1/a', '/t1/a', '/t1/b'],
                    ARRAY['2026-01-01 10:00:00+00', '2026-01-01 10:00:01+00', '2026-01-02 00:00:00+00']::timestamptz[],
                    ARRAY[2, 3, 4])",
        );
        assert_eq!(added, Ok(Some(9)));
        assert_eq!(total("/t1/a"), 5);
        assert_eq!(total("/t1/b"), 4);
        // Warm cache: the same endpoints again, no new endpoint rows.
        let again = Spi::get_one::<i64>(
            "SELECT count.add_batch(NULL, NULL, ARRAY['GET'], ARRAY['/t1/a'], ARRAY[now()], ARRAY[1])",
        );
        assert_eq!(again, Ok(Some(1)));
        assert_eq!(total("/t1/a"), 6);
        let endpoints =
            Spi::get_one::<i64>("SELECT count(*) FROM count.methods WHERE path LIKE '/t1/%'");
        assert_eq!(endpoints, Ok(Some(2)));
    }

    #[pg_test]
    fn add_batch_applies_a_producer_sequence_once() {
        setup();
        let call = |seq: i64| {
            Spi::get_one_with_args::<i64>(
                "SELECT count.add_batch('t2', $1, ARRAY['PUT'], ARRAY['/t2'], ARRAY[now()], ARRAY[5])",
                &[seq.into()],
            )
        };
        assert_eq!(call(1), Ok(Some(5)));
        assert_eq!(call(1), Ok(None));
        assert_eq!(call(0), Ok(None));
        assert_eq!(call(2), Ok(Some(5)));
        assert_eq!(total("/t2"), 10);
    }

    #[pg_test]
    fn bad_arguments_raise_specific_sqlstates() {
        setup();
        let cases = [
            (
                "NULL, NULL, ARRAY['GET'], ARRAY['/a', '/b'], ARRAY[now()], ARRAY[1]",
                "22023: count.add_batch: methods, paths, timestamps and counts must have the same length, got 1, 2, 1, 1",
            ),
            (
                "NULL, NULL, ARRAY['GET', NULL], ARRAY['/a', '/b'], ARRAY[now(), now()], ARRAY[1, 1]",
                "22004: count.add_batch: methods[2] must not be NULL",
            ),
            (
                "NULL, NULL, ARRAY['GET'], ARRAY['/a'], ARRAY[now()], NULL::bigint[]",
                "22004: count.add_batch: methods, paths, timestamps and counts must not be NULL",
            ),
            (
                "NULL, NULL, ARRAY['GET', 'FETCH'], ARRAY['/a', '/b'], ARRAY[now(), now()], ARRAY[1, 1]",
                "22023: count.add_batch: methods[2] is not a known method: FETCH",
            ),
            (
                "NULL, NULL, ARRAY['GET'], ARRAY[''], ARRAY[now()], ARRAY[1]",
                "22023: count.add_batch: paths[1] must not be empty",
            ),
            (
                "NULL, NULL, ARRAY['GET', 'PUT'], ARRAY['/a', '/b'], ARRAY[now(), now()], ARRAY[3, 0]",
                "22023: count.add_batch: counts[2] must be at least 1, got 0",
            ),
            (
                "'p', NULL, ARRAY['GET'], ARRAY['/a'], ARRAY[now()], ARRAY[1]",
                "22004: count.add_batch: producer and seq must be both NULL or both set",
            ),
            (
                "'', 1, ARRAY['GET'], ARRAY['/a'], ARRAY[now()], ARRAY[1]",
                "22023: count.add_batch: producer must not be empty",
            ),
            (
                "NULL, NULL, ARRAY['GET', 'GET'], ARRAY['/a', '/b'], ARRAY[now(), now()], ARRAY[9223372036854775807, 1]",
                "22003: count.add_batch: the sum of the counts does not fit a bigint",
            ),
        ];
        for (arguments, expected) in cases {
            assert_eq!(
                outcome(&format!("SELECT count.add_batch({arguments})")),
                expected,
                "{arguments}"
            );
        }
        assert_eq!(
            total("/a") + total("/b"),
            0,
            "nothing of a rejected call is written"
        );
    }

    #[pg_test]
    fn add_series_counts_each_tenant_and_status_code_apart() {
        setup();
        for _ in 0..2 {
            // The second round finds every series in the cache.
            Spi::run(
                "SELECT count.add_series(NULL, NULL, ARRAY['GET', 'GET', 'GET', 'GRPC', 'GET'],
                     ARRAY['/t6', '/t6', '/t6', '/t6', '/t6'], ARRAY['', 'a', 'a', 'a', 'b'],
                     ARRAY[NULL, 200, 500, 0, 200]::int[], ARRAY[now(), now(), now(), now(), now()],
                     ARRAY[1, 2, 3, 4, 5])",
            )
            .expect("add_series");
            Spi::run(
                "SELECT count.add_batch(NULL, NULL, ARRAY['GET'], ARRAY['/t6'], ARRAY[now()], ARRAY[10])",
            )
            .expect("add_batch");
        }
        let series = Spi::get_one::<String>(
            "SELECT string_agg(m.tenant || ':' || m.method || ':' || m.status_code || '=' || s.n, ' '
                               ORDER BY m.tenant, m.method, m.status_code)
               FROM count.methods AS m
               JOIN (SELECT method_id, sum(count) AS n FROM count.requests GROUP BY 1) AS s
                 ON s.method_id = m.id
              WHERE m.path = '/t6'",
        );
        assert_eq!(
            series,
            Ok(Some(
                ":GET:-1=22 a:GET:200=4 a:GET:500=6 a:GRPC:0=8 b:GET:200=10".to_owned()
            ))
        );
        assert_eq!(
            outcome(
                "SELECT count.add_series(NULL, NULL, ARRAY['GET'], ARRAY['/a'], ARRAY['a'], ARRAY[99],
                     ARRAY[now()], ARRAY[1])"
            ),
            "22023: count.add_series: status_codes[1] must be an HTTP status code (100-599), got 99"
        );
    }

    #[pg_test]
    fn an_endpoint_rolled_back_in_a_subtransaction_is_not_cached() {
        setup();
        // The endpoint row is inserted, then its subtransaction aborts.
        assert_eq!(
            outcome(
                "DO $$ BEGIN
                     PERFORM count.add_batch(NULL, NULL, ARRAY['HEAD'], ARRAY['/t4'], ARRAY[now()], ARRAY[1]);
                     RAISE EXCEPTION 'roll back';
                 END $$"
            ),
            "P0001: roll back"
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM count.methods WHERE path = '/t4'"),
            Ok(Some(0))
        );
        Spi::run("SELECT count.add_batch(NULL, NULL, ARRAY['HEAD'], ARRAY['/t4'], ARRAY[now()], ARRAY[7])")
            .expect("add_batch");
        // The row points at an endpoint that exists.
        assert_eq!(total("/t4"), 7);
    }

    #[pg_test]
    fn rollups_move_raw_rows_into_daily_totals() {
        setup();
        Spi::run(
            "SELECT count.add_batch(NULL, NULL, ARRAY['GET', 'GET'], ARRAY['/t5', '/t5'],
                    ARRAY['2025-03-01 23:59:59+00', '2025-03-02 00:00:00+00']::timestamptz[], ARRAY[2, 3])",
        )
        .expect("add_batch");
        assert_eq!(
            Spi::get_one::<i64>("SELECT count.rollup('2025-03-01')"),
            Ok(Some(2))
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count.rollup('2025-03-01')"),
            Ok(Some(0))
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count.rollup_due()"),
            Ok(Some(1))
        );
        let totals = Spi::get_one::<String>(
            "SELECT string_agg(d.day || '=' || d.total, ',' ORDER BY d.day)
               FROM count.daily_method_totals AS d JOIN count.methods AS m ON m.id = d.method_id
              WHERE m.path = '/t5'",
        );
        assert_eq!(totals, Ok(Some("2025-03-01=2,2025-03-02=3".to_owned())));
        assert_eq!(
            outcome("SELECT count.rollup(NULL)"),
            "22004: count.rollup: rollup_day must not be NULL"
        );
    }

    fn one<T: pgrx::IntoDatum + pgrx::FromDatum>(query: &str) -> Option<T> {
        Spi::get_one::<T>(query).expect(query)
    }

    fn add(path: &str, at: &str, count: i64) {
        Spi::run(&format!(
            "SELECT count.add_batch(NULL, NULL, ARRAY['GET'], ARRAY['{path}'],
                    ARRAY['{at}']::timestamptz[], ARRAY[{count}])"
        ))
        .expect("add_batch");
    }

    #[pg_test]
    fn prepare_partitions_partitions_the_table_and_keeps_its_rows_and_grants() {
        setup();
        add("/p1", "2025-05-01 12:00:00+00", 4);
        Spi::run("GRANT SELECT ON count.requests TO PUBLIC").expect("grant");
        // 2025-05-01 has rows in what becomes the default partition: no
        // partition of its own; the next two days get theirs.
        assert_eq!(
            one::<i32>("SELECT count.prepare_partitions('2025-05-01', 3)"),
            Some(2)
        );
        assert_eq!(
            one::<String>(
                "SELECT relkind::text FROM pg_class WHERE oid = 'count.requests'::regclass"
            ),
            Some("p".to_owned())
        );
        assert_eq!(total("/p1"), 4);
        add("/p1", "2025-05-02 00:00:00+00", 5);
        assert_eq!(
            one::<String>("SELECT tableoid::regclass::text FROM count.requests WHERE count = 5"),
            Some("count.requests_20250502".to_owned())
        );
        assert_eq!(
            one::<String>("SELECT tableoid::regclass::text FROM count.requests WHERE count = 4"),
            Some("count.requests_default".to_owned())
        );
        assert_eq!(
            one::<bool>("SELECT has_table_privilege('public', 'count.requests', 'SELECT')"),
            Some(true)
        );
        assert_eq!(
            one::<i32>("SELECT count.prepare_partitions('2025-05-01', 3)"),
            Some(0)
        );
    }

    #[pg_test]
    fn a_partitioned_day_rolls_up_whole_and_late_rows_once_more() {
        setup();
        assert_eq!(
            one::<i32>("SELECT count.prepare_partitions('2025-06-01', 1)"),
            Some(1)
        );
        add("/p2", "2025-06-01 10:00:00+00", 2);
        add("/p2", "2025-06-01 23:59:59+00", 3);
        add("/p2", "2025-06-02 00:00:00+00", 7);
        assert_eq!(one::<i64>("SELECT count.rollup('2025-06-01')"), Some(5));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM count.requests_20250601"),
            Some(0)
        );
        add("/p2", "2025-06-01 11:00:00+00", 4);
        assert_eq!(one::<i64>("SELECT count.rollup('2025-06-01')"), Some(4));
        assert_eq!(one::<i64>("SELECT count.rollup_due()"), Some(1));
        assert_eq!(
            one::<String>(
                "SELECT string_agg(d.day || '=' || d.total, ',' ORDER BY d.day)
                   FROM count.daily_method_totals AS d JOIN count.methods AS m ON m.id = d.method_id
                  WHERE m.path = '/p2'"
            ),
            Some("2025-06-01=9,2025-06-02=7".to_owned())
        );
        assert_eq!(
            one::<i64>(
                "SELECT t.total FROM count.monthly_method_totals AS t JOIN count.methods AS m ON m.id = t.method_id
                  WHERE m.path = '/p2' AND t.month = '2025-06-01'"
            ),
            Some(16)
        );
    }

    #[pg_test]
    fn rollup_due_rolls_up_past_partitions_and_drops_the_emptied_old_ones() {
        setup();
        assert_eq!(
            one::<i32>("SELECT count.prepare_partitions('2025-07-01', 2)"),
            Some(2)
        );
        add("/p3", "2025-07-01 00:00:00+00", 1);
        add("/p3", "2025-07-02 12:00:00+00", 2);
        Spi::run(
            "SELECT count.add_batch(NULL, NULL, ARRAY['GET'], ARRAY['/p3'], ARRAY[now()], ARRAY[8])",
        )
        .expect("add_batch");
        // The two past days' partitions whole, and today's rows.
        assert_eq!(one::<i64>("SELECT count.rollup_due()"), Some(3));
        assert_eq!(
            one::<bool>(
                "SELECT to_regclass('count.requests_20250701') IS NULL
                    AND to_regclass('count.requests_20250702') IS NULL"
            ),
            Some(true)
        );
        assert_eq!(total("/p3"), 0);
        assert_eq!(
            one::<String>(
                "SELECT string_agg(d.day || '=' || d.total, ',' ORDER BY d.day)
                   FROM count.daily_method_totals AS d JOIN count.methods AS m ON m.id = d.method_id
                  WHERE m.path = '/p3' AND d.day < '2025-08-01'"
            ),
            Some("2025-07-01=1,2025-07-02=2".to_owned())
        );
        // Every tier holds the same requests, but for the minutes older
        // than the minute tier's 35 days.
        assert_eq!(
            one::<String>(
                "SELECT (SELECT sum(total) FROM count.minute_method_totals AS t JOIN count.methods AS m
                           ON m.id = t.method_id WHERE m.path = '/p3')
                        || ',' || (SELECT sum(q1 + q2 + q3 + q4) FROM count.hourly_method_totals AS t
                           JOIN count.methods AS m ON m.id = t.method_id WHERE m.path = '/p3')
                        || ',' || (SELECT sum(total) FROM count.daily_method_totals AS t JOIN count.methods AS m
                           ON m.id = t.method_id WHERE m.path = '/p3')
                        || ',' || (SELECT sum(total) FROM count.monthly_method_totals AS t JOIN count.methods AS m
                           ON m.id = t.method_id WHERE m.path = '/p3')"
            ),
            Some("8,11,11,11".to_owned())
        );
    }

    #[pg_test]
    fn rollup_due_takes_a_backlog_in_today_s_partition_whole_and_a_few_rows_one_by_one() {
        setup();
        Spi::run("SELECT count.prepare_partitions()").expect("partitions");
        let today_part = "count.requests_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '";
        // Rows deleted from today's partition, as this transaction's
        // statistics count them (TRUNCATE resets the count to 0).
        let deleted = || {
            one::<i64>(&format!(
                "SELECT n_tup_del FROM pg_stat_xact_user_tables WHERE relid = ('{today_part}')::regclass"
            ))
        };
        // A few rows: deleted one by one, ingest never waits on a lock.
        add("/b1", "now", 3);
        assert_eq!(one::<i64>("SELECT count.rollup_due()"), Some(1));
        assert_eq!(deleted(), Some(1));
        // A backlog: the partition is aggregated and truncated whole.
        Spi::run(
            "INSERT INTO count.requests (method_id, request_timestamp, count)
             SELECT (SELECT id FROM count.methods WHERE path = '/b1'), now(), 2
               FROM generate_series(1, 100001)",
        )
        .expect("backlog");
        assert_eq!(one::<i64>("SELECT count.rollup_due()"), Some(1));
        assert_eq!(
            deleted(),
            Some(0),
            "truncated, not 100,002 rows deleted one by one"
        );
        assert_eq!(total("/b1"), 0);
        assert_eq!(
            one::<i64>(
                "SELECT t.total FROM count.daily_method_totals AS t JOIN count.methods AS m
                   ON m.id = t.method_id WHERE m.path = '/b1'"
            ),
            Some(3 + 2 * 100_001)
        );
    }
}
