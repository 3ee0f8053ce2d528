-- Totals per tenant and status beside the per-series ones: a tenant's bill
-- or a status mix ("tenant 42 this month, by day", "the share of 5xx")
-- sums a few rows per bucket here, where the series tiers hold one row per
-- endpoint of the tenant (4,000 for a tenant calling 1,000 endpoints with
-- four statuses). Every rollup adds to them in the same transaction as to
-- the series tiers (count.add_totals), so they hold the same requests, from
-- their `complete_from` on (count.tenant_tiers, V7). Reads use them when
-- they group and filter by tenant and status only (sql/reads.sql).
--
-- A group is (tenant, grpc, status_code): a status code's class depends on
-- whether the request was a GRPC one (count.status_class), so that much of
-- the method is kept. The hours keep the hourly series tier's retention
-- (count.tiers' hour row, for ever by default); days and months are kept
-- for ever.
--
-- Schema only, every statement idempotent (see V3).

CREATE TABLE IF NOT EXISTS count.hourly_tenant_totals (
    hour timestamptz NOT NULL,
    tenant text NOT NULL,
    grpc boolean NOT NULL,
    status_code integer NOT NULL,
    q1 bigint NOT NULL DEFAULT 0 CHECK (q1 >= 0),
    q2 bigint NOT NULL DEFAULT 0 CHECK (q2 >= 0),
    q3 bigint NOT NULL DEFAULT 0 CHECK (q3 >= 0),
    q4 bigint NOT NULL DEFAULT 0 CHECK (q4 >= 0),
    PRIMARY KEY (hour, tenant, grpc, status_code)
);

CREATE TABLE IF NOT EXISTS count.daily_tenant_totals (
    day date NOT NULL,
    tenant text NOT NULL,
    grpc boolean NOT NULL,
    status_code integer NOT NULL,
    total bigint NOT NULL CHECK (total >= 0),
    PRIMARY KEY (day, tenant, grpc, status_code)
);

CREATE TABLE IF NOT EXISTS count.monthly_tenant_totals (
    month date NOT NULL,
    tenant text NOT NULL,
    grpc boolean NOT NULL,
    status_code integer NOT NULL,
    total bigint NOT NULL CHECK (total >= 0),
    PRIMARY KEY (month, tenant, grpc, status_code)
);

-- One tenant's range: the keys above lead with the time, for reads over
-- every tenant.
CREATE INDEX IF NOT EXISTS hourly_tenant_totals_tenant ON count.hourly_tenant_totals (tenant, hour);
CREATE INDEX IF NOT EXISTS daily_tenant_totals_tenant ON count.daily_tenant_totals (tenant, day);
CREATE INDEX IF NOT EXISTS monthly_tenant_totals_tenant ON count.monthly_tenant_totals (tenant, month);

-- The time from which the tenant tiers hold every request (one row, V7):
-- reads use them only from there on, and the series tiers before.
CREATE TABLE IF NOT EXISTS count.tenant_tiers (
    one_row boolean PRIMARY KEY DEFAULT true CHECK (one_row),
    complete_from timestamptz NOT NULL
);
