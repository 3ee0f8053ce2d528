-- Before migration V5: see find_endpoints.sql.
INSERT INTO count.methods (method, path)
SELECT k.m, k.p FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k (m, p, i)
ORDER BY k.i
ON CONFLICT (method, path) DO NOTHING
RETURNING id, method, path, '' AS tenant, -1 AS status_code
