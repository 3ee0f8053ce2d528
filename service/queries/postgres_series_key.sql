-- After migration V5, on PostgreSQL: series, not endpoints, are unique
-- (V5's methods_series_key); the endpoint's constraint goes. CockroachDB
-- drops its index instead (cockroach_series_key.sql).
ALTER TABLE count.methods DROP CONSTRAINT IF EXISTS methods_method_path_key;
