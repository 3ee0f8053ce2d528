-- What tenant $1 holds in the daily tier, and its series: the reads'
-- self-check.
SELECT coalesce(sum(d.total), 0)::bigint, count(DISTINCT m.id)
  FROM count.daily_method_totals AS d JOIN count.methods AS m ON m.id = d.method_id
 WHERE m.tenant = $1
