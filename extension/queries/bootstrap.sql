-- Replaces the portable fallback (sql/*.sql) where the service installed it
-- before the extension: the extension owns these functions from now on, and
-- PostgreSQL refuses to replace objects an extension does not own.
DROP FUNCTION IF EXISTS count.add_batch(text, bigint, text[], text[], timestamptz[], bigint[]);
DROP FUNCTION IF EXISTS count.rollup(date);
DROP FUNCTION IF EXISTS count.rollup_due();
DROP FUNCTION IF EXISTS count.add_totals(date[], bigint[], bigint[]);
DROP FUNCTION IF EXISTS count.expire_producers();
