-- Every row of the endpoint GET $1 (what `count check` wrote), one
-- statement per table, run in this order in one transaction after
-- rollup_turn.sql, so that no rollup moves its raw rows into the tiers
-- meanwhile. Its requests leave the tenant tiers (from their complete_from
-- on, where they were added) before the series tiers they are read from go,
-- and the daily and monthly totals refer to count.methods.
DELETE FROM count.requests WHERE method_id IN (SELECT id FROM count.methods WHERE method = 'GET' AND path = $1);
UPDATE count.hourly_tenant_totals AS t
   SET q1 = t.q1 - s.q1, q2 = t.q2 - s.q2, q3 = t.q3 - s.q3, q4 = t.q4 - s.q4
  FROM (SELECT h.hour, e.tenant, e.method = 'GRPC' AS grpc, e.status_code,
               sum(h.q1) AS q1, sum(h.q2) AS q2, sum(h.q3) AS q3, sum(h.q4) AS q4
          FROM count.hourly_method_totals AS h JOIN count.methods AS e ON e.id = h.method_id
         WHERE e.method = 'GET' AND e.path = $1 AND h.hour >= (SELECT complete_from FROM count.tenant_tiers)
         GROUP BY 1, 2, 3, 4) AS s
 WHERE t.hour = s.hour AND t.tenant = s.tenant AND t.grpc = s.grpc AND t.status_code = s.status_code;
UPDATE count.daily_tenant_totals AS t
   SET total = t.total - s.total
  FROM (SELECT d.day, e.tenant, e.method = 'GRPC' AS grpc, e.status_code, sum(d.total) AS total
          FROM count.daily_method_totals AS d JOIN count.methods AS e ON e.id = d.method_id
         WHERE e.method = 'GET' AND e.path = $1
           AND d.day >= (SELECT (complete_from AT TIME ZONE 'UTC')::date FROM count.tenant_tiers)
         GROUP BY 1, 2, 3, 4) AS s
 WHERE t.day = s.day AND t.tenant = s.tenant AND t.grpc = s.grpc AND t.status_code = s.status_code;
UPDATE count.monthly_tenant_totals AS t
   SET total = t.total - s.total
  FROM (SELECT date_trunc('month', d.day::timestamp)::date AS month, e.tenant, e.method = 'GRPC' AS grpc, e.status_code,
               sum(d.total) AS total
          FROM count.daily_method_totals AS d JOIN count.methods AS e ON e.id = d.method_id
         WHERE e.method = 'GET' AND e.path = $1
           AND d.day >= (SELECT (complete_from AT TIME ZONE 'UTC')::date FROM count.tenant_tiers)
         GROUP BY 1, 2, 3, 4) AS s
 WHERE t.month = s.month AND t.tenant = s.tenant AND t.grpc = s.grpc AND t.status_code = s.status_code;
DELETE FROM count.minute_method_totals WHERE method_id IN (SELECT id FROM count.methods WHERE method = 'GET' AND path = $1);
DELETE FROM count.hourly_method_totals WHERE method_id IN (SELECT id FROM count.methods WHERE method = 'GET' AND path = $1);
DELETE FROM count.daily_method_totals WHERE method_id IN (SELECT id FROM count.methods WHERE method = 'GET' AND path = $1);
DELETE FROM count.monthly_method_totals WHERE method_id IN (SELECT id FROM count.methods WHERE method = 'GET' AND path = $1);
DELETE FROM count.methods WHERE method = 'GET' AND path = $1
