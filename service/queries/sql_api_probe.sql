-- Calls count.add_batch with nothing to add: 42883 (undefined function)
-- where the SQL API is not installed. A call, not a catalog query, so that
-- it asks CockroachDB too (its information_schema.routines is empty).
SELECT count.add_batch(NULL, NULL, ARRAY[]::text[], ARRAY[]::text[], ARRAY[]::timestamptz[], ARRAY[]::bigint[])
