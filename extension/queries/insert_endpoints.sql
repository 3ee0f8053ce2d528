INSERT INTO count.methods (method, path)
SELECT k.m, k.p FROM unnest($1::text[], $2::text[]) AS k (m, p)
ON CONFLICT (method, path) DO NOTHING
RETURNING id, method, path
