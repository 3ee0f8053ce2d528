-- count 0.1.0 to 0.2.0: every rollup adds to the minute, hour, day and
-- month tiers (migration V3 creates the new tables). What changed its
-- signature is dropped here; extension/build.rs appends the current
-- sql/totals.sql and queries/partitions.sql, which replace every function
-- they define (and drop 0.1.0's count.add_totals(date[], ...)).
DROP FUNCTION count.rollup_partition(date, regclass);
