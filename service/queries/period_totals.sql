SELECT method, path, sum(total)::bigint AS total
  FROM count.daily_totals
 WHERE period BETWEEN $1 AND $2
 GROUP BY method, path
 ORDER BY method, path
