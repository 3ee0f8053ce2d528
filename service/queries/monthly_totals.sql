-- Summed by endpoint id first, then named: grouping and sorting the
-- endpoints' text per row made the plan PostgreSQL settles on after five
-- calls (a generic plan) take twice as long.
SELECT m.method, m.path, t.total
  FROM (SELECT method_id, sum(total)::bigint AS total
          FROM count.monthly_method_totals
         WHERE month BETWEEN $1 AND $2
         GROUP BY method_id) AS t
  JOIN count.methods AS m ON m.id = t.method_id
 ORDER BY m.method, m.path
