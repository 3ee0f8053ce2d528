-- Before timing the year query: fresh statistics, and a checkpoint now
-- rather than one flushing the earlier scenarios' writes in the middle of
-- the measurement.
ANALYZE count.daily_method_totals, count.monthly_method_totals, count.methods;
CHECKPOINT;
