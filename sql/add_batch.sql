-- count.add_batch and count.add_series in portable SQL: the fallback the service
-- installs where the native `count` extension is not installed (CockroachDB
-- included). The extension implements the same functions with the same
-- signatures and semantics. Re-running this file is harmless: every
-- statement replaces.
--
-- Days are UTC. Raw rows live in count.requests until a rollup moves them
-- into count.daily_method_totals.

-- Fails with 40001 (retry): count.add_series found an endpoint it had just
-- inserted, or waited for, not visible yet.
DROP FUNCTION IF EXISTS count.endpoint_not_visible(text, text);
CREATE OR REPLACE FUNCTION count.endpoint_not_visible(caller text, method text, path text) RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = '40001',
        MESSAGE = caller || ': endpoint ' || method || ' ' || path || ' was not visible yet; retry';
END;
$$;

-- count.add_series' and count.add_batch's work; `caller` names the function
-- in errors.
CREATE OR REPLACE FUNCTION count.add_rows(
    caller text,
    producer text,
    seq bigint,
    methods text[],
    paths text[],
    tenants text[],
    status_codes integer[],
    timestamps timestamptz[],
    counts bigint[]
) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    -- count.v1.Method's names, and OTHER: the one list of this backend
    -- (e2e sql::every_count_v1_method_and_other_is_accepted checks it
    -- against the proto).
    known_methods text[] := ARRAY['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'TRACE',
                                  'PATCH', 'GRPC', 'OTHER'];
    n bigint;
    bad_index bigint;
    reason text;
    claimed integer;
