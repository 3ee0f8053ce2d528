-- count.rollup and count.rollup_due in portable SQL, over the totals of
-- sql/totals.sql. The service installs them with sql/add_batch.sql where
-- the extension is absent; the extension has its own, which roll up a
-- day's partition whole (extension/queries/partitions.sql). Re-running this
-- file is harmless: every statement replaces.

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
        SELECT method_id, least(sum(count), 9223372036854775807)::bigint AS total FROM gone GROUP BY method_id
    )
    SELECT count.add_totals(array_agg(rollup_day), array_agg(method_id), array_agg(total))
      INTO moved
      FROM summed;
    RETURN moved;
END;
$$;

-- Rolls up every complete UTC day before today that still has raw rows, in
-- one statement (one scan of count.requests), and forgets long-silent
-- producers (count.expire_producers). Returns how many days it rolled up.
-- This is what pg_cron or `count serve --rollup-every` runs.
CREATE OR REPLACE FUNCTION count.rollup_due() RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    today_start timestamptz := ((now() AT TIME ZONE 'UTC')::date)::timestamp AT TIME ZONE 'UTC';
    days bigint;
    moved bigint;
    forgotten bigint;
BEGIN
    -- Finite times only: a '-infinity' row (count.add_batch refuses them,
    -- but a direct INSERT could add one) has no day to roll up into.
    WITH gone AS (
        DELETE FROM count.requests
         WHERE request_timestamp > '-infinity' AND request_timestamp < today_start
        RETURNING method_id, request_timestamp, count
    ), summed AS (
        SELECT (request_timestamp AT TIME ZONE 'UTC')::date AS day, method_id,
               least(sum(count), 9223372036854775807)::bigint AS total
          FROM gone
         GROUP BY 1, 2
    )
    SELECT count(DISTINCT day), count.add_totals(array_agg(day), array_agg(method_id), array_agg(total))
      INTO days, moved
      FROM summed;
    SELECT count.expire_producers() INTO forgotten;
    RETURN days;
END;
$$;
