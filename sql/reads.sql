-- count.totals: live totals for any minute-aligned range, by minute, hour,
-- day, week, month or year in any time zone, or summed. Portable SQL,
-- installed by the service with sql/views.sql whichever backend implements
-- the writes; `count.v1.CountService/GetTotals`, the old reads and the CLI
-- all call it. Re-running this file is harmless: every statement replaces.
--
-- How a read is exact: a rollup moves raw rows into every tier in one
-- transaction (sql/rollup.sql), so one snapshot sees each request either in
-- count.requests or in the tiers. count.totals reads the raw rows, the
-- tiers and each tier's `complete_from` in one statement, hence one
-- snapshot, under any isolation level: a read racing a rollup counts every
-- request once. Each bucket is the signed sum of a few pieces, each a run
-- of whole UTC months, days, hours, quarter-hours or minutes read from that
-- tier (count.pieces); raw rows are added to the bucket they fall in.
-- Reads neither grouped nor filtered by endpoint take their pieces of an
-- hour or longer from the tenant tiers (migration V6) where those are
-- complete: the same rollups add the same requests to them, in the same
-- transaction, so either answers exactly.

-- `t` rounded down to a whole UTC unit: quarter (a quarter-hour), hour,
-- day or month. Computed on UTC wall-clock time: the session's TimeZone
-- must not move it.
CREATE OR REPLACE FUNCTION count.utc_floor(unit text, t timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT CASE unit
               WHEN 'quarter' THEN date_trunc('hour', t, 'UTC')
                   + floor(extract(minute FROM t AT TIME ZONE 'UTC') / 15) * interval '15 minutes'
               ELSE date_trunc(unit, t, 'UTC')
           END
$$;

-- `t` (a whole minute) rounded up to a whole UTC unit, as count.utc_floor.
CREATE OR REPLACE FUNCTION count.utc_ceil(unit text, t timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT CASE unit
               WHEN 'quarter' THEN count.utc_floor('quarter', t + interval '14 minutes')
               WHEN 'hour' THEN count.utc_floor('hour', t + interval '59 minutes')
               WHEN 'day' THEN count.utc_floor('day', t + interval '1439 minutes')
               ELSE ((date_trunc('month', (t AT TIME ZONE 'UTC') + interval '1 month' - interval '1 minute'))
                     AT TIME ZONE 'UTC')
           END
$$;

-- An hourly row's requests: its four quarter-hours added up without
-- overflowing. A rollup keeps each quarter at or under bigint's maximum
-- (count.add_totals), so their sum can pass it: then it stays at the
-- maximum, as the tiers' totals do, instead of failing every read of that
-- hour. Numeric only then: every read adds up thousands of hours.
CREATE OR REPLACE FUNCTION count.hour_total(q1 bigint, q2 bigint, q3 bigint, q4 bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
               WHEN greatest(q1, q2, q3, q4) < 2305843009213693952 THEN q1 + q2 + q3 + q4
               ELSE least(q1::numeric + q2 + q3 + q4, 9223372036854775807)::bigint
           END
$$;

-- The class of a stored status code: '1xx' to '5xx' for HTTP, 'grpc_ok'
-- (0) and 'grpc_error' (1-16) for GRPC, 'unknown' for -1 (migration V5).
CREATE OR REPLACE FUNCTION count.status_class(method text, status_code integer) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
               WHEN status_code < 0 THEN 'unknown'
               WHEN method = 'GRPC' THEN CASE WHEN status_code = 0 THEN 'grpc_ok' ELSE 'grpc_error' END
               -- Not status_code / 100: CockroachDB's / on integers is a
               -- decimal division.
               ELSE left(status_code::text, 1) || 'xx'
           END
$$;

-- The bucket (its start) that time `t` falls in: PostgreSQL's own
-- date_trunc in `time_zone` (which keeps the offset `t` had, so both
-- 01:00s of a DST fall-back hour are buckets of their own); minutes are
-- UTC minutes (every offset in use is whole minutes); `total` is one bucket
-- starting at `start_time`.
CREATE OR REPLACE FUNCTION count.bucket_of(t timestamptz, granularity text, time_zone text,
                                           start_time timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT CASE granularity
               WHEN 'total' THEN start_time
               WHEN 'minute' THEN date_trunc('minute', t, 'UTC')
               ELSE date_trunc(granularity, t, time_zone)
           END
$$;

-- The buckets of [start_time, end_time) for granularities from hour up:
-- each bucket's start and the part of the range it covers, [lo, hi). Hours
-- are found from quarter-hours, so that 30- and 45-minute offsets and
-- Lord Howe's 30-minute DST shifts come out as PostgreSQL's date_trunc
-- says; days and longer from the local calendar.
CREATE OR REPLACE FUNCTION count.buckets(start_time timestamptz, end_time timestamptz, granularity text,
                                         time_zone text)
RETURNS TABLE (bucket timestamptz, lo timestamptz, hi timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT start_time, start_time, end_time
     WHERE granularity = 'total'
    UNION ALL
    SELECT h.bucket, greatest(min(h.q), start_time), least(max(h.q) + interval '15 minutes', end_time)
      FROM (SELECT q AS q, date_trunc('hour', q, time_zone) AS bucket
              FROM generate_series(count.utc_floor('quarter', start_time), end_time - interval '1 minute',
                                   interval '15 minutes') AS q) AS h
     WHERE granularity = 'hour'
     GROUP BY h.bucket
    UNION ALL
    SELECT l.local_start AT TIME ZONE time_zone, greatest(l.local_start AT TIME ZONE time_zone, start_time),
           least((l.local_start + u.step) AT TIME ZONE time_zone, end_time)
      FROM (VALUES ('day', interval '1 day'), ('week', interval '1 week'), ('month', interval '1 month'),
                   ('year', interval '1 year')) AS u (unit, step)
     CROSS JOIN LATERAL generate_series(date_trunc(u.unit, start_time AT TIME ZONE time_zone),
                                        end_time AT TIME ZONE time_zone, u.step) AS l (local_start)
     WHERE u.unit = granularity
       AND (l.local_start + u.step) AT TIME ZONE time_zone > start_time
       AND l.local_start AT TIME ZONE time_zone < end_time
$$;

-- `t` rounded to the nearest whole UTC unit (minute: `t` itself, a whole
-- minute); halfway goes down.
CREATE OR REPLACE FUNCTION count.utc_round(unit text, t timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT CASE
               WHEN unit = 'minute' THEN t
               WHEN t - count.utc_floor(unit, t) <= count.utc_ceil(unit, t) - t THEN count.utc_floor(unit, t)
               ELSE count.utc_ceil(unit, t)
           END
$$;

-- The signed pieces whose sum is one bucket's [from_time, to_time), each a
-- run of whole units of one tier, read as `sign` times its rows. From the
-- coarsest level down, both ends are rounded to the nearest whole month,
-- then day, hour, quarter-hour and minute; the first level whose rounded
-- ends differ is read whole, and each finer level adds or subtracts the
-- run between the coarser rounding of an end and its own. A month in
-- Asia/Kathmandu, [18:15 on the last day of the month before, 18:15 on the
-- last day), is the UTC month, plus 6 hours, minus 6 hours, minus and plus
-- a quarter-hour: 15 rows per endpoint instead of 54 summed whole. Exact,
-- since every tier holds the same requests; each run is at most half a
-- unit of the coarser level.
CREATE OR REPLACE FUNCTION count.pieces(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (tier text, lo timestamptz, hi timestamptz, sign integer)
LANGUAGE sql STABLE
AS $$
    WITH whole AS (
        -- Exactly one UTC month, day, hour or quarter-hour (a day in UTC,
        -- an hour in most zones): that one row, as the rounding below would
        -- find, without its cost (most of a read by hour over 30 days).
        SELECT u.unit
          FROM (VALUES (4, 'month'), (3, 'day'), (2, 'hour'), (1, 'quarter')) AS u (level, unit)
         WHERE count.utc_floor(u.unit, from_time) = from_time
           AND count.utc_ceil(u.unit, from_time + interval '1 minute') = to_time
         ORDER BY u.level DESC
         LIMIT 1
    ), rounded AS (
        SELECT u.level, u.unit, count.utc_round(u.unit, from_time) AS a, count.utc_round(u.unit, to_time) AS b
          FROM (VALUES (4, 'month'), (3, 'day'), (2, 'hour'), (1, 'quarter'), (0, 'minute')) AS u (level, unit)
    ), levels AS (
        -- held: a coarser level already read [coarser_a, coarser_b).
        SELECT r.unit, r.a, r.b,
               lag(r.a) OVER w AS coarser_a, lag(r.b) OVER w AS coarser_b,
               coalesce(bool_or(r.a < r.b) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false) AS held
          FROM rounded AS r
        WINDOW w AS (ORDER BY r.level DESC)
    )
    SELECT l.unit, p.lo, p.hi, p.sign
      FROM levels AS l,
           LATERAL (VALUES (NOT l.held AND l.a < l.b, l.a, l.b, 1),
                           (l.held AND l.a <> l.coarser_a, least(l.a, l.coarser_a), greatest(l.a, l.coarser_a),
                            CASE WHEN l.a < l.coarser_a THEN 1 ELSE -1 END),
                           (l.held AND l.b <> l.coarser_b, least(l.b, l.coarser_b), greatest(l.b, l.coarser_b),
                            CASE WHEN l.b > l.coarser_b THEN 1 ELSE -1 END)) AS p (wanted, lo, hi, sign)
     WHERE p.wanted AND NOT EXISTS (SELECT 1 FROM whole)
    UNION ALL
    SELECT w.unit, from_time, to_time, 1 FROM whole AS w
$$;

-- The pieces of every bucket of [start_time, end_time) by `unit` in
-- `time_zone`: each bucket's start and end (within the range), and its
-- pieces (count.pieces). By minute, every row of the minute tier is a
-- bucket of its own: one piece, its rows labelled by their own minute, with
-- a NULL bucket. PL/pgSQL, so that count.series_totals' planner sees one
-- function call instead of planning count.buckets and count.pieces inlined
-- (two thirds of planning a read, which was most of a small read's time).
CREATE OR REPLACE FUNCTION count.bucket_pieces(start_time timestamptz, end_time timestamptz, unit text,
                                               time_zone text)
RETURNS TABLE (bucket timestamptz, bucket_end timestamptz, tier text, lo timestamptz, hi timestamptz,
               sign integer)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    -- Two statements, so that each one's plan is kept for the next call
    -- (a plan for both would be planned again for each unit). On
    -- PostgreSQL the service has them keep one generic plan
    -- (service/queries/postgres_reads.sql): custom plans were planned afresh
    -- on every call.
    IF unit = 'minute' THEN
        RETURN QUERY
        SELECT NULL::timestamptz, NULL::timestamptz, 'minute'::text, start_time, end_time, 1
         WHERE start_time < end_time;
    ELSE
        RETURN QUERY
        SELECT b.bucket, b.hi, p.tier, p.lo, p.hi, p.sign
          FROM count.buckets(start_time, end_time, unit, time_zone) AS b
         CROSS JOIN LATERAL count.pieces(b.lo, b.hi) AS p;
    END IF;
END;
$$;

-- Refuses a piece that needs a tier from before its `complete_from`
-- (minutes past their retention; hours before the tiers existed); returns
-- true otherwise.
CREATE OR REPLACE FUNCTION count.piece_is_kept(tier text, lo timestamptz, minute_from timestamptz,
                                               hour_from timestamptz)
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF tier = 'minute' AND lo < minute_from THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: start_time: per-minute totals are kept from ' || minute_from
                || ' (count.tiers); before that, start_time and end_time must be whole quarter-hours';
    END IF;
    IF tier IN ('quarter', 'hour') AND lo < hour_from THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: start_time: hourly totals are kept from ' || hour_from
                || ' (count.tiers); before that, only whole UTC days can be read';
    END IF;
    RETURN true;
END;
$$;

-- Live totals over [start_time, end_time), both whole minutes:
-- - granularity: minute, hour, day, week, month, year, or total (one
--   bucket over the range);
-- - time_zone: an IANA name (PostgreSQL's time zone database) for the
--   buckets' boundaries;
-- - only_methods, only_path, path_prefix: filters on the endpoint (NULL:
--   all);
-- - only_tenants: these tenants only ('' is none; NULL: all);
-- - only_statuses: these status codes ('404'; for GRPC, gRPC codes: '0'
--   is OK), classes ('2xx' to '5xx' for HTTP, 'grpc_ok' and 'grpc_error')
--   or 'unknown' only (NULL: all);
-- - group_by: any of endpoint, tenant, status (the code, and its class)
--   and status_class; '{}' for one row per bucket;
-- - top: only the `top` groups with the largest totals over the range.
-- Returns each bucket's start, the group (each column NULL unless grouped
-- by it; status_code NULL and status_class 'unknown' for an unknown
-- status), the requests counted, and `live`: whether the bucket ends after
-- now(), so that requests are still arriving in it. Buckets without
-- requests are absent. Rows are ordered by bucket, then by total (largest
-- first) when `top` is set, then by method, path, tenant (byte order),
-- status code and class.
--
-- Errors (22023 unless said): a NULL start_time, end_time, granularity or
-- time_zone (22004), end_time before start_time, a time that is not a whole
-- minute or not finite, an unknown granularity, time zone, status or
-- group_by element, a top below 1, a range too long for its granularity (366 days by
-- minute, 1,100 by hour), or per-minute or hourly totals needed from before
-- their tier's `complete_from` (count.tiers).
-- Errors begin with `count.totals:` whichever of the two was called.
CREATE OR REPLACE FUNCTION count.series_totals(
    start_time timestamptz,
    end_time timestamptz,
    granularity text DEFAULT 'total',
    time_zone text DEFAULT 'UTC',
    only_methods text[] DEFAULT NULL,
    only_path text DEFAULT NULL,
    path_prefix text DEFAULT NULL,
    only_tenants text[] DEFAULT NULL,
    only_statuses text[] DEFAULT NULL,
    group_by text[] DEFAULT '{endpoint}',
    top integer DEFAULT NULL
) RETURNS TABLE (bucket timestamptz, method text, path text, tenant text, status_code integer, status_class text,
                 total bigint, live boolean)
-- (On PostgreSQL the service turns JIT off for it: service/queries/postgres_reads.sql.)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    unit text := lower(granularity);
    by_endpoint boolean;
    by_tenant boolean;
    by_status boolean;
    by_class boolean;
    known text;
    longest interval;
    zone_checked timestamptz;
    -- The endpoints the filters let through; NULL without filters.
    ids bigint[];
    -- Whether they are many. Few are compared as an array (an index takes
    -- them), many through a subquery: PostgreSQL's planner estimates
    -- `= ANY (array)` element by element, 15 ms of planning for one
    -- tenant's 4,000 series.
    many_ids boolean;
    -- Whether the tenant tiers can answer: neither grouped nor filtered by
    -- endpoint.
    by_tenant_tiers boolean;
    -- Whether a bucket takes several pieces of each series (count.pieces):
    -- a total, a week or a year, a day or a month outside UTC. Then each
    -- series' rows are summed first, by integers (series_sums), so that the
    -- join to the groups and their sums take one row per series and
    -- bucket: a year's total 8.5 -> 7.4 ms, a year by month in
    -- Asia/Kathmandu 130 -> 103 ms (SQL, scratch store, 1,000 endpoints).
    -- Elsewhere (minutes, hours, UTC days and months) such a pass would
    -- sum nothing.
    presum boolean;
BEGIN
    IF start_time IS NULL OR end_time IS NULL OR granularity IS NULL OR time_zone IS NULL OR group_by IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = 'count.totals: start_time, end_time, granularity, time_zone and group_by must not be NULL';
    END IF;
    IF start_time IN ('infinity', '-infinity') OR date_trunc('minute', start_time, 'UTC') <> start_time THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: start_time must be a whole minute, got ' || start_time;
    END IF;
    IF end_time IN ('infinity', '-infinity') OR date_trunc('minute', end_time, 'UTC') <> end_time THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: end_time must be a whole minute, got ' || end_time;
    END IF;
    IF end_time < start_time THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: end_time ' || end_time || ' is before start_time ' || start_time;
    END IF;
    SELECT g.name, g.longest INTO known, longest
      FROM (VALUES ('minute', interval '366 days'), ('hour', interval '1100 days'), ('day', NULL),
                   ('week', NULL), ('month', NULL), ('year', NULL), ('total', NULL)) AS g (name, longest)
     WHERE g.name = unit;
    IF known IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: granularity must be minute, hour, day, week, month, year or total, got '
                || granularity;
    END IF;
    IF end_time - start_time > longest THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: end_time: a range by ' || unit || ' may be at most ' || longest
                || ' long, got ' || (end_time - start_time);
    END IF;
    -- Whatever the engine says of a zone it cannot use (PostgreSQL: 22023,
    -- or 0A000 for some POSIX-style specs) becomes one error naming it.
    BEGIN
        SELECT date_trunc('day', start_time, time_zone) INTO zone_checked;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: time_zone: unknown time zone ' || quote_literal(time_zone);
    END;
    IF EXISTS (SELECT 1 FROM unnest(group_by) AS g
                WHERE g IS NULL OR g NOT IN ('endpoint', 'tenant', 'status', 'status_class')) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: group_by may hold endpoint, tenant, status and status_class, got '
                || array_to_string(group_by, ', ', 'NULL');
    END IF;
    -- The first bad element, in order; codes without leading zeros, as
    -- stored.
    SELECT coalesce(quote_literal(s.v), 'NULL') INTO known
      FROM unnest(only_statuses) WITH ORDINALITY AS s (v, i)
     WHERE s.v IS NULL OR NOT (s.v ~ '^(0|[1-9][0-9]{0,2})$' OR s.v IN ('1xx', '2xx', '3xx', '4xx', '5xx', 'grpc_ok',
                                                                      'grpc_error', 'unknown'))
     ORDER BY s.i
     LIMIT 1;
    IF known IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: only_statuses: ' || known
                || ' is neither a status code, a class (1xx to 5xx, grpc_ok, grpc_error) nor unknown';
    END IF;
    IF top < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'count.totals: top must be at least 1, got ' || top;
    END IF;
    by_endpoint := 'endpoint' = ANY (group_by);
    by_tenant := 'tenant' = ANY (group_by);
    by_status := 'status' = ANY (group_by);
    by_class := by_status OR 'status_class' = ANY (group_by);
    by_tenant_tiers := NOT by_endpoint AND only_methods IS NULL AND only_path IS NULL AND path_prefix IS NULL;
    presum := unit IN ('total', 'week', 'year') OR (unit IN ('day', 'month') AND lower(time_zone) <> 'utc');
    -- Series are not deleted (but for `count check`'s own, once it is
    -- done), and one is committed with its first raw row: every series
    -- with requests committed before this call is here.
    IF only_methods IS NOT NULL OR only_path IS NOT NULL OR path_prefix IS NOT NULL OR only_tenants IS NOT NULL
       OR only_statuses IS NOT NULL THEN
        SELECT coalesce(array_agg(e.id), '{}') INTO ids
          FROM count.methods AS e
         WHERE (only_methods IS NULL OR e.method = ANY (only_methods))
           AND (only_path IS NULL OR e.path = only_path)
           AND (path_prefix IS NULL OR left(e.path, length(path_prefix)) = path_prefix)
           AND (only_tenants IS NULL OR e.tenant = ANY (only_tenants))
           AND (only_statuses IS NULL OR e.status_code::text = ANY (only_statuses)
                OR count.status_class(e.method, e.status_code) = ANY (only_statuses));
    END IF;
    many_ids := coalesce(array_length(ids, 1), 0) > 100;

    -- One statement: one snapshot for the tiers' complete_from, the tiers
    -- and the raw rows (see the top of this file).
    RETURN QUERY
    WITH tiers AS (
        -- A tier without its row (migration V4 not applied yet) is not
        -- read: 'infinity', as count.add_totals does not write it.
        SELECT coalesce((SELECT t.complete_from FROM count.tiers AS t WHERE t.tier = 'minute'),
                        'infinity') AS minute_from,
               coalesce((SELECT t.complete_from FROM count.tiers AS t WHERE t.tier = 'hour'),
                        'infinity') AS hour_from,
               coalesce((SELECT t.complete_from FROM count.tenant_tiers AS t), 'infinity') AS tenant_from
    ), cut AS (
        SELECT c.bucket, c.bucket_end, c.tier, c.lo, c.hi, c.sign
          FROM count.bucket_pieces(start_time, end_time, unit, time_zone) AS c
    ), spans AS (
        -- Each bucket's end, for the raw rows' buckets.
        SELECT DISTINCT c.bucket, c.bucket_end FROM cut AS c WHERE c.bucket IS NOT NULL
    ), pieces AS (
        -- A piece of hours or longer comes from the tenant tiers where they
        -- can answer and are complete; every other from the series tiers.
        SELECT c.bucket, c.bucket_end, c.tier, c.lo, c.hi, c.sign,
               by_tenant_tiers AND c.tier <> 'minute' AND c.lo >= f.tenant_from AS of_tenants
          FROM cut AS c, tiers AS f
         WHERE count.piece_is_kept(c.tier, c.lo, f.minute_from, f.hour_from)
    ), counted AS NOT MATERIALIZED (
        -- Each row with its bucket's end (NULL by minute), so that no join
        -- at the end has to find it. Only the minute tier's rows name their
        -- own bucket (by minute, a piece has none): the coarser tiers' `at`
        -- is NULL, not converted from each row's day or month for nothing.
        SELECT coalesce(p.bucket, x.at) AS bucket, p.bucket_end, x.method_id, p.sign * x.n AS n
          FROM pieces AS p
         CROSS JOIN LATERAL (
                SELECT t.minute AS at, t.method_id, t.total AS n
                  FROM count.minute_method_totals AS t
                 WHERE p.tier = 'minute' AND t.minute >= p.lo AND t.minute < p.hi
                   AND (ids IS NULL OR (NOT many_ids AND t.method_id = ANY (ids))
                        OR (many_ids AND t.method_id IN (SELECT unnest(ids))))
                UNION ALL
                SELECT NULL::timestamptz, t.method_id, count.hour_total(t.q1, t.q2, t.q3, t.q4)
                  FROM count.hourly_method_totals AS t
                 WHERE p.tier = 'hour' AND NOT p.of_tenants AND t.hour >= p.lo AND t.hour < p.hi
                   AND (ids IS NULL OR (NOT many_ids AND t.method_id = ANY (ids))
                        OR (many_ids AND t.method_id IN (SELECT unnest(ids))))
                UNION ALL
                SELECT NULL::timestamptz, t.method_id,
                       CASE k.i WHEN 0 THEN t.q1 WHEN 1 THEN t.q2 WHEN 2 THEN t.q3 ELSE t.q4 END
                  FROM count.hourly_method_totals AS t
                 CROSS JOIN (VALUES (0), (1), (2), (3)) AS k (i)
                 WHERE p.tier = 'quarter' AND NOT p.of_tenants AND t.hour >= count.utc_floor('hour', p.lo) AND t.hour < p.hi
                   AND t.hour + (k.i * interval '15 minutes') >= p.lo
                   AND t.hour + (k.i * interval '15 minutes') < p.hi
                   AND (ids IS NULL OR (NOT many_ids AND t.method_id = ANY (ids))
                        OR (many_ids AND t.method_id IN (SELECT unnest(ids))))
                UNION ALL
                SELECT NULL::timestamptz, t.method_id, t.total
                  FROM count.daily_method_totals AS t
                 WHERE p.tier = 'day' AND NOT p.of_tenants AND t.day >= (p.lo AT TIME ZONE 'UTC')::date
                   AND t.day < (p.hi AT TIME ZONE 'UTC')::date
                   AND (ids IS NULL OR (NOT many_ids AND t.method_id = ANY (ids))
                        OR (many_ids AND t.method_id IN (SELECT unnest(ids))))
                UNION ALL
                SELECT NULL::timestamptz, t.method_id, t.total
                  FROM count.monthly_method_totals AS t
                 WHERE p.tier = 'month' AND NOT p.of_tenants AND t.month >= (p.lo AT TIME ZONE 'UTC')::date
                   AND t.month < (p.hi AT TIME ZONE 'UTC')::date
                   AND (ids IS NULL OR (NOT many_ids AND t.method_id = ANY (ids))
                        OR (many_ids AND t.method_id IN (SELECT unnest(ids))))
              ) AS x
        UNION ALL
        SELECT b.bucket, s.bucket_end, r.method_id, r.count
          FROM count.requests AS r
         CROSS JOIN LATERAL (SELECT count.bucket_of(r.request_timestamp, unit, time_zone, start_time) AS bucket) AS b
          LEFT JOIN spans AS s ON s.bucket = b.bucket
         WHERE r.request_timestamp >= start_time AND r.request_timestamp < end_time
           AND (ids IS NULL OR (NOT many_ids AND r.method_id = ANY (ids))
                OR (many_ids AND r.method_id IN (SELECT unnest(ids))))
    ), tenant_counted AS (
        -- The pieces the tenant tiers answer, filtered as count.methods is
        -- for `ids` (the tenants in each branch, where an index can take
        -- them).
        SELECT p.bucket, p.bucket_end, x.tenant, x.grpc, x.status_code, p.sign * x.n AS n
          FROM pieces AS p
         CROSS JOIN LATERAL (
                SELECT t.tenant, t.grpc, t.status_code, count.hour_total(t.q1, t.q2, t.q3, t.q4) AS n
                  FROM count.hourly_tenant_totals AS t
                 WHERE p.tier = 'hour' AND t.hour >= p.lo AND t.hour < p.hi
                   AND (only_tenants IS NULL OR t.tenant = ANY (only_tenants))
                UNION ALL
                SELECT t.tenant, t.grpc, t.status_code,
                       CASE k.i WHEN 0 THEN t.q1 WHEN 1 THEN t.q2 WHEN 2 THEN t.q3 ELSE t.q4 END
                  FROM count.hourly_tenant_totals AS t
                 CROSS JOIN (VALUES (0), (1), (2), (3)) AS k (i)
                 WHERE p.tier = 'quarter' AND t.hour >= count.utc_floor('hour', p.lo) AND t.hour < p.hi
                   AND t.hour + (k.i * interval '15 minutes') >= p.lo
                   AND t.hour + (k.i * interval '15 minutes') < p.hi
                   AND (only_tenants IS NULL OR t.tenant = ANY (only_tenants))
                UNION ALL
                SELECT t.tenant, t.grpc, t.status_code, t.total
                  FROM count.daily_tenant_totals AS t
                 WHERE p.tier = 'day' AND t.day >= (p.lo AT TIME ZONE 'UTC')::date
                   AND t.day < (p.hi AT TIME ZONE 'UTC')::date
                   AND (only_tenants IS NULL OR t.tenant = ANY (only_tenants))
                UNION ALL
                SELECT t.tenant, t.grpc, t.status_code, t.total
                  FROM count.monthly_tenant_totals AS t
                 WHERE p.tier = 'month' AND t.month >= (p.lo AT TIME ZONE 'UTC')::date
                   AND t.month < (p.hi AT TIME ZONE 'UTC')::date
                   AND (only_tenants IS NULL OR t.tenant = ANY (only_tenants))
              ) AS x
         WHERE p.of_tenants
           AND (only_statuses IS NULL OR x.status_code::text = ANY (only_statuses)
                OR count.status_class(CASE WHEN x.grpc THEN 'GRPC' ELSE '' END, x.status_code) = ANY (only_statuses))
    ), groups AS (
        -- Each series' group, as its place in the output's order: rows are
        -- added up by an integer, not by the group's text (which cost a
        -- quarter of a read), and sorted by it (sorting every row by its
        -- text cost another quarter). The order is the final ORDER BY's.
        SELECT e.id,
               dense_rank() OVER (ORDER BY CASE WHEN by_endpoint THEN e.method END COLLATE "C",
                                           CASE WHEN by_endpoint THEN e.path END COLLATE "C",
                                           CASE WHEN by_tenant THEN e.tenant END COLLATE "C",
                                           CASE WHEN by_status THEN e.status_code ELSE -1 END,
                                           CASE WHEN by_class THEN count.status_class(e.method, e.status_code) END
                                               COLLATE "C") AS place
          FROM count.methods AS e
         WHERE (by_endpoint OR by_tenant OR by_class)
           AND (ids IS NULL OR (NOT many_ids AND e.id = ANY (ids))
                OR (many_ids AND e.id IN (SELECT unnest(ids))))
    ), series_sums AS (
        -- Not materialized, `counted` is read by one branch only: a custom
        -- plan leaves the other out, a generic one skips it when it runs
        -- (a one-time filter). A series' sum
        -- stays within bigint's range (summed as numeric, it would cost
        -- every read a numeric sum): only tiers saturated at its maximum
        -- (count.add_totals) can give one outside it.
        SELECT c.bucket, max(c.bucket_end) AS bucket_end, c.method_id,
               greatest(least(sum(c.n), 9223372036854775807), -9223372036854775807)::bigint AS n
          FROM counted AS c
         WHERE presum
         GROUP BY c.bucket, c.method_id
        UNION ALL
        SELECT c.bucket, c.bucket_end, c.method_id, c.n
          FROM counted AS c
         WHERE NOT presum
    ), grouped AS (
        -- Without grouping, no group: one sum per bucket. A group whose
        -- pieces cancel out had no request in the bucket (with the tenant
        -- tiers: once their pieces are added, below).
        -- A group is named after any one of its series.
        SELECT c.bucket, max(c.bucket_end) AS bucket_end, g.place, min(c.method_id) AS method_id,
               least(sum(c.n), 9223372036854775807)::bigint AS total
          FROM series_sums AS c
          LEFT JOIN groups AS g ON g.id = c.method_id
         GROUP BY c.bucket, g.place
        HAVING by_tenant_tiers OR sum(c.n) <> 0
    ), named_series AS (
        SELECT g.bucket, g.bucket_end, g.place,
               CASE WHEN by_endpoint THEN e.method END AS method,
               CASE WHEN by_endpoint THEN e.path END AS path,
               CASE WHEN by_tenant THEN e.tenant END AS tenant,
               CASE WHEN by_status AND e.status_code >= 0 THEN e.status_code END AS status_code,
               CASE WHEN by_class THEN count.status_class(e.method, e.status_code) END AS status_class,
               g.total
          FROM grouped AS g
          LEFT JOIN count.methods AS e ON e.id = g.method_id
    ), named AS (
        SELECT n.bucket, n.bucket_end, n.place, n.method, n.path, n.tenant, n.status_code, n.status_class,
               n.total
          FROM named_series AS n
         WHERE NOT by_tenant_tiers
        UNION ALL
        -- The series' sums and the tenant tiers' rows, by the group's
        -- name: few rows per bucket, sorted by it.
        SELECT x.bucket, max(x.bucket_end), NULL::bigint, NULL::text, NULL::text, x.tenant, x.status_code, x.status_class,
               least(sum(x.total), 9223372036854775807)::bigint
          FROM (SELECT n.bucket, n.bucket_end, n.tenant, n.status_code, n.status_class, n.total
                  FROM named_series AS n
                 WHERE by_tenant_tiers
                UNION ALL
                SELECT t.bucket, t.bucket_end, CASE WHEN by_tenant THEN t.tenant END,
                       CASE WHEN by_status AND t.status_code >= 0 THEN t.status_code END,
                       CASE WHEN by_class THEN count.status_class(CASE WHEN t.grpc THEN 'GRPC' ELSE '' END,
                                                                  t.status_code) END,
                       t.n
                  FROM tenant_counted AS t) AS x
         GROUP BY x.bucket, x.tenant, x.status_code, x.status_class
        HAVING sum(x.total) <> 0
    ), ranked AS (
        -- Each group's rank by its total over the whole range, in one
        -- pass (a correlated top-N subquery ran once per row); only with
        -- `top`: without, the one-time filter skips the window's sorts.
        SELECT g.bucket, g.bucket_end, g.place, g.method, g.path, g.tenant, g.status_code, g.status_class,
               g.total,
               dense_rank() OVER (ORDER BY g.group_total DESC, g.place, g.method COLLATE "C", g.path COLLATE "C",
                                  g.tenant COLLATE "C", coalesce(g.status_code, -1),
                                  g.status_class COLLATE "C") AS top_place
          FROM (SELECT n.bucket, n.bucket_end, n.place, n.method, n.path, n.tenant, n.status_code,
                       n.status_class, n.total,
                       sum(n.total) OVER (PARTITION BY n.method, n.path, n.tenant, n.status_code,
                                                       n.status_class) AS group_total
                  FROM named AS n
                 WHERE top IS NOT NULL) AS g
    ), chosen AS (
        SELECT n.bucket, n.bucket_end, n.place, n.method, n.path, n.tenant, n.status_code, n.status_class,
               n.total
          FROM named AS n WHERE top IS NULL
        UNION ALL
        SELECT r.bucket, r.bucket_end, r.place, r.method, r.path, r.tenant, r.status_code, r.status_class,
               r.total
          FROM ranked AS r WHERE r.top_place <= top
    )
    -- Text in byte order ("C"): a collation-aware sort of every row's text
    -- cost more than the read itself. A series group's place (unique in its
    -- bucket) decides before any text is compared.
    SELECT n.bucket, n.method, n.path, n.tenant, n.status_code, n.status_class, n.total,
           coalesce(n.bucket_end, least(n.bucket + interval '1 minute', end_time)) > now()
      FROM chosen AS n
     ORDER BY n.bucket, CASE WHEN top IS NULL THEN 0 ELSE -n.total END, n.place, n.method COLLATE "C",
              n.path COLLATE "C", n.tenant COLLATE "C", coalesce(n.status_code, -1), n.status_class COLLATE "C";
END;
$$;

-- `group_by` when it holds only endpoint (count.totals' one dimension);
-- refused otherwise.
CREATE OR REPLACE FUNCTION count.endpoint_groups(group_by text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(group_by) AS g WHERE g IS DISTINCT FROM 'endpoint') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: group_by may hold only endpoint, got ' || array_to_string(group_by, ', ', 'NULL')
                || ' (count.series_totals groups by tenant and status too)';
    END IF;
    RETURN group_by;
END;
$$;

-- count.series_totals per endpoint, without tenant and status filters: the
-- reads from before series had them, with their columns.
CREATE OR REPLACE FUNCTION count.totals(
    start_time timestamptz,
    end_time timestamptz,
    granularity text DEFAULT 'total',
    time_zone text DEFAULT 'UTC',
    only_methods text[] DEFAULT NULL,
    only_path text DEFAULT NULL,
    path_prefix text DEFAULT NULL,
    group_by text[] DEFAULT '{endpoint}',
    top integer DEFAULT NULL
) RETURNS TABLE (bucket timestamptz, method text, path text, total bigint, live boolean)
LANGUAGE sql STABLE
AS $$
    SELECT t.bucket, t.method, t.path, t.total, t.live
      FROM count.series_totals(start_time, end_time, granularity, time_zone, only_methods, only_path, path_prefix,
                               NULL, NULL, count.endpoint_groups(group_by), top) AS t
$$;
