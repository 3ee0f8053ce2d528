-- The tenant tiers of what a scenario loaded straight into the series
-- tiers: each series' hours, days and months summed by tenant and status,
-- as count.add_totals adds them on every rollup; then fresh statistics and
-- a checkpoint before the timed reads.
INSERT INTO count.hourly_tenant_totals (hour, tenant, grpc, status_code, q1, q2, q3, q4)
SELECT t.hour, m.tenant, m.method = 'GRPC', m.status_code, sum(t.q1), sum(t.q2), sum(t.q3), sum(t.q4)
  FROM count.hourly_method_totals AS t JOIN count.methods AS m ON m.id = t.method_id
 GROUP BY 1, 2, 3, 4;
INSERT INTO count.daily_tenant_totals (day, tenant, grpc, status_code, total)
SELECT t.day, m.tenant, m.method = 'GRPC', m.status_code, sum(t.total)
  FROM count.daily_method_totals AS t JOIN count.methods AS m ON m.id = t.method_id
 GROUP BY 1, 2, 3, 4;
INSERT INTO count.monthly_tenant_totals (month, tenant, grpc, status_code, total)
SELECT t.month, m.tenant, m.method = 'GRPC', m.status_code, sum(t.total)
  FROM count.monthly_method_totals AS t JOIN count.methods AS m ON m.id = t.method_id
 GROUP BY 1, 2, 3, 4;
ANALYZE count.hourly_tenant_totals, count.daily_tenant_totals, count.monthly_tenant_totals;
CHECKPOINT;
