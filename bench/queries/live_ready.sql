-- Before timing the live reads: fresh statistics, and a checkpoint now
-- rather than in the middle of the measurement.
ANALYZE count.minute_method_totals, count.hourly_method_totals, count.daily_method_totals,
    count.monthly_method_totals, count.requests, count.methods;
CHECKPOINT;
