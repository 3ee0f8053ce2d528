-- Totals per minute and per hour next to the daily and monthly ones, so
-- that reads can answer any minute-aligned range, in any time zone, live.
-- Every rollup adds the same raw rows to every tier in one transaction
-- (count.add_totals): each tier holds everything rolled up, at its own
-- resolution, from its `complete_from` on (count.tiers).
--
-- Schema only, every statement idempotent: CockroachDB commits each DDL
-- statement on its own, so a migration stopped halfway is run again whole
-- (docs/operations.md, "Migrations"). The tiers' first rows are V4's.
--
-- No foreign keys to count.methods: the rollups are the only writers, with
-- ids read from count.requests, and a per-row check would cost every rollup.

-- Per minute (UTC minute start), kept for count.tiers' `keep` (35 days by
-- default): "the last hour by minute".
CREATE TABLE IF NOT EXISTS count.minute_method_totals (
    minute timestamptz NOT NULL,
    method_id bigint NOT NULL,
    total bigint NOT NULL CHECK (total >= 0),
    PRIMARY KEY (minute, method_id)
);

-- Per UTC hour, with its four quarter-hours (q1: minutes 0-14, q2: 15-29,
-- q3: 30-44, q4: 45-59): the long-term fine tier. Every UTC offset in use
-- (+05:30 Asia/Kolkata, +05:45 Asia/Kathmandu, Lord Howe's 30-minute DST)
-- is a whole number of quarter-hours, so hours, days and months in any of
-- them are sums of whole quarters. Four columns in one row instead of four
-- rows: a quarter of the row headers and index entries (see
-- docs/architecture.md, "Time tiers", for the measured size).
CREATE TABLE IF NOT EXISTS count.hourly_method_totals (
    hour timestamptz NOT NULL,
    method_id bigint NOT NULL,
    q1 bigint NOT NULL DEFAULT 0 CHECK (q1 >= 0),
    q2 bigint NOT NULL DEFAULT 0 CHECK (q2 >= 0),
    q3 bigint NOT NULL DEFAULT 0 CHECK (q3 >= 0),
    q4 bigint NOT NULL DEFAULT 0 CHECK (q4 >= 0),
    PRIMARY KEY (hour, method_id)
);

-- The fine tiers' retention and the time from which each is complete:
-- reads use a tier only from `complete_from` on. `keep` NULL keeps a tier
-- for ever. The daily and monthly totals are always kept and complete.
CREATE TABLE IF NOT EXISTS count.tiers (
    tier text PRIMARY KEY CHECK (tier IN ('minute', 'hour')),
    keep interval CHECK (keep >= interval '1 day'),
    complete_from timestamptz NOT NULL
);
