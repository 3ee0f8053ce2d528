SELECT e.id, e.method, e.path
  FROM unnest($1::text[], $2::text[]) AS k (m, p)
  JOIN count.methods AS e ON e.method = k.m AND e.path = k.p
