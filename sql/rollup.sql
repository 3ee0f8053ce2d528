-- count.rollup and count.rollup_due in portable SQL. The service installs
-- them with sql/add_batch.sql where the extension is absent; the extension
-- ships this same file, as rolling up is set-based SQL that native code would
-- only wrap. Re-running this file is harmless: every statement replaces.

-- Rolls up one UTC day: in one statement, moves that day's raw rows into
-- count.daily_method_totals (and adds them to count.monthly_method_totals),
-- adding to what earlier rollups moved. Calling it
-- again picks up rows that arrived since (late data) and never double-counts.
-- Returns the number of requests moved by this call.
CREATE OR REPLACE FUNCTION count.rollup(rollup_day date) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    moved bigint;
BEGIN
    IF rollup_day IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'count.rollup: rollup_day must not be NULL';
    END IF;
    WITH gone AS (
        DELETE FROM count.requests
         WHERE request_timestamp >= (rollup_day::timestamp AT TIME ZONE 'UTC')
           AND request_timestamp < ((rollup_day + 1)::timestamp AT TIME ZONE 'UTC')
        RETURNING method_id, count
    ), summed AS (
        SELECT method_id, sum(count)::bigint AS total FROM gone GROUP BY method_id
    ), merged AS (
        INSERT INTO count.daily_method_totals AS d (day, method_id, total)
        SELECT rollup_day, method_id, total FROM summed
        ON CONFLICT (day, method_id) DO UPDATE SET total = d.total + excluded.total
        RETURNING 1
    ), monthly AS (
        -- In key order: rollups of other days of the month update the same
        -- rows, and a common order makes them wait instead of deadlocking.
        INSERT INTO count.monthly_method_totals AS m (month, method_id, total)
        SELECT rollup_day - (extract(day FROM rollup_day)::int - 1), method_id, total
          FROM summed
         ORDER BY method_id
        ON CONFLICT (month, method_id) DO UPDATE SET total = m.total + excluded.total
        RETURNING 1
    )
    SELECT coalesce(sum(total), 0)::bigint INTO moved FROM summed;
    RETURN moved;
END;
$$;

-- Rolls up every complete UTC day before today that still has raw rows, in
-- one statement (one scan of count.requests). Returns how many days it
-- rolled up. This is what pg_cron or `count serve --rollup-every` runs.
CREATE OR REPLACE FUNCTION count.rollup_due() RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    today_start timestamptz := ((now() AT TIME ZONE 'UTC')::date)::timestamp AT TIME ZONE 'UTC';
    days bigint;
BEGIN
    WITH gone AS (
        DELETE FROM count.requests
         WHERE request_timestamp < today_start
        RETURNING method_id, request_timestamp, count
    ), summed AS (
        SELECT (request_timestamp AT TIME ZONE 'UTC')::date AS day, method_id, sum(count)::bigint AS total
          FROM gone
         GROUP BY 1, 2
    ), merged AS (
        INSERT INTO count.daily_method_totals AS d (day, method_id, total)
        SELECT day, method_id, total FROM summed
        ON CONFLICT (day, method_id) DO UPDATE SET total = d.total + excluded.total
        RETURNING 1
    ), monthly AS (
        INSERT INTO count.monthly_method_totals AS m (month, method_id, total)
        SELECT day - (extract(day FROM day)::int - 1), method_id, sum(total)::bigint
          FROM summed
         GROUP BY 1, 2
         ORDER BY 1, 2
        ON CONFLICT (month, method_id) DO UPDATE SET total = m.total + excluded.total
        RETURNING 1
    )
    SELECT count(DISTINCT day) INTO days FROM summed;
    RETURN days;
END;
$$;
