-- The monthly totals of tenant_days.sql's days (one month), then fresh
-- statistics and a checkpoint before the timed reads.
INSERT INTO count.monthly_method_totals (month, method_id, total)
SELECT date_trunc('month', min(d.day))::date, d.method_id, sum(d.total)::bigint
  FROM count.daily_method_totals AS d
 GROUP BY d.method_id;
ANALYZE count.daily_method_totals, count.monthly_method_totals, count.methods;
CHECKPOINT;
