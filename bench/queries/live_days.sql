-- Daily and monthly totals: the hours' sums, as rollups keep them.
INSERT INTO count.daily_method_totals (day, method_id, total)
SELECT (hour AT TIME ZONE 'UTC')::date, method_id, sum(q1 + q2 + q3 + q4)
  FROM count.hourly_method_totals
 GROUP BY 1, 2;
INSERT INTO count.monthly_method_totals (month, method_id, total)
SELECT date_trunc('month', day)::date, method_id, sum(total)
  FROM count.daily_method_totals
 GROUP BY 1, 2;
