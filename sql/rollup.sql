-- count.rollup and count.rollup_due in portable SQL, over the tiers of
-- sql/totals.sql. The service installs them with sql/add_batch.sql where
-- the extension is absent; the extension has its own, which roll up a past
-- day's partition whole (extension/queries/partitions.sql). Re-running this
-- file is harmless: every statement replaces.
--
-- Exactly once: a rollup deletes raw rows and adds them to every tier in one
-- transaction, so any snapshot sees each request either as a raw row or in
-- the tiers, never both and never neither. A raw row that arrives during a
-- rollup is not seen by its DELETE and stays for the next one. Two rollups
-- at once: under READ COMMITTED the second's DELETE waits for the first and
-- skips the rows it deleted; under REPEATABLE READ or SERIALIZABLE it fails
-- with 40001, which the service retries. So that this stays rare, rollups
-- take turns on a row lock (count.tiers' minute row): count.rollup waits
-- for its turn, count.rollup_due skips its run when another is under way
-- (the running one, or the next, takes the raw rows).

-- Rolls up one UTC day: moves that day's raw rows into every tier, adding
-- to what earlier rollups moved. Calling it again picks up rows that arrived
-- since (late data) and never double-counts. Returns the number of requests
-- moved by this call.
CREATE OR REPLACE FUNCTION count.rollup(rollup_day date) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    moved bigint;
BEGIN
    IF rollup_day IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'count.rollup: rollup_day must not be NULL';
    END IF;
    PERFORM 1 FROM count.tiers WHERE tier = 'minute' FOR UPDATE;
    WITH gone AS (
        DELETE FROM count.requests
         WHERE request_timestamp >= (rollup_day::timestamp AT TIME ZONE 'UTC')
           AND request_timestamp < ((rollup_day + 1)::timestamp AT TIME ZONE 'UTC')
        RETURNING method_id, request_timestamp, count
    ), summed AS (
        SELECT date_trunc('minute', request_timestamp, 'UTC') AS minute, method_id,
               least(sum(count), 9223372036854775807)::bigint AS total
          FROM gone
         GROUP BY 1, 2
    )
    SELECT count.add_totals(array_agg(minute), array_agg(method_id), array_agg(total))
      INTO moved
      FROM summed;
    RETURN moved;
END;
$$;

-- Rolls up every raw row, whatever its time (late data included), applies
-- the fine tiers' retention (count.apply_retention) and forgets long-silent
-- producers (count.expire_producers). Returns how many UTC days it added
-- to, 0 when another rollup was under way. This is what pg_cron and
-- `count serve --rollup-every` run: the service every few seconds, so that
-- raw rows, which every read scans, stay few.
CREATE OR REPLACE FUNCTION count.rollup_due() RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    days bigint;
    moved bigint;
BEGIN
    PERFORM 1 FROM count.tiers WHERE tier = 'minute' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    PERFORM count.apply_retention();
    -- Finite times only: an infinite row (count.add_batch refuses them, but
    -- a direct INSERT could add one) has no minute to roll up into.
    WITH gone AS (
        DELETE FROM count.requests
         WHERE request_timestamp > '-infinity' AND request_timestamp < 'infinity'
        RETURNING method_id, request_timestamp, count
    ), summed AS (
        SELECT date_trunc('minute', request_timestamp, 'UTC') AS minute, method_id,
               least(sum(count), 9223372036854775807)::bigint AS total
          FROM gone
         GROUP BY 1, 2
    )
    SELECT count(DISTINCT (minute AT TIME ZONE 'UTC')::date),
           count.add_totals(array_agg(minute), array_agg(method_id), array_agg(total))
      INTO days, moved
      FROM summed;
    PERFORM count.expire_producers();
    RETURN days;
END;
$$;
