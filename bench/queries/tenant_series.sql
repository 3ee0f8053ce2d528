-- The tenant reads' series: tenant t calls max(10, 1000 / (t + 1)) of the
-- 1,000 endpoints (a few large tenants, many small), each with four
-- statuses.
INSERT INTO count.methods (method, path, tenant, status_code)
SELECT 'GET', '/bench/' || e, 'tenant-' || t, s
  FROM generate_series(0, $1::int - 1) AS t,
       generate_series(0, 999) AS e,
       unnest(ARRAY[200, 201, 404, 500]) AS s
 WHERE e < greatest(10, 1000 / (t + 1))
