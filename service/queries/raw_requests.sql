SELECT coalesce(sum(r.count), 0)::bigint
  FROM count.requests AS r
  JOIN count.methods AS m ON m.id = r.method_id
 WHERE m.method = 'GET' AND m.path = $1
