-- Daily partitions of count.requests, on PostgreSQL only.
--
-- Rolling a day up deleted its raw rows one by one, and the DELETE was most
-- of a rollup's time (10x the bare aggregate scan of the same rows). With a
-- partition per UTC day, rolling up a day scans its partition and truncates
-- it. The portable schema (migrations/) keeps one plain table:
-- count.prepare_partitions turns it into a partitioned one the first time,
-- keeping the original table, rows and all, as the default partition. Rows
-- of a day without a partition of its own (late data for an old day, a day
-- nobody prepared) land there and roll up the portable way, so correctness
-- never depends on partitions being ready, only speed does.
--
-- The partitions and the partitioned table hold data: they are kept out of
-- the extension, so DROP EXTENSION never drops them.

-- Detaches `rel` from this extension if creating it made it a member (when
-- called from the extension's own script).
CREATE OR REPLACE FUNCTION count.keep_out_of_extension(rel regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_depend
         WHERE classid = 'pg_class'::regclass AND objid = rel
           AND refclassid = 'pg_extension'::regclass AND deptype = 'e'
    ) THEN
        EXECUTE format('ALTER EXTENSION count DROP TABLE %s', rel);
    END IF;
END;
$$;

-- The daily partitions of count.requests (named requests_YYYYMMDD), oldest
-- first.
CREATE OR REPLACE FUNCTION count.day_partitions(OUT day date, OUT part regclass) RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT to_date(substr(c.relname, length('requests_') + 1), 'YYYYMMDD'), i.inhrelid::regclass
      FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
     WHERE i.inhparent = to_regclass('count.requests')
       AND c.relname ~ '^requests_[0-9]{8}$'
     ORDER BY c.relname
$$;

-- The partition of count.requests that holds exactly `day`, if any.
CREATE OR REPLACE FUNCTION count.day_partition(day date) RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.part FROM count.day_partitions() AS p WHERE p.day = day_partition.day
$$;

-- Where rows without a partition of their own are: the default partition,
-- or the plain table where count.prepare_partitions has not run yet.
CREATE OR REPLACE FUNCTION count.unpartitioned_rows() RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT i.inhrelid::regclass
           FROM pg_inherits AS i JOIN pg_partitioned_table AS p ON p.partrelid = i.inhparent
          WHERE i.inhparent = 'count.requests'::regclass AND p.partdefid = i.inhrelid),
        'count.requests'::regclass)
$$;

-- Partitions count.requests by UTC day (once), creates the partitions of
-- `days` days from `first_day` (default: today, UTC) that do not exist, and
-- drops partitions of days over two days before both `first_day` and today
-- that are empty (rolled up).
-- Returns the partitions created. A day whose rows already sit in the
-- default partition gets no partition (they roll up from there). Does
-- nothing before the migrations have created count.requests.
--
-- Creating and dropping partitions lock count.requests briefly (ingest
-- waits); count.rollup_due calls this at its end, where a lock not granted
-- within 200 ms is given up until the next run rather than waited for.
CREATE OR REPLACE FUNCTION count.prepare_partitions(first_day date DEFAULT NULL, days integer DEFAULT 3)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    day date;
    name text;
    created integer := 0;
    old regclass;
    empty boolean;
