-- Least privilege for count. Run as the owner of schema count (the role that
-- ran `count migrate`) after migrating; rename count_app to taste and give
-- it a password (ALTER ROLE count_app PASSWORD '…') or a certificate.
--
-- The service then runs as count_app with `count serve --no-migrate`: no
-- superuser, no ownership, no DDL at run time. Migrations and the SQL API's
-- installation (and CREATE EXTENSION count, which needs a superuser) stay
-- with the owner. Portable SQL (PostgreSQL and CockroachDB).

CREATE ROLE count_app LOGIN;

GRANT USAGE ON SCHEMA count TO count_app;
-- Ingest: new series, raw rows, exactly-once bookkeeping.
GRANT SELECT, INSERT ON count.methods TO count_app;
-- (UPDATE too: CockroachDB's nextval may need it; PostgreSQL's USAGE is enough.)
GRANT USAGE, UPDATE ON SEQUENCE count.methods_id_seq TO count_app;
-- (DELETE: count.rollup_due forgets long-silent producers.)
GRANT SELECT, INSERT, UPDATE, DELETE ON count.producers TO count_app;
-- Rollups move raw rows into every tier; retention deletes old fine rows
-- and moves the tiers' complete_from.
GRANT SELECT, INSERT, DELETE ON count.requests TO count_app;
GRANT SELECT, INSERT, UPDATE ON count.daily_method_totals, count.monthly_method_totals TO count_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON count.minute_method_totals, count.hourly_method_totals TO count_app;
GRANT SELECT, INSERT, UPDATE ON count.daily_tenant_totals, count.monthly_tenant_totals TO count_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON count.hourly_tenant_totals TO count_app;
GRANT SELECT, UPDATE ON count.tiers TO count_app;
GRANT SELECT ON count.tenant_tiers TO count_app;
-- Reads.
GRANT SELECT ON count.daily_totals, count.monthly_totals, count.yearly_totals TO count_app;
GRANT EXECUTE ON FUNCTION count.add_batch(text, bigint, text[], text[], timestamptz[], bigint[]),
    count.add_series(text, bigint, text[], text[], text[], integer[], timestamptz[], bigint[]),
    count.rollup(date), count.rollup_due(),
    count.totals(timestamptz, timestamptz, text, text, text[], text, text, text[], integer),
    count.series_totals(timestamptz, timestamptz, text, text, text[], text, text, text[], text[], text[], integer)
    TO count_app;
