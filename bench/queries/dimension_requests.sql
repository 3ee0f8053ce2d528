-- The requests stored with a tenant and a status, and the tenants: the
-- tenants' load's self-check (every request carries both).
SELECT coalesce(sum(r.count), 0)::bigint, count(DISTINCT m.tenant)
  FROM count.requests AS r JOIN count.methods AS m ON m.id = r.method_id
 WHERE m.tenant <> '' AND m.status_code >= 100
