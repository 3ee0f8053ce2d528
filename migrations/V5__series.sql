-- A series is (tenant, method, path, status code): count.methods' rows
-- become series, so that every tier, rollup and retention, which key on
-- method_id, counts per tenant and status code unchanged. Existing rows
-- are the series of tenant '' (none) and status -1 (unknown): no data
-- moves.
--
-- Schema only, every statement idempotent (see V3). The unique constraint
-- on (method, path) is dropped after the migrations, by engine (PostgreSQL
-- drops the constraint, CockroachDB its index): service/queries/
-- {postgres,cockroach}_series_key.sql.

-- '' for none; the service takes at most 256 bytes without control
-- characters (AddRequest.tenant).
ALTER TABLE count.methods ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT '';

-- The HTTP status code (100-599), or the gRPC status code (0-16) of GRPC
-- requests; -1 for unknown (count.add_series takes NULL for it, and the
-- reads return NULL).
ALTER TABLE count.methods ADD COLUMN IF NOT EXISTS status_code integer NOT NULL DEFAULT -1;

-- Tenant first: one tenant's series are one range of it.
CREATE UNIQUE INDEX IF NOT EXISTS methods_series_key ON count.methods (tenant, method, path, status_code);
