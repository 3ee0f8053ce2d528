-- count.rollup and count.rollup_due in portable SQL. The service installs
-- them with sql/add_batch.sql where the extension is absent. The extension
-- ships this same file for count.add_totals, and replaces the two rollups
-- with versions that roll up a day's partition whole (extension/queries/
-- partitions.sql). Re-running this file is harmless: every statement
-- replaces.

-- Adds requests to count.daily_method_totals and
-- count.monthly_method_totals: element i of the arrays is one (day,
-- endpoint, requests), at most one element per (day, endpoint). Every rollup
-- ends here. Returns the requests added.
--
-- A total that would pass bigint's maximum (9,223,372,036,854,775,807) stays
-- at it, with a WARNING: failing instead would stop every later rollup, of
-- every day and endpoint, on one absurd total.
CREATE OR REPLACE FUNCTION count.add_totals(days date[], method_ids bigint[], totals bigint[])
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    added bigint;
    saturated boolean;
BEGIN
    WITH summed AS (
        SELECT day, method_id, total FROM unnest(days, method_ids, totals) AS t (day, method_id, total)
    ), merged AS (
        INSERT INTO count.daily_method_totals AS d (day, method_id, total)
        SELECT day, method_id, total FROM summed
        ON CONFLICT (day, method_id) DO UPDATE
            SET total = least(d.total::numeric + excluded.total, 9223372036854775807)::bigint
        RETURNING d.total = 9223372036854775807 AS at_max
    ), monthly AS (
        -- In key order: rollups of other days of the month update the same
        -- rows, and a common order makes them wait instead of deadlocking.
        INSERT INTO count.monthly_method_totals AS m (month, method_id, total)
        SELECT day - (extract(day FROM day)::int - 1), method_id,
               least(sum(total), 9223372036854775807)::bigint
          FROM summed
         GROUP BY 1, 2
         ORDER BY 1, 2
        ON CONFLICT (month, method_id) DO UPDATE
            SET total = least(m.total::numeric + excluded.total, 9223372036854775807)::bigint
        RETURNING m.total = 9223372036854775807 AS at_max
    )
    SELECT least(coalesce(sum(total), 0), 9223372036854775807)::bigint,
           coalesce((SELECT bool_or(at_max) FROM merged), false)
               OR coalesce((SELECT bool_or(at_max) FROM monthly), false)
      INTO added, saturated
      FROM summed;
    IF saturated THEN
        RAISE WARNING 'count.add_totals: a total reached bigint''s maximum and stays there';
    END IF;
    RETURN added;
END;
$$;

-- Forgets producers whose last batch was applied over 30 days ago: every
-- count-client Counter ever run has a row, which would otherwise stay
-- forever. The price: a batch resent more than 30 days after it was applied
-- would be counted again (a Counter resends until acknowledged, so only one
-- cut off from the server for that long could). count.rollup_due calls
-- this. Returns the producers forgotten.
CREATE OR REPLACE FUNCTION count.expire_producers() RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    forgotten bigint;
BEGIN
    WITH expired AS (
        DELETE FROM count.producers WHERE updated_at < now() - interval '30 days' RETURNING 1
    )
    SELECT count(*) INTO forgotten FROM expired;
    RETURN forgotten;
END;
$$;

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
