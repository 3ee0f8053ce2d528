-- The tiers every rollup adds to, their retention, and the producers'
-- expiry: shared by both backends. The service installs this file with
-- sql/add_batch.sql and sql/rollup.sql where the extension is absent; the
-- extension ships it as it is. Re-running this file is harmless: every
-- statement replaces.

-- Release 0.1.0's add_totals took days: every tier takes minutes now.
DROP FUNCTION IF EXISTS count.add_totals(date[], bigint[], bigint[]);

-- Adds rolled-up requests to every tier: element i of the arrays is one
-- (UTC minute, endpoint, requests), at most one element per (minute,
-- endpoint). Every rollup ends here, so every tier gets the same requests in
-- the same transaction: the series tiers (minute, hour, day, month per
-- series) and the tenant tiers (hour, day, month per tenant and status). The
-- minute and hour tiers take only what falls on or after their
-- `complete_from` (count.tiers), the tenant tiers on or after theirs
-- (count.tenant_tiers): before it they are not read.
-- Returns the requests added.
--
-- Each statement writes in key order: concurrent rollups update the same
-- rows, and a common order makes them wait instead of deadlocking.
--
-- A total that would pass bigint's maximum (9,223,372,036,854,775,807) stays
-- at it, with a WARNING: failing instead would stop every later rollup, of
-- every day and endpoint, on one absurd total.
CREATE OR REPLACE FUNCTION count.add_totals(minutes timestamptz[], method_ids bigint[], totals bigint[])
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    minute_from timestamptz;
    hour_from timestamptz;
    tenant_from timestamptz;
    -- The requests by (UTC hour, series), with the hour's four
    -- quarter-hours: every coarser tier is summed from these, not from the
    -- minutes again.
    hour_hours timestamptz[];
    hour_ids bigint[];
    hour_q1 bigint[];
    hour_q2 bigint[];
    hour_q3 bigint[];
    hour_q4 bigint[];
    -- The same by (UTC hour, tenant, grpc, status code): the tenant tiers'
    -- input.
    group_hours timestamptz[];
    group_tenants text[];
    group_grpc boolean[];
    group_statuses integer[];
    group_q1 bigint[];
    group_q2 bigint[];
    group_q3 bigint[];
    group_q4 bigint[];
    added bigint;
