-- Summed by endpoint id first, then named (see monthly_totals.sql).
SELECT m.method, m.path, t.total
  FROM (SELECT method_id, sum(total)::bigint AS total
          FROM count.daily_method_totals
         WHERE day BETWEEN $1 AND $2
         GROUP BY method_id) AS t
  JOIN count.methods AS m ON m.id = t.method_id
 ORDER BY m.method, m.path
