-- Before migration V5 (series_columns.sql): endpoints only; $3 and $4 are
-- the tenants and status codes, '' and -1 here.
SELECT e.id, e.method, e.path, '' AS tenant, -1 AS status_code
  FROM unnest($1::text[], $2::text[]) AS k (m, p)
  JOIN count.methods AS e ON e.method = k.m AND e.path = k.p