BEGIN
    IF to_regclass('count.requests') IS NULL THEN
        RETURN 0;
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = 'count.requests'::regclass) = 'r' THEN
        LOCK TABLE count.requests IN ACCESS EXCLUSIVE MODE;
        ALTER TABLE count.requests RENAME TO requests_default;
        -- With its CHECK (count > 0): every partition inherits it.
        CREATE TABLE count.requests (LIKE count.requests_default INCLUDING CONSTRAINTS)
            PARTITION BY RANGE (request_timestamp);
        ALTER TABLE count.requests ATTACH PARTITION count.requests_default DEFAULT;
        PERFORM count.keep_out_of_extension('count.requests');
        -- The same owner and privileges as the table it replaces.
        -- regrole's text is already quoted where a name needs it.
        EXECUTE format('ALTER TABLE count.requests OWNER TO %s',
            (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'count.requests_default'::regclass));
        FOR name IN
            SELECT format('GRANT %s ON count.requests TO %s%s', a.privilege_type,
                       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                       CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
              FROM pg_class AS c, aclexplode(c.relacl) AS a
             WHERE c.oid = 'count.requests_default'::regclass
        LOOP
            EXECUTE name;
        END LOOP;
    END IF;

    FOR day IN
        SELECT d::date FROM generate_series(coalesce(first_day, today), coalesce(first_day, today) + (days - 1), interval '1 day') AS d
    LOOP
        name := 'requests_' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('count.' || name) IS NOT NULL;
        BEGIN
            -- Bounds spelled out in ISO form with their offset: the
            -- session's DateStyle and TimeZone must not change them.
            EXECUTE format('CREATE TABLE count.%I PARTITION OF count.requests FOR VALUES FROM (%L) TO (%L)',
                name, to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00', to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
        EXCEPTION WHEN check_violation THEN
            -- The default partition holds rows of that day.
            CONTINUE;
        END;
        PERFORM count.keep_out_of_extension(('count.' || quote_ident(name))::regclass);
        created := created + 1;
    END LOOP;

    -- The emptiness check must see rows committed while it waited for the
    -- lock: only a READ COMMITTED statement takes its snapshot after the
    -- wait. Under another isolation level old partitions stay (empty ones
    -- cost nothing but a catalog entry) until a READ COMMITTED run.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN created;
    END IF;
    FOR old IN
        SELECT p.part FROM count.day_partitions() AS p WHERE p.day < least(first_day, today) - 2
    LOOP
        -- Locked first, so that no row can arrive between the look and the
        -- drop.
        LOCK TABLE count.requests IN ACCESS EXCLUSIVE MODE;
        EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %s)', old) INTO empty;
        IF empty THEN
            EXECUTE format('DROP TABLE %s', old);
        END IF;
    END LOOP;
    RETURN created;
END;
$$;

-- Moves the rows of `rel` (a partition, the rows without a partition of
-- their own, or count.requests whole) in [from_ts, to_ts) into every tier,
-- the portable way (DELETE ... RETURNING). Correct at any isolation level:
-- rows it does not see stay for the next rollup. Returns the requests moved
-- and the UTC days they belong to.
CREATE OR REPLACE FUNCTION count.rollup_rows(rel regclass, from_ts timestamptz, to_ts timestamptz,
                                  OUT moved bigint, OUT days date[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format($q$
        WITH gone AS (
            -- Finite times only: see the portable count.rollup_due.
            DELETE FROM %s
             WHERE request_timestamp >= $1 AND request_timestamp < $2
               AND request_timestamp > '-infinity' AND request_timestamp < 'infinity'
            RETURNING method_id, request_timestamp, count
        ), summed AS (
            SELECT date_trunc('minute', request_timestamp, 'UTC') AS minute, method_id,
                   least(sum(count), 9223372036854775807)::bigint AS total
              FROM gone
             GROUP BY 1, 2
        )
        SELECT count.add_totals(array_agg(minute), array_agg(method_id), array_agg(total)),
               coalesce(array_agg(DISTINCT (minute AT TIME ZONE 'UTC')::date), '{}')
          FROM summed$q$, rel)
      INTO moved, days
      USING from_ts, to_ts;
END;
$$;

-- Moves all rows of partition `part` into every tier and empties it.
-- The partition is locked from the first read to the commit: rows arriving
-- meanwhile wait, then land in the emptied partition for the next rollup.
-- That needs the aggregate to see every row committed before the lock was
-- granted, which only READ COMMITTED gives (each statement takes a new
-- snapshot); under REPEATABLE READ or SERIALIZABLE the snapshot predates the
-- wait, and TRUNCATE would drop rows the aggregate never saw, so there the
-- partition is rolled up row by row instead. Returns the requests moved.
CREATE OR REPLACE FUNCTION count.rollup_partition(part regclass) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    moved bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        SELECT r.moved INTO moved FROM count.rollup_rows(part, '-infinity', 'infinity') AS r;
        RETURN moved;
    END IF;
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', part);
    EXECUTE format($q$
        SELECT count.add_totals(array_agg(minute), array_agg(method_id), array_agg(total))
          FROM (SELECT date_trunc('minute', request_timestamp, 'UTC') AS minute, method_id,
                       least(sum(count), 9223372036854775807)::bigint AS total
                  FROM %s GROUP BY 1, 2) AS s$q$, part)
      INTO moved;
    EXECUTE format('TRUNCATE %s', part);
    RETURN moved;
END;
$$;

-- count.rollup over partitions: the day's partition whole, then the day's
-- rows without a partition. Same contract as the portable version.
CREATE OR REPLACE FUNCTION count.rollup(rollup_day date) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
    moved bigint := 0;
    rest bigint;
BEGIN
    IF rollup_day IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'count.rollup: rollup_day must not be NULL';
    END IF;
    -- Rollups take turns (see sql/rollup.sql).
    PERFORM 1 FROM count.tiers WHERE tier = 'minute' FOR UPDATE;
    part := count.day_partition(rollup_day);
    IF part IS NOT NULL THEN
        moved := count.rollup_partition(part);
    END IF;
    SELECT r.moved INTO rest
      FROM count.rollup_rows(count.unpartitioned_rows(), rollup_day::timestamp AT TIME ZONE 'UTC',
                             (rollup_day + 1)::timestamp AT TIME ZONE 'UTC') AS r;
    RETURN moved + rest;
END;
$$;

-- count.rollup_due over partitions: every partition of a day before today
-- that has rows, whole (late data; or everything, when rollups were off);
-- today's and later ones whole only when they hold a backlog of over
-- 100,000 rows (rollups were off, or ingest outran them), since locking the
-- partition ingest writes to makes it wait while the rows are aggregated:
-- worth it for a backlog (the whole-partition path is 7x faster than
-- deleting row by row, see docs/performance.md), not for the few seconds
-- of rows a rollup every 5 s finds. Then every other raw row, the fine
-- tiers' retention
-- (count.apply_retention), long-silent producers (count.expire_producers),
-- then partition upkeep (count.prepare_partitions) if its locks come within
-- a moment. Same contract as the portable version.
CREATE OR REPLACE FUNCTION count.rollup_due() RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    day date;
    part regclass;
    has_rows boolean;
    rolled date[] := '{}';
    rest date[];
    lock_wait text := current_setting('lock_timeout');
BEGIN
    -- Rollups take turns (see sql/rollup.sql): another under way, this run
    -- leaves the raw rows to it.
    PERFORM 1 FROM count.tiers WHERE tier = 'minute' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    PERFORM count.apply_retention();
    FOR day, part IN SELECT p.day, p.part FROM count.day_partitions() AS p LOOP
        EXECUTE format('SELECT count(*) > $1 FROM (SELECT 1 FROM %s LIMIT $1 + 1) AS r', part)
            INTO has_rows
            USING CASE WHEN day < today THEN 0 ELSE 100000 END;
        CONTINUE WHEN NOT has_rows;
        PERFORM count.rollup_partition(part);
        rolled := rolled || day;
    END LOOP;
    SELECT r.days INTO rest FROM count.rollup_rows('count.requests', '-infinity', 'infinity') AS r;
    PERFORM count.expire_producers();
    BEGIN
        PERFORM set_config('lock_timeout', '200ms', true);
        PERFORM count.prepare_partitions();
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        -- deadlock_detected: a deadlock_timeout below the 200 ms makes a
        -- wait for the lock end that way instead.
        RAISE NOTICE 'count.rollup_due: partitions not prepared (count.requests busy); the next run will';
    END;
    PERFORM set_config('lock_timeout', lock_wait, true);
    RETURN (SELECT count(DISTINCT d) FROM unnest(rolled || rest) AS d);
END;
$$;

-- They run as the extension's owner (to create, truncate and drop
-- partitions): only roles granted EXECUTE may call them (sql/roles.sql).
REVOKE EXECUTE ON FUNCTION count.prepare_partitions(date, integer), count.rollup(date), count.rollup_due(),
    count.rollup_partition(regclass), count.rollup_rows(regclass, timestamptz, timestamptz),
    count.keep_out_of_extension(regclass)
    FROM PUBLIC;

-- Who may run them: the owner of schema count (who runs `count migrate`
-- and sql/roles.sql, and may be no superuser) with the right to grant
-- them on, and whoever had the fallback's SQL API granted (a live switch
-- from the fallback keeps count_app's rollups).
DO $$
DECLARE
    grantee text;
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION count.prepare_partitions(date, integer), count.rollup(date), '
                   'count.rollup_due() TO %s WITH GRANT OPTION',
                   (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'count'));
    FOREACH grantee IN ARRAY string_to_array(coalesce(current_setting('count.fallback_grants', true), ''), ' ') LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION count.rollup(date), count.rollup_due() TO %s', grantee);
    END LOOP;
END;
$$;

SELECT count.prepare_partitions();
