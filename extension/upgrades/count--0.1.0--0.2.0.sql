-- count 0.1.0 to 0.2.0: add_series (below), and every rollup adds to the minute, hour, day and
-- month tiers (migration V3 creates the new tables). What changed its
-- signature is dropped here; extension/build.rs appends the current
-- sql/totals.sql and queries/partitions.sql, which replace every function
-- they define (and drop 0.1.0's count.add_totals(date[], ...)).
DROP FUNCTION count.rollup_partition(date, regclass);

-- New in 0.2.0: count.add_series, which counts per tenant and status code
-- (migration V5), as `cargo pgrx schema` declares it from extension/src/lib.rs;
-- count.add_batch is now its wrapper, in the same library.
CREATE FUNCTION count.add_series(
    "producer" TEXT,
    "seq" bigint,
    "methods" TEXT[],
    "paths" TEXT[],
    "tenants" TEXT[],
    "status_codes" INT[],
    "timestamps" timestamp with time zone[],
    "counts" bigint[]
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'add_series_wrapper';
