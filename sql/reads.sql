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
-- request once. Each bucket is cut into pieces, each read from one tier
-- only: whole UTC months from the monthly totals, whole UTC days from the
-- daily ones, whole hours and quarter-hours from the hourly ones, the
-- minutes left from the minute totals; raw rows are added wherever they
-- fall.

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
                   ('year', interval '1 year')) AS u (granularity, step)
     CROSS JOIN LATERAL generate_series(date_trunc(u.granularity, start_time AT TIME ZONE time_zone),
                                        end_time AT TIME ZONE time_zone, u.step) AS l (local_start)
     WHERE u.granularity = buckets.granularity
       AND (l.local_start + u.step) AT TIME ZONE time_zone > start_time
       AND l.local_start AT TIME ZONE time_zone < end_time
$$;

-- The pieces of one bucket's [from_time, to_time), each a run of whole units of one
-- tier: from the outside in, minutes up to the first whole quarter-hour,
-- quarter-hours up to the first whole hour, hours up to the first whole
-- day, days up to the first whole month, and whole months; the same at the
-- end. A level whose coarser units do not fit takes the rest whole. At most
-- nine pieces, none empty.
CREATE OR REPLACE FUNCTION count.pieces(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (tier text, lo timestamptz, hi timestamptz)
LANGUAGE sql STABLE
AS $$
    WITH q AS (
        SELECT CASE WHEN count.utc_ceil('quarter', from_time) < count.utc_floor('quarter', to_time)
                    THEN count.utc_ceil('quarter', from_time) ELSE from_time END AS a,
               CASE WHEN count.utc_ceil('quarter', from_time) < count.utc_floor('quarter', to_time)
                    THEN count.utc_floor('quarter', to_time) ELSE from_time END AS b
    ), h AS (
        SELECT CASE WHEN count.utc_ceil('hour', a) < count.utc_floor('hour', b) THEN count.utc_ceil('hour', a) ELSE a END AS a,
               CASE WHEN count.utc_ceil('hour', a) < count.utc_floor('hour', b) THEN count.utc_floor('hour', b) ELSE a END AS b
          FROM q
    ), d AS (
        SELECT CASE WHEN count.utc_ceil('day', a) < count.utc_floor('day', b) THEN count.utc_ceil('day', a) ELSE a END AS a,
               CASE WHEN count.utc_ceil('day', a) < count.utc_floor('day', b) THEN count.utc_floor('day', b) ELSE a END AS b
          FROM h
    ), m AS (
        SELECT CASE WHEN count.utc_ceil('month', a) < count.utc_floor('month', b) THEN count.utc_ceil('month', a) ELSE a END AS a,
               CASE WHEN count.utc_ceil('month', a) < count.utc_floor('month', b) THEN count.utc_floor('month', b) ELSE a END AS b
          FROM d
    )
    SELECT p.tier, p.lo, p.hi
      FROM q, h, d, m,
           LATERAL (VALUES ('minute', from_time, q.a), ('minute', q.b, to_time),
                           ('quarter', q.a, h.a), ('quarter', h.b, q.b),
                           ('hour', h.a, d.a), ('hour', d.b, h.b),
                           ('day', d.a, m.a), ('day', m.b, d.b),
                           ('month', m.a, m.b)) AS p (tier, lo, hi)
     WHERE p.lo < p.hi
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
-- - only_methods, only_path, path_prefix: filters (NULL: all);
-- - group_by: '{endpoint}' for a row per endpoint, '{}' for one per bucket;
-- - top: only the `top` groups with the largest totals over the range.
-- Returns each bucket's start, the endpoint (NULL without grouping), the
-- requests counted, and `live`: whether the bucket ends after now(), so
-- that requests are still arriving in it. Buckets without requests are
-- absent. Rows are ordered by bucket, then by total (largest first) when
-- `top` is set, then by method and path.
--
-- Errors (22023 unless said): a NULL start_time, end_time, granularity or
-- time_zone (22004), end_time before start_time, a time that is not a whole
-- minute or not finite, an unknown granularity, time zone or group_by
-- element, a top below 1, a range too long for its granularity (366 days by
-- minute, 1,100 by hour), or per-minute or hourly totals needed from before
-- their tier's `complete_from` (count.tiers).
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
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    unit text := lower(granularity);
    by_endpoint boolean;
    longest interval;
    -- The endpoints the filters let through; NULL without filters.
    ids bigint[];
BEGIN
    IF start_time IS NULL OR end_time IS NULL OR granularity IS NULL OR time_zone IS NULL OR group_by IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = 'count.totals: start_time, end_time, granularity, time_zone and group_by must not be NULL';
    END IF;
    IF NOT isfinite(start_time) OR date_trunc('minute', start_time, 'UTC') <> start_time THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: start_time must be a whole minute, got ' || start_time;
    END IF;
    IF NOT isfinite(end_time) OR date_trunc('minute', end_time, 'UTC') <> end_time THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: end_time must be a whole minute, got ' || end_time;
    END IF;
    IF end_time < start_time THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: end_time ' || end_time || ' is before start_time ' || start_time;
    END IF;
    SELECT g.longest INTO longest
      FROM (VALUES ('minute', interval '366 days'), ('hour', interval '1100 days'), ('day', NULL),
                   ('week', NULL), ('month', NULL), ('year', NULL), ('total', NULL)) AS g (name, longest)
     WHERE g.name = unit;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: granularity must be minute, hour, day, week, month, year or total, got '
                || granularity;
    END IF;
    IF end_time - start_time > longest THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: end_time: a range by ' || unit || ' may be at most ' || longest
                || ' long, got ' || (end_time - start_time);
    END IF;
    BEGIN
        PERFORM date_trunc('day', start_time, time_zone);
    EXCEPTION WHEN invalid_parameter_value OR feature_not_supported THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: time_zone: unknown time zone ' || quote_literal(time_zone);
    END;
    IF EXISTS (SELECT 1 FROM unnest(group_by) AS g WHERE g IS DISTINCT FROM 'endpoint') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'count.totals: group_by may hold only endpoint, got ' || array_to_string(group_by, ', ', 'NULL');
    END IF;
    IF top < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'count.totals: top must be at least 1, got ' || top;
    END IF;
    by_endpoint := 'endpoint' = ANY (group_by);
    -- Endpoints are never deleted, and one is committed with its first raw
    -- row: every endpoint with requests committed before this call is here.
    IF only_methods IS NOT NULL OR only_path IS NOT NULL OR path_prefix IS NOT NULL THEN
        SELECT coalesce(array_agg(e.id), '{}') INTO ids
          FROM count.methods AS e
         WHERE (only_methods IS NULL OR e.method = ANY (only_methods))
           AND (only_path IS NULL OR e.path = only_path)
           AND (path_prefix IS NULL OR left(e.path, length(path_prefix)) = path_prefix);
    END IF;

    -- One statement: one snapshot for the tiers' complete_from, the tiers
    -- and the raw rows (see the top of this file).
    RETURN QUERY
    WITH tiers AS (
        SELECT (SELECT t.complete_from FROM count.tiers AS t WHERE t.tier = 'minute') AS minute_from,
               (SELECT t.complete_from FROM count.tiers AS t WHERE t.tier = 'hour') AS hour_from
    ), spans AS (
        SELECT b.bucket, b.lo, b.hi FROM count.buckets(start_time, end_time, unit, time_zone) AS b
         WHERE unit <> 'minute'
    ), cut AS (
        -- By minute, every tier row of the minute tier is a bucket: no cuts.
        SELECT 'minute' AS tier, start_time AS lo, end_time AS hi
         WHERE unit = 'minute' AND start_time < end_time
        UNION ALL
        SELECT p.tier, p.lo, p.hi FROM spans AS s CROSS JOIN LATERAL count.pieces(s.lo, s.hi) AS p
    ), merged AS (
        -- Adjacent pieces of one tier read as one range.
        SELECT c.tier, min(c.lo) AS lo, max(c.hi) AS hi
          FROM (SELECT r.tier, r.lo, r.hi, sum(r.starts) OVER (PARTITION BY r.tier ORDER BY r.lo) AS run
                  FROM (SELECT c.tier, c.lo, c.hi,
                               CASE WHEN c.lo = lag(c.hi) OVER (PARTITION BY c.tier ORDER BY c.lo) THEN 0 ELSE 1 END
                                   AS starts
                          FROM cut AS c) AS r) AS c
         GROUP BY c.tier, c.run
    ), pieces AS (
        SELECT m.tier, m.lo, m.hi
          FROM merged AS m, tiers AS f
         WHERE count.piece_is_kept(m.tier, m.lo, f.minute_from, f.hour_from)
    ), counted AS (
        SELECT x.at, x.method_id, x.n
          FROM pieces AS p
         CROSS JOIN LATERAL (
                SELECT t.minute AS at, t.method_id, t.total AS n
                  FROM count.minute_method_totals AS t
                 WHERE p.tier = 'minute' AND t.minute >= p.lo AND t.minute < p.hi
                   AND (ids IS NULL OR t.method_id = ANY (ids))
                UNION ALL
                SELECT t.hour, t.method_id, t.q1 + t.q2 + t.q3 + t.q4
                  FROM count.hourly_method_totals AS t
                 WHERE p.tier = 'hour' AND t.hour >= p.lo AND t.hour < p.hi
                   AND (ids IS NULL OR t.method_id = ANY (ids))
                UNION ALL
                SELECT t.hour + (k.i * interval '15 minutes'), t.method_id,
                       CASE k.i WHEN 0 THEN t.q1 WHEN 1 THEN t.q2 WHEN 2 THEN t.q3 ELSE t.q4 END
                  FROM count.hourly_method_totals AS t
                 CROSS JOIN (VALUES (0), (1), (2), (3)) AS k (i)
                 WHERE p.tier = 'quarter' AND t.hour >= count.utc_floor('hour', p.lo) AND t.hour < p.hi
                   AND t.hour + (k.i * interval '15 minutes') >= p.lo
                   AND t.hour + (k.i * interval '15 minutes') < p.hi
                   AND (ids IS NULL OR t.method_id = ANY (ids))
                UNION ALL
                SELECT t.day::timestamp AT TIME ZONE 'UTC', t.method_id, t.total
                  FROM count.daily_method_totals AS t
                 WHERE p.tier = 'day' AND t.day >= (p.lo AT TIME ZONE 'UTC')::date
                   AND t.day < (p.hi AT TIME ZONE 'UTC')::date
                   AND (ids IS NULL OR t.method_id = ANY (ids))
                UNION ALL
                SELECT t.month::timestamp AT TIME ZONE 'UTC', t.method_id, t.total
                  FROM count.monthly_method_totals AS t
                 WHERE p.tier = 'month' AND t.month >= (p.lo AT TIME ZONE 'UTC')::date
                   AND t.month < (p.hi AT TIME ZONE 'UTC')::date
                   AND (ids IS NULL OR t.method_id = ANY (ids))
              ) AS x
        UNION ALL
        SELECT r.request_timestamp, r.method_id, r.count
          FROM count.requests AS r
         WHERE r.request_timestamp >= start_time AND r.request_timestamp < end_time
           AND (ids IS NULL OR r.method_id = ANY (ids))
    ), grouped AS (
        SELECT count.bucket_of(c.at, unit, time_zone, start_time) AS bucket,
               CASE WHEN by_endpoint THEN c.method_id END AS method_id,
               least(sum(c.n), 9223372036854775807)::bigint AS total
          FROM counted AS c
         GROUP BY 1, 2
    ), named AS (
        SELECT g.bucket, e.method, e.path, g.total
          FROM grouped AS g
          LEFT JOIN count.methods AS e ON e.id = g.method_id
    ), ranked AS (
        SELECT n.method, n.path
          FROM named AS n
         GROUP BY n.method, n.path
         ORDER BY sum(n.total) DESC, n.method, n.path
         LIMIT top
    )
    SELECT n.bucket, n.method, n.path, n.total,
           coalesce(s.hi, least(n.bucket + interval '1 minute', end_time)) > now()
      FROM named AS n
      LEFT JOIN spans AS s ON s.bucket = n.bucket
     WHERE top IS NULL
        OR EXISTS (SELECT 1 FROM ranked AS k
                    WHERE k.method IS NOT DISTINCT FROM n.method AND k.path IS NOT DISTINCT FROM n.path)
     ORDER BY n.bucket, CASE WHEN top IS NULL THEN 0 ELSE -n.total END, n.method, n.path;
END;
$$;
