SELECT period, method, path, total
  FROM count.daily_totals
 WHERE period BETWEEN $1 AND $2
 ORDER BY period, method, path
