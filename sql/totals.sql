-- The totals every rollup adds to, and the producers' expiry: shared by
-- both backends. The service installs this file with sql/add_batch.sql and
-- sql/rollup.sql where the extension is absent; the extension ships it as
-- it is. Re-running this file is harmless: every statement replaces.

-- Adds requests to count.daily_method_totals and
-- count.monthly_method_totals: element i of the arrays is one (day,
-- endpoint, requests), at most one element per (day, endpoint). Every rollup
-- ends here. Returns the requests added.
--
-- A total that would pass bigint's maximum (9,223,372,036,854,775,807) stays
-- at it, with a WARNING: failing instead would stop every later rollup, of
-- every day and endpoint, on one absurd total.
CREATE OR REPLACE FUNCTION count.add_totals(days date[], method_ids bigint[], totals bigint[])
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    added bigint;
    saturated boolean;
BEGIN
    WITH summed AS (
        SELECT day, method_id, total FROM unnest(days, method_ids, totals) AS t (day, method_id, total)
    ), merged AS (
        INSERT INTO count.daily_method_totals AS d (day, method_id, total)
        SELECT day, method_id, total FROM summed
        ON CONFLICT (day, method_id) DO UPDATE
            SET total = least(d.total::numeric + excluded.total, 9223372036854775807)::bigint
        RETURNING d.total = 9223372036854775807 AS at_max
    ), monthly AS (
        -- In key order: rollups of other days of the month update the same
        -- rows, and a common order makes them wait instead of deadlocking.
        INSERT INTO count.monthly_method_totals AS m (month, method_id, total)
        SELECT day - (extract(day FROM day)::int - 1), method_id,
               least(sum(total), 9223372036854775807)::bigint
          FROM summed
         GROUP BY 1, 2
         ORDER BY 1, 2
        ON CONFLICT (month, method_id) DO UPDATE
            SET total = least(m.total::numeric + excluded.total, 9223372036854775807)::bigint
        RETURNING m.total = 9223372036854775807 AS at_max
    )
    SELECT least(coalesce(sum(total), 0), 9223372036854775807)::bigint,
           coalesce((SELECT bool_or(at_max) FROM merged), false)
               OR coalesce((SELECT bool_or(at_max) FROM monthly), false)
      INTO added, saturated
      FROM summed;
    IF saturated THEN
        RAISE WARNING 'count.add_totals: a total reached bigint''s maximum and stays there';
    END IF;
    RETURN added;
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
    forgotten bigint;
BEGIN
    WITH expired AS (
        DELETE FROM count.producers WHERE updated_at < now() - interval '30 days' RETURNING 1
    )
    SELECT count(*) INTO forgotten FROM expired;
    RETURN forgotten;
END;
$$;
