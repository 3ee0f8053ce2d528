SELECT e.id, e.method, e.path, e.tenant, e.status_code
  FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[]) AS k (m, p, tenant, s)
  JOIN count.methods AS e ON e.method = k.m AND e.path = k.p AND e.tenant = k.tenant AND e.status_code = k.s
