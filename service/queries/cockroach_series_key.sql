-- After migration V5, on CockroachDB: a UNIQUE constraint is its index
-- there, dropped with CASCADE (cockroach#42840; drop-index). PostgreSQL
-- drops the constraint (postgres_series_key.sql).
DROP INDEX IF EXISTS count.methods@methods_method_path_key CASCADE;
