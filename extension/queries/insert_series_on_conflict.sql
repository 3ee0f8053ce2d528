INSERT INTO count.methods (method, path, tenant, status_code)
SELECT k.m, k.p, k.tenant, k.s
  FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[]) WITH ORDINALITY AS k (m, p, tenant, s, i)
ORDER BY k.i
ON CONFLICT (tenant, method, path, status_code) DO NOTHING
RETURNING id, method, path, tenant, status_code