BEGIN
    IF methods IS NULL OR paths IS NULL OR timestamps IS NULL OR counts IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = caller || ': methods, paths, timestamps and counts must not be NULL';
    END IF;
    IF tenants IS NULL OR status_codes IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = caller || ': tenants and status_codes must not be NULL';
    END IF;
    IF (producer IS NULL) <> (seq IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = caller || ': producer and seq must be both NULL or both set';
    END IF;
    IF producer = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = caller || ': producer must not be empty';
    END IF;
    n := cardinality(methods);
    IF cardinality(paths) <> n OR cardinality(timestamps) <> n OR cardinality(counts) <> n THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = caller || ': methods, paths, timestamps and counts must have the same length, got '
                || n || ', ' || cardinality(paths) || ', ' || cardinality(timestamps) || ', ' || cardinality(counts);
    END IF;
    IF cardinality(tenants) <> n OR cardinality(status_codes) <> n THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = caller || ': tenants and status_codes must have the length of methods, ' || n || ', got '
                || cardinality(tenants) || ', ' || cardinality(status_codes);
    END IF;

    SELECT b.i,
           CASE
               WHEN b.m IS NULL THEN 'methods[' || b.i || '] must not be NULL'
               WHEN b.p IS NULL THEN 'paths[' || b.i || '] must not be NULL'
               WHEN b.tenant IS NULL THEN 'tenants[' || b.i || '] must not be NULL'
               WHEN b.t IS NULL THEN 'timestamps[' || b.i || '] must not be NULL'
               ELSE 'counts[' || b.i || '] must not be NULL'
           END
      INTO bad_index, reason
      FROM unnest(methods, paths, tenants, timestamps, counts) WITH ORDINALITY AS b (m, p, tenant, t, c, i)
     WHERE b.m IS NULL OR b.p IS NULL OR b.tenant IS NULL OR b.t IS NULL OR b.c IS NULL
     ORDER BY b.i
     LIMIT 1;
    IF bad_index IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = caller || ': ' || reason;
    END IF;

    SELECT b.i,
           CASE
               WHEN b.m <> ALL (known_methods)
                   THEN 'methods[' || b.i || '] is not a known method: ' || b.m
               WHEN b.p = '' THEN 'paths[' || b.i || '] must not be empty'
               WHEN b.m = 'GRPC' AND NOT b.s BETWEEN 0 AND 16
                   THEN 'status_codes[' || b.i || '] must be a gRPC status code (0-16) for GRPC, got ' || b.s
               WHEN b.m <> 'GRPC' AND NOT b.s BETWEEN 100 AND 599
                   THEN 'status_codes[' || b.i || '] must be an HTTP status code (100-599), got ' || b.s
               WHEN b.t = 'infinity' OR b.t = '-infinity' THEN 'timestamps[' || b.i || '] must be a finite time'
               ELSE 'counts[' || b.i || '] must be at least 1, got ' || b.c
           END
      INTO bad_index, reason
      FROM unnest(methods, paths, status_codes, timestamps, counts) WITH ORDINALITY AS b (m, p, s, t, c, i)
     WHERE b.m <> ALL (known_methods) OR b.p = ''
        OR (b.m = 'GRPC' AND NOT b.s BETWEEN 0 AND 16) OR (b.m <> 'GRPC' AND NOT b.s BETWEEN 100 AND 599)
        OR b.t = 'infinity' OR b.t = '-infinity' OR b.c < 1
     ORDER BY b.i
     LIMIT 1;
    IF bad_index IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = caller || ': ' || reason;
    END IF;

    IF producer IS NOT NULL THEN
        -- One row when this call moves the producer's sequence on, none
        -- when seq was applied already. RETURNING … INTO, neither a
        -- data-modifying WITH nor GET DIAGNOSTICS: portable (docs/sql.md).
        INSERT INTO count.producers AS p (producer_id, last_sequence)
        VALUES (producer, seq)
        ON CONFLICT (producer_id) DO UPDATE
            SET last_sequence = excluded.last_sequence, updated_at = now()
            WHERE p.last_sequence < excluded.last_sequence
        RETURNING 1 INTO claimed;
        IF claimed IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;

    -- Only series not seen yet: inserting known ones would burn identity
    -- values. A concurrent first insert of the same series makes this wait
    -- for it, and the next statement (a new snapshot) then sees its row.
    -- Sorted, so that transactions inserting overlapping sets wait for each
    -- other instead of deadlocking. An unknown status code is stored as -1.
    INSERT INTO count.methods (tenant, method, path, status_code)
    SELECT DISTINCT k.tenant, k.m, k.p, k.s
      FROM (SELECT u.tenant, u.m, u.p, coalesce(u.s, -1) AS s
              FROM unnest(tenants, methods, paths, status_codes) AS u (tenant, m, p, s)) AS k
     WHERE NOT EXISTS (SELECT 1 FROM count.methods AS e
                        WHERE e.tenant = k.tenant AND e.method = k.m AND e.path = k.p AND e.status_code = k.s)
     ORDER BY k.tenant, k.m, k.p, k.s
    ON CONFLICT (tenant, method, path, status_code) DO NOTHING;

    -- Every series must be visible to this insert, or its rows would be
    -- left out. On PostgreSQL it is: the insert above waited for any
    -- concurrent first insert, and under snapshot isolation it fails with
    -- 40001 on a row its snapshot cannot see. Should an engine differ, a
    -- missing series fails the whole call with 40001 (the LEFT JOIN's
    -- NULL calls count.endpoint_not_visible), for the caller to retry,
    -- instead of losing counts; the call is made only then, so the check
    -- costs nothing. (A count over a second join of the entries did the
    -- same portably but cost 60 calls of 1,000 known endpoints 0.49-0.56 s
    -- against 0.36-0.37 s this way, on the development machine.)
    INSERT INTO count.requests (method_id, request_timestamp, count)
    SELECT coalesce(e.id, count.endpoint_not_visible(caller, b.m, b.p)), b.t, b.c
      FROM unnest(methods, paths, tenants, status_codes, timestamps, counts) AS b (m, p, tenant, s, t, c)
      LEFT JOIN count.methods AS e
        ON e.tenant = b.tenant AND e.method = b.m AND e.path = b.p AND e.status_code = coalesce(b.s, -1);

    RETURN (SELECT coalesce(sum(c), 0) FROM unnest(counts) AS c)::bigint;
END;
$$;

-- Adds one flush of aggregated counts: element i of the arrays is one
-- (method, path, tenant, status code, timestamp, count). Returns the number
-- of requests added.
--
-- With a producer and a sequence the batch is applied exactly once: it is
-- applied only when seq is above the producer's last applied sequence, which
-- is recorded in the same transaction. A duplicate applies nothing and
-- returns NULL.
--
-- Methods are count.v1.Method's names, and OTHER for a method outside it.
-- Tenants are '' for none. A status code is NULL when unknown, else an HTTP
-- status code (100-599), or for GRPC a gRPC status code (0 OK to 16).
--
-- Errors: 22004 for a NULL array or element (but a status code), 22023 for
-- arrays of different lengths, an unknown method, an empty path, a status
-- code out of its range, an infinite timestamp (it would never roll up) or a
-- count below 1. Nothing of a rejected call is written.
CREATE OR REPLACE FUNCTION count.add_series(
    producer text,
    seq bigint,
    methods text[],
    paths text[],
    tenants text[],
    status_codes integer[],
    timestamps timestamptz[],
    counts bigint[]
) RETURNS bigint
LANGUAGE sql
AS $$
    SELECT count.add_rows('count.add_series', producer, seq, methods, paths, tenants, status_codes, timestamps,
                          counts)
$$;

-- count.add_series for tenant '' and unknown status codes: the batches of
-- clients that send neither. Its errors name count.add_batch.
CREATE OR REPLACE FUNCTION count.add_batch(
    producer text,
    seq bigint,
    methods text[],
    paths text[],
    timestamps timestamptz[],
    counts bigint[]
) RETURNS bigint
LANGUAGE sql
AS $$
    SELECT count.add_rows('count.add_batch', producer, seq, methods, paths,
                          (SELECT coalesce(array_agg(''::text), '{}') FROM unnest(methods) AS m),
                          (SELECT coalesce(array_agg(NULL::integer), '{}') FROM unnest(methods) AS m),
                          timestamps, counts)
$$;
