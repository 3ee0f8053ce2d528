-- Calls count.add_series with nothing to add: 42883 (undefined function)
-- where the SQL API is not installed, or not this version's (before
-- migration V5). A call, not a catalog query, so that
-- it asks CockroachDB too (its information_schema.routines is empty).
SELECT count.add_series(NULL, NULL, ARRAY[]::text[], ARRAY[]::text[], ARRAY[]::text[], ARRAY[]::integer[],
                        ARRAY[]::timestamptz[], ARRAY[]::bigint[])
