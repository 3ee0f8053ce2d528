INSERT INTO count.monthly_method_totals (month, method_id, total)
SELECT day - (extract(day FROM day)::int - 1), method_id, sum(total)::bigint
  FROM count.daily_method_totals
 GROUP BY 1, 2
