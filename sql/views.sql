-- count's SQL views, installed by the service whichever backend implements
-- the functions (sql/add_batch.sql, sql/totals.sql and sql/rollup.sql, or the extension). Portable SQL;
-- re-running this file is harmless. The views read rolled-up totals only.

-- Rolled-up totals by UTC day, month and year, per endpoint (summed over
-- tenants and status codes, as before series had them). `period` is the
-- first day of the period, so the three views have the same columns.
CREATE OR REPLACE VIEW count.daily_totals AS
SELECT d.day AS period, m.method, m.path, sum(d.total)::bigint AS total
  FROM count.daily_method_totals AS d
  JOIN count.methods AS m ON m.id = d.method_id
 GROUP BY d.day, m.method, m.path;

CREATE OR REPLACE VIEW count.monthly_totals AS
SELECT t.month AS period, m.method, m.path, sum(t.total)::bigint AS total
  FROM count.monthly_method_totals AS t
  JOIN count.methods AS m ON m.id = t.method_id
 GROUP BY t.month, m.method, m.path;

CREATE OR REPLACE VIEW count.yearly_totals AS
SELECT t.month - (extract(doy FROM t.month)::int - 1) AS period, m.method, m.path, sum(t.total)::bigint AS total
  FROM count.monthly_method_totals AS t
  JOIN count.methods AS m ON m.id = t.method_id
 GROUP BY 1, m.method, m.path;