BEGIN
    -- A tier without its row (migration V4 or V7 not applied yet) is never
    -- written, as it is never read: 'infinity'. (Without the tables, before
    -- V3 or V6, the rollup fails, and the next one after the migrations
    -- takes the raw rows.)
    SELECT coalesce((SELECT complete_from FROM count.tiers WHERE tier = 'minute'), 'infinity'),
           coalesce((SELECT complete_from FROM count.tiers WHERE tier = 'hour'), 'infinity'),
           coalesce((SELECT complete_from FROM count.tenant_tiers), 'infinity')
      INTO minute_from, hour_from, tenant_from;

    INSERT INTO count.minute_method_totals AS t (minute, method_id, total)
    SELECT s.minute, s.method_id, s.total
      FROM unnest(minutes, method_ids, totals) AS s (minute, method_id, total)
     WHERE s.minute >= minute_from
     ORDER BY 1, 2
    ON CONFLICT (minute, method_id) DO UPDATE
        SET total = least(t.total::numeric + excluded.total, 9223372036854775807)::bigint;

    SELECT array_agg(h.hour), array_agg(h.method_id), array_agg(h.q1), array_agg(h.q2), array_agg(h.q3),
           array_agg(h.q4)
      INTO hour_hours, hour_ids, hour_q1, hour_q2, hour_q3, hour_q4
      FROM (SELECT q.hour, q.method_id,
                   least(coalesce(sum(q.total) FILTER (WHERE q.quarter = 0), 0), 9223372036854775807)::bigint AS q1,
                   least(coalesce(sum(q.total) FILTER (WHERE q.quarter = 1), 0), 9223372036854775807)::bigint AS q2,
                   least(coalesce(sum(q.total) FILTER (WHERE q.quarter = 2), 0), 9223372036854775807)::bigint AS q3,
                   least(coalesce(sum(q.total) FILTER (WHERE q.quarter = 3), 0), 9223372036854775807)::bigint AS q4
              FROM (SELECT date_trunc('hour', s.minute, 'UTC') AS hour, s.method_id, s.total,
                           floor(extract(minute FROM s.minute AT TIME ZONE 'UTC') / 15) AS quarter
                      FROM unnest(minutes, method_ids, totals) AS s (minute, method_id, total)) AS q
             GROUP BY 1, 2) AS h;

    INSERT INTO count.hourly_method_totals AS h (hour, method_id, q1, q2, q3, q4)
    SELECT s.hour, s.method_id, s.q1, s.q2, s.q3, s.q4
      FROM unnest(hour_hours, hour_ids, hour_q1, hour_q2, hour_q3, hour_q4) AS s (hour, method_id, q1, q2, q3, q4)
     WHERE s.hour >= hour_from
     ORDER BY 1, 2
    ON CONFLICT (hour, method_id) DO UPDATE
        SET q1 = least(h.q1::numeric + excluded.q1, 9223372036854775807)::bigint,
            q2 = least(h.q2::numeric + excluded.q2, 9223372036854775807)::bigint,
            q3 = least(h.q3::numeric + excluded.q3, 9223372036854775807)::bigint,
            q4 = least(h.q4::numeric + excluded.q4, 9223372036854775807)::bigint;

    INSERT INTO count.daily_method_totals AS d (day, method_id, total)
    SELECT (s.hour AT TIME ZONE 'UTC')::date, s.method_id,
           least(sum(s.q1::numeric + s.q2 + s.q3 + s.q4), 9223372036854775807)::bigint
      FROM unnest(hour_hours, hour_ids, hour_q1, hour_q2, hour_q3, hour_q4) AS s (hour, method_id, q1, q2, q3, q4)
     GROUP BY 1, 2
     ORDER BY 1, 2
    ON CONFLICT (day, method_id) DO UPDATE
        SET total = least(d.total::numeric + excluded.total, 9223372036854775807)::bigint;

    INSERT INTO count.monthly_method_totals AS m (month, method_id, total)
    SELECT date_trunc('month', s.hour AT TIME ZONE 'UTC')::date, s.method_id,
           least(sum(s.q1::numeric + s.q2 + s.q3 + s.q4), 9223372036854775807)::bigint
      FROM unnest(hour_hours, hour_ids, hour_q1, hour_q2, hour_q3, hour_q4) AS s (hour, method_id, q1, q2, q3, q4)
     GROUP BY 1, 2
     ORDER BY 1, 2
    ON CONFLICT (month, method_id) DO UPDATE
        SET total = least(m.total::numeric + excluded.total, 9223372036854775807)::bigint;

    -- The tenant tiers (migration V6), from their complete_from on: each
    -- series' requests under its tenant and status, quarter-hours from the
    -- first that starts at or after it (V7 writes a UTC day or an infinity;
    -- reads take nothing finer than a quarter-hour from these tiers).
    SELECT array_agg(g.hour), array_agg(g.tenant), array_agg(g.grpc), array_agg(g.status_code), array_agg(g.q1),
           array_agg(g.q2), array_agg(g.q3), array_agg(g.q4)
      INTO group_hours, group_tenants, group_grpc, group_statuses, group_q1, group_q2, group_q3, group_q4
      FROM (SELECT s.hour, e.tenant, e.method = 'GRPC' AS grpc, e.status_code,
                   least(sum(CASE WHEN s.hour >= tenant_from THEN s.q1 ELSE 0 END),
                         9223372036854775807)::bigint AS q1,
                   least(sum(CASE WHEN s.hour + interval '15 minutes' >= tenant_from THEN s.q2 ELSE 0 END),
                         9223372036854775807)::bigint AS q2,
                   least(sum(CASE WHEN s.hour + interval '30 minutes' >= tenant_from THEN s.q3 ELSE 0 END),
                         9223372036854775807)::bigint AS q3,
                   least(sum(CASE WHEN s.hour + interval '45 minutes' >= tenant_from THEN s.q4 ELSE 0 END),
                         9223372036854775807)::bigint AS q4
              FROM unnest(hour_hours, hour_ids, hour_q1, hour_q2, hour_q3, hour_q4)
                   AS s (hour, method_id, q1, q2, q3, q4)
              JOIN count.methods AS e ON e.id = s.method_id
             WHERE s.hour + interval '45 minutes' >= tenant_from
             GROUP BY 1, 2, 3, 4) AS g;

    INSERT INTO count.hourly_tenant_totals AS h (hour, tenant, grpc, status_code, q1, q2, q3, q4)
    SELECT s.hour, s.tenant, s.grpc, s.status_code, s.q1, s.q2, s.q3, s.q4
      FROM unnest(group_hours, group_tenants, group_grpc, group_statuses, group_q1, group_q2, group_q3, group_q4)
           AS s (hour, tenant, grpc, status_code, q1, q2, q3, q4)
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (hour, tenant, grpc, status_code) DO UPDATE
        SET q1 = least(h.q1::numeric + excluded.q1, 9223372036854775807)::bigint,
            q2 = least(h.q2::numeric + excluded.q2, 9223372036854775807)::bigint,
            q3 = least(h.q3::numeric + excluded.q3, 9223372036854775807)::bigint,
            q4 = least(h.q4::numeric + excluded.q4, 9223372036854775807)::bigint;

    INSERT INTO count.daily_tenant_totals AS d (day, tenant, grpc, status_code, total)
    SELECT (s.hour AT TIME ZONE 'UTC')::date, s.tenant, s.grpc, s.status_code,
           least(sum(s.q1::numeric + s.q2 + s.q3 + s.q4), 9223372036854775807)::bigint
      FROM unnest(group_hours, group_tenants, group_grpc, group_statuses, group_q1, group_q2, group_q3, group_q4)
           AS s (hour, tenant, grpc, status_code, q1, q2, q3, q4)
     GROUP BY 1, 2, 3, 4
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (day, tenant, grpc, status_code) DO UPDATE
        SET total = least(d.total::numeric + excluded.total, 9223372036854775807)::bigint;

    INSERT INTO count.monthly_tenant_totals AS m (month, tenant, grpc, status_code, total)
    SELECT date_trunc('month', s.hour AT TIME ZONE 'UTC')::date, s.tenant, s.grpc, s.status_code,
           least(sum(s.q1::numeric + s.q2 + s.q3 + s.q4), 9223372036854775807)::bigint
      FROM unnest(group_hours, group_tenants, group_grpc, group_statuses, group_q1, group_q2, group_q3, group_q4)
           AS s (hour, tenant, grpc, status_code, q1, q2, q3, q4)
     GROUP BY 1, 2, 3, 4
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (month, tenant, grpc, status_code) DO UPDATE
        SET total = least(m.total::numeric + excluded.total, 9223372036854775807)::bigint;

    SELECT least(coalesce(sum(t), 0), 9223372036854775807)::bigint INTO added FROM unnest(totals) AS t;
    -- The monthly totals are the largest of each tier set: one at the
    -- maximum is where a tier saturated first.
    IF EXISTS (
        SELECT 1
          FROM count.monthly_method_totals AS m
          JOIN unnest(hour_hours, hour_ids) AS s (hour, method_id)
            ON m.month = date_trunc('month', s.hour AT TIME ZONE 'UTC')::date AND m.method_id = s.method_id
         WHERE m.total = 9223372036854775807
    ) OR EXISTS (
        SELECT 1
          FROM count.monthly_tenant_totals AS m
          JOIN unnest(group_hours, group_tenants, group_grpc, group_statuses)
               AS s (hour, tenant, grpc, status_code)
            ON m.month = date_trunc('month', s.hour AT TIME ZONE 'UTC')::date AND m.tenant = s.tenant
           AND m.grpc = s.grpc AND m.status_code = s.status_code
         WHERE m.total = 9223372036854775807
    ) THEN
        RAISE WARNING 'count.add_totals: a total reached bigint''s maximum and stays there';
    END IF;
    RETURN added;
