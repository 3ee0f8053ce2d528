SELECT m.method, m.path, sum(t.total)::bigint AS total
  FROM count.monthly_method_totals AS t
  JOIN count.methods AS m ON m.id = t.method_id
 WHERE t.month BETWEEN $1 AND $2
 GROUP BY m.method, m.path
 ORDER BY m.method, m.path
