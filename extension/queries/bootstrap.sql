-- Replaces the portable fallback (sql/*.sql) where the service installed it
-- before the extension: the extension owns these functions from now on, and
-- PostgreSQL refuses to replace objects an extension does not own.
--
-- Dropping them drops their grants: who was granted EXECUTE on the
-- fallback's SQL API (sql/roles.sql's count_app) is remembered for this
-- transaction, and partitions.sql grants it the extension's functions.
SELECT set_config('count.fallback_grants', coalesce(string_agg(DISTINCT a.grantee::regrole::text, ' '), ''), true)
  FROM pg_proc AS p, aclexplode(p.proacl) AS a
 WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'count')
   AND p.proname IN ('add_batch', 'add_series', 'rollup', 'rollup_due')
   AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner;
DROP FUNCTION IF EXISTS count.add_batch(text, bigint, text[], text[], timestamptz[], bigint[]);
DROP FUNCTION IF EXISTS count.rollup(date);
DROP FUNCTION IF EXISTS count.rollup_due();
DROP FUNCTION IF EXISTS count.take_requests(timestamptz, timestamptz);
DROP FUNCTION IF EXISTS count.endpoint_not_visible(text, text);
DROP FUNCTION IF EXISTS count.endpoint_not_visible(text, text, text);
DROP FUNCTION IF EXISTS count.add_series(text, bigint, text[], text[], text[], integer[], timestamptz[], bigint[]);
DROP FUNCTION IF EXISTS count.add_rows(text, text, bigint, text[], text[], text[], integer[], timestamptz[], bigint[]);
DROP FUNCTION IF EXISTS count.add_totals(date[], bigint[], bigint[]);
DROP FUNCTION IF EXISTS count.add_totals(timestamptz[], bigint[], bigint[]);
DROP FUNCTION IF EXISTS count.apply_retention();
DROP FUNCTION IF EXISTS count.expire_producers();