END;
$$;

-- Applies the fine tiers' retention (count.tiers' `keep`): moves each
-- tier's `complete_from` forward to the UTC day `keep` ago, then deletes its
-- rows before `complete_from`. Whatever leaves a fine tier is still in the
-- coarser ones (every rollup adds to all of them). Reads take
-- `complete_from` in the same snapshot as the rows, so a read racing this
-- never uses a tier where it has lost rows. A rollup that read the old
-- `complete_from` may still add rows before the new one: they are never
-- read, and the next run deletes them. Returns the rows deleted.
CREATE OR REPLACE FUNCTION count.apply_retention() RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    minute_from timestamptz;
    hour_from timestamptz;
    dropped bigint;
BEGIN
    -- Once a day per tier: the WHERE skips the update, and its row lock,
    -- until the day moves on.
    UPDATE count.tiers
       SET complete_from = date_trunc('day', now() - keep, 'UTC')
     WHERE keep IS NOT NULL AND complete_from < date_trunc('day', now() - keep, 'UTC');
    SELECT (SELECT complete_from FROM count.tiers WHERE tier = 'minute'),
           (SELECT complete_from FROM count.tiers WHERE tier = 'hour')
      INTO minute_from, hour_from;
    -- Counted, then deleted: neither a data-modifying WITH nor GET
    -- DIAGNOSTICS (portable). Rollups take turns, so no row before
    -- `complete_from` arrives in between.
    SELECT (SELECT count(*) FROM count.minute_method_totals WHERE minute < minute_from)
         + (SELECT count(*) FROM count.hourly_method_totals WHERE hour < hour_from)
         + (SELECT count(*) FROM count.hourly_tenant_totals WHERE hour < hour_from)
      INTO dropped;
    DELETE FROM count.minute_method_totals WHERE minute < minute_from;
    DELETE FROM count.hourly_method_totals WHERE hour < hour_from;
    -- The tenant tiers' hours keep the hourly tier's retention.
    DELETE FROM count.hourly_tenant_totals WHERE hour < hour_from;
    RETURN dropped;
END;
$$;

-- Forgets producers whose last batch was applied over 30 days ago: every
-- count-client Counter ever run has a row, which would otherwise stay
-- forever. The price: a batch resent more than 30 days after it was applied
-- would be counted again (a Counter resends until acknowledged, so only one
-- cut off from the server for that long could). count.rollup_due calls
-- this. Returns the producers forgotten.
CREATE OR REPLACE FUNCTION count.expire_producers() RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    cutoff timestamptz := now() - interval '30 days';
    forgotten bigint;
BEGIN
    -- Counted, then deleted (neither a data-modifying WITH nor GET
    -- DIAGNOSTICS: portable). A producer that sends a batch in between
    -- moves its updated_at on and is kept, though counted.
    SELECT count(*) INTO forgotten FROM count.producers WHERE updated_at < cutoff;
    DELETE FROM count.producers WHERE updated_at < cutoff;
    RETURN forgotten;
END;
$$;
