-- count.rollup and count.rollup_due in portable SQL, over the tiers of
-- sql/totals.sql. The service installs them with sql/add_batch.sql where
-- the extension is absent; the extension has its own, which roll up a past
-- day's partition whole (extension/queries/partitions.sql). Re-running this
-- file is harmless: every statement replaces.
--
-- Exactly once: a rollup deletes raw rows and adds them to every tier in one
-- transaction, so any snapshot sees each request either as a raw row or in
-- the tiers, never both and never neither. What it adds is what its DELETE
-- returned (count.take_requests), so it holds under any isolation level: a
-- raw row committed during a rollup is not deleted by it and stays for the
-- next one. (Reading the rows, then deleting them, would under READ
-- COMMITTED delete rows committed between the two statements unread.) Two
-- rollups at once: under READ COMMITTED the second's DELETE waits for the
-- first and skips the rows it deleted; under REPEATABLE READ or
-- SERIALIZABLE it fails with 40001, which the service retries. So that this
-- stays rare, rollups take turns on a row lock (count.tiers' minute row):
-- count.rollup waits for its turn, count.rollup_due skips its run when
-- another is under way (the running one, or the next, takes the raw rows).

-- Deletes the raw rows of [from_time, to_time), finite times only, and
-- returns them: the one statement a rollup reads them with. A function of
-- its own, as a data-modifying WITH in a function body is outside the
-- portable subset (docs/sql.md, "Portability").
CREATE OR REPLACE FUNCTION count.take_requests(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (method_id bigint, request_timestamp timestamptz, count bigint)
LANGUAGE sql
AS $$
    DELETE FROM count.requests AS r
     WHERE r.request_timestamp >= from_time AND r.request_timestamp < to_time
       AND r.request_timestamp > '-infinity' AND r.request_timestamp < 'infinity'
    RETURNING r.method_id, r.request_timestamp, r.count
$$;

-- Rolls up one UTC day: moves that day's raw rows into every tier, adding
-- to what earlier rollups moved. Calling it again picks up rows that arrived
-- since (late data) and never double-counts. Returns the number of requests
-- moved by this call.
CREATE OR REPLACE FUNCTION count.rollup(rollup_day date) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    turn text;
    moved bigint;
BEGIN
    IF rollup_day IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'count.rollup: rollup_day must not be NULL';
    END IF;
    -- Its turn: waits while another rollup runs.
    SELECT tier INTO turn FROM count.tiers WHERE tier = 'minute' FOR UPDATE;
    SELECT count.add_totals(array_agg(s.minute), array_agg(s.method_id), array_agg(s.total))
      INTO moved
      FROM (SELECT date_trunc('minute', r.request_timestamp, 'UTC') AS minute, r.method_id,
                   least(sum(r.count), 9223372036854775807)::bigint AS total
              FROM count.take_requests(rollup_day::timestamp AT TIME ZONE 'UTC',
                                       (rollup_day + 1)::timestamp AT TIME ZONE 'UTC') AS r
             GROUP BY 1, 2) AS s;
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
    turn text;
    dropped bigint;
    days bigint;
    moved bigint;
    forgotten bigint;
BEGIN
    -- Its turn, or none when another rollup runs. (SELECT … INTO, not
    -- PERFORM and FOUND, which CockroachDB's PL/pgSQL lacks.)
    SELECT tier INTO turn FROM count.tiers WHERE tier = 'minute' FOR UPDATE SKIP LOCKED;
    IF turn IS NULL THEN
        RETURN 0;
    END IF;
    SELECT count.apply_retention() INTO dropped;
    -- Finite times only: an infinite row (count.add_batch refuses them, but
    -- a direct INSERT could add one) has no minute to roll up into.
    SELECT count(DISTINCT (s.minute AT TIME ZONE 'UTC')::date),
           count.add_totals(array_agg(s.minute), array_agg(s.method_id), array_agg(s.total))
      INTO days, moved
      FROM (SELECT date_trunc('minute', r.request_timestamp, 'UTC') AS minute, r.method_id,
                   least(sum(r.count), 9223372036854775807)::bigint AS total
              FROM count.take_requests('-infinity', 'infinity') AS r
             GROUP BY 1, 2) AS s;
    SELECT count.expire_producers() INTO forgotten;
    RETURN days;
END;
$$;
